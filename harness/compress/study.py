"""Host-side study: every model × recipe × depth on the same held-out puzzles, with accuracy, size,
MACs and carry-trajectory fidelity against the fp32 model at the same depth."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..golden.fidelity import cosine_per_cycle, spearman, summarize
from ..depth import Depth
from ..models.evaluate import accuracy_report
from ..models.trm import TRM
from ..tasks import Puzzle, Task, stack
from .compressed import Compressed
from .recipes import BUILTIN, apply, get_recipe


def evaluate_compressed(comp: Compressed, reference: TRM, task: Task, puzzles: list[Puzzle], depth: Depth,
                        batch: int = 128, progress: Callable[[int], None] | None = None,
                        reference_runs: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Accuracy of ``comp`` at ``depth`` and the fidelity of its carries to the fp32 ``reference``.
    ``reference_runs`` (from :func:`reference_runs`, same puzzles, depth and batch) saves rerunning fp32."""
    inputs, labels = stack(puzzles)
    refs = reference_runs if reference_runs is not None else _reference_runs(reference, inputs, depth, batch)
    per_step, halt_step, cos = [], [], []
    for k, i in enumerate(range(0, len(inputs), batch)):
        x = inputs[i:i + batch]
        out = comp.run(x, depth, batch)
        per_step.append(out["per_step"])
        halt_step.append(out["halt_step"])
        cos.append(cosine_per_cycle(refs[k], out))
        if progress:
            progress(len(x))
    report = accuracy_report(task, inputs, labels, np.concatenate(per_step, axis=1),
                             np.concatenate(halt_step), depth)
    cos = np.concatenate(cos)
    return {**report, **summarize(cos), "cosine": cos}


def _reference_runs(reference: TRM, inputs: np.ndarray, depth: Depth, batch: int) -> list[dict[str, np.ndarray]]:
    fp32 = Compressed(BUILTIN["fp32"], reference, torch_model=reference)
    return [fp32.run(inputs[i:i + batch], depth, batch) for i in range(0, len(inputs), batch)]


def reference_runs(reference: TRM, puzzles: list[Puzzle], depth: Depth, batch: int = 128) -> list[dict[str, np.ndarray]]:
    """The fp32 model's outputs and carries on ``puzzles`` at ``depth``, batch by batch."""
    return _reference_runs(reference, stack(puzzles)[0], depth, batch)


@dataclass
class StudyPlan:
    models: list[str]
    recipes: list[str]
    depths: list[str | None]          # 'T,n,steps[,halt]'; None = the model's default depth
    puzzles: int = 500
    seed: int = 2000
    depth_recipes: list[str] | None = None  # recipes the depths after the first apply to; None = all

    def depths_for(self, recipe: str, depths: list[Depth]) -> list[Depth]:
        if self.depth_recipes is None or recipe in self.depth_recipes:
            return depths
        return depths[:1]


ROWS = "rows.jsonl"


def row_key(model: str, recipe: str, depth: str, puzzles: int, seed: int, model_sha256: str | None) -> tuple:
    """What makes a row reusable on resume: the model's name and its digest (a checkpoint replaced under
    the same name is studied again), the recipe, the depth and the puzzle set."""
    return (model, model_sha256, recipe, depth, puzzles, seed)


def read_rows(out: Path | None) -> list[dict[str, Any]]:
    """Rows a previous (possibly interrupted) run of the study left in ``out/rows.jsonl``. A torn last
    line (the process died while writing it) is ignored: that row is simply computed again."""
    if out is None or not (out / ROWS).exists():
        return []
    _drop_torn_tail(out / ROWS)
    rows = []
    for line in (out / ROWS).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by a crash, so the next append starts a clean line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _append_row(out: Path, r: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ROWS, "a") as f:
        f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def row(model_name: str, task: Task, comp: Compressed, res: dict[str, Any], depth: Depth,
        puzzle_hash: str, seed: int) -> dict[str, Any]:
    cfg = comp.base.cfg
    return {
        "model": model_name, "task": task.name, "arch": cfg.arch, "mixer": cfg.mixer, "recipe": comp.recipe.name,
        "recipe_kind": comp.recipe.kind, "evaluated_by": "golden" if comp.int_model is not None else "torch",
        "depth": depth.label(), "T": depth.T, "n": depth.n, "steps": depth.steps, "halting": depth.halting,
        "params": comp.params(), "nonzero_params": comp.nonzero_params(), "weight_bytes": comp.weight_bytes(),
        "macs": comp.macs(depth), "puzzles": res["puzzles"], "puzzle_set_hash": puzzle_hash, "seed": seed,
        "cell_accuracy": res["cell_accuracy"], "exact_accuracy": res["exact_accuracy"],
        "mean_steps": res["mean_steps"],
        "exact_per_step": json.dumps([round(r["exact_accuracy"], 6) for r in res["per_step"]]),
        "fidelity_final": res["fidelity_final"], "fidelity_auc": res["fidelity_auc"],
        "fidelity_per_cycle": json.dumps([round(v, 6) for v in res["fidelity_per_cycle"]]),
    }


def run_study(plan: StudyPlan, progress=None, log: Callable[[str], None] = print,
              out: Path | None = None) -> pd.DataFrame:
    """Run ``plan``. With ``out``, every row is appended to ``out/rows.jsonl`` (fsync) as it lands, and
    rows already there are kept rather than recomputed: an interrupted study resumes where it stopped
    (a training recipe's own training also resumes from its checkpoint cache)."""
    from ..models.checkpoint import load_checkpoint, model_digest
    from ..models.evaluate import default_depth
    from ..tasks.puzzle_source import puzzle_set_hash

    done = {row_key(r["model"], r["recipe"], r["depth"], r["puzzles"], r["seed"], r.get("model_sha256")): r
            for r in read_rows(out)}
    if done:
        log(f"resuming: {len(done)} rows already in {out / ROWS}")
    rows = []
    for name in plan.models:
        model, task, _ = load_checkpoint(name)
        digest = model_digest(model)
        stale = sum(1 for k in done if k[0] == name and k[1] != digest)
        if stale:
            log(f"{name}: {stale} rows in {out / ROWS} were made with another checkpoint of that name "
                f"(or before rows recorded it): they are computed again")
        puzzles = task.generate(plan.puzzles, seed=plan.seed, split="test")
        phash = puzzle_set_hash(puzzles)
        depths = [Depth.parse(d, default_depth(model)) for d in plan.depths]
        refs: dict[str, list] = {}
        for recipe_name in plan.recipes:
            recipe = get_recipe(recipe_name)
            todo = []
            for depth in plan.depths_for(recipe_name, depths):
                key = row_key(name, recipe_name, depth.label(), len(puzzles), plan.seed, digest)
                if key in done:
                    rows.append(done[key])
                else:
                    todo.append(depth)
            if not todo:
                continue
            try:
                comp = apply(recipe, model, task, progress=progress)
            except ValueError as e:       # e.g. linattn on an mlp model
                log(f"skip {name} × {recipe_name}: {e}")
                continue
            for depth in todo:
                if depth.label() not in refs:
                    refs[depth.label()] = reference_runs(model, puzzles, depth)
                bar = progress.add_task(f"{name} {recipe_name} {depth.label()}", total=len(puzzles)) if progress else None
                res = evaluate_compressed(comp, model, task, puzzles, depth, reference_runs=refs[depth.label()],
                                          progress=(lambda k, b=bar: progress.advance(b, k)) if progress else None)
                if progress:
                    progress.remove_task(bar)
                r = {**row(name, task, comp, res, depth, phash, plan.seed), "model_sha256": digest}
                rows.append(r)
                if out is not None:
                    _append_row(out, r)
                log(f"{name:18s} {recipe_name:11s} {depth.label():10s} cell {res['cell_accuracy']:.3f} "
                    f"exact {res['exact_accuracy']:.3f} fidelity {res['fidelity_final']:.4f}")
    return pd.DataFrame(rows)


# --- the summary: the paper's claims, stated as the numbers fall ------------------------------------
# The summary's two rules, one home: a figure "held" when it fell by at most HELD (2 points), and
# puzzle-exact accuracy "collapsed" when it fell by more than COLLAPSE (10 points). At 300 puzzles a
# Wilson interval is 4-11 points wide, so HELD is inside the noise: every figure carries its interval.
HELD = 0.02
COLLAPSE = 0.10
ONE_CYCLE = Depth(1, 1, 1).label()


def _pick(df: pd.DataFrame, model: str, recipe: str, depth: str) -> pd.Series | None:
    sel = df[(df.model == model) & (df.recipe == recipe) & (df.depth == depth)]
    return sel.iloc[0] if len(sel) else None


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _with_interval(r: pd.Series) -> str:
    """A row's puzzle-exact accuracy with its Wilson interval (the stats module's)."""
    from ..stats import wilson
    lo, hi = wilson(int(round(r.exact_accuracy * r.puzzles)), int(r.puzzles))
    return f"{_pct(r.exact_accuracy)} [{_pct(lo)}, {_pct(hi)}]"


def _verdict(fp: pd.Series, nv: pd.Series) -> str:
    """The first claim's rule: did naive INT4 keep cell accuracy while puzzle-exact collapsed?"""
    d_cell, d_exact = nv.cell_accuracy - fp.cell_accuracy, nv.exact_accuracy - fp.exact_accuracy
    return ("yes: cell accuracy held within 2 points while puzzle-exact fell by more than 10"
            if d_cell >= -HELD and d_exact < -COLLAPSE else
            "both fell" if d_cell < -HELD and d_exact < -COLLAPSE else "no collapse")


def _shortfall(reference: pd.Series, r: pd.Series) -> float | None:
    """The points by which ``r``'s puzzle-exact accuracy is below ``reference``'s; None when within HELD."""
    gap = reference.exact_accuracy - r.exact_accuracy
    return None if gap <= HELD else 100 * gap


def _table_cell(shortfall: float | None) -> str:
    return "yes" if shortfall is None else f"no ({shortfall:.1f} points below)"


def _architectures(df: pd.DataFrame, default: dict) -> list[str]:
    """TRM and HRM models of the same task and mixer side by side: their puzzle-exact accuracy at fp32,
    int8, int4-naive and int4-pc, each with its Wilson interval, and the collapse verdict of each. Rows
    made before the ``arch`` column existed are TRMs (there was no other architecture)."""
    from ..stats import CONFIDENCE

    kinds = _kinds(df)
    # models side by side only where they saw the same puzzles (one task and size); rows from before
    # the puzzle hash column are grouped by task
    keys = ["task", "mixer"] + (["puzzle_set_hash"] if "puzzle_set_hash" in kinds else [])
    lines = []
    for (task, mixer, *_), group in kinds.groupby(keys):
        if set(group.arch) < {"trm", "hrm"}:
            continue
        lines.append(f"- {task}, {mixer} mixer, puzzle-exact with its {CONFIDENCE:.0%} Wilson interval "
                     f"(the same {int(df[df.model == group.index[0]].puzzles.iloc[0])} held-out puzzles for each):")
        for m, info in group.sort_values("arch", ascending=False).iterrows():
            d = default[m]
            cells = [f"{recipe} {_with_interval(r)}" for recipe in ("fp32", "int8", "int4-naive", "int4-pc")
                     if (r := _pick(df, m, recipe, d)) is not None]
            fp, nv = _pick(df, m, "fp32", d), _pick(df, m, "int4-naive", d)
            verdict = f"; naive INT4: {_verdict(fp, nv)} (cell {_pct(fp.cell_accuracy)} → {_pct(nv.cell_accuracy)})" \
                if fp is not None and nv is not None else ""
            lines.append(f"  - {info.arch.upper()} {m}: {', '.join(cells)}{verdict}.")
    return lines


def _kinds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its task, mixer, architecture (rows from before the column are TRMs) and the
    hash of the puzzles it was measured on (models of one task and size share it)."""
    arch = df["arch"].fillna("trm") if "arch" in df else pd.Series("trm", index=df.index)
    cols = ["task", "mixer", "arch"] + (["puzzle_set_hash"] if "puzzle_set_hash" in df else [])
    return df.assign(arch=arch).groupby("model")[cols].first()


def _mixers(df: pd.DataFrame, default: dict) -> tuple[list[str], dict[str, str]]:
    """The token-mixer claim ("naive INT4 collapses the mlp mixer and spares attention"), per set of
    puzzles that a TRM of each mixer was measured on: each mixer's fp32 → int4-naive puzzle-exact with
    intervals, whether it collapsed, and whether the claim holds there. Also each paired model's
    verdict (the verdict of its puzzle set), for the closing table."""
    kinds = _kinds(df)
    if "puzzle_set_hash" not in kinds:
        return [], {}
    lines, verdicts = [], {}
    for _, group in kinds[kinds.arch == "trm"].groupby("puzzle_set_hash"):
        by_mixer = {}
        for m, info in group.iterrows():
            fp, nv = _pick(df, m, "fp32", default[m]), _pick(df, m, "int4-naive", default[m])
            if fp is not None and nv is not None:
                by_mixer[info.mixer] = (m, fp, nv)
        if not {"mlp", "attention"} <= set(by_mixer):
            continue
        parts, collapsed = [], {}
        for mixer in ("mlp", "attention"):
            m, fp, nv = by_mixer[mixer]
            drop = fp.exact_accuracy - nv.exact_accuracy
            collapsed[mixer] = drop > COLLAPSE
            parts.append(f"{mixer} ({m}) {_with_interval(fp)} → {_with_interval(nv)} "
                         f"({'collapsed' if collapsed[mixer] else 'held'}, −{100 * drop:.1f} points)")
        verdict = ("holds" if collapsed["mlp"] and not collapsed["attention"] else
                   "fails: both collapsed" if all(collapsed.values()) else
                   "fails: attention collapsed, mlp held" if collapsed["attention"] else "fails: neither collapsed")
        names = " / ".join(by_mixer[x][0] for x in ("mlp", "attention"))
        lines.append(f"- {names}: {'; '.join(parts)}: the claim {verdict}.")
        for mixer in ("mlp", "attention"):
            verdicts[by_mixer[mixer][0]] = verdict
    return lines, verdicts


def claims(df: pd.DataFrame) -> str:
    """Markdown summary in the shape of the paper's claims. Each statement is computed from ``df``; the
    last section tabulates, per model, where each claim holds and where it fails."""
    from ..stats import CONFIDENCE

    lines = ["# Study summary", "",
             f"Puzzle-exact figures carry their {CONFIDENCE:.0%} Wilson interval. The rules: a figure held when "
             f"it fell by at most {100 * HELD:.0f} points; puzzle-exact collapsed when it fell by more than "
             f"{100 * COLLAPSE:.0f}. With a few hundred puzzles the intervals are wider than {100 * HELD:.0f} "
             "points: read a verdict near its rule with its intervals.", ""]
    default = df.groupby("model").depth.first().to_dict()  # the first depth listed is the default
    table: dict[str, dict[str, str]] = {m: {} for m in default}

    def none_if_empty(heading_at: int, why: str) -> None:
        if len(lines) == heading_at:
            lines.append(f"- not answered by this study: {why}.")

    lines += ["## Does naive INT4 keep cell accuracy while puzzle-exact accuracy collapses?", ""]
    for m, d in default.items():
        fp, nv = _pick(df, m, "fp32", d), _pick(df, m, "int4-naive", d)
        if fp is None or nv is None:
            continue
        verdict = _verdict(fp, nv)
        table[m]["naive"] = verdict.split(":")[0]
        lines.append(f"- {m} ({fp.mixer}): cell {_pct(fp.cell_accuracy)} → {_pct(nv.cell_accuracy)}, "
                     f"puzzle-exact {_with_interval(fp)} → {_with_interval(nv)}: {verdict}.")

    lines += ["", "## Does naive INT4 collapse the mlp mixer and spare attention (TRM, per task)?", ""]
    at = len(lines)
    mixer_lines, mixer_verdicts = _mixers(df, default)
    lines += mixer_lines
    for m, v in mixer_verdicts.items():
        table[m]["mixer"] = v
    none_if_empty(at, "it has no TRM of each mixer on the same puzzles")

    for label, recipe in (("per-channel calibrated INT4 (int4-pc) recover it without retraining", "int4-pc"),
                          ("QAT (qat-int4) recover it", "qat-int4")):
        lines += ["", f"## Does {label}?", ""]
        at = len(lines)
        for m, d in default.items():
            fp, nv, r = _pick(df, m, "fp32", d), _pick(df, m, "int4-naive", d), _pick(df, m, recipe, d)
            if fp is None or r is None:
                continue
            short = _shortfall(fp, r)
            table[m][recipe] = _table_cell(short)
            versus = f" (int4-naive {_pct(nv.exact_accuracy)})" if nv is not None else ""
            verdict = "recovered (within 2 points of fp32)" if short is None else f"{short:.1f} points below fp32"
            lines.append(f"- {m}: puzzle-exact {_with_interval(r)} vs fp32 {_with_interval(fp)}{versus}: {verdict}.")
        none_if_empty(at, f"it has no {recipe} rows beside fp32")

    lines += ["", f"## Does INT8 at one cycle ({ONE_CYCLE}) match the full-depth fp32 model, at how many fewer MACs?", "",
              "Each model runs at one cycle as trained, for its default depth: the study does not retrain for depth.", ""]
    at = len(lines)
    for m, d in default.items():
        fp, r = _pick(df, m, "fp32", d), _pick(df, m, "int8", ONE_CYCLE)
        if fp is None or r is None:
            continue
        short = _shortfall(fp, r)
        table[m]["one-cycle"] = _table_cell(short)
        lines.append(f"- {m}: int8 at {ONE_CYCLE} {_with_interval(r)} with {r.macs:,} MACs vs fp32 at {d} "
                     f"{_with_interval(fp)} with {fp.macs:,} MACs ({fp.macs / r.macs:.0f}× fewer): "
                     f"{'matches (within 2 points)' if short is None else f'{short:.1f} points below full depth'}.")
    none_if_empty(at, f"it has no int8 rows at {ONE_CYCLE} (add 1,1,1 to --depths, with int8 among --depth-recipes)")

    lines += ["", "## Does the collapse strike one architecture and not the other (TRM vs HRM)?", ""]
    at = len(lines)
    lines += _architectures(df, default)
    none_if_empty(at, "it has no HRM model beside a TRM of the same task and mixer")
    lines += ["", "## Which depth reaches full-depth accuracy at the fewest MACs (fp32)?", ""]
    at = len(lines)
    for m in default:
        sub = df[(df.model == m) & (df.recipe == "fp32")]
        if len(sub) < 2:
            continue
        full = sub.loc[sub.macs.idxmax()]
        ok = sub[sub.exact_accuracy >= full.exact_accuracy - 0.01].sort_values("macs")
        best = ok.iloc[0]
        lines.append(f"- {m}: {best.depth} reaches {_pct(best.exact_accuracy)} with {best.macs:,} MACs "
                     f"(deepest studied, {full.depth}: {_pct(full.exact_accuracy)} with {full.macs:,} MACs).")
    none_if_empty(at, "it ran one depth per model (give several with --depths)")
    lines += ["", "## Does carry-trajectory fidelity rank the damage?", ""]
    at_default = df[df.apply(lambda r: r.depth == default[r.model], axis=1)]
    rho = spearman(at_default.fidelity_final, at_default.exact_accuracy)
    rho_auc = spearman(at_default.fidelity_auc, at_default.exact_accuracy)
    lines.append(f"- Spearman rank correlation over {len(at_default)} model × recipe pairs at the default depth: "
                 f"final-cycle fidelity vs puzzle-exact accuracy ρ = {rho:.3f}; fidelity AUC vs puzzle-exact ρ = {rho_auc:.3f}.")
    for mixer, sub in at_default.groupby("mixer"):
        lines.append(f"- {mixer} models only ({len(sub)} pairs): ρ = {spearman(sub.fidelity_final, sub.exact_accuracy):.3f}.")

    kinds = _kinds(df)
    lines += ["", "## Where the claims hold and where they fail", "",
              "Per model, from the sections above (— where this study has no rows for the claim).", "",
              "| model | task | mixer | arch | naive INT4: cell held, puzzle-exact collapsed | mlp collapses, attention does not "
              "| int4-pc within 2 points of fp32 | qat-int4 within 2 points of fp32 | int8 at one cycle within 2 points of full depth |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in default:
        t, info = table[m], kinds.loc[m]
        lines.append(f"| {m} | {info.task} | {info.mixer} | {info.arch} | {t.get('naive', '—')} | {t.get('mixer', '—')} "
                     f"| {t.get('int4-pc', '—')} | {t.get('qat-int4', '—')} | {t.get('one-cycle', '—')} |")

    lines += ["", "## All rows at the default depth", "",
              "| model | recipe | by | weight bytes | MACs | cell | puzzle-exact | fidelity final | fidelity AUC |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in at_default.iterrows():
        lines.append(f"| {r.model} | {r.recipe} | {r.evaluated_by} | {r.weight_bytes:,} | {r.macs:,} | "
                     f"{_pct(r.cell_accuracy)} | {_with_interval(r)} | {r.fidelity_final:.4f} | {r.fidelity_auc:.4f} |")
    return "\n".join(lines) + "\n"


def write_study(df: pd.DataFrame, out: Path, command: str, plan: StudyPlan) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "study.csv", index=False)
    df.to_parquet(out / "study.parquet", index=False)
    provenance = {"command": command, "plan": plan.__dict__, "python": platform.python_version(),
                  "torch": torch.__version__, "numpy": np.__version__, "machine": platform.machine()}
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    (out / "summary.md").write_text(claims(df) + f"\nMade by:\n\n```\n{command}\n```\n")
