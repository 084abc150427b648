"""The serial board: a physical board whose UART is a serial port (pyserial) and whose firmware and
model blob are written by a flasher: pyOCD through the board's debug probe by default.

The protocol session runs over the port exactly as over QEMU's socket (``SerialStream`` gives a pyserial
``Serial`` the three calls ``Session`` uses). The tests point the same code at QEMU's UART exposed as a
pty (``QemuPtyFlasher``): QEMU "flashes" by starting with the firmware and blob, and names the pty that
the board opens in place of ``/dev/ttyACM0``.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

from ..firmware import firmware_elf
from ..targets import Target
from .base import Board, Session, check_blob_fits
from .errors import BoardLinkLost, BoardUnavailable

DEFAULT_BAUD = 115200


def serial_missing() -> str | None:
    try:
        import serial  # noqa: F401
    except ImportError:
        return "pyserial is not installed: `python -m pip install pyserial` (the serial backend's UART)"
    return None


class SerialStream:
    """A pyserial ``Serial`` as the byte stream ``Session`` reads (``sendall``/``recv``/``settimeout``).
    The port's own read timeout stays short; ``recv`` polls it until the session's timeout, so the port
    is not reconfigured on every wait."""
    POLL_S = 0.05

    def __init__(self, port):
        self.port = port
        self.port.timeout = self.POLL_S
        self.timeout = 0.0

    def sendall(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout or 0.0

    def recv(self, n: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            data = self.port.read(max(1, min(n, self.port.in_waiting)))
            if data:
                return data
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no bytes from {self.port.port} within {self.timeout:.2f} s")

    def close(self) -> None:
        self.port.close()


class PyocdFlasher:
    """Writes the firmware ELF and the blob (at the target's blob origin) through a debug probe with
    pyOCD's API, then resets the core. ``probe_id`` is the probe's unique id (``pyocd list``); None takes
    the only probe attached."""

    def __init__(self, probe_id: str | None = None):
        self.probe_id = probe_id

    def flash(self, target: Target, firmware: Path, blob: bytes | None, log) -> str | None:
        try:
            from pyocd.core.helpers import ConnectHelper
            from pyocd.flash.file_programmer import FileProgrammer
        except ImportError as e:
            raise BoardUnavailable("pyOCD is not installed: `python -m pip install pyocd`") from e
        session = ConnectHelper.session_with_chosen_probe(
            blocking=False, unique_id=self.probe_id, target_override=target.pyocd_target)
        if session is None:
            raise BoardUnavailable(f"no debug probe found{f' with id {self.probe_id}' if self.probe_id else ''}: "
                                   "check the USB cable and `pyocd list`")
        with session:
            log.write(f"pyOCD: probe {session.probe.unique_id}, target {target.pyocd_target}\n")
            programmer = FileProgrammer(session)
            programmer.program(str(firmware), file_format="elf")
            log.write(f"flashed {firmware}\n")
            if blob is not None:
                programmer.program(io.BytesIO(blob), file_format="bin", base_address=target.blob.origin)
                log.write(f"flashed the blob ({len(blob)} bytes) at {target.blob.origin:#x}\n")
            session.board.target.reset()
            log.write("reset\n")
        return None            # the UART is the configured port

    def close(self) -> None:
        pass


class QemuPtyFlasher:
    """QEMU standing in for a board and its probe: ``flash`` starts QEMU with the firmware and blob (as
    the QEMU board does) and the target's UART on a pty, and returns that pty's path."""

    def __init__(self, log_dir: Path | None = None):
        self.log_dir = log_dir
        self.qemu = None

    def flash(self, target: Target, firmware: Path, blob: bytes | None, log) -> str:
        from .qemu import QemuBoard
        self.close()
        self.qemu = QemuBoard(target, blob, board_id=f"qemu-pty-{target.name}", firmware=firmware,
                              log_dir=self.log_dir)
        self.qemu.launch("pty")
        pty = self.qemu.pty_path()
        log.write(f"QEMU started (log {self.qemu.log_path}); UART on {pty}\n")
        return pty

    def close(self) -> None:
        if self.qemu is not None:
            self.qemu.close()
            self.qemu = None


class SerialBoard(Board):
    backend = "serial"

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None, port: str | None = None,
                 baud: int = DEFAULT_BAUD, probe_id: str | None = None, firmware: Path | None = None,
                 flasher=None, log_dir: Path | None = None):
        super().__init__(target, board_id)
        check_blob_fits(target, blob)
        if port is None and flasher is None:
            raise ValueError(f"{self.id}: a serial board needs its UART's port (e.g. port = \"/dev/ttyACM0\")")
        self.blob = blob
        self.port = port
        self.baud = int(baud)
        self.firmware = Path(firmware) if firmware else firmware_elf(target.name)
        if self.firmware.is_file():
            self.target = self.target.built_as(self.firmware)   # flash the blob where this image expects it
            check_blob_fits(self.target, blob)
        self.flasher = flasher if flasher is not None else PyocdFlasher(probe_id)
        self.log_dir = Path(log_dir) if log_dir else None
        self.log_path: Path | None = None
        self.serial = None

    def describe(self) -> str:
        return f"{self.id} (serial {self.port or '?'} at {self.baud} baud, {self.target.name})"

    def start(self, timeout: float | None = None) -> None:
        import serial
        timeout = timeout or self.start_timeout
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.log_dir / f"{self.id}.log"
        try:
            with (open(self.log_path, "w") if self.log_path else io.StringIO()) as log:
                self.port = self.flasher.flash(self.target, self.firmware, self.blob, log) or self.port
                log.write(f"opening {self.port} at {self.baud} baud\n")
            # pyserial puts the port in raw mode (no echo, no line discipline, 8N1) when it opens it
            self.serial = serial.Serial(self.port, self.baud, timeout=SerialStream.POLL_S, exclusive=True)
            self.serial.reset_input_buffer()
            self.session = Session(SerialStream(self.serial), self.describe())
            self.wait_ready(timeout)
        except serial.SerialException as e:
            self.close()
            if self.port and not Path(self.port).exists():   # not a sick board: there is no such port
                raise BoardUnavailable(f"{self.describe()}: no serial port {self.port}: check the board is "
                                       "plugged in and the inventory's `port` (or --port)") from e
            raise BoardLinkLost(f"{self.describe()}: cannot open the port: {e}; log: {self.log_path}") from e
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        self.session = None
        self.flasher.close()
