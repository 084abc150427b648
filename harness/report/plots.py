"""The report's plots, drawn with matplotlib (Agg) and returned as PNG bytes so the HTML can embed them.

Read at a glance: every accuracy has its interval bar; only the recommended and the Pareto points carry
a text label, the others are told apart by the legend (colour = model and recipe, marker = depth); log
axes label their decades and the 2 and 5 between them in engineering notation, never overlapping minor
labels.
"""
from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from ..profile import NAMES  # noqa: E402

plt.rcParams.update({"figure.dpi": 96, "font.size": 9, "svg.hashsalt": "harness"})
MARKERS = "osD^v<>P*X"


def _png(fig, extra=None) -> bytes:
    """PNG bytes; ``extra`` artists (a figure legend outside the axes) are kept inside the image."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight" if extra else None,
                bbox_extra_artists=extra)
    plt.close(fig)
    return buf.getvalue()


def _log_axis(axis, unit: str = "") -> None:
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(EngFormatter(unit=unit, places=0, sep=" "))
    axis.set_minor_formatter(NullFormatter())


def _yerr(df: pd.DataFrame, name: str) -> np.ndarray | None:
    """Asymmetric error bars in percent from ``<name>_lo/hi``; None without an interval."""
    if f"{name}_lo" not in df:
        return None
    point = 100 * df[name].to_numpy(float)
    bars = np.vstack([point - 100 * df[f"{name}_lo"].to_numpy(float), 100 * df[f"{name}_hi"].to_numpy(float) - point])
    return np.clip(bars, 0, None)      # a bound equal to the point can come out -1e-15 in percent


def _styles(keys: list) -> dict:
    return {k: f"C{i % 10}" for i, k in enumerate(dict.fromkeys(keys))}


def exact_vs_cell(host: pd.DataFrame) -> bytes:
    """Puzzle-exact against cell accuracy for every recipe (host, every depth): points that stay right
    on the cell axis and fall on the exact axis are the harness's question."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = _styles(list(host.recipe))
    models = list(dict.fromkeys(host.model))
    for (m, r), sub in host.groupby(["model", "recipe"], sort=False):
        ax.errorbar(100 * sub.cell_accuracy, 100 * sub.exact_accuracy, yerr=_yerr(sub, "exact_accuracy"),
                    xerr=_yerr(sub, "cell_accuracy"), fmt=MARKERS[models.index(m) % len(MARKERS)], color=colours[r],
                    ms=6, capsize=2, elinewidth=0.8, alpha=0.85, label=f"{m} {r}")
    ax.set_xlabel("cell accuracy (%)")
    ax.set_ylabel("puzzle-exact accuracy (%)")
    ax.set_title("puzzle-exact vs cell accuracy per recipe (host, all depths; bars: intervals)")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def fidelity_per_cycle(host: pd.DataFrame) -> bytes:
    """Carry-trajectory fidelity to fp32 at every cycle, per model, at each model's first depth."""
    models = list(dict.fromkeys(host.model))
    fig, axes = plt.subplots(1, len(models), figsize=(3.8 * len(models), 3.4), squeeze=False)
    for ax, m in zip(axes[0], models):
        sub = host[host.model == m]
        depth = sub.depth.iloc[0]
        for _, row in sub[sub.depth == depth].iterrows():
            ys = [float(v) for v in str(row.fidelity_per_cycle).split()]
            ax.plot(range(1, len(ys) + 1), ys, marker=".", label=row.recipe)
        ax.set_title(f"{m} {depth}", fontsize=8)
        ax.set_xlabel("cycle")
        ax.set_ylabel("cosine to fp32 carry")
        ax.legend(fontsize=6)
    return _png(fig)


def device_fidelity_per_cycle(traces: pd.DataFrame, T: dict[str, int]) -> bytes:
    """Fidelity per cycle of the traced puzzles, measured on the device over the probe (solid) beside
    golden's on the host (dashed), the mean over the puzzles that ran the cycle; per model its first depth
    and target, one colour per recipe. ``T``: cycles per step of each depth label."""
    models = list(dict.fromkeys(traces.model))
    fig, axes = plt.subplots(1, len(models), figsize=(3.8 * len(models), 3.4), squeeze=False)
    for ax, m in zip(axes[0], models):
        sub = traces[traces.model == m]
        sub = sub[(sub.depth == sub.depth.iloc[0]) & (sub.target == sub.target.iloc[0])]
        colours = _styles(list(sub.recipe))
        for r, g in sub.groupby("recipe", sort=False):
            mean = g.assign(at=g.step * T[g.depth.iloc[0]] + g.cycle + 1).groupby("at")[["fidelity", "golden_fidelity"]].mean()
            ax.plot(mean.index, mean.fidelity, marker=".", color=colours[r], label=f"{r} (device, over the probe)")
            ax.plot(mean.index, mean.golden_fidelity, ls="--", color=colours[r], label=f"{r} (host, golden)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{m} {sub.depth.iloc[0]} on {sub.target.iloc[0]}", fontsize=8)
        ax.set_xlabel("cycle")
        ax.set_ylabel("cosine to fp32 carry")
        ax.legend(fontsize=6)
    return _png(fig)


def accuracy_vs_macs(host: pd.DataFrame) -> bytes:
    """Puzzle-exact accuracy against MACs per puzzle across the depths studied, per model and recipe."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    depths = list(dict.fromkeys(host.depth))
    for i, ((m, r), sub) in enumerate(host.groupby(["model", "recipe"], sort=False)):
        sub = sub.sort_values("macs")
        ax.plot(sub.macs, 100 * sub.exact_accuracy, color=f"C{i % 10}", lw=1, alpha=0.6)
        for _, row in sub.iterrows():
            one = sub[sub.depth == row.depth]
            ax.errorbar(one.macs, 100 * one.exact_accuracy, yerr=_yerr(one, "exact_accuracy"), color=f"C{i % 10}",
                        fmt=MARKERS[depths.index(row.depth) % len(MARKERS)], ms=5, capsize=2, elinewidth=0.8)
        ax.plot([], [], color=f"C{i % 10}", label=f"{m} {r}")
    for j, dep in enumerate(depths):
        ax.plot([], [], MARKERS[j % len(MARKERS)], color="0.4", ls="", label=f"depth {dep}")
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel("MACs per puzzle (all steps)")
    ax.set_ylabel("puzzle-exact accuracy (%)")
    ax.set_title("accuracy vs depth and MACs (host; bars: intervals)")
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def cost_vs_accuracy(configs: pd.DataFrame, decisions: list | None = None) -> bytes:
    """Latency and energy proxy against puzzle-exact accuracy, one row of panels per target (device
    rows). The recommended configuration is a star labelled R, the Pareto points are ringed and
    numbered; the key under each row names them. The rest are told apart by the legend."""
    rows = configs.dropna(subset=["latency_ms"])
    targets = list(dict.fromkeys(rows.target))
    by_target = {d.target: d for d in decisions or []}
    fig, grid = plt.subplots(2 * len(targets), 2, figsize=(10.0, 4.4 * len(targets)), squeeze=False,
                             gridspec_kw={"height_ratios": [1.0, 0.16] * len(targets)})
    axes, keys = grid[0::2], grid[1::2]
    for row in keys:
        row[1].remove()
        row[0].axis("off")
    colours = _styles([f"{m} {r}" for m, r in zip(configs.model, configs.recipe)])
    depths = list(dict.fromkeys(configs.depth))
    for (ax_l, ax_e), key_ax, target in zip(axes, keys[:, 0], targets):
        sub = rows[rows.target == target]
        d = by_target.get(target)
        tags: dict[tuple, str] = {}
        if d is not None:
            front = sorted(d.pareto, key=lambda r: r["latency_ms"])
            tags.update({_key(r): str(i) for i, r in enumerate(front, start=1)})
            if d.recommended is not None:
                tags[_key(d.recommended)] = "R"
        for ax, x in ((ax_l, "latency_ms"), (ax_e, "energy_uj")):
            shown = sub[pd.to_numeric(sub[x], errors="coerce").notna()]   # host-ns counts have no energy proxy
            if shown.empty:
                ax.text(0.5, 0.5, f"no {x} for these counts", transform=ax.transAxes, ha="center", fontsize=8)
                ax.set_yticks([])
                ax.set_xticks([])
                continue
            for _, r in shown.iterrows():
                one = shown.loc[[_]]
                ax.errorbar(one[x], 100 * one.exact_accuracy, yerr=_yerr(one, "exact_accuracy"),
                            fmt=MARKERS[depths.index(r.depth) % len(MARKERS)], color=colours[f"{r.model} {r.recipe}"],
                            ms=6, capsize=2, elinewidth=0.8, alpha=0.85)
                tag = tags.get(_key(r))
                if tag is None:
                    continue
                ax.plot([r[x]], [100 * r.exact_accuracy], "*" if tag == "R" else "o", ms=16 if tag == "R" else 11,
                        mfc="none", mec="black", mew=1.0)
                ax.annotate(tag, (r[x], 100 * r.exact_accuracy), fontsize=7, fontweight="bold", xytext=(5, 5),
                            textcoords="offset points")
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
            ax.set_ylabel("puzzle-exact on the device (%)")
        ax_l.set_title(f"{target}: latency vs accuracy", fontsize=8)
        ax_e.set_title(f"{target}: energy proxy vs accuracy", fontsize=8)
        ax_l.set_xlabel("latency per puzzle at the target clock")
        ax_e.set_xlabel("energy proxy per puzzle")
        if d is not None and tags:
            named = sorted(((t, label) for label, t in
                            ((f"{k[0]} {k[1]} {k[2]}", t) for k, t in tags.items())), key=lambda p: (p[0] != "R", p[0]))
            lines = [f"{t}: {label}" for t, label in named]
            half = (len(lines) + 1) // 2
            for col, chunk in enumerate((lines[:half], lines[half:])):
                key_ax.text(0.02 + 1.15 * col, 0.9, "\n".join(chunk), transform=key_ax.transAxes, fontsize=7, va="top")
    _ms_to_s(axes)
    handles = [plt.Line2D([], [], color=c, lw=4, label=k) for k, c in colours.items()]
    handles += [plt.Line2D([], [], marker=MARKERS[j % len(MARKERS)], color="0.4", ls="", label=f"depth {dep}")
                for j, dep in enumerate(depths)]
    handles.append(plt.Line2D([], [], marker="*", ms=12, mfc="none", mec="black", ls="", label="recommended (R)"))
    handles.append(plt.Line2D([], [], marker="o", ms=9, mfc="none", mec="black", ls="", label="Pareto front (1..)"))
    fig.tight_layout()
    legend = fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(5, len(handles)),
                        fontsize=7, frameon=False)
    return _png(fig, [legend])


def _ms_to_s(axes) -> None:
    """The data are ms and uJ; the engineering formatter wants seconds and joules."""
    for ax_l, ax_e in axes:
        ax_l.xaxis.set_major_formatter(_scaled(1e-3, "s"))
        ax_e.xaxis.set_major_formatter(_scaled(1e-6, "J"))


def _scaled(factor: float, unit: str):
    eng = EngFormatter(unit=unit, places=0, sep=" ")
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, pos: eng.format_data(v * factor) if v > 0 else "")


def _key(r) -> tuple:
    return (r["model"], r["recipe"], r["depth"], r["target"])


def memory_vs_limits(configs: pd.DataFrame) -> bytes:
    """Flash (firmware + blob) and RAM (static image, inference peak) against each target's limits."""
    targets = list(dict.fromkeys(configs.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 3.9), squeeze=False)
    for ax, t in zip(axes[0], targets):
        sub = configs[configs.target == t].drop_duplicates(["model", "recipe"])
        names = [f"{m.split('-')[-1]} {r}" for m, r in zip(sub.model, sub.recipe)]
        xs = range(len(sub))
        ax.bar([x - 0.2 for x in xs], sub.flash_total, width=0.4, label="flash: firmware + blob")
        ax.bar([x + 0.2 for x in xs], sub.ram_static, width=0.4, label="RAM: static image")
        ax.axhline(sub.flash_limit.iloc[0], color="C0", ls="--", lw=1, label="flash limit")
        ax.axhline(sub.ram_limit.iloc[0], color="C1", ls="--", lw=1, label="RAM limit")
        ax.set_yscale("log")
        _log_axis(ax.yaxis, "B")
        ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(t, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    legend = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    return _png(fig, [legend])


def trend_plot(long: pd.DataFrame, runs: list[str]) -> bytes:
    """Puzzle-exact accuracy with its interval bar across runs: one panel per target, one line per
    configuration (colour = model and recipe, marker and line style = depth), nudged sideways so the
    bars stay apart."""
    targets = sorted(set(long.target))
    fig, axes = plt.subplots(len(targets), 1, figsize=(9.6, 0.6 + 3.4 * len(targets)), squeeze=False, sharey=True)
    combos = list(dict.fromkeys(zip(long.model, long.recipe)))
    depths = list(dict.fromkeys(long.depth))
    for ax, target in zip(axes[:, 0], targets):
        sub = long[long.target == target]
        keys = list(dict.fromkeys(zip(sub.model, sub.recipe, sub.depth)))
        width = 0.3 if len(runs) > 1 else 0.0
        for j, (m, rc, d) in enumerate(keys):
            g = sub[(sub.model == m) & (sub.recipe == rc) & (sub.depth == d)].sort_values("order")
            nudge = (j / max(len(keys) - 1, 1) - 0.5) * width
            x = g.order.to_numpy(float) + nudge
            y = 100 * g.exact_accuracy.to_numpy(float)
            ax.errorbar(x, y, yerr=_yerr(g, "exact_accuracy"), fmt=MARKERS[depths.index(d) % len(MARKERS)],
                        ls=("-", "--", ":", "-.")[depths.index(d) % 4],
                        color=f"C{combos.index((m, rc)) % 10}", ms=5, capsize=2, elinewidth=0.7, lw=1.0,
                        alpha=0.85, label=f"{m} {rc} {d}")
        ax.set_title(target, fontsize=10)
        ax.set_ylabel("puzzle-exact accuracy (%)")
        ax.set_xticks(range(len(runs)), runs, rotation=15, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_ylim(-2, 102)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def profile_shares(profiles: pd.DataFrame) -> bytes:
    """The per-operation profile as stacked horizontal bars: one panel per target and counts kind (a
    bar never mixes kinds), one bar per configuration, one segment per operation in ``profile.OPS``
    order and colour (the same operation the same colour in every panel); a segment of 8% or more
    carries its share."""
    colours = plt.get_cmap("tab20").colors
    panels = dict(list(profiles.groupby(["target", "counts_kind"], sort=False)))
    rows = {key: list(dict.fromkeys(zip(g.model, g.recipe, g.depth))) for key, g in panels.items()}
    heights = [0.9 + 0.34 * len(c) for c in rows.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9.6, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    seen: set[int] = set()
    for ax, ((target, kind), sub) in zip(axes[:, 0], panels.items()):
        configs = rows[(target, kind)]
        for y, (m, r, d) in enumerate(configs):
            one = sub[(sub.model == m) & (sub.recipe == r) & (sub.depth == d)].sort_values("position")
            left = 0.0
            for _, op in one.iterrows():
                width = 100 * float(op.share)
                ax.barh(y, width, left=left, height=0.7, color=colours[int(op.position) % len(colours)],
                        edgecolor="white", linewidth=0.4)
                if width >= 8:
                    ax.text(left + width / 2, y, f"{width:.0f}%", ha="center", va="center", fontsize=7)
                left += width
                seen.add(int(op.position))
        ax.set_yticks(range(len(configs)), [f"{m} {r} {d}" for m, r, d in configs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"share of the profiled {kind} (%)")
        ax.set_title(f"{target}: per-operation profile, {kind}", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i % len(colours)], label=NAMES[i]) for i in sorted(seen)]
    fig.tight_layout()
    legend = fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, len(handles)),
                        fontsize=7, frameon=False)
    return _png(fig, [legend])


def all_plots(tables: dict[str, pd.DataFrame], decisions: list | None = None) -> dict[str, tuple[str, bytes]]:
    host, configs = tables["host"], tables["configs"]
    out: dict[str, Any] = {}
    every = configs          # memory against the limits is a cost: cost-only models belong on it
    # accuracy plots never show a cost-only (random-weight) model
    if "cost_only" in host:
        host = host[~host.cost_only.astype(bool)]
    if "cost_only" in configs:
        configs = configs[~configs.cost_only.astype(bool)]
    if not host.empty:
        out["exact_vs_cell"] = ("Puzzle-exact vs cell accuracy per recipe", exact_vs_cell(host))
        out["fidelity"] = ("Carry-trajectory fidelity per cycle", fidelity_per_cycle(host))
        out["depth_macs"] = ("Accuracy vs depth and MACs", accuracy_vs_macs(host))
    if not configs.empty and "latency_ms" in configs and configs.latency_ms.notna().any():
        out["cost"] = ("Latency and energy vs accuracy per target", cost_vs_accuracy(configs, decisions))
    if not every.empty and "latency_ms" in every and every.latency_ms.notna().any():
        out["memory"] = ("Flash and RAM against each target's limits", memory_vs_limits(every))
    return out
