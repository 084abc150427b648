"""Model blob format v1: round trip through the golden reference, and validation errors."""
import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch

from harness.compress import recipes as R
from harness.export.blob import ALIGN, ENTRY, HEADER, BlobError, from_blob, parse, table_offset, to_blob
from harness.models.trm import TRM, TRMConfig
from harness.tasks import make_task


@pytest.fixture(scope="module", params=[("mlp", "int8"), ("mlp", "int4-pc"), ("attention", "int8"),
                                        ("attention", "int4-naive")])
def int_model(request):
    mixer, recipe = request.param
    torch.manual_seed(1)
    task = make_task("sudoku", size=4)
    model = TRM(TRMConfig(vocab_size=task.vocab_size, seq_len=task.seq_len, hidden=16, layers=2, heads=2,
                          mixer=mixer, T=1, n=2, steps=2)).eval()
    comp = R.quantize(dataclasses.replace(R.BUILTIN[recipe], calib_puzzles=16), model, task)
    return comp.int_model, np.array([p.inputs for p in task.generate(12, seed=3, split="test")])


def test_round_trip_runs_bit_identically(int_model):
    im, x = int_model
    blob = to_blob(im)
    back = from_blob(blob)
    a, b = im.run(x, 2, 2, 2), back.run(x, 2, 2, 2)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert back.carry_scale == pytest.approx(im.carry_scale, rel=1e-6)


def test_layout_is_aligned_and_self_describing(int_model):
    im, _ = int_model
    blob = to_blob(im)
    magic, version, hsize, total, crc = struct.unpack_from("<4sHHII", blob)
    assert (magic, version, hsize, total) == (b"TRMB", 2, 80, len(blob))
    assert crc == zlib.crc32(blob[16:])
    header, tensors = parse(blob)
    for i in range(header["tensor_count"]):
        off = ENTRY.unpack_from(blob, table_offset(blob) + i * ENTRY.size)[6]
        assert off % ALIGN == 0
    assert tensors["embed"].shape == (im.embed.shape[0], im.embed.shape[1])
    if im.head.bits == 4:  # packed: half a byte per weight
        size = [ENTRY.unpack_from(blob, table_offset(blob) + i * ENTRY.size) for i in range(header["tensor_count"])]
        head = next(e for e in size if e[0].rstrip(b"\0") == b"head")
        assert head[7] == im.head.w.shape[0] * ((im.head.w.shape[1] + 1) // 2)


def _with_crc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])))
    return bytes(buf)


def test_every_corruption_has_its_error_code(int_model):
    im, _ = int_model
    good = to_blob(im)
    cases = {
        "BLOB_MAGIC": b"XXXX" + good[4:],
        "BLOB_VERSION": _with_crc(bytearray(good[:4] + struct.pack("<H", 4) + good[6:])),
        "BLOB_TRUNCATED": good[:40],
        "BLOB_CRC": good[:-1] + bytes([good[-1] ^ 0xFF]),
    }
    bad_entry = bytearray(good)
    struct.pack_into("<I", bad_entry, table_offset(good) + 24, 7)   # first tensor misaligned
    cases["BLOB_TABLE"] = _with_crc(bad_entry)
    renamed = bytearray(good)
    renamed[table_offset(good):table_offset(good) + 16] = b"nothing".ljust(16, b"\0")  # 'embed' disappears
    cases["BLOB_MISSING"] = _with_crc(renamed)
    for code, blob in cases.items():
        with pytest.raises(BlobError) as e:
            from_blob(blob)
        assert e.value.code == code
    with pytest.raises(BlobError) as e:
        parse(good, max_size=len(good) - 1)
    assert e.value.code == "BLOB_TOO_BIG"
