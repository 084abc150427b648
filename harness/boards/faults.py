"""Fault injection for testing the farm itself: an inventory entry with ``inject = "hang@N"`` or
``inject = "garbage@N"`` makes that board misbehave after answering N puzzles of each start.

  hang     a QEMU or Renode board's process is stopped (SIGSTOP): the UART goes silent, like a wedged
           board; a board without a process stops reading (the request times out)
  garbage  every byte the board sends from then on is replaced by random bytes: the real frame
           decoder has to reject them

``FaultyBoard`` wraps a real board (the factory builds it when an inventory entry says ``inject``) and
acts below the protocol, at ``send``: every RUN, traced or not, passes through it, so the farm's
detection, reset, retry and quarantine paths run exactly as they would for a real board.
"""
from __future__ import annotations

import random
import signal

from . import protocol as P
from .base import Board
from .errors import BoardTimeout

KINDS = ("hang", "garbage")


def parse(spec: str) -> tuple[str, int]:
    kind, _, after = str(spec).partition("@")
    if kind not in KINDS or (after and not after.isdigit()):
        raise ValueError(f"inject {spec!r}: expected 'hang@N' or 'garbage@N' (N puzzles answered before the fault)")
    return kind, int(after or 0)


class _GarbageSocket:
    """Wraps a board's stream: what it sends through, what comes back replaced by random bytes."""

    def __init__(self, sock, seed: int = 0):
        self.sock, self.rng = sock, random.Random(seed)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def settimeout(self, t) -> None:
        self.sock.settimeout(t)

    def recv(self, n: int) -> bytes:
        real = self.sock.recv(n)
        return bytes(self.rng.randrange(256) for _ in real) if real else real

    def close(self) -> None:
        self.sock.close()


class FaultyBoard(Board):
    """``inner`` with the fault ``spec`` armed: the first ``N`` RUN requests of each start pass, the ones
    after misbehave. Everything else is the inner board's."""

    def __init__(self, inner: Board, spec: str):
        self.inner = inner
        self.kind, self.after = parse(spec)
        self.runs = 0
        self.backend = inner.backend
        self.start_timeout = inner.start_timeout
        super().__init__(inner.target, inner.id)

    def __getattr__(self, name):        # firmware, log_path, proc, ... of the inner board
        return getattr(self.inner, name)

    @property
    def session(self):
        return self.inner.session

    @session.setter
    def session(self, value):
        if "inner" in self.__dict__ and value is not None:
            self.inner.session = value

    def start(self, timeout: float | None = None) -> None:
        self.runs = 0
        self.inner.start(timeout)

    def close(self) -> None:
        self.inner.close()

    def debug_port(self):
        return self.inner.debug_port()

    def describe(self) -> str:
        return self.inner.describe()

    def send(self, kind: int, payload: bytes = b"") -> int:
        if kind == P.RUN:
            if self.runs >= self.after:
                self._misbehave()
            self.runs += 1
        return self.inner.send(kind, payload)

    def poll(self, seq: int, timeout: float):
        if self.kind == "hang" and self.runs > self.after and getattr(self.inner, "proc", None) is None:
            raise BoardTimeout(f"{self.describe()}: no answer within {timeout:.1f} s (injected hang)")
        return self.inner.poll(seq, timeout)

    def _misbehave(self) -> None:
        if self.kind == "hang":
            if getattr(self.inner, "proc", None) is not None:
                self.inner.signal_emulator(signal.SIGSTOP)
        elif not isinstance(self.inner.session.sock, _GarbageSocket):
            self.inner.session.sock = _GarbageSocket(self.inner.session.sock)
