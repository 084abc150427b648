"""Deployment figures, one definition each: what the board's counter means, latency at the target
clock, the energy proxy, the RAM minimum of a model, and whether a configuration fits its target.
``harness run`` and the report both call these, so the same configuration gets the same figures, under
the same names, in both (the names are the glossary's: docs/glossary.md).

Pure: plain numbers, a ``Target`` and a blob header's dimensions in, plain dicts out; no board, no
journal, no torch.

  counts_kind   what a count is: "instructions" (an emulator's: QEMU under -icount shift=0, Renode at
                PerformanceInMips 1 with SysTick at 1 MHz), "cycles" (DWT CYCCNT on silicon) or
                "host-ns" (the host build's wall clock, not a target figure)
  latency_ms    the count at the target clock (instructions taken as one per cycle: an estimate, said
                in latency_basis)
  energy_uj     V x I x t with I = active current per MHz x MHz (the target's coefficients, their source
                in energy_model); none for host-ns
  fits          flash: blob <= blob region and firmware image <= firmware region (both of the build
                in use: a blob that shares the code memory takes what the image leaves); RAM: static RAM
                (data, bss, stack reservation) <= RAM, the measured stack high-water mark <= the stack
                reservation, and the arena a run used (or asked for) <= the arena region (the RAM the
                image leaves, or the target's own arena region). ``does_not_fit`` says what overflows by how much.
"""
from __future__ import annotations

from math import fsum
from typing import Any, Iterable

from .targets import Target

NS_PER_S = 1_000_000_000
EMULATED = ("qemu", "renode")
KINDS = ("instructions", "cycles", "host-ns")

# Instructions per SysTick tick on Renode: its board (harness/boards/renode.py) sets PerformanceInMips 1
# (one instruction = 1 µs of virtual time, Renode 1.15's time unit) and SysTick at 1 MHz
RENODE_INSTRUCTIONS_PER_TICK = 1

COUNTS_NOTES = {
    "qemu": "emulated instructions (QEMU -icount shift=0; resolution one SysTick tick, 1e9 / clock "
            "instructions), not silicon cycles",
    "renode": "emulated instructions (Renode at PerformanceInMips 1, SysTick at 1 MHz; resolution one "
              "instruction), not silicon cycles",
    "serial": "silicon core cycles (DWT CYCCNT, or SysTick at the core clock where a core has no DWT)",
    "host": "host wall-clock nanoseconds of the natively built core (not comparable to a board)",
}


def counts_kind(backend: str, counter_unit: str) -> str:
    """What a board's counter counts: see the module's docstring."""
    if backend in EMULATED and counter_unit == "systick":
        return "instructions"
    if counter_unit == "cycles" or (counter_unit == "systick" and backend not in ("host", *EMULATED)):
        return "cycles"      # DWT CYCCNT; or, on silicon without one, SysTick at the core clock (tick resolution)
    if counter_unit == "ns":
        return "host-ns"
    raise ValueError(f"a {backend} board's counter in unit {counter_unit!r} has no known meaning")


def counts_note(backend: str) -> str:
    return COUNTS_NOTES.get(backend, backend)


def instructions_per_count(counter_unit: str, counter_hz: int, backend: str) -> float | None:
    """Instructions per SysTick tick of an emulated board, which is also the count's resolution: under
    QEMU's -icount shift=0 an instruction is 1 ns of virtual time and SysTick runs at the core clock
    (``counter_hz``), so 1e9 / clock (40 at 25 MHz); on Renode, ``RENODE_INSTRUCTIONS_PER_TICK``. None
    for other counters."""
    if counter_unit != "systick" or not counter_hz or backend not in EMULATED:
        return None
    return NS_PER_S / counter_hz if backend == "qemu" else RENODE_INSTRUCTIONS_PER_TICK


def instructions(counter: int, counter_unit: str, counter_hz: int, backend: str) -> int | None:
    """Instruction count of an emulated run from its SysTick count (``instructions_per_count``)."""
    if instructions_per_count(counter_unit, counter_hz, backend) is None:
        return None
    if backend == "qemu":
        return round(counter * NS_PER_S / counter_hz)     # multiplied first, as every figure so far
    return counter * RENODE_INSTRUCTIONS_PER_TICK


def latency_ms(target: Target, kind: str, count: float) -> float:
    if kind == "host-ns":
        return count / 1e6
    return count / target.clock_hz * 1e3


def latency_basis(target: Target, kind: str) -> str:
    mhz = f"{target.clock_hz / 1e6:g} MHz"
    if kind == "instructions":
        return f"estimate: emulated instructions at one per cycle at {mhz} (an assumption, not a measurement)"
    if kind == "cycles":
        return f"measured: DWT core cycles at {mhz}"
    return "host wall clock of the natively built core, not the target"


def energy_uj(target: Target, kind: str, count: float) -> float | None:
    """Energy proxy in microjoules for ``count`` cycles (or instructions taken as cycles) at the target
    clock: I = active_ua_per_mhz x MHz, E = V x I x t. None for a host wall clock."""
    if kind == "host-ns":
        return None
    e = target.energy
    seconds = count / target.clock_hz
    current_a = e["active_ua_per_mhz"] * 1e-6 * target.clock_hz / 1e6
    return e["voltage"] * current_a * seconds * 1e6


def energy_model(target: Target, kind: str) -> str:
    if kind == "host-ns":
        return "none: a host wall clock says nothing about the target's energy"
    e = target.energy
    return (f"E = V x I x t with I = {e['active_ua_per_mhz']:g} uA/MHz x {target.clock_hz / 1e6:g} MHz, "
            f"V = {e['voltage']:g} V ({e['source']})" + ("; instructions as cycles" if kind == "instructions" else ""))


def working_buffer_bytes(header: dict) -> int:
    """The model's largest working buffer, from its dimensions in the blob header (firmware/core/trm.h):
    the largest of the mlp mixer L·D + L + 2I or the attention mixer 4L + 2·L·D + 3D, the channel SwiGLU
    D + 2F and the int16 logits 2V. Intrinsic to the model: the scratch a kernel implementation adds
    (the DSP linear kernels' arranged input, trm_linear_scratch_bytes) is not part of it. L here is the
    carry's rows, prefix included (``carry_rows``); the mlp mixer's norm over the rows adds two columns."""
    L, D, V = carry_rows(header), header["hidden"], header["vocab_size"]
    I, F = header["mix_inner"], header["ffn_inner"]
    rows_norm = 2 * L if header.get("seq_norm_const") else 0
    mix = L * D + L + 2 * I + rows_norm if header["mixer"] == 0 else 4 * L + 2 * L * D + 3 * D
    return max(mix, D + 2 * F, 2 * V)


def carry_rows(header: dict) -> int:
    """Rows of the carry: the blob's prefix (format version 2; 0 for version 1) and the sequence."""
    return header.get("prefix", 0) + header["seq_len"]


def ram_theoretical_min(header: dict) -> int:
    """The least RAM an inference needs: the carries y, z (2 R D, R the carry's rows), the input tokens (L)
    and the largest working buffer (``working_buffer_bytes``)."""
    return 2 * carry_rows(header) * header["hidden"] + header["seq_len"] + working_buffer_bytes(header)


def fit(target: Target, blob_bytes: int, sections: dict | None, stack_bytes_max: int | None = None,
        arena_bytes: int | None = None) -> dict[str, Any]:
    """Flash and RAM of a firmware image (``sections`` of its manifest: flash, ram; None when unknown)
    holding a blob of ``blob_bytes``, against ``target`` (the regions of the build in use:
    ``Target.blob``, ``Target.arena``), with the arena a run used (``arena_bytes``, when known); the rule
    is the module docstring's."""
    arena = target.arena
    ram_limit = target.ram.size + (arena.size if target.arena_fixed is not None else 0)
    # flash: the code memory, plus the blob's own memory where it has one (the M55's QSPI flash)
    flash_limit = target.flash.size + (0 if target.blob_after_firmware else target.blob.size)
    out: dict[str, Any] = {"blob_bytes": blob_bytes, "blob_region": target.blob.size, "flash_limit": flash_limit,
                           "ram_limit": ram_limit, "arena_region": arena.size, "stack_reservation": target.stack_bytes,
                           "stack_bytes_max": stack_bytes_max, "board_class": target.board_class}
    over_flash, over_ram = [], []
    if blob_bytes > target.blob.size:
        over_flash.append(f"blob {blob_bytes:,} B > blob region {target.blob.size:,} B")
    firmware_flash = ram_static = None
    if sections:
        firmware_flash, ram_static = int(sections["flash"]), int(sections["ram"])
        if firmware_flash > target.firmware_flash:
            over_flash.append(f"firmware image {firmware_flash:,} B > firmware region {target.firmware_flash:,} B "
                              "(the image overflows, not the blob)")
        if ram_static > target.ram.size:
            over_ram.append(f"static RAM {ram_static:,} B > RAM {target.ram.size:,} B")
    if stack_bytes_max is not None and stack_bytes_max > target.stack_bytes:
        over_ram.append(f"stack high-water mark {stack_bytes_max:,} B > stack reservation {target.stack_bytes:,} B")
    if arena_bytes is not None and arena_bytes > arena.size:
        over_ram.append(f"arena {arena_bytes:,} B > arena region {arena.size:,} B")
    out.update(firmware_flash=firmware_flash, flash_total=(firmware_flash or 0) + blob_bytes, ram_static=ram_static,
               fits_flash=not over_flash, fits_ram=not over_ram, fits=not (over_flash or over_ram),
               does_not_fit=(f"does not fit {target.name}: " + "; ".join(over_flash + over_ram))
               if over_flash or over_ram else None)
    return out


def puzzle_figures(target: Target, kind: str, count: float) -> dict[str, Any]:
    """One puzzle's latency and energy from its count."""
    return {"latency_ms": latency_ms(target, kind, count), "energy_uj": energy_uj(target, kind, count)}


def config_figures(target: Target, backend: str, kind: str, counts: Iterable[float], stack_bytes: Iterable[int],
                   ram_inference_bytes: Iterable[int], blob_bytes: int, sections: dict | None,
                   ram_min: int | None) -> dict[str, Any]:
    """The deployment figures of one configuration (model, recipe, depth, target) from its puzzles'
    counts, stack high-water marks and RAM of inference (arena + stack), its blob size, its firmware
    image's sections and its model's RAM minimum."""
    counts, stack_bytes, ram = list(counts), list(stack_bytes), list(ram_inference_bytes)
    if kind not in KINDS:
        raise ValueError(f"counts_kind {kind!r}: expected one of {', '.join(KINDS)}")
    mean = fsum(counts) / len(counts)
    out: dict[str, Any] = {"counts_kind": kind, "counts_note": counts_note(backend),
                           "counts_mean": mean, "counts_max": max(counts),
                           "latency_ms": latency_ms(target, kind, mean), "latency_basis": latency_basis(target, kind),
                           "energy_uj": energy_uj(target, kind, mean), "energy_model": energy_model(target, kind)}
    peak = max(ram)
    out.update(ram_inference_peak=peak, ram_theoretical_min=ram_min,
               ram_peak_over_min=peak / ram_min if ram_min else None)
    out.update(fit(target, blob_bytes, sections, max(stack_bytes)))
    return out


def outcome(correct: Iterable[bool], cell_accuracy: Iterable[float], steps: Iterable[int], arena_bytes: Iterable[int],
            flash_bytes_read: Iterable[int]) -> dict[str, Any]:
    """What a configuration's puzzles came to on the board: puzzle-exact and cell accuracy, mean steps
    run, the arena's peak use and the mean flash bytes read (exactly summed, so any caller gets the same
    bits)."""
    correct, cells, steps = [bool(c) for c in correct], [float(c) for c in cell_accuracy], [int(s) for s in steps]
    flash, n = [int(f) for f in flash_bytes_read], len(correct)
    return {"puzzles": n, "exact_accuracy": sum(correct) / n, "cell_accuracy": fsum(cells) / n,
            "mean_steps": fsum(steps) / n, "arena_bytes_max": max(int(a) for a in arena_bytes),
            "flash_bytes_read_mean": fsum(flash) / n}


# --- counts at a depth the emulator cannot afford --------------------------------------------------------
DEPTH_TERMS = ("fixed", "per step", "per z-update", "per y-update")


def depth_count_model(points: Iterable[tuple[int, int, int, float]]) -> dict[str, Any] | None:
    """A run's count as a function of its depth, from counts measured at several depths without halting
    (``points``: T, n, steps, count): count = fixed + steps · (per step + T · (n · per z-update +
    per y-update)), the firmware's loop structure (``trm_run``: every step runs T cycles of n z-updates
    and one y-update, then the readout). Least squares over the points; None unless they pin all four
    terms. ``residual_max`` is the largest misfit over the measured points (0 when exactly four; with
    more it checks the model: counts are deterministic, so only the counter's rounding is left)."""
    import numpy as np
    pts = [(int(T), int(n), int(s), float(c)) for T, n, s, c in points]
    if len(pts) < 4:
        return None
    A = np.array([[1.0, s, s * T * n, s * T] for T, n, s, _ in pts])
    b = np.array([c for *_, c in pts])
    if np.linalg.matrix_rank(A) < 4:
        return None
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return {"terms": dict(zip(DEPTH_TERMS, (float(v) for v in coef))),
            "residual_max": float(np.max(np.abs(A @ coef - b))), "points": len(pts)}


def count_at_depth(model: dict[str, Any], T: int, n: int, steps: int) -> float:
    """``depth_count_model``'s count at depth (T, n, steps), all steps run."""
    t = model["terms"]
    return t["fixed"] + steps * (t["per step"] + T * (n * t["per z-update"] + t["per y-update"]))
