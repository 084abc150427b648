"""The firmware's integer core (firmware/core/) built for the host: bit-exact with the golden reference.

Covers: the primitives and kernels one by one against harness.golden.arith; whole runs (predictions,
halting accumulators and every cycle's carry) against IntModel.run for the zoo's mlp models and a tiny
attention model, with int8 and int4-pc weights; the blob validation codes; the workspace size; the
core's portability constraints; and a run of the driver built with AddressSanitizer + UBSan.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from harness import native
from harness.export import blob as B
from harness.golden import arith

ZOO_CASES = [("sudoku6-mlp", "int8"), ("sudoku6-mlp", "int4-pc"), ("maze7-mlp", "int8"), ("maze7-mlp", "int4-pc")]
ZOO_PUZZLES = 200
ATT_RECIPES = ["int8", "int4-pc"]


# --- helpers ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def torch_threads(n: int):
    """Calibration in torch is ~50x slower with 2 threads on a busy 2-core machine than with 1."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def quantize(model, task, recipe: str):
    from harness.compress import recipes as R

    with torch_threads(1):
        return R.quantize(R.BUILTIN[recipe], model, task).int_model


def puzzles(task, n: int, seed: int = 7) -> np.ndarray:
    from harness.tasks import stack

    return stack(task.generate(n, seed=seed, split="test"))[0]


def assert_same(golden: dict, got: dict, keys=("per_step", "halt_acc", "halt", "y", "z")):
    for k in keys:
        g, r = golden[k], got[k]
        assert r.shape == g.shape and r.dtype == g.dtype, (k, r.shape, g.shape, r.dtype, g.dtype)
        if not np.array_equal(g, r):
            bad = np.argwhere(g != r)
            raise AssertionError(f"{k}: {len(bad)} entries differ, first at {tuple(bad[0])}: "
                                 f"golden {g[tuple(bad[0])]} native {r[tuple(bad[0])]}")


def with_crc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])) & 0xFFFFFFFF)
    return bytes(buf)


def entries(blob: bytes) -> list[tuple]:
    count = struct.unpack_from("<H", blob, 34)[0]
    return [B.ENTRY.unpack_from(blob, B.table_offset(blob) + i * B.ENTRY.size) for i in range(count)]


def entry_index(blob: bytes, name: str) -> int:
    return next(i for i, e in enumerate(entries(blob)) if e[0].rstrip(b"\0") == name.encode())


def entry_at(blob: bytes, name: str) -> int:
    return B.table_offset(blob) + entry_index(blob, name) * B.ENTRY.size


def python_code(blob: bytes, max_size: int | None = None) -> str | None:
    """The Python reader's error code for a blob (None when it accepts it)."""
    try:
        B.parse(blob, max_size)
        B.from_blob(blob)
    except B.BlobError as e:
        return e.code
    return None


# --- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def lib():
    lib = native.library()
    P, I, U32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    signatures = {   # the kernels called directly by these tests (all return trm_status)
        "trm_linear": [P, P, P, P], "trm_linear_s16": [P, P, P, P],
        "trm_weighted_add_s8": [P, P, I, I, P],
        "trm_rmsnorm_s8": [P, I, U32, P], "trm_residual_rmsnorm_s8": [P, P, I, P, P],
        "trm_softmax_q15": [P, I, ctypes.c_int32, ctypes.c_int32],
        "trm_rope_s8": [P, I, P, P], "trm_argmax_s16": [P, I],
    }
    for name, args in signatures.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = ctypes.c_int
    return lib


_checkpoints: dict = {}


def checkpoint(name):
    from harness.models.checkpoint import load_checkpoint

    if name not in _checkpoints:
        _checkpoints[name] = load_checkpoint(name)
    return _checkpoints[name]


@pytest.fixture(scope="module", params=ZOO_CASES, ids=["-".join(c) for c in ZOO_CASES])
def zoo_case(request):
    name, recipe = request.param
    model, task, _ = checkpoint(name)
    im = quantize(model, task, recipe)
    return {"name": name, "recipe": recipe, "im": im, "blob": B.to_blob(im), "task": task}


@pytest.fixture(scope="session")
def attention_checkpoint(tmp_path_factory):
    from harness.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny-attention")
    with torch_threads(1):
        train(TrainConfig(task={"name": "sudoku", "size": 4},
                          model=dict(hidden=16, layers=2, heads=2, mixer="attention", T=1, n=2, steps=2),
                          train_puzzles=64, batch=32, iterations=60, eval_every=60, eval_puzzles=16,
                          save_every=60), out)
    from harness.models.checkpoint import load_checkpoint

    return load_checkpoint(out)


@pytest.fixture(scope="module", params=ATT_RECIPES)
def attention_case(request, attention_checkpoint):
    model, task, _ = attention_checkpoint
    im = quantize(model, task, request.param)
    return {"recipe": request.param, "im": im, "blob": B.to_blob(im), "task": task}


@pytest.fixture(scope="module")
def small_blob():
    """sudoku6-mlp int8: the good blob of the validation tests."""
    model, task, _ = checkpoint("sudoku6-mlp")
    im = quantize(model, task, "int8")
    return B.to_blob(im), im, puzzles(task, 8, seed=3)


# --- tables and primitives ----------------------------------------------------------------------------

def test_tables_are_generated_and_match_the_golden_exp2(lib):
    gen = native.FIRMWARE / "tools" / "gen_tables.py"
    assert subprocess.run([sys.executable, str(gen), "--check"]).returncode == 0, "run firmware/tools/gen_tables.py"
    exp2 = np.ctypeslib.as_array((ctypes.c_uint16 * 256).in_dll(lib, "trm_exp2_q15"))
    assert np.array_equal(exp2.astype(np.int64), arith.EXP2)


def test_crc32_is_zlib_compatible(lib):
    lib.trm_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.trm_crc32.restype = ctypes.c_uint32
    rng = np.random.default_rng(0)
    for n in (0, 1, 3, 64, 1001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert lib.trm_crc32(0, data, n) == zlib.crc32(data)
        half = lib.trm_crc32(0, data[: n // 2], n // 2)
        assert lib.trm_crc32(half, data[n // 2:], n - n // 2) == zlib.crc32(data)


def test_isqrt_and_bit_length_are_exact(lib):
    lib.trm_isqrt_u64.argtypes = [ctypes.c_uint64]
    lib.trm_isqrt_u64.restype = ctypes.c_uint64
    lib.trm_bit_length_u64.argtypes = [ctypes.c_uint64]
    lib.trm_bit_length_u64.restype = ctypes.c_int
    rng = np.random.default_rng(1)
    values = [0, 1, 2, 3, 4, 8, 15, 16, 17, 2**32 - 1, 2**32, 2**48, 2**62 - 1, 2**62, 2**63, 2**64 - 1]
    values += [r * r + d for r in (3, 46340, 2**24 + 1, 2**31 - 1, 2**32 - 1) for d in (-1, 0, 1)]
    # around squares at every result width (the Newton and digit-by-digit parts meet at 2^32, the 32-bit
    # continuation ends at 2^60), and the RMSNorm's range: r in [2^23, 2^24) for ss << 2k
    roots = [int(r) for r in rng.integers(1, 2**32, 300, dtype=np.uint64)] + [2**j + d for j in range(1, 32) for d in (-1, 0, 1)]
    roots += [int(r) for r in rng.integers(2**23, 2**24, 200)]
    values += [r * r + d for r in roots for d in (-1, 0, 1, 2 * r, 2 * r + 1) if 0 <= r * r + d < 2**64]
    values += [int(v) >> int(s) for v, s in zip(rng.integers(0, 2**63, 2000, dtype=np.uint64),
                                                 rng.integers(0, 63, 2000))]
    for v in values:
        v %= 2**64
        assert lib.trm_isqrt_u64(v) == math.isqrt(v), v
        assert lib.trm_bit_length_u64(v) == v.bit_length(), v
    # the golden float-based isqrt agrees where it is used (below 2^62)
    small = np.array([v % 2**62 for v in values], np.int64)
    assert np.array_equal(arith.isqrt(small), [math.isqrt(int(v)) for v in small])


def test_rmsnorm_reciprocal_is_the_contracts(lib):
    """trm_rmsnorm_inv (its square root in two parts: Newton on the top word, then digit by digit)
    against the contract's formula in Python integers, for sums of every width."""
    lib.trm_rmsnorm_inv.argtypes = [ctypes.c_uint64, ctypes.c_uint32]
    lib.trm_rmsnorm_inv.restype = ctypes.c_uint64

    def inv(ss: int, C: int) -> int:
        k = max(0, (48 - ss.bit_length()) // 2)
        r = math.isqrt(ss << (2 * k))
        return ((C << (16 + k)) + r // 2) // r

    rng = np.random.default_rng(7)
    sums = [1, 2, 3, 2**46 - 1, 2**46, 2**47, 2**48 - 1, 2**48, 2**55, 2**62 - 1, 2**62, 2**63, 2**64 - 1]
    sums += [int(v) >> int(s) for v, s in zip(rng.integers(1, 2**63, 1500, dtype=np.uint64), rng.integers(0, 63, 1500))]
    consts = [1, 255, 2**20 - 1, 2**24 - 1] + [int(c) for c in rng.integers(1, 2**24, 40)]
    for i, ss in enumerate(s for s in sums if s > 0):
        C = consts[i % len(consts)]
        assert lib.trm_rmsnorm_inv(ss, C) == inv(ss, C), (ss, C)


def test_requantize_matches_golden(lib):
    lib.trm_requantize.argtypes = [ctypes.c_int32] * 5
    lib.trm_requantize.restype = ctypes.c_int32
    rng = np.random.default_rng(2)
    acc = np.concatenate([rng.integers(-2**31, 2**31, 1500), rng.integers(-3000, 3000, 1500),
                          [-2**31, 2**31 - 1, 0, -1, 1]])
    M = rng.integers(2**30, 2**31, acc.size)
    n = rng.integers(1, 63, acc.size)
    M[:5], n[:5] = [0, 2**31 - 1, 2**30, 2**30, 2**31 - 1], [1, 62, 1, 31, 30]
    for lo, hi in ((-128, 127), (-32768, 32767)):
        want = arith.requantize(acc, M, n, lo, hi)
        got = [lib.trm_requantize(int(a), int(m), int(s), lo, hi) for a, m, s in zip(acc, M, n)]
        assert np.array_equal(want, got)


class Mat(ctypes.Structure):
    _fields_ = [("w", ctypes.c_void_p), ("mn", ctypes.c_void_p), ("rows", ctypes.c_uint16),
                ("cols", ctypes.c_uint16), ("bits", ctypes.c_uint8)]


class Residual(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int32), ("b", ctypes.c_int32), ("C", ctypes.c_uint32)]


def _mn(rng, rows):
    M, n = arith.quantize_multiplier(rng.uniform(1e-4, 2e-2, rows))
    return M, n, np.ascontiguousarray(np.stack([M, n], 1), np.int32)


@pytest.mark.parametrize("bits,K", [(8, 37), (8, 64), (4, 37), (4, 64), (4, 1)])
def test_linear_kernels_match_golden(lib, bits, K):
    rng = np.random.default_rng(K + bits)
    rows = 19
    lim = 7 if bits == 4 else 127
    w = rng.integers(-lim - (bits == 4), lim + 1, (rows, K))   # int4 also covers -8
    x = rng.integers(-128, 128, (5, K)).astype(np.int8)
    M, n, mn = _mn(rng, rows)
    packed = np.ascontiguousarray(arith.pack_int4(w) if bits == 4 else w.astype(np.int8))
    mat = Mat(packed.ctypes.data, mn.ctypes.data, rows, K, bits)
    lib.trm_linear_scratch_bytes.argtypes = [ctypes.c_void_p]
    lib.trm_linear_scratch_bytes.restype = ctypes.c_size_t
    assert lib.trm_linear_scratch_bytes(ctypes.addressof(mat)) == 0   # portable C here: no scratch (NULL)
    for xi in x:
        xi = np.ascontiguousarray(xi)
        out8 = np.zeros(rows, np.int8)
        out16 = np.zeros(rows, np.int16)
        assert lib.trm_linear(ctypes.addressof(mat), xi.ctypes.data, out8.ctypes.data, None) == 0
        assert lib.trm_linear_s16(ctypes.addressof(mat), xi.ctypes.data, out16.ctypes.data, None) == 0
        assert np.array_equal(out8, arith.linear(xi, w, M, n))
        assert np.array_equal(out16, arith.linear(xi, w, M, n, -32768, 32767))


def test_weighted_add_matches_golden(lib):
    rng = np.random.default_rng(3)
    terms = [np.ascontiguousarray(rng.integers(-128, 128, 300).astype(np.int8)) for _ in range(3)]
    for coefs in ([1923, 1816, 1923], [4096, -4096, 32767], [-32768, -32768, -32768], [0, 1, 2048]):
        ptrs = (ctypes.c_void_p * 3)(*[t.ctypes.data for t in terms])
        c = np.array(coefs, np.int16)
        out = np.zeros(300, np.int8)
        assert lib.trm_weighted_add_s8(ptrs, c.ctypes.data, 3, 300, out.ctypes.data) == 0
        assert np.array_equal(out, arith.weighted_add(list(zip(terms, coefs))))


def test_rmsnorm_and_residual_match_golden(lib):
    rng = np.random.default_rng(4)
    for trial in range(300):
        D = int(rng.choice([1, 2, 7, 32, 64, 511, 512]))
        C = int(rng.integers(1, 2**20))
        scale = 2 ** rng.uniform(0, 22.9)
        v = np.clip(np.round(rng.normal(0, scale, D)), -(2**23) + 1, 2**23 - 1).astype(np.int32)
        if trial % 10 == 0:
            v[:] = 0
            v[rng.integers(0, D)] = rng.choice([-1, 1, 0])
        out = np.zeros(D, np.int8)
        assert lib.trm_rmsnorm_s8(v.ctypes.data, D, C, out.ctypes.data) == 0
        assert np.array_equal(out, arith.rmsnorm(v, C)), (D, C, v)
        h = rng.integers(-128, 128, D).astype(np.int8)
        m = rng.integers(-128, 128, D).astype(np.int8)
        a, b = (int(x) for x in rng.integers(-32768, 32768, 2))
        if trial % 7 == 0:
            a, b = 4096, int(rng.integers(0, 4097))
        res = Residual(a, b, C)
        out = np.zeros(D, np.int8)
        assert lib.trm_residual_rmsnorm_s8(h.ctypes.data, m.ctypes.data, D, ctypes.addressof(res), out.ctypes.data) == 0
        assert np.array_equal(out, arith.residual(h, a, m, b, C))
        # in place over h
        hh = h.copy()
        assert lib.trm_residual_rmsnorm_s8(hh.ctypes.data, m.ctypes.data, D, ctypes.addressof(res), hh.ctypes.data) == 0
        assert np.array_equal(hh, out)


def test_softmax_matches_golden(lib):
    rng = np.random.default_rng(5)
    for trial in range(300):
        L = int(rng.choice([1, 2, 16, 36, 49, 81]))
        spread = int(rng.choice([0, 10, 1000, 2**20, 2**30]))
        s = rng.integers(-spread - 1, spread + 1, L).astype(np.int32)
        real = float(rng.choice([0.0, 1e-6, 1e-3, 0.5, 30.0, 3e4]))
        M, n = (int(x[0]) for x in arith.quantize_multiplier(real))
        got = s.copy()
        assert lib.trm_softmax_q15(got.ctypes.data, L, M, n) == 0
        assert np.array_equal(got, arith.softmax(s, M, n)), (s, M, n)


def test_rope_matches_golden(lib):
    rng = np.random.default_rng(6)
    for hd in (2, 8, 16):
        cos, sin = arith.rope_tables(49, hd, 10000.0)
        cos16, sin16 = cos.astype(np.int16), sin.astype(np.int16)
        q = rng.integers(-128, 128, (49, hd)).astype(np.int8)
        want = arith.rope(q, cos, sin)
        for p in range(49):
            v = q[p].copy()
            c, s_ = np.ascontiguousarray(cos16[p]), np.ascontiguousarray(sin16[p])
            assert lib.trm_rope_s8(v.ctypes.data, hd, c.ctypes.data, s_.ctypes.data) == 0
            assert np.array_equal(v, want[p])


def test_argmax_takes_the_lowest_index_on_ties(lib):
    v = np.array([3, 7, -2, 7, 7], np.int16)
    assert lib.trm_argmax_s16(v.ctypes.data, 5) == 1
    v = np.array([-32768] * 4, np.int16)
    assert lib.trm_argmax_s16(v.ctypes.data, 4) == 0


# --- whole runs -----------------------------------------------------------------------------------------

def test_zoo_models_are_bit_exact(zoo_case):
    im, task = zoo_case["im"], zoo_case["task"]
    c = im.config
    x = puzzles(task, ZOO_PUZZLES)
    nm = native.NativeModel(zoo_case["blob"])
    assert nm.info["seq_len"] == c["seq_len"] and nm.info["head_bits"] == (4 if "int4" in zoo_case["recipe"] else 8)
    got = nm.run(x, c["T"], c["n"], c["steps"])
    assert_same(im.run(x, c["T"], c["n"], c["steps"]), got)
    # the golden model rebuilt from the blob is the same oracle
    assert_same(B.from_blob(zoo_case["blob"]).run(x[:16], c["T"], c["n"], 2), nm.run(x[:16], c["T"], c["n"], 2))


def test_attention_models_are_bit_exact(attention_case):
    im, task = attention_case["im"], attention_case["task"]
    x = puzzles(task, 64, seed=11)
    nm = native.NativeModel(attention_case["blob"])
    assert nm.info["mixer"] == 1 and nm.info["heads"] == 2
    for T, n, steps in ((1, 2, 2), (2, 3, 4)):
        assert_same(im.run(x, T, n, steps), nm.run(x, T, n, steps))


def test_attention_on_rotary_axes_is_bit_exact(attention_checkpoint):
    """The same weights with rotary positions over a 4x4 grid (and another theta): the blob carries the
    grid's tables, and firmware and golden agree on them bit for bit."""
    from harness.models.hrm import build
    from harness.models.trm import TRMConfig

    model, task, _ = attention_checkpoint
    grid = build(TRMConfig.from_dict({**model.cfg.to_dict(), "rope_axes": [4, 4], "rope_theta": 100.0}))
    grid.load_state_dict(model.state_dict())
    im = quantize(grid, task, "int8")
    blob = B.to_blob(im)
    hd = model.cfg.hidden // model.cfg.heads
    want_cos, _ = arith.rope_tables(16, hd, 100.0, (4, 4))
    flat_cos, _ = arith.rope_tables(16, hd, 100.0)
    got_cos = im.blocks[0].mixer.rope_cos
    assert np.array_equal(got_cos, want_cos) and not np.array_equal(got_cos, flat_cos)
    x = puzzles(task, 32, seed=12)
    nm = native.NativeModel(blob)
    assert_same(im.run(x, 2, 2, 2), nm.run(x, 2, 2, 2))
    assert_same(B.from_blob(blob).run(x, 2, 2, 2), nm.run(x, 2, 2, 2))


def _learned(model, prefix: int = 0):
    """The same weights with learned positions (and a puzzle-embedding prefix of ``prefix`` rows, its
    table random): the position table keeps its random initialisation, so every row differs."""
    from harness.models.hrm import build
    from harness.models.trm import TRMConfig

    cfg = {**model.cfg.to_dict(), "pos_encodings": "learned", "rope_axes": []}
    if prefix:
        cfg.update(puzzle_emb_len=prefix, puzzle_emb_ndim=prefix * model.cfg.hidden, puzzle_ids=3)
    torch.manual_seed(3)
    learned = build(TRMConfig.from_dict(cfg))
    own = learned.state_dict()   # a prefix widens the mlp mixer: its weights stay random
    missing, _ = learned.load_state_dict({k: v for k, v in model.state_dict().items()
                                          if k in own and own[k].shape == v.shape}, strict=False)
    assert "pos_emb" in missing
    if prefix:
        with torch.no_grad():
            learned.puzzle_emb.normal_(0, 0.2)
    return learned


@pytest.mark.parametrize("recipe", ["int8", "int4-pc"])
def test_learned_positions_are_bit_exact(attention_checkpoint, recipe):
    """Attention with learned positions (the official pos_encodings: learned): a version 3 blob with
    pos_emb and no rotary tables; firmware, the Python reader's model and golden agree bit for bit."""
    model, task, _ = attention_checkpoint
    learned = _learned(model)
    im = quantize(learned, task, recipe)
    assert im.pos_emb.shape == (model.cfg.carry_len, model.cfg.hidden) and np.abs(im.pos_emb).max() > 10
    assert im.blocks[0].mixer.rope_cos is None
    blob = B.to_blob(im)
    names = {e[0].rstrip(b"\0").decode() for e in entries(blob)}
    assert struct.unpack_from("<H", blob, 4)[0] == 3 and blob[33] & B.FLAG_POS_LEARNED
    assert "pos_emb" in names and not any(n.endswith((".att.cos", ".att.sin")) for n in names)
    x = puzzles(task, 32, seed=12)
    nm = native.NativeModel(blob)
    assert_same(im.run(x, 2, 2, 2), nm.run(x, 2, 2, 2))
    assert_same(im.run_reference(x, 1, 2, 2), nm.run(x, 1, 2, 2))
    assert_same(B.from_blob(blob).run(x, 2, 2, 2), nm.run(x, 2, 2, 2))
    # the positions matter: the same blob without them answers differently
    im.pos_emb = np.zeros_like(im.pos_emb)
    assert not np.array_equal(im.run(x, 2, 2, 2)["z"], nm.run(x, 2, 2, 2)["z"])


def test_learned_positions_with_the_mlp_mixer_and_a_prefix_are_bit_exact():
    """The mlp mixer with learned positions over a puzzle-embedding prefix: one position row per carry
    row, prefix rows included."""
    model, task, _ = checkpoint("sudoku6-mlp")
    learned = _learned(model, prefix=2)
    im = quantize(learned, task, "int8")
    assert im.pos_emb.shape == (2 + model.cfg.seq_len, model.cfg.hidden)
    blob = B.to_blob(im)
    x = puzzles(task, 16, seed=4)
    ids = np.arange(16) % 3
    assert_same(im.run(x, 1, 2, 2, puzzle_ids=ids), native.NativeModel(blob).run(x, 1, 2, 2, puzzle_ids=ids))


def test_learned_position_blobs_give_their_codes(attention_checkpoint, small_blob):
    """A blob with the learned-positions flag and no pos_emb is BLOB_MISSING on both readers; the flag in
    a version 2 blob (that has the table), or a flag no version defines, is BLOB_SHAPE (firmware only)."""
    model, task, _ = attention_checkpoint
    blob = B.to_blob(quantize(_learned(model), task, "int8"))
    buf = bytearray(blob)
    buf[entry_at(blob, "pos_emb")] = ord("_")
    cases = {"missing-pos_emb": (with_crc(buf), "BLOB_MISSING")}
    buf = bytearray(small_blob[0])
    buf[33] |= B.FLAG_POS_LEARNED
    cases["flag-without-table"] = (with_crc(buf), "BLOB_MISSING")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 4, 2)
    cases["flag-in-version-2"] = (with_crc(buf), "BLOB_SHAPE")
    buf = bytearray(blob)
    buf[33] |= 0x08
    cases["unknown-flag"] = (with_crc(buf), "BLOB_SHAPE")
    for name, (data, code) in cases.items():
        with pytest.raises(native.NativeBlobError) as e:
            native.NativeModel(data)
        assert e.value.code == code, name
        if code != "BLOB_SHAPE":
            assert python_code(data) == code, name


def test_halting_stops_at_the_first_halting_step(zoo_case):
    im, task = zoo_case["im"], zoo_case["task"]
    c = im.config
    x = puzzles(task, 48, seed=5)
    g = im.run(x, c["T"], c["n"], c["steps"])
    r = native.NativeModel(zoo_case["blob"]).run(x, c["T"], c["n"], c["steps"], halting=True)
    S = c["steps"]
    first = np.where(g["halt"].any(0), g["halt"].argmax(0) + 1, S)
    assert np.array_equal(r["steps"], first)
    for b, s in enumerate(first):
        assert np.array_equal(r["per_step"][:s, b], g["per_step"][:s, b])
        assert np.array_equal(r["halt_acc"][:s, b], g["halt_acc"][:s, b])
        assert np.array_equal(r["y"][:s, :, b], g["y"][:s, :, b])
        assert (r["per_step"][s:, b] == g["per_step"][s - 1, b]).all()   # frozen after halting


@pytest.mark.slow
@pytest.mark.parametrize("case", ZOO_CASES, ids=["-".join(c) for c in ZOO_CASES])
def test_zoo_models_are_bit_exact_on_500_puzzles(case):
    model, task, _ = checkpoint(case[0])
    im = quantize(model, task, case[1])
    x = puzzles(task, 500, seed=99)
    c = im.config
    nm = native.NativeModel(B.to_blob(im))
    for T, n, steps in ((c["T"], c["n"], c["steps"]), (3, 4, 3)):
        assert_same(im.run(x, T, n, steps), nm.run(x, T, n, steps))


def test_bad_tokens_and_depth_are_refused(small_blob):
    blob, im, x = small_blob
    nm = native.NativeModel(blob)
    bad = x.copy()
    bad[0, 0] = nm.info["vocab_size"]
    with pytest.raises(ValueError):
        nm.run(bad, 1, 1, 1)
    with pytest.raises(ValueError):
        nm.run(x, -1, 1, 1)
    out = nm.run(x, 1, 1, 0)
    assert out["per_step"].shape == (0, len(x), x.shape[1])


# --- the workspace ----------------------------------------------------------------------------------------

def test_workspace_is_exact_and_checked(lib, small_blob):
    blob, im, x = small_blob
    nm = native.NativeModel(blob)
    L, D, I, F, V = (nm.info[k] for k in ("seq_len", "hidden", "mix_inner", "ffn_inner", "vocab_size"))
    carry = 2 * L * D
    scratch = max(L * D + L + 2 * I, D + 2 * F, 2 * V)      # mlp mixer, channel SwiGLU, logits
    assert nm.workspace_bytes == (carry + 7) // 8 * 8 + scratch
    assert (L, D, I) == (36, 32, 72) and nm.workspace_bytes == 3636
    tok = np.ascontiguousarray(x[:1], np.uint8)
    pred = np.zeros(L, np.uint8)
    acc = np.zeros(1, np.int64)
    ran = np.zeros(1, np.int32)
    ws = ctypes.create_string_buffer(nm.workspace_bytes)

    def run(size):
        return lib.trm_host_run_batch(nm._model, tok.ctypes.data, None, 1, 1, 1, 1, 0, ws, size, pred.ctypes.data,
                                      acc.ctypes.data, ran.ctypes.data, None)

    assert run(nm.workspace_bytes - 1) == 10           # TRM_ERR_WORKSPACE
    assert run(nm.workspace_bytes) == 0
    assert np.array_equal(pred, im.run(x[:1], 1, 1, 1)["per_step"][0, 0])


def test_attention_workspace(attention_case):
    nm = native.NativeModel(attention_case["blob"])
    L, D, F, V = (nm.info[k] for k in ("seq_len", "hidden", "ffn_inner", "vocab_size"))
    scratch = max(4 * L + 2 * L * D + 3 * D, D + 2 * F, 2 * V)
    assert nm.workspace_bytes == (2 * L * D + 7) // 8 * 8 + scratch


# --- the cycle hook ----------------------------------------------------------------------------------------

class Snapshot(ctypes.Structure):
    _fields_ = [("y", ctypes.c_void_p), ("z", ctypes.c_void_p), ("step", ctypes.c_int32),
                ("cycle", ctypes.c_int32), ("count", ctypes.c_uint32)]


def test_cycle_hook_is_called_after_every_cycle(lib, small_blob):
    blob, im, x = small_blob
    nm = native.NativeModel(blob)
    assert ctypes.cast(lib.trm_cycle_hook, ctypes.c_void_p).value   # an exported symbol
    snap = Snapshot.in_dll(lib, "trm_carry_snapshot")
    before = snap.count
    T, steps = 3, 2
    out = nm.run(x[:2], T, 1, steps)
    assert snap.count - before == 2 * T * steps
    assert (snap.step, snap.cycle) == (steps - 1, T - 1)
    L, D = x.shape[1], nm.info["hidden"]
    y = np.ctypeslib.as_array((ctypes.c_int8 * (L * D)).from_address(snap.y)).reshape(L, D)
    z = np.ctypeslib.as_array((ctypes.c_int8 * (L * D)).from_address(snap.z)).reshape(L, D)
    assert np.array_equal(y, out["y"][-1, -1, -1]) and np.array_equal(z, out["z"][-1, -1, -1])


# --- blob validation -----------------------------------------------------------------------------------------

def _mutations(blob: bytes) -> dict[str, tuple[bytes, int | None, str]]:
    """name -> (bytes, max_size, expected firmware code)."""
    out = {}
    buf = bytearray(blob)
    buf[0:4] = b"TRMX"
    out["magic"] = (bytes(buf), None, "BLOB_MAGIC")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 4, 4)
    out["version"] = (bytes(buf), None, "BLOB_VERSION")
    out["short"] = (blob[:40], None, "BLOB_TRUNCATED")
    out["truncated"] = (blob[:-16], None, "BLOB_TRUNCATED")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 6, 65)
    out["header-size"] = (with_crc(buf), None, "BLOB_TRUNCATED")
    out["too-big"] = (blob, len(blob) - 1, "BLOB_TOO_BIG")
    buf = bytearray(blob)
    buf[len(blob) // 2] ^= 0x01
    out["crc"] = (bytes(buf), None, "BLOB_CRC")
    buf = bytearray(blob)
    buf[20] ^= 0x80                                      # a header field inside the CRC
    out["crc-header"] = (bytes(buf), None, "BLOB_CRC")
    at = entry_at(blob, "head")
    buf = bytearray(blob)
    struct.pack_into("<I", buf, at + 24, struct.unpack_from("<I", blob, at + 24)[0] + 4)
    out["table-misaligned"] = (with_crc(buf), None, "BLOB_TABLE")
    buf = bytearray(blob)
    buf[at + 16] = 7
    out["table-dtype"] = (with_crc(buf), None, "BLOB_TABLE")
    buf = bytearray(blob)
    struct.pack_into("<I", buf, at + 28, struct.unpack_from("<I", blob, at + 28)[0] + 1)
    out["table-size"] = (with_crc(buf), None, "BLOB_TABLE")
    buf = bytearray(blob)
    struct.pack_into("<I", buf, at + 24, len(blob) - 16 + 16 * 4096)
    out["table-outside"] = (with_crc(buf), None, "BLOB_TABLE")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 34, 60000)
    out["table-count"] = (with_crc(buf), None, "BLOB_TABLE")
    for name in ("halt", "b1.ffn.down.mn", "b0.mix.silu", "embed"):
        buf = bytearray(blob)
        buf[entry_at(blob, name)] = ord("_")
        out[f"missing-{name}"] = (with_crc(buf), None, "BLOB_MISSING")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 34, entry_index(blob, "halt"))   # the table ends before "halt"
    out["missing-count"] = (with_crc(buf), None, "BLOB_MISSING")
    # firmware-only checks (the Python reader accepts these blobs)
    mn = entries(blob)[entry_index(blob, "b0.ffn.gu.mn")]
    buf = bytearray(blob)
    struct.pack_into("<i", buf, mn[6] + 4, 63)             # shift of row 0 outside [1, 62]
    out["shape-shift"] = (with_crc(buf), None, "BLOB_SHAPE")
    buf = bytearray(blob)
    buf[23] = 1                                            # mixer: attention, but mlp tensors
    out["missing-attention"] = (with_crc(buf), None, "BLOB_MISSING")
    buf = bytearray(blob)
    buf[23] = 2                                            # unknown mixer (Python: attention)
    out["missing-mixer2"] = (with_crc(buf), None, "BLOB_MISSING")
    res = entries(blob)[entry_index(blob, "b0.mix.res")]
    buf = bytearray(blob)
    struct.pack_into("<i", buf, res[6], 40000)             # coefficient outside int16
    out["shape-coef"] = (with_crc(buf), None, "BLOB_SHAPE")
    buf = bytearray(blob)
    struct.pack_into("<I", buf, 36, 1 << 24)               # C too large for the 64-bit reciprocal
    out["shape-norm-const"] = (with_crc(buf), None, "BLOB_SHAPE")
    buf = bytearray(blob)
    struct.pack_into("<H", buf, 16, 300)                   # V > 256: tokens are bytes
    out["shape-vocab"] = (with_crc(buf), None, "BLOB_SHAPE")
    buf = bytearray(blob)
    buf[22] = 9                                            # more layers than TRM_MAX_LAYERS (all missing)
    out["missing-layers"] = (with_crc(buf), None, "BLOB_MISSING")
    return out


def test_bad_blobs_give_their_codes_and_the_library_stays_usable(small_blob):
    blob, im, x = small_blob
    muts = _mutations(blob)
    for name, (data, max_size, code) in muts.items():
        with pytest.raises(B.BlobError) as e:
            native.NativeModel(data, max_size=max_size)
        assert isinstance(e.value, native.NativeBlobError)
        assert e.value.code == code, name
        py = python_code(data, max_size)
        if code.startswith("BLOB_") and code != "BLOB_SHAPE":
            assert py == code, (name, py)                  # same code as the Python reader
        # and a good blob still parses and runs bit-exactly
        assert_same(im.run(x[:2], 1, 1, 1), native.NativeModel(blob).run(x[:2], 1, 1, 1))
    assert native.NativeModel(blob, max_size=len(blob)).info["layers"] == 2


def test_misaligned_blob_memory_is_refused(lib, small_blob):
    blob, _, _ = small_blob
    buf = ctypes.create_string_buffer(b"\0" + blob, len(blob) + 1)
    model = ctypes.create_string_buffer(lib.trm_host_model_bytes())
    assert lib.trm_host_parse(ctypes.addressof(buf) + 1, len(blob), 0, model) == 9   # TRM_ERR_ARG
    assert native.status_name(9) == "TRM_ERR_ARG" and native.status_name(5) == "BLOB_CRC"


# --- portability of the core ---------------------------------------------------------------------------------

def test_core_is_freestanding_integer_only_and_global_free(tmp_path):
    """No libc beyond memcpy/memset/memmove/strlen, no floating point (x86 -mgeneral-regs-only refuses FP code), no
    writable globals outside the interpreter's debug snapshot, no variable-length arrays."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None or shutil.which("nm") is None:
        pytest.skip("needs a C compiler and nm")
    core = sorted(native.CORE.glob("*.c"))
    own = set()
    undefined, writable = {}, {}
    for src in core:
        obj = tmp_path / (src.stem + ".o")
        p = subprocess.run([cc, *native.FLAGS["release"], "-ffreestanding", "-fno-stack-protector",
                            "-mgeneral-regs-only", "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        syms = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout.split("\n")
        for line in syms:
            parts = line.split()
            if len(parts) == 3:
                own.add(parts[2])
                if parts[1] in "BbDdCGgSs" and parts[1]:
                    writable.setdefault(src.name, []).append(parts[2])
            elif len(parts) == 2 and parts[0] == "U":
                undefined.setdefault(src.name, set()).add(parts[1])
    external = set().union(*undefined.values()) - own
    assert external <= {"memcpy", "memset", "memmove", "strlen"}, external
    assert set(writable) <= {"trm.c"}, writable
    assert writable.get("trm.c", []) == ["trm_carry_snapshot"]


# --- sanitizers ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sanitized_check():
    ok, why = native.sanitizer_available()
    if not ok:
        pytest.skip(f"AddressSanitizer/UBSan runtime unavailable: {why}")
    return native.build(native.CHECK, "sanitize")


# leaks are not checked: the core never allocates, and LeakSanitizer needs ptrace, which containers may deny
SAN_ENV = {"ASAN_OPTIONS": "halt_on_error=1:detect_leaks=0:strict_string_checks=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def _check(exe, *args, timeout=300):
    env = {**os.environ, **SAN_ENV}
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def _check_run(exe, tmp_path, blob, x, T, n, steps, halting=0):
    (tmp_path / "m.blob").write_bytes(blob)
    np.ascontiguousarray(x, np.uint8).tofile(tmp_path / "tok.bin")
    p = _check(exe, "run", tmp_path / "m.blob", tmp_path / "tok.bin", tmp_path / "out.bin", T, n, steps, halting)
    assert p.returncode == 0, p.stderr
    raw = (tmp_path / "out.bin").read_bytes()
    hdr = B.HEADER.unpack_from(blob)
    L, D = hdr[6], hdr[7]
    rec = np.dtype([("steps", "<i4"), ("pred", "u1", (steps, L)), ("acc", "<i8", (steps,)),
                    ("car", "i1", (steps, T, 2, L, D))])
    r = np.frombuffer(raw, rec)
    assert len(r) == len(x)
    c = r["car"].transpose(3, 1, 2, 0, 4, 5)
    return {"per_step": r["pred"].transpose(1, 0, 2).astype(np.int64), "halt_acc": r["acc"].T.copy(),
            "y": c[0], "z": c[1], "steps": r["steps"]}


def test_sanitized_driver_is_bit_exact_mlp(sanitized_check, tmp_path, zoo_case):
    im, task = zoo_case["im"], zoo_case["task"]
    x = puzzles(task, 4, seed=21)
    got = _check_run(sanitized_check, tmp_path, zoo_case["blob"], x, 2, 2, 2)
    assert_same(im.run(x, 2, 2, 2), got, keys=("per_step", "halt_acc", "y", "z"))


def test_sanitized_driver_is_bit_exact_attention(sanitized_check, tmp_path, attention_case):
    im, task = attention_case["im"], attention_case["task"]
    x = puzzles(task, 6, seed=22)
    got = _check_run(sanitized_check, tmp_path, attention_case["blob"], x, 2, 2, 2)
    assert_same(im.run(x, 2, 2, 2), got, keys=("per_step", "halt_acc", "y", "z"))


def test_sanitized_parser_on_bad_and_fuzzed_blobs(sanitized_check, tmp_path, small_blob, attention_case):
    blob, _, _ = small_blob
    paths, want = [], []
    for name, (data, max_size, code) in _mutations(blob).items():
        if max_size is None:
            paths.append(tmp_path / f"{name}.blob")
            paths[-1].write_bytes(data)
            want.append(code)
    # fuzz: random bytes of the header, the table and the payload, CRC fixed so parsing goes deep;
    # every blob that parses is also run on one puzzle by the driver
    rng = np.random.default_rng(8)
    for base_name, base in (("mlp", blob), ("att", attention_case["blob"])):
        table_end = B.table_offset(base) + B.ENTRY.size * len(entries(base))
        for i in range(60):
            buf = bytearray(base)
            region = (16, 64) if i % 3 == 0 else (64, table_end) if i % 3 == 1 else (table_end, len(base))
            for _ in range(int(rng.integers(1, 4))):
                buf[int(rng.integers(*region))] = int(rng.integers(0, 256))
            paths.append(tmp_path / f"fuzz-{base_name}-{i}.blob")
            paths[-1].write_bytes(with_crc(buf))
    p = _check(sanitized_check, "parse", *paths)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    for path, line, code in zip(paths, lines, want):
        assert line.split()[0] == code, (path.name, line)
    for line in lines[: len(paths)]:
        parsed, ran = line.split()
        assert parsed in native.STATUS.values()
        assert ran in ("-", "TRM_OK"), line
