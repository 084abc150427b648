"""Write the seed corpus of the fuzz targets (firmware/fuzz/corpus/<target>/): deterministic, so a rerun
gives the same files.

    python firmware/fuzz/make_corpus.py

frame:   wire bytes (COBS + 0x00 delimiters): each request type, back-to-back frames, garbage, bad CRC,
         bad version, truncated, overlong, split delimiters.
request: fuzz_request.c's layout (config u8, then records ctl u8 | len u8 | frame): a valid frame of
         each request type (RUN at depth 1..2, with and without halting / carries / embeddings in RAM,
         BENCH int8 and int4), and corrupt ones (bad CRC, version, type, lengths, depth, tokens).
blob:    fuzz_blob.c's layout (ctl u8, then the blob): sudoku6-mlp int8 and sudoku6-attention int4-pc
         as `harness export` writes them, the official-layout fixtures of tests/data/official (an HRM at
         int8, a TRM with the mlp mixer's norm over the sequence at int4-pc: format version 2 with a
         prefix, a y network, the halting head on row 0), and a few corrupt ones; corpus/blob/valid-sudoku6-mlp-int8 (no
         ctl byte: the blob itself) is also the model fuzz_request builds in.
Corpus files of a finding fixed in protocol.c or blob.c are regression seeds: add them here, named
`regress-...`.
"""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from harness.boards import protocol as P
from harness.export.exporter import export_blob
from harness.models.checkpoint import load_checkpoint
from harness.tasks import stack

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def body(kind: int, payload: bytes = b"", seq: int = 1, version: int = 1) -> bytes:
    """A decoded frame: header, payload, CRC."""
    head = struct.pack("<BBH", version, kind, seq) + payload
    return head + struct.pack("<I", zlib.crc32(head))


def record(frame: bytes, ctl: int = 0) -> bytes:
    """One fuzz_request record. ctl bit 0 set: `frame` is without its CRC (the target appends it)."""
    assert len(frame) <= 255
    return bytes([ctl, len(frame)]) + frame


def write(target: str, files: dict[str, bytes]) -> None:
    d = CORPUS / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)


def frames(tokens: np.ndarray) -> dict[str, bytes]:
    wire = lambda b: P.cobs_encode(b) + b"\x00"     # noqa: E731
    bad_crc = bytearray(body(P.PING, b"x"))
    bad_crc[-1] ^= 0xFF
    run = P.run_payload(tokens, 1, 1, 1)
    return {
        "ping": wire(body(P.PING, b"hello")),
        "ping-empty": wire(body(P.PING)),
        "ping-254": wire(body(P.PING, bytes(range(1, 255)))),
        "ping-zeros": wire(body(P.PING, bytes(300))),
        "info": wire(body(P.INFO)),
        "reload": wire(body(P.RELOAD)),
        "run": wire(body(P.RUN, run)),
        "bench": wire(body(P.BENCH, P.bench_payload(16, 16, 8, 1))),
        "three-frames": b"\x00" + wire(body(P.PING, b"a")) + wire(body(P.INFO, seq=2)) + b"\x00\x00" +
                        wire(body(P.PING, b"b", seq=3)),
        "bad-crc": wire(bytes(bad_crc)),
        "bad-version": wire(body(P.PING, version=9)),
        "truncated": wire(b"\x01\x01\x00"),
        "not-cobs": b"\x05\x01\x02\x00",
        "zero-run-past-end": b"\x09abc\x00",
        "oversize": bytes([7]) * 200 + b"\x00" + wire(body(P.PING, b"after")),
        "garbage": bytes(range(1, 200)) + b"\x00",
        "unknown-type": wire(body(0x33)),
        "no-delimiter": P.cobs_encode(body(P.PING, b"pending")),
    }


def requests(tokens: np.ndarray, L: int) -> dict[str, bytes]:
    nocrc = lambda b: b[:-4]                        # noqa: E731  (ctl bit 0: the target appends it)
    run = lambda T, n, s, **kw: body(P.RUN, P.run_payload(tokens, T, n, s, **kw))   # noqa: E731
    valid = 0b00000        # config: arena = workspace, valid blob, region with 64 bytes to spare
    seeds = {
        "ping": bytes([valid]) + record(body(P.PING, b"hello")),
        "ping-crc-appended": bytes([valid]) + record(nocrc(body(P.PING, b"hello")), ctl=1),
        "info": bytes([valid]) + record(body(P.INFO)),
        "reload": bytes([valid]) + record(body(P.RELOAD)),
        "run-1-1-1": bytes([valid]) + record(run(1, 1, 1)),
        "run-1-2-2": bytes([valid]) + record(run(1, 2, 2)),
        "run-halting": bytes([valid]) + record(run(2, 2, 2, halting=True)),
        "run-carries": bytes([valid]) + record(run(1, 1, 1, carries=True)),
        "run-embed-ram": bytes([0b00001]) + record(run(1, 1, 1, embed_ram=True)),
        "run-embed-ram-small-arena": bytes([valid]) + record(run(1, 1, 1, embed_ram=True)),
        "run-crc-appended": bytes([valid]) + record(nocrc(run(1, 1, 2)), ctl=1),
        "bench-8": bytes([0b00010]) + record(body(P.BENCH, P.bench_payload(16, 32, 8, 1))),
        "bench-4": bytes([0b00010]) + record(body(P.BENCH, P.bench_payload(17, 31, 4, 2))),
        "bench-too-big": bytes([0b00010]) + record(body(P.BENCH, P.bench_payload(1000, 1000, 8, 1))),
        "bench-bad-bits": bytes([0b00010]) + record(body(P.BENCH, P.bench_payload(4, 4, 5, 1))),
        "bench-short": bytes([0b00010]) + record(body(P.BENCH, b"\x01\x00")),
        # several requests, a blob rewritten in between (ctl bit 3) and RELOAD, small response buffers
        "session": bytes([0b10011]) + record(body(P.INFO)) + record(run(1, 1, 1, carries=True)) +
                   record(body(P.RELOAD), ctl=8) + record(run(1, 1, 1)) + record(body(P.RELOAD), ctl=8) +
                   record(run(1, 1, 1), ctl=4) + record(body(P.PING, bytes(100)), ctl=2),
        "bad-blob-crc": bytes([0b00100]) + record(body(P.INFO)) + record(run(1, 1, 1)),
        "erased-flash": bytes([0b01000]) + record(body(P.INFO)) + record(run(1, 1, 1)),
        "zeroed-flash": bytes([0b11100]) + record(body(P.INFO)) + record(run(1, 1, 1)),
        # corrupt requests
        "bad-crc": bytes([valid]) + record(body(P.PING, b"x")[:-1] + b"\x00"),
        "bad-version": bytes([valid]) + record(body(P.INFO, version=2)),
        "unknown-type": bytes([valid]) + record(body(0x7F)),
        "truncated": bytes([valid]) + record(b"\x01\x01\x00"),
        "empty": bytes([valid]) + record(b""),
        "run-short": bytes([valid]) + record(body(P.RUN, b"\x01\x01\x01")),
        "run-steps-0": bytes([valid]) + record(run(1, 1, 0)),
        "run-steps-65": bytes([valid]) + record(run(1, 1, 65)),
        "run-T-0": bytes([valid]) + record(run(0, 1, 1)),
        "run-bad-flag": bytes([valid]) + record(body(P.RUN, P.run_payload(tokens, 1, 1, 1)[:3] + b"\x80" +
                                                     P.run_payload(tokens, 1, 1, 1)[4:])),
        "run-long-puzzle": bytes([valid]) + record(body(P.RUN, P.run_payload(np.ones(L + 1, np.uint8), 1, 1, 1))),
        "run-bad-token": bytes([valid]) + record(body(P.RUN, P.run_payload(np.full(L, 255, np.uint8), 1, 1, 1))),
        "run-result-too-big": bytes([0b00000]) + record(run(1, 1, 2, carries=True), ctl=2),
        "ping-too-long": bytes([valid]) + record(body(P.PING, bytes(range(100))), ctl=2),
        # regression: BENCH rows 65528, cols 65535 wrapped the 32-bit sum of the matrix's bytes in
        # server.c, passed the arena check and wrote past the 96 KiB arena (the 32-bit build catches it)
        "regress-bench-32bit-size-wrap": bytes([0b00011]) +
                                         record(nocrc(body(P.BENCH, P.bench_payload(65528, 65535, 8, 1))), ctl=1),
        # regression: INFO wrote its whole response (70 bytes with this port's names) into the 64-byte
        # response buffer server.h allows, without checking; now a RESPONSE error
        "regress-info-overflows-64-byte-response": bytes.fromhex("000a0801020100565d6783"),
    }
    return seeds


def official(variant: str, kind: str, recipe: str) -> bytes:
    """The blob of an official-layout fixture (tests/data/official), imported and exported at ``recipe``."""
    from harness.compress.recipes import apply, get_recipe
    from harness.export.blob import to_blob
    from harness.models.importer import import_official
    from harness.tasks import make_task

    d = HERE.parent.parent / "tests" / "data" / "official" / variant
    task = make_task("sudoku", size=4)
    model, _ = import_official(kind, d / "checkpoint.pt", d / "all_config.yaml", task.seq_len)
    return to_blob(apply(get_recipe(recipe), model, task).int_model)


def main() -> None:
    mlp = export_blob("sudoku6-mlp", "int8")
    att = export_blob("sudoku6-attention", "int4-pc")
    _, task, _ = load_checkpoint("sudoku6-mlp")
    x, _ = stack(task.generate(1, seed=4242, split="test"))
    tokens = x[0].astype(np.uint8)
    L = len(tokens)

    write("frame", frames(tokens))
    write("request", requests(tokens, L))

    def flip(b: bytes, at: int, mask: int = 0x40) -> bytes:
        c = bytearray(b)
        c[at] ^= mask
        return bytes(c)

    hrm, seq = official("hrm", "hrm-official", "int8"), official("trm-mlp", "trm-official", "int4-pc")
    blobs = {
        "valid-sudoku6-mlp-int8": mlp,                        # the raw blob: fuzz_request's model
        "official-hrm-int8-crc-fixed": b"\x11" + hrm,
        "official-trm-mlp-int4-pc": b"\x10" + seq,
        "official-hrm-prefix": b"\x11" + flip(hrm, 64, 0x02),                  # prefix rows 1 -> 3
        "mlp-int8": b"\x00" + mlp,
        "mlp-int8-crc-fixed": b"\x11" + mlp,
        "attention-int4-pc-crc-fixed": b"\x11" + att,
        "mlp-table-offset": b"\x11" + flip(mlp, 80 + 24 + 1, 0x01),      # first entry's offset
        "mlp-vocab": b"\x11" + flip(mlp, 16, 0x01),
        "mlp-truncated": b"\x03" + mlp[:len(mlp) // 2],
        "header-only": b"\x03" + mlp[:80],
        "header-and-table": b"\x03" + mlp[:80 + 32 * 8],
        "tiny": b"\x00TRMB",
    }
    write("blob", blobs)
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.relative_to(HERE)}: {len(list(d.iterdir()))} files, {sum(f.stat().st_size for f in d.iterdir())} bytes")


if __name__ == "__main__":
    main()
