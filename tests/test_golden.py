"""The golden reference's batch execution (``IntModel.run``, float64 carriers) against its operation by
operation form (``IntModel.run_reference``, int64, the contract as written): the same arrays, bit for
bit, on zoo blobs, for every chunking of a batch, and with each fast path turned off by its exactness
bound. tests/test_native.py compares ``run`` with the C build; bench/test_golden.py times it."""
from __future__ import annotations

import numpy as np
import pytest

from harness.golden import arith
from harness.golden import model as G

KEYS = ("per_step", "halt_acc", "halt", "y", "z")


def assert_same(ref: dict, got: dict, keys=KEYS):
    assert sorted(got) == sorted(keys)
    for k in keys:
        a, b = ref[k], got[k]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), (k, a.dtype, a.shape, b.dtype, b.shape)
        if not np.array_equal(a, b):
            bad = np.argwhere(a != b)
            raise AssertionError(f"{k}: {len(bad)} entries differ, first at {tuple(bad[0])}: "
                                 f"reference {a[tuple(bad[0])]}, run {b[tuple(bad[0])]}")


@pytest.fixture(scope="module", params=[("sudoku6-mlp", "int8"), ("sudoku6-mlp", "int4-pc"),
                                        ("sudoku6-attention", "int8"), ("maze7-mlp", "int4-pc")],
                ids=lambda c: "-".join(c))
def case(request, blobs):
    from harness.export import blob as B
    from harness.models.checkpoint import checkpoint_task
    from harness.tasks import stack

    name, recipe = request.param
    im = B.from_blob(blobs(name, recipe))
    x = stack(checkpoint_task(name).generate(7, seed=31, split="test"))[0]
    return im, x, im.run_reference(x, 1, 2, 3)


def fast_paths(plan: G._Plan) -> list[bool]:
    flags = []
    for mixer, mix_res, ffn, ffn_res, _ in plan.z_blocks + (plan.y_blocks if plan.y_blocks is not plan.z_blocks else []):
        flags += [mixer.fast, mix_res[2], ffn.fast, ffn_res[2]]
    return flags + [plan.head.exact, plan.add_exact]


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_run_equals_the_reference_for_any_chunking(case, chunk):
    im, x, ref = case
    assert all(fast_paths(G._Plan(im)))          # the zoo's constants keep every step in float64
    assert_same(ref, im.run(x, 1, 2, 3, chunk=chunk))


def test_run_without_carries_and_on_no_puzzles(case):
    im, x, ref = case
    got = im.run(x, 1, 2, 3, keep_carries=False)
    assert_same(ref, got, ("per_step", "halt_acc", "halt"))
    empty = im.run(x[:0], 1, 2, 3)
    assert empty["y"].shape == (3, 1, 0) + x.shape[1:] + (im.embed.shape[1],) and empty["halt"].shape == (3, 0)


@pytest.mark.parametrize("bits", [52, 49, 0])
def test_steps_beyond_their_bound_take_the_int64_rule(case, monkeypatch, bits):
    """Lowering the float64 range turns fast paths off where the blob's constants come close to it (every
    one at 0): each then runs as the reference, and the result is still the same."""
    im, x, ref = case
    monkeypatch.setattr(arith, "EXACT", 1 << bits if bits else 0)
    flags = fast_paths(G._Plan(im))
    if bits == 0:
        assert not any(flags)
    assert_same(ref, im.run(x, 1, 2, 3, chunk=4))


def test_float_requantization_equals_the_int64_rule():
    """frequantize on the boundaries: ties both ways, saturation, a zero multiplier, int16 outputs, the
    largest accumulators the bound allows."""
    rng = np.random.default_rng(5)
    for M, n in [(1 << 30, 31), (1 << 30, 1), ((1 << 31) - 1, 52), (1_285_383_462, 36), (0, 1), (1_500_000_001, 45)]:
        bound = (arith.EXACT - (1 << (n - 1))) // max(M, 1)
        acc = np.concatenate([np.arange(-300, 301), rng.integers(-bound, bound + 1, 20_000), [bound, -bound]])
        if M:   # exact ties: acc * M = k 2^n + 2^(n-1)
            k = np.arange(-40, 40)
            tie = ((k << n) + (1 << (n - 1))) // M
            acc = np.concatenate([acc, tie[(tie * M) == (k << n) + (1 << (n - 1))]])
        assert arith.float_exact(np.abs(acc).max(), M, n)
        for lo, hi in [(arith.INT8_MIN, arith.INT8_MAX), (arith.INT16_MIN, arith.INT16_MAX)]:
            want = arith.requantize(acc, M, n, lo, hi)
            got = arith.frequantize(acc.astype(np.float64), arith.fmultiplier(M, n), lo, hi)
            assert np.array_equal(want, got), (M, n, lo, hi)
    # 2^(n-1) alone passes 2^53 from n = 54 on: such multipliers always take the int64 rule
    assert not arith.float_exact(1, 1 << 30, 54) and arith.float_exact(1, 1 << 30, 53)
    assert not arith.float_exact(1 << 23, (1 << 31) - 1, 40)
    assert arith.float_exact(1 << 21, (1 << 31) - 1, 40) and not arith.float_exact(1 << 21, (1 << 31) - 1, 40, 1 << 12)
