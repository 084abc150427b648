"""The per-operation profile (RUN flag PROFILE, harness/profile.py): the parts add up to the run's count
exactly, the answers do not change, the marks cost little and that cost is stated, on the host build
and on every QEMU target."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from harness import profile as PR
from harness.boards import protocol as P
from harness.boards.base import RunRequest
from harness.depth import Depth
from harness.export import blob as B
from harness.export.exporter import export_blob
from harness.models.checkpoint import load_checkpoint
from harness.run import profile_puzzles, run_puzzles
from harness.tasks.puzzle_source import load_puzzle_source

def test_the_profile_section_parses_in_ops_order_and_the_table_adds_up():
    raw = b"".join(PR.ENTRY.pack(i, 10 * i) for i in range(len(PR.OPS)))
    ops = PR.parse(raw)
    assert ops[3] == (3, 30) and len(ops) == len(PR.OPS) == len(PR.NAMES)
    prof = PR.Profile(ops, sum(c for _, c in ops))
    table = prof.table({"ffn_gate_up": 2.0}, per_instruction=40.0)
    assert {r["op"] for r in table} == set(PR.NAMES[1:])          # 'other' ran 0 calls, 0 counts here
    row = next(r for r in table if r["op"] == "ffn_gate_up")
    i = PR.NAMES.index("ffn_gate_up")
    assert row["counts"] == 400.0 * i and row["macs"] == 2 * i and row["counts_per_mac"] == 200.0
    assert sum(r["share"] for r in table) == pytest.approx(1.0)


def test_macs_per_call_follow_the_shapes():
    mlp = {"hidden": 32, "seq_len": 36, "ffn_inner": 64, "vocab_size": 8, "mixer": 0, "mix_inner": 72, "heads": 4}
    m = PR.macs_per_call(mlp)
    assert m["mix_gate_up"] == 2 * 72 * 36 and m["mix_down"] == 36 * 72 and m["ffn_gate_up"] == 2 * 64 * 32
    att = PR.macs_per_call({**mlp, "mixer": 1})
    assert att["qkv"] * 2 == 3 * 32 * 32 and att["softmax"] == 8 * 36 and "mix_gate_up" not in att


def test_a_result_with_a_short_profile_is_refused():
    head = struct.pack("<BBHBxxxIQIIQ", 1, P.RUN_PROFILE, 2, 2, 25_000_000, 100, 0, 0, 0)
    body = head + struct.pack("<q", 0) + bytes(2) + bytes(PR.section_bytes() - 1)
    with pytest.raises(P.ProtocolError, match="too few for its profile"):
        P.parse_result(body, hidden=4)


def _profiled(open_board, target: str, model: str, recipe: str = "int8", depth: str = "1,1,2", puzzles: int = 1):
    net, task, _ = load_checkpoint(model)
    blob = export_blob(model, recipe)
    _, items = load_puzzle_source(task, str(puzzles), 1000)
    d = Depth.parse(depth, None)
    with open_board(target, blob) as b:
        plain = run_puzzles(b, blob, task, items, d)
        return b.backend, plain, profile_puzzles(b, blob, task, items, d, plain["rows"])


@pytest.mark.parametrize("model, mixer", [("sudoku6-mlp", "mlp"), ("sudoku6-attention", "attention")])
def test_the_profile_tiles_the_run_and_leaves_the_answers_alone(open_board, target, model, mixer):
    """On the selected backend (host build by default; every QEMU target with --board qemu)."""
    backend, plain, prof = _profiled(open_board, target.name, model)
    assert prof["parts_counter"] == prof["total_counter"], "the parts must tile the run"
    assert plain["summary"]["golden_match"] == plain["summary"]["puzzles"]
    ops = {r["op"]: r for r in prof["ops"]}
    expected = {"ffn_gate_up", "ffn_act", "ffn_down", "ffn_norm", "mix_norm", "z_input", "y_input", "head"}
    expected |= {"mix_gather", "mix_gate_up", "mix_act", "mix_down"} if mixer == "mlp" else \
        {"qkv", "rotary", "softmax", "values", "att_out"}
    assert expected <= set(ops), sorted(expected - set(ops))
    assert all(r["counts_per_mac"] > 0 for r in ops.values() if "counts_per_mac" in r)
    assert prof["top"] in ops
    if backend == "host":
        assert prof["counts_kind"] == "host-ns"
        return
    # emulated instructions are deterministic: the marks cost something (1-4 % on the zoo shapes), it is stated
    assert prof["counts_kind"] == "instructions"
    assert 0 < prof["marks_share"] < 0.06, prof["marks_share"]
    assert prof["total"] == pytest.approx(prof["plain_total"] + prof["marks_cost"])


def test_an_unknown_run_flag_names_the_known_ones(board, default_blob):
    L = B.read_header(default_blob)["seq_len"]
    if True:
        b = board
        payload = bytearray(RunRequest(np.zeros(L, np.uint8), 1, 1, 1).payload())
        payload[3] = 16
        with pytest.raises(P.BoardError, match="8 PROFILE"):
            b.request(P.RUN, bytes(payload), 10.0, expect=P.RESULT)
