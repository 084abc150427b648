"""The report's plots, drawn with matplotlib (Agg) and returned as PNG bytes so the HTML can embed them."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"figure.dpi": 96, "font.size": 9, "svg.hashsalt": "harness"})


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _recipes(host: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(host.recipe))


def exact_vs_cell(host: pd.DataFrame) -> bytes:
    """Puzzle-exact against cell accuracy for every recipe (host, every depth): points that stay right
    on the cell axis and fall on the exact axis are the harness's question."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, r in enumerate(_recipes(host)):
        sub = host[host.recipe == r]
        ax.scatter(100 * sub.cell_accuracy, 100 * sub.exact_accuracy, label=r, marker="osD^v<>"[i % 7], s=36)
    for _, row in host.iterrows():
        ax.annotate(row.model.split("-")[-1], (100 * row.cell_accuracy, 100 * row.exact_accuracy), fontsize=6,
                    alpha=0.6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("cell accuracy (%)")
    ax.set_ylabel("puzzle-exact accuracy (%)")
    ax.set_title("puzzle-exact vs cell accuracy per recipe (host, all depths)")
    ax.legend(fontsize=7)
    return _png(fig)


def fidelity_per_cycle(host: pd.DataFrame) -> bytes:
    """Carry-trajectory fidelity to fp32 at every cycle, per model, at each model's first depth."""
    models = list(dict.fromkeys(host.model))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False)
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


def accuracy_vs_macs(host: pd.DataFrame) -> bytes:
    """Puzzle-exact accuracy against MACs per puzzle across the depths studied, per model and recipe."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (m, r), sub in host.groupby(["model", "recipe"], sort=False):
        sub = sub.sort_values("macs")
        ax.plot(sub.macs, 100 * sub.exact_accuracy, marker="o", label=f"{m} {r}")
        for _, row in sub.iterrows():
            ax.annotate(row.depth, (row.macs, 100 * row.exact_accuracy), fontsize=6, alpha=0.6,
                        xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("MACs per puzzle (all steps)")
    ax.set_ylabel("puzzle-exact accuracy (%)")
    ax.set_title("accuracy vs depth and MACs (host)")
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def cost_vs_accuracy(configs: pd.DataFrame) -> bytes:
    """Latency and energy proxy against puzzle-exact accuracy on each target (device rows)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    for target, sub in configs.dropna(subset=["latency_ms"]).groupby("target"):
        axes[0].scatter(sub.latency_ms, 100 * sub.exact_accuracy, label=target, s=30)
        axes[1].scatter(sub.energy_uj, 100 * sub.exact_accuracy, label=target, s=30)
        for _, row in sub.iterrows():
            for ax, x in ((axes[0], row.latency_ms), (axes[1], row.energy_uj)):
                ax.annotate(f"{row.model.split('-')[-1]} {row.recipe} {row.depth}", (x, 100 * row.exact_accuracy),
                            fontsize=5, alpha=0.6, xytext=(3, 2), textcoords="offset points")
    axes[0].set_xlabel("latency per puzzle (ms at the target clock)")
    axes[1].set_xlabel("energy proxy per puzzle (uJ)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("puzzle-exact accuracy on the device (%)")
        ax.legend(fontsize=7)
    axes[0].set_title("latency vs accuracy")
    axes[1].set_title("energy vs accuracy")
    return _png(fig)


def memory_vs_limits(configs: pd.DataFrame) -> bytes:
    """Flash (firmware + blob) and RAM (static image, inference peak) against each target's limits."""
    targets = list(dict.fromkeys(configs.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 3.8), squeeze=False)
    for ax, t in zip(axes[0], targets):
        sub = configs[configs.target == t].drop_duplicates(["model", "recipe"])
        names = [f"{m.split('-')[-1]} {r}" for m, r in zip(sub.model, sub.recipe)]
        xs = range(len(sub))
        ax.bar([x - 0.2 for x in xs], sub.flash_total, width=0.4, label="flash: firmware + blob")
        ax.bar([x + 0.2 for x in xs], sub.ram_static, width=0.4, label="RAM: static image")
        ax.axhline(sub.flash_limit.iloc[0], color="C0", ls="--", lw=1, label="flash limit")
        ax.axhline(sub.ram_limit.iloc[0], color="C1", ls="--", lw=1, label="RAM limit")
        ax.set_yscale("log")
        ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("bytes")
        ax.set_title(t, fontsize=8)
        ax.legend(fontsize=6)
    return _png(fig)


def all_plots(tables: dict[str, pd.DataFrame]) -> dict[str, tuple[str, bytes]]:
    host, configs = tables["host"], tables["configs"]
    out = {}
    if not host.empty:
        out["exact_vs_cell"] = ("Puzzle-exact vs cell accuracy per recipe", exact_vs_cell(host))
        out["fidelity"] = ("Carry-trajectory fidelity per cycle", fidelity_per_cycle(host))
        out["depth_macs"] = ("Accuracy vs depth and MACs", accuracy_vs_macs(host))
    if not configs.empty and "latency_ms" in configs:
        out["cost"] = ("Latency and energy vs accuracy per target", cost_vs_accuracy(configs))
        out["memory"] = ("Flash and RAM against each target's limits", memory_vs_limits(configs))
    return out
