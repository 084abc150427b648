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
    """Instruction count of an emulated run from its SysTick count: 1 ns of virtual time per instruction
    under QEMU's -icount shift=0 and under Renode's PerformanceInMips 1000 (the Renode board sets it, and
    SysTick to the target clock: harness/boards/renode.py), so ticks x 1e9 / clock on both."""
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
        clock = "-icount shift=0" if board.backend == "qemu" else "PerformanceInMips 1000"
        return Figures("instructions", f"emulated instruction counts ({board.backend} {clock}, "
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
        fp32_i = {"y": fp32["y"][:, :, i:i + 1], "z": fp32["z"][:, :, i:i + 1]} if fp32 is not None else None
        rows.append(puzzle_row(board, im, task, p, x[i], y[i], depth, check=check, embed_ram=embed_ram,
                               timeout=timeout, probe=probe, fp32=fp32_i))
        if progress:
            progress(1)
    fig = figures_for(board, rows[0]["counter_unit"] if rows else "")
    fit = footprint(board.target, firmware_image(board), len(blob))
    for row in rows:
        row.update(row_figures(row, board.target, fig, fit))
    summary = summarize(rows, board.target, fig, len(blob))
    if rows:
        summary["memory"] = memory(board, info, rows, blob)
    return {"info": info, "rows": rows, "summary": summary, "figures": fig}


def puzzle_row(board: Board, im, task, p, x: np.ndarray, y: np.ndarray, depth: Depth, check: bool = True,
               embed_ram: bool = False, timeout: float = 600.0, probe=None, fp32=None, golden=None) -> dict:
    """Run one puzzle (tokens ``x``, label ``y``) on ``board`` and return its row. ``im`` is the golden
    integer model of the board's blob (None: no check, no trace); ``golden``, when given, is its output
    for this puzzle already computed (``golden_batch``). Board failures (timeouts, protocol errors,
    faults) propagate to the caller."""
    request = RunRequest(x, depth.T, depth.n, depth.steps, depth.halting, carries=check, embed_ram=embed_ram)
    trace = None
    if probe is not None:
        t0 = time.monotonic()
        res, records = run_traced(board, probe, board.firmware, request, timeout=timeout)
        trace = {"records": records, "wall_s": time.monotonic() - t0}
    else:
        t0 = time.monotonic()
        res = board.run(request, timeout=timeout)
        device_s = time.monotonic() - t0
    s = score(task, x[None], y[None], res.prediction[None])
    row = {"puzzle_id": p.id, "correct": bool(s["exact"][0]), "cell_accuracy": s["cell_accuracy"],
           "steps": res.steps_run, "counter": res.counter, "counter_unit": res.counter_unit,
           "stack_bytes": res.stack_bytes, "arena_bytes": res.arena_bytes, "flash_bytes_read": res.flash_bytes}
    if trace is None:
        row["device_wall_s"] = device_s    # host time of the request: emulated compute + the UART round trip
    emulated = board.backend in ("qemu", "renode")
    row["instructions"] = instructions(res.counter, res.counter_unit, res.counter_hz, emulated)
    # one golden run per puzzle serves both the bit-exactness check and the trace
    if golden is not None:
        g = golden
    else:
        g = im.run(x[None], depth.T, depth.n, depth.steps, keep_carries=True) if im is not None else None
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
            ref = {"y": fp32["y"][:k], "z": fp32["z"][:k]}
            dev = cosine_per_cycle(ref, {"y": yd[:, :, None].astype(np.float32) * scale,
                                         "z": zd[:, :, None].astype(np.float32) * scale})[0]
            gold = cosine_per_cycle(ref, {"y": g["y"][:k, :, :1].astype(np.float32) * scale,
                                          "z": g["z"][:k, :, :1].astype(np.float32) * scale})[0]
            row["fidelity_per_cycle"] = [float(v) for v in dev]
            row["fidelity_final"] = float(dev[-1])
            row["fidelity_equals_golden"] = bool(np.array_equal(dev, gold))
    return row


def golden_batch(im, x: np.ndarray, depth: Depth) -> list[dict]:
    """The golden reference on a batch of puzzles at once (vectorised: much cheaper than one by one),
    split into what ``puzzle_row(golden=...)`` takes for each puzzle."""
    g = im.run(x, depth.T, depth.n, depth.steps, keep_carries=True)
    return [{"per_step": g["per_step"][:, i:i + 1], "halt": g["halt"][:, i:i + 1],
             "y": g["y"][:, :, i:i + 1], "z": g["z"][:, :, i:i + 1]} for i in range(len(x))]


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


def firmware_image(board: Board) -> Path | None:
    """The firmware ELF whose sections count against the target: the board's, or for a board without one
    (the host build) the target's prebuilt image, the one a device would run."""
    fw = getattr(board, "firmware", None)
    if fw is None:
        from ..firmware import FirmwareError, firmware_elf
        try:
            fw = firmware_elf(board.target.name)
        except FirmwareError:
            return None
    return Path(fw)


def footprint(target: Target, firmware: Path | None, blob_bytes: int) -> dict:
    """Flash and static RAM of ``firmware`` (section sizes from its manifest) holding a blob of
    ``blob_bytes``, against ``target``'s regions: ``fits``, and when not, ``does_not_fit`` saying what
    overflows by how much. Without a manifest only the blob is checked (``firmware_flash`` absent)."""
    out = {"blob_bytes": blob_bytes, "blob_region": target.blob.size, "blob_fits": blob_bytes <= target.blob.size,
           "flash_limit": target.flash.size, "ram_limit": target.ram.size}
    over = []
    if blob_bytes > target.blob.size:
        over.append(f"blob {blob_bytes:,} B > blob region {target.blob.size:,} B")
    sections = _manifest(firmware).get("sections") if firmware else None
    if sections:
        out.update(firmware_flash=sections["flash"], flash_total=sections["flash"] + blob_bytes,
                   ram_static=sections["ram"])
        if sections["flash"] > target.firmware_flash:
            over.append(f"firmware {sections['flash']:,} B > firmware region {target.firmware_flash:,} B")
        if sections["ram"] > target.ram.size:
            over.append(f"static RAM {sections['ram']:,} B > RAM {target.ram.size:,} B")
    out["fits"] = not over
    if over:
        out["does_not_fit"] = f"does not fit {target.name}: " + "; ".join(over)
    return out


def row_figures(row: dict, target: Target, fig: Figures, fit: dict) -> dict:
    """One row's deployment figures: latency with its unit (and in µs, saying on what basis), the energy
    proxy per inference with its model named (``Target.energy_uj``), flash and RAM use against the
    target's limits (``fit`` from ``footprint``) with fit/no-fit."""
    mhz = target.clock_hz / 1e6
    e = target.energy
    out = {}
    if fig.kind == "instructions":
        count = row["instructions"]
        out.update(latency=count, latency_unit="instructions", latency_us=count / mhz,
                   latency_us_basis=f"estimate: one instruction per cycle at {mhz:g} MHz (an assumption, "
                                    "not a measurement)")
    elif fig.kind == "cycles":
        count = row["counter"]
        out.update(latency=count, latency_unit="cycles", latency_us=count / mhz,
                   latency_us_basis=f"core cycles at {mhz:g} MHz")
    else:
        count = None
        out.update(latency=row["counter"], latency_unit=row["counter_unit"],
                   latency_us=row["counter"] / 1e3 if row["counter_unit"] == "ns" else None,
                   latency_us_basis="host wall clock of the natively built core, not the target")
    if count is not None:
        out["energy_uj"] = target.energy_uj(count, fig.kind)
        out["energy_model"] = (f"V x I x t: {e['voltage']:g} V x {e['active_ua_per_mhz']:g} uA/MHz x {mhz:g} MHz "
                               f"x latency_us ({e['source']})")
    else:
        out["energy_uj"] = None
        out["energy_model"] = "none: a host wall clock says nothing about the target's energy"
    stack_fits = row["stack_bytes"] <= target.stack_bytes
    out.update(flash_bytes=fit.get("flash_total", fit["blob_bytes"]), flash_limit=fit["flash_limit"],
               ram_static_bytes=fit.get("ram_static"), ram_inference_bytes=row["arena_bytes"] + row["stack_bytes"],
               ram_limit=fit["ram_limit"], fits=fit["fits"] and stack_fits)
    reasons = [fit["does_not_fit"]] if "does_not_fit" in fit else []
    if not stack_fits:
        reasons.append(f"stack high-water mark {row['stack_bytes']:,} B > stack reservation {target.stack_bytes:,} B")
    if reasons:
        out["does_not_fit"] = "; ".join(reasons)
    return out


def memory(board: Board, info, rows: list[dict], blob: bytes) -> dict:
    """Flash and RAM of this model (its blob) on this board, against the target's limits.

    RAM of inference = arena bytes used + stack high-water mark (both measured by the firmware on each
    run; the arena holds the whole workspace, kernel scratch included); its theoretical minimum = the
    carries y, z (2 L D) + the input (L) + the largest working buffer (``working_buffer_bytes``, from
    the model's dimensions alone). Static RAM is what the firmware image reserves (data, bss with its
    buffers, stack), from the ELF (``footprint``)."""
    L, D = info.seq_len, info.hidden
    peak = max(r["arena_bytes"] + r["stack_bytes"] for r in rows)
    minimum = 2 * L * D + L + working_buffer_bytes(B.read_header(blob))
    return {"ram_inference_peak": peak, "ram_theoretical_min": minimum, "ram_peak_over_min": peak / minimum,
            **footprint(board.target, firmware_image(board), len(blob))}


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


def _manifest(firmware: Path) -> dict:
    manifest = Path(firmware).parent / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.exists() else {}


def provenance(board: Board, blob: bytes) -> dict:
    out = {"board": board.id, "backend": board.backend, "target": board.target.name,
           "blob_sha256": hashlib.sha256(blob).hexdigest()}
    fw = getattr(board, "firmware", None)
    if fw is not None:
        out["firmware_sha256"] = hashlib.sha256(Path(fw).read_bytes()).hexdigest()
        m = _manifest(fw)
        if m:
            out["firmware_build_id"] = m.get("build_id")
            out["firmware_sections"] = m.get("sections")
    return out
