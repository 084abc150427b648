"""The board interface and the protocol session shared by all backends.

A ``Board`` is context-managed: ``start()`` brings it up with a firmware and a blob, ``info()``,
``run()``, ``bench()`` and ``ping()`` talk the protocol, ``close()`` stops it. Every wait has a
timeout; what the board's process printed goes to a log file per board, named in every error.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import numpy as np

from . import protocol as P
from ..targets import Target


class BoardTimeout(TimeoutError):
    pass


class Session:
    """Requests and responses over a byte stream (``sendall``/``recv`` with timeouts)."""

    def __init__(self, sock: socket.socket, describe: str = "board"):
        self.sock = sock
        self.describe = describe
        self.seq = 0
        self.buffer = bytearray()
        self.garbage = 0          # bytes that did not form a valid frame

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self, timeout: float) -> bytes:
        """The next delimited frame's raw bytes (without the 0x00)."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buffer.find(0)
            if i >= 0:
                wire = bytes(self.buffer[:i])
                del self.buffer[:i + 1]
                if wire:
                    return wire
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardTimeout(f"{self.describe}: no answer within {timeout:.1f} s "
                                   f"({len(self.buffer)} bytes of a partial frame received)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError(f"{self.describe}: the connection closed")
            self.buffer += chunk

    def request(self, kind: int, payload: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
        """Send one request and return (type, payload) of its response; ERROR frames raise BoardError."""
        self.seq = (self.seq + 1) & 0xFFFF
        # the leading 0x00 ends any partial frame left in the firmware's receive buffer
        self.send_raw(b"\x00" + P.frame(kind, self.seq, payload))
        while True:
            kind_back, seq, body = P.unframe(self.read_frame(timeout))
            if kind_back == P.ERROR:
                if seq in (self.seq, 0):
                    raise P.parse_error(body)
                continue
            if seq != self.seq:
                continue      # a stale answer to an earlier (timed-out) request
            return kind_back, body


@dataclass
class RunRequest:
    tokens: np.ndarray
    T: int
    n: int
    steps: int
    halting: bool = False
    carries: bool = False
    embed_ram: bool = False


class Board:
    """Base of the backends. Subclasses implement ``start``/``close`` and set ``self.session``."""
    backend = "?"

    def __init__(self, target: Target, board_id: str | None = None):
        self.target = target
        self.id = board_id or f"{self.backend}-{target.name}"
        self.session: Session | None = None
        self._info: P.Info | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.id} ({self.backend}, {self.target.name})"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """PING until the firmware answers: bytes sent before its UART is up are lost (the STM32
        USART drops characters while disabled), so the first request is retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ping(b"ready", timeout=0.25)
                return
            except BoardTimeout:
                if time.monotonic() > deadline:
                    raise BoardTimeout(f"{self.describe()}: the firmware did not answer PING within {timeout} s")

    # --- protocol ---
    def ping(self, payload: bytes = b"", timeout: float = 5.0) -> bytes:
        kind, body = self.session.request(P.PING, payload, timeout)
        return body

    def info(self, timeout: float = 5.0) -> P.Info:
        kind, body = self.session.request(P.INFO, b"", timeout)
        self._info = P.parse_info(body)
        return self._info

    def reload(self, timeout: float = 10.0) -> P.Info:
        kind, body = self.session.request(P.RELOAD, b"", timeout)
        self._info = P.parse_info(body)
        return self._info

    def run(self, r: RunRequest, timeout: float = 120.0) -> P.Result:
        info = self._info or self.info()
        kind, body = self.session.request(
            P.RUN, P.run_payload(r.tokens, r.T, r.n, r.steps, r.halting, r.carries, r.embed_ram), timeout)
        if kind != P.RESULT:
            raise P.ProtocolError(f"{self.describe()}: expected RESULT, got type {kind:#x}")
        return P.parse_result(body, info.hidden)

    def bench(self, rows: int, cols: int, bits: int, reps: int = 1, timeout: float = 60.0) -> P.Bench:
        """Time ``reps`` calls of the firmware's trm_linear on a generated [rows, cols] matrix of int8 or
        int4 weights (no blob needed); see ``protocol.bench_reference`` for the pattern."""
        kind, body = self.session.request(P.BENCH, P.bench_payload(rows, cols, bits, reps), timeout)
        if kind != P.BENCH_RSP:
            raise P.ProtocolError(f"{self.describe()}: expected BENCH_RESULT, got type {kind:#x}")
        return P.parse_bench(body)
