"""The tidy tables of a farm run, joined from its journal.

  puzzles  one row per (model, recipe, depth, target, puzzle): what the board said, with its config key
  host     one row per (model, recipe, depth): golden / torch accuracy and carry fidelity on the host
  host_puzzles  one row per (model, recipe, depth, puzzle): the host's outcome on each puzzle (the
           paired tests against fp32 need them)
  configs  one row per (model, recipe, depth, target): device accuracy, latency, energy proxy, memory
           against the target's limits, joined with the host figures and the fp32 reference
  profiles one row per (model, recipe, depth, target, operation): the per-operation profile of the
           job's first puzzles (the journal's profiles, ``farm.journal.PROFILE_COLUMNS``)
  traces   one row per (model, recipe, depth, target, puzzle, step, cycle) traced over the probe: the
           device's fidelity (measured on the device, over the probe) beside golden's (host) at the same
           cycle, the device carry's sha256 and whether it equals golden's (the journal's traces, its
           carry bytes left there)
  divergences  one row per traced puzzle whose device carry parts from golden's: where (the journal's)
  device_fidelity  one row per configuration with traces: its traced puzzles and cycles, the cycles
           equal to golden's, the final fidelity measured on the device beside golden's on the host

Every accuracy has its interval beside it (``<name>_lo`` and ``<name>_hi``, at the plan's
[statistics] confidence; ``harness.stats`` says which interval).

Only what a rerun reproduces goes in a table (no wall-clock times, no run id), so two runs of one plan
on emulators give identical tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import fsum
from pathlib import Path
from typing import Any

import pandas as pd

from .. import figures as F
from .. import stats as S
from ..farm.journal import DIVERGENCE_COLUMNS, NAME, PROFILE_COLUMNS, TRACE_COLUMNS, Journal
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
    profiles: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    divergences: list[dict[str, Any]] = field(default_factory=list)


def cell_text(v) -> str:
    """How a report table writes a value (Markdown and HTML alike)."""
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:,.4g}" if abs(v) >= 1 else f"{v:.4f}"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def load_run(out: Path) -> RunData:
    out = Path(out)
    if not (out / NAME).exists():
        raise FileNotFoundError(f"{out} has no {NAME}: point `harness report` at a `harness farm run --out` folder")
    with Journal.in_dir(out) as j:
        run = j.meta("run")
        if run is None:
            raise ValueError(f"{out / NAME} holds no run")
        return RunData(out, run, j.meta("plan", {}), j.meta("provenance", {}), j.results(run), j.host_rows(run),
                       j.events(run), j.meta("finished"), j.meta("command"), j.profiles(run), j.traces(run),
                       j.divergences(run))


def puzzle_table(rd: RunData) -> pd.DataFrame:
    rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rd.results]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = ["model", "recipe", "depth", "target", "board", "puzzle_id", "status"]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    return df.sort_values(["model", "recipe", "depth", "target", "puzzle_id"]).reset_index(drop=True)


PER_PUZZLE = ("puzzle_ids", "exact_per_puzzle", "cells_per_puzzle")   # host rows' lists: host_puzzles


def confidence(plan: dict[str, Any]) -> float:
    return float((plan.get("statistics") or {}).get("confidence", S.CONFIDENCE))


def host_table(rd: RunData) -> pd.DataFrame:
    conf = confidence(rd.plan)
    rows = []
    for r in rd.host:
        row = {k: v for k, v in r.items() if k not in VOLATILE and k not in PER_PUZZLE}
        n = int(r["puzzles"])
        correct = sum(r["exact_per_puzzle"]) if "exact_per_puzzle" in r else round(r["exact_accuracy"] * n)
        if "cells_per_puzzle" in r:    # the device's definition (figures.outcome): the mean over puzzles
            row["cell_accuracy"] = fsum(r["cells_per_puzzle"]) / n
        row.update(S.intervals(correct, n, r.get("cells_per_puzzle"), conf))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["fidelity_per_cycle"] = df["fidelity_per_cycle"].map(lambda v: " ".join(f"{x:.6f}" for x in v))
    return cost_only_rows(df, rd.provenance).sort_values(["model", "recipe", "depth"]).reset_index(drop=True)


def host_puzzle_table(rd: RunData) -> pd.DataFrame:
    rows = [{"model": r["model"], "recipe": r["recipe"], "depth": r["depth"], "puzzle_id": pid, "correct": bool(e),
             "cell_accuracy": c}
            for r in rd.host if "puzzle_ids" in r
            for pid, e, c in zip(r["puzzle_ids"], r["exact_per_puzzle"], r["cells_per_puzzle"])]
    cols = ["model", "recipe", "depth", "puzzle_id", "correct", "cell_accuracy"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(cols[:4]).reset_index(drop=True)


def config_table(rd: RunData, puzzles: pd.DataFrame, host: pd.DataFrame) -> pd.DataFrame:
    prov, conf = rd.provenance, confidence(rd.plan)
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
        r["backend"] = ",".join(sorted(set(ok.backend.dropna()))) if "backend" in ok and len(ok) else ""
        blob = prov.get("blobs", {}).get(f"{model}|{recipe}", {})
        fw = prov.get("firmware", {}).get(target, {})
        r["blob_sha256"], r["firmware_sha256"] = blob.get("sha256"), fw.get("elf_sha256")
        if len(ok):
            r["golden_match"] = int(ok.golden_match.sum()) if "golden_match" in ok else None
            r.update({k: v for k, v in F.outcome(ok.correct, ok.cell_accuracy, ok.steps, ok.arena_bytes,
                                                  ok.flash_bytes_read).items() if k != "puzzles"})
            r.update(S.intervals(int(ok.correct.sum()), len(ok), ok.cell_accuracy, conf))
            backend = ok.backend.iloc[0]
            kinds = {F.counts_kind(b, u) for b, u in zip(ok.backend, ok.counter_unit)}
            if len(kinds) != 1:
                raise ValueError(f"{model} {recipe} {depth} on {target}: counts of different kinds ({', '.join(sorted(kinds))}) "
                                 "in one configuration: boards of different backends ran it")
            kind = kinds.pop()
            counts = ok.instructions if kind == "instructions" else ok.counter
            r.update(F.config_figures(t, backend, kind, counts.astype(float), ok.stack_bytes.astype(int),
                                      (ok.arena_bytes + ok.stack_bytes).astype(int), blob.get("bytes"),
                                      fw.get("sections"), blob.get("ram_theoretical_min")))
        else:
            r.update(F.fit(t, blob.get("bytes"), fw.get("sections")))
        refused = g[g.status == "does_not_fit"]
        if len(refused):     # the farm judged it (figures.fit, or the board's own refusal): its record stands
            over = refused.over.iloc[0] if "over" in refused and isinstance(refused.over.iloc[0], str) else "flash"
            r.update({"fits_ram" if over == "ram" else "fits_flash": False, "fits": False,
                      "does_not_fit": str(refused.error.iloc[0])})
        rows.append(r)
    df = pd.DataFrame(rows)
    if not host.empty:
        h = host.rename(columns={"exact_accuracy": "host_exact_accuracy", "cell_accuracy": "host_cell_accuracy",
                                 "mean_steps": "host_mean_steps", "puzzles": "host_puzzles"})
        h = h.rename(columns={c: f"host_{c}" for c in h.columns if c.endswith(("_lo", "_hi"))})
        cols = ["model", "recipe", "depth", "mixer", "evaluated_by", "host_exact_accuracy", "host_cell_accuracy",
                "host_exact_accuracy_lo", "host_exact_accuracy_hi",
                "fidelity_final", "fidelity_auc", "fidelity_per_cycle", "macs", "weight_bytes", "params"]
        df = df.merge(h[[c for c in cols if c in h]], on=["model", "recipe", "depth"], how="left")
        ref_cols = ["exact_accuracy", "cell_accuracy", "exact_accuracy_lo", "exact_accuracy_hi"]
        ref = host[host.recipe == "fp32"][["model", "depth"] + [c for c in ref_cols if c in host]].rename(
            columns={c: f"fp32_{c}" for c in ref_cols})
        df = df.merge(ref, on=["model", "depth"], how="left")
    return cost_only_rows(df, prov).sort_values(KEY).reset_index(drop=True)


ACCURACY_PREFIXES = ("exact_accuracy", "cell_accuracy", "host_exact_accuracy", "host_cell_accuracy",
                     "fp32_exact_accuracy", "fp32_cell_accuracy")


def cost_only(prov: dict[str, Any], model: str) -> bool:
    return bool((prov.get("models") or {}).get(model, {}).get("cost_only"))


def cost_only_rows(df: pd.DataFrame, prov: dict[str, Any]) -> pd.DataFrame:
    """Mark the rows of random-weight models (shape presets) ``cost_only`` with their label, and blank
    every accuracy of theirs (with its interval): such a model's accuracy is chance, and no table or
    decision may show or use it. Their cost figures (counts, latency, energy, memory, fit) stay."""
    if df.empty or "model" not in df:
        return df
    df = df.copy()
    df["cost_only"] = [cost_only(prov, m) for m in df.model]
    df["label"] = [(prov.get("models") or {}).get(m, {}).get("label", "") if c else ""
                   for m, c in zip(df.model, df.cost_only)]
    acc = [c for c in df.columns if c.startswith(ACCURACY_PREFIXES) or c in ("fidelity_final", "fidelity_auc",
                                                                               "fidelity_per_cycle")]
    for c in acc:
        df[c] = df[c].astype(object)
        df.loc[df.cost_only, c] = None
    return df


def profile_table(rd: RunData) -> pd.DataFrame:
    """The journal's profile rows with their config key first, in the operations' order."""
    cols = KEY + [c for c in PROFILE_COLUMNS if c not in KEY]
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in VOLATILE} for r in rd.profiles], columns=cols)
    return df.sort_values(KEY + ["position"]).reset_index(drop=True)


def trace_table(rd: RunData) -> pd.DataFrame:
    """The journal's traced cycles, config key first, without the carry bytes (they stay in the journal)."""
    cols = KEY + [c for c in TRACE_COLUMNS if c not in KEY and c not in ("carry", "board")]
    df = pd.DataFrame([{k: r[k] for k in cols} for r in rd.traces], columns=cols).rename(columns={"puzzle": "puzzle_id"})
    df["equals_golden"] = df["equals_golden"].astype(bool)
    return df.sort_values(KEY + ["puzzle_id", "step", "cycle"]).reset_index(drop=True)


def divergence_table(rd: RunData) -> pd.DataFrame:
    cols = KEY + [c for c in DIVERGENCE_COLUMNS if c not in KEY and c != "board"]
    df = pd.DataFrame([{k: r[k] for k in cols} for r in rd.divergences], columns=cols).rename(columns={"puzzle": "puzzle_id"})
    return df.sort_values(KEY + ["puzzle_id"]).reset_index(drop=True)


def device_fidelity_table(traces: pd.DataFrame) -> pd.DataFrame:
    """Per configuration with traces: traced puzzles and cycles, cycles whose device carry equals golden's,
    and the final fidelity (each traced puzzle's last cycle run, averaged) measured on the device over the
    probe beside golden's on the host, on the same puzzles and cycles."""
    rows = []
    for key, g in traces.groupby(KEY, sort=True):
        last = g.groupby("puzzle_id").tail(1)
        rows.append({**dict(zip(KEY, key)), "traced_puzzles": len(last), "traced_cycles": len(g),
                     "cycles_equal_golden": int(g.equals_golden.sum()),
                     "device_fidelity_final": float(last.fidelity.mean()),
                     "golden_fidelity_final": float(last.golden_fidelity.mean())})
    return pd.DataFrame(rows, columns=KEY + ["traced_puzzles", "traced_cycles", "cycles_equal_golden",
                                             "device_fidelity_final", "golden_fidelity_final"])


def tables(rd: RunData) -> dict[str, pd.DataFrame]:
    p, h, tr = puzzle_table(rd), host_table(rd), trace_table(rd)
    return {"puzzles": p, "host": h, "host_puzzles": host_puzzle_table(rd), "configs": config_table(rd, p, h),
            "profiles": profile_table(rd), "traces": tr, "divergences": divergence_table(rd),
            "device_fidelity": device_fidelity_table(tr)}
