"""The Renode backend. Always: the script and command line each target gets (platform, UART wiring,
firmware, blob address, GDB server, the instruction clock), the platform files against the target files,
the clear refusals (no Renode on PATH; the Cortex-M55 target). With `renode` on PATH: the protocol
bit-exact against golden, and a read through Renode's GDB server."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.boards import renode as R
from harness.boards.factory import BoardUnavailable, backend_missing, make_board
from harness.firmware import firmware_elf
from harness.targets import load_target, target_names

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
    assert "sysbus.cpu PerformanceInMips 1000" in lines         # one instruction = 1 ns of virtual time
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
    assert int(e["nvic"][2]["systickFrequency"]) == t.clock_hz       # SysTick at the core clock, as on QEMU
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
    assert re.search(r"systickFrequency: (\d+)", text).group(1) == str(t.clock_hz)
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


# --- with Renode ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=SUPPORTED)
def renode_board(request):
    if RENODE is None:
        pytest.skip("renode not on PATH")
    from harness.export.exporter import export_blob
    blob = export_blob("sudoku6-mlp", "int8")
    port = R.free_ports(1)[0]
    with R.RenodeBoard(load_target(request.param), blob, gdb_port=port) as board:
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
    assert all(r["instructions"] and r["counter_unit"] for r in out["rows"])


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
