"""The serial backend: the board code that opens a physical board's port (pyserial), pointed at QEMU's
UART exposed as a pty (`-serial pty`) with `--board qemu`, or at a real board with
`--board serial:<id> --inventory FILE`. Also the inventory file and the plugin's board options."""
from __future__ import annotations

import hashlib
import json
import signal
import textwrap

import pytest

from harness.boards import protocol as P
from harness.boards.base import BoardTimeout

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def serial_board(request, board_kind, target):
    """A started SerialBoard for ``target`` holding the default blob: over QEMU's pty with --board qemu,
    the inventory's board with --board serial:<id>."""
    if board_kind == "serial":
        yield request.getfixturevalue("board")
        return
    if board_kind != "qemu":
        pytest.skip("the serial backend is tested through QEMU's UART on a pty (--board qemu) "
                    "or on a real board (--board serial:<id> --inventory FILE)")
    from harness.boards.serial import QemuPtyFlasher, SerialBoard
    blob, log_dir = request.getfixturevalue("default_blob"), request.getfixturevalue("board_log_dir")
    with SerialBoard(target, blob, flasher=QemuPtyFlasher(log_dir=log_dir), log_dir=log_dir) as board:
        assert board.port.startswith("/dev/pts/"), board.port
        yield board


@pytest.mark.board
def test_ping_carries_every_byte_value(serial_board):
    """All 256 byte values both ways: the port is raw (no echo, no CR/LF translation, no XON/XOFF,
    no ^C), so COBS frames arrive as sent."""
    payload = bytes(range(256)) + b"\r\n\x03\x11\x13\x00\x00"
    assert serial_board.ping(payload) == payload


@pytest.mark.board
def test_info_names_the_target_and_the_blob(serial_board, target, default_blob):
    info = serial_board.info()
    manifest = json.loads((serial_board.firmware.parent / "manifest.json").read_text())
    assert info.target == target.name and info.build_id == manifest["build_id"]
    assert info.blob_status == "ok" and info.blob_size == len(default_blob) and info.seq_len == 36


@pytest.mark.board
def test_run_matches_golden_bit_for_bit(serial_board, default_blob, zoo_model):
    from harness.run import run_puzzles
    from harness.depth import Depth
    _, task, _ = zoo_model("sudoku6-mlp")
    out = run_puzzles(serial_board, default_blob, task, task.generate(2, seed=77, split="test"), Depth(1, 2, 2))
    assert [r["golden_match"] for r in out["rows"]] == [True, True], out["rows"]


@pytest.mark.board
def test_garbage_gets_an_error_frame_and_the_next_request_is_answered(serial_board):
    session = serial_board.session
    session.send_raw(bytes(range(1, 200)) + b"\x00")
    kind, _, body = P.unframe(session.read_frame(5.0))
    assert kind == P.ERROR and P.ERRORS[body[0]] in ("COBS", "CRC", "TRUNCATED", "VERSION")
    session.send_raw(bytes([7]) * 3000 + b"\x00")           # longer than the receive buffer
    kind, _, body = P.unframe(session.read_frame(5.0))
    assert kind == P.ERROR and P.ERRORS[body[0]] == "OVERSIZE"
    assert serial_board.ping(b"after garbage") == b"after garbage"


@pytest.mark.board
def test_read_timeout_is_a_board_timeout_naming_the_port(serial_board):
    with pytest.raises(BoardTimeout, match=rf"{serial_board.port}.*no answer within 0.3 s"):
        serial_board.session.read_frame(0.3)
    qemu = getattr(serial_board.flasher, "qemu", None)
    if qemu is None:
        return
    # a board that stops answering mid-request (QEMU frozen): a timeout, then it answers once resumed
    qemu.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(BoardTimeout, match="no answer within 0.5 s"):
            serial_board.ping(b"frozen", timeout=0.5)
    finally:
        qemu.proc.send_signal(signal.SIGCONT)
    assert serial_board.ping(b"thawed", timeout=5.0) == b"thawed"    # the stale PONG is skipped


# --- the inventory -------------------------------------------------------------------------------------

INVENTORY = """
[[board]]
id = "f405-1"
backend = "serial"
target = "netduinoplus2"
port = "/dev/ttyACM0"
probe = "0669FF535155878281"
tags = ["nightly", "stm32"]

[[board]]
id = "emu"
backend = "qemu"
target = "mps2-an386"
"""


def test_inventory_gives_board_specs_with_make_board_options(tmp_path):
    from harness.boards.inventory import find_board, load_inventory
    path = tmp_path / "boards.toml"
    path.write_text(INVENTORY)
    specs = load_inventory(path)
    assert [(s.id, s.backend, s.target) for s in specs] == [("f405-1", "serial", "netduinoplus2"),
                                                          ("emu", "qemu", "mps2-an386")]
    assert specs[0].options == {"port": "/dev/ttyACM0", "probe_id": "0669FF535155878281"}
    assert specs[0].tags == ["nightly", "stm32"] and specs[1].options == {} and specs[1].tags == []
    assert find_board(specs, "emu") is specs[1]


@pytest.mark.parametrize("change,message", [
    (lambda s: s.replace('id = "emu"', 'id = "f405-1"'), "used twice: f405-1"),
    (lambda s: s.replace('backend = "qemu"', 'backend = "jlink"'), "backend 'jlink' is not one of"),
    (lambda s: s.replace('target = "mps2-an386"', 'target = "nrf52"'), "unknown target 'nrf52'"),
    (lambda s: s.replace('port = "/dev/ttyACM0"\n', ''), r"board 1 \(f405-1\): backend serial needs `port`"),
    (lambda s: s.replace('tags = ["nightly", "stm32"]', 'tags = "nightly"'), "`tags` must be a list"),
    (lambda s: s.replace('port = "/dev/ttyACM0"', 'port = "/dev/ttyACM0"\nbaud = "fast"'), "`baud` must be a positive"),
    (lambda s: s + 'port = "/dev/ttyUSB0"\n', r"board 2 \(emu\): unknown key\(s\) port for backend qemu"),
    (lambda s: s.replace('id = "emu"\n', ''), r"board 2: `id` is required"),
    (lambda s: s + "[[boards]]\n", "expected only \\[\\[board\\]\\] tables, found boards"),
    (lambda s: s + "[[board\n", "not valid TOML"),
])
def test_inventory_errors_say_which_board_and_field(tmp_path, change, message):
    from harness.boards.inventory import InventoryError, load_inventory
    path = tmp_path / "boards.toml"
    path.write_text(change(INVENTORY))
    with pytest.raises(InventoryError, match=message) as e:
        load_inventory(path)
    assert str(path) in str(e.value)


def test_serial_board_needs_a_port_and_a_blob_that_fits():
    from harness.boards.factory import backend_missing, make_board
    from harness.targets import load_target
    t = load_target("netduinoplus2")
    assert backend_missing("serial") is None                 # pyserial is a dependency
    with pytest.raises(ValueError, match="needs its UART's port"):
        make_board("serial", t, None)
    with pytest.raises(ValueError, match="does not fit netduinoplus2's blob region"):
        make_board("serial", t, b"\0" * (t.blob.size + 1), port="/dev/ttyACM0")
    board = make_board("serial", t, None, board_id="f405-1", port="/dev/ttyACM0", baud=921600, probe_id="X")
    assert board.flasher.probe_id == "X" and "/dev/ttyACM0 at 921600 baud" in board.describe()


def test_pyocd_flasher_writes_the_elf_then_the_blob_at_its_origin_and_resets(monkeypatch):
    """No probe here: pyOCD's session and programmer are recorded to check what the flasher asks of
    them (the probe id, the target type, the ELF, the blob at the blob origin, a reset)."""
    import io
    import pyocd.core.helpers as helpers
    import pyocd.flash.file_programmer as fp
    from harness.boards.serial import PyocdFlasher
    from harness.firmware import firmware_elf
    from harness.targets import load_target
    calls = []

    class Session:
        probe = type("Probe", (), {"unique_id": "0669FF"})()
        board = type("Board", (), {"target": type("Core", (), {"reset": lambda self: calls.append("reset")})()})()

        def __enter__(self):
            calls.append("open")
            return self

        def __exit__(self, *exc):
            calls.append("close")

    class Programmer:
        def __init__(self, session):
            pass

        def program(self, what, file_format=None, **kw):
            data = what.read() if hasattr(what, "read") else what
            calls.append(("program", data, file_format, kw))

    def chosen(**kw):
        calls.append(("connect", kw["unique_id"], kw["target_override"]))
        return Session() if kw["unique_id"] == "0669FF" else None

    monkeypatch.setattr(helpers.ConnectHelper, "session_with_chosen_probe", staticmethod(chosen))
    monkeypatch.setattr(fp, "FileProgrammer", Programmer)
    t, elf = load_target("netduinoplus2"), firmware_elf("netduinoplus2")
    assert PyocdFlasher("0669FF").flash(t, elf, b"BLOB", io.StringIO()) is None
    assert calls == [("connect", "0669FF", "stm32f405rg"), "open", ("program", str(elf), "elf", {}),
                     ("program", b"BLOB", "bin", {"base_address": t.blob.origin}), "reset", "close"]
    assert t.blob.origin == 0x0800C000      # the committed image ends below 48 KB: the next 16 KB sector
    with pytest.raises(RuntimeError, match="no debug probe found with id nope"):
        PyocdFlasher("nope").flash(t, elf, None, io.StringIO())


# --- the plugin's options --------------------------------------------------------------------------------

PROBE_TEST = """
def test_choice(board_kind, board_targets, request):
    print("CHOICE", board_kind, ",".join(board_targets))
"""


def test_plugin_picks_a_board_of_the_inventory(pytester):
    pytester.makepyfile(PROBE_TEST)
    (pytester.path / "boards.toml").write_text(INVENTORY)
    r = pytester.runpytest("-s", "--board", "serial:f405-1", "--inventory", "boards.toml")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*CHOICE serial netduinoplus2*"])
    r = pytester.runpytest("-s")
    r.stdout.fnmatch_lines(["*CHOICE host mps2-an386,mps2-an500,mps3-an547,netduinoplus2*"])


@pytest.mark.parametrize("args,message", [
    (["--board", "serial"], "--board serial names a physical board: --board serial:<id> --inventory FILE"),
    (["--board", "serial:f405-1"], "give the inventory that lists 'f405-1'"),
    (["--board", "serial:nope", "--inventory", "boards.toml"], "no board 'nope' in boards.toml; its boards: f405-1, emu"),
    (["--board", "serial:emu", "--inventory", "boards.toml"], "'emu' is a qemu board in boards.toml"),
    (["--board", "serial:f405-1", "--inventory", "boards.toml", "--target", "mps2-an386"],
     "--target mps2-an386: the board supports netduinoplus2"),
])
def test_plugin_board_option_errors(pytester, args, message):
    pytester.makepyfile(PROBE_TEST)
    (pytester.path / "boards.toml").write_text(INVENTORY)
    r = pytester.runpytest(*args)
    assert r.ret != 0
    assert message in r.stderr.str() + r.stdout.str()


@pytest.mark.board
def test_a_failing_board_test_names_target_firmware_sha_and_log(pytester, board_kind):
    """The report of a failing device test says which board, target, firmware (sha256) and log."""
    if board_kind != "qemu":
        pytest.skip("names a firmware ELF and a QEMU log: --board qemu")
    pytester.makepyfile(textwrap.dedent("""
        def test_fails(open_board):
            with open_board("netduinoplus2", None) as board:
                assert board.ping(b"x") == b"y"
    """))
    r = pytester.runpytest("--board", "qemu")
    r.assert_outcomes(failed=1)
    from harness.firmware import firmware_elf
    sha = hashlib.sha256(firmware_elf("netduinoplus2").read_bytes()).hexdigest()
    r.stdout.fnmatch_lines(["*board*", f"*target netduinoplus2, firmware *firmware.elf (sha256 {sha}), log *qemu-netduinoplus2.log*"])
