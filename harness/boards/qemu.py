"""The QEMU board: ``qemu-system-arm`` with the target's machine, the prebuilt firmware ELF, the model
blob placed at the target's blob address (``-device loader``), the UART on a Unix socket, and
``-icount shift=0`` so every instruction advances virtual time by 1 ns: counts are deterministic
instruction counts, never cycles.

A Unix-domain socket rather than TCP: no port to pick or collide on when many boards run, and no
Nagle/delayed-ACK stall (the ~47 ms round trip that TCP needs ``nodelay=on`` against).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..firmware import firmware_elf
from ..targets import Target
from .base import Board, BoardTimeout, Session

QEMU = "qemu-system-arm"


def qemu_missing() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found: install it with `apt-get install -y qemu-system-arm`"
    return None


class QemuBoard(Board):
    backend = "qemu"

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None,
                 firmware: Path | None = None, log_dir: Path | None = None, gdb_port: int | None = None,
                 icount: bool = True):
        super().__init__(target, board_id)
        if blob is not None and len(blob) > target.blob.size:
            raise ValueError(f"blob of {len(blob)} bytes does not fit {target.name}'s blob region "
                             f"of {target.blob.size} bytes")
        self.blob = blob
        self.firmware = Path(firmware) if firmware else firmware_elf(target.name)
        self.log_dir = Path(log_dir) if log_dir else None
        self.gdb_port = gdb_port
        self.icount = icount
        self.proc: subprocess.Popen | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None

    def command(self, sock_path: Path, blob_path: Path | None) -> list[str]:
        t = self.target
        cmd = [QEMU, "-M", t.qemu_machine, "-display", "none", "-monitor", "none", "-nodefaults",
               "-kernel", str(self.firmware)]
        if self.icount:
            cmd += ["-icount", "shift=0"]
        if blob_path is not None:
            cmd += ["-device", f"loader,file={blob_path},addr={t.blob.origin:#x},force-raw=on"]
        cmd += ["-chardev", f"socket,id=uart,path={sock_path},server=on,wait=off"]
        cmd += ["-serial", "null"] * t.qemu_serial_index + ["-serial", "chardev:uart"]
        if self.gdb_port is not None:
            cmd += ["-gdb", f"tcp:127.0.0.1:{self.gdb_port}"]
        return cmd

    def start(self, timeout: float = 10.0) -> None:
        if (msg := qemu_missing()):
            raise RuntimeError(msg)
        self.tmp = tempfile.TemporaryDirectory(prefix=f"trm-{self.target.name}-")
        work = Path(self.tmp.name)
        blob_path = None
        if self.blob is not None:
            blob_path = work / "model.bin"
            blob_path.write_bytes(self.blob)
        sock_path = work / "uart.sock"
        log_dir = self.log_dir or work
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.id}.log"
        cmd = self.command(sock_path, blob_path)
        with open(self.log_path, "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.describe()}: QEMU exited with {self.proc.returncode}; "
                                   f"log: {self.log_path}\n{self.log_path.read_text()[-2000:]}")
            try:
                sock.connect(str(sock_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self.close()
                    raise BoardTimeout(f"{self.describe()}: QEMU's UART socket did not appear in {timeout} s; "
                                       f"log: {self.log_path}")
                time.sleep(0.02)
        self.session = Session(sock, self.describe())
        try:
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.sock.close()
            except OSError:
                pass
            self.session = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.tmp is not None:
            self.tmp.cleanup()  # without a log_dir the log lived here and goes with it
            self.tmp = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
