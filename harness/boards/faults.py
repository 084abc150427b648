"""Fault injection for testing the farm itself: an inventory entry with ``inject = "hang@N"`` or
``inject = "garbage@N"`` makes that board misbehave after answering N puzzles of each start.

  hang     a QEMU board's process is stopped (SIGSTOP): the UART goes silent, like a wedged board;
           other backends stop reading (the request times out)
  garbage  every byte the board sends from then on is replaced by random bytes: the real frame
           decoder has to reject them

The faults act below the protocol so the farm's detection, reset, retry and quarantine paths run
exactly as they would for a real board.
"""
from __future__ import annotations

import os
import random
import signal

from .base import Board, BoardTimeout

KINDS = ("hang", "garbage")


def parse(spec: str) -> tuple[str, int]:
    kind, _, after = spec.partition("@")
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


def arm(board: Board, spec: str | None) -> None:
    """Make ``board`` misbehave as ``spec`` says (nothing when None)."""
    if not spec:
        return
    kind, after = parse(spec)
    real_run = board.run
    answered = 0

    def run(request, timeout: float = 120.0):
        nonlocal answered
        if answered >= after:
            if kind == "hang":
                proc = getattr(board, "proc", None)
                if proc is None:
                    raise BoardTimeout(f"{board.describe()}: no answer within {timeout:.1f} s (injected hang)")
                os.kill(proc.pid, signal.SIGSTOP)
            elif not isinstance(board.session.sock, _GarbageSocket):
                board.session.sock = _GarbageSocket(board.session.sock)
        answered += 1
        return real_run(request, timeout=timeout)

    board.run = run
