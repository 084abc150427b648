"""``harness report DIR``: tables, plots, decisions and provenance of a farm run, as report.md and a
self-contained report.html (plots embedded), plus the tidy tables as parquet and CSV.

The report is written once as a list of blocks (heading, text, bullets, target cards, table, image) and
rendered twice, to Markdown and to HTML, so the two never say different things.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import figures as F
from .. import stats as S
from ..depth import Depth
from ..run import RESOLUTIONS
from .baseline import Change, changes_frame, changes_markdown, compare
from .decide import FLAG_RULE, TargetDecision, accuracy_text, decide, decisions_json, energy_text, label
from .html import to_html
from .plots import all_plots, device_fidelity_per_cycle, profile_shares
from .tables import KEY, cell_text, confidence, load_run, tables

CONFIG_COLUMNS = ["model", "recipe", "depth", "target", "puzzles", "board_failures", "golden_match",
                  "exact_accuracy", "cell_accuracy", "host_exact_accuracy", "fp32_exact_accuracy", "cell_kept_exact_lost",
                  "fidelity_final",
                  "mean_steps", "latency_ms", "energy_uj", "blob_bytes", "flash_total", "ram_inference_peak",
                  "ram_peak_over_min", "fits_flash", "fits_ram"]
HOST_COLUMNS = ["model", "recipe", "depth", "evaluated_by", "puzzles", "exact_accuracy", "cell_accuracy",
                "fidelity_final", "fidelity_auc", "macs", "weight_bytes"]


def shown(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The ``columns`` a report table shows; an accuracy (a column with its ``_lo`` interval beside it)
    becomes 'point [lo, hi]' in percent."""
    out = {}
    for col in (c for c in columns if c in df):
        if f"{col}_lo" in df:
            out[col] = [accuracy_text(r, col) if not pd.isna(r[col]) else "" for r in df.to_dict("records")]
        else:
            out[col] = df[col]
    return pd.DataFrame(out)


# --- blocks ---------------------------------------------------------------------------------------
@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", (level, text)))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def ul(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, df: pd.DataFrame, name: str = "", filters: tuple[str, ...] = (), marked: list[bool] | None = None,
              legend: str = ""):
        """A table; the HTML makes it sortable, filterable on ``filters`` columns, with ``marked`` rows
        highlighted and ``legend`` saying what the highlight means."""
        self.blocks.append(("table", (df, name, filters, marked, legend)))

    def cards(self, cards: list[dict[str, Any]]):
        """One card per target (see ``target_card``)."""
        if cards:
            self.blocks.append(("cards", cards))

    def image(self, name: str, title: str, png: bytes):
        self.blocks.append(("img", (name, title, png)))

    def code(self, text: str):
        self.blocks.append(("code", text))


def to_markdown(doc: Doc) -> str:
    out = []
    for kind, v in doc.blocks:
        if kind == "h":
            out.append("#" * v[0] + " " + v[1])
        elif kind == "p":
            out.append(v)
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in v))
        elif kind == "code":
            out.append(f"```\n{v}\n```")
        elif kind == "table":
            df = v[0]
            cols = list(df.columns)
            rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            rows += ["| " + " | ".join(cell_text(x) for x in r) + " |" for r in df.itertuples(index=False)]
            out.append("\n".join(rows))
        elif kind == "cards":
            out.append("\n\n".join(_card_markdown(c) for c in v))
        elif kind == "img":
            out.append(f"![{v[1]}](plots/{v[0]}.png)")
    return "\n\n".join(out) + "\n"


# --- the report -----------------------------------------------------------------------------------
@dataclass
class Report:
    dest: Path
    decisions: list[TargetDecision]
    changes: list[Change] | None
    tables: dict[str, pd.DataFrame]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes or [] if c.regression]


def target_card(d: TargetDecision) -> dict[str, Any]:
    """What a target's card shows: the recommendation, its reasons, flash and RAM against the limits,
    the runners-up, the flagged configurations, the Pareto front and what was excluded."""
    rec = d.recommended
    def line(r):
        return {"config": label(r), "accuracy": accuracy_text(r), "latency_ms": float(r["latency_ms"]),
                "tied": any(r is t for t in d.tied) or r is d.best}
    card: dict[str, Any] = {"target": d.target, "recommended": label(rec) if rec else None, "reasons": d.reasons,
                            "confidence": d.confidence, "runners_up": [line(r) for r in d.runners_up],
                            "pareto": [{**line(r), "energy_uj": None if pd.isna(r["energy_uj"]) else float(r["energy_uj"]), "flash": int(r["flash_total"]),
                                        "ram_peak": int(r["ram_inference_peak"])} for r in d.pareto],
                            "flagged": [{"config": label(r), "text": _flag_text(d, r)} for r in d.flagged],
                            "not_fitting": [{"config": label(r), "why": r["why"]} for r in d.not_fitting],
                            "cost_only": [{"config": label(r), "fits": bool(r.get("fits")),
                                           "why": r.get("does_not_fit") or ""} for r in d.cost_only]}
    if rec:
        card.update(accuracy=accuracy_text(rec), cell=accuracy_text(rec, "cell_accuracy"), puzzles=int(rec["puzzles"]),
                    latency_ms=float(rec["latency_ms"]), latency_basis=rec["latency_basis"],
                    flash={"used": int(rec["flash_total"]), "limit": int(rec["flash_limit"])},
                    ram={"used": int(rec["ram_static"]), "limit": int(rec["ram_limit"])},
                    ram_peak=int(rec["ram_inference_peak"]), flagged_recommended=any(rec is r for r in d.flagged))
    return card


def _flag_text(d: TargetDecision, r: dict) -> str:
    c = d.against_fp32.get(label(r))
    test = (f"; {c.describe(label(r), 'fp32')}: {'beyond' if c.differs(d.confidence) else 'not beyond'} chance "
            f"at {d.confidence:.0%}" if c else "")
    return (f"cell {100 * r['cell_accuracy']:.1f}% vs fp32 {100 * r['fp32_cell_accuracy']:.1f}%, puzzle-exact "
            f"{accuracy_text(r)} vs fp32 {accuracy_text(r, 'fp32_exact_accuracy')}{test}")


def _card_markdown(c: dict[str, Any]) -> str:
    out = [f"### {c['target']}", ""]
    if c["recommended"]:
        out.append(f"**Recommended: {c['recommended']}**: puzzle-exact {c['accuracy']} on {c['puzzles']} puzzles "
                   f"({c['confidence']:.0%} interval), {c['latency_ms']:.2f} ms; flash {c['flash']['used']:,} of "
                   f"{c['flash']['limit']:,} B ({100 * c['flash']['used'] / c['flash']['limit']:.1f}%), static RAM "
                   f"{c['ram']['used']:,} of {c['ram']['limit']:,} B ({100 * c['ram']['used'] / c['ram']['limit']:.1f}%)"
                   + (" **(keeps cell accuracy, loses puzzle-exact)**" if c.get("flagged_recommended") else ""))
    else:
        out.append("**Recommended: none.**")
    out += [""] + [f"- {r}" for r in c["reasons"]]
    if c["runners_up"]:
        out += ["", "Runners-up: " + "; ".join(f"{r['config']} {r['accuracy']}, {r['latency_ms']:.2f} ms"
                                               + (" (tied)" if r["tied"] else "") for r in c["runners_up"])]
    if c["pareto"]:
        out += ["", "Pareto front of the configurations that fit (puzzle-exact accuracy, latency, energy, memory):", ""]
        out += [f"- {r['config']}: puzzle-exact {r['accuracy']}, {r['latency_ms']:.2f} ms, {energy_text(r['energy_uj'])}, "
                f"flash {r['flash']:,} B, inference RAM {r['ram_peak']:,} B" for r in c["pareto"]]
    if c["flagged"]:
        out += ["", f"{FLAG_RULE}:", ""]
        out += [f"- **{r['config']}**: {r['text']}" for r in c["flagged"]]
    if c["not_fitting"]:
        out += ["", "Excluded:", ""] + [f"- {r['config']}: {r['why']}" for r in c["not_fitting"]]
    if c.get("cost_only"):
        out += ["", "Untrained, cost only (no decision; see \"Paper scale\"):", ""]
        out += [f"- {r['config']}: " + ("fits" if r["fits"] else r["why"] or "does not fit") for r in c["cost_only"]]
    return "\n".join(out)


def _decision_blocks(doc: Doc, ds: list[TargetDecision]) -> None:
    doc.h(2, "Decisions")
    doc.cards([target_card(d) for d in ds])



def _whole_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Byte, count and millisecond columns as whole numbers with thousands separators (blank where none)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind in "fi":
            out[col] = [f"{v:,.0f}" if not pd.isna(v) else "" for v in out[col]]
    return out


def _cost_only_blocks(doc: Doc, c: pd.DataFrame, rd) -> None:
    """Random-weight models (shape presets): fit, memory and counts at the paper's scale, labelled cost only;
    the published depth's count extrapolated from the measured depths; RAM with and without streaming."""
    if not len(c) or "cost_only" not in c or not c.cost_only.any():
        return
    from ..compress.recipes import get_recipe
    from ..models.shapes import SHAPES, table_bytes
    from ..targets import load_target
    rows = c[c.cost_only]
    models = rd.provenance.get("models") or {}
    doc.h(2, "Paper scale: untrained, cost only")
    doc.p("These configurations are models of the published shapes with random weights (harness/models/shapes.py): "
          "every figure in this section is **untrained: cost only** (flash, RAM, counts, latency and energy at the "
          "target clock, whether it fits). Their accuracy is chance: no table of this report shows it and no "
          "decision uses it. A configuration that does not fit its target was journalled does_not_fit and never ran.")
    out = []
    for (model, recipe, target), g in rows.groupby(["model", "recipe", "target"], sort=True):
        rec = models.get(model, {})
        first = g.iloc[0]
        r = {"model": model, "label": rec.get("label", "untrained: cost only"), "recipe": recipe, "target": target,
             "class": first.get("board_class"), "params": rec.get("parameters"), "blob_bytes": first.get("blob_bytes"),
             "blob_region": first.get("blob_region"), "fits": bool(first.get("fits")),
             "does_not_fit": first.get("does_not_fit") or ""}
        ran = g[g.counts_mean.notna()] if "counts_mean" in g else g.iloc[0:0]
        if len(ran):
            r.update(flash_total=int(ran.flash_total.max()), flash_limit=int(ran.flash_limit.max()),
                     ram_inference_peak=int(ran.ram_inference_peak.max()), arena_region=int(ran.arena_region.max()),
                     counts_kind=ran.counts_kind.iloc[0])
            one = ran[ran.depth == "T1n1s1"]
            if len(one):
                r["counts_one_cycle"] = float(one.counts_mean.iloc[0])
                r["latency_ms_one_cycle"] = float(one.latency_ms.iloc[0])
            paper = (rec.get("shape") or {}).get("paper_depth")
            points = [(d.T, d.n, d.steps, cnt) for d, cnt in
                      ((Depth.from_label(dl), cnt) for dl, cnt in zip(ran.depth, ran.counts_mean)) if not d.halting]
            fitted = F.depth_count_model(points)
            if paper and fitted:
                pd_ = Depth.parse(paper)
                count = F.count_at_depth(fitted, pd_.T, pd_.n, pd_.steps)
                t = load_target(target)
                r.update(published_depth=pd_.label(), counts_published=count,
                         latency_ms_published=F.latency_ms(t, r["counts_kind"], count),
                         extrapolation=f"fitted to {fitted['points']} measured depths, largest misfit "
                                       f"{fitted['residual_max']:,.0f} {r['counts_kind']}")
        out.append(r)
    doc.table(_whole_numbers(pd.DataFrame(out)), "cost_only", ("model", "recipe", "target"))
    doc.p("counts_one_cycle: measured at depth 1,1,1 (one z-update and one y-update), the mean over the plan's "
          "puzzles. counts_published: the published depth's count, not run (an emulator cannot afford it): "
          "extrapolated from the counts measured at the plan's depths with count = fixed + steps x (per step + T x "
          "(n x per z-update + per y-update)) (harness.figures.depth_count_model, the firmware's loop), all steps "
          "run; the largest misfit over the measured depths says how well that holds.")
    # RAM with and without streaming: the same weights with embeddings = "ram" beside "flash"
    def weights(recipe: str) -> tuple[str, str]:    # a recipe's fields but its names and where embeddings go
        d = get_recipe(recipe).to_dict()
        where = d.pop("embeddings")
        return repr(sorted((k, v) for k, v in d.items() if k not in ("name", "description"))), where

    ran = [(r, *weights(r["recipe"])) for r in rows.to_dict("records") if not pd.isna(r.get("arena_bytes_max"))]
    streamed = {(r["model"], r["depth"], r["target"], w): r for r, w, where in ran if where == "flash"}
    pairs = []
    for r, w, where in ran:
        o = streamed.get((r["model"], r["depth"], r["target"], w)) if where == "ram" else None
        if o is not None:
            pairs.append({"model": r["model"], "target": r["target"], "depth": r["depth"],
                          "streamed": o["recipe"], "in RAM": r["recipe"],
                          "arena streamed": int(o["arena_bytes_max"]), "arena in RAM": int(r["arena_bytes_max"]),
                          "RAM saved by streaming": int(r["arena_bytes_max"] - o["arena_bytes_max"]),
                          "flash read streamed": o.get("flash_bytes_read_mean"),
                          "flash read in RAM": r.get("flash_bytes_read_mean")})
    if pairs:
        doc.p("RAM with and without streaming, measured: the same weights exported with the embedding tables kept "
              "in flash (streamed: a RUN reads only its puzzle identifier's rows) and copied to the arena "
              "(embeddings = \"ram\"); the arena's peak on the board in each mode.")
        doc.table(_whole_numbers(pd.DataFrame(pairs)), "streaming")
    tabled = [f"{name}: {s.table_ids:,} puzzle identifiers x "
              f"{s.model.get('puzzle_emb_ndim', 0)} channels = {table_bytes(s, 8):,} B at int8 "
              f"({table_bytes(s, 32):,} B at fp32)" for name, s in sorted(SHAPES.items())]
    doc.p("The puzzle-embedding tables of the published shapes, computed from their shapes (not run): "
          + "; ".join(tabled) + ". A board streams only the rows of the identifier a RUN names, so the table costs "
          "flash, not RAM; in RAM mode it would need the whole table in the arena.")

def _provenance_blocks(doc: Doc, rd, configs: pd.DataFrame) -> None:
    prov = rd.provenance
    doc.h(2, "Provenance")
    git = prov.get("git", {})
    items = [f"run {rd.run}, finished {rd.finished or 'NOT FINISHED (resume with --resume)'}",
             f"made by: {rd.command or 'unknown'} (then `harness report {rd.out}` rewrites this report)",
             f"git {git.get('sha')}{' (with uncommitted changes)' if git.get('dirty') else ''}",
             f"plan {prov.get('plan')} (sha256 {str(prov.get('plan_digest'))[:16]}…)"]
    items += [f"firmware {t}: sha256 {f.get('elf_sha256')} (build {f.get('build_id')}, {f.get('toolchain')})"
              for t, f in prov.get("firmware", {}).items()]
    items += [f"blob {k}: sha256 {v['sha256']} ({v['bytes']:,} B)" for k, v in prov.get("blobs", {}).items()]
    items += [f"puzzles {m}: {v.get('description')}, sha256 {v.get('sha256')}" for m, v in prov.get("puzzles", {}).items()]
    items.append(f"seeds: {json.dumps(prov.get('seeds', {}), sort_keys=True)}")
    items.append("tools: " + ", ".join(f"{k} {v}" for k, v in prov.get("tools", {}).items()))
    items += [f"counts on {b}: {what}" for b, what in prov.get("counts", {}).items()]
    doc.ul(items)


def _profile_blocks(doc: Doc, t: dict[str, pd.DataFrame], rd, dest: Path) -> None:
    """Where each configuration's counts go (the journal's profiles): the top cost per configuration in
    words, the stacked bars, and per counts kind the table of operations. A plan without profiles
    (``[run] profile_puzzles = 0``, or a journal from before them) has no such section."""
    asked = int((rd.plan.get("run") or {}).get("profile_puzzles", 0))
    if not asked:
        return
    prof, configs = t["profiles"], t["configs"]
    doc.h(2, "Where the counts go: per-operation profile")
    doc.p(f"A cost figure, like latency and energy (so it holds for cost-only models too): each configuration's "
          f"first {asked} puzzle(s) (the plan's [run] profile_puzzles) run again after its plain runs with the "
          "firmware's per-operation profile (RUN flag PROFILE), their answers checked equal to the plain runs'. "
          "The count of those runs is split over the interpreter's operations, the parts adding up to the total "
          "exactly; the profile's own marks add the share stated below to the plain runs' count."
          + "".join(f" Counts on {b}: {F.counts_note(b)}." for b in sorted(set(prof.backend))))
    profiled = {key: g.sort_values("position") for key, g in prof.groupby(KEY, sort=True)}
    missing = [f"{r.model} {r.recipe} {r.depth} on {r.target}" for r in configs.itertuples()
               if pd.notna(getattr(r, "counts_kind", None)) and (r.model, r.recipe, r.depth, r.target) not in profiled]
    if missing:
        doc.p(f"Without a profile ({len(missing)}: a board failure during it, or the run stopped before it; "
              "`harness farm run --resume` profiles them): " + ", ".join(missing) + ".")
    if not profiled:
        return
    lines = []
    for (model, recipe, depth, target), g in sorted(profiled.items(), key=lambda kv: (kv[0][3], kv[0])):
        r = g.iloc[0]
        top = g[g.op == r.top].iloc[0]
        marks = f"; the marks add {r.marks_share:.2%}" if pd.notna(r.marks_share) else ""
        lines.append(f"top cost on {target} for {model} {recipe} {depth}: {r.top} {top.share:.1%} (of "
                     f"{r.total / r.puzzles:,.0f} {r.counts_kind} per puzzle over {r.puzzles} puzzle(s){marks})")
    doc.ul(lines)
    png = profile_shares(prof)
    (dest / "plots").mkdir(exist_ok=True)
    (dest / "plots" / "profile.png").write_bytes(png)
    doc.image("profile", "Per-operation profile: each operation's share per configuration and target", png)
    for kind, g in prof.groupby("counts_kind", sort=True):
        doc.table(pd.DataFrame({
            "model": g.model, "recipe": g.recipe, "depth": g.depth, "target": g.target, "operation": g.op,
            "calls": g.calls.astype(int), kind: g.counts.round().astype(int),
            "share": [f"{100 * v:.1f}%" for v in g.share],
            f"{kind}_per_mac": g.counts_per_mac.astype(float)}).reset_index(drop=True),
            f"profile-{kind}", ("model", "recipe", "target", "operation"))


DEVICE = "device, over the probe"
HOST = "host, golden"


def _device_fidelity_blocks(doc: Doc, t: dict[str, pd.DataFrame], rd, dest: Path) -> None:
    """Fidelity measured on the device (carries read over the probe at every cycle of the traced puzzles)
    beside the host's (golden), each labelled with where it was measured, and where a device's carries
    first part from golden's. A plan with ``[run] trace = "off"`` (or a journal from before traces) has
    no such section."""
    trace = (rd.plan.get("run") or {}).get("trace", "off")
    if trace == "off":
        return
    fid, configs, div = t["device_fidelity"], t["configs"], t["divergences"]
    doc.h(2, "Fidelity on the device, beside the host's")
    doc.p(f"Each job's traced puzzles (the plan's [run] trace = {trace!r}, and up to a few more whose row "
          "disagrees with golden) ran again with the probe stopping the board at the cycle hook after every "
          f"cycle and reading the carry (y, z); the counts and answers of those runs equal the plain runs'. "
          f"\"{DEVICE}\": the fidelity to fp32 of the carries read off the board; \"{HOST}\": the golden "
          "reference's carries of the same puzzles and cycles, computed on the host; both by the same formula "
          "(cosine of the dequantized carry to fp32's at each cycle, golden/fidelity.py), the final figure "
          "being each puzzle's last cycle run, averaged. They are equal exactly when every carry is golden's. "
          f"The last column is the host's figure over all the plan's puzzles at every step ({HOST}, the "
          "configurations table's fidelity_final).")
    keyed = {tuple(r[k] for k in KEY): r for r in configs.to_dict("records")} if len(configs) else {}
    if len(fid):
        doc.table(pd.DataFrame({
            "model": fid.model, "recipe": fid.recipe, "depth": fid.depth, "target": fid.target,
            "traced puzzles": fid.traced_puzzles, "cycles": fid.traced_cycles,
            "cycles equal to golden": fid.cycles_equal_golden,
            f"fidelity_final ({DEVICE})": fid.device_fidelity_final,
            f"fidelity_final ({HOST}, same puzzles)": fid.golden_fidelity_final,
            f"fidelity_final ({HOST}, all puzzles)": [keyed.get(tuple(r[k] for k in KEY), {}).get("fidelity_final")
                                                     for r in fid.to_dict("records")]}),
            "device-fidelity", ("model", "recipe", "target"))
        png = device_fidelity_per_cycle(t["traces"], {d: Depth.from_label(d).T for d in set(t["traces"].depth)})
        (dest / "plots").mkdir(exist_ok=True)
        (dest / "plots" / "device_fidelity.png").write_bytes(png)
        doc.image("device_fidelity", "Fidelity per cycle of the traced puzzles: device, over the probe (solid); "
                  "host, golden (dashed)", png)
    have = set(map(tuple, fid[KEY].values)) if len(fid) else set()
    missing = [f"{r.model} {r.recipe} {r.depth} on {r.target}" for r in configs.itertuples()
               if pd.notna(getattr(r, "counts_kind", None)) and (r.model, r.recipe, r.depth, r.target) not in have]
    if missing:
        doc.p(f"Without traces ({len(missing)}: a board with no probe, such as the host build, ran them, or a board "
              "failure or stop came first; `harness farm run --resume` traces them on a board with one): "
              + ", ".join(missing) + ".")
    if len(div):
        doc.h(3, "First divergence from golden")
        doc.p("Where a traced puzzle's device carry first parts from golden's: the step and cycle (the first carry "
              "read at the cycle hook that differs), the update of that cycle (z1..zn its z-updates, y its y-update: "
              "the cycle replayed from golden's carry before it, written by the probe, with 1..n z-updates) and the "
              "element (row, channel) of that update's output where the device's value and golden's differ. The "
              "block is not observable: the firmware stops for the probe only between cycles. Each row's "
              "resolution says what was pinned:")
        doc.table(pd.DataFrame({
            "model": div.model, "recipe": div.recipe, "depth": div.depth, "target": div.target,
            "puzzle": div.puzzle_id, "step": div.step, "cycle": div.cycle, "update": div.update_name,
            "block": ["not observable" if pd.isna(b) else int(b) for b in div.block],
            "element": [f"{c}[{r}, {ch}]" for c, r, ch in zip(div.carry, div.row, div.channel)],
            f"value ({DEVICE})": div.device, f"value ({HOST})": div.golden,
            "resolution": div.resolution}), "divergences", ("model", "recipe", "target"))
        doc.ul([f"resolution {r}: {RESOLUTIONS[r]}" for r in sorted(set(div.resolution))])


def build_report(out: Path, baseline: Path | None = None, thresholds: dict | None = None) -> Report:
    rd = load_run(out)
    t = tables(rd)
    dest = Path(out)
    for name, df in t.items():
        df.to_csv(dest / f"{name}.csv", index=False)
        df.to_parquet(dest / f"{name}.parquet", index=False)
    conf = confidence(rd.plan)
    c = t["configs"]
    ds = decide(t, rd.plan)
    flagged = {tuple(r[k] for k in KEY) for d in ds for r in d.flagged}
    if len(c):
        c["cell_kept_exact_lost"] = [tuple(r) in flagged for r in c[KEY].values]
    (dest / "decisions.json").write_text(json.dumps(decisions_json(ds), indent=2, default=str) + "\n")
    (dest / "provenance.json").write_text(json.dumps({"run": rd.run, "finished": rd.finished, **rd.provenance},
                                                     indent=2, sort_keys=True) + "\n")
    changes = None
    if baseline is not None:
        th = thresholds if thresholds is not None else rd.plan.get("regression")
        changes = compare(tables(load_run(baseline)), t, th, conf)

    doc = Doc()
    plan_name = rd.plan.get("name", "plan")
    doc.h(1, f"Farm report: {plan_name} ({rd.run})")
    _decision_blocks(doc, ds)
    doc.h(2, "The run and how its figures are judged")
    failures = [e for e in rd.events if e["kind"] in ("failure", "quarantine")]
    doc.p(f"{len(c)} configurations ({', '.join(sorted(set(c.target))) if len(c) else 'no targets'}), "
          f"{len(t['puzzles'])} device puzzle rows, {len(t['host'])} host rows, "
          f"{sum(t['puzzles'].status != 'ok') if len(t['puzzles']) else 0} board-failure rows, "
          f"{len(failures)} board failure events. Counts: "
          + "; ".join(f"{b}: {w}" for b, w in rd.provenance.get("counts", {}).items()) + ".")
    st = rd.plan.get("statistics") or {}
    doc.p(f"Every accuracy is shown as point [low, high] in percent: a {conf:.0%} {S.INTERVAL} interval for puzzle-exact "
          f"accuracy, a {S.CELL_INTERVAL} for cell accuracy (the puzzle is the unit: its cells are not independent). "
          f"Configurations are compared on the same puzzles with the {S.PAIRED_TEST} test; those it cannot tell "
          f"apart at {conf:.0%} are tied, and ties are broken by cost. min_exact_accuracy is judged on "
          + ("the interval's lower bound." if st.get("accuracy_budget", "lower_bound") == "lower_bound"
             else "the point estimate (the interval is shown)."))
    if st.get("interval_width") and len(c) and "exact_accuracy_lo" in c:
        width = c.exact_accuracy_hi - c.exact_accuracy_lo
        wide = c[width > st["interval_width"] + 1e-12]
        widest = c.loc[width.idxmax()]
        doc.p(f"The plan asks for puzzle-exact intervals at most {st['interval_width']:g} wide: "
              f"{len(c) - len(wide)} of {len(c)} configurations have one (the widest, {label(widest)} on "
              f"{widest.target}, is {width.max():.3f}); at accuracy 0.5, the widest case, it takes "
              f"{S.puzzles_for_width(st['interval_width'], 0.5, conf):,} puzzles.")
    if changes is not None:
        doc.h(2, "Changes since the baseline")
        doc.p(changes_markdown(changes, str(baseline)).split("\n")[0])
        if changes:
            doc.table(changes_frame(changes), "changes")
    doc.h(2, "Configurations on the boards")
    doc.p("Accuracy columns: exact/cell on the device; host_exact = the golden reference on the host (equal when "
          "golden_match = puzzles); fp32_exact = the full-precision model on the same puzzles. fidelity_final: "
          f"{HOST} (measured on the device: \"Fidelity on the device, beside the host's\"). latency_ms and "
          "energy_uj: see the counts note above; energy is a proxy from the target file's coefficients.")
    doc.table(shown(c, CONFIG_COLUMNS) if len(c) else c, "configs", ("model", "recipe", "target"),
              list(c["cell_kept_exact_lost"]) if len(c) else None, f"Highlighted rows: {FLAG_RULE[0].lower()}{FLAG_RULE[1:]}")
    doc.h(2, "Host figures (every recipe, including host-only ones)")
    h = t["host"]
    doc.table(shown(h, HOST_COLUMNS) if len(h) else h, "host", ("model", "recipe"))
    _cost_only_blocks(doc, c, rd)
    _device_fidelity_blocks(doc, t, rd, dest)
    plots = all_plots(t, ds)
    if plots:
        doc.h(2, "Plots")
        (dest / "plots").mkdir(exist_ok=True)
        for name, (title, png) in plots.items():
            (dest / "plots" / f"{name}.png").write_bytes(png)
            doc.image(name, title, png)
    _profile_blocks(doc, t, rd, dest)
    if failures:
        doc.h(2, "Board failures")
        doc.ul([f"{e['board']}: {e['kind']}: {e['message']}" for e in failures[:50]]
               + ([f"… {len(failures) - 50} more in the journal"] if len(failures) > 50 else []))
    _provenance_blocks(doc, rd, c)
    doc.h(2, "Files")
    doc.ul(["configs / puzzles / host / host_puzzles / profiles / traces / divergences / device_fidelity .csv and "
            ".parquet: the tidy tables",
            "decisions.json, provenance.json",
            "journal.sqlite: every row as it arrived, and the board events", "logs/: one log per board start"])
    (dest / "report.md").write_text(to_markdown(doc))
    (dest / "report.html").write_text(to_html(doc, f"{plan_name} {rd.run}"))
    return Report(dest, ds, changes, t)
