"""Symbols of the firmware ELF (pyelftools): addresses and sizes by name."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def symbols(elf: str | Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of functions and objects; re-read when the file changes."""
    st = Path(elf).stat()
    return _symbols(str(elf), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _symbols(elf: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    from elftools.elf.elffile import ELFFile
    out = {}
    with open(elf, "rb") as f:
        tab = ELFFile(f).get_section_by_name(".symtab")
        if tab is None:
            raise ValueError(f"{elf} has no symbol table (stripped?)")
        for s in tab.iter_symbols():
            if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT"):
                out[s.name] = (s["st_value"], s["st_size"])
    return out


def address(elf: Path | str, name: str) -> int:
    table = symbols(elf)
    if name not in table:
        raise KeyError(f"symbol {name!r} not in {elf}")
    return table[name][0]
