"""The firmware path: protocol framing, the protocol server (host build and QEMU), bit-exactness of
the boards against the golden reference, firmware builds.

Device tests use the ``board`` and ``open_board`` fixtures of the harness pytest plugin: ``--board host``
(the default: the firmware core built for this machine), ``--board qemu`` (what the README and CI run)
or ``renode``; ``--target`` narrows the targets.
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import torch
import pytest

from harness.boards import protocol as P
from harness.boards.base import RunRequest
from harness.export import blob as B
from harness.targets import Region
from harness.tasks import stack

# arc1x12-mlp: hidden 64 and an 11-row int16 head, the odd last pair of rows the DSP path computes
# twice (its placeholder stores once overwrote finished rows of the head there)
CI_CASES = [("sudoku6-mlp", "int8"), ("sudoku6-attention", "int4-pc"), ("arc1x12-mlp", "int8")]
FULL_CASES = [(m, r) for m in ("sudoku6-mlp", "sudoku6-attention") for r in ("int8", "int4-pc")]


def held_out(zoo_model, model: str, n: int, seed: int = 4242):
    _, task, _ = zoo_model(model)
    return task, stack(task.generate(n, seed=seed, split="test"))


# --- framing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 253, 254, 255, 507, 508, 509, 1000])
def test_cobs_round_trip_and_no_zero_bytes(n):
    rng = np.random.default_rng(n)
    for zeros in (0.0, 0.05, 0.5):
        data = bytes(np.where(rng.random(n) < zeros, 0, rng.integers(1, 256, n)).astype(np.uint8))
        enc = P.cobs_encode(data)
        assert 0 not in enc
        assert len(enc) <= len(data) + len(data) // 254 + 1
        assert P.cobs_decode(enc) == data


def test_cobs_rejects_bad_blocks():
    with pytest.raises(P.ProtocolError):
        P.cobs_decode(b"\x05ab")          # block runs past the end
    with pytest.raises(P.ProtocolError):
        P.cobs_decode(b"\x03a\x00")       # zero inside a block


def test_frame_layout_is_header_payload_crc():
    wire = P.frame(P.RUN, 0x1234, b"\x01\x02")
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    body = P.cobs_decode(wire[:-1])
    assert body[:4] == bytes([1, P.RUN, 0x34, 0x12]) and body[4:6] == b"\x01\x02"
    assert struct.unpack("<I", body[-4:])[0] == zlib.crc32(body[:-4])
    assert P.unframe(wire[:-1]) == (P.RUN, 0x1234, b"\x01\x02")


# --- the protocol server: bad input, on the host build and on a board --------------------------------------

def _exchange(board, wire: bytes, expect: int, timeout: float = 10.0) -> list[tuple[int, bytes]]:
    board.session.send_raw(wire)
    out = []
    for _ in range(expect):
        kind, seq, body = P.unframe(board.session.read_frame(timeout))
        out.append((kind, body))
    return out


def _error_code(reply) -> str:
    kind, body = reply
    assert kind == P.ERROR, f"expected an ERROR frame, got type {kind:#x}"
    return P.ERRORS[body[0]]


def _raw_body(kind: int, payload: bytes = b"", version: int = 1, seq: int = 7) -> bytes:
    body = struct.pack("<BBH", version, kind, seq) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _bad_input_checks(board, L: int):
    good = P.frame(P.PING, 99, b"still here")

    def still_serving():
        (kind, body), = _exchange(board, good, 1)
        assert kind == P.PONG and body == b"still here"

    bad_crc = bytearray(_raw_body(P.PING, b"x"))
    bad_crc[-1] ^= 0xFF
    cases = {
        "CRC": P.cobs_encode(bytes(bad_crc)) + b"\x00",
        "VERSION": P.cobs_encode(_raw_body(P.PING, version=9)) + b"\x00",
        "TRUNCATED": P.cobs_encode(b"\x01\x01\x00") + b"\x00",
        "COBS": b"\x05\x01\x02\x00",
        "COMMAND": P.cobs_encode(_raw_body(0x33)) + b"\x00",
        "OVERSIZE": bytes([7]) * 5000 + b"\x00",
        "PUZZLE": P.frame(P.RUN, 5, P.run_payload(np.ones(L + 1, np.uint8), 1, 1, 1)),
        "ARGS": P.frame(P.RUN, 6, P.run_payload(np.ones(L, np.uint8), 1, 1, 0)),
    }
    for want, wire in cases.items():
        assert _error_code(_exchange(board, wire, 1)[0]) == want, want
        still_serving()
    # a token outside the vocabulary
    assert _error_code(_exchange(board, P.frame(P.RUN, 8, P.run_payload(np.full(L, 255, np.uint8), 1, 1, 1)), 1)[0]) == "PUZZLE"
    # garbage between two good frames: the good ones are answered, the garbage gets an error
    replies = _exchange(board, good + bytes(range(1, 200)) + b"\x00" + good, 3)
    assert replies[0][0] == P.PONG and replies[2][0] == P.PONG and replies[1][0] == P.ERROR
    # a frame split across writes, with a stray delimiter before it
    wire = b"\x00" + good
    board.session.send_raw(wire[:5])
    (kind, body), = _exchange(board, wire[5:], 1)
    assert kind == P.PONG


def test_host_server_survives_bad_input(blobs, zoo_model):
    from harness.boards.host import HostBoard
    from harness.targets import load_target
    blob = blobs("sudoku6-mlp", "int8")
    with HostBoard(load_target("mps2-an386"), blob) as board:
        _bad_input_checks(board, 36)


@pytest.mark.board
def test_board_survives_bad_input(open_board, blobs):
    with open_board("mps2-an386", blobs("sudoku6-mlp", "int8")) as board:
        _bad_input_checks(board, 36)


@pytest.mark.board
@pytest.mark.board
def test_starting_a_running_board_again_stops_its_old_process(open_board, blobs):
    """`with board:` starts it; a start() inside used to leave the first emulator running, unreachable
    (the whole-model bench piled up 40 of them)."""
    with open_board("mps2-an386", blobs("sudoku6-mlp", "int8")) as board:
        old = getattr(board, "proc", None)
        if old is None:
            pytest.skip(f"{board.backend} boards run no process")
        board.start()
        assert old.poll() is not None, "the first process still runs"
        assert board.proc is not old and board.proc.poll() is None
        assert board.ping(b"again") == b"again"


def test_a_reset_board_answers_again(open_board, blobs):
    """The farm's reset: close the board and start it again (firmware and blob as before)."""
    with open_board("mps2-an386", blobs("sudoku6-mlp", "int8")) as board:
        first = board.info()
        board.close()
        board.start()
        assert board.ping(b"again") == b"again"
        assert board.info().build_id == first.build_id


def _corrupt(blob: bytes, how: str) -> bytes:
    b = bytearray(blob)
    if how == "crc":
        b[len(b) // 2] ^= 0x40
    elif how == "version":
        b[4:6] = struct.pack("<H", 4)      # versions 1 to 3 are read
    elif how == "truncated":
        b = b[:len(b) // 2]
    elif how == "missing":
        b = bytearray()
    return bytes(b)


# A missing blob reads as erased flash (0xFF: a size past the region, then no magic) on silicon and on
# the host board, as zeroed memory (size 0: truncated) on the emulated MPS2/MPS3 code memories.
BAD_BLOBS = {"crc": ("BLOB_CRC",), "version": ("BLOB_VERSION",), "truncated": ("BLOB_CRC",),
             "missing": ("BLOB_MAGIC", "BLOB_TRUNCATED")}


@pytest.mark.board
@pytest.mark.parametrize("how", sorted(BAD_BLOBS))
def test_bad_blob_is_reported_and_board_keeps_serving(open_board, board_kind, blobs, how):
    """A corrupt, wrong-version, truncated or missing blob: INFO says which, RUN is refused with a BLOB
    error, and the board still answers. (A truncated blob reads as erased flash past its end, so its
    CRC fails.)"""
    blob = _corrupt(blobs("sudoku6-mlp", "int8"), how)
    with open_board("mps2-an386", blob or None) as board:
        info = board.info()
        assert info.blob_status in BAD_BLOBS[how]
        with pytest.raises(P.BoardError) as e:
            board.run(RunRequest(np.ones(36, np.uint8), 1, 1, 1), timeout=10)
        assert e.value.name == "BLOB" and P.BLOB_STATUS[e.value.detail] == info.blob_status
        assert board.ping(b"ok") == b"ok"


# --- the work one request may ask for: bounds, overflow, errors with their numbers -----------------------------

def _bench_need(rows: int, cols: int, bits: int) -> int:
    """Arena bytes of a BENCH matrix (mn, weights, x, out) on a shape no DSP path takes (> 256 columns)."""
    row_bytes = (cols + 1) // 2 if bits == 4 else cols
    return 8 * rows + (row_bytes * rows + 7) // 8 * 8 + cols + rows


def _error(board, wire: bytes) -> tuple[str, int, str]:
    """(code name, detail, message) of the ERROR answering wire; then the board must still serve."""
    (kind, body), = _exchange(board, wire, 1, timeout=60)
    assert kind == P.ERROR, f"expected an ERROR frame, got type {kind:#x}"
    (pk, pbody), = _exchange(board, P.frame(P.PING, 98, b"alive"), 1)
    assert (pk, pbody) == (P.PONG, b"alive"), "the board stopped serving after the error"
    return P.ERRORS[body[0]], body[1], body[2:].decode("ascii")


def _bound_checks(board, L: int, arena: int):
    """Requests for more work than limits.h allows (harness/depth.py LIMITS, BENCH_LIMITS) and the BENCH
    shapes whose sizes pass 2^32: ARGS errors that name the bound and the value, never a FAULT."""
    from harness.depth import BENCH_LIMITS, LIMITS
    assert board.info().max_steps == LIMITS["steps"]
    for rows, cols, bits in ((65528, 65535, 8), (65535, 65535, 4)):
        code, _, msg = _error(board, P.frame(P.BENCH, 21, P.bench_payload(rows, cols, bits, 1)))
        assert code == "ARGS", (code, msg)
        assert msg == f"BENCH {rows}x{cols} int{bits} needs {_bench_need(rows, cols, bits)} bytes, the arena has {arena}"
    x = np.ones(L, np.uint8)
    run = lambda T, n, steps: P.frame(P.RUN, 22, P.run_payload(x, T, n, steps))   # noqa: E731
    bounds = {(LIMITS["T"] + 1, 1, 1): f"T {LIMITS['T'] + 1} > {LIMITS['T']} (TRM_MAX_T)",
              (1, LIMITS["n"] + 1, 1): f"n {LIMITS['n'] + 1} > {LIMITS['n']} (TRM_MAX_N)",
              (1, 1, 100): f"steps 100 > {LIMITS['steps']} (TRM_MAX_STEPS)",
              (255, 255, 255): f"T 255 > {LIMITS['T']} (TRM_MAX_T)",
              (16, 16, 8): f"network evaluations T*(n+1)*steps {16 * 17 * 8} > {LIMITS['evaluations']} "
                           "(TRM_MAX_EVALUATIONS)",
              (0, 1, 1): "T 0 < 1", (1, 0, 1): "n 0 < 1", (1, 1, 0): "steps 0 < 1"}
    for (T, n, steps), want in bounds.items():
        code, _, msg = _error(board, run(T, n, steps))
        assert code == "ARGS" and msg.startswith(want), ((T, n, steps), code, msg)
    code, _, msg = _error(board, P.frame(P.BENCH, 23, P.bench_payload(16, 16, 8, BENCH_LIMITS["reps"] + 1)))
    assert code == "ARGS" and msg.startswith(f"BENCH reps {BENCH_LIMITS['reps'] + 1} > {BENCH_LIMITS['reps']} "
                                             "(TRM_MAX_BENCH_REPS)"), msg
    code, _, msg = _error(board, P.frame(P.RUN, 24, P.run_payload(np.ones(L + 1, np.uint8), 1, 1, 1)))
    assert code == "PUZZLE" and msg == (f"puzzle length {L + 1} with {L + 1} token bytes (and 2 for a puzzle identifier); "
                                    f"the blob's model has L = {L}")


def test_host_server_refuses_work_beyond_the_bounds_with_the_numbers(blobs, zoo_model):
    """The host build: the bounds and the BENCH overflow (which a 64-bit size_t hid), the largest legal
    depth still runs bit-exactly, the MAC bound (reachable with a bigger arena), and the arena error."""
    from harness.boards.host import HostBoard
    from harness.depth import BENCH_LIMITS, LIMITS
    from harness.native import NativeServer
    from harness.targets import load_target
    blob = blobs("sudoku6-mlp", "int8")
    t = load_target("mps2-an386")
    with HostBoard(t, blob) as board:
        _bound_checks(board, 36, t.arena_capacity)
        _, (x, _) = held_out(zoo_model, "sudoku6-mlp", 1)
        T, n, steps = 16, 15, LIMITS["evaluations"] // (16 * 16)        # exactly at the bound: 2048
        assert T * (n + 1) * steps == LIMITS["evaluations"]
        _check_bit_exact(board, blob, x, T, n, steps)
    # rows*cols*reps*vectors > 2^30 MACs needs a matrix larger than a target's arena: a host server with
    # 4 MiB; with two vectors half the matrix is over the bound
    with NativeServer(b"", arena_capacity=4 << 20) as s:
        for rows, vectors in ((2048, 1), (1024, 2)):
            cols, reps = 1024, BENCH_LIMITS["reps"]
            kind, _, body = P.unframe(s.feed(P.frame(P.BENCH, 1, P.bench_payload(rows, cols, 8, reps, vectors)))[:-1])
            assert kind == P.ERROR and P.ERRORS[body[0]] == "ARGS"
            assert body[2:].decode().startswith(f"BENCH MACs rows*cols*reps*vectors {rows * cols * reps * vectors} > "
                                                f"{BENCH_LIMITS['macs']} (TRM_MAX_BENCH_MACS)")
    # the arena too small for the model: needed vs available bytes
    with NativeServer(blob, arena_capacity=2048) as s:
        ws = P.parse_info(P.unframe(s.feed(P.frame(P.INFO, 1))[:-1])[2]).workspace_bytes
        for embed_ram, what in ((False, "model workspace"), (True, "model with EMBED_RAM (workspace + embedding tables)")):
            wire = P.frame(P.RUN, 2, P.run_payload(x[0], 1, 1, 1, embed_ram=embed_ram))
            kind, _, body = P.unframe(s.feed(wire)[:-1])
            need = ws + (B.read_header(blob)["vocab_size"] * 32 if embed_ram else 0)
            assert kind == P.ERROR and P.ERRORS[body[0]] == "RUN" and body[1] == 10      # TRM_ERR_WORKSPACE
            assert body[2:].decode() == f"{what} needs {need} bytes, the arena has 2048"


@pytest.mark.board
def test_boards_refuse_work_beyond_the_bounds_and_the_bench_overflow(open_board, target, blobs):
    """Every target: the BENCH shapes whose sizes pass 2^32 (before: a 32-bit sum wrapped, the matrix was
    written past the arena, FAULT) and depths beyond the bounds get ARGS errors with their numbers."""
    with open_board(target.name, blobs("sudoku6-mlp", "int8")) as board:
        _bound_checks(board, 36, target.arena_capacity)


# --- bit-exactness against the golden reference --------------------------------------------------------------

def _check_bit_exact(board, blob: bytes, x: np.ndarray, T: int, n: int, steps: int):
    im = B.from_blob(blob)
    g = im.run(x, T, n, steps, keep_carries=True)
    for i in range(len(x)):
        r = board.run(RunRequest(x[i], T, n, steps, carries=True), timeout=600)
        assert r.steps_run == steps
        np.testing.assert_array_equal(r.per_step, g["per_step"][:, i], err_msg=f"predictions, puzzle {i}")
        np.testing.assert_array_equal(r.y, g["y"][-1, -1, i], err_msg=f"final y, puzzle {i}")
        np.testing.assert_array_equal(r.z, g["z"][-1, -1, i], err_msg=f"final z, puzzle {i}")
        np.testing.assert_array_equal(r.halt_acc, g["halt_acc"][:, i])


@pytest.mark.board
@pytest.mark.parametrize("model,recipe", CI_CASES)
def test_boards_are_bit_exact_with_golden(open_board, target, blobs, zoo_model, model, recipe):
    """Every target, both mixers: predictions after every step and the final carries equal golden
    (2 puzzles at a shallow depth here; the slow test runs 20 at the model's depth)."""
    blob = blobs(model, recipe)
    _, (x, _) = held_out(zoo_model, model, 2)
    with open_board(target.name, blob) as board:
        _check_bit_exact(board, blob, x, 1, 2, 2)


@pytest.fixture(scope="module")
def learned_positions_blob(zoo_model):
    """sudoku6-attention's weights with learned positions (a seeded random position table, no rotary
    positions) at int8: a version 3 blob."""
    from harness.compress import recipes as R
    from harness.models.hrm import build
    from harness.models.trm import TRMConfig

    model, task, _ = zoo_model("sudoku6-attention")
    torch.manual_seed(5)
    learned = build(TRMConfig.from_dict({**model.cfg.to_dict(), "pos_encodings": "learned"}))
    learned.load_state_dict(model.state_dict(), strict=False)
    torch.set_num_threads(1)
    return B.to_blob(R.quantize(R.BUILTIN["int8"], learned, task).int_model)


@pytest.mark.board
def test_boards_are_bit_exact_with_learned_positions(open_board, target, learned_positions_blob, zoo_model):
    """The z-update input's fourth term (the position row) and attention without rotary positions, on
    every target's kernels (portable, DSP, Helium)."""
    _, (x, _) = held_out(zoo_model, "sudoku6-attention", 2)
    assert learned_positions_blob[4] == 3
    with open_board(target.name, learned_positions_blob) as board:
        _check_bit_exact(board, learned_positions_blob, x, 1, 2, 2)


# rows x cols where the optimised linear kernels change step: every K % 4 tail (1, 2, 3) and K % 8
# half group of the DSP loop, with odd and even row counts, 16..256 columns (the DSP range), the
# Helium path's 16- and 32-column steps
KERNEL_SHAPES = [(5, 17), (6, 18), (7, 19), (8, 20), (9, 21), (4, 22), (3, 23), (11, 49), (4, 98), (33, 55),
                 (2, 255), (7, 256), (13, 36), (144, 36)]


@pytest.mark.board
@pytest.mark.parametrize("vectors", [1, 2])
@pytest.mark.parametrize("bits", [8, 4])
def test_linear_kernels_are_exact_where_their_steps_change(open_board, target, bits, vectors):
    """BENCH's generated layer on every target against the golden linear layer on the same matrix:
    checksums equal for every shape in KERNEL_SHAPES, one vector (trm_linear) and two at once
    (trm_linear_pair; BENCH's shifts put n = 32 on a row in 16, the rows the pair loop leaves to C)."""
    from harness.boards import protocol as P
    from harness.golden.arith import linear
    with open_board(target.name, None) as board:
        for rows, cols in KERNEL_SHAPES:
            w, x, M, n = P.bench_reference(rows, cols, bits, vectors)
            golden = P.bench_checksum(linear(x.reshape(vectors, cols), w, M, n))
            r = board.bench(rows, cols, bits, 1, vectors=vectors)
            assert (r.vectors, r.checksum) == (vectors, golden), f"{target.name} int{bits} {rows}x{cols} x{vectors}"


@pytest.mark.slow
@pytest.mark.board
@pytest.mark.parametrize("model,recipe", FULL_CASES)
def test_boards_are_bit_exact_on_20_puzzles_at_full_depth(open_board, target, blobs, zoo_model, model, recipe):
    blob = blobs(model, recipe)
    net, (x, _) = zoo_model(model)[0], held_out(zoo_model, model, 20)[1]
    c = net.cfg
    with open_board(target.name, blob) as board:
        _check_bit_exact(board, blob, x, c.T, c.n, c.steps)


@pytest.mark.board
def test_halting_and_embeddings_in_ram(open_board, blobs, zoo_model):
    """Halting stops where golden's halting logit first turns positive; embeddings copied to RAM give
    the same bits, use vocab x hidden more arena bytes and read that much less flash per z-update."""
    blob = blobs("sudoku6-mlp", "int8")
    im = B.from_blob(blob)
    _, (x, _) = held_out(zoo_model, "sudoku6-mlp", 3)
    g = im.run(x, 2, 3, 8, keep_carries=False)
    with open_board("mps2-an386", blob) as board:
        for i in range(len(x)):
            r = board.run(RunRequest(x[i], 2, 3, 8, halting=True))
            halted = np.flatnonzero(g["halt"][:, i])
            assert r.steps_run == (int(halted[0]) + 1 if len(halted) else 8)
            np.testing.assert_array_equal(r.per_step, g["per_step"][:r.steps_run, i])
        flash = board.run(RunRequest(x[0], 1, 1, 1))
        ram = board.run(RunRequest(x[0], 1, 1, 1, embed_ram=True))
    np.testing.assert_array_equal(flash.per_step, ram.per_step)
    D, V, L = im.config["hidden"], im.config["vocab_size"], im.config["seq_len"]
    assert ram.arena_bytes - flash.arena_bytes == V * D
    assert flash.flash_bytes_read - ram.flash_bytes_read == L * D      # one z-update reads L embedding rows


@pytest.mark.board
@pytest.mark.parametrize("recipe", ["int8", "int4-pc"])
def test_inference_ram_within_bound_of_theoretical_minimum(open_board, target, blobs, zoo_model, recipe):
    """The firmware issue's RAM bound on the smallest model, where the kernels' own memory weighs most:
    arena used + stack high-water mark of a run within 1.25x of 2·L·D + L + the model's largest working
    buffer (from its dimensions, without kernel scratch). The arena holds the whole workspace: that
    buffer, plus the DSP linear kernels' scratch on Cortex-M4/M7."""
    from harness.figures import ram_theoretical_min, working_buffer_bytes
    blob = blobs("sudoku6-mlp", recipe)
    header = B.read_header(blob)
    L, D = header["seq_len"], header["hidden"]
    work = working_buffer_bytes(header)
    assert work == L * D + L + 2 * header["mix_inner"] == 1332
    _, (x, _) = held_out(zoo_model, "sudoku6-mlp", 1)
    with open_board(target.name, blob) as board:
        info = board.info()
        r = board.run(RunRequest(x[0], 1, 1, 1))
    minimum = ram_theoretical_min(header)
    assert minimum == 2 * L * D + L + work
    assert r.arena_bytes == info.workspace_bytes >= (2 * L * D + 7) // 8 * 8 + work
    if board.backend != "host":  # the host build measures no stack
        assert 0 < r.stack_bytes and (r.arena_bytes + r.stack_bytes) / minimum <= 1.25, (target.name, r)


@pytest.mark.board
def test_board_fixture_holds_the_default_blob_and_names_its_firmware(board, target, firmware, default_blob):
    """The plugin's `board` (one per target, shared), `target` and `firmware` fixtures agree."""
    info = board.info()
    assert info.blob_status == "ok" and info.blob_size == len(default_blob) and board.target == target
    if board.backend != "host":     # the fixture's sha256 is the one the manifest recorded at build time
        manifest = json.loads((firmware.path.parent / "manifest.json").read_text())
        assert firmware.sha256 == manifest["files"]["firmware.elf"]["sha256"]
    if board.backend != "host":
        assert info.target == target.name and firmware.path == board.firmware


# --- builds ----------------------------------------------------------------------------------------------------

def test_prebuilt_firmware_manifests_match_their_files():
    import hashlib
    import json
    from harness.firmware import BIN, OUTPUTS
    from harness.targets import target_names
    for name in target_names():
        m = json.loads((BIN / name / "manifest.json").read_text())
        for f in OUTPUTS:
            assert hashlib.sha256((BIN / name / f).read_bytes()).hexdigest() == m["files"][f]["sha256"], (name, f)
        assert m["target"] == name and m["toolchain"].startswith("arm-none-eabi-gcc")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_firmware_rebuild_reproduces_the_prebuilt_binaries():
    from harness.firmware import verify
    assert verify() == []


def test_targets_describe_what_the_issue_requires():
    from harness.targets import load_target, target_names
    assert {"mps2-an386", "mps2-an500", "mps3-an547", "netduinoplus2"} <= set(target_names())
    for name in target_names():
        t = load_target(name)
        assert t.clock_hz > 0 and t.flash.size > 0 and t.ram.size > 0 and t.blob.size > 0
        assert t.qemu_machine and t.renode_platform and t.pyocd_target
        assert t.energy["active_ua_per_mhz"] > 0 and t.energy["source"]
        assert t.board_class and t.limits_source, f"{name}: its class and where its limits come from"
        static = t.rx_bytes + t.tx_bytes + t.stack_bytes
        assert static < t.ram.size, f"{name}: the firmware's buffers do not fit its RAM"


def test_blob_and_arena_take_what_the_image_leaves():
    """Per build, from the ELF: a blob sharing the code memory starts at the first aligned address after
    the image (text + data load) and runs to the end of that memory; the arena is the RAM after the
    stack (or the target's own arena region); the manifest records the same regions."""
    import json
    from elftools.elf.elffile import ELFFile
    from harness.firmware import BIN
    from harness.targets import load_target, target_names
    for name in target_names():
        t = load_target(name)
        with open(BIN / name / "firmware.elf", "rb") as f:
            elf = ELFFile(f)
            # the image in flash: every loaded segment's bytes at its load (physical) address
            image_end = max(g["p_paddr"] + g["p_filesz"] for g in elf.iter_segments()
                            if g["p_type"] == "PT_LOAD" and g["p_filesz"])
            stack = elf.get_section_by_name(".stack")
            stack_top = stack["sh_addr"] + stack["sh_size"]
        if t.blob_after_firmware:
            start = -(-image_end // t.blob_align) * t.blob_align
            assert (t.blob.origin, t.blob.end) == (start, t.flash.end), name
            assert t.firmware_region == Region(t.flash.origin, start - t.flash.origin)
        else:
            assert t.blob == t.blob_fixed, name
        if t.arena_fixed is None:
            assert (t.arena.origin, t.arena.end) == (-(-stack_top // 8) * 8, t.ram.end), name
        else:
            assert t.arena == t.arena_fixed, name
        m = json.loads((BIN / name / "manifest.json").read_text())["layout"]
        assert (m["blob"]["origin"], m["blob"]["size"], m["arena"]["origin"], m["arena"]["size"]) == \
            (t.blob.origin, t.blob.size, t.arena.origin, t.arena.size)
    an386 = load_target("mps2-an386")
    assert an386.blob.size > 4_000_000 and an386.arena.size > 4_000_000   # the 4 MB microcontroller's own


# --- the run command ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("board", ["host", "qemu"])
def test_run_command_prints_rows_and_a_summary(board, board_kind, blobs):
    """`harness run --json`: one row per puzzle with its config key, golden_match, and memory figures."""
    import json
    from typer.testing import CliRunner
    from harness.cli import app
    if board == "qemu" and board_kind != "qemu":
        pytest.skip("QEMU not selected")
    blobs("sudoku6-mlp", "int8")  # built (and cached) once for the session
    r = CliRunner().invoke(app, ["run", "--board", board, "--model", "sudoku6-mlp", "--puzzles", "2",
                                 "--depth", "1,2,2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["rows"]) == 2 and out["summary"]["golden_match"] == 2
    row = out["rows"][0]
    assert {"model", "recipe", "depth", "target", "board", "puzzle_id", "correct", "steps", "counter"} <= set(row)
    s = out["summary"]
    assert out["blob_sha256"] and s["fits"] is True and s["does_not_fit"] is None
    assert row["ram_inference_bytes"] == row["arena_bytes"] + row["stack_bytes"]
    if board == "qemu":
        assert row["instructions"] > 0 and row["stack_bytes"] > 0
        assert out["firmware_sha256"] and "not silicon cycles" in s["counts_note"]
        # mps2-an386 at 25 MHz; 3.3 V x 274 uA/MHz x 25 MHz x t
        assert row["counts_kind"] == s["counts_kind"] == "instructions"
        assert row["latency_ms"] == pytest.approx(row["instructions"] / 25e3)
        assert row["energy_uj"] == pytest.approx(3.3 * 274e-6 * 25 * row["latency_ms"] * 1e3)
        assert "one per cycle at 25 MHz" in s["latency_basis"]
        assert "274 uA/MHz" in s["energy_model"] and "DS8626" in s["energy_model"]
        assert s["counts_mean"] == pytest.approx(sum(r["instructions"] for r in out["rows"]) / 2)
    else:
        assert row["counts_kind"] == "host-ns" and row["latency_ms"] == row["counter"] / 1e6
        assert row["energy_uj"] is None and s["energy_model"].startswith("none")
    assert s["flash_total"] == s["firmware_flash"] + s["blob_bytes"] and s["flash_limit"] == 4 << 20
    assert s["ram_limit"] == 4 << 20 and s["ram_static"] > 0


def test_figures_silicon_cycles_and_what_does_not_fit():
    """A silicon configuration (DWT cycles) on the STM32F405 at 168 MHz: ms from cycles, energy from the
    datasheet figure; a blob past the blob region, a firmware image past its region and a stack past its
    reservation each make it not fit, and say so with the numbers."""
    from harness import figures as F
    from harness.targets import load_target
    t = load_target("netduinoplus2")
    f = F.config_figures(t, "serial", "cycles", [1_680_000, 1_680_000], [800, 900], [4800, 4900], 1000,
                         {"flash": 20_000, "ram": 60_000}, 4000)
    assert f["latency_ms"] == pytest.approx(10.0) and "measured" in f["latency_basis"]
    assert f["energy_uj"] == pytest.approx(3.3 * 274e-6 * 168 * 0.01 * 1e6)  # 274 uA/MHz at 168 MHz for 10 ms
    assert f["fits"] and f["flash_total"] == 21_000 and f["ram_peak_over_min"] == pytest.approx(4900 / 4000)
    big = F.fit(t, t.blob.size + 1, None)
    assert big["fits_flash"] is False and big["fits_ram"] is True and big["firmware_flash"] is None
    assert big["does_not_fit"] == f"does not fit netduinoplus2: blob {t.blob.size + 1:,} B > blob region {t.blob.size:,} B"
    image = F.fit(t, 1000, {"flash": t.firmware_flash + 1, "ram": 100})
    assert not image["fits_flash"] and "firmware image" in image["does_not_fit"] and "not the blob" in image["does_not_fit"]
    stack = F.fit(t, 1000, {"flash": 100, "ram": 100}, stack_bytes_max=9000)
    assert stack["fits_flash"] and not stack["fits_ram"]
    assert "stack high-water mark 9,000 B > stack reservation 8,192 B" in stack["does_not_fit"]


def test_run_command_refuses_a_blob_that_does_not_fit(monkeypatch):
    from typer.testing import CliRunner
    from harness import cli
    import harness.export.exporter as ex
    monkeypatch.setattr(ex, "export_blob", lambda model, recipe, **kw: b"\0" * (2 << 20))
    r = CliRunner().invoke(cli.app, ["run", "--board", "host", "--target", "netduinoplus2", "--model", "sudoku6-mlp",
                                     "--puzzles", "1"])
    assert r.exit_code == 2 and "does not fit" in r.output
    r = CliRunner().invoke(cli.app, ["run", "--board", "host", "--target", "netduinoplus2", "--model", "sudoku6-mlp",
                                     "--puzzles", "1", "--json"])
    import json
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.exit_code == 2 and out["fits"] is False and out["rows"] == []
    from harness.targets import load_target
    region = load_target("netduinoplus2").blob.size       # what the committed image leaves of the 1 MB flash
    assert out["summary"]["does_not_fit"] == f"does not fit netduinoplus2: blob 2,097,152 B > blob region {region:,} B"
