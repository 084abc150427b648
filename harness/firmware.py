"""Cross-building the Cortex-M firmware (``harness firmware build|verify``).

One build per target from ``firmware/core/`` (the integer core and the protocol server) and
``firmware/ports/`` (start-up, main loop, counter, stack painting, the target's UART), with Debian's
``arm-none-eabi-gcc``. The target file (``targets/<name>.toml``) supplies the CPU flags and, as -D
definitions, the memory layout. Outputs in ``firmware-bin/<target>/``: ``firmware.elf`` (with
symbols and debug info), ``firmware.bin`` (raw image at the flash origin), ``firmware.map`` and
``manifest.json`` (sha256 of each, toolchain, flags, source hash, section sizes).

``build(target, portable=True)`` is the comparison variant: the same sources with
``-DTRM_PORTABLE_KERNELS`` (the linear kernels' portable C instead of their DSP/Helium paths), built
into ``build/firmware-portable/<target>/`` and never into ``firmware-bin/``.

Reproducible: compiled in a scratch folder with relative object names, ``-ffile-prefix-map`` for
source paths, no build id, no timestamps: the same sources and toolchain give the same bytes, which
``verify`` checks.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .targets import Target, load_target, read_layout, target_names

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BIN = REPO / "firmware-bin"
PORTABLE_BIN = REPO / "build" / "firmware-portable"
PORTABLE_DEFINE = "-DTRM_PORTABLE_KERNELS"
CC = "arm-none-eabi-gcc"
PORT_SOURCES = ("startup.c", "main.c", "counter.c", "stack.c")
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wvla", "-Wconversion", "-Wsign-conversion",
        "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wundef"]
COMMON = ["-O2", "-g", "-ffunction-sections", "-fdata-sections", "-fno-common", "-ffreestanding"]
OUTPUTS = ("firmware.elf", "firmware.bin", "firmware.map")


class FirmwareError(RuntimeError):
    pass


def toolchain_missing() -> str | None:
    """A message saying what to install, or None when the cross toolchain is there."""
    missing = [t for t in (CC, "arm-none-eabi-objcopy", "arm-none-eabi-size") if shutil.which(t) is None]
    if missing:
        return (f"{', '.join(missing)} not found: install the Cortex-M toolchain with "
                "`apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi`")
    return None


def _toolchain_version() -> str:
    out = subprocess.run([CC, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def sources(target: Target) -> list[Path]:
    core = sorted((FIRMWARE / "core").glob("*.c"))
    ports = [FIRMWARE / "ports" / f for f in PORT_SOURCES] + [FIRMWARE / "ports" / f"uart_{target.uart_kind}.c"]
    return core + ports


def _hashed(target: Target) -> list[Path]:
    files = sources(target) + sorted((FIRMWARE / "core").glob("*.h")) + sorted((FIRMWARE / "ports").glob("*.h"))
    return files + [FIRMWARE / "ports" / "cortexm.ld", target.path]


def source_hash(target: Target) -> str:
    h = hashlib.sha256()
    for p in _hashed(target):
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def defines(target: Target, build_id: str) -> list[str]:
    return [f'-DTRM_TARGET="{target.name}"', f'-DTRM_BUILD_ID="{build_id}"', f"-DCORE_HZ={target.clock_hz}u",
            f"-DUART_BASE={target.uart_base:#x}u", f"-DRX_BYTES={target.rx_bytes}", f"-DTX_BYTES={target.tx_bytes}"]


def memory_defines(target: Target) -> list[str]:
    """The linker script's definitions: code memory, RAM, stack, the blob's rule and the arena's region."""
    out = [f"-DFLASH_ORIGIN={target.flash.origin:#x}", f"-DFLASH_SIZE={target.flash.size:#x}",
           f"-DRAM_ORIGIN={target.ram.origin:#x}", f"-DRAM_SIZE={target.ram.size:#x}",
           f"-DSTACK_BYTES={target.stack_bytes:#x}"]
    if target.blob_after_firmware:
        out.append(f"-DBLOB_ALIGN={target.blob_align:#x}")
    else:
        out += [f"-DBLOB_ORIGIN={target.blob_fixed.origin:#x}", f"-DBLOB_SIZE={target.blob_fixed.size:#x}"]
    if target.arena_fixed is not None:
        out += [f"-DARENA_ORIGIN={target.arena_fixed.origin:#x}", f"-DARENA_SIZE={target.arena_fixed.size:#x}"]
    return out


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise FirmwareError(f"{' '.join(cmd[:3])} ... failed:\n{r.stderr or r.stdout}")


@dataclass
class Build:
    target: Target
    out: Path
    manifest: dict


def build(target: Target | str, out: Path | None = None, portable: bool = False) -> Build:
    """Build the firmware for one target into ``out`` (default ``firmware-bin/<target>/``, or
    ``build/firmware-portable/<target>/`` for the ``portable`` comparison variant)."""
    if isinstance(target, str):
        target = load_target(target)
    if (msg := toolchain_missing()):
        raise FirmwareError(msg)
    out = Path(out) if out else (PORTABLE_BIN if portable else BIN) / target.name
    digest = source_hash(target)
    build_id = digest[:16]
    cflags = [*target.cflags, *COMMON, *WARN, f"-ffile-prefix-map={FIRMWARE}=firmware"]
    defs = defines(target, build_id) + ([PORTABLE_DEFINE] if portable else [])
    ldflags = ["-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-Wl,--build-id=none",
               "-Wl,-Map=firmware.map", "-T", "link.ld"]
    with tempfile.TemporaryDirectory(prefix="trm-fw-") as tmp:
        work = Path(tmp)
        (work / "obj").mkdir()
        objs = []
        for src in sources(target):
            obj = f"obj/{src.parent.name}_{src.stem}.o"
            # the scratch folder is the compilation directory recorded in the debug info: map it away
            _run([CC, *cflags, f"-ffile-prefix-map={work}=build", *defs, "-c", str(src), "-o", obj], work)
            objs.append(obj)
        _run([CC, "-E", "-P", "-x", "c", *memory_defines(target), str(FIRMWARE / "ports" / "cortexm.ld"), "-o",
              "link.ld"], work)
        _run([CC, *target.cflags, *ldflags, *objs, "-o", "firmware.elf"], work)
        _run(["arm-none-eabi-objcopy", "-O", "binary", "firmware.elf", "firmware.bin"], work)
        sizes = _section_sizes(work / "firmware.elf")
        lay = read_layout(work / "firmware.elf")
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in OUTPUTS:
            shutil.copyfile(work / name, out / name)
            data = (out / name).read_bytes()
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {
        "target": target.name,
        "toolchain": _toolchain_version(),
        "cflags": cflags[:len(target.cflags) + len(COMMON) + len(WARN)] + ["-ffile-prefix-map=<firmware>=firmware"],
        "defines": defs,
        "ldflags": ldflags,
        "sources": [str(p.relative_to(REPO)) for p in _hashed(target)],
        "source_hash": digest,
        "build_id": build_id,
        "sections": sizes,
        "layout": {"blob": {"origin": lay.blob.origin, "size": lay.blob.size},
                   "arena": {"origin": lay.arena.origin, "size": lay.arena.size}},
        "files": files,
        "rebuild": f"harness firmware build --target {target.name}" + (" --portable" if portable else ""),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Build(target, out, manifest)


def _section_sizes(elf: Path) -> dict:
    """text (code + rodata), data, bss, stack and the blob-independent flash/RAM totals, in bytes."""
    from elftools.elf.elffile import ELFFile
    sizes = {"text": 0, "data": 0, "bss": 0, "stack": 0}
    with open(elf, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if not s["sh_flags"] & 0x2:  # SHF_ALLOC
                continue
            key = {".text": "text", ".ARM.exidx": "text", ".data": "data", ".bss": "bss", ".stack": "stack"}.get(s.name)
            if key:
                sizes[key] += s["sh_size"]
    sizes["flash"] = sizes["text"] + sizes["data"]
    sizes["ram"] = sizes["data"] + sizes["bss"] + sizes["stack"]
    return sizes


def verify(names: list[str] | None = None) -> list[str]:
    """Rebuild each target into a scratch folder and compare with firmware-bin/. Returns the problems
    (empty when every file matches byte for byte)."""
    problems = []
    for name in names or target_names():
        committed = BIN / name / "manifest.json"
        if not committed.exists():
            problems.append(f"{name}: no {committed.relative_to(REPO)} (run `harness firmware build --target {name}`)")
            continue
        want = json.loads(committed.read_text())
        with tempfile.TemporaryDirectory() as tmp:
            got = build(name, Path(tmp)).manifest
            for key in ("toolchain", "source_hash"):
                if got[key] != want[key]:
                    problems.append(f"{name}: {key} differs: committed {want[key]!r}, here {got[key]!r}")
            for fname in OUTPUTS:
                on_disk = hashlib.sha256((BIN / name / fname).read_bytes()).hexdigest() \
                    if (BIN / name / fname).exists() else None
                if got["files"][fname]["sha256"] != want["files"][fname]["sha256"]:
                    problems.append(f"{name}: rebuilt {fname} differs from the manifest")
                elif on_disk != want["files"][fname]["sha256"]:
                    problems.append(f"{name}: firmware-bin/{name}/{fname} does not match its manifest")
    return problems


def portable_elf(target: str) -> Path:
    """The portable-kernels variant's ELF for ``target``, built (or rebuilt when the sources changed)
    into ``build/firmware-portable/<target>/`` on demand."""
    manifest = PORTABLE_BIN / target / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["source_hash"] != source_hash(load_target(target)):
        build(target, portable=True)
    return PORTABLE_BIN / target / "firmware.elf"


def firmware_elf(target: str) -> Path:
    p = BIN / target / "firmware.elf"
    if not p.exists():
        raise FirmwareError(f"no prebuilt firmware for {target}: {p} is missing "
                            f"(run `harness firmware build --target {target}`)")
    return p
