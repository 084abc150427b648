"""One place that turns a backend name into a board, for the CLI, the farm and the pytest plugin."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..targets import Target
from .base import Board

BACKENDS = ("qemu", "host", "renode", "serial")


class BoardUnavailable(RuntimeError):
    """The backend cannot run here (emulator not installed, no firmware, unknown name): the message says
    what is missing and what to do."""


def backend_missing(kind: str) -> str | None:
    """Why ``kind`` cannot run on this machine, or None when it can."""
    if kind not in BACKENDS:
        return f"unknown board backend {kind!r}: expected one of {', '.join(BACKENDS)}"
    if kind == "qemu":
        from .qemu import qemu_missing
        return qemu_missing()
    if kind == "renode" and shutil.which("renode") is None:
        return ("`renode` is not on PATH. Install Renode (https://renode.io: its Debian package or portable "
                "tarball, then put `renode` on PATH), or use --board qemu.")
    if kind in ("renode", "serial"):
        return f"the {kind} backend is not built yet: use --board qemu or --board host"
    return None


def make_board(kind: str, target: Target, blob: bytes | None, board_id: str | None = None,
               log_dir: Path | None = None, gdb_port: int | None = None, **options) -> Board:
    """A board of backend ``kind`` for ``target`` holding ``blob`` (not started: use it as a context
    manager or call ``start``). Raises BoardUnavailable with an actionable message."""
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
        return HostBoard(target, blob, board_id=board_id)
    raise BoardUnavailable(f"backend {kind!r} has no constructor")  # pragma: no cover - backend_missing guards
