"""One place that turns a backend name into a board, for the CLI, the farm and the pytest plugin."""
from __future__ import annotations

from pathlib import Path

from ..targets import Target
from .base import Board
from .errors import BoardUnavailable

BACKENDS = ("qemu", "host", "renode", "serial", "labgrid")


def backend_missing(kind: str) -> str | None:
    """Why ``kind`` cannot run on this machine, or None when it can."""
    if kind not in BACKENDS:
        return f"unknown board backend {kind!r}: expected one of {', '.join(BACKENDS)}"
    if kind == "qemu":
        from .qemu import qemu_missing
        return qemu_missing()
    if kind == "renode":
        from .renode import renode_missing
        return renode_missing()
    if kind == "serial":
        from .serial import serial_missing
        return serial_missing()
    if kind == "labgrid":
        from .labgrid import labgrid_missing
        return labgrid_missing()
    return None


def check_start_timeout(value, where: str = "start_timeout") -> float:
    """A start-up timeout as an inventory or the CLI gives it: a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where} must be a positive number of seconds, not {value!r}")
    return float(value)


def make_board(kind: str, target: Target, blob: bytes | None, board_id: str | None = None,
               log_dir: Path | None = None, gdb_port: int | None = None, inject: str | None = None,
               start_timeout: float | None = None, **options) -> Board:
    """A board of backend ``kind`` for ``target`` holding ``blob`` (not started: use it as a context
    manager or call ``start``); with ``inject`` (an inventory's fault spec, for testing the farm) wrapped
    in a ``faults.FaultyBoard``; ``start_timeout`` (s) replaces the backend's default time for a start
    (``Board.start_timeout``: the emulator up and the firmware answering). Raises BoardUnavailable with an
    actionable message."""
    if start_timeout is not None:
        start_timeout = check_start_timeout(start_timeout)
    board = _make(kind, target, blob, board_id, log_dir, gdb_port, **options)
    if start_timeout is not None:
        board.start_timeout = start_timeout
    if inject:
        from .faults import FaultyBoard
        return FaultyBoard(board, inject)
    return board


def _make(kind: str, target: Target, blob: bytes | None, board_id: str | None, log_dir: Path | None,
          gdb_port: int | None, **options) -> Board:
    if (msg := backend_missing(kind)):
        raise BoardUnavailable(msg)
    if kind == "qemu":
        from ..firmware import FirmwareError
        from .qemu import QemuBoard
        try:
            return QemuBoard(target, blob, board_id=board_id, log_dir=log_dir, gdb_port=gdb_port, **options)
        except FirmwareError as e:
            raise BoardUnavailable(str(e)) from e
    if kind == "host":
        from .host import HostBoard
        return HostBoard(target, blob, board_id=board_id, **options)
    if kind == "serial":
        from ..firmware import FirmwareError
        from .serial import SerialBoard
        try:  # options: port, baud, probe_id (pyOCD probe), firmware, flasher
            return SerialBoard(target, blob, board_id=board_id, log_dir=log_dir, **options)
        except FirmwareError as e:
            raise BoardUnavailable(str(e)) from e
    if kind == "renode":
        from ..firmware import FirmwareError
        from .renode import RenodeBoard, RenodeUnsupported
        try:  # options: firmware, allow_standin (the Cortex-M85 stand-in for mps3-an547)
            return RenodeBoard(target, blob, board_id=board_id, log_dir=log_dir, gdb_port=gdb_port, **options)
        except (FirmwareError, RenodeUnsupported) as e:
            raise BoardUnavailable(str(e)) from e
    if kind == "labgrid":
        from .labgrid import LabgridBoard  # options: place, coordinator, serves, acquire_timeout
        return LabgridBoard(target, blob, board_id=board_id, log_dir=log_dir, **options)
    raise BoardUnavailable(f"backend {kind!r} has no constructor")  # pragma: no cover - backend_missing guards
