"""The integer primitives of docs/integer-inference.md: rounding edge cases and bounds against float."""
import math

import numpy as np
import pytest

from harness.golden import arith


def test_round_shift_rounds_half_up_for_both_signs():
    v = np.array([5, 6, 7, -5, -6, -7, 0])      # / 4 = 1.25 1.5 1.75 -1.25 -1.5 -1.75 0
    assert arith.round_shift(v, 2).tolist() == [1, 2, 2, -1, -1, -2, 0]
    # exact ties: +2.5 -> 3, -2.5 -> -2 (towards +inf), never banker's rounding
    assert arith.round_shift(np.array([5, -5]), 1).tolist() == [3, -2]


def test_requantize_ties_negatives_and_saturation():
    M, n = 1 << 30, 31                           # multiplier exactly 0.5
    acc = np.array([3, -3, 1, -1, 1000, -1000, 255, -257])
    # 1.5 -> 2, -1.5 -> -1, 0.5 -> 1, -0.5 -> 0, 500 -> 127, -500 -> -128, 127.5 -> 127 (sat), -128.5 -> -128
    assert arith.requantize(acc, M, n).tolist() == [2, -1, 1, 0, 127, -128, 127, -128]
    assert arith.requantize(np.array([70000]), M, n, arith.INT16_MIN, arith.INT16_MAX).tolist() == [32767]


@pytest.mark.parametrize("r", [1e-9, 3.3e-5, 0.0071, 0.5, 0.999999999, 1.0, 7.25, 1234.5])
def test_quantize_multiplier_is_accurate(r):
    (M,), (n,) = arith.quantize_multiplier(r)
    assert (1 << 30) <= M < (1 << 31) and 1 <= n <= 62
    assert abs(M / 2.0 ** n - r) <= r * 2.0 ** -30


def test_quantize_multiplier_edges():
    (M,), (n,) = arith.quantize_multiplier(0.0)
    assert (M, n) == (0, 1)
    (M,), (n,) = arith.quantize_multiplier(1e-30)   # below 2^-31 resolution at n=62: rounds to zero
    assert M == 0
    with pytest.raises(ValueError):
        arith.quantize_multiplier(-1.0)
    with pytest.raises(ValueError):
        arith.quantize_multiplier(2.0 ** 31)


def test_int4_packing_order_and_round_trip():
    w = np.array([[1, -1, 7, -8]])
    # element 0 in the low nibble of byte 0, element 1 in its high nibble
    assert arith.pack_int4(w).tolist() == [[0xF1, 0x87]]
    odd = np.array([[3, -2, 5], [-7, 0, 1]])
    packed = arith.pack_int4(odd)
    assert packed.shape == (2, 2) and packed[0, 1] == 0x05 and packed[1, 1] == 0x01  # zero high nibble
    rng = np.random.default_rng(0)
    for K in (1, 2, 35, 64):
        w = rng.integers(-8, 8, size=(5, K))
        assert np.array_equal(arith.unpack_int4(arith.pack_int4(w), K), w)
    with pytest.raises(ValueError):
        arith.pack_int4(np.array([[8]]))


def test_isqrt_is_exact_near_squares_and_large_values():
    rng = np.random.default_rng(1)
    roots = np.concatenate([rng.integers(0, 2**31, 2000), [0, 1, 2**31 - 1]]).astype(np.int64)
    for delta in (-1, 0, 1):
        v = np.maximum(roots * roots + delta, 0)
        assert np.array_equal(arith.isqrt(v), np.array([math.isqrt(int(x)) for x in v]))


def test_rmsnorm_matches_float_within_one_unit():
    rng = np.random.default_rng(2)
    D, s_out = 64, 4.0 / 127
    const = round(math.sqrt(D) / s_out * 256)
    for scale in (3, 300, 300_000):
        v = rng.normal(0, scale, size=(50, D)).round().astype(np.int64)
        out = arith.rmsnorm(v, const)
        ref = v / np.sqrt((v.astype(float) ** 2).mean(-1, keepdims=True)) / s_out
        inside = np.abs(ref) < 127
        assert np.max(np.abs(out - ref)[inside]) <= 1.0
        assert np.all(out[~inside] == np.sign(ref[~inside]) * np.where(ref[~inside] > 0, 127, 128))
    assert arith.rmsnorm(np.zeros((1, D), np.int64), const).tolist() == [[0] * D]


def test_softmax_matches_float():
    rng = np.random.default_rng(3)
    s_q = s_k = 0.05
    hd = 16
    real = s_q * s_k / math.sqrt(hd)
    (M,), (n,) = arith.quantize_multiplier(real * math.log2(math.e) * 256)
    scores = rng.integers(-20000, 20000, size=(40, 30))
    p = arith.softmax(scores, int(M), int(n)) / 2.0 ** 15
    x = scores * real
    ref = np.exp(x - x.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    assert np.max(np.abs(p - ref)) < 2e-3
    assert np.all(np.abs(p.sum(-1) - 1) < 2e-3)


def test_weighted_add_and_residual_coefficients():
    a = np.array([100, -100, 127])
    b = np.array([27, 27, 127])
    # 0.5 a + 0.25 b
    out = arith.weighted_add([(a, 2048), (b, 1024)])
    assert out.tolist() == [57, -43, 95]   # 56.75->57, -43.25->-43, 95.25->95
    assert arith.weighted_add([(a, 4096 * 4)]).tolist() == [127, -128, 127]


def test_rope_matches_float_rotation():
    cos, sin = arith.rope_tables(12, 8, 10000.0)
    rng = np.random.default_rng(4)
    q = rng.integers(-90, 90, size=(3, 12, 8))
    out = arith.rope(q, cos, sin)
    inv = 1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8)
    ang = np.outer(np.arange(12), inv)
    e, o = q[..., 0::2], q[..., 1::2]
    ref_e, ref_o = e * np.cos(ang) - o * np.sin(ang), e * np.sin(ang) + o * np.cos(ang)
    assert np.max(np.abs(out[..., 0::2] - ref_e)) <= 0.51 and np.max(np.abs(out[..., 1::2] - ref_o)) <= 0.51


def test_imatmul_is_exact_for_large_integer_sums():
    rng = np.random.default_rng(5)
    a = rng.integers(-32768, 32768, size=(7, 300))
    b = rng.integers(-128, 128, size=(300, 9))
    assert np.array_equal(arith.imatmul(a, b), a.astype(object).dot(b.astype(object)).astype(np.int64))
