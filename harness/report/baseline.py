"""``harness report --baseline OLD``: what changed since a previous run, and whether it is a regression.

Configurations are matched on (model, recipe, depth, target). A regression is a change beyond the plan's
``[regression]`` thresholds: puzzle-exact or cell accuracy or final carry fidelity falling by more than
the allowed points, latency (counts) or memory (flash, inference RAM) growing by more than the allowed
fraction, a configuration that ran before and now has board failures, or one that disappeared.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from ..farm.plan import Regression
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


def compare(old: pd.DataFrame, new: pd.DataFrame, thresholds: dict[str, float] | None = None) -> list[Change]:
    th = {**asdict(Regression()), **(thresholds or {})}
    changes: list[Change] = []
    o, n = old.set_index(KEY), new.set_index(KEY)
    for key in o.index.difference(n.index):
        changes.append(Change(" ".join(key), "present", "yes", "no", True, "configuration missing from the new run"))
    for key in n.index.difference(o.index):
        changes.append(Change(" ".join(key), "present", "no", "yes", False, "new configuration"))
    drops = {"exact_accuracy": th["exact_accuracy_drop"], "cell_accuracy": th["cell_accuracy_drop"],
             "fidelity_final": th["fidelity_drop"]}
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
            changes.append(Change(name, m, va, vb, vb < va - allowed - 1e-12))
        for m, allowed in growth.items():
            va, vb = _num(a.get(m)), _num(b.get(m))
            if va is None or vb is None or va == vb:
                continue
            changes.append(Change(name, m, va, vb, vb > va * (1 + allowed) + 1e-9))
    return changes


def changes_markdown(changes: list[Change], baseline: str) -> str:
    if not changes:
        return f"No change against the baseline {baseline}: every figure is identical.\n"
    reg = [c for c in changes if c.regression]
    lines = [f"{len(changes)} change(s) against the baseline {baseline}, {len(reg)} beyond the thresholds "
             "(regressions).", "", "| config | metric | baseline | now | regression | note |", "|---|---|---:|---:|---|---|"]
    for c in sorted(changes, key=lambda c: (not c.regression, c.config, c.metric)):
        fmt = (lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append(f"| {c.config} | {c.metric} | {fmt(c.old)} | {fmt(c.new)} | {'**yes**' if c.regression else 'no'} | {c.note} |")
    return "\n".join(lines) + "\n"
