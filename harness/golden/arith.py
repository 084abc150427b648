"""Integer primitives of the inference contract (docs/integer-inference.md), vectorised in numpy.

Each function here is one named operation of the contract and is reproduced bit for bit by the C
kernels in firmware/core/. All arithmetic is on int64 numpy arrays so no intermediate can overflow;
the contract states the ranges the C code relies on.
"""
from __future__ import annotations

import math

import numpy as np

from .. import rotary

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -32768, 32767
ADD_SHIFT = 12          # fixed-point bits of the coefficients of `weighted_add` and `residual`
NORM_SHIFT = 24         # fixed-point bits of the reciprocal in `rmsnorm`
NORM_CONST_SHIFT = 8    # fixed-point bits of the per-model RMSNorm constant
PROB_BITS = 15          # softmax probabilities are Q15
EXP_FRAC_BITS = 8       # softmax exponent argument: units of 2^-8 in the log2 domain
EXP_RANGE = 16 << EXP_FRAC_BITS  # below -16 (log2 units) exp2 is taken as 0
ROPE_SHIFT = 14         # rotary cos/sin tables are Q14


def sat(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(v, lo, hi)


def sat8(v: np.ndarray) -> np.ndarray:
    return np.clip(v, INT8_MIN, INT8_MAX).astype(np.int64)


def round_shift(v: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """(v + 2^(n-1)) >> n with an arithmetic shift: round half up (towards +inf). n >= 1."""
    v = np.asarray(v, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    return (v + (np.int64(1) << (n - 1))) >> n


def quantize_multiplier(real: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real multiplier r in (0, 2^30) → (M, n) with M in [2^30, 2^31) and r ≈ M / 2^n, n in [1, 62].

    r == 0 gives (0, 1). This runs at export time only; the device just uses M and n."""
    r = np.atleast_1d(np.asarray(real, dtype=np.float64))
    if np.any(r < 0) or np.any(r >= 2**30) or not np.all(np.isfinite(r)):
        raise ValueError(f"requantization multiplier out of range: {r[(r < 0) | (r >= 2**30)]}")
    M = np.zeros(r.shape, np.int64)
    n = np.ones(r.shape, np.int64)
    for i, x in enumerate(r):
        if x == 0:
            continue
        mant, exp = math.frexp(x)            # x = mant * 2^exp, mant in [0.5, 1)
        m = round(mant * 2**31)
        shift = 31 - exp
        if m == 2**31:
            m //= 2
            shift -= 1
        if shift > 62:                       # too small to represent: it rounds to zero
            m, shift = 0, 1
        if shift < 1:
            raise ValueError(f"requantization multiplier {x} too large")
        M[i], n[i] = m, shift
    return M, n


def requantize(acc: np.ndarray, M: np.ndarray, n: np.ndarray, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """sat(round_shift(acc * M, n)): the one requantization rule. acc is int32, M < 2^31, so the
    product fits int64. M and n broadcast against acc (per-tensor: scalars; per-channel: one per row,
    along the last axis)."""
    acc = np.asarray(acc, dtype=np.int64)
    return sat(round_shift(acc * np.asarray(M, np.int64), n), lo, hi).astype(np.int64)


def weighted_add(terms: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """sat8(round_shift(sum q_i * a_i, ADD_SHIFT)): several int8 tensors at different scales brought
    to one output scale; a_i = round(s_i / s_out * 2^12) are int16 coefficients from the blob."""
    acc = sum(np.asarray(q, np.int64) * np.int64(a) for q, a in terms)
    return sat8(round_shift(acc, ADD_SHIFT))


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) exactly, for 0 <= v < 2^62 (element-wise)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    # float64 sqrt can be off by one for large v: correct it exactly
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def bit_length(v: np.ndarray) -> np.ndarray:
    """Number of bits of non-negative int64 values (0 for 0). Exact: values below 2^53 convert to
    float64 exactly, and callers only compare the result against thresholds below 53."""
    return np.frexp(np.asarray(v, np.int64).astype(np.float64))[1].astype(np.int64)


def rmsnorm(v: np.ndarray, const: int) -> np.ndarray:
    """Integer RMSNorm over the last axis of int32 v (|v| < 2^23, D <= 512), to int8.

    ss = sum v^2 (< 2^55); k = max(0, (48 - bit_length(ss)) // 2) normalises small sums so the
    square root keeps ~24 significant bits; r = isqrt(ss << 2k); inv = ((const << (16 + k)) + r // 2) // r;
    out = sat8(round_shift(v * inv, 24)); ss == 0 gives 0. ``const`` = round(sqrt(D) / s_out * 2^8)
    (< 2^20), so out ≈ v / rms(v) / s_out."""
    v = np.asarray(v, dtype=np.int64)
    ss = (v * v).sum(-1, keepdims=True)
    k = np.maximum(0, (48 - bit_length(ss)) // 2)
    r = isqrt(ss << (2 * k))
    safe = np.maximum(r, 1)
    inv = ((np.int64(const) << (16 + k)) + safe // 2) // safe
    out = sat8(round_shift(v * inv, NORM_SHIFT))
    return np.where(ss == 0, 0, out)


def residual(h: np.ndarray, a: int, m: np.ndarray, b: int, const: int) -> np.ndarray:
    """Post-norm residual: rmsnorm(h * a + m * b). RMSNorm is scale-free, so only the ratio a : b of the
    two int16 coefficients (the ratio of the scales of h and m, the larger scaled to 2^12) matters."""
    v = np.asarray(h, np.int64) * np.int64(a) + np.asarray(m, np.int64) * np.int64(b)
    return rmsnorm(v, const)


# multiply-accumulates per BLAS call at most: OpenBLAS runs a product that small on the calling thread
# (below its threshold for waking its other threads). A larger one wakes them, and on a shared 2-core
# machine they wait for a core: measured 159 ms instead of 0.3 ms for one [36, 64] x [64, 256] product
# under load (bench/README.md, "Golden reference on the host").
BLAS_CALL_MACS = 1 << 18


def imatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matrix product a @ b, computed in float64 BLAS for speed.

    Exact because every operand and every partial sum is an integer below 2^53 in magnitude (here
    at most 2^15 · 2^7 · K with K ≤ 2^12), which float64 represents exactly in any summation order.
    Products of more than BLAS_CALL_MACS per matrix are done a block of rows at a time (same result)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim >= 2 and b.ndim >= 2:
        rows = max(1, BLAS_CALL_MACS // max(1, a.shape[-1] * b.shape[-1]))
        if a.shape[-2] > rows:
            return np.concatenate([np.matmul(a[..., i:i + rows, :], b) for i in range(0, a.shape[-2], rows)],
                                  axis=-2).astype(np.int64)
    return np.matmul(a, b).astype(np.int64)


def linear(x: np.ndarray, w: np.ndarray, M: np.ndarray, n: np.ndarray, lo: int = INT8_MIN,
           hi: int = INT8_MAX) -> np.ndarray:
    """x [..., K] int8 times w [N, K] (int8 or int4 values) → int32 accumulators → requantized per
    output channel (M, n of shape [N] or scalars)."""
    return requantize(imatmul(x, np.asarray(w).T), M, n, lo, hi)


def lut8(q: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Look up int8 q in a 256-entry int8 table indexed by q + 128."""
    return np.asarray(table, np.int64)[np.asarray(q, np.int64) + 128]


def exp2_table() -> np.ndarray:
    """E[f] = round(2^15 * 2^(-f / 256)), f = 0..255: the fractional part of exp2 in Q15."""
    return np.round(2.0 ** 15 * 2.0 ** (-np.arange(256) / 256.0)).astype(np.int64)


EXP2 = exp2_table()


def softmax(scores: np.ndarray, M: int, n: int) -> np.ndarray:
    """Integer softmax over the last axis of int32 ``scores``, to Q15 probabilities.

    d = scores - max (<= 0); u = max(round_shift(d * M, n), -EXP_RANGE) is d in units of 2^-8 of
    log2 (M/2^n = s_q s_k / sqrt(hd) * log2(e) * 256); e = EXP2[(-u) & 255] >> ((-u) >> 8), 0 past the
    range; total = sum e; rcp = 2^30 // total; p = round_shift(e * rcp, 15)."""
    s = np.asarray(scores, np.int64)
    d = s - s.max(-1, keepdims=True)
    u = np.maximum(round_shift(d * np.int64(M), n), -EXP_RANGE)
    neg = -u
    e = np.where(neg >= EXP_RANGE, 0, EXP2[neg & 255] >> np.minimum(neg >> EXP_FRAC_BITS, 62))
    total = e.sum(-1, keepdims=True)            # >= 2^15: the maximum contributes exactly 2^15
    rcp = (np.int64(1) << 30) // total
    return round_shift(e * rcp, PROB_BITS)


def rope_tables(seq_len: int, head_dim: int, theta: float, axes: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Q14 cos and sin tables [L, head_dim/2] of the rotary positions (``harness.rotary.layout``: the
    float model's angles, here in float64)."""
    coord, num, den = rotary.layout(seq_len, head_dim, axes)
    inv_freq = 1.0 / theta ** (num.astype(np.float64) / den)
    ang = coord.astype(np.float64) * inv_freq
    one = 1 << ROPE_SHIFT
    return np.round(np.cos(ang) * one).astype(np.int64), np.round(np.sin(ang) * one).astype(np.int64)


def rope(q: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate channel pairs (2i, 2i+1) of int8 q [..., L, hd]: sat8(round_shift(e*c - o*s, 14)), ..."""
    q = np.asarray(q, np.int64)
    even, odd = q[..., 0::2], q[..., 1::2]
    re = sat8(round_shift(even * cos - odd * sin, ROPE_SHIFT))
    ro = sat8(round_shift(even * sin + odd * cos, ROPE_SHIFT))
    out = np.empty_like(q)
    out[..., 0::2], out[..., 1::2] = re, ro
    return out


def pack_int4(w: np.ndarray) -> np.ndarray:
    """int4 values [-8, 7], rows [N, K] → bytes [N, ceil(K/2)]: element 2j in the low nibble of byte j,
    2j+1 in the high nibble; an odd row ends with a zero nibble."""
    w = np.asarray(w, np.int64)
    if w.min(initial=0) < -8 or w.max(initial=0) > 7:
        raise ValueError("int4 values must lie in [-8, 7]")
    N, K = w.shape
    if K % 2:
        w = np.concatenate([w, np.zeros((N, 1), np.int64)], axis=1)
    nib = (w & 0xF).astype(np.uint8)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, K: int) -> np.ndarray:
    """Inverse of ``pack_int4``: bytes [N, ceil(K/2)] → int4 values [N, K] as int64."""
    p = np.asarray(packed, np.uint8)
    lo = (p & 0xF).astype(np.int64)
    hi = (p >> 4).astype(np.int64)
    both = np.stack([lo, hi], axis=-1).reshape(p.shape[0], -1)[:, :K]
    return np.where(both >= 8, both - 16, both)


# --- the same operations on float64 carriers -------------------------------------------------------
# The batch execution (``model.IntModel.run``) keeps every integer tensor in float64 arrays: the linear
# layers are then float64 BLAS products and every element-wise step a vectorised float pass, with no
# int64 conversions between them. This is exact arithmetic, not an approximation: a float64 holds every
# integer of magnitude <= 2^53, and a sum, difference or product of such integers, or a scaling by a power
# of two, is computed exactly whenever the exact result (for a sum: every partial sum) is within 2^53.
# Each helper below states the bound it needs; the model checks it from the blob's constants (weights,
# multipliers, coefficients) before a run and takes the int64 functions above wherever it could fail.

EXACT = 1 << 53


def fmultiplier(M: np.ndarray | int, n: np.ndarray | int) -> np.ndarray:
    """M * 2^-n as a float64, exactly: M < 2^31 has at most 31 significant bits and 1 <= n <= 62 keeps
    the result a normal number, so the scaling only changes the exponent."""
    return np.ldexp(np.asarray(M, np.float64), -np.asarray(n, np.int32))


def float_exact(acc_bound, M, n, offset=0) -> bool:
    """Whether ``frequantize(acc, fmultiplier(M, n))``, adding ``offset`` before the floor, is exact for
    every |acc| <= acc_bound: |acc * M| + 2^(n-1) + |offset| * 2^n <= 2^53, element by element over the
    broadcast arguments (checked in Python integers)."""
    args = (np.asarray(a, np.int64).ravel().tolist() for a in np.broadcast_arrays(acc_bound, M, n, offset))
    return all(b * m + (1 << (k - 1)) + abs(o) * (1 << k) <= EXACT for b, m, k, o in zip(*args))


def fround(t: np.ndarray, lo: int = INT8_MIN, hi: int = INT8_MAX, out: np.ndarray | None = None) -> np.ndarray:
    """clip(floor(t + 1/2), lo, hi) of a float64 ``t`` that holds v / 2^n exactly for an integer v, where
    v + 2^(n-1) is below 2^53 in magnitude: the addition is then exact and the floor is
    round_shift(v, n); clipping to integer bounds commutes with the floor. The steps are done in place
    in ``t``; the result goes to ``out`` (default ``t``; it may be a view of another layout)."""
    t += 0.5
    np.floor(t, out=t)
    return np.clip(t, lo, hi, out=t if out is None else out)


def frequantize(acc: np.ndarray, c: np.ndarray | float, lo: int = INT8_MIN, hi: int = INT8_MAX,
                out: np.ndarray | None = None) -> np.ndarray:
    """``requantize`` of float64 integers with c = fmultiplier(M, n): clip(floor(acc * c + 1/2), lo, hi).

    Exact when |acc * M| + 2^(n-1) <= 2^53 (``float_exact``): acc * c is then acc * M / 2^n with no
    rounding (an integer below 2^53 scaled by a power of two), and ``fround`` does the rest. ``acc`` is
    overwritten; the result goes to ``out`` (default ``acc``)."""
    np.multiply(acc, c, out=acc)
    return fround(acc, lo, hi, out)
