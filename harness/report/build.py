"""``harness report DIR``: tables, plots, decisions and provenance of a farm run, as report.md and a
self-contained report.html (plots embedded), plus the tidy tables as parquet and CSV.

The report is written once as a list of blocks (heading, text, bullets, table, image) and rendered twice,
to Markdown and to HTML, so the two never say different things.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .baseline import Change, changes_markdown, compare
from .decide import TargetDecision, decide, decisions_json, label
from .plots import all_plots
from .tables import load_run, tables

CONFIG_COLUMNS = ["model", "recipe", "depth", "target", "puzzles", "board_failures", "golden_match",
                  "exact_accuracy", "cell_accuracy", "host_exact_accuracy", "fp32_exact_accuracy", "fidelity_final",
                  "mean_steps", "latency_ms", "energy_uj", "blob_bytes", "flash_total", "ram_inference_peak",
                  "ram_peak_over_min", "fits_flash", "fits_ram"]
HOST_COLUMNS = ["model", "recipe", "depth", "evaluated_by", "puzzles", "exact_accuracy", "cell_accuracy",
                "fidelity_final", "fidelity_auc", "macs", "weight_bytes"]


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

    def table(self, df: pd.DataFrame):
        self.blocks.append(("table", df))

    def image(self, name: str, title: str, png: bytes):
        self.blocks.append(("img", (name, title, png)))

    def code(self, text: str):
        self.blocks.append(("code", text))


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:,.4g}" if abs(v) >= 1 else f"{v:.4f}"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


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
            cols = list(v.columns)
            rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            rows += ["| " + " | ".join(_cell(x) for x in r) + " |" for r in v.itertuples(index=False)]
            out.append("\n".join(rows))
        elif kind == "img":
            out.append(f"![{v[1]}](plots/{v[0]}.png)")
    return "\n\n".join(out) + "\n"


def to_html(doc: Doc, title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
           "th{background:#f3f3f3}td{text-align:right}td:first-child,td:nth-child(2),td:nth-child(3),td:nth-child(4)"
           "{text-align:left}pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}img{max-width:100%}"
           "</style></head><body>"]
    for kind, v in doc.blocks:
        if kind == "h":
            out.append(f"<h{v[0]}>{html.escape(v[1])}</h{v[0]}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(v)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in v) + "</ul>")
        elif kind == "code":
            out.append(f"<pre>{html.escape(v)}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in v.columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(x))}</td>" for x in r) + "</tr>"
                           for r in v.itertuples(index=False))
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(v[2]).decode()
            out.append(f"<figure><img alt='{html.escape(v[1])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(v[1])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


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


def _decision_blocks(doc: Doc, ds: list[TargetDecision]) -> None:
    doc.h(2, "Decisions")
    for d in ds:
        doc.h(3, d.target)
        rec = d.recommended
        doc.p(f"Recommended: {label(rec)}." if rec else "Recommended: none.")
        doc.ul(d.reasons)
        if d.pareto:
            doc.p("Pareto front of the configurations that fit (puzzle-exact accuracy, latency, energy, memory):")
            doc.ul([f"{label(r)}: puzzle-exact {100 * r['exact_accuracy']:.1f}%, {r['latency_ms']:.2f} ms, "
                    f"{r['energy_uj']:.0f} uJ, flash {r['flash_total']:,} B, inference RAM {r['ram_inference_peak']:,} B"
                    for r in d.pareto])
        if d.flagged:
            doc.p("Keep cell accuracy but lose puzzle-exact accuracy against fp32 (cell within 2 points, "
                  "puzzle-exact 10 or more points below):")
            doc.ul([f"{label(r)}: cell {100 * r['cell_accuracy']:.1f}% vs fp32 {100 * r['fp32_cell_accuracy']:.1f}%, "
                    f"puzzle-exact {100 * r['exact_accuracy']:.1f}% vs fp32 {100 * r['fp32_exact_accuracy']:.1f}%"
                    for r in d.flagged])
        if d.not_fitting:
            doc.p("Excluded:")
            doc.ul([f"{label(r)}: {r['why']}" for r in d.not_fitting])


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


def build_report(out: Path, baseline: Path | None = None, thresholds: dict | None = None) -> Report:
    rd = load_run(out)
    t = tables(rd)
    dest = Path(out)
    for name, df in t.items():
        df.to_csv(dest / f"{name}.csv", index=False)
        df.to_parquet(dest / f"{name}.parquet", index=False)
    ds = decide(t["configs"], rd.plan)
    (dest / "decisions.json").write_text(json.dumps(decisions_json(ds), indent=2, default=str) + "\n")
    (dest / "provenance.json").write_text(json.dumps({"run": rd.run, "finished": rd.finished, **rd.provenance},
                                                     indent=2, sort_keys=True) + "\n")
    changes = None
    if baseline is not None:
        old = load_run(baseline)
        old_configs = tables(old)["configs"]
        th = thresholds if thresholds is not None else rd.plan.get("regression")
        changes = compare(old_configs, t["configs"], th)

    doc = Doc()
    plan_name = rd.plan.get("name", "plan")
    doc.h(1, f"Farm report: {plan_name} ({rd.run})")
    c = t["configs"]
    failures = [e for e in rd.events if e["kind"] in ("failure", "quarantine")]
    doc.p(f"{len(c)} configurations ({', '.join(sorted(set(c.target))) if len(c) else 'no targets'}), "
          f"{len(t['puzzles'])} device puzzle rows, {len(t['host'])} host rows, "
          f"{sum(t['puzzles'].status != 'ok') if len(t['puzzles']) else 0} board-failure rows, "
          f"{len(failures)} board failure events. Counts: "
          + "; ".join(f"{b}: {w}" for b, w in rd.provenance.get("counts", {}).items()) + ".")
    _decision_blocks(doc, ds)
    if changes is not None:
        doc.h(2, "Changes since the baseline")
        doc.p(changes_markdown(changes, str(baseline)).split("\n")[0])
        if changes:
            doc.table(pd.DataFrame([{"config": ch.config, "metric": ch.metric, "baseline": ch.old, "now": ch.new,
                                     "regression": "yes" if ch.regression else "no", "note": ch.note}
                                    for ch in sorted(changes, key=lambda ch: (not ch.regression, ch.config, ch.metric))]))
    doc.h(2, "Configurations on the boards")
    doc.p("Accuracy columns: exact/cell on the device; host_exact = the golden reference on the host (equal when "
          "golden_match = puzzles); fp32_exact = the full-precision model on the same puzzles. latency_ms and "
          "energy_uj: see the counts note above; energy is a proxy from the target file's coefficients.")
    doc.table(c[[col for col in CONFIG_COLUMNS if col in c]] if len(c) else c)
    doc.h(2, "Host figures (every recipe, including host-only ones)")
    h = t["host"]
    doc.table(h[[col for col in HOST_COLUMNS if col in h]] if len(h) else h)
    plots = all_plots(t)
    if plots:
        doc.h(2, "Plots")
        (dest / "plots").mkdir(exist_ok=True)
        for name, (title, png) in plots.items():
            (dest / "plots" / f"{name}.png").write_bytes(png)
            doc.image(name, title, png)
    if failures:
        doc.h(2, "Board failures")
        doc.ul([f"{e['board']}: {e['kind']}: {e['message']}" for e in failures[:50]]
               + ([f"… {len(failures) - 50} more in the journal"] if len(failures) > 50 else []))
    _provenance_blocks(doc, rd, c)
    doc.h(2, "Files")
    doc.ul(["configs / puzzles / host .csv and .parquet: the tidy tables", "decisions.json, provenance.json",
            "journal.sqlite: every row as it arrived, and the board events", "logs/: one log per board start"])
    (dest / "report.md").write_text(to_markdown(doc))
    (dest / "report.html").write_text(to_html(doc, f"{plan_name} {rd.run}"))
    return Report(dest, ds, changes, t)
