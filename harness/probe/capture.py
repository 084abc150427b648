"""Per-cycle carry capture at the firmware's cycle hook.

The firmware calls ``trm_cycle_hook(y, z, step, cycle)`` after every cycle (a stable, never-inlined
symbol). With a breakpoint there, every stop hands the carries' addresses and the step and cycle in
r0..r3 (AAPCS arguments): ``capture`` reads both ``[L][D]`` carries. One record per cycle of every step
run. On an emulator under ``-icount`` the stops do not change the counted instructions: the guest
executes the same instructions, only wall time grows. Driving a traced run (breakpoint, RUN request,
stops, result) is ``harness.run.run_traced``: it sits above both the board and the probe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOOK = "trm_cycle_hook"


@dataclass
class CarryRecord:
    step: int
    cycle: int
    y: np.ndarray    # [L, D] int8
    z: np.ndarray


def capture(probe, L: int, D: int) -> CarryRecord:
    """The carries of the cycle the core is stopped at (at ``HOOK``), from its argument registers."""
    r = probe.registers()
    y = np.frombuffer(probe.read_memory(r[0], L * D), dtype=np.int8).reshape(L, D)
    z = np.frombuffer(probe.read_memory(r[1], L * D), dtype=np.int8).reshape(L, D)
    return CarryRecord(int(np.int32(r[2])), int(np.int32(r[3])), y.copy(), z.copy())


def inject(probe, y: np.ndarray, z: np.ndarray) -> None:
    """Overwrite the carries of the cycle the core is stopped at (at ``HOOK``): the next cycle starts
    from (y, z). For locating a divergence only: a run fed a carry answers for that carry, not its puzzle."""
    r = probe.registers()
    probe.write_memory(r[0], np.ascontiguousarray(y, np.int8).tobytes())
    probe.write_memory(r[1], np.ascontiguousarray(z, np.int8).tobytes())


def carries_array(records: list[CarryRecord], steps: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Records as y, z arrays [steps, T, L, D] (the golden reference's layout for one puzzle)."""
    L, D = records[0].y.shape
    y = np.zeros((steps, T, L, D), np.int8)
    z = np.zeros((steps, T, L, D), np.int8)
    for r in records:
        y[r.step, r.cycle], z[r.step, r.cycle] = r.y, r.z
    return y, z
