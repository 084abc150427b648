"""The QEMU board: ``qemu-system-arm`` with the target's machine, the prebuilt firmware ELF, the model
blob placed at the target's blob address (``-device loader``), the UART on a Unix socket, and
``-icount shift=0`` so every instruction advances virtual time by 1 ns: counts are deterministic
instruction counts, never cycles.

A Unix-domain socket rather than TCP: no port to pick or collide on when many boards run, and no
Nagle/delayed-ACK stall (the ~47 ms round trip that TCP needs ``nodelay=on`` against). ``launch("pty")``
puts the UART on a pty instead, for the serial board's tests (``serial.QemuPtyFlasher``); ``launch("tcp")``
on a TCP port (with ``nodelay=on``), for ``harness board serve`` (a lab host's board, exported by labgrid).
"""
from __future__ import annotations

import functools
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..targets import Target
from .base import Board, EmulatorProcess
from .errors import BoardTimeout, BoardUnavailable, EmulatorDied

QEMU = "qemu-system-arm"


def qemu_missing() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found: install it with `apt-get install -y qemu-system-arm`"
    return None


@functools.lru_cache(maxsize=None)
def qemu_version() -> str | None:
    """The first line of ``qemu-system-arm --version`` (e.g. "QEMU emulator version 7.2.x (Debian ...)")."""
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


class QemuBoard(EmulatorProcess, Board):
    backend = "qemu"

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None,
                 firmware: Path | None = None, log_dir: Path | None = None, gdb_port: int | None = None,
                 icount: bool = True, listen: str = "127.0.0.1", uart_port: int | None = None):
        super().__init__(target, board_id)
        self._emulator_init(blob, firmware, log_dir, gdb_port)
        self.icount = icount
        self.sock_path: Path | None = None
        self.listen = listen                # the address the gdbstub (and a TCP UART) listen on
        self.uart_port = uart_port          # launch("tcp"): the UART's TCP port

    def emulator_version(self) -> str | None:
        return qemu_version()

    def command(self, sock_path: Path | None, blob_path: Path | None, uart: str = "socket") -> list[str]:
        """QEMU's command line; the UART on the Unix socket ``sock_path``, on TCP port ``uart_port``
        (``uart="tcp"``), or on a pty (QEMU names the pty it opened in its log: ``pty_path``)."""
        t = self.target
        cmd = [QEMU, "-M", t.qemu_machine, "-display", "none", "-monitor", "none", "-nodefaults",
               "-kernel", str(self.firmware)]
        if self.icount:
            cmd += ["-icount", "shift=0"]
        if blob_path is not None:
            cmd += ["-device", f"loader,file={blob_path},addr={t.blob.origin:#x},force-raw=on"]
        if uart == "tcp":
            cmd += ["-chardev", f"socket,id=uart,host={self.listen},port={self.uart_port},server=on,wait=off,nodelay=on"]
        elif sock_path is not None:
            cmd += ["-chardev", f"socket,id=uart,path={sock_path},server=on,wait=off"]
        cmd += ["-serial", "null"] * t.qemu_serial_index + ["-serial", "pty" if uart == "pty" else "chardev:uart"]
        if self.gdb_port is not None:
            cmd += ["-gdb", f"tcp:{self.listen}:{self.gdb_port}"]
        return cmd

    def launch(self, uart: str = "socket") -> None:
        """Start QEMU (scratch folder, blob file, log) with the UART on a Unix socket (``uart="socket"``,
        at ``self.sock_path``), on a pty (``uart="pty"``, see ``pty_path``) or on TCP (``uart="tcp"``, at
        ``listen:uart_port``); connects nothing."""
        if (msg := qemu_missing()):
            raise BoardUnavailable(msg)
        work, blob_path = self._workspace("trm")
        self.sock_path = work / "uart.sock" if uart == "socket" else None
        self._spawn(self.command(self.sock_path, blob_path, uart))

    def _exited(self) -> EmulatorDied:
        return EmulatorDied(f"{self.describe()}: QEMU exited with {self.proc.returncode}; "
                            f"log: {self.log_path}\n{self.log_path.read_text()[-2000:]}")

    def pty_path(self, timeout: float = 10.0) -> str:
        """The pty QEMU opened for the target's UART, from the line it logs for it: ``char device
        redirected to /dev/pts/N (label serialK)``, K being the target's serial index."""
        want = re.compile(rf"char device redirected to (\S+) \(label serial{self.target.qemu_serial_index}\)")
        deadline = time.monotonic() + timeout
        while True:
            if (m := want.search(self.log_path.read_text())):
                return m.group(1)
            if self.proc.poll() is not None:
                raise self._exited()
            if time.monotonic() > deadline:
                raise BoardTimeout(f"{self.describe()}: QEMU named no pty for serial{self.target.qemu_serial_index} "
                                   f"in {timeout} s; log: {self.log_path}")
            time.sleep(0.02)

    def start(self, timeout: float | None = None) -> None:
        timeout = timeout or self.start_timeout
        self.launch("socket")
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            if self.proc.poll() is not None:
                raise self._exited()
            try:
                sock.connect(str(self.sock_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self.close()
                    raise BoardTimeout(f"{self.describe()}: QEMU's UART socket did not appear in {timeout} s; "
                                       f"log: {self.log_path}")
                time.sleep(0.02)
        self._serve(sock, deadline, min_wait=1.0)

    def serve(self, timeout: float | None = None) -> None:
        """Start QEMU with the UART on TCP ``listen:uart_port`` for clients elsewhere (``harness board
        serve``); returns once the port accepts connections. The firmware answers whoever connects."""
        timeout = timeout or self.start_timeout
        self.launch("tcp")
        deadline = time.monotonic() + timeout
        here = "127.0.0.1" if self.listen in ("0.0.0.0", "") else self.listen
        while True:
            if self.proc.poll() is not None:
                raise self._exited()
            try:
                socket.create_connection((here, self.uart_port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise BoardTimeout(f"{self.describe()}: QEMU's UART port {self.uart_port} did not open in "
                                       f"{timeout} s; log: {self.log_path}")
                time.sleep(0.02)

    def close(self) -> None:
        self._stop()
