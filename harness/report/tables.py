"""The tidy tables of a farm run, joined from its journal.

  puzzles  one row per (model, recipe, depth, target, puzzle): what the board said, with its config key
  host     one row per (model, recipe, depth): golden / torch accuracy and carry fidelity on the host
  configs  one row per (model, recipe, depth, target): device accuracy, latency, energy proxy, memory
           against the target's limits, joined with the host figures and the fp32 reference

Only what a rerun reproduces goes in a table (no wall-clock times, no run id), so two runs of one plan
on emulators give identical tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..farm.journal import NAME, Journal
from ..targets import load_target

KEY = ["model", "recipe", "depth", "target"]
# columns that change from run to run, kept in the journal but out of the tables
VOLATILE = ("wall_s", "device_wall_s", "job")


@dataclass
class RunData:
    out: Path
    run: str
    plan: dict[str, Any]
    provenance: dict[str, Any]
    results: list[dict[str, Any]]
    host: list[dict[str, Any]]
    events: list[dict[str, Any]]
    finished: str | None
    command: str | None = None


def load_run(out: Path) -> RunData:
    out = Path(out)
    if not (out / NAME).exists():
        raise FileNotFoundError(f"{out} has no {NAME}: point `harness report` at a `harness farm run --out` folder")
    with Journal.in_dir(out) as j:
        run = j.meta("run")
        if run is None:
            raise ValueError(f"{out / NAME} holds no run")
        return RunData(out, run, j.meta("plan", {}), j.meta("provenance", {}), j.results(run), j.host_rows(run),
                       j.events(run), j.meta("finished"), j.meta("command"))


def puzzle_table(rd: RunData) -> pd.DataFrame:
    rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rd.results]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = ["model", "recipe", "depth", "target", "board", "puzzle_id", "status"]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    return df.sort_values(["model", "recipe", "depth", "target", "puzzle_id"]).reset_index(drop=True)


def host_table(rd: RunData) -> pd.DataFrame:
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in VOLATILE} for r in rd.host])
    if df.empty:
        return df
    df["fidelity_per_cycle"] = df["fidelity_per_cycle"].map(lambda v: " ".join(f"{x:.6f}" for x in v))
    return df.sort_values(["model", "recipe", "depth"]).reset_index(drop=True)


def _counts(target, kind: str, mean: float) -> dict[str, Any]:
    """Latency and energy from a mean count, with what the numbers are."""
    e = target.energy
    energy_model = (f"E = V x I x t with I = {e['active_ua_per_mhz']} uA/MHz x {target.clock_hz / 1e6:g} MHz, "
                    f"V = {e['voltage']} V ({e['source']})")
    if kind == "instructions":
        return {"latency_ms": mean / target.clock_hz * 1e3,
                "latency_basis": f"estimate: emulated instructions at one per cycle at {target.clock_hz / 1e6:g} MHz",
                "energy_uj": target.energy_uj(mean, "instructions"), "energy_model": energy_model + "; instructions as cycles"}
    if kind == "cycles":
        return {"latency_ms": mean / target.clock_hz * 1e3, "latency_basis": "measured: DWT cycles at the target clock",
                "energy_uj": target.energy_uj(mean, "cycles"), "energy_model": energy_model}
    return {"latency_ms": mean / 1e6, "latency_basis": "host wall clock (not a board figure)",
            "energy_uj": np.nan, "energy_model": "none: host backend"}


def config_table(rd: RunData, puzzles: pd.DataFrame, host: pd.DataFrame) -> pd.DataFrame:
    prov = rd.provenance
    rows = []
    if puzzles.empty:
        return pd.DataFrame(columns=KEY)
    for key, g in puzzles.groupby(KEY, sort=True):
        model, recipe, depth, target = key
        t = load_target(target)
        ok = g[g.status == "ok"]
        r: dict[str, Any] = dict(zip(KEY, key))
        r["core"] = t.core
        r["puzzles"] = len(g)
        r["board_failures"] = int((g.status == "board_failure").sum())
        r["does_not_fit"] = bool((g.status == "does_not_fit").any())
        r["backend"] = ",".join(sorted(set(ok.backend.dropna()))) if "backend" in ok and len(ok) else ""
        if len(ok):
            r["golden_match"] = int(ok.golden_match.sum()) if "golden_match" in ok else None
            r["exact_accuracy"] = float(ok.correct.mean())
            r["cell_accuracy"] = float(ok.cell_accuracy.mean())
            r["mean_steps"] = float(ok.steps.mean())
            if ok.instructions.notna().all():
                kind, mean = "instructions", float(ok.instructions.mean())
                r["instructions_mean"], r["instructions_max"] = mean, int(ok.instructions.max())
            elif (ok.counter_unit == "cycles").all():
                kind, mean = "cycles", float(ok.counter.mean())
                r["cycles_mean"] = mean
            else:
                kind, mean = "host-ns", float(ok.counter.mean())
            r["counts_kind"] = kind
            r.update(_counts(t, kind, mean))
            r["stack_bytes_max"] = int(ok.stack_bytes.max())
            r["arena_bytes"] = int(ok.arena_bytes.max())
            r["ram_inference_peak"] = int((ok.arena_bytes + ok.stack_bytes).max())
            r["flash_bytes_read_mean"] = float(ok.flash_bytes_read.mean())
        blob = prov.get("blobs", {}).get(f"{model}|{recipe}", {})
        fw = prov.get("firmware", {}).get(target, {})
        sections = fw.get("sections") or {}
        r["blob_sha256"], r["blob_bytes"] = blob.get("sha256"), blob.get("bytes")
        r["ram_theoretical_min"] = blob.get("ram_theoretical_min")
        if r.get("ram_inference_peak") and r["ram_theoretical_min"]:
            r["ram_peak_over_min"] = r["ram_inference_peak"] / r["ram_theoretical_min"]
        r["firmware_sha256"] = fw.get("elf_sha256")
        r["firmware_flash"], r["ram_static"] = sections.get("flash"), sections.get("ram")
        r["flash_total"] = (r["firmware_flash"] or 0) + (r["blob_bytes"] or 0)
        r["flash_limit"], r["ram_limit"], r["blob_region"] = t.flash.size, t.ram.size, t.blob.size
        r["fits_flash"] = bool(r["blob_bytes"] is not None and r["blob_bytes"] <= t.blob.size
                               and (r["firmware_flash"] or 0) <= t.firmware_flash and not r["does_not_fit"])
        r["fits_ram"] = bool(r["ram_static"] is not None and r["ram_static"] <= t.ram.size)
        rows.append(r)
    df = pd.DataFrame(rows)
    if not host.empty:
        h = host.rename(columns={"exact_accuracy": "host_exact_accuracy", "cell_accuracy": "host_cell_accuracy",
                                 "mean_steps": "host_mean_steps", "puzzles": "host_puzzles"})
        cols = ["model", "recipe", "depth", "mixer", "evaluated_by", "host_exact_accuracy", "host_cell_accuracy",
                "fidelity_final", "fidelity_auc", "fidelity_per_cycle", "macs", "weight_bytes", "params"]
        df = df.merge(h[cols], on=["model", "recipe", "depth"], how="left")
        ref = host[host.recipe == "fp32"][["model", "depth", "exact_accuracy", "cell_accuracy"]].rename(
            columns={"exact_accuracy": "fp32_exact_accuracy", "cell_accuracy": "fp32_cell_accuracy"})
        df = df.merge(ref, on=["model", "depth"], how="left")
    return df.sort_values(KEY).reset_index(drop=True)


def tables(rd: RunData) -> dict[str, pd.DataFrame]:
    p, h = puzzle_table(rd), host_table(rd)
    return {"puzzles": p, "host": h, "configs": config_table(rd, p, h)}
