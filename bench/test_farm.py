"""End-to-end farm benchmarks: puzzles per second through QEMU per target, scaling with parallel
emulated boards, the harness's overhead per puzzle (wall time minus the board's RUN request, which is
the emulated compute plus a UART round trip of about 2 ms) and the cost of a journal write. Wall-clock figures of this machine (2 cores), reported in ``extra_info``.

    python -m pytest bench/test_farm.py -q --benchmark-only
"""
from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from harness.boards.inventory import BoardSpec
from harness.farm.journal import Journal
from harness.farm.plan import plan_from_dict
from harness.farm.scheduler import farm_run
from harness.report.tables import load_run, tables

PUZZLES = 16
JOB = {"models": ["sudoku6-mlp"], "recipes": ["int8"], "depths": ["2,3,8,halt"], "puzzles": {"count": PUZZLES, "seed": 11}}
quiet = Console(file=io.StringIO())


def _needs_qemu():
    from harness.boards.qemu import qemu_missing
    if (msg := qemu_missing()):
        pytest.skip(msg)


def _farm(tmp_path, targets: list[str], boards: list[BoardSpec]) -> tuple[float, object]:
    out = tmp_path / f"run-{time.monotonic_ns()}"
    plan = plan_from_dict({**JOB, "targets": targets}, "bench")
    t0 = time.monotonic()
    farm_run(plan, boards, out, console=quiet, log=lambda m: None)
    return time.monotonic() - t0, load_run(out)


@pytest.mark.parametrize("target_name", ["mps2-an386", "mps3-an547", "netduinoplus2"])
def test_puzzles_per_second_through_qemu(benchmark, tmp_path, target_name):
    _needs_qemu()
    run_wall, rd = benchmark.pedantic(lambda: _farm(tmp_path, [target_name], [BoardSpec("q", "qemu", target_name)]),
                                      rounds=1, iterations=1)
    rows = [r for r in rd.results if r["status"] == "ok"]
    assert len(rows) == PUZZLES and all(r["golden_match"] for r in rows)
    wall = sum(r["wall_s"] for r in rows) / len(rows)
    device = sum(r["device_wall_s"] for r in rows) / len(rows)
    instr = sum(r["instructions"] for r in rows) / len(rows)
    benchmark.extra_info.update({
        "target": target_name, "puzzles": len(rows), "puzzles_per_s": 1 / wall,
        "wall_s_per_puzzle": wall, "instructions_per_puzzle": instr,
        "device_s_per_puzzle": device, "emulated_instructions_per_s": instr / device,
        "loop_overhead_s_per_puzzle": wall - device,
        # everything else the run does (host figures, golden batches, QEMU start, journal), spread per puzzle
        "run_wall_s": run_wall, "run_overhead_s_per_puzzle": (run_wall - device * len(rows)) / len(rows)})


@pytest.mark.parametrize("boards", [1, 2])
def test_scaling_with_parallel_emulated_boards(benchmark, tmp_path, boards):
    """Two jobs (int8 and int4-naive) on one target, served by 1 or 2 QEMU boards of it (2 host cores)."""
    _needs_qemu()
    specs = [BoardSpec(f"q{i}", "qemu", "mps2-an386") for i in range(boards)]

    def run():
        out = tmp_path / f"run-{time.monotonic_ns()}"
        plan = plan_from_dict({**JOB, "recipes": ["int8", "int4-naive"], "targets": ["mps2-an386"]}, "bench")
        farm_run(plan, specs, out, console=quiet, log=lambda m: None)
        rows = load_run(out).results
        return sum(1 for r in rows if r["status"] == "ok"), load_run(out)

    t0 = time.monotonic()
    done, rd = benchmark.pedantic(run, rounds=1, iterations=1)
    assert done == 2 * PUZZLES
    busy = sum(r["wall_s"] for r in rd.results)
    wall = time.monotonic() - t0
    benchmark.extra_info.update({"boards": boards, "puzzles": done, "puzzle_wall_s_sum": busy,
                                 "run_wall_s": wall, "puzzles_per_s": done / wall})


def test_journal_write_cost(benchmark, tmp_path):
    """One committed, fsynced row (WAL, synchronous=FULL): the price of losing nothing."""
    j = Journal.in_dir(tmp_path)
    row = {"correct": True, "cell_accuracy": 1.0, "instructions": 123456789, "steps": 2, "stack_bytes": 1234}
    n = iter(range(10**9))
    benchmark(lambda: j.record("run", "job", f"p{next(n)}", "ok", "board", 1, row))
    benchmark.extra_info["rows"] = len(j.results("run"))
    j.close()


def test_report_tables_are_deterministic(tmp_path):
    """Not a benchmark: the bench farm's tables from two runs are equal (the figures above compare)."""
    _needs_qemu()
    a = tables(_farm(tmp_path, ["mps2-an386"], [BoardSpec("q", "qemu", "mps2-an386")])[1])
    b = tables(_farm(tmp_path, ["mps2-an386"], [BoardSpec("q", "qemu", "mps2-an386")])[1])
    for k in a:
        assert a[k].equals(b[k]), k


def test_two_boards_against_one_in_one_run(tmp_path):
    """Throughput of 2 emulated boards against 1 on this 2-core machine, both measured in this one test
    (the same two jobs: sudoku6-attention at int8 and int4-naive, 2,3,8 without halting, 32 puzzles each,
    on mps2-an386). Throughput is over the board phase: the puzzles divided by the longest board's summed
    puzzle walls (each board runs its puzzles one after another, the boards side by side), so the host
    figures and golden batches before it, which run once whatever the boards, do not dilute the ratio; the
    whole run's ratio is reported beside it. Idle boards sleep (WFI, firmware/ports/port.h), so a board
    waiting for its next request leaves its core to the other. The target is 1.7x on an idle machine: the
    ratio is printed and written to build/bench/farm_scaling.json; the assertion is only that 2 boards
    beat 1."""
    import json
    import os
    from pathlib import Path
    _needs_qemu()
    load_before = os.getloadavg()
    puzzles = 32
    job = {"models": ["sudoku6-attention"], "recipes": ["int8", "int4-naive"], "depths": ["2,3,8"],
           "targets": ["mps2-an386"], "puzzles": {"count": puzzles, "seed": 11},
           "run": {"profile_puzzles": 0, "trace": "off", "max_parallel": 2}}
    out = {}
    for boards in (1, 2):
        folder = tmp_path / f"boards-{boards}"
        t0 = time.monotonic()
        farm_run(plan_from_dict(job, "bench"), [BoardSpec(f"q{i}", "qemu", "mps2-an386") for i in range(boards)],
                 folder, console=quiet, log=lambda m: None)
        run_wall = time.monotonic() - t0
        rows = [r for r in load_run(folder).results if r["status"] == "ok"]
        assert len(rows) == 2 * puzzles and all(r["golden_match"] for r in rows)
        per_board: dict[str, float] = {}
        for r in rows:
            per_board[r["board"]] = per_board.get(r["board"], 0.0) + r["wall_s"]
        phase = max(per_board.values())
        out[boards] = {"boards": boards, "puzzles": len(rows), "board_phase_s": phase, "run_wall_s": run_wall,
                       "puzzles_per_s": len(rows) / phase, "run_puzzles_per_s": len(rows) / run_wall,
                       "puzzles_per_board": {b: sum(1 for r in rows if r["board"] == b) for b in per_board}}
    ratio = out[2]["puzzles_per_s"] / out[1]["puzzles_per_s"]
    whole = out[2]["run_puzzles_per_s"] / out[1]["run_puzzles_per_s"]
    summary = {"ratio_board_phase": ratio, "ratio_whole_run": whole, "target": 1.7, "cores": os.cpu_count(),
               "load_before": load_before, "runs": out}
    dest = Path(__file__).resolve().parent.parent / "build" / "bench"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "farm_scaling.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n2 boards vs 1 on {os.cpu_count()} cores: {ratio:.2f}x over the board phase "
          f"({out[1]['puzzles_per_s']:.2f} -> {out[2]['puzzles_per_s']:.2f} puzzles/s), {whole:.2f}x over the whole "
          f"run ({out[1]['run_wall_s']:.1f} s -> {out[2]['run_wall_s']:.1f} s); target 1.7x")
    assert ratio > 1.0
