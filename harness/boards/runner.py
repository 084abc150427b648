"""Run puzzles on a board and check them against the golden reference (``harness run``).

For every puzzle: the board's predictions after every step it ran and its final carries, the same
from the golden reference (``from_blob`` of the very blob the board holds), and the board's figures
(counter, stack high-water mark, arena bytes, flash bytes read). A row says whether the board agreed
with golden bit for bit; a disagreement is a bug, never a tolerance.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export import blob as B
from ..models.evaluate import Depth
from ..tasks import score, stack
from ..targets import Target
from .base import Board, RunRequest

NS_PER_S = 1_000_000_000


def instructions(counter: int, unit: str, counter_hz: int, emulated: bool) -> int | None:
    """Instruction count of a QEMU -icount shift=0 run (1 ns of virtual time per instruction)."""
    if emulated and unit == "systick" and counter_hz:
        return round(counter * NS_PER_S / counter_hz)
    return None


@dataclass
class Figures:
    """How to read a row's counter on this board."""
    kind: str           # "instructions" (emulator), "cycles" (silicon) or "ns" (host wall clock)
    note: str


def figures_for(board: Board, unit: str) -> Figures:
    if board.backend in ("qemu", "renode"):
        return Figures("instructions", f"emulated instruction counts ({board.backend} -icount shift=0, "
                                        "SysTick resolution), not silicon cycles")
    if unit == "cycles":
        return Figures("cycles", "DWT CYCCNT core cycles on silicon")
    return Figures("ns", "host wall clock of the natively built core")


def run_puzzles(board: Board, blob: bytes, task, puzzles, depth: Depth, progress=None,
                check: bool = True, embed_ram: bool = False, timeout: float = 600.0) -> dict:
    im = B.from_blob(blob) if check else None
    x, y = stack(puzzles)
    info = board.info()
    rows = []
    for i, p in enumerate(puzzles):
        res = board.run(RunRequest(x[i], depth.T, depth.n, depth.steps, depth.halting, carries=check,
                                   embed_ram=embed_ram), timeout=timeout)
        s = score(task, x[i:i + 1], y[i:i + 1], res.prediction[None])
        row = {"puzzle_id": p.id, "correct": bool(s["exact"][0]), "cell_accuracy": s["cell_accuracy"],
               "steps": res.steps_run, "counter": res.counter, "counter_unit": res.counter_unit,
               "stack_bytes": res.stack_bytes, "arena_bytes": res.arena_bytes, "flash_bytes_read": res.flash_bytes}
        emulated = board.backend in ("qemu", "renode")
        row["instructions"] = instructions(res.counter, res.counter_unit, res.counter_hz, emulated)
        if check:
            g = im.run(x[i:i + 1], depth.T, depth.n, depth.steps, keep_carries=True)
            k = res.steps_run
            if depth.halting:
                halted = np.flatnonzero(g["halt"][:, 0])
                want_steps = int(halted[0]) + 1 if len(halted) else depth.steps
            else:
                want_steps = depth.steps
            row["golden_match"] = bool(
                k == want_steps and np.array_equal(g["per_step"][:k, 0], res.per_step)
                and np.array_equal(g["y"][k - 1, -1, 0], res.y) and np.array_equal(g["z"][k - 1, -1, 0], res.z))
        rows.append(row)
        if progress:
            progress(1)
    fig = figures_for(board, rows[0]["counter_unit"] if rows else "")
    summary = summarize(rows, board.target, fig, len(blob))
    if rows:
        summary["memory"] = memory(board, info, rows, len(blob))
    return {"info": info, "rows": rows, "summary": summary, "figures": fig}


def memory(board: Board, info, rows: list[dict], blob_bytes: int) -> dict:
    """Flash and RAM of this model on this board, against the target's limits.

    RAM of inference = arena bytes used + stack high-water mark (both measured by the firmware on each
    run); its theoretical minimum = the carries y, z (2 L D) + the input (L) + the largest working
    buffer (the workspace beyond the carries). Static RAM is what the firmware image reserves (data,
    bss with its buffers, stack), from the ELF."""
    t = board.target
    L, D = info.seq_len, info.hidden
    carries = 2 * L * D
    work = info.workspace_bytes - ((carries + 7) // 8 * 8)
    peak = max(r["arena_bytes"] + r["stack_bytes"] for r in rows)
    minimum = carries + L + work
    out = {"ram_inference_peak": peak, "ram_theoretical_min": minimum, "ram_peak_over_min": peak / minimum,
           "blob_bytes": blob_bytes, "blob_region": t.blob.size, "blob_fits": blob_bytes <= t.blob.size,
           "ram_limit": t.ram.size}
    sections = provenance(board, b"").get("firmware_sections")
    if sections:
        out.update(firmware_flash=sections["flash"], flash_total=sections["flash"] + blob_bytes,
                   flash_limit=t.flash.size, ram_static=sections["ram"],
                   fits=bool(sections["flash"] <= t.firmware_flash and blob_bytes <= t.blob.size
                             and sections["ram"] <= t.ram.size))
    return out


def summarize(rows: list[dict], target: Target, fig: Figures, blob_bytes: int) -> dict:
    if not rows:
        return {}
    n = len(rows)
    out = {"puzzles": n, "exact_accuracy": sum(r["correct"] for r in rows) / n,
           "cell_accuracy": float(np.mean([r["cell_accuracy"] for r in rows])),
           "mean_steps": float(np.mean([r["steps"] for r in rows])),
           "stack_bytes_max": max(r["stack_bytes"] for r in rows),
           "arena_bytes": max(r["arena_bytes"] for r in rows),
           "flash_bytes_read_mean": float(np.mean([r["flash_bytes_read"] for r in rows])),
           "blob_bytes": blob_bytes, "counter_kind": fig.kind, "counter_note": fig.note}
    if "golden_match" in rows[0]:
        out["golden_match"] = sum(r["golden_match"] for r in rows)
    if fig.kind == "instructions":
        mean = float(np.mean([r["instructions"] for r in rows]))
        out["instructions_mean"] = mean
        out["ms_at_clock_estimate"] = mean / target.clock_hz * 1e3
        out["estimate_assumption"] = (f"one instruction per cycle at {target.clock_hz / 1e6:g} MHz "
                                      "(an assumption, not a measurement)")
        out["energy_uj_estimate"] = target.energy_uj(mean, "instructions")
    elif fig.kind == "cycles":
        mean = float(np.mean([r["counter"] for r in rows]))
        out["cycles_mean"] = mean
        out["ms_at_clock"] = mean / target.clock_hz * 1e3
        out["energy_uj_estimate"] = target.energy_uj(mean, "cycles")
    return out


def provenance(board: Board, blob: bytes) -> dict:
    out = {"board": board.id, "backend": board.backend, "target": board.target.name,
           "blob_sha256": hashlib.sha256(blob).hexdigest()}
    fw = getattr(board, "firmware", None)
    if fw is not None:
        manifest = Path(fw).parent / "manifest.json"
        out["firmware_sha256"] = hashlib.sha256(Path(fw).read_bytes()).hexdigest()
        if manifest.exists():
            m = json.loads(manifest.read_text())
            out["firmware_build_id"] = m.get("build_id")
            out["firmware_sections"] = m.get("sections")
    return out
