"""Per-cycle carry capture through the debug probe.

The firmware calls ``trm_cycle_hook(y, z, step, cycle)`` after every cycle (a stable, never-inlined
symbol). With a breakpoint there, every stop hands the carries' addresses and the step and cycle in
r0..r3 (AAPCS arguments): the probe reads both ``[L][D]`` carries and continues. One record per cycle of
every step run. On an emulator under ``-icount`` the stops do not change the counted instructions: the
guest executes the same instructions, only wall time grows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..boards import protocol as P
from ..boards.base import Board, BoardTimeout, RunRequest
from .elf import address
from .gdb import GdbRemote

HOOK = "trm_cycle_hook"


@dataclass
class CarryRecord:
    step: int
    cycle: int
    y: np.ndarray    # [L, D] int8
    z: np.ndarray


def run_traced(board: Board, probe: GdbRemote, elf, request: RunRequest, timeout: float = 600.0
               ) -> tuple[P.Result, list[CarryRecord]]:
    """Run one puzzle with a breakpoint at the cycle hook; returns the RESULT and the carry records."""
    info = board._info or board.info()
    L, D = info.seq_len, info.hidden
    hook = address(elf, HOOK)
    if probe.running:
        probe.halt()
    probe.set_breakpoint(hook)
    records: list[CarryRecord] = []
    session = board.session
    session.seq = (session.seq + 1) & 0xFFFF
    seq = session.seq
    probe.cont()
    session.send_raw(b"\x00" + P.frame(P.RUN, seq, P.run_payload(
        request.tokens, request.T, request.n, request.steps, request.halting, request.carries, request.embed_ram)))
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise BoardTimeout(f"{board.describe()}: traced run did not finish in {timeout} s")
            stop = probe.wait_stop(0.02)
            if stop is not None:
                r = probe.registers()
                y = np.frombuffer(probe.read_memory(r[0], L * D), dtype=np.int8).reshape(L, D)
                z = np.frombuffer(probe.read_memory(r[1], L * D), dtype=np.int8).reshape(L, D)
                records.append(CarryRecord(int(np.int32(r[2])), int(np.int32(r[3])), y.copy(), z.copy()))
                probe.cont_from_breakpoint(hook)
                continue
            try:
                wire = session.read_frame(0.01)
            except BoardTimeout:
                continue
            kind, got_seq, body = P.unframe(wire)
            if kind == P.ERROR and got_seq in (seq, 0):
                raise P.parse_error(body)
            if kind == P.RESULT and got_seq == seq:
                return P.parse_result(body, D), records
    finally:
        if probe.running:
            probe.halt()
        probe.clear_breakpoint(hook)
        probe.cont()


def carries_array(records: list[CarryRecord], steps: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Records as y, z arrays [steps, T, L, D] (the golden reference's layout for one puzzle)."""
    L, D = records[0].y.shape
    y = np.zeros((steps, T, L, D), np.int8)
    z = np.zeros((steps, T, L, D), np.int8)
    for r in records:
        y[r.step, r.cycle], z[r.step, r.cycle] = r.y, r.z
    return y, z
