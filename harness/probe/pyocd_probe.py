"""The probe over pyOCD's Python API (a CMSIS-DAP, ST-Link or J-Link probe on a physical board): the
same interface as ``gdb.GdbRemote`` (``harness.probe.Probe``), so ``harness.run.run_traced`` works with
either. pyOCD is imported only when a session is opened.

Breakpoints are pyOCD's (``BreakpointType.AUTO``: the FPB's hardware comparators where the address
allows, which is what flash-resident code needs). Resuming from a breakpoint lifts it, steps one
instruction and sets it again, as gdb does, so the same stop is not reported twice.
"""
from __future__ import annotations

import time

from .gdb import ProbeError
from . import SteppingProbe

REGISTERS = [f"r{i}" for i in range(13)] + ["sp", "lr", "pc"]


def connected_probes() -> list:
    """The debug probes pyOCD sees now (empty without one); never waits for one to appear."""
    from pyocd.core.helpers import ConnectHelper
    return ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)


class PyOcdProbe(SteppingProbe):
    """A probe on ``target`` (a pyOCD ``Target``/``CoreSightTarget``, or anything with its methods)."""

    def __init__(self, target, session=None, poll_s: float = 0.002):
        self.target = target
        self.session = session   # closed by ``close`` when given
        self.poll_s = poll_s
        self.running = not self._halted()

    @classmethod
    def open(cls, unique_id: str | None = None, target_type: str | None = None, resume: bool = True,
             **options) -> "PyOcdProbe":
        """Open a pyOCD session on the probe ``unique_id`` (the only one connected when None) for the
        pyOCD target type ``target_type`` (a target file's ``[pyocd] target``); ``options`` are pyOCD
        session options. With ``resume`` the core keeps (or starts) running."""
        from pyocd.core.helpers import ConnectHelper
        if target_type is not None:
            options.setdefault("target_override", target_type)
        session = ConnectHelper.session_with_chosen_probe(blocking=False, return_first=unique_id is None,
                                                          unique_id=unique_id, options=options)
        if session is None:
            raise ProbeError("no debug probe found by pyOCD" + (f" with id {unique_id!r}" if unique_id else ""))
        session.open()
        probe = cls(session.target, session=session)
        if resume and not probe.running:
            probe.cont()
        return probe

    def _halted(self) -> bool:
        state = self.target.get_state()   # pyOCD's Target.State enum; compared by name so fakes need no pyOCD
        return getattr(state, "name", str(state)).upper() == "HALTED"

    def _stop_description(self) -> str:
        reason = self.target.get_halt_reason()
        return f"halted ({getattr(reason, 'name', reason)})"

    # --- the probe interface ---
    def halt(self) -> str:
        self.target.halt()
        self.running = False
        return self._stop_description()

    def cont(self) -> None:
        self.target.resume()
        self.running = True

    def step(self) -> str:
        self.target.step()
        return self._stop_description()


    def wait_stop(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while not self._halted():
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)
        self.running = False
        return self._stop_description()

    def set_breakpoint(self, addr: int) -> None:
        if not self.target.set_breakpoint(addr & ~1):
            raise ProbeError(f"pyOCD could not set a breakpoint at {addr:#x} (no free comparator?)")

    def clear_breakpoint(self, addr: int) -> None:
        self.target.remove_breakpoint(addr & ~1)

    def read_memory(self, addr: int, length: int) -> bytes:
        return bytes(self.target.read_memory_block8(addr, length))

    def write_memory(self, addr: int, data: bytes) -> None:
        self.target.write_memory_block8(addr, list(data))

    def registers(self) -> list[int]:
        return [v & 0xFFFFFFFF for v in self.target.read_core_registers_raw(REGISTERS)]

    def close(self) -> None:
        """Leave the core running (breakpoints are the caller's to clear) and close the session."""
        try:
            if not self.running and self._halted():
                self.target.resume()
        finally:
            if self.session is not None:
                self.session.close()
                self.session = None
