"""The pyOCD probe: the adapter's calls map onto pyOCD's Target API (a duck-typed fake target here), it
satisfies the same Probe interface as the GDB client, and with a probe connected it reads a running
board's memory."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.probe import Probe, read_symbol
from harness.probe.gdb import GdbRemote, ProbeError
from harness.probe.pyocd_probe import REGISTERS, PyOcdProbe, connected_probes


class FakeTarget:
    """pyOCD's Target methods the adapter uses; ``halt_after`` polls of a running core, it stops."""

    def __init__(self, halted: bool = True, halt_after: int = 2):
        self.halted = halted
        self.halt_after = halt_after
        self.polls = 0
        self.calls: list[tuple] = []
        self.memory = bytearray(range(256)) * 16
        self.breakpoints: set[int] = set()
        self.free_comparators = 6

    def get_state(self):
        if not self.halted:
            self.polls += 1
            if self.polls >= self.halt_after:
                self.halted = True
        return SimpleNamespace(name="HALTED" if self.halted else "RUNNING")

    def get_halt_reason(self):
        return SimpleNamespace(name="BREAKPOINT")

    def halt(self):
        self.calls.append(("halt",))
        self.halted = True

    def resume(self):
        self.calls.append(("resume",))
        self.halted, self.polls = False, 0

    def step(self):
        self.calls.append(("step",))

    def set_breakpoint(self, addr):
        self.calls.append(("set_breakpoint", addr))
        if len(self.breakpoints) >= self.free_comparators:
            return False
        self.breakpoints.add(addr)
        return True

    def remove_breakpoint(self, addr):
        self.calls.append(("remove_breakpoint", addr))
        self.breakpoints.discard(addr)

    def read_memory_block8(self, addr, size):
        self.calls.append(("read_memory_block8", addr, size))
        return list(self.memory[addr:addr + size])

    def write_memory_block8(self, addr, data):
        self.calls.append(("write_memory_block8", addr, tuple(data)))
        self.memory[addr:addr + len(data)] = bytes(data)

    def read_core_registers_raw(self, names):
        self.calls.append(("read_core_registers_raw", tuple(names)))
        return [0x20000100, 0x20000200, 1, -1 & 0xFFFFFFFF] + list(range(4, len(names)))


def test_adapter_maps_probe_calls_onto_pyocd_target():
    t = FakeTarget(halted=False, halt_after=3)
    p = PyOcdProbe(t, poll_s=0)
    assert isinstance(p, Probe) and p.running
    p.halt()
    assert t.calls[-1] == ("halt",) and not p.running
    p.set_breakpoint(0x0800_1235)                     # Thumb bit dropped
    assert t.calls[-1] == ("set_breakpoint", 0x0800_1234)
    assert p.read_memory(0x10, 5) == bytes([0x10, 0x11, 0x12, 0x13, 0x14])
    p.write_memory(0x10, b"\xaa\xbb")
    assert t.calls[-1] == ("write_memory_block8", 0x10, (0xAA, 0xBB)) and p.read_memory(0x10, 2) == b"\xaa\xbb"
    regs = p.registers()
    assert t.calls[-1] == ("read_core_registers_raw", tuple(REGISTERS)) and len(REGISTERS) == 16
    assert regs[:4] == [0x20000100, 0x20000200, 1, 0xFFFFFFFF]
    p.cont()
    assert t.calls[-1] == ("resume",) and p.running
    assert p.wait_stop(1.0) == "halted (BREAKPOINT)" and not p.running
    t.calls.clear()
    p.cont_from_breakpoint(0x0800_1235)               # as gdb: lift, step over, set again, resume
    assert t.calls == [("remove_breakpoint", 0x0800_1234), ("step",), ("set_breakpoint", 0x0800_1234), ("resume",)]
    p.clear_breakpoint(0x0800_1234)
    assert not t.breakpoints


def test_wait_stop_times_out_and_breakpoint_failure_is_clear():
    t = FakeTarget(halted=False, halt_after=10**9)
    p = PyOcdProbe(t, poll_s=0.001)
    assert p.wait_stop(0.05) is None and p.running
    t.free_comparators = 0
    with pytest.raises(ProbeError, match="could not set a breakpoint at 0x100"):
        p.set_breakpoint(0x100)


def test_close_resumes_a_halted_core_and_closes_the_session():
    t = FakeTarget(halted=True)
    closed = []
    p = PyOcdProbe(t, session=SimpleNamespace(close=lambda: closed.append(True)))
    assert not p.running
    p.close()
    assert t.calls == [("resume",)] and closed == [True]


def test_read_symbol_uses_the_elf_for_address_and_size(tmp_path, monkeypatch):
    import harness.probe.elf as E
    monkeypatch.setattr(E, "symbols", lambda elf: {"trm_carry_snapshot": (0x20, 6)})
    p = PyOcdProbe(FakeTarget())
    assert read_symbol(p, tmp_path / "fw.elf", "trm_carry_snapshot") == bytes(range(0x20, 0x26))
    assert read_symbol(p, tmp_path / "fw.elf", "trm_carry_snapshot", 2) == bytes([0x20, 0x21])
    with pytest.raises(KeyError, match="nope"):
        read_symbol(p, tmp_path / "fw.elf", "nope")


def test_gdb_client_has_the_same_interface():
    for name in ("halt", "cont", "step", "cont_from_breakpoint", "wait_stop", "set_breakpoint", "clear_breakpoint",
                 "read_memory", "write_memory", "registers", "close"):
        assert callable(getattr(GdbRemote, name)) and callable(getattr(PyOcdProbe, name))


def test_hardware_probe_reads_the_running_vector_table():
    probes = connected_probes()
    if not probes:
        pytest.skip("no debug probe connected (pyOCD's ConnectHelper.get_all_connected_probes() is empty)")
    p = PyOcdProbe.open(unique_id=probes[0].unique_id)
    try:
        p.halt()
        word = lambda a: int.from_bytes(p.read_memory(a, 4), "little")
        vtor = word(0xE000_ED08)                 # SCB VTOR: where the running image's vector table is
        sp, reset = word(vtor), word(vtor + 4)
        p.cont()
        assert sp and reset & 1      # an initial stack pointer and a Thumb reset handler
    finally:
        p.close()
