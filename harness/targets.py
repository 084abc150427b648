"""Board descriptions (``targets/*.toml``): what a target is, as data (the backends act on it).

Each file gives the core and its compiler flags, the clock, its deployment class and where its limits
come from, the flash and RAM regions and the rule for the blob and the arena, the UART, the names the
emulators and probes know the board by, and energy coefficients with their source.

Where the blob and the arena go is a fact of each firmware build, not of the file: a blob that shares
the code memory (``blob = { after_firmware = true, align = A }``) starts at the first A-aligned address
after the image and takes the rest of that memory; the arena (the model's working memory) takes the RAM
that data, bss and the stack leave, or its own region (``arena = {origin, size}``). The linker script
(firmware/ports/cortexm.ld) resolves both into the symbols ``__blob_start``/``__blob_end`` and
``__arena_start``/``__arena_end``; ``load_target`` reads them from the committed build's ELF
(firmware-bin/), ``Target.built_as(elf)`` from any other build, so ``Target.blob`` and ``Target.arena``
are always those of the image a board runs.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
BIN_DIR = Path(__file__).resolve().parent.parent / "firmware-bin"
REQUIRED = ("name", "class", "limits_source", "core", "cflags", "clock_hz", "memory", "build", "uart", "qemu",
            "renode", "pyocd", "energy")
LAYOUT_SYMBOLS = ("__blob_start", "__blob_end", "__arena_start", "__arena_end")


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
class Layout:
    """Where one firmware build puts the blob and the arena (its ELF's symbols)."""
    blob: Region
    arena: Region


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    board_class: str               # e.g. "4 MB microcontroller": what the reports call it
    limits_source: str             # where the memory limits come from
    core: str
    cflags: tuple[str, ...]
    clock_hz: int
    flash: Region
    ram: Region
    blob_after_firmware: bool      # the blob shares the code memory, after the image
    blob_align: int                # ... from the next multiple of this
    blob_fixed: Region | None      # or: its own region
    arena_fixed: Region | None     # the arena's own region (None: the RAM the image leaves)
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
    layout: Layout | None = None   # of the build in use (None: no build read yet)

    def _layout(self) -> Layout:
        if self.layout is None:
            raise TargetError(f"{self.name}: where the blob and the arena go is a fact of a firmware build, and "
                              f"there is none: build it (`harness firmware build --target {self.name}`)")
        return self.layout

    @property
    def blob(self) -> Region:
        """The blob region of the build in use."""
        return self._layout().blob

    @property
    def arena(self) -> Region:
        """The arena (the model's working memory) of the build in use."""
        return self._layout().arena

    @property
    def arena_capacity(self) -> int:
        return self.arena.size

    @property
    def firmware_region(self) -> Region:
        """The code memory the image may take: below the blob when they share it, else all of it."""
        if self.blob_after_firmware:
            return Region(self.flash.origin, self.blob.origin - self.flash.origin)
        return self.flash

    @property
    def firmware_flash(self) -> int:
        return self.firmware_region.size

    def built_as(self, elf: str | Path) -> "Target":
        """This target with the blob and arena regions of the firmware build ``elf``."""
        return replace(self, layout=read_layout(Path(elf)))


def read_layout(elf: Path) -> Layout:
    """The blob and arena regions a firmware ELF's linker symbols give (``LAYOUT_SYMBOLS``)."""
    st = elf.stat()
    return _read_layout(str(elf.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _read_layout(path: str, mtime_ns: int, size: int) -> Layout:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        found = {}
        for name in LAYOUT_SYMBOLS:
            syms = symtab.get_symbol_by_name(name) if symtab is not None else None
            if not syms:
                raise TargetError(f"{path}: no symbol {name}: a firmware built before the blob and arena were "
                                  "placed by the linker; rebuild it (`harness firmware build`)")
            found[name] = int(syms[0]["st_value"])
    return Layout(Region(found["__blob_start"], found["__blob_end"] - found["__blob_start"]),
                  Region(found["__arena_start"], found["__arena_end"] - found["__arena_start"]))


def _region(d: dict, key: str, where: Path) -> Region:
    try:
        r = d[key]
        return Region(int(r["origin"]), int(r["size"]))
    except (KeyError, TypeError) as e:
        raise TargetError(f"{where}: [memory] {key} needs {{origin = ..., size = ...}}") from e


def _blob_rule(mem: dict, where: Path) -> tuple[bool, int, Region | None]:
    b = mem.get("blob")
    if isinstance(b, dict) and b.get("after_firmware") is True:
        align = int(b.get("align", 0))
        if align < 4 or align & (align - 1):
            raise TargetError(f"{where}: [memory] blob align = {align}: a power of two of at least 4 "
                              "(the blob is read in 4-byte words)")
        return True, align, None
    if isinstance(b, dict) and "after_firmware" in b:
        raise TargetError(f"{where}: [memory] blob after_firmware must be true (or give origin and size instead)")
    return False, 0, _region(mem, "blob", where)


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
    after, align, fixed = _blob_rule(mem, p)
    t = Target(
        name=d["name"], description=d.get("description", ""), board_class=d["class"], limits_source=d["limits_source"],
        core=d["core"], cflags=tuple(d["cflags"]),
        clock_hz=int(d["clock_hz"]), flash=_region(mem, "flash", p), ram=_region(mem, "ram", p),
        blob_after_firmware=after, blob_align=align, blob_fixed=fixed,
        arena_fixed=_region(mem, "arena", p) if "arena" in mem else None,
        rx_bytes=int(build["rx_bytes"]), tx_bytes=int(build["tx_bytes"]),
        stack_bytes=int(build["stack_bytes"]), uart_kind=d["uart"]["kind"], uart_base=int(d["uart"]["base"]),
        qemu_machine=d["qemu"]["machine"], qemu_serial_index=int(d["qemu"].get("serial_index", 0)),
        renode_platform=d["renode"]["platform"], pyocd_target=d["pyocd"]["target"], energy=dict(d["energy"]),
        path=p)
    if t.uart_kind not in ("cmsdk", "stm32"):
        raise TargetError(f"{p}: [uart] kind must be 'cmsdk' or 'stm32', not {t.uart_kind!r}")
    fw = t.flash
    if fixed is not None and fw.origin < fixed.end and fixed.origin < fw.end:
        raise TargetError(f"{p}: the code memory {fw.origin:#x}+{fw.size:#x} overlaps the blob region: "
                          "a blob that shares it is `blob = { after_firmware = true, align = ... }`")
    elf = BIN_DIR / t.name / "firmware.elf"
    try:
        return t.built_as(elf) if elf.is_file() else t
    except TargetError:
        return t     # an image from before the linker placed blob and arena: rebuilt, it will say (``_layout``)


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))
