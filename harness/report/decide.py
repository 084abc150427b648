"""Deployment decisions per target, from the run's tables and the plan's budgets and [statistics].

For each target:
  - fits: the firmware and the blob fit flash, the image's static RAM fits RAM, and no puzzle ended in a
    board failure;
  - meets budgets: latency (at the target clock) and energy proxy exactly (emulator counts are
    deterministic); puzzle-exact accuracy as the plan's ``accuracy_budget`` says: the lower bound of its
    interval (the default) or the point estimate;
  - the Pareto front of the fitting configurations over puzzle-exact accuracy (higher), latency, energy
    and memory (flash + inference RAM; lower), on point estimates;
  - one recommendation: the most accurate configuration meeting the budgets sets the bar; every
    configuration meeting the budgets that the paired test on the same puzzles cannot tell from it is
    **tied** with it; among the tied the cheapest wins (lowest latency, then smallest flash + inference
    RAM), and the reasons say so; the runners-up are the other tied ones, then the next most accurate;
  - flagged: configurations that keep cell accuracy (within 2 points of fp32) but lose puzzle-exact
    accuracy (10 points or more below fp32), the failure the harness exists to show; the paired test
    against fp32 on the host says whether the loss is beyond chance on these puzzles.

The tests and intervals are ``harness.stats``'s; their level is the plan's [statistics] confidence.
Configurations of random-weight models (``cost_only``: shape presets) take no part in any of this: they
are listed apart (``TargetDecision.cost_only``) with their cost and fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import stats as S
from .tables import KEY, confidence

CELL_KEPT = 0.02
EXACT_LOST = 0.10
RUNNERS_UP = 3
FLAG_RULE = (f"Keep cell accuracy but lose puzzle-exact accuracy against fp32 (cell within {100 * CELL_KEPT:g} points, "
             f"puzzle-exact {100 * EXACT_LOST:g} or more points below)")


@dataclass
class TargetDecision:
    target: str
    budgets: dict[str, Any]
    confidence: float = S.CONFIDENCE
    accuracy_budget: str = "lower_bound"
    fitting: list[dict] = field(default_factory=list)
    meeting: list[dict] = field(default_factory=list)
    pareto: list[dict] = field(default_factory=list)
    recommended: dict | None = None
    best: dict | None = None                     # the most accurate configuration meeting the budgets
    tied: list[dict] = field(default_factory=list)         # meeting the budgets, not distinguishable from best
    against_best: dict[str, S.Comparison] = field(default_factory=dict)   # label -> test against best
    runners_up: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    flagged: list[dict] = field(default_factory=list)
    against_fp32: dict[str, S.Comparison] = field(default_factory=dict)
    not_fitting: list[dict] = field(default_factory=list)
    cost_only: list[dict] = field(default_factory=list)   # random-weight models: cost and fit, no decision


def label(r: dict | pd.Series) -> str:
    return f"{r['model']} {r['recipe']} {r['depth']}"


def _memory(r) -> float:
    return float((r.get("flash_total") or 0) + (r.get("ram_inference_peak") or 0))


def _pct(v) -> str:
    return f"{100 * v:.1f}%"


def energy_text(v, prefix: str = "") -> str:
    """An energy proxy in uJ, or why there is none (host-ns counts have no energy model)."""
    if v is None or pd.isna(v):
        return "no energy proxy (the counts are not instructions or cycles)"
    return f"{prefix}{float(v):.0f} uJ"


def accuracy_text(r: dict, name: str = "exact_accuracy", conf: float = S.CONFIDENCE) -> str:
    """'95.8% [86.0, 98.8]' with the interval when the row has it."""
    lo, hi = r.get(f"{name}_lo"), r.get(f"{name}_hi")
    if lo is None or pd.isna(lo):
        return _pct(r[name])
    return f"{_pct(r[name])} [{100 * lo:.1f}, {100 * hi:.1f}]"


def budgets_for(plan: dict[str, Any], target: str) -> dict[str, Any]:
    b = dict(plan.get("budgets", {}).get("*", {}))
    b.update({k: v for k, v in plan.get("budgets", {}).get(target, {}).items() if v is not None})
    return {k: v for k, v in b.items() if v is not None}


def misses(r: dict, budgets: dict[str, Any], rule: str = "lower_bound") -> list[str]:
    out = []
    if "latency_ms" in budgets and not (r.get("latency_ms", np.inf) <= budgets["latency_ms"]):
        out.append(f"latency {r.get('latency_ms', float('nan')):.1f} ms > {budgets['latency_ms']:g} ms")
    if "energy_uj" in budgets and not (r.get("energy_uj", np.inf) <= budgets["energy_uj"]):
        out.append(f"energy {r.get('energy_uj', float('nan')):.0f} uJ > {budgets['energy_uj']:g} uJ")
    if "min_exact_accuracy" in budgets:
        floor = budgets["min_exact_accuracy"]
        judged = r.get("exact_accuracy_lo") if rule == "lower_bound" else r.get("exact_accuracy")
        if judged is None or pd.isna(judged) or not judged >= floor:
            what = "the lower bound of puzzle-exact" if rule == "lower_bound" else "puzzle-exact"
            shown = "nan" if judged is None or pd.isna(judged) else _pct(judged)
            out.append(f"{what} {shown} < {100 * floor:.0f}%")
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


def outcomes_of(puzzles: pd.DataFrame, by: list[str], value: str = "correct") -> dict[tuple, dict[str, Any]]:
    """Per configuration (``by`` columns), each answered puzzle's ``value``: puzzle id -> solved
    (``correct``, a bool) or its cell fraction (``cell_accuracy``, a float)."""
    if puzzles is None or puzzles.empty:
        return {}
    ok = puzzles[puzzles.status == "ok"] if "status" in puzzles else puzzles
    cast = bool if value == "correct" else float
    return {key: dict(zip(g.puzzle_id, map(cast, g[value]))) for key, g in ok.groupby(by, sort=False)}


def decide(t: dict[str, pd.DataFrame], plan: dict[str, Any]) -> list[TargetDecision]:
    """Decisions for every target of the run's tables (``tables.tables``)."""
    configs = t["configs"]
    conf = confidence(plan)
    rule = (plan.get("statistics") or {}).get("accuracy_budget", "lower_bound")
    device = outcomes_of(t.get("puzzles"), KEY)
    host_puzzles = t.get("host_puzzles")
    fp32 = outcomes_of(host_puzzles[host_puzzles.recipe == "fp32"] if host_puzzles is not None and len(host_puzzles)
                       else None, ["model", "depth"])
    out = []
    for target, g in configs.groupby("target", sort=True):
        d = TargetDecision(target, budgets_for(plan, target), conf, rule)
        for r in g.to_dict("records"):
            if r.get("cost_only"):      # random weights: cost and fit only, never an accuracy decision
                d.cost_only.append(r)
                continue
            ran = r.get("exact_accuracy") is not None and not pd.isna(r.get("exact_accuracy"))
            if not ran or r["board_failures"] or not (r["fits_flash"] and r["fits_ram"]):
                why = ("does not fit flash (blob larger than the blob region)" if not r["fits_flash"] else
                       "board failures" if r["board_failures"] else
                       f"does not fit RAM ({r['does_not_fit']})" if not r["fits_ram"] and r.get("does_not_fit") else
                       "no device result" if not ran else "static RAM does not fit")
                d.not_fitting.append({**r, "why": why})
                continue
            d.fitting.append(r)
            if not misses(r, d.budgets, rule):
                d.meeting.append(r)
            fp_cell, fp_exact = r.get("fp32_cell_accuracy"), r.get("fp32_exact_accuracy")
            if fp_cell is not None and not pd.isna(fp_cell):
                if r["cell_accuracy"] >= fp_cell - CELL_KEPT and r["exact_accuracy"] <= fp_exact - EXACT_LOST:
                    d.flagged.append(r)
                    ref = fp32.get((r["model"], r["depth"]))
                    if ref:
                        d.against_fp32[label(r)] = S.compare(device.get(tuple(r[k] for k in KEY), {}), ref)
        d.pareto = pareto(d.fitting)
        _recommend(d, device)
        out.append(d)
    return out


def _recommend(d: TargetDecision, device: dict[tuple, dict[str, bool]]) -> None:
    level = f"{d.confidence:.0%}"
    if d.cost_only and not (d.fitting or d.not_fitting):
        d.reasons.append(f"every configuration on this target is untrained (cost only: {len(d.cost_only)}): "
                         "no accuracy decision is made")
        return
    if not d.meeting:
        d.reasons.append("no configuration meets the budgets " + ", ".join(f"{k} {v:g}" for k, v in d.budgets.items())
                         + (f"; {len(d.fitting)} fit the board" if d.fitting else "; none fits the board"))
        if d.fitting:
            best = max(d.fitting, key=lambda r: (r["exact_accuracy"], -r["latency_ms"]))
            d.reasons.append(f"closest: {label(best)} misses by " + "; ".join(misses(best, d.budgets, d.accuracy_budget)))
        return
    cost = lambda r: (r["latency_ms"], _memory(r), label(r))  # noqa: E731
    best = max(d.meeting, key=lambda r: (r["exact_accuracy"], -r["latency_ms"], -_memory(r)))
    d.best = best
    outcome = lambda r: device.get(tuple(r[k] for k in KEY), {})  # noqa: E731
    for r in d.meeting:
        if r is best:
            continue
        c = S.compare(outcome(r), outcome(best))
        d.against_best[label(r)] = c
        if not c.differs(d.confidence):
            d.tied.append(r)
    group = [best] + d.tied
    rec = min(group, key=cost)
    d.recommended = rec
    others = sorted((r for r in group if r is not rec), key=cost)
    rest = sorted((r for r in d.meeting if r not in group), key=lambda r: (-r["exact_accuracy"], cost(r)))
    d.runners_up = (others + rest)[:RUNNERS_UP]

    rule = ("its interval's lower bound" if d.accuracy_budget == "lower_bound" else "its point estimate")
    budgets = ", ".join(f"{k} {v:g}" for k, v in d.budgets.items()) or "none set"
    d.reasons.append(f"{label(rec)} meets every budget of {d.target} ({budgets}; puzzle-exact judged on {rule}) "
                     f"and fits: flash {rec['flash_total']:,} of {rec['flash_limit']:,} B, static RAM "
                     f"{rec['ram_static']:,} of {rec['ram_limit']:,} B, inference RAM peak {rec['ram_inference_peak']:,} B")
    d.reasons.append(f"puzzle-exact {accuracy_text(rec)} (cell {accuracy_text(rec, 'cell_accuracy')}) on "
                     f"{rec['puzzles']} puzzles, {level} intervals")
    if len(d.meeting) == 1:
        d.reasons.append("the only configuration meeting the budgets")
    elif not d.tied:
        d.reasons.append(f"the most accurate of the {len(d.meeting)} configurations meeting the budgets, and "
                         f"the paired test tells it from every other one at {level}")
    else:
        ties = "; ".join(f"{label(r)} {accuracy_text(r)} ({d.against_best[label(r)].describe(label(r), label(best))})"
                         for r in d.tied)
        d.reasons.append(f"the most accurate meeting the budgets is {label(best)} ({accuracy_text(best)}); "
                         f"{len(d.tied)} configuration(s) are statistically tied with it "
                         f"(the test cannot tell them apart at {level}): {ties}")
        d.reasons.append(f"among the {len(group)} tied configurations the choice is by cost: "
                         + ("it is the fastest" if rec is not best else "the most accurate is also the fastest")
                         + (f" ({rec['latency_ms']:.2f} ms against {best['latency_ms']:.2f} ms for {label(best)})"
                            if rec is not best else ""))
    d.reasons.append(f"latency {rec['latency_ms']:.2f} ms ({rec['latency_basis']}), "
                     f"{energy_text(rec.get('energy_uj'), 'energy proxy ')}, {rec['blob_bytes']:,} B blob")
    if rec.get("fp32_exact_accuracy") is not None and not pd.isna(rec.get("fp32_exact_accuracy")):
        d.reasons.append(f"the fp32 model on the host scores {accuracy_text(rec, 'fp32_exact_accuracy')} puzzle-exact "
                         f"on the same puzzles; carry fidelity to it: final {rec['fidelity_final']:.4f}")
    if rec in d.flagged:
        d.reasons.append("WARNING: it keeps cell accuracy but loses puzzle-exact accuracy against fp32")


def brief(r: dict) -> dict[str, Any]:
    keep = ("model", "recipe", "depth", "exact_accuracy", "exact_accuracy_lo", "exact_accuracy_hi", "cell_accuracy",
            "latency_ms", "energy_uj", "flash_total", "flash_limit", "ram_static", "ram_limit", "ram_inference_peak")
    return {k: (None if r.get(k) is None or pd.isna(r.get(k)) else r.get(k)) for k in keep}


def decisions_json(ds: list[TargetDecision]) -> list[dict[str, Any]]:
    return [{"target": d.target, "budgets": d.budgets, "confidence": d.confidence, "accuracy_budget": d.accuracy_budget,
             "recommended": brief(d.recommended) if d.recommended else None,
             "most_accurate": label(d.best) if d.best else None,
             "tied_with_most_accurate": [{"config": label(r), **d.against_best[label(r)].as_dict()} for r in d.tied],
             "runners_up": [brief(r) for r in d.runners_up],
             "reasons": d.reasons, "pareto": [brief(r) for r in d.pareto],
             "meeting_budgets": [label(r) for r in d.meeting],
             "flagged_cell_kept_exact_lost": [
                 {"config": label(r), **(d.against_fp32[label(r)].as_dict() if label(r) in d.against_fp32 else {})}
                 for r in d.flagged],
             "not_fitting": [{"config": label(r), "why": r["why"]} for r in d.not_fitting],
             "cost_only": [{"config": label(r), "label": r.get("label"), "fits": bool(r.get("fits")),
                            "does_not_fit": r.get("does_not_fit")} for r in d.cost_only]} for d in ds]
