"""The debug probe: one interface (read memory by symbol or address, breakpoints, continue, halt, wait for
a stop) with two implementations: ``gdb.GdbRemote`` over the GDB remote serial protocol (QEMU's gdbstub,
Renode, OpenOCD, `pyocd gdbserver`) and ``pyocd_probe.PyOcdProbe`` over pyOCD's Python API (physical
boards); symbols from the firmware ELF; and per-cycle carry capture at the firmware's ``trm_cycle_hook``
(``capture``). A probe connects to a board's debug port (``attach``, from what a board's
``debug_port()`` says); it knows nothing of boards, and boards nothing of probes."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Probe(Protocol):
    """What ``harness.run.run_traced`` and the tests use of a probe. Addresses are the core's; a Thumb
    function address may carry bit 0 (breakpoints ignore it)."""

    running: bool  # False once a stop was collected or ``halt`` returned

    def halt(self) -> str:
        """Stop the core; returns a description of the stop."""

    def cont(self) -> None:
        """Resume; ``wait_stop`` collects the next stop."""

    def cont_from_breakpoint(self, addr: int) -> None:
        """Resume from a stop at the breakpoint ``addr`` (step over it, keep it set)."""

    def wait_stop(self, timeout: float) -> str | None:
        """A description of the stop once the core stopped, or None if it still runs after ``timeout`` s."""

    def set_breakpoint(self, addr: int) -> None: ...

    def clear_breakpoint(self, addr: int) -> None: ...

    def read_memory(self, addr: int, length: int) -> bytes: ...

    def write_memory(self, addr: int, data: bytes) -> None: ...

    def registers(self) -> list[int]:
        """r0..r15 (then whatever else the probe gives), as unsigned 32-bit values."""

    def close(self) -> None: ...


class SteppingProbe:
    """Shared by the implementations: resuming from a breakpoint stop as gdb does (lift it, step one
    instruction, set it again, continue), from their own breakpoint, step and cont."""

    def cont_from_breakpoint(self, addr: int) -> None:
        self.clear_breakpoint(addr)
        self.step()
        self.set_breakpoint(addr)
        self.cont()


def read_symbol(probe: Probe, elf: str | Path, name: str, length: int | None = None) -> bytes:
    """The bytes of the firmware symbol ``name`` (its size from the ELF unless ``length`` is given)."""
    from .elf import symbols
    table = symbols(elf)
    if name not in table:
        raise KeyError(f"symbol {name!r} not in {elf}")
    addr, size = table[name]
    return probe.read_memory(addr, size if length is None else length)


def attach(kind: str, host: str, port: int, halts_on_attach: bool = False, timeout: float = 10.0) -> Probe:
    """A probe attached to a debug port, with the core running: ``kind`` "gdb-remote" is a GDB remote
    server at ``host:port``; ``halts_on_attach``, the server stops the core on connect and says so late
    (Renode), so the probe waits for that stop before it resumes the core."""
    if kind != "gdb-remote":
        raise ValueError(f"debug port kind {kind!r}: expected 'gdb-remote'")
    from .gdb import GdbRemote
    return GdbRemote(host, port, timeout=timeout, halts_on_attach=halts_on_attach)
