"""pytest plugin (entry point ``pytest11``): fixtures shared by the harness's own tests and by users'
device suites: ``zoo_model``, ``blobs``, and the board options and fixtures below; and, at session end,
the check that no emulator the session started is left running."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture(scope="session")
def blobs():
    """The model blob of a zoo model and an integer recipe, exported once per session:
    ``blob = blobs("sudoku6-mlp", "int8")``."""
    from harness.export.exporter import export_blob
    cache: dict[tuple[str, str], bytes] = {}

    def get(model: str, recipe: str) -> bytes:
        if (model, recipe) not in cache:
            import torch
            torch.set_num_threads(1)
            cache[model, recipe] = export_blob(model, recipe)
        return cache[model, recipe]

    return get


# --- boards ------------------------------------------------------------------------------------------
# --board picks the backend (default host: the firmware core built natively, so a laptop without an
# emulator still tests); serial:<id> (or qemu:<id>, ...) picks a board of --inventory. Tests ask for
# `board` (started once per target, reused), `target` and `firmware`, or for `open_board` to start a
# board with a blob of their own; tests that take `target` run once per target the backend supports.

BOARD_CONTEXT = pytest.StashKey[list]()      # on a test item: the boards open_board made for it


def pytest_addoption(parser):
    group = parser.getgroup("harness")
    group.addoption("--board", default=None,
                    help="Board backend for device tests: host (default: the firmware core built natively), "
                         "qemu, renode, or serial:<id> (a board of --inventory).")
    group.addoption("--target", action="append", default=None,
                    help="Target(s) for device tests (targets/*.toml); default: every target the backend supports.")
    group.addoption("--inventory", default=None, metavar="FILE",
                    help="Board inventory (TOML, [[board]] tables: id, backend, target, port, baud, probe, tags) "
                         "for --board <backend>:<id>.")


@dataclass(frozen=True)
class BoardChoice:
    kind: str
    spec: object = None          # harness.boards.inventory.BoardSpec of --board <backend>:<id>


@dataclass(frozen=True)
class Firmware:
    path: Path
    sha256: str


BOARD_CHOICE = pytest.StashKey[BoardChoice]()


def _choice(config) -> BoardChoice:
    from harness.boards.inventory import InventoryError, find_board, load_inventory
    value = config.getoption("--board", default=None) or "host"
    kind, _, board_id = value.partition(":")
    inventory = config.getoption("--inventory", default=None)
    if not board_id:
        if kind == "serial":
            raise pytest.UsageError("--board serial names a physical board: --board serial:<id> --inventory FILE")
        return BoardChoice(kind)
    if not inventory:
        raise pytest.UsageError(f"--board {value}: give the inventory that lists {board_id!r} (--inventory FILE)")
    try:
        spec = find_board(load_inventory(inventory), board_id, inventory)
    except InventoryError as e:
        raise pytest.UsageError(f"--board {value}: {e}") from None
    if spec.backend != kind:
        raise pytest.UsageError(f"--board {value}: {board_id!r} is a {spec.backend} board in {inventory}")
    return BoardChoice(kind, spec)


def _targets(config) -> list[str]:
    """The targets device tests run on: --target, else every target (a board of the inventory: its own)."""
    from harness.targets import target_names
    choice, asked = config.stash[BOARD_CHOICE], config.getoption("--target", default=None)
    supported = [choice.spec.target] if choice.spec else target_names()
    if asked and (other := [t for t in asked if t not in supported]):
        raise pytest.UsageError(f"--target {', '.join(other)}: the board supports {', '.join(supported)}")
    return asked or supported


def pytest_configure(config):
    config.addinivalue_line("markers", "board: a test that runs the firmware on a board (see --board)")
    choice = _choice(config)
    from harness.boards.factory import backend_missing
    # a missing emulator stops the run here, except Renode: there the Renode-only tests skip with the
    # reason and every test that needs a board fails at once with the message (issue 5's contract)
    if choice.kind != "renode" and (msg := backend_missing(choice.kind)):
        raise pytest.UsageError(f"--board {choice.kind}: {msg}")
    config.stash[BOARD_CHOICE] = choice
    _targets(config)  # a --target the board does not support stops here, before collection


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc):
    """A test that takes ``target`` (or ``board``) runs once per target, unless it, or a conftest, chose
    the targets itself."""
    if "target" not in metafunc.fixturenames:
        return
    direct = {name.strip() for m in metafunc.definition.iter_markers("parametrize")
              for name in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])}
    # parametrisations a conftest already made (pytest keeps them in _calls; bench/conftest.py gives
    # target names as strings)
    chosen = any("target" in call.params for call in getattr(metafunc, "_calls", []))
    if chosen or direct & {"target", "board"}:
        return
    metafunc.parametrize("target", _targets(metafunc.config), indirect=True, scope="session")


@pytest.fixture(scope="session")
def board_kind(request) -> str:
    """The backend device tests run on: --board (default host)."""
    return request.config.stash[BOARD_CHOICE].kind


@pytest.fixture(scope="session")
def board_targets(request) -> list[str]:
    return _targets(request.config)


@pytest.fixture(scope="session")
def target(request, board_targets):
    """The ``Target`` a test runs on (tests taking it are parametrised over ``board_targets``)."""
    from harness.targets import load_target
    return load_target(getattr(request, "param", board_targets[0]))


@pytest.fixture(scope="session")
def board_log_dir(tmp_path_factory) -> Path:
    """Boards' logs (QEMU's output, the serial board's flashing), kept after the run for failures."""
    return tmp_path_factory.mktemp("board-logs")


@pytest.fixture(scope="session")
def firmware(board_kind, target) -> Firmware:
    """The image the board runs: the prebuilt ELF of the target, or the host build of the core."""
    if board_kind == "host":
        from harness.native import build
        path = build()
    else:
        from harness.firmware import FirmwareError, firmware_elf
        try:
            path = firmware_elf(target.name)
        except FirmwareError as e:
            pytest.skip(str(e))
    return Firmware(Path(path), hashlib.sha256(Path(path).read_bytes()).hexdigest())


def _make(request, target_name: str, blob: bytes | None, **kw):
    from harness.boards.factory import BoardUnavailable, make_board
    from harness.targets import load_target
    choice = request.config.stash[BOARD_CHOICE]
    if choice.spec is not None:
        if target_name != choice.spec.target:
            pytest.skip(f"board {choice.spec.id} is a {choice.spec.target}; this test needs {target_name}")
        kw = {"board_id": choice.spec.id, **choice.spec.options, **kw}
    kw.setdefault("log_dir", request.getfixturevalue("board_log_dir"))
    from harness.boards.factory import backend_missing
    try:
        return make_board(choice.kind, load_target(target_name), blob, **kw)
    except BoardUnavailable as e:
        if backend_missing(choice.kind) is None:      # the backend runs, this target does not on it
            pytest.skip(f"{choice.kind} board for {target_name}: {e}")
        pytest.fail(f"--board {choice.kind} for {target_name}: {e}", pytrace=False)


@pytest.fixture
def open_board(request):
    """``with open_board(target, blob) as board:`` a started board of the selected backend (a board of the
    inventory with --board serial:<id>; tests for another target skip)."""
    def make(target: str, blob: bytes | None, **kw):
        board = _make(request, target, blob, **kw)
        request.node.stash.setdefault(BOARD_CONTEXT, []).append(board)
        return board
    return make


@pytest.fixture(scope="session")
def default_blob() -> bytes:
    """The blob the ``board`` fixture holds: the shipped sudoku6-mlp at int8."""
    from harness.export.exporter import export_blob
    return export_blob("sudoku6-mlp", "int8")


# The shared ``board`` of a target is closed after the last collected test that uses it, not at session
# end: an idle emulator is not free (an idle Renode board spins in WFI at 70-85% of a core), and the
# session's remaining tests (the zoo's, the study's) would otherwise share the CPU with it.
@dataclass
class SharedBoard:
    users: int = 0           # collected tests still to use the target's board
    board: object = None     # the started board, until it is closed


SHARED_BOARDS = pytest.StashKey[dict]()      # target name -> SharedBoard


def _board_target(item) -> str | None:
    """The name of the target whose shared ``board`` ``item`` uses, or None when it uses none (or a
    conftest parametrised ``target`` with something else than names: its board closes at session end)."""
    if "board" not in getattr(item, "fixturenames", ()):
        return None
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("target") if callspec else None
    name = name if name is not None else _targets(item.config)[0]
    return name if isinstance(name, str) else None


def _close_shared(shared: SharedBoard) -> None:
    board, shared.board = shared.board, None
    if board is not None:
        board.close()


@pytest.hookimpl(trylast=True)   # after deselection (-m, -k): count only the tests that will run
def pytest_collection_modifyitems(session, config, items):
    shared: dict[str, SharedBoard] = {}
    for item in items:
        if (name := _board_target(item)) is not None:
            shared.setdefault(name, SharedBoard()).users += 1
    config.stash[SHARED_BOARDS] = shared


def pytest_runtest_teardown(item, nextitem):
    shared = item.config.stash.get(SHARED_BOARDS, {}).get(_board_target(item))
    if shared is not None:
        shared.users -= 1
        if shared.users <= 0:
            _close_shared(shared)


@pytest.fixture(scope="session")
def board(request, target, default_blob):
    """A started board of --board for ``target`` holding ``default_blob``, shared by the tests of that
    target (for another blob use ``open_board``; after a probe rewrote the blob, ``board.reload()``),
    closed after the last test that uses it."""
    b = _make(request, target.name, default_blob)
    try:
        b.start()
    except Exception as e:
        pytest.fail(f"could not start the board: {e}\n{board_context(b)}")
    # a target its collected tests were not counted for (a conftest's own parametrisation) gets a record
    # of its own: its board closes here, at session end
    shared = request.config.stash.get(SHARED_BOARDS, {}).get(target.name) or SharedBoard()
    shared.board = b
    yield b
    _close_shared(shared)            # a no-op when its last user's teardown closed it


def board_context(board) -> str:
    """What a failure on ``board`` needs said: the board, its target, firmware sha256 and log."""
    from harness.run import provenance
    fw = getattr(board, "firmware", None)
    sha = provenance(board, b"").get("firmware_sha256") if fw else None
    log = getattr(board, "log_path", None)
    return (f"board {board.describe()}: target {board.target.name}, firmware "
            f"{f'{fw} (sha256 {sha})' if fw else 'host build of the core'}, log {log or 'none'}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing device test's report names each board it used: target, firmware sha256, log path."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    from harness.boards.base import Board
    boards = list(item.stash.get(BOARD_CONTEXT, []))
    for value in getattr(item, "funcargs", {}).values():
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, Board) and v not in boards:
                boards.append(v)
    if boards:
        report.sections.append(("board", "\n".join(board_context(b) for b in boards)))


# --- leftover emulators ------------------------------------------------------------------------------
# An emulator (QEMU, Renode: any process a board started, tagged with base.OWNER_ENV = this pid) still
# alive once the session's fixtures are torn down is a leftover: it would run on, at full CPU, after the
# session. Each is killed and the session fails naming it. Those alive at session start are not this
# session's (an in-process pytester run inside a session that holds boards).
EMULATORS_AT_START = pytest.StashKey[set]()
LEFTOVERS = pytest.StashKey[list]()


def _emulators() -> list[tuple[int, str]]:
    if not sys.platform.startswith("linux"):     # emulators_of reads /proc
        return []
    from harness.boards.base import emulators_of
    return emulators_of()


def pytest_sessionstart(session):
    session.config.stash[EMULATORS_AT_START] = {pid for pid, _ in _emulators()}


def _end(pids: list[int]) -> None:
    """SIGKILL to each of ``pids``; collect those that are this process's children (no zombie left)."""
    import signal
    from harness.boards.group import signal_each
    signal_each(pids, signal.SIGKILL)
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:             # not our child: its own parent collects it
            pass


@pytest.hookimpl(trylast=True)   # after pytest's own sessionfinish, which tears down the fixtures (their boards)
def pytest_sessionfinish(session):
    before = session.config.stash.get(EMULATORS_AT_START, set())
    left = [(pid, cmd) for pid, cmd in _emulators() if pid not in before]
    if not left:
        return
    _end([pid for pid, _ in left])
    session.config.stash[LEFTOVERS] = left
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if (left := config.stash.get(LEFTOVERS, None)):
        terminalreporter.section("leftover emulators", sep="=", red=True, bold=True)
        terminalreporter.line(f"{len(left)} emulator process(es) this session started were still running at its "
                              "end, killed now (a board not closed: use `with open_board(...)`, or close it in "
                              "a finalizer):", red=True)
        for pid, cmd in left:
            terminalreporter.line(f"pid {pid}: {cmd}", red=True)
