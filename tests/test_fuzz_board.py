"""A live board under a burst of random bytes and malformed frames (the firmware's decoder and request
parser are fuzzed natively in firmware/fuzz/; this checks the real firmware on its UART): every answer is
a well-formed frame, every malformed input gets the ERROR it should and nothing else, the board answers
a PING after each one, and afterwards PING, INFO and a RUN bit-exact with golden still work.

Seeded (reproducible), bounded: at most 200 inputs and 20 s per board. ``--board qemu`` runs it on
every target's firmware under QEMU; ``--board host`` on the host build of the core.
"""
from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest

from harness.boards import protocol as P
from harness.boards.base import RunRequest
from harness.export import blob as B
from harness.tasks import stack

SEED = 20261201
MAX_INPUTS = 200
MAX_SECONDS = 20.0
LINK = {"COBS", "TRUNCATED", "CRC", "OVERSIZE"}    # what bytes that are not a frame can get


def _body(kind: int, payload: bytes, seq: int, version: int = 1) -> bytes:
    head = struct.pack("<BBH", version, kind, seq) + payload
    return head + struct.pack("<I", zlib.crc32(head))


def _random(rng, n: int, zeros: bool = False) -> bytes:
    b = rng.integers(0 if zeros else 1, 256, n).astype(np.uint8)
    return bytes(b)


def _malformed(rng, i: int, L: int, rx_bytes: int) -> tuple[str, bytes, set[str]]:
    """(what, wire bytes, the ERROR names it may get). Nothing here is a request the firmware would
    carry out: the CRC, version, type, length or arguments are wrong, so no input makes it work."""
    seq = int(rng.integers(1, 30000))
    kind = int(rng.choice([P.PING, P.INFO, P.RUN, P.RELOAD, P.BENCH]))
    payload = _random(rng, int(rng.integers(0, 200)), zeros=True)
    case = i % 10
    if case == 0:   # noise without zeros; the PING's leading 0x00 ends it
        return "noise", _random(rng, int(rng.integers(1, 1500))), LINK
    if case == 1:   # noise with zeros: several "frames"
        return "noise with delimiters", _random(rng, 1) + _random(rng, int(rng.integers(0, 600)), zeros=True) + b"\x00", LINK
    if case == 2:   # a frame with one bit flipped after its CRC was computed
        body = bytearray(_body(kind, payload, seq))
        body[int(rng.integers(0, len(body)))] ^= 1 << int(rng.integers(0, 8))
        return "bit flip", P.cobs_encode(bytes(body)) + b"\x00", {"CRC"}
    if case == 3:
        return "version", P.cobs_encode(_body(kind, payload, seq, version=int(rng.integers(2, 256)))) + b"\x00", {"VERSION"}
    if case == 4:
        bad_type = int(rng.choice([0x00, *range(0x06, 0x80), *range(0x80, 0x100)]))
        return "type", P.cobs_encode(_body(bad_type, payload, seq)) + b"\x00", {"COMMAND"}
    if case == 5:
        return "truncated", P.cobs_encode(_random(rng, int(rng.integers(1, 8)), zeros=True)) + b"\x00", {"TRUNCATED"}
    if case == 6:   # RUN with a payload of any length but the right one: ARGS or PUZZLE
        n = int(rng.integers(0, 120))
        n += n == 6 + L
        return "RUN args", P.cobs_encode(_body(P.RUN, _random(rng, n, zeros=True), seq)) + b"\x00", {"ARGS", "PUZZLE"}
    if case == 7:   # RUN with a bad depth or a token outside the vocabulary (the right length)
        tokens = rng.integers(0, 2, L).astype(np.uint8)
        if rng.random() < 0.5:
            T, n, steps = (0, 1, 1) if rng.random() < 0.5 else (1, 1, int(rng.choice([0, 65, 200, 255])))
            return "RUN depth", P.frame(P.RUN, seq, P.run_payload(tokens, T, n, steps)), {"ARGS"}
        tokens[int(rng.integers(0, L))] = int(rng.integers(100, 256))
        return "RUN token", P.frame(P.RUN, seq, P.run_payload(tokens, 1, 1, 1)), {"PUZZLE"}
    if case == 8:   # BENCH: wrong payload length, or bits other than 4 and 8, or a zero dimension
        if rng.random() < 0.5:
            n = int(rng.integers(0, 40))
            n += n == 7
            return "BENCH length", P.cobs_encode(_body(P.BENCH, _random(rng, n, zeros=True), seq)) + b"\x00", {"ARGS"}
        bits = int(rng.choice([0, 1, 2, 5, 7, 9, 16, 255]))
        rows, cols = (0, 16) if rng.random() < 0.3 else (16, 16)
        return "BENCH args", P.frame(P.BENCH, seq, P.bench_payload(rows, cols, bits, 1)), {"ARGS"}
    # longer than the receive buffer
    return "oversize", _random(rng, rx_bytes + int(rng.integers(1, 300))) + b"\x00", {"OVERSIZE"}


def _answers_until_pong(board, seq: int, tag: bytes, timeout: float = 10.0) -> list[tuple[int, int, bytes]]:
    """Every frame the board sent up to the PONG of `seq` (each one must unframe: CRC, version)."""
    frames = []
    while True:
        kind, got, body = P.unframe(board.session.read_frame(timeout))
        if kind == P.PONG and got == seq:
            assert body == tag
            return frames
        frames.append((kind, got, body))


@pytest.mark.board
def test_board_survives_a_burst_of_malformed_input_and_stays_bit_exact(board, target, default_blob, zoo_model):
    header = B.read_header(default_blob)
    L = header["seq_len"]
    rng = np.random.default_rng(SEED)
    start, sent, got = time.monotonic(), 0, {}
    while sent < MAX_INPUTS and time.monotonic() - start < MAX_SECONDS:
        what, wire, allowed = _malformed(rng, sent, L, target.rx_bytes)
        seq, tag = 40000 + sent, f"probe {sent}".encode()
        board.session.send_raw(wire + b"\x00" + P.frame(P.PING, seq, tag))
        answers = _answers_until_pong(board, seq, tag)
        assert answers, f"input {sent} ({what}) got no answer before the PING's"
        for kind, _, body in answers:
            assert kind == P.ERROR, f"input {sent} ({what}) was answered with type {kind:#x}"
            name = P.ERRORS.get(body[0], str(body[0]))
            assert name in allowed, f"input {sent} ({what}): {name}, expected one of {sorted(allowed)}"
            got[name] = got.get(name, 0) + 1
        if what not in ("noise", "noise with delimiters"):
            assert len(answers) == 1, f"input {sent} ({what}): {len(answers)} answers"
        sent += 1
    # the burst covered every kind of malformed input (40 inputs make 4 rounds of the 10 cases)
    assert sent >= 40, f"only {sent} inputs in {MAX_SECONDS} s"
    assert {"COBS", "CRC", "VERSION", "COMMAND", "TRUNCATED", "ARGS", "PUZZLE", "OVERSIZE"} <= set(got), got

    assert board.ping(b"after the burst") == b"after the burst"
    info = board.info()
    assert info.blob_status == "ok" and info.blob_size == len(default_blob) and info.seq_len == L
    _, task, _ = zoo_model("sudoku6-mlp")
    x, _ = stack(task.generate(1, seed=4242, split="test"))
    g = B.from_blob(default_blob).run(x, 1, 2, 2, keep_carries=True)
    r = board.run(RunRequest(x[0], 1, 2, 2, carries=True), timeout=120)
    assert r.steps_run == 2
    np.testing.assert_array_equal(r.per_step, g["per_step"][:, 0])
    np.testing.assert_array_equal(r.halt_acc, g["halt_acc"][:, 0])
    np.testing.assert_array_equal(r.y, g["y"][-1, -1, 0])
    np.testing.assert_array_equal(r.z, g["z"][-1, -1, 0])
