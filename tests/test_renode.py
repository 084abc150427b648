"""The Renode backend. Always: the script and command line each target gets (platform, UART wiring,
firmware, blob address, GDB server, the instruction clock), the platform files against the target files,
the monitor's telnet answer before `quit`, the process group that ends with the board (a launcher
script whose emulator is its child), the plugin's end-of-session check for leftover emulators, the
start-up timeout, the clear refusals (no Renode on PATH; the Cortex-M55 target). With `renode` on PATH
(CI has none: these skip with the reason): the protocol bit-exact against golden on every target Renode
models, the counts against QEMU's, reads and 50 attaches in a row through Renode's GDB server, and no
Renode process of ours left afterwards."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.boards import renode as R
from harness.boards.factory import BoardUnavailable, backend_missing, make_board
from harness.firmware import firmware_elf
from harness.targets import load_target, target_names

pytest_plugins = ["pytester"]

SUPPORTED = ["mps2-an386", "mps2-an500", "netduinoplus2"]
RENODE = shutil.which("renode")
needs_renode = pytest.mark.skipif(RENODE is None, reason="renode not on PATH")


def _lines(target: str, gdb_port: int | None = 3333, blob: bytes | None = b"\x01" * 64) -> list[str]:
    board = R.RenodeBoard(load_target(target), blob, gdb_port=gdb_port)
    return board.script(Path("/tmp/w/model.bin") if blob is not None else None, 40001).splitlines()


@pytest.mark.parametrize("name", SUPPORTED)
def test_script_builds_loads_wires_and_starts_each_target(name):
    t = load_target(name)
    lines = _lines(name)
    fw = Path(firmware_elf(name)).resolve()
    assert f"machine LoadPlatformDescription @{R.platform_file(t).resolve()}" in lines
    # the instruction clock: one instruction = 1 µs of virtual time (Renode's unit), SysTick one tick per
    # instruction, virtual time free to run ahead of the host's, the quantum 100,000 instructions
    assert "sysbus.cpu PerformanceInMips 1" in lines and R.MIPS == 1
    assert "sysbus.nvic Frequency 1000000" in lines and R.SYSTICK_HZ == 1_000_000
    assert "emulation SetGlobalAdvanceImmediately true" in lines
    assert 'emulation SetGlobalQuantum "0.1"' in lines and R.QUANTUM_S * R.MIPS * 1e6 == 100_000
    assert lines.index("sysbus.nvic Frequency 1000000") > [i for i, s in enumerate(lines) if "LoadPlatform" in s][0]
    assert 'emulation CreateServerSocketTerminal 40001 "uart" false' in lines   # no telnet negotiation bytes
    assert f"connector Connect sysbus.{R.UART_NAMES[name]} uart" in lines
    assert f"sysbus LoadELF @{fw}" in lines
    assert f"sysbus LoadBinary @{Path('/tmp/w/model.bin').resolve()} {t.blob.origin:#010x}" in lines
    assert f"sysbus.cpu VectorTableOffset {t.flash.origin:#010x}" in lines
    assert "machine StartGdbServer 3333" in lines
    assert lines[-1] == "start"
    # loads come after the machine exists, the GDB server before the start
    assert lines.index(f"sysbus LoadELF @{fw}") > [i for i, s in enumerate(lines) if "LoadPlatform" in s][0]
    assert lines.index("machine StartGdbServer 3333") < lines.index("start")


def test_script_without_blob_or_gdb_and_the_command_line(tmp_path):
    lines = _lines("mps2-an386", gdb_port=None, blob=None)
    assert not any("LoadBinary" in s or "StartGdbServer" in s for s in lines)
    board = R.RenodeBoard(load_target("mps2-an386"), None)
    assert board.command(tmp_path / "b.resc", 5555) == ["renode", "--disable-xwt", "--plain", "--port", "5555",
                                                        str(tmp_path / "b.resc")]
    with pytest.raises(ValueError, match="spaces"):
        R._path(Path("/tmp/a folder/x.repl"))


def _entries(text: str) -> dict[str, tuple[str, list[int], dict[str, str]]]:
    """name -> (type, registration addresses, attributes) of the creating entries of a .repl."""
    text = re.sub(r"//[^\n]*", "", text)
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\w+): ([\w.]+) @ (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = (m.group(2), [], {})
            rest = m.group(3)
            out[current][1].extend(int(a, 16) for a in re.findall(r"sysbus (0x[0-9A-Fa-f]+)", rest))
            continue
        m = re.match(r"^\s+sysbus (0x[0-9A-Fa-f]+)", line)
        if m and current:
            out[current][1].append(int(m.group(1), 16))
            continue
        m = re.match(r"^\s+(\w+): (.+)$", line)
        if m and current:
            out[current][2][m.group(1)] = m.group(2).strip()
        elif line and not line[0].isspace():
            current = None
    return out


@pytest.mark.parametrize("name", ["mps2-an386", "mps2-an500", "mps3-an547"])
def test_our_platform_files_match_the_target_files(name):
    t = load_target(name)
    assert t.renode_platform == f"targets/renode/{name}.repl" and R.platform_file(t).exists()
    e = _entries(R.platform_file(t).read_text())
    assert "systickFrequency" not in e["nvic"][2]                    # the script sets it (one place)
    cpu_type = e["cpu"][2]["cpuType"].strip('"')
    assert cpu_type.startswith(t.core) or (t.core in R.UNSUPPORTED_CORES and cpu_type == "cortex-m85")
    uart = e[R.UART_NAMES[name]]
    assert uart[0] == "UART.CMSDK_APB_UART" and t.uart_base in uart[1]
    memories = [(a, int(v[2]["size"], 16)) for v in e.values() if v[0] == "Memory.MappedMemory" for a in v[1]]
    for region in (t.firmware_region, t.blob, t.ram):
        assert any(a <= region.origin and region.end <= a + size for a, size in memories), (name, region)


def test_netduino_platform_builds_on_renodes_stm32f4_file():
    t = load_target("netduinoplus2")
    text = R.platform_file(t).read_text()
    assert f'using "{t.renode_platform}"' in text and t.renode_platform == "platforms/cpus/stm32f4.repl"
    assert "systickFrequency" not in re.sub(r"//[^\n]*", "", text)    # the script sets it (one place)
    # Renode's stm32f4.repl registers usart2 at 0x40004400: the firmware's USART2
    assert t.uart_kind == "stm32" and t.uart_base == 0x40004400 and R.UART_NAMES[t.name] == "usart2"
    assert "ApplySVD" not in re.sub(r"//[^\n]*", "", text)    # no network fetch at start


def test_every_target_has_a_platform_and_a_uart_name():
    for name in target_names():
        assert R.platform_file(load_target(name)).exists() and name in R.UART_NAMES


def test_cortex_m55_is_refused_with_the_reason_and_the_way_out(monkeypatch):
    t = load_target("mps3-an547")
    with pytest.raises(R.RenodeUnsupported, match=r"Cortex-M55.*--board qemu"):
        R.RenodeBoard(t, None)
    lines = R.RenodeBoard(t, b"\0" * 16, allow_standin=True).script(Path("/tmp/m.bin"), 1)
    assert "LoadBinary" in lines and "0x28000000" in lines
    assert "NOT SUPPORTED" in R.platform_file(t).read_text()
    monkeypatch.setattr(R.shutil, "which", lambda name: "/opt/renode/renode")
    with pytest.raises(BoardUnavailable, match="Cortex-M55"):
        make_board("renode", t, None)


def test_backend_missing_follows_path(monkeypatch):
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    msg = backend_missing("renode")
    assert "not on PATH" in msg and "renode.io" in msg and "--board qemu" in msg
    with pytest.raises(BoardUnavailable, match="not on PATH"):
        make_board("renode", load_target("mps2-an386"), None)
    with pytest.raises(RuntimeError, match="not on PATH"):
        R.RenodeBoard(load_target("mps2-an386"), None).start()
    monkeypatch.setattr(R.shutil, "which", lambda name: "/opt/renode/renode")
    assert backend_missing("renode") is None
    board = make_board("renode", load_target("netduinoplus2"), b"\1" * 8, gdb_port=4444, log_dir=Path("/tmp"))
    assert isinstance(board, R.RenodeBoard) and board.gdb_port == 4444 and board.backend == "renode"
    with pytest.raises(ValueError, match="does not fit"):    # as QemuBoard: the CLI reports it
        make_board("renode", load_target("netduinoplus2"), b"\0" * (load_target("netduinoplus2").blob.size + 1))


@pytest.mark.skipif(RENODE is not None, reason="renode is on PATH: the missing-Renode message cannot show")
def test_cli_run_without_renode_stops_with_the_message():
    from typer.testing import CliRunner
    from harness.cli import app
    r = CliRunner().invoke(app, ["run", "--board", "renode", "--model", "sudoku6-mlp", "--puzzles", "1"])
    assert r.exit_code != 0
    assert "renode" in r.output and "not on PATH" in r.output and "--board qemu" in r.output


# --- stopping stops: the monitor's telnet answer, the process group --------------------------------------

def test_quit_answers_the_monitors_telnet_negotiation_first():
    """Renode's monitor sends 4 negotiations and discards the first 9 bytes a client sends: `quit` sent
    first was discarded. The board reads the offer, answers it with 9 bytes, then sends `quit`."""
    import socket
    import threading
    got = bytearray()
    listener = socket.create_server(("127.0.0.1", 0))

    def monitor():
        conn, _ = listener.accept()
        conn.sendall(R.TELNET_OFFER)
        conn.settimeout(3)
        try:
            while (chunk := conn.recv(64)):
                got.extend(chunk)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    board = R.RenodeBoard(load_target("mps2-an386"), None)
    board.monitor_port = listener.getsockname()[1]
    board._quit()
    thread.join(5)
    listener.close()
    assert len(R.TELNET_ANSWER) == 9 and len(R.TELNET_OFFER) == 12
    assert bytes(got[:9]) == R.TELNET_ANSWER and bytes(got[9:]) == b"quit\n"


LAUNCHER = """#!/bin/sh
# a launcher as Renode's are: the "emulator" runs as the script's child, no exec
sleep 300 &
echo "$!" > "$1"
wait
"""


def _fake_launcher(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "launcher.sh"
    script.write_text(LAUNCHER)
    script.chmod(0o755)
    pid_file = tmp_path / "child.pid"
    return [str(script), str(pid_file)], pid_file


def _wait_for(predicate, timeout: float = 10.0):
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    import os
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
    finally:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def test_stopping_a_board_ends_its_launchers_child_too(tmp_path):
    """A board stops the whole process group of its emulator: signalling only the launcher script left its
    child (the emulator) running at full CPU. Tried with a stand-in launcher, no Renode needed."""
    from harness.boards.base import EmulatorProcess, emulators_of, stop_process
    cmd, pid_file = _fake_launcher(tmp_path)
    board = R.RenodeBoard(load_target("mps2-an386"), None, log_dir=tmp_path)
    board._workspace("trm-test")
    board._spawn(cmd, own_group=True)
    _wait_for(pid_file.exists)
    _wait_for(lambda: pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    ours = {board.proc.pid, child}
    assert _alive(child) and {pid for pid, _ in emulators_of()} >= ours
    board.signal_emulator(__import__("signal").SIGSTOP)     # a frozen board: stopping still stops it
    EmulatorProcess._stop(board)
    assert not _alive(child) and not ours & {pid for pid, _ in emulators_of()}
    # the plain stop_process of a launcher started without its own group: the child outlives it
    import subprocess
    proc = subprocess.Popen(cmd)
    _wait_for(lambda: pid_file.read_text().strip() not in ("", str(child)))
    orphan = int(pid_file.read_text())
    stop_process(proc)
    try:
        assert _alive(orphan), "the stand-in launcher no longer shows the problem the group solves"
    finally:
        __import__("os").kill(orphan, 9)


def test_a_killed_harness_leaves_no_emulator_behind(tmp_path):
    """SIGKILL to the harness: the supervisor's parent-death signal ends the group."""
    import os
    import signal
    import subprocess
    import sys
    from harness.boards.base import emulators_of
    cmd, pid_file = _fake_launcher(tmp_path)
    code = f"""
import time
from pathlib import Path
from harness.boards.renode import RenodeBoard
from harness.targets import load_target
board = RenodeBoard(load_target("mps2-an386"), None, log_dir=Path({str(tmp_path)!r}))
board._workspace("trm-test")
board._spawn({cmd!r}, own_group=True)
time.sleep(300)
"""
    harness = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        child = int(pid_file.read_text())
        assert len(emulators_of(harness.pid)) >= 3       # supervisor, launcher, its child
    finally:
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
    _wait_for(lambda: not _alive(child))
    _wait_for(lambda: emulators_of(harness.pid) == [])


LEAVES_EMULATORS = """
import os, subprocess, sys, time
from pathlib import Path
from harness.boards.base import OWNER_ENV, EmulatorProcess
from harness.boards.renode import RenodeBoard
from harness.targets import load_target

LAUNCHER = {launcher!r}
PIDS = Path({pids!r})


def _board(tmp_path):
    board = RenodeBoard(load_target("mps2-an386"), None, log_dir=tmp_path)
    board._workspace("trm-test")
    board._spawn(LAUNCHER, own_group=True)        # a Renode board's group: supervisor, launcher, its child
    child = Path(LAUNCHER[1])
    while not (child.exists() and child.read_text().strip()):
        time.sleep(0.05)
    return board, int(child.read_text())


def test_leaves_two_emulators_running(tmp_path):
    # tagged as a board tags its emulator, in a session of its own: nothing but the check ends it
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                             env={{**os.environ, OWNER_ENV: str(os.getpid())}})
    board, child = _board(tmp_path)
    PIDS.write_text(f"{{plain.pid}} {{board.proc.pid}} {{child}}")


def test_closes_its_board(tmp_path):
    board, child = _board(tmp_path)
    EmulatorProcess._stop(board)
"""


def test_the_session_fails_naming_each_emulator_it_left_running_and_kills_them(pytester, tmp_path):
    """The plugin's check at session end: a pytest session (a subprocess) whose test leaves a tagged process
    and a Renode board's process group running exits 1, its summary naming each pid with its command line,
    and none of them is alive afterwards; a session that closes its board passes."""
    import os
    import signal
    cmd, _ = _fake_launcher(tmp_path)
    pids_file = tmp_path / "pids"
    pytester.makepyfile(LEAVES_EMULATORS.format(launcher=cmd, pids=str(pids_file)))
    r = pytester.runpytest_subprocess("-p", "no:labgrid", "-k", "leaves")
    pids = [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []
    try:
        assert len(pids) == 3, r.outlines
        out = r.stdout.str()
        assert r.ret == pytest.ExitCode.TESTS_FAILED and "1 passed" in out, out
        assert "leftover emulators" in out and "emulator process(es) this session started" in out, out
        for pid in pids:
            assert re.search(rf"^pid {pid}: \S", out, re.M), (pid, out)
        assert re.search(rf"^pid {pids[0]}: .*python.* -c import time; time.sleep\(120\)$", out, re.M), out
        assert re.search(rf"^pid {pids[1]}: .*-m harness.boards.group", out, re.M), out
        assert re.search(rf"^pid {pids[2]}: sleep 300$", out, re.M), out    # the launcher's child, the "emulator"
        assert len(re.findall(r"^pid \d+: ", out, re.M)) == 4, out         # and the launcher script itself
        _wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=5)
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    (tmp_path / "child.pid").unlink()
    r = pytester.runpytest_subprocess("-p", "no:labgrid", "-k", "closes")
    assert r.ret == pytest.ExitCode.OK and "leftover emulators" not in r.stdout.str(), r.stdout.str()


def test_renode_gets_the_boards_scratch_folder_as_its_tmpdir(tmp_path, monkeypatch):
    """Renode deletes, at start-up, every $TMPDIR/renode-* folder whose suffix is no live pid: each board's
    Renode gets its own scratch folder as TMPDIR, and the scratch folder is not named renode-*."""
    seen = {}
    board = R.RenodeBoard(load_target("mps2-an386"), None, log_dir=tmp_path)
    monkeypatch.setattr(R, "renode_missing", lambda: None)
    monkeypatch.setattr(R.RenodeBoard, "_spawn", lambda self, cmd, cwd=None, own_group=False, env=None:
                        seen.update(cmd=cmd, cwd=cwd, own_group=own_group, env=env) or (_ for _ in ()).throw(
                            RuntimeError("stop here")))
    with pytest.raises(RuntimeError, match="stop here"):
        board.start()
    assert seen["own_group"] and seen["env"] == {"TMPDIR": str(seen["cwd"])}
    assert not Path(seen["cwd"]).name.startswith("renode-") and Path(seen["cwd"]).name.startswith("trm-renode-")
    board.tmp.cleanup()


# --- the start-up timeout ------------------------------------------------------------------------------------

def test_start_timeout_from_the_inventory_and_make_board(tmp_path, monkeypatch):
    from harness.boards.inventory import InventoryError, load_inventory
    monkeypatch.setattr(R.shutil, "which", lambda name: "/opt/renode/renode")
    assert R.RenodeBoard.start_timeout == R.START_TIMEOUT >= 60          # Renode's default: a loaded 2-core machine
    inv = tmp_path / "boards.toml"
    inv.write_text('[[board]]\nid = "r1"\nbackend = "renode"\ntarget = "mps2-an386"\nstart_timeout = 240\n')
    spec, = load_inventory(inv)
    assert spec.options == {"start_timeout": 240}
    board = make_board(spec.backend, load_target(spec.target), None, board_id=spec.id, **spec.options)
    assert board.start_timeout == 240.0
    assert make_board("renode", load_target("mps2-an386"), None).start_timeout == R.START_TIMEOUT
    for bad in ("0", "-5", '"soon"', "true"):
        inv.write_text(f'[[board]]\nid = "r1"\nbackend = "renode"\ntarget = "mps2-an386"\nstart_timeout = {bad}\n')
        with pytest.raises(InventoryError, match=r"board 1 \(r1\): `start_timeout` must be a positive number of seconds"):
            load_inventory(inv)
    with pytest.raises(ValueError, match="start_timeout must be a positive number"):
        make_board("qemu", load_target("mps2-an386"), None, start_timeout=0)


def test_cli_start_timeout_reaches_the_board(monkeypatch):
    """`harness run --start-timeout S` gives the board S seconds to start."""
    from typer.testing import CliRunner
    from harness import cli
    from harness.boards.errors import BoardUnavailable
    got = {}

    def fake_make_board(kind, target, blob, **kw):
        got.update(kind=kind, **kw)
        raise BoardUnavailable("stop here")

    monkeypatch.setattr("harness.boards.factory.make_board", fake_make_board)
    r = CliRunner().invoke(cli.app, ["run", "--board", "qemu", "--model", "sudoku6-mlp", "--puzzles", "1",
                                     "--start-timeout", "77"])
    assert r.exit_code != 0 and "stop here" in r.output
    assert got["start_timeout"] == 77.0
    r = CliRunner().invoke(cli.app, ["run", "--help"])
    assert "--start-timeout" in r.output and "qemu" in r.output and "renode" in r.output


# --- with Renode ---------------------------------------------------------------------------------------------

def test_renode_version_is_what_renode_says(monkeypatch, tmp_path):
    fake = tmp_path / "renode"
    fake.write_text("#!/bin/sh\necho 'Renode v9.8.7.1234'\necho '  build: abc-123'\necho '  build type: Release'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(R.shutil, "which", lambda name: str(fake))
    assert R.renode_version() == "Renode v9.8.7.1234, build: abc-123"
    board = R.RenodeBoard(load_target("mps2-an386"), b"\1" * 8)
    from harness.run import provenance
    assert provenance(board, b"\1" * 8)["emulator"] == "Renode v9.8.7.1234, build: abc-123"
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    assert R.renode_version() is None


@pytest.fixture(scope="module", autouse=True)
def no_renode_left_behind():
    """After this module's tests (every Renode board they start, the failing starts included), none of the
    emulator processes they started is left running. Boards other modules keep open for the session (the
    plugin's `board` fixture) are not this module's."""
    from harness.boards.base import emulators_of
    before = {pid for pid, _ in emulators_of()}
    yield
    left = [(pid, cmd) for pid, cmd in emulators_of() if pid not in before]
    assert left == [], f"emulator processes left running after the Renode tests: {left}"


@pytest.fixture(scope="module", params=SUPPORTED)
def renode_board(request, tmp_path_factory):
    if RENODE is None:
        pytest.skip("renode not on PATH")
    from harness.export.exporter import export_blob
    blob = export_blob("sudoku6-mlp", "int8")
    port = R.free_ports(1)[0]
    with R.RenodeBoard(load_target(request.param), blob, gdb_port=port,
                       log_dir=tmp_path_factory.mktemp("renode-logs-")) as board:
        yield board, blob


@needs_renode
def test_renode_protocol_is_bit_exact_with_golden(renode_board, zoo_model):
    from harness.run import run_puzzles
    from harness.depth import Depth
    board, blob = renode_board
    assert board.ping(b"hello") == b"hello"
    info = board.info()
    assert info.seq_len == 36
    net, task, _ = zoo_model("sudoku6-mlp")
    out = run_puzzles(board, blob, task, task.generate(2, seed=7, split="test"), Depth(2, 2, 2))
    assert out["summary"]["golden_match"] == 2
    assert all(r["instructions"] == r["counter"] > 0 and r["counts_kind"] == "instructions" for r in out["rows"])


@needs_renode
def test_renode_gdb_probe_reads_memory(renode_board):
    from harness.probe import read_symbol
    from harness.probe.elf import symbols
    board, _ = renode_board
    from harness.run import open_probe
    probe = open_probe(board)
    try:
        probe.halt()
        name = "trm_carry_snapshot"
        assert len(read_symbol(probe, board.firmware, name)) == symbols(board.firmware)[name][1]
        probe.cont()
    finally:
        probe.close()
    assert board.ping(b"after") == b"after"


@needs_renode
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
@pytest.mark.parametrize("name", SUPPORTED)
def test_renode_and_qemu_agree_on_answers_and_counts(name, blobs, zoo_model, tmp_path):
    """Same blob, same puzzles, both emulators: identical answers and carries, and instruction counts
    within QEMU's resolution. The firmware counts in segments (a run's start to the first cycle hook,
    hook to hook, the last hook to the end), each rounded down to whole SysTick ticks: QEMU's count is
    within one tick (1e9 / clock instructions) per segment of the instructions run, Renode's is exact
    (one tick per instruction)."""
    from harness import figures as F
    from harness.boards.base import RunRequest
    from harness.boards.qemu import QemuBoard
    from harness.tasks import stack
    t = load_target(name)
    blob = blobs("sudoku6-mlp", "int8")
    _, task, _ = zoo_model("sudoku6-mlp")
    x, _ = stack(task.generate(2, seed=11, split="test"))
    T, n, steps = 2, 2, 3
    out = {}
    for cls in (QemuBoard, R.RenodeBoard):
        with cls(t, blob, log_dir=tmp_path) as board:
            out[cls.backend] = [board.run(RunRequest(x[i], T, n, steps, carries=True)) for i in range(len(x))]
    tick = F.instructions_per_count("systick", t.clock_hz, "qemu")
    segments = T * steps + 1
    for q, r in zip(out["qemu"], out["renode"]):
        assert (q.per_step == r.per_step).all() and (q.y == r.y).all() and (q.z == r.z).all()
        assert F.instructions_per_count(r.counter_unit, r.counter_hz, "renode") == 1
        qi = F.instructions(q.counter, q.counter_unit, q.counter_hz, "qemu")
        ri = F.instructions(r.counter, r.counter_unit, r.counter_hz, "renode")
        assert ri == r.counter and abs(qi - ri) <= segments * tick, (name, qi, ri, segments * tick)


@needs_renode
def test_50_attaches_in_a_row_through_renodes_gdb_server(tmp_path, zoo_model):
    """What `harness run --trace --board renode` needs of the probe, 50 times in a row on one board: attach
    (the late attach stop awaited), halt, read the carry snapshot, a traced run whose per-cycle carries equal
    golden's, resume, detach; the firmware answers after each. Unanswered interrupts are counted."""
    from harness.boards.base import RunRequest
    from harness.export import blob as B
    from harness.export.exporter import export_blob
    from harness.probe.capture import carries_array
    from harness.probe.elf import symbols
    from harness.run import open_probe, run_traced
    from harness.tasks import stack
    blob = export_blob("sudoku6-mlp", "int8")
    im = B.from_blob(blob)
    _, task, _ = zoo_model("sudoku6-mlp")
    x, _ = stack(task.generate(1, seed=5, split="test"))
    g = im.run(x, 1, 1, 2, keep_carries=True)
    unanswered = 0
    with R.RenodeBoard(load_target("mps2-an386"), blob, gdb_port=R.free_ports(1)[0], log_dir=tmp_path) as board:
        addr, size = symbols(board.firmware)["trm_carry_snapshot"]
        plain = board.run(RunRequest(x[0], 1, 1, 2))
        for i in range(50):
            probe = open_probe(board)
            try:
                probe.halt()
                assert len(probe.read_memory(addr, size)) == size
                probe.cont()
                res, records = run_traced(board, probe, board.firmware, RunRequest(x[0], 1, 1, 2))
                y, z = carries_array(records, 2, 1)
                assert (y == g["y"][:, :, 0]).all() and (z == g["z"][:, :, 0]).all(), f"attach {i}"
                assert res.counter == plain.counter, f"attach {i}: tracing changed the count"
            finally:
                unanswered += probe.interrupts_unanswered
                probe.close()
            assert board.ping(b"after") == b"after", f"attach {i}"
    print(f"50 attaches: {unanswered} interrupts needed `?`")


@needs_renode
def test_cli_run_and_trace_on_renode(blobs):
    """`harness run --board renode --trace --json`: bit-exact rows whose per-cycle carries (read through
    Renode's GDB server) equal golden's, counts as instructions at one instruction's resolution, and the
    Renode version in the provenance."""
    import json
    from typer.testing import CliRunner
    from harness.cli import app
    blobs("sudoku6-mlp", "int8")
    r = CliRunner().invoke(app, ["run", "--board", "renode", "--model", "sudoku6-mlp", "--puzzles", "2",
                                 "--depth", "1,2,2", "--trace", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["backend"] == "renode" and out["emulator"] == R.renode_version() and out["emulator"].startswith("Renode v")
    assert out["summary"]["golden_match"] == 2 and "resolution one instruction" in out["summary"]["counts_note"]
    for row in out["rows"]:
        assert row["golden_match"] and row["carries_match_golden"] and row["device_fidelity_equals_golden"]
        assert row["counts_kind"] == "instructions" and row["instructions"] == row["counter"] > 0
