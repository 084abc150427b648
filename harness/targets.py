"""Board descriptions (``targets/*.toml``): what a target is, as data (the backends act on it).

Each file gives the core and its compiler flags, the clock, flash/RAM/blob regions, the UART, the
names the emulators and probes know the board by, and energy coefficients with their source.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
REQUIRED = ("name", "core", "cflags", "clock_hz", "memory", "build", "uart", "qemu", "renode", "pyocd", "energy")


class TargetError(ValueError):
    pass


@dataclass(frozen=True)
class Region:
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    core: str
    cflags: tuple[str, ...]
    clock_hz: int
    flash: Region
    ram: Region
    blob: Region
    firmware_flash: int            # bytes of flash the firmware image may use (below the blob)
    arena_capacity: int            # bytes the firmware reserves for the arena (a run uses arena_bytes of it)
    rx_bytes: int
    tx_bytes: int
    stack_bytes: int
    uart_kind: str
    uart_base: int
    qemu_machine: str
    qemu_serial_index: int
    renode_platform: str
    pyocd_target: str
    energy: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def firmware_region(self) -> Region:
        return Region(self.flash.origin, self.firmware_flash)


def _region(d: dict, key: str, where: Path) -> Region:
    try:
        r = d[key]
        return Region(int(r["origin"]), int(r["size"]))
    except (KeyError, TypeError) as e:
        raise TargetError(f"{where}: [memory] {key} needs {{origin = ..., size = ...}}") from e


def load_target(name_or_path: str | Path) -> Target:
    p = Path(name_or_path)
    if not p.suffix:
        p = TARGETS_DIR / f"{name_or_path}.toml"
    if not p.exists():
        raise TargetError(f"unknown target {str(name_or_path)!r}: no {p}; known: {', '.join(target_names())}")
    d = tomllib.loads(p.read_text())
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise TargetError(f"{p}: missing {', '.join(missing)}")
    mem, build = d["memory"], d["build"]
    t = Target(
        name=d["name"], description=d.get("description", ""), core=d["core"], cflags=tuple(d["cflags"]),
        clock_hz=int(d["clock_hz"]), flash=_region(mem, "flash", p), ram=_region(mem, "ram", p),
        blob=_region(mem, "blob", p), firmware_flash=int(mem["firmware_flash"]),
        arena_capacity=int(build["arena_capacity"]), rx_bytes=int(build["rx_bytes"]), tx_bytes=int(build["tx_bytes"]),
        stack_bytes=int(build["stack_bytes"]), uart_kind=d["uart"]["kind"], uart_base=int(d["uart"]["base"]),
        qemu_machine=d["qemu"]["machine"], qemu_serial_index=int(d["qemu"].get("serial_index", 0)),
        renode_platform=d["renode"]["platform"], pyocd_target=d["pyocd"]["target"], energy=dict(d["energy"]),
        path=p)
    if t.uart_kind not in ("cmsdk", "stm32"):
        raise TargetError(f"{p}: [uart] kind must be 'cmsdk' or 'stm32', not {t.uart_kind!r}")
    fw = t.firmware_region
    if fw.origin < t.blob.end and t.blob.origin < fw.end:
        raise TargetError(f"{p}: the firmware region {fw.origin:#x}+{fw.size:#x} overlaps the blob region")
    return t


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))
