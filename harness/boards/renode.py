"""The Renode board: Renode (https://renode.io) started headless, one machine per board, built from the
target's platform file in ``targets/renode/``; the prebuilt firmware ELF loaded with ``sysbus LoadELF``,
the model blob with ``sysbus LoadBinary`` at the target's blob address, the firmware's UART on a TCP
server socket terminal, and optionally Renode's GDB server as the probe (``harness.probe.gdb``).

Written from Renode's documentation and sources; Renode was not available where it was written, so
nothing here has run against a real Renode yet (tests that need it skip).

The counter. Renode has no ``-icount``: its virtual time advances by ``1 / PerformanceInMips`` µs per
executed instruction, and SysTick counts at the NVIC's ``systickFrequency`` in that virtual time. The
script sets ``PerformanceInMips`` to 1000 (one instruction = 1 ns, what QEMU's ``-icount shift=0`` does)
and each platform file sets ``systickFrequency`` to the target's clock, so a SysTick tick is
``1e9 / clock_hz`` instructions on both emulators and ``runner.instructions`` reads both the same way:
deterministic instruction counts at SysTick resolution, never cycles. The platforms model no DWT
(CYCCNT reads 0), so the firmware falls back to SysTick there, as on QEMU. A GDB stop does not advance
Renode's virtual time.
"""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from ..targets import TARGETS_DIR, Target
from .base import Board, DebugPort, EmulatorProcess
from .errors import BoardTimeout, BoardUnavailable, EmulatorDied

RENODE = "renode"
PLATFORMS = TARGETS_DIR / "renode"
MIPS = 1000  # instructions per virtual microsecond x 1000: one instruction = 1 ns of virtual time

# The firmware's UART by the name the target's platform gives it: ``uart0`` in our own MPS2/MPS3 files,
# ``usart2`` (0x40004400) in Renode's platforms/cpus/stm32f4.repl, which netduinoplus2.repl builds on.
UART_NAMES = {"mps2-an386": "uart0", "mps2-an500": "uart0", "mps3-an547": "uart0", "netduinoplus2": "usart2"}

# Cores Renode has no model of, and why the board refuses them (a fact about Renode, not the target).
UNSUPPORTED_CORES = {
    "cortex-m55": ("Renode models no Cortex-M55 (its Armv8.1-M core is the Cortex-M85, 'initial support' "
                   "since Renode 1.15). targets/renode/mps3-an547.repl describes the board with that M85 as "
                   "a stand-in, unverified: pass allow_standin=True to try it, or use --board qemu for this "
                   "target."),
}


class RenodeUnsupported(ValueError):
    """The target cannot run on Renode (see ``UNSUPPORTED_CORES``)."""


def renode_missing() -> str | None:
    if shutil.which(RENODE) is None:
        return ("`renode` is not on PATH. Install Renode (https://renode.io: its Debian package or portable "
                "tarball, then put `renode` on PATH), or use --board qemu.")
    return None


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

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None,
                 firmware: Path | None = None, log_dir: Path | None = None, gdb_port: int | None = None,
                 allow_standin: bool = False):
        if target.core in UNSUPPORTED_CORES and not allow_standin:
            raise RenodeUnsupported(f"{target.name}: {UNSUPPORTED_CORES[target.core]}")
        super().__init__(target, board_id)
        self._emulator_init(blob, firmware, log_dir, gdb_port)
        self.uart_port: int | None = None
        self.monitor_port: int | None = None

    def script(self, blob_path: Path | None, uart_port: int) -> str:
        """The Renode monitor script (.resc) that builds, loads and starts this board's machine."""
        t = self.target
        lines = [f"# {self.describe()}: written by harness/boards/renode.py",
                 f'mach create "{self.id}"',
                 f"machine LoadPlatformDescription {_path(platform_file(t))}",
                 f"sysbus.cpu PerformanceInMips {MIPS}",
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

    start_timeout = 60.0      # Renode takes seconds to start (.NET)

    def debug_port(self) -> DebugPort | None:
        """Renode's GDB server halts the core when a client connects and, unlike QEMU, says nothing (no
        stop packet): the probe resumes it."""
        return DebugPort("gdb-remote", "127.0.0.1", self.gdb_port, halts_on_attach=True) if self.gdb_port else None

    def start(self, timeout: float | None = None) -> None:
        timeout = timeout or self.start_timeout
        if (msg := renode_missing()):
            raise BoardUnavailable(msg)
        work, blob_path = self._workspace("trm-renode")
        self.uart_port, self.monitor_port = free_ports(2)
        script_path = self.log_path.with_suffix(".resc")   # kept with the log: rerun it with `renode FILE`
        script_path.write_text(self.script(blob_path, self.uart_port))
        self._spawn(self.command(script_path, self.monitor_port), cwd=work)
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
                                       f"open in {timeout} s; log: {self.log_path}")
                time.sleep(0.1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._serve(sock, deadline, min_wait=5.0)

    def close(self) -> None:
        self._stop(ask=self._quit)   # without a log_dir the log and the script go with the scratch folder

    def _quit(self) -> None:
        """Ask Renode to quit through its monitor (it then closes its sockets and files cleanly)."""
        try:
            with socket.create_connection(("127.0.0.1", self.monitor_port), timeout=2.0) as s:
                s.sendall(b"quit\n")
                s.settimeout(2.0)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
        except OSError:
            pass
