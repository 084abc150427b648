"""Cost of the firmware's linear kernels on the emulated Cortex-M targets, in emulated instructions per
multiply-accumulate, through the protocol's BENCH request (docs/protocol.md).

    python -m pytest bench -q --benchmark-only          # the figures (bench/README.md)
    python -m pytest bench -q                           # plus exactness on awkward shapes

Every figure comes with two checks: the outputs' checksum equals the host build's (the portable C) and
the golden numpy layer's, and repeated runs agree to the counter's resolution (one SysTick tick: 40
instructions at 25 MHz, against REPS x rows x cols MACs). The optimised paths are also held to the
goals of the firmware issue.
"""
from __future__ import annotations

import pytest

from harness.boards import protocol as P
from harness.targets import load_target

SHAPES = [(64, 64), (128, 128), (256, 128), (192, 64)]   # rows x cols, as in the zoo's layers
BITS = (8, 4)
REPS = 4            # calls per BENCH: SysTick counts 40 instructions per tick at 25 MHz
ROUNDS = 2          # BENCH requests per figure: they must agree to the instruction

# the linear kernels' path per core (kernels.h, TRM_LINEAR_PATH)
PATH = {"cortex-m4": "dsp", "cortex-m7": "dsp", "cortex-m55": "mve"}
# goals of the firmware issue, instructions per MAC for K >= 128: (path, bits) -> bound
GOALS = {("dsp", 8): 1.5, ("dsp", 4): 2.0, ("mve", 8): 0.35}

# shapes that exercise the tails: odd rows, K % 4, K % 8 == 4, K below and above the DSP path's range,
# a single row, the zoo's mlp mixer (K = L = 36, 49)
AWKWARD = [(3, 33), (5, 36), (7, 17), (2, 12), (9, 44), (1, 64), (33, 49), (144, 36), (4, 300), (6, 257)]


def _expected_path(target: str, variant: str) -> str:
    return "portable" if variant == "portable" else PATH[load_target(target).core]


@pytest.mark.parametrize("variant", ["optimised", "portable"])
@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"int{b}")
@pytest.mark.parametrize("rows,cols", SHAPES, ids=lambda v: str(v))
def test_linear_cost(benchmark, qemu_board, reference, figures, target, variant, bits, rows, cols):
    board = qemu_board(target, variant)
    results = benchmark.pedantic(lambda: [board.bench(rows, cols, bits, REPS) for _ in range(ROUNDS)],
                                 rounds=1, iterations=1)
    r = results[0]
    assert r.counter_unit == "systick", f"{board.describe()}: counter {r.counter_unit}, not QEMU's SysTick"
    counts = [x.counter for x in results]  # the same instructions; the SysTick phase moves by one tick
    assert max(counts) - min(counts) <= 1, f"instruction counts differ between runs: {results}"
    assert r.path == _expected_path(target, variant)
    host, golden = reference(rows, cols, bits)
    assert host == golden, "the host build's BENCH disagrees with the golden linear layer"
    assert r.checksum == host, f"{board.describe()} {r.path} {rows}x{cols} int{bits}: outputs differ from the portable C"
    per_mac = r.instructions_per_mac
    benchmark.extra_info.update(target=target, variant=variant, path=r.path, bits=bits, rows=rows, cols=cols,
                                reps=REPS, instructions=r.instructions, instructions_per_mac=round(per_mac, 4),
                                checksum=f"{r.checksum:08x}")
    figures.append(dict(benchmark.extra_info))
    goal = GOALS.get((r.path, bits))
    if goal is not None and cols >= 128:
        assert per_mac <= goal, f"{target} {r.path} int{bits} {rows}x{cols}: {per_mac:.3f} instructions/MAC > {goal}"


# the zoo's layers at depth 1,2,2 (rows x cols): mlp mixer gate/up and down of sudoku6 (L = 36) and
# maze7 (L = 49), FFN gate/up and down at hidden 32 and 64
ZOO_SHAPES = [(144, 36), (36, 72), (196, 49), (49, 98), (128, 32), (32, 64), (256, 64), (64, 128)]


@pytest.mark.parametrize("vectors", [1, 2])
@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"int{b}")
@pytest.mark.parametrize("rows,cols", ZOO_SHAPES, ids=lambda v: str(v))
def test_zoo_layer_cost(benchmark, qemu_board, zoo_figures, target, bits, rows, cols, vectors):
    """The optimised kernels on the zoo's own layer shapes, one vector (trm_linear) and two at once
    (trm_linear_pair: the channel SwiGLU's tokens in pairs), checked against the golden layer."""
    from harness.golden.arith import linear
    board = qemu_board(target, "optimised")
    results = benchmark.pedantic(lambda: [board.bench(rows, cols, bits, REPS, vectors=vectors) for _ in range(ROUNDS)],
                                 rounds=1, iterations=1)
    r = results[0]
    assert r.counter_unit == "systick" and r.vectors == vectors
    assert max(x.counter for x in results) - min(x.counter for x in results) <= 1
    w, x, M, n = P.bench_reference(rows, cols, bits, vectors)
    assert r.checksum == P.bench_checksum(linear(x.reshape(vectors, cols), w, M, n)), f"{target} {rows}x{cols}"
    benchmark.extra_info.update(target=target, path=r.path, bits=bits, rows=rows, cols=cols, vectors=vectors,
                                reps=REPS, instructions=r.instructions,
                                instructions_per_mac=round(r.instructions_per_mac, 4))
    zoo_figures.append(dict(benchmark.extra_info))


@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"int{b}")
def test_linear_exact_on_awkward_shapes(qemu_board, reference, target, bits):
    """Not timed: the optimised firmware against the golden layer where the fast paths hand over to
    their tails or to the portable loop."""
    board = qemu_board(target, "optimised")
    for rows, cols in AWKWARD:
        r = board.bench(rows, cols, bits, 1)
        host, golden = reference(rows, cols, bits)
        assert (r.checksum, host) == (golden, golden), f"{target} int{bits} {rows}x{cols}"


def test_host_bench_matches_golden(reference):
    """The firmware's generated matrix (server.c) is the one protocol.bench_reference describes."""
    for rows, cols, bits in [(1, 1, 8), (1, 1, 4), (3, 7, 4), (5, 33, 8), (16, 64, 4)]:
        host, golden = reference(rows, cols, bits)
        assert host == golden, (rows, cols, bits)


def test_bench_refuses_bad_requests(host_board):
    """ARGS errors for a malformed payload, a width other than 4 or 8, zero sizes and a matrix larger
    than the arena; the server answers the next request."""
    with pytest.raises(P.BoardError) as e:
        host_board.request(P.BENCH, P.bench_payload(8, 8, 8)[:-1])
    assert e.value.name == "ARGS"
    for rows, cols, bits, reps in [(8, 8, 5, 1), (0, 8, 8, 1), (8, 0, 4, 1), (8, 8, 8, 0), (1000, 1000, 8, 1)]:
        with pytest.raises(P.BoardError) as e:
            host_board.bench(rows, cols, bits, reps)
        assert e.value.name == "ARGS", (rows, cols, bits, reps)
    r = host_board.bench(2, 3, 4)
    assert (r.rows, r.cols, r.bits, r.reps, r.path, r.counter_unit) == (2, 3, 4, 1, "portable", "ns")
