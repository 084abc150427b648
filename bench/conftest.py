"""Fixtures of the kernel benchmarks: one QEMU board per target and firmware variant (booted once per
session, no model blob), the host build as the portable reference, and a summary table at the end.

Targets: every ``targets/*.toml``, or those given with ``--target`` (the harness pytest plugin's option).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.boards import protocol as P
from harness.targets import load_target, target_names

# firmware variants: "optimised" is firmware-bin/<target>/ (the committed build, DSP or Helium linear
# kernels), "portable" the same sources built with -DTRM_PORTABLE_KERNELS into build/firmware-portable/
VARIANTS = ("optimised", "portable")


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", metafunc.config.getoption("--target") or target_names())


def _firmware(target: str, variant: str) -> Path:
    from harness.firmware import BIN, portable_elf, toolchain_missing
    if variant == "optimised":
        elf = BIN / target / "firmware.elf"
        if not elf.exists():
            pytest.skip(f"no {elf.relative_to(BIN.parent)}: run `harness firmware build --target {target}`")
        return elf
    if (msg := toolchain_missing()):
        pytest.skip(f"the portable comparison firmware is built on demand: {msg}")
    return portable_elf(target)


def pytest_collection_modifyitems(items):
    """Run the tests of one board (target, firmware variant) one after the other: qemu_board keeps a
    single QEMU running (an idle firmware polls its UART, so an idle QEMU keeps a core busy)."""
    def board_of(item):
        params = getattr(getattr(item, "callspec", None), "params", {})
        return params.get("target", ""), params.get("variant", "optimised")
    items.sort(key=board_of)


@pytest.fixture(scope="session")
def qemu_board():
    """``qemu_board(target, variant)``: a started QEMU board without a blob (the firmware reports the
    missing blob; BENCH needs none). One board at a time: asking for another closes the previous."""
    from harness.boards.qemu import QemuBoard, qemu_missing
    if (msg := qemu_missing()):
        pytest.skip(msg)
    current: dict[tuple[str, str], QemuBoard] = {}

    def get(target: str, variant: str) -> QemuBoard:
        key = (target, variant)
        if key not in current:
            for board in current.values():
                board.close()
            current.clear()
            board = QemuBoard(load_target(target), blob=None, firmware=_firmware(target, variant),
                              board_id=f"bench-{target}-{variant}")
            board.start(timeout=30.0)
            current[key] = board
        return current[key]

    yield get
    for board in current.values():
        board.close()


@pytest.fixture(scope="session")
def host_board():
    """The firmware's protocol server built for this machine (harness.native), without a blob."""
    from harness.boards.host import HostBoard
    host = HostBoard(load_target(target_names()[0]), None)
    try:
        host.start()
    except RuntimeError as e:  # no host C compiler for harness.native
        pytest.skip(f"the host build of the firmware core is the reference: {e}")
    yield host
    host.close()


@pytest.fixture(scope="session")
def reference(host_board):
    """``reference(rows, cols, bits)``: (checksum from the host build's BENCH, i.e. the portable C on
    this machine; checksum of the golden numpy linear layer on the same generated matrix)."""
    from harness.golden.arith import linear
    cache: dict[tuple[int, int, int], tuple[int, int]] = {}

    def get(rows: int, cols: int, bits: int) -> tuple[int, int]:
        if (rows, cols, bits) not in cache:
            w, x, M, n = P.bench_reference(rows, cols, bits)
            golden = P.bench_checksum(linear(x[None], w, M, n)[0])
            cache[rows, cols, bits] = (host_board.bench(rows, cols, bits).checksum, golden)
        return cache[rows, cols, bits]

    return get


_FIGURES: list[dict] = []


@pytest.fixture(scope="session")
def figures() -> list[dict]:
    """Rows of the summary printed after the run (target, variant, path, shape, instructions/MAC)."""
    return _FIGURES


_ZOO_FIGURES: list[dict] = []


@pytest.fixture(scope="session")
def zoo_figures() -> list[dict]:
    """Rows of the zoo-shape summary (target, bits, shape, vectors, instructions/MAC)."""
    return _ZOO_FIGURES


def _zoo_summary(tr) -> None:
    tr.section("zoo layer shapes, optimised kernels: emulated instructions per MAC, one vector / two at once")
    shapes = list(dict.fromkeys((f["rows"], f["cols"]) for f in _ZOO_FIGURES))
    tr.write_line(f"{'target':14} {'path':6} {'bits':>4} " + " ".join(f"{r}x{c}".rjust(13) for r, c in shapes))
    for target, path, bits in sorted({(f["target"], f["path"], f["bits"]) for f in _ZOO_FIGURES}, key=lambda k: (k[0], -k[2])):
        cells = []
        for r, c in shapes:
            got = {f["vectors"]: f["instructions_per_mac"] for f in _ZOO_FIGURES
                   if (f["target"], f["bits"], f["rows"], f["cols"]) == (target, bits, r, c)}
            cells.append((f"{got.get(1, float('nan')):.2f} / {got.get(2, float('nan')):.2f}").rjust(13))
        tr.write_line(f"{target:14} {path:6} {bits:>4} " + " ".join(cells))


def pytest_terminal_summary(terminalreporter):
    if _ZOO_FIGURES:
        _zoo_summary(terminalreporter)
    if not _FIGURES:
        return
    tr = terminalreporter
    tr.section("linear kernels: emulated instructions per MAC (QEMU -icount shift=0)")
    shapes = sorted({(f["rows"], f["cols"]) for f in _FIGURES}, key=lambda s: (s[1], s[0]))
    tr.write_line(f"{'target':14} {'path':9} {'bits':>4} " + " ".join(f"{r}x{c:<4}".rjust(9) for r, c in shapes))
    keys = sorted({(f["target"], f["path"], f["bits"]) for f in _FIGURES}, key=lambda k: (k[0], k[1] == "portable", -k[2]))
    for target, path, bits in keys:
        cells = []
        for r, c in shapes:
            got = [f["instructions_per_mac"] for f in _FIGURES
                   if (f["target"], f["path"], f["bits"], f["rows"], f["cols"]) == (target, path, bits, r, c)]
            cells.append(f"{got[0]:9.3f}" if got else " " * 9)
        tr.write_line(f"{target:14} {path:9} {bits:>4} " + " ".join(cells))
