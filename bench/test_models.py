"""Whole models on the emulated targets: emulated instructions per puzzle divided by the MACs of the
depth, for every zoo model at int8 and int4-pc on every target, with the per-operation profile's top
costs (RUN flag PROFILE, harness/profile.py).

    python -m pytest bench/test_models.py -q -s            # every model x recipe x target; the table at the end
    python -m pytest bench/test_models.py -q -s --target mps2-an386 -k sudoku6

The measurement is the one of the firmware-speed issue: depth 1,2,2 (T = 1, n = 2, two steps, no
halting: 6 network evaluations), two held-out puzzles (seed 1000), instructions per puzzle (QEMU
-icount shift=0: SysTick ticks x 1e9 / clock, never cycles) over MACs per puzzle
(``macs_per_inference`` at that depth). Each puzzle also runs with PROFILE: the parts must add up to
the count exactly and the answers must not change. The table is written to build/bench/models.md and
models.json and printed at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.depth import Depth
from harness.export.exporter import export_blob
from harness.models.checkpoint import load_checkpoint
from harness.models.trm import macs_per_inference
from harness.run import profile_puzzles, run_puzzles
from harness.tasks.puzzle_source import load_puzzle_source

ZOO = ["sudoku6-mlp", "sudoku6-attention", "maze7-mlp", "maze7-attention", "arc1x12-mlp", "arc1x12-attention"]
RECIPES = ["int8", "int4-pc"]
DEPTH = "1,2,2"
PUZZLES = 2
OUT = Path(__file__).resolve().parent.parent / "build" / "bench"
_ROWS: list[dict] = []


@pytest.fixture(scope="module")
def table(request):
    yield _ROWS
    if not _ROWS:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "models.json").write_text(json.dumps(_ROWS, indent=1) + "\n")
    lines = ["| model | recipe | target | instructions / puzzle | MACs / puzzle | instructions / MAC | top operations (share) |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in sorted(_ROWS, key=lambda r: (r["model"], r["recipe"], r["target"])):
        lines.append(f"| {r['model']} | {r['recipe']} | {r['target']} | {r['instructions']:,.0f} | {r['macs']:,} | "
                     f"{r['instructions_per_mac']:.2f} | {r['top']} |")
    (OUT / "models.md").write_text("\n".join(lines) + "\n")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.section(f"whole models at depth {DEPTH}: emulated instructions per MAC (QEMU -icount shift=0)")
        for line in lines:
            tr.write_line(line)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("model", ZOO)
def test_whole_model_cost(table, target, model, recipe):
    from harness.boards.qemu import QemuBoard, qemu_missing
    from harness.targets import load_target
    if (msg := qemu_missing()):
        pytest.skip(msg)
    net, task, _ = load_checkpoint(model)
    blob = export_blob(model, recipe)
    _, items = load_puzzle_source(task, str(PUZZLES), 1000)
    d = Depth.parse(DEPTH, None)
    b = QemuBoard(load_target(target), blob=blob, board_id=f"bench-{target}")
    b.start(timeout=60.0)
    try:
        plain = run_puzzles(b, blob, task, items, d)
        prof = profile_puzzles(b, blob, task, items, d, plain["rows"])
    finally:
        b.close()
    s = plain["summary"]
    assert s["golden_match"] == s["puzzles"], "the firmware must agree with golden bit for bit"
    assert prof["parts_counter"] == prof["total_counter"]
    assert s["counts_kind"] == "instructions"
    macs = macs_per_inference(net.cfg, d.T, d.n, d.steps)
    per_puzzle = sum(r["instructions"] for r in plain["rows"]) / len(plain["rows"])
    ops = sorted(prof["ops"], key=lambda r: -r["counts"])[:3]
    table.append({"model": model, "recipe": recipe, "target": target, "depth": DEPTH, "puzzles": PUZZLES,
                  "instructions": per_puzzle, "macs": macs, "instructions_per_mac": per_puzzle / macs,
                  "top": ", ".join(f"{r['op']} {r['share']:.0%}" for r in ops),
                  "profile": [{k: r[k] for k in ("op", "calls", "counts", "share", "counts_per_mac") if k in r}
                              for r in prof["ops"]],
                  "marks_share": prof["marks_share"]})
