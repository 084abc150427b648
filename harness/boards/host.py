"""The host board: the firmware's protocol server built for this machine (``harness.native``), behind
the same Board interface as the emulated and physical boards. No emulator, no counts of
instructions: its counter is the host's monotonic clock (unit ``ns``). Each started board is its own
C server (its own buffers and arena, sized as the target's), so host boards can run side by side, on
threads, and close independently."""
from __future__ import annotations

from ..targets import Target
from .base import Board, Session


class _Loopback:
    """A socket-like pipe into NativeServer: what is sent is served at once, answers queue up."""

    def __init__(self, server):
        self.server = server
        self.pending = bytearray()

    def sendall(self, data: bytes) -> None:
        self.pending += self.server.feed(data)

    def settimeout(self, t) -> None:
        pass

    def recv(self, n: int) -> bytes:
        if not self.pending:
            import socket
            raise socket.timeout("no answer pending")
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def close(self) -> None:
        pass


class HostBoard(Board):
    backend = "host"

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None):
        super().__init__(target, board_id)
        self.blob = blob or b""

    def start(self, timeout: float | None = None) -> None:   # nothing to wait for: the core is in-process
        from ..native import NativeServer
        self.close()
        t = self.target
        self.server = NativeServer(self.blob, region=t.blob.size, arena_capacity=t.arena_capacity, rx_bytes=t.rx_bytes,
                                   tx_bytes=t.tx_bytes)
        self.session = Session(_Loopback(self.server), self.describe())

    def close(self) -> None:
        self.session = None
        server, self.server = getattr(self, "server", None), None
        if server is not None:
            server.close()
