"""``harness report --baseline OLD``: what changed since a previous run, and whether it is a regression.

Configurations are matched on (model, recipe, depth, target). What counts as a regression:

  - accuracy (puzzle-exact, cell) on the device: the drop is beyond the plan's ``[regression]``
    threshold **and** real: the paired test on the puzzles both runs share rejects "no change" at the
    plan's [statistics] confidence (exact McNemar for puzzle-exact, the Wilcoxon signed-rank test of the
    per-puzzle cell fractions for cell accuracy; ``harness.stats``). A drop beyond the threshold that
    the test cannot tell from chance is shown with a note and does not fail the gate;
  - final carry fidelity (host, deterministic for a blob and a puzzle set), latency (emulator counts
    are deterministic) and memory (flash, inference RAM, static RAM): exact thresholds;
  - a configuration that ran before and now has board failures, or one that disappeared.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .. import stats as S
from ..farm.plan import Regression
from .decide import outcomes_of
from .tables import KEY


@dataclass
class Change:
    config: str
    metric: str
    old: Any
    new: Any
    regression: bool
    note: str = ""


def _num(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def compare(old: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame], thresholds: dict[str, float] | None = None,
            confidence: float = S.CONFIDENCE) -> list[Change]:
    """The changes from ``old`` to ``new`` (each a run's ``tables.tables``), regressions marked."""
    th = {**asdict(Regression()), **(thresholds or {})}
    changes: list[Change] = []
    o, n = old["configs"].set_index(KEY), new["configs"].set_index(KEY)
    exact = (outcomes_of(old.get("puzzles"), KEY), outcomes_of(new.get("puzzles"), KEY))
    cells = (outcomes_of(old.get("puzzles"), KEY, "cell_accuracy"), outcomes_of(new.get("puzzles"), KEY, "cell_accuracy"))
    for key in o.index.difference(n.index):
        changes.append(Change(" ".join(key), "present", "yes", "no", True, "configuration missing from the new run"))
    for key in n.index.difference(o.index):
        changes.append(Change(" ".join(key), "present", "no", "yes", False, "new configuration"))
    drops = {"exact_accuracy": th["exact_accuracy_drop"], "cell_accuracy": th["cell_accuracy_drop"]}
    exact_drops = {"fidelity_final": th["fidelity_drop"]}
    growth = {"latency_ms": th["latency_increase"], "flash_total": th["memory_increase"],
              "ram_inference_peak": th["memory_increase"], "ram_static": th["memory_increase"]}
    for key in o.index.intersection(n.index):
        a, b, name = o.loc[key], n.loc[key], " ".join(key)
        if _num(b.get("board_failures")) and not _num(a.get("board_failures")):
            changes.append(Change(name, "board_failures", int(a.board_failures), int(b.board_failures), True))
        for m, allowed in drops.items():
            va, vb = _num(a.get(m)), _num(b.get(m))
            if va is None or vb is None or va == vb:
                continue
            beyond = vb < va - allowed - 1e-12
            test = _test(m, key, exact, cells)
            real = test is not None and test[1] < 1 - confidence
            note = "" if test is None else test[0]
            if beyond and not real:
                note = (f"a drop of {100 * (va - vb):.1f} points, beyond the {100 * allowed:g}-point threshold but "
                        f"not beyond chance at {confidence:.0%} on these puzzles ({note}): not a regression")
            changes.append(Change(name, m, va, vb, beyond and real, note))
        for m, allowed in exact_drops.items():
            va, vb = _num(a.get(m)), _num(b.get(m))
            if va is None or vb is None or va == vb:
                continue
            changes.append(Change(name, m, va, vb, vb < va - allowed - 1e-12))
        for m, allowed in growth.items():
            va, vb = _num(a.get(m)), _num(b.get(m))
            if va is None or vb is None or va == vb:
                continue
            changes.append(Change(name, m, va, vb, vb > va * (1 + allowed) + 1e-9))
    return changes


def _test(metric: str, key: tuple, exact, cells) -> tuple[str, float] | None:
    """(what was tested, p-value) of old against new on their shared puzzles; None without puzzles."""
    if metric == "exact_accuracy":
        a, b = exact[0].get(key), exact[1].get(key)
        if not a or not b:
            return None
        c = S.compare(a, b)
        return c.describe("the baseline", "now"), c.p_value
    a, b = cells[0].get(key), cells[1].get(key)
    shared = sorted(set(a or {}) & set(b or {}))
    if not shared:
        return None
    p = S.paired_mean_change([a[k] for k in shared], [b[k] for k in shared])
    return f"Wilcoxon signed-rank test of {len(shared)} per-puzzle cell fractions, p = {p:.3g}", p


def value_text(v) -> str:
    """How a change's old and new values are written (Markdown, notes, JUnit)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def change_text(c: Change) -> str:
    return f"{c.metric}: {value_text(c.old)} -> {value_text(c.new)}" + (f" ({c.note})" if c.note else "")


def ordered(changes: list[Change]) -> list[Change]:
    """Regressions first, then by configuration and metric."""
    return sorted(changes, key=lambda c: (not c.regression, c.config, c.metric))


def changes_frame(changes: list[Change], old: str = "baseline", new: str = "now") -> pd.DataFrame:
    """The changes as a report table, regressions first; ``old`` and ``new`` name the value columns."""
    return pd.DataFrame([{"config": c.config, "metric": c.metric, old: c.old, new: c.new,
                          "regression": "yes" if c.regression else "no", "note": c.note} for c in ordered(changes)])


def changes_markdown(changes: list[Change], baseline: str) -> str:
    if not changes:
        return f"No change against the baseline {baseline}: every figure is identical.\n"
    reg = [c for c in changes if c.regression]
    lines = [f"{len(changes)} change(s) against the baseline {baseline}, {len(reg)} regression(s) (beyond the "
             "thresholds and, for accuracy, beyond chance).", "", "| config | metric | baseline | now | regression | note |",
             "|---|---|---:|---:|---|---|"]
    for c in ordered(changes):
        lines.append(f"| {c.config} | {c.metric} | {value_text(c.old)} | {value_text(c.new)} | "
                     f"{'**yes**' if c.regression else 'no'} | {c.note} |")
    return "\n".join(lines) + "\n"
