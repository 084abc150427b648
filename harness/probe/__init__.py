"""The debug probe: one interface (read memory by symbol or address, breakpoints, continue, halt) over
the GDB remote serial protocol (QEMU's gdbstub, Renode, OpenOCD, `pyocd gdbserver`), with symbols from
the firmware ELF; and per-cycle carry capture at the firmware's ``trm_cycle_hook``."""
