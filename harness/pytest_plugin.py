"""pytest plugin (entry point ``pytest11``): fixtures shared by the harness's own tests and by users'
device suites. Board fixtures (``--board``) arrive with the board backends."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def zoo_model():
    """Load a shipped zoo model by name: ``model, task, config = zoo_model("sudoku6-mlp")``."""
    from harness.models.checkpoint import load_checkpoint

    cache: dict[str, tuple] = {}

    def load(name: str):
        if name not in cache:
            cache[name] = load_checkpoint(name)
        return cache[name]

    return load


# --- boards ------------------------------------------------------------------------------------------



def pytest_addoption(parser):
    group = parser.getgroup("harness")
    group.addoption("--board", default=None,
                    help="Board backend for device tests: qemu (default when qemu-system-arm is installed), "
                         "host (the firmware core built natively), renode, serial.")
    group.addoption("--target", action="append", default=None,
                    help="Target(s) for device tests (targets/*.toml); default: every target.")


def pytest_configure(config):
    config.addinivalue_line("markers", "board: a test that runs the firmware on a board (see --board)")
    board = config.getoption("--board", default=None)
    if board is None:
        return
    kind = board.split(":", 1)[0]
    from harness.boards.factory import backend_missing
    if (msg := backend_missing(kind)):
        raise pytest.UsageError(f"--board {kind}: {msg}")


@pytest.fixture(scope="session")
def board_kind(request) -> str:
    """The backend device tests run on: --board, else qemu when installed (tests skip otherwise)."""
    board = request.config.getoption("--board")
    if board:
        return board.split(":", 1)[0]
    from harness.boards.qemu import qemu_missing
    if qemu_missing():
        pytest.skip("no board: qemu-system-arm is not installed and --board was not given")
    return "qemu"


@pytest.fixture(scope="session")
def board_targets(request) -> list[str]:
    from harness.targets import target_names
    return request.config.getoption("--target") or target_names()


@pytest.fixture(scope="session")
def open_board(board_kind):
    """``with open_board(target, blob) as board:`` a started board of the selected backend."""
    from harness.targets import load_target

    def make(target: str, blob: bytes | None, **kw):
        from harness.boards.factory import BoardUnavailable, make_board
        try:
            return make_board(board_kind, load_target(target), blob, **kw)
        except BoardUnavailable as e:
            pytest.fail(f"{board_kind} board for {target}: {e}")

    return make
