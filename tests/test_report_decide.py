"""The report's statistics and decisions on hand-made tables (no board needed): intervals, the paired
test, Pareto, ties broken by cost, budgets judged on the interval, the cell-kept/exact-lost flag and the
regression gate that does not flap."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness import stats as S
from harness.report.baseline import compare
from harness.report.decide import decide, pareto
from harness.report.tables import KEY

TARGET = "mps2-an386"


# --- harness.stats against values worked out by hand ------------------------------------------------
def test_wilson_matches_the_textbook_values():
    lo, hi = S.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = S.wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert all(math.isnan(v) for v in S.wilson(0, 0))


def test_the_exact_mcnemar_test_is_a_binomial_test_on_the_discordant_puzzles():
    a = [True] * 10 + [False] * 6
    b = [True] * 16                 # B solves 6 puzzles A does not, A none that B does not
    c = S.paired(a, b)
    assert (c.only_a, c.only_b) == (0, 6)
    assert c.p_value == pytest.approx(2 * 0.5 ** 6)          # two-sided binomial(6, 1/2) at 0
    assert c.differs(0.95)
    one = S.paired([True] * 15 + [False], [True] * 16)
    assert one.p_value == 1.0 and not one.differs()
    assert S.paired([True, False], [True, False]).p_value == 1.0
    with pytest.raises(ValueError, match="same puzzles"):
        S.paired([True], [True, False])


def test_different_puzzles_fall_back_to_fishers_exact_test():
    c = S.compare({"a": True, "b": True}, {"c": False, "d": False})
    assert c.test == S.FISHER and c.p_value == pytest.approx(1 / 3)


def test_the_puzzles_an_interval_width_needs_is_the_smallest_count_that_reaches_it():
    for width in (0.3, 0.2, 0.1):
        n = S.puzzles_for_width(width)
        from statsmodels.stats.proportion import proportion_confint
        w = lambda k: (lambda lo_hi: lo_hi[1] - lo_hi[0])(proportion_confint(0.5 * k, k, 0.05, "wilson"))  # noqa: E731
        assert w(n) <= width < w(n - 1)
    assert S.puzzles_for_width(0.2, accuracy=0.95) < S.puzzles_for_width(0.2)
    with pytest.raises(ValueError):
        S.puzzles_for_width(0)


def test_the_cell_interval_is_over_puzzles_and_stays_in_zero_one():
    lo, hi = S.mean_interval([1.0, 1.0, 0.9, 1.0])
    assert 0.0 <= lo < 0.975 < hi == 1.0
    assert S.mean_interval([1.0, 1.0]) == (1.0, 1.0)


# --- hand-made runs ----------------------------------------------------------------------------------
def run(configs: dict[str, dict], fp32: dict[str, list[bool]] | None = None) -> dict[str, pd.DataFrame]:
    """Tables as ``tables.tables`` makes them, from {label: {solved: [bool], latency_ms, ...}}."""
    rows, puzzles, host_puzzles = [], [], []
    for name, c in configs.items():
        model, recipe, depth = name.split()
        solved = c["solved"]
        n = len(solved)
        cells = c.get("cells", [1.0 if s else 0.9 for s in solved])
        r = {"model": model, "recipe": recipe, "depth": depth, "target": c.get("target", TARGET), "puzzles": n,
             "board_failures": c.get("board_failures", 0), "exact_accuracy": sum(solved) / n,
             "cell_accuracy": sum(cells) / n, "latency_ms": c["latency_ms"], "energy_uj": c.get("energy_uj", c["latency_ms"]),
             "latency_basis": "estimate", "blob_bytes": c.get("flash", 1000), "flash_total": c.get("flash", 1000),
             "flash_limit": 10_000, "ram_static": 500, "ram_limit": 10_000, "ram_inference_peak": c.get("ram", 100),
             "fits_flash": c.get("fits_flash", True), "fits_ram": True, "fidelity_final": 0.99}
        r.update(S.intervals(sum(solved), n, cells))
        if fp32 and depth in fp32:
            ref = fp32[depth]
            r["fp32_exact_accuracy"], r["fp32_cell_accuracy"] = sum(ref) / len(ref), c.get("fp32_cell", r["cell_accuracy"])
            host_puzzles += [{"model": model, "recipe": "fp32", "depth": depth, "puzzle_id": f"p{i}", "correct": v,
                              "cell_accuracy": 1.0} for i, v in enumerate(ref)]
        rows.append(r)
        puzzles += [{"model": model, "recipe": recipe, "depth": depth, "target": r["target"], "puzzle_id": f"p{i}",
                     "status": "ok", "correct": s, "cell_accuracy": cl} for i, (s, cl) in enumerate(zip(solved, cells))]
    host_puzzles = pd.DataFrame(host_puzzles).drop_duplicates(["model", "recipe", "depth", "puzzle_id"]) \
        if host_puzzles else pd.DataFrame(columns=["model", "recipe", "depth", "puzzle_id", "correct", "cell_accuracy"])
    return {"configs": pd.DataFrame(rows).sort_values(KEY).reset_index(drop=True), "puzzles": pd.DataFrame(puzzles),
            "host": pd.DataFrame(), "host_puzzles": host_puzzles}


PLAN = {"budgets": {"*": {"latency_ms": 1000}}, "statistics": {"confidence": 0.95, "accuracy_budget": "lower_bound"}}


def one(t, plan=PLAN):
    (d,) = decide(t, plan)
    return d


def test_a_tie_is_named_and_broken_by_cost():
    t = run({"m int8 T1": {"solved": [True] * 40, "latency_ms": 100},
             "m int4 T1": {"solved": [True] * 39 + [False], "latency_ms": 10}})
    d = one(t)
    assert d.best["recipe"] == "int8"
    assert d.recommended["recipe"] == "int4", "one puzzle must not decide: the cheaper tied configuration wins"
    assert [r["recipe"] for r in d.tied] == ["int4"]
    text = " ".join(d.reasons)
    assert "statistically tied" in text and "by cost" in text and "m int4 T1" in text and "McNemar" in text
    assert [r["recipe"] for r in d.runners_up] == ["int8"]


def test_a_real_difference_is_not_a_tie():
    t = run({"m int8 T1": {"solved": [True] * 40, "latency_ms": 100},
             "m int4 T1": {"solved": [True] * 25 + [False] * 15, "latency_ms": 10}})
    d = one(t, {"budgets": {}})
    assert d.recommended["recipe"] == "int8" and not d.tied
    assert d.against_best["m int4 T1"].differs()


def test_the_accuracy_budget_is_judged_on_the_lower_bound_or_the_point_as_the_plan_says():
    t = run({"m int8 T1": {"solved": [True] * 37 + [False] * 3, "latency_ms": 100}})   # 92.5%, lower bound ~80%
    lower = {"budgets": {"*": {"min_exact_accuracy": 0.9}}, "statistics": {"accuracy_budget": "lower_bound"}}
    point = {"budgets": {"*": {"min_exact_accuracy": 0.9}}, "statistics": {"accuracy_budget": "point"}}
    d = one(t, lower)
    assert d.recommended is None and "lower bound of puzzle-exact" in " ".join(d.reasons)
    assert one(t, point).recommended["recipe"] == "int8"
    assert one(t, {"budgets": {"*": {"min_exact_accuracy": 0.9}}}).recommended is None   # lower bound is the default


def test_pareto_drops_what_another_configuration_beats_everywhere():
    t = run({"m a T1": {"solved": [True] * 10, "latency_ms": 10},
             "m b T1": {"solved": [True] * 9 + [False], "latency_ms": 20},     # worse and slower: dominated
             "m c T1": {"solved": [True] * 8 + [False] * 2, "latency_ms": 5}})
    front = pareto(t["configs"].to_dict("records"))
    assert sorted(r["recipe"] for r in front) == ["a", "c"]


def test_failing_and_unfitting_configurations_are_excluded_with_the_reason():
    t = run({"m a T1": {"solved": [True] * 10, "latency_ms": 10, "board_failures": 1},
             "m b T1": {"solved": [True] * 10, "latency_ms": 10, "fits_flash": False},
             "m c T1": {"solved": [True] * 10, "latency_ms": 50}})
    d = one(t)
    assert d.recommended["recipe"] == "c"
    assert {r["recipe"]: r["why"] for r in d.not_fitting} == {"a": "board failures",
                                                              "b": "does not fit flash (blob larger than the blob region)"}


def test_cell_kept_exact_lost_is_flagged_with_its_paired_test_against_fp32():
    fp32 = {"T1": [True] * 30}
    t = run({"m int4 T1": {"solved": [True] * 18 + [False] * 12, "cells": [1.0] * 18 + [0.97] * 12,
                           "latency_ms": 10, "fp32_cell": 1.0},
             "m int8 T1": {"solved": [True] * 30, "latency_ms": 20, "fp32_cell": 1.0}}, fp32)
    d = one(t, {"budgets": {}})
    assert [r["recipe"] for r in d.flagged] == ["int4"]
    c = d.against_fp32["m int4 T1"]
    assert (c.only_a, c.only_b) == (0, 12) and c.differs()


# --- the gate ----------------------------------------------------------------------------------------
def gate(old, new, **th):
    return compare(old, new, {"exact_accuracy_drop": 0.02, "cell_accuracy_drop": 0.01, **th}, 0.95)


def test_an_identical_rerun_passes_the_gate():
    cfg = {"m int8 T1": {"solved": [True] * 38 + [False] * 2, "latency_ms": 100}}
    assert gate(run(cfg), run(cfg)) == []


def test_a_one_puzzle_wobble_passes_with_a_note():
    old = run({"m int8 T1": {"solved": [True] * 38 + [False] * 2, "latency_ms": 100}})
    new = run({"m int8 T1": {"solved": [True] * 37 + [False] * 3, "latency_ms": 100}})   # -2.5 points > 2
    (ch,) = [c for c in gate(old, new) if c.metric == "exact_accuracy"]
    assert not ch.regression
    assert "not beyond chance" in ch.note and "McNemar" in ch.note


def test_a_real_regression_fails_the_gate():
    old = run({"m int8 T1": {"solved": [True] * 40, "latency_ms": 100}})
    new = run({"m int8 T1": {"solved": [True] * 30 + [False] * 10, "latency_ms": 100}})
    regs = {c.metric for c in gate(old, new) if c.regression}
    assert regs == {"exact_accuracy", "cell_accuracy"}


def test_latency_and_memory_keep_exact_thresholds():
    old = run({"m int8 T1": {"solved": [True] * 4, "latency_ms": 100, "flash": 1000}})
    new = run({"m int8 T1": {"solved": [True] * 4, "latency_ms": 103, "flash": 1001}})
    regs = {c.metric: c.regression for c in compare(old, new, {"latency_increase": 0.02}, 0.95)}
    assert regs == {"latency_ms": True, "flash_total": True}
    ok = run({"m int8 T1": {"solved": [True] * 4, "latency_ms": 101, "flash": 1000}})
    assert not any(c.regression for c in compare(old, ok, {"latency_increase": 0.02}, 0.95))


# --- the plots ---------------------------------------------------------------------------------------
def test_the_cost_plot_draws_intervals_at_zero_and_full_accuracy_and_tags_the_recommendation():
    from harness.report.plots import cost_vs_accuracy, memory_vs_limits
    t = run({"m a T1": {"solved": [False] * 10, "latency_ms": 10},      # 0 of 10: the lower bound is 0 exactly
             "m b T1": {"solved": [True] * 10, "latency_ms": 20}})
    assert S.wilson(0, 10)[0] == 0.0 and S.wilson(10, 10)[1] == 1.0
    png = cost_vs_accuracy(t["configs"], decide(t, {"budgets": {}}))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert memory_vs_limits(t["configs"])[:4] == b"\x89PNG"


def test_every_plot_of_a_real_run_renders(tmp_path):
    import shutil
    from pathlib import Path

    from harness.report.plots import all_plots
    from harness.report.tables import load_run, tables
    example = Path(__file__).resolve().parents[1] / "reports" / "example"
    shutil.copytree(example, tmp_path / "run", ignore=shutil.ignore_patterns("farm.lock"))
    rd = load_run(tmp_path / "run")
    t = tables(rd)
    plots = all_plots(t, decide(t, rd.plan))
    assert set(plots) == {"exact_vs_cell", "fidelity", "depth_macs", "cost", "memory"}
    assert all(png[:4] == b"\x89PNG" for _, png in plots.values())
