"""Run puzzles on a board and check them against the golden reference (``harness run``).

For every puzzle: the board's predictions after every step it ran and its final carries, the same
from the golden reference (``from_blob`` of the very blob the board holds), and the board's figures
(counter, stack high-water mark, arena bytes, flash bytes read). A row says whether the board agreed
with golden bit for bit; a disagreement is a bug, never a tolerance.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export import blob as B
from ..golden.fidelity import cosine_per_cycle
from ..probe.capture import carries_array, run_traced
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
                check: bool = True, embed_ram: bool = False, timeout: float = 600.0,
                probe=None, reference=None) -> dict:
    """Run every puzzle on ``board``. With a ``probe`` (a GdbRemote attached to the board) every cycle's
    carries are captured at the firmware's cycle hook; with the fp32 ``reference`` model as well, the
    device's carry-trajectory fidelity is computed from them (and, with ``check``, the golden
    reference's fidelity beside it: equal when the carries are bit-identical)."""
    im = B.from_blob(blob) if (check or probe is not None) else None
    x, y = stack(puzzles)
    info = board.info()
    fp32 = _fp32_carries(reference, x, depth) if (probe is not None and reference is not None) else None
    rows = []
    for i, p in enumerate(puzzles):
        request = RunRequest(x[i], depth.T, depth.n, depth.steps, depth.halting, carries=check, embed_ram=embed_ram)
        trace = None
        if probe is not None:
            t0 = time.monotonic()
            res, records = run_traced(board, probe, board.firmware, request, timeout=timeout)
            trace = {"records": records, "wall_s": time.monotonic() - t0}
        else:
            res = board.run(request, timeout=timeout)
        s = score(task, x[i:i + 1], y[i:i + 1], res.prediction[None])
        row = {"puzzle_id": p.id, "correct": bool(s["exact"][0]), "cell_accuracy": s["cell_accuracy"],
               "steps": res.steps_run, "counter": res.counter, "counter_unit": res.counter_unit,
               "stack_bytes": res.stack_bytes, "arena_bytes": res.arena_bytes, "flash_bytes_read": res.flash_bytes}
        emulated = board.backend in ("qemu", "renode")
        row["instructions"] = instructions(res.counter, res.counter_unit, res.counter_hz, emulated)
        # one golden run per puzzle serves both the bit-exactness check and the trace
        g = im.run(x[i:i + 1], depth.T, depth.n, depth.steps, keep_carries=True) if im is not None else None
        if check:
            k = res.steps_run
            if depth.halting:
                halted = np.flatnonzero(g["halt"][:, 0])
                want_steps = int(halted[0]) + 1 if len(halted) else depth.steps
            else:
                want_steps = depth.steps
            row["golden_match"] = bool(
                k == want_steps and np.array_equal(g["per_step"][:k, 0], res.per_step)
                and np.array_equal(g["y"][k - 1, -1, 0], res.y) and np.array_equal(g["z"][k - 1, -1, 0], res.z))
        if trace is not None:
            k = res.steps_run
            yd, zd = carries_array(trace["records"], k, depth.T)
            row["trace_cycles"] = len(trace["records"])
            row["trace_wall_s"] = trace["wall_s"]
            row["carries_match_golden"] = bool(
                len(trace["records"]) == k * depth.T and np.array_equal(g["y"][:k, :, 0], yd)
                and np.array_equal(g["z"][:k, :, 0], zd))
            if fp32 is not None:
                scale = im.carry_scale
                ref = {"y": fp32["y"][:k, :, i:i + 1], "z": fp32["z"][:k, :, i:i + 1]}
                dev = cosine_per_cycle(ref, {"y": yd[:, :, None].astype(np.float32) * scale,
                                             "z": zd[:, :, None].astype(np.float32) * scale})[0]
                gold = cosine_per_cycle(ref, {"y": g["y"][:k, :, :1].astype(np.float32) * scale,
                                              "z": g["z"][:k, :, :1].astype(np.float32) * scale})[0]
                row["fidelity_per_cycle"] = [float(v) for v in dev]
                row["fidelity_final"] = float(dev[-1])
                row["fidelity_equals_golden"] = bool(np.array_equal(dev, gold))
        rows.append(row)
        if progress:
            progress(1)
    fig = figures_for(board, rows[0]["counter_unit"] if rows else "")
    summary = summarize(rows, board.target, fig, len(blob))
    if rows:
        summary["memory"] = memory(board, info, rows, blob)
    return {"info": info, "rows": rows, "summary": summary, "figures": fig}


def working_buffer_bytes(header: dict) -> int:
    """The model's largest working buffer, from its dimensions in the blob header (firmware/core/trm.h):
    the largest of the mlp mixer L·D + L + 2I or the attention mixer 4L + 2·L·D + 3D, the channel SwiGLU
    D + 2F and the int16 logits 2V. Intrinsic to the model: the scratch a kernel implementation adds
    (the DSP linear kernels' arranged input, trm_linear_scratch_bytes) is not part of it."""
    L, D, V = header["seq_len"], header["hidden"], header["vocab_size"]
    I, F = header["mix_inner"], header["ffn_inner"]
    mix = L * D + L + 2 * I if header["mixer"] == 0 else 4 * L + 2 * L * D + 3 * D
    return max(mix, D + 2 * F, 2 * V)


def _fp32_carries(reference, x: np.ndarray, depth: Depth) -> dict[str, np.ndarray]:
    """The fp32 model's carries [S, T, B, L, D] on the puzzles (no halting: every step)."""
    import torch
    with torch.no_grad():
        r = reference.forward_trace(torch.as_tensor(x), depth.T, depth.n, depth.steps)
    return {"y": r["y"].float().numpy(), "z": r["z"].float().numpy()}


def memory(board: Board, info, rows: list[dict], blob: bytes) -> dict:
    """Flash and RAM of this model (its blob) on this board, against the target's limits.

    RAM of inference = arena bytes used + stack high-water mark (both measured by the firmware on each
    run; the arena holds the whole workspace, kernel scratch included); its theoretical minimum = the
    carries y, z (2 L D) + the input (L) + the largest working buffer (``working_buffer_bytes``, from
    the model's dimensions alone). Static RAM is what the firmware image reserves (data, bss with its
    buffers, stack), from the ELF."""
    t = board.target
    L, D = info.seq_len, info.hidden
    carries = 2 * L * D
    blob_bytes = len(blob)
    peak = max(r["arena_bytes"] + r["stack_bytes"] for r in rows)
    minimum = carries + L + working_buffer_bytes(B.read_header(blob))
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
    if "trace_cycles" in rows[0]:
        out["carries_match_golden"] = sum(r["carries_match_golden"] for r in rows)
        out["trace_wall_s_mean"] = float(np.mean([r["trace_wall_s"] for r in rows]))
    if "fidelity_final" in rows[0]:
        out["fidelity_final"] = float(np.mean([r["fidelity_final"] for r in rows]))
        out["fidelity_equals_golden"] = sum(r["fidelity_equals_golden"] for r in rows)
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
