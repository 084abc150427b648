"""Deployment decisions per target, from the configs table and the plan's budgets.

For each target:
  - fits: the firmware and the blob fit flash, the image's static RAM fits RAM, and no puzzle ended in a
    board failure;
  - meets budgets: latency (at the target clock), energy proxy and puzzle-exact accuracy within the
    plan's budgets for that target;
  - the Pareto front of the fitting configurations over puzzle-exact accuracy (higher), latency, energy
    and memory (flash + inference RAM; lower);
  - one recommendation: among those meeting the budgets, the most accurate; within one puzzle of the
    best accuracy, the fastest; then the smallest flash;
  - flagged: configurations that keep cell accuracy (within 2 points of fp32) but lose puzzle-exact
    accuracy (10 points or more below fp32), the failure the harness exists to show.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CELL_KEPT = 0.02
EXACT_LOST = 0.10


@dataclass
class TargetDecision:
    target: str
    budgets: dict[str, Any]
    fitting: list[dict] = field(default_factory=list)
    meeting: list[dict] = field(default_factory=list)
    pareto: list[dict] = field(default_factory=list)
    recommended: dict | None = None
    reasons: list[str] = field(default_factory=list)
    flagged: list[dict] = field(default_factory=list)
    not_fitting: list[dict] = field(default_factory=list)


def label(r: dict | pd.Series) -> str:
    return f"{r['model']} {r['recipe']} {r['depth']}"


def _memory(r) -> float:
    return float((r.get("flash_total") or 0) + (r.get("ram_inference_peak") or 0))


def budgets_for(plan: dict[str, Any], target: str) -> dict[str, Any]:
    b = dict(plan.get("budgets", {}).get("*", {}))
    b.update({k: v for k, v in plan.get("budgets", {}).get(target, {}).items() if v is not None})
    return {k: v for k, v in b.items() if v is not None}


def misses(r: dict, budgets: dict[str, Any]) -> list[str]:
    out = []
    if "latency_ms" in budgets and not (r.get("latency_ms", np.inf) <= budgets["latency_ms"]):
        out.append(f"latency {r.get('latency_ms', float('nan')):.1f} ms > {budgets['latency_ms']:g} ms")
    if "energy_uj" in budgets and not (r.get("energy_uj", np.inf) <= budgets["energy_uj"]):
        out.append(f"energy {r.get('energy_uj', float('nan')):.0f} uJ > {budgets['energy_uj']:g} uJ")
    if "min_exact_accuracy" in budgets and not (r.get("exact_accuracy", -1) >= budgets["min_exact_accuracy"]):
        out.append(f"puzzle-exact {100 * r.get('exact_accuracy', float('nan')):.1f}% < {100 * budgets['min_exact_accuracy']:.0f}%")
    return out


def pareto(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on every objective (and strictly on one)."""
    def obj(r):
        return np.array([-r["exact_accuracy"], r["latency_ms"], np.nan_to_num(r.get("energy_uj", 0.0)), _memory(r)])
    front = []
    for r in rows:
        a = obj(r)
        if not any((obj(o) <= a).all() and (obj(o) < a).any() for o in rows if o is not r):
            front.append(r)
    return front


def decide(configs: pd.DataFrame, plan: dict[str, Any]) -> list[TargetDecision]:
    out = []
    for target, g in configs.groupby("target", sort=True):
        d = TargetDecision(target, budgets_for(plan, target))
        for r in g.to_dict("records"):
            ran = r.get("exact_accuracy") is not None and not pd.isna(r.get("exact_accuracy"))
            if not ran or r["board_failures"] or not (r["fits_flash"] and r["fits_ram"]):
                why = ("does not fit flash (blob larger than the blob region)" if not r["fits_flash"] else
                       "board failures" if r["board_failures"] else "no device result" if not ran else
                       "static RAM does not fit")
                d.not_fitting.append({**r, "why": why})
                continue
            d.fitting.append(r)
            m = misses(r, d.budgets)
            if not m:
                d.meeting.append(r)
            fp_cell, fp_exact = r.get("fp32_cell_accuracy"), r.get("fp32_exact_accuracy")
            if fp_cell is not None and not pd.isna(fp_cell):
                if r["cell_accuracy"] >= fp_cell - CELL_KEPT and r["exact_accuracy"] <= fp_exact - EXACT_LOST:
                    d.flagged.append(r)
        d.pareto = pareto(d.fitting)
        _recommend(d)
        out.append(d)
    return out


def _recommend(d: TargetDecision) -> None:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    if not d.meeting:
        d.reasons.append("no configuration meets the budgets " + ", ".join(f"{k} {v:g}" for k, v in d.budgets.items())
                         + (f"; {len(d.fitting)} fit the board" if d.fitting else "; none fits the board"))
        if d.fitting:
            best = max(d.fitting, key=lambda r: (r["exact_accuracy"], -r["latency_ms"]))
            d.reasons.append(f"closest: {label(best)} misses by " + "; ".join(misses(best, d.budgets)))
        return
    best_acc = max(r["exact_accuracy"] for r in d.meeting)
    one_puzzle = 1.0 / max(r["puzzles"] for r in d.meeting)
    near = [r for r in d.meeting if r["exact_accuracy"] >= best_acc - one_puzzle + 1e-12]
    rec = min(near, key=lambda r: (r["latency_ms"], r.get("flash_total") or 0, label(r)))
    d.recommended = rec
    d.reasons.append(f"{label(rec)} meets every budget of {d.target} "
                     f"({', '.join(f'{k} {v:g}' for k, v in d.budgets.items()) or 'none set'}) "
                     f"and fits: flash {rec['flash_total']:,} of {rec['flash_limit']:,} B, static RAM "
                     f"{rec['ram_static']:,} of {rec['ram_limit']:,} B, inference RAM peak {rec['ram_inference_peak']:,} B")
    d.reasons.append(f"puzzle-exact {pct(rec['exact_accuracy'])} (cell {pct(rec['cell_accuracy'])}) on "
                     f"{rec['puzzles']} puzzles: the best of the {len(d.meeting)} configurations meeting the budgets "
                     f"is {pct(best_acc)}, and {len(near)} {'is' if len(near) == 1 else 'are'} within one puzzle of it")
    faster = "the fastest of those" if len(near) > 1 else "the only one"
    d.reasons.append(f"{faster}: {rec['latency_ms']:.2f} ms ({rec['latency_basis']}), energy proxy "
                     f"{rec['energy_uj']:.0f} uJ, {rec['blob_bytes']:,} B blob")
    if rec.get("fp32_exact_accuracy") is not None and not pd.isna(rec.get("fp32_exact_accuracy")):
        d.reasons.append(f"the fp32 model on the host scores {pct(rec['fp32_exact_accuracy'])} puzzle-exact on the "
                         f"same puzzles; carry fidelity to it: final {rec['fidelity_final']:.4f}")
    if rec in d.flagged:
        d.reasons.append("WARNING: it keeps cell accuracy but loses puzzle-exact accuracy against fp32")


def decisions_json(ds: list[TargetDecision]) -> list[dict[str, Any]]:
    keep = ("model", "recipe", "depth", "exact_accuracy", "cell_accuracy", "latency_ms", "energy_uj", "flash_total",
            "ram_inference_peak")
    def brief(r):
        return {k: (None if pd.isna(r.get(k)) else r.get(k)) for k in keep}
    return [{"target": d.target, "budgets": d.budgets, "recommended": brief(d.recommended) if d.recommended else None,
             "reasons": d.reasons, "pareto": [brief(r) for r in d.pareto],
             "meeting_budgets": [label(r) for r in d.meeting],
             "flagged_cell_kept_exact_lost": [label(r) for r in d.flagged],
             "not_fitting": [{"config": label(r), "why": r["why"]} for r in d.not_fitting]} for d in ds]
