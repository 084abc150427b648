"""Host speed of the golden reference: wall time per puzzle of ``IntModel.run`` before the float64-carrier
rewrite (``bench/golden_before/``, frozen copies of the old harness/golden/model.py and arith.py) and now,
on the same zoo blobs and puzzles in one process, alternating, with every output compared bit for bit.

    python -m pytest bench/test_golden.py -q --benchmark-only       # the table (bench/README.md)
    GOLDEN_BENCH_PUZZLES=32 GOLDEN_BENCH_REPS=5 python -m pytest bench/test_golden.py -q

Why a frozen copy and not ``git show <commit>:...`` at run time: the bench then needs no git history (a
shallow clone, an exported tree, a rewritten history all work), the "before" is reviewable code with a
fixed content, and it cannot silently move when the commit it names is rebased away.

Each figure is the minimum over the repetitions: the machine is shared, and the minimum is the least
disturbed run of the same work. The batch is one ``run`` call over all the puzzles, as the study
(``Compressed.run``, 128 at a time) and the farm (32 at a time) call it.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CASES = [(m, r) for m in ("sudoku6-mlp", "sudoku6-attention", "maze7-mlp") for r in ("int8", "int4-pc")]
PUZZLES = int(os.environ.get("GOLDEN_BENCH_PUZZLES", 64))
REPS = int(os.environ.get("GOLDEN_BENCH_REPS", 3))
SEED = 4242
KEYS = ("per_step", "halt_acc", "halt", "y", "z")
BEFORE = "bench_golden_before"      # the frozen package's module name (unique: bench/ may be on sys.path)


def before_module():
    """``bench/golden_before/model.py`` imported as a package of its own (it imports ``from . import arith``)."""
    if BEFORE + ".model" not in sys.modules:
        folder = Path(__file__).resolve().parent / "golden_before"
        spec = importlib.util.spec_from_file_location(BEFORE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[BEFORE] = pkg
        spec.loader.exec_module(pkg)
    return importlib.import_module(BEFORE + ".model")


def as_before(obj, old):
    """The same integer model made of the frozen classes (same dataclasses, same fields, same arrays)."""
    if dataclasses.is_dataclass(obj):
        cls = getattr(old, type(obj).__name__)
        return cls(**{f.name: as_before(getattr(obj, f.name), old) for f in dataclasses.fields(obj)})
    if isinstance(obj, list):
        return [as_before(o, old) for o in obj]
    return obj


def assert_identical(before: dict, after: dict, what: str) -> None:
    assert sorted(before) == sorted(after) == sorted(KEYS), (what, sorted(before), sorted(after))
    for k in KEYS:
        a, b = before[k], after[k]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{what} {k}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if not np.array_equal(a, b):
            bad = np.argwhere(a != b)
            raise AssertionError(f"{what} {k}: {len(bad)} entries differ, first at {tuple(bad[0])}: "
                                 f"before {a[tuple(bad[0])]}, after {b[tuple(bad[0])]}")


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


class Summary:
    """A plugin registered by the first case: the table after the run (pytest's terminal summary)."""

    def __init__(self):
        self.rows: list[dict] = []

    def pytest_terminal_summary(self, terminalreporter):
        rows, tr = self.rows, terminalreporter
        if not rows:
            return
        tr.section("golden reference: wall time per puzzle, min of repetitions (before -> after)")
        tr.write_line(f"{'model':18} {'recipe':8} {'depth':8} {'puzzles':>7} {'before ms':>10} {'after ms':>9} "
                      f"{'ratio':>6}")
        for r in rows:
            tr.write_line(f"{r['model']:18} {r['recipe']:8} {r['depth']:8} {r['puzzles']:>7} "
                          f"{r['before_ms_per_puzzle']:>10.2f} {r['after_ms_per_puzzle']:>9.2f} {r['ratio']:>5.2f}x")
        tr.write_line(f"load average (1, 5, 15 min): {rows[0]['load_start']} at the first case, "
                      f"{rows[-1]['load_end']} after the last; {REPS} repetitions, before and after alternating")


@pytest.fixture(scope="session")
def table(request) -> list[dict]:
    """Rows of the summary table printed at the end of the run."""
    pm = request.config.pluginmanager
    if not pm.has_plugin("golden-bench-summary"):
        pm.register(Summary(), "golden-bench-summary")
    return pm.get_plugin("golden-bench-summary").rows


@pytest.mark.parametrize("model,recipe", CASES, ids=["-".join(c) for c in CASES])
def test_golden_before_after(benchmark, blobs, table, model, recipe):
    from harness.export import blob as B
    from harness.models.checkpoint import checkpoint_task
    from harness.tasks import stack

    x = stack(checkpoint_task(model).generate(PUZZLES, seed=SEED, split="test"))[0]
    now = B.from_blob(blobs(model, recipe))
    then = as_before(now, before_module())
    c = now.config
    T, n, S = c["T"], c["n"], c["steps"]
    times: dict[str, list[float]] = {"before": [], "after": []}
    load_start = tuple(round(v, 2) for v in os.getloadavg())

    def alternate():
        for _ in range(REPS):
            dt, a = timed(lambda: then.run(x, T, n, S))
            times["before"].append(dt)
            dt, b = timed(lambda: now.run(x, T, n, S))
            times["after"].append(dt)
            assert_identical(a, b, f"{model} {recipe} T{T}n{n}s{S}")

    benchmark.pedantic(alternate, rounds=1, iterations=1)
    before, after = min(times["before"]) / PUZZLES * 1e3, min(times["after"]) / PUZZLES * 1e3
    row = {"model": model, "recipe": recipe, "depth": f"T{T}n{n}s{S}", "puzzles": PUZZLES, "reps": REPS,
           "before_ms_per_puzzle": round(before, 3), "after_ms_per_puzzle": round(after, 3),
           "ratio": round(before / after, 3), "load_start": load_start,
           "load_end": tuple(round(v, 2) for v in os.getloadavg())}
    benchmark.extra_info.update(row)
    table.append(row)
