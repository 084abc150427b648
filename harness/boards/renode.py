"""The Renode board: Renode (https://renode.io) started headless, one machine per board, built from the
target's platform file in ``targets/renode/``; the prebuilt firmware ELF loaded with ``sysbus LoadELF``,
the model blob with ``sysbus LoadBinary`` at the target's blob address, the firmware's UART on a TCP
server socket terminal, and optionally Renode's GDB server as the probe (``harness.probe.gdb``).
Run against Renode 1.15.1 (built from source on a 2-core Debian machine): docs/boards.md, "The Renode
board", gives what was measured and what Renode cannot model.

The counter. Renode has no ``-icount``: its virtual time advances by ``1 / PerformanceInMips`` µs per
executed instruction, in whole microseconds (Renode 1.15's time unit), and SysTick counts at the
NVIC's frequency in that virtual time, with a period of whole microseconds (or whole ticks per
microsecond). At ``PerformanceInMips 1000`` (1 ns an instruction, as QEMU's ``-icount shift=0``) every
count was a multiple of 1000 instructions, and a SysTick at the target clock scaled to 1 µs an
instruction is rounded (168 kHz runs as 166.7 kHz). So the script sets ``PerformanceInMips`` to
``MIPS`` = 1 (one instruction = 1 µs, the time unit) and SysTick to ``SYSTICK_HZ`` = 1 MHz: one tick per
instruction (``figures.RENODE_INSTRUCTIONS_PER_TICK``), so a Renode count is the instructions run,
exactly, never cycles. Virtual time then runs 1000 times slower per instruction: a puzzle of 100
million instructions is 100 s of virtual time, and Renode by default never lets virtual time run ahead
of the host's clock, so the script lets it (``SetGlobalAdvanceImmediately true``), and scales the
synchronisation quantum by the same factor (``QUANTUM_S``: Renode's default is 100 µs). The platforms
model no DWT (CYCCNT reads 0), so the firmware falls back to SysTick there, as on QEMU. A GDB stop does
not advance Renode's virtual time.

The process. Every Linux launcher of Renode is a shell script that runs the emulator as its child, so
the board runs it under ``harness.boards.group`` (its own process group, ended as a whole), with
``TMPDIR`` set to the board's scratch folder: at start-up Renode deletes every ``$TMPDIR/renode-*``
folder whose suffix is not a live process id, which must not reach anything outside its own board.
"""
from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..figures import RENODE_INSTRUCTIONS_PER_TICK
from ..targets import TARGETS_DIR, Target
from .base import Board, DebugPort, EmulatorProcess
from .errors import BoardTimeout, BoardUnavailable, EmulatorDied

RENODE = "renode"
PLATFORMS = TARGETS_DIR / "renode"
MIPS = 1          # PerformanceInMips: one instruction = 1 µs of virtual time, Renode 1.15's time unit
SYSTICK_HZ = MIPS * 1_000_000 // RENODE_INSTRUCTIONS_PER_TICK   # SysTick: one tick per instruction
QUANTUM_S = 0.1   # synchronisation quantum, s of virtual time: 100,000 instructions at MIPS 1
START_TIMEOUT = 120.0   # s for Renode to start and the firmware to answer (an inventory's `start_timeout`,
                        # `--start-timeout`): up to 35 s were seen on 2 busy cores, 14 s of it the platform file

# Renode's monitor in telnet mode: it sends these four negotiations (SocketServerProvider.cs) and then
# reads, and discards, the 9 bytes of a client's answers before it reads a command
TELNET_OFFER = bytes([255, 253, 0, 255, 251, 1, 255, 251, 3, 255, 252, 34])
TELNET_ANSWER = bytes([255, 251, 0, 255, 253, 1, 255, 253, 3])   # WILL BINARY, DO ECHO, DO SUPPRESS-GO-AHEAD

# The firmware's UART by the name the target's platform gives it: ``uart0`` in our own MPS2/MPS3 files,
# ``usart2`` (0x40004400) in Renode's platforms/cpus/stm32f4.repl, which netduinoplus2.repl builds on.
UART_NAMES = {"mps2-an386": "uart0", "mps2-an500": "uart0", "mps3-an547": "uart0", "netduinoplus2": "usart2"}

# Cores Renode has no model of, and why the board refuses them (a fact about Renode, not the target).
UNSUPPORTED_CORES = {
    "cortex-m55": ("Renode models no Cortex-M55, and its Armv8.1-M stand-in, the Cortex-M85 ('initial "
                   "support' in Renode 1.15), implements one MVE instruction (VSTRW): the M55 image boots on it "
                   "but its MVE instructions (the Helium kernels, and the LSLL/LSRL long shifts GCC emits for "
                   "64-bit arithmetic, e.g. in the blob's table check) compute wrong values, so the firmware "
                   "reports BLOB_TABLE on a valid blob. Use --board qemu for this target (allow_standin=True "
                   "runs the stand-in anyway, to try a newer Renode)."),
}


class RenodeUnsupported(ValueError):
    """The target cannot run on Renode (see ``UNSUPPORTED_CORES``)."""


def renode_missing() -> str | None:
    if shutil.which(RENODE) is None:
        return ("`renode` is not on PATH. Install Renode (https://renode.io: its Debian package or portable "
                "tarball, then put `renode` on PATH), or use --board qemu.")
    return None


@functools.lru_cache(maxsize=None)
def _version_of(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({path} --version: {e})"
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return ", ".join(lines[:2]) if lines else f"unknown ({path} --version printed nothing)"


def renode_version() -> str | None:
    """What ``renode --version`` says (e.g. "Renode v1.15.1.37254, build: bef0c7b3-202612012041"), None
    without Renode; asked once per launcher path."""
    path = shutil.which(RENODE)
    return _version_of(path) if path else None


def platform_file(target: Target) -> Path:
    """The platform description the board loads: ``targets/renode/<target>.repl`` (our own, or a thin layer
    over Renode's own file named by the target's ``[renode] platform``)."""
    return PLATFORMS / f"{target.name}.repl"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now (all held open together, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _path(p: Path) -> str:
    """A path as a Renode monitor argument (``@path``); the monitor splits on spaces, so refuse them."""
    s = str(Path(p).resolve())
    if any(c.isspace() for c in s):
        raise ValueError(f"Renode's monitor cannot take a path with spaces: {s!r} (move the checkout or "
                         f"the log folder)")
    return "@" + s


class RenodeBoard(EmulatorProcess, Board):
    backend = "renode"
    start_timeout = START_TIMEOUT

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None,
                 firmware: Path | None = None, log_dir: Path | None = None, gdb_port: int | None = None,
                 allow_standin: bool = False, uart_port: int | None = None):
        if target.core in UNSUPPORTED_CORES and not allow_standin:
            raise RenodeUnsupported(f"{target.name}: {UNSUPPORTED_CORES[target.core]}")
        super().__init__(target, board_id)
        self._emulator_init(blob, firmware, log_dir, gdb_port)
        self.uart_port = uart_port          # the UART's TCP port; None: a free one at every start
        self.fixed_uart = uart_port is not None
        self.listen = "0.0.0.0"             # Renode's server socket terminal and GDB server listen on every interface
        self.monitor_port: int | None = None

    def script(self, blob_path: Path | None, uart_port: int) -> str:
        """The Renode monitor script (.resc) that builds, loads and starts this board's machine."""
        t = self.target
        lines = [f"# {self.describe()}: written by harness/boards/renode.py",
                 f'emulation SetGlobalQuantum "{QUANTUM_S}"',
                 "emulation SetGlobalAdvanceImmediately true",
                 f'mach create "{self.id}"',
                 f"machine LoadPlatformDescription {_path(platform_file(t))}",
                 f"sysbus.cpu PerformanceInMips {MIPS}",
                 f"sysbus.nvic Frequency {SYSTICK_HZ}",
                 f'emulation CreateServerSocketTerminal {uart_port} "uart" false',
                 f"connector Connect sysbus.{UART_NAMES[t.name]} uart",
                 f"sysbus LoadELF {_path(self.firmware)}"]
        if blob_path is not None:
            lines.append(f"sysbus LoadBinary {_path(blob_path)} {t.blob.origin:#010x}")
        # the vector table is at the start of the firmware region (STM32: flash at 0x08000000, not 0)
        lines.append(f"sysbus.cpu VectorTableOffset {t.firmware_region.origin:#010x}")
        if self.gdb_port is not None:
            lines.append(f"machine StartGdbServer {self.gdb_port}")
        lines.append("start")
        return "\n".join(lines) + "\n"

    def command(self, script_path: Path, monitor_port: int) -> list[str]:
        """Headless (no GUI windows), plain log on stdout, the monitor on a TCP port of its own (without
        ``-P`` headless Renode opens 1234, which parallel boards would share), the script included."""
        return [RENODE, "--disable-xwt", "--plain", "--port", str(monitor_port), str(script_path)]

    def emulator_version(self) -> str | None:
        return renode_version()

    def debug_port(self) -> DebugPort | None:
        """Renode's GDB server halts the core when a client connects and says so late (a stop reply 0.1 to
        0.35 s after the connection, a byte a segment): the probe waits for it, then resumes the core."""
        return DebugPort("gdb-remote", "127.0.0.1", self.gdb_port, halts_on_attach=True) if self.gdb_port else None

    def start(self, timeout: float | None = None) -> None:
        timeout = timeout or self.start_timeout
        if (msg := renode_missing()):
            raise BoardUnavailable(msg)
        work, blob_path = self._workspace("trm-renode")
        ports = free_ports(2)
        self.monitor_port = ports[1]
        if not self.fixed_uart:
            self.uart_port = ports[0]
        script_path = self.log_path.with_suffix(".resc")   # kept with the log: rerun it with `renode FILE`
        script_path.write_text(self.script(blob_path, self.uart_port))
        self._spawn(self.command(script_path, self.monitor_port), cwd=work, own_group=True,
                    env={"TMPDIR": str(work)})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.close()
                raise EmulatorDied(f"{self.describe()}: Renode exited with {code}; log: {self.log_path}")
            try:
                sock = socket.create_connection(("127.0.0.1", self.uart_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise BoardTimeout(f"{self.describe()}: Renode's UART socket (port {self.uart_port}) did not "
                                       f"open in {timeout:g} s (the board's start_timeout: inventory "
                                       f"`start_timeout`, or --start-timeout); log: {self.log_path}")
                time.sleep(0.1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._serve(sock, deadline, min_wait=5.0)

    def serve(self, timeout: float | None = None) -> None:
        """Start the board for clients elsewhere (``harness board serve``): started, the firmware answered,
        then the connection let go; Renode's server socket terminal takes the next client."""
        self.start(timeout)
        self._drop_session()

    def close(self) -> None:
        self._stop(ask=self._quit)   # without a log_dir the log and the script go with the scratch folder

    def _quit(self) -> None:
        """Ask Renode to quit through its monitor (it then closes its sockets and files cleanly): read its
        telnet negotiation, answer it (the monitor discards the first 9 bytes a client sends), then
        ``quit``; ``stop_process`` then waits for the exit, and signals the group if it does not come."""
        if self.monitor_port is None:
            return
        try:
            with socket.create_connection(("127.0.0.1", self.monitor_port), timeout=1.0) as s:
                s.settimeout(1.0)
                offer = b""
                try:
                    while len(offer) < len(TELNET_OFFER):
                        chunk = s.recv(len(TELNET_OFFER) - len(offer))
                        if not chunk:
                            return
                        offer += chunk
                except socket.timeout:
                    return                    # a monitor that does not negotiate will not read a command
                s.sendall(TELNET_ANSWER + b"quit\n")
        except OSError:
            pass
