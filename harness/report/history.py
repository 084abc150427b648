"""``harness report --history DIR [DIR …]``: the nightly view of several runs, and the exports for CI.

  trend    per configuration (model, recipe, depth, target) and run: puzzle-exact accuracy with its
           interval, cell accuracy, latency, energy, RAM (inference peak, static), flash and final carry
           fidelity; the regression gate (``baseline.compare``) between each run and the one before it,
           with the newer run's [regression] thresholds and [statistics] confidence. Written as trend.md,
           trend.html (the report's block renderers), trend.csv (long form) and plots/trend_exact.png.
  metrics  OpenMetrics text (``prometheus_client``): one gauge family per figure, one sample per
           configuration, labelled model, recipe, depth and target; the run it came from is the
           ``harness_run_info`` sample beside them (see ``write_metrics``).
  junit    JUnit XML of the gate's verdicts: one testsuite per compared pair of runs, one testcase per
           configuration (classname = target, name = "model recipe depth"), a <failure> holding the
           regressions, the other changes and their notes in <system-out>.

Runs are ordered by their ``finished`` time, then their run id (an unfinished run goes last).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

import pandas as pd

from .baseline import Change, change_text, changes_frame, compare
from .build import Doc, to_html, to_markdown
from .decide import accuracy_text
from .plots import trend_plot
from .tables import KEY, RunData, confidence, load_run, tables

# (name in the tables, OpenMetrics family, unit suffix of the family, what it is)
FIGURES = [
    ("exact_accuracy", "harness_exact_accuracy", "", "puzzle-exact accuracy on the device (fraction of puzzles)"),
    ("exact_accuracy_lo", "harness_exact_accuracy_lo", "", "low end of the puzzle-exact accuracy interval"),
    ("exact_accuracy_hi", "harness_exact_accuracy_hi", "", "high end of the puzzle-exact accuracy interval"),
    ("cell_accuracy", "harness_cell_accuracy", "", "cell accuracy on the device (mean per-puzzle fraction)"),
    ("cell_accuracy_lo", "harness_cell_accuracy_lo", "", "low end of the cell accuracy interval"),
    ("cell_accuracy_hi", "harness_cell_accuracy_hi", "", "high end of the cell accuracy interval"),
    ("latency_ms", "harness_latency", "ms", "latency per puzzle on the target's core clock"),
    ("energy_uj", "harness_energy", "uj", "energy proxy per puzzle (the target file's coefficients)"),
    ("ram_inference_peak", "harness_ram_inference_peak", "bytes", "inference RAM peak (arena + stack)"),
    ("ram_static", "harness_ram_static", "bytes", "static RAM of the firmware image"),
    ("flash_total", "harness_flash_total", "bytes", "flash used: firmware and blob"),
    ("fidelity_final", "harness_fidelity_final", "", "final carry fidelity against fp32 (host)"),
    ("board_failures", "harness_board_failures", "", "puzzles no healthy board answered"),
    ("puzzles", "harness_puzzles", "", "puzzles run on the configuration"),
]
TREND_COLUMNS = [f for f, *_ in FIGURES]


@dataclass
class HistoryRun:
    folder: Path
    data: RunData
    tables: dict[str, pd.DataFrame]
    label: str          # the run id; with the folder's name beside it when two folders hold one run id

    @property
    def configs(self) -> pd.DataFrame:
        return self.tables["configs"]


@dataclass
class Pair:
    """The gate between two consecutive runs."""
    old: HistoryRun
    new: HistoryRun
    changes: list[Change]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]


@dataclass
class History:
    runs: list[HistoryRun]
    pairs: list[Pair]

    @property
    def newest(self) -> HistoryRun:
        return self.runs[-1]

    @property
    def regressions(self) -> list[Change]:
        """What fails the nightly: the newest run's regressions against the run before it."""
        return self.pairs[-1].regressions if self.pairs else []


def _order(rd: RunData) -> tuple:
    return (rd.finished is None, rd.finished or "", rd.run)


def load_history(folders: Iterable[Path]) -> History:
    """The runs in ``folders`` (ordered by finish time, then run id) and the gate between neighbours.
    A folder given twice counts once; one that is missing or holds no journal raises, naming it."""
    seen, loaded = set(), []
    for f in folders:
        f = Path(f)
        if f.resolve() in seen:
            continue
        seen.add(f.resolve())
        if not f.is_dir():
            raise FileNotFoundError(f"{f}: no such run folder")
        loaded.append((f, load_run(f)))
    if not loaded:
        raise ValueError("no run folders given")
    loaded.sort(key=lambda fr: _order(fr[1]))
    ids = [rd.run for _, rd in loaded]
    runs = [HistoryRun(f, rd, tables(rd), rd.run if ids.count(rd.run) == 1 else f"{rd.run} ({f.name})")
            for f, rd in loaded]
    pairs = [Pair(a, b, compare(a.tables, b.tables, b.data.plan.get("regression"), confidence(b.data.plan)))
             for a, b in zip(runs, runs[1:])]
    return History(runs, pairs)


# --- the trend --------------------------------------------------------------------------------------
def trend_table(h: History) -> pd.DataFrame:
    """Long form: one row per (configuration, run) with the run's order and the trend's figures."""
    frames = []
    for i, r in enumerate(h.runs):
        c = r.configs
        if c.empty:
            continue
        f = c[KEY + [x for x in TREND_COLUMNS if x in c]].copy()
        f.insert(len(KEY), "run", r.label)
        f.insert(len(KEY) + 1, "order", i)
        f.insert(len(KEY) + 2, "finished", r.data.finished)
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=KEY + ["run", "order", "finished"])
    return pd.concat(frames, ignore_index=True).sort_values(KEY + ["order"]).reset_index(drop=True)


def _wide(long: pd.DataFrame, values: str, runs: list[str]) -> pd.DataFrame:
    """Configurations down, runs across."""
    w = long.pivot(index=KEY, columns="run", values=values)
    return w.reindex(columns=[r for r in runs if r in w.columns]).reset_index().rename_axis(columns=None)


def write_trend(h: History, dest: Path) -> dict[str, Path]:
    """trend.md, trend.html, trend.csv and plots/trend_exact.png in ``dest``; their paths by kind."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    long = trend_table(h)
    long.to_csv(dest / "trend.csv", index=False)
    runs = [r.label for r in h.runs]
    flagged: dict[str, list[str]] = {}
    for p in h.pairs:
        for c in p.regressions:
            flagged.setdefault(c.config, []).append(f"{p.new.label}: {c.metric}")

    doc = Doc()
    plan = h.newest.data.plan.get("name", "plan")
    doc.h(1, f"Trend: {plan}, {len(h.runs)} run(s)")
    if h.pairs:
        newest = h.pairs[-1]
        doc.p(f"The newest run {newest.new.label} against {newest.old.label}: "
              + (f"{len(newest.regressions)} regression(s) (the nightly fails)." if newest.regressions
                 else f"no regression ({len(newest.changes)} change(s) within the thresholds)."))
    else:
        doc.p("One run: nothing to compare.")
    doc.p("Each gate compares a run with the one before it, with the newer run's [regression] thresholds: an "
          "accuracy drop is a regression only beyond the threshold and beyond chance (the paired test on the "
          "puzzles both runs share, at the newer run's [statistics] confidence); latency, memory and fidelity "
          "have exact thresholds. The puzzle-exact table's last column names the runs in which the gate flagged "
          "a configuration.")
    doc.h(2, "Runs")
    doc.ul([f"{r.label}: {r.folder}, finished {r.data.finished or 'NOT FINISHED'}, plan "
            f"{r.data.plan.get('name', '?')}, git {str(r.data.provenance.get('git', {}).get('sha', '?'))[:12]}, "
            f"{len(r.configs)} configuration(s), {confidence(r.data.plan):.0%} intervals" for r in h.runs])

    if not long.empty:
        long = long.copy()
        has_exact = "exact_accuracy" in long and long.exact_accuracy.notna().any()
        long["exact_text"] = ([accuracy_text(r) if not pd.isna(r["exact_accuracy"]) else ""
                               for r in long.to_dict("records")] if has_exact else "")
        base = _wide(long, "exact_text", runs)
        names = [" ".join(str(x) for x in k) for k in base[KEY].itertuples(index=False)]
        gate = ["; ".join(flagged.get(n, [])) for n in names]
        plot = trend_plot(long[long.exact_accuracy.notna()], runs) if has_exact else None
        if plot:
            (dest / "plots").mkdir(exist_ok=True)
            (dest / "plots" / "trend_exact.png").write_bytes(plot)
            doc.h(2, "Puzzle-exact accuracy across runs")
            doc.image("trend_exact", "Puzzle-exact accuracy per configuration across runs, with its interval", plot)
        sections = [("exact_text", "Puzzle-exact accuracy, % [interval]"), ("cell_accuracy", "Cell accuracy"),
                    ("latency_ms", "Latency (ms)"), ("energy_uj", "Energy proxy (uJ)"),
                    ("ram_inference_peak", "Inference RAM peak (B)"), ("ram_static", "Static RAM (B)"),
                    ("flash_total", "Flash (B)"), ("fidelity_final", "Final carry fidelity (host)")]
        for col, title in sections:
            if col not in long:
                continue
            doc.h(2, title)
            w = _wide(long, col, runs)
            if col == "exact_text":
                w["regressions"] = gate       # the runs in which the gate flagged the configuration
            # no row marks: the HTML renderer's mark means "keeps cell accuracy, loses puzzle-exact"
            doc.table(w, f"trend_{col}", ("model", "recipe", "target"))

    doc.h(2, "The gate between consecutive runs")
    if not h.pairs:
        doc.p("Nothing compared.")
    for p in h.pairs:
        doc.h(3, f"{p.old.label} -> {p.new.label}")
        if not p.changes:
            doc.p("No change: every figure is identical.")
            continue
        doc.p(f"{len(p.changes)} change(s), {len(p.regressions)} regression(s).")
        doc.table(changes_frame(p.changes, "before", "after"), f"gate_{p.new.label}", ("config", "metric", "regression"))
    doc.h(2, "Files")
    doc.ul(["trend.csv: one row per configuration and run", "plots/trend_exact.png", "trend.md, trend.html"])
    (dest / "trend.md").write_text(to_markdown(doc))
    (dest / "trend.html").write_text(to_html(doc, f"{plan} trend"))
    return {"md": dest / "trend.md", "html": dest / "trend.html", "csv": dest / "trend.csv"}


# --- OpenMetrics ----------------------------------------------------------------------------------
def run_info(rd: RunData) -> dict[str, str]:
    return {"run": str(rd.run), "plan": str(rd.plan.get("name", "")), "finished": str(rd.finished or "")}


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def metrics_text(configs: pd.DataFrame, info: dict[str, str] | None = None) -> bytes:
    """The OpenMetrics exposition of one run's configuration table.

    No ``run`` label on the figures: a dashboard draws a figure's line over the time it was pushed or
    scraped, and a label that changes every night would start a new series each time (unbounded
    cardinality, no line to follow). The run is the ``harness_run_info`` sample, to join on or show."""
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    class Figures(Collector):
        def collect(self):
            if info:
                yield InfoMetricFamily("harness_run", "the run the figures come from", value=info)
                t = _epoch(info.get("finished"))
                if t is not None:
                    yield GaugeMetricFamily("harness_run_finished_timestamp_seconds", "when the run finished",
                                            value=t, unit="seconds")
            rows = configs.to_dict("records")
            for col, name, unit, doc in FIGURES:
                if col not in configs:
                    continue
                fam = GaugeMetricFamily(name, doc, labels=KEY, unit=unit)
                for r in rows:
                    v = r.get(col)
                    if v is None or pd.isna(v):
                        continue          # a configuration without the figure (it did not fit): no sample
                    fam.add_metric([str(r[k]) for k in KEY], float(v))
                yield fam

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Figures())
    return generate_latest(reg)


def write_metrics(path: Path, configs: pd.DataFrame, info: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(metrics_text(configs, info))
    return path


# --- JUnit ----------------------------------------------------------------------------------------
@dataclass
class GateSuite:
    """One comparison for the JUnit file; ``changes`` None = nothing to compare against (every case skipped)."""
    name: str
    keys: list[tuple]
    changes: list[Change] | None
    timestamp: str | None = None
    properties: dict[str, str] | None = None


def keys_of(*configs: pd.DataFrame) -> list[tuple]:
    return sorted({tuple(str(x) for x in k) for c in configs if not c.empty for k in c[KEY].itertuples(index=False)})


def suites_of(h: History) -> list[GateSuite]:
    if not h.pairs:
        r = h.newest
        return [GateSuite(r.label, keys_of(r.configs), None, r.data.finished, {"run": r.label, "folder": str(r.folder)})]
    return [GateSuite(f"{p.old.label} -> {p.new.label}", keys_of(p.old.configs, p.new.configs), p.changes,
                      p.new.data.finished, {"baseline": p.old.label, "run": p.new.label,
                                            "baseline_folder": str(p.old.folder), "folder": str(p.new.folder)})
            for p in h.pairs]


def _case_of(config: str, keys: dict[str, tuple]) -> tuple[str, str]:
    """(classname, name) of a change's configuration: the target, and model recipe depth."""
    k = keys.get(config)
    if k is not None:
        return k[3], " ".join(k[:3])
    name, _, target = config.rpartition(" ")
    return target, name


def junit_tree(suites: list[GateSuite]) -> ET.ElementTree:
    root = ET.Element("testsuites", name="harness regression gate")
    total = failed = skipped_all = 0
    for s in suites:
        keys = {" ".join(k): k for k in s.keys}
        cases: dict[tuple[str, str], list[Change]] = {_case_of(c, keys): [] for c in keys}
        for ch in s.changes or []:
            cases.setdefault(_case_of(ch.config, keys), []).append(ch)
        suite = ET.SubElement(root, "testsuite", name=s.name)
        if s.timestamp:
            suite.set("timestamp", s.timestamp.removesuffix("Z"))
        if s.properties:
            props = ET.SubElement(suite, "properties")
            for k, v in s.properties.items():
                ET.SubElement(props, "property", name=k, value=str(v))
        n_fail = n_skip = 0
        for (classname, name), chs in sorted(cases.items()):
            case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
            if s.changes is None:
                ET.SubElement(case, "skipped", message="no earlier run to compare against")
                n_skip += 1
                continue
            reg = [c for c in chs if c.regression]
            other = [c for c in chs if not c.regression]
            if reg:
                n_fail += 1
                f = ET.SubElement(case, "failure", type="regression",
                                  message=f"{len(reg)} regression(s): " + ", ".join(c.metric for c in reg))
                f.text = "\n".join(change_text(c) for c in reg)
            if other:
                ET.SubElement(case, "system-out").text = "\n".join(change_text(c) for c in other)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", str(n_skip))
        total, failed, skipped_all = total + len(cases), failed + n_fail, skipped_all + n_skip
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    root.set("skipped", str(skipped_all))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, suites: list[GateSuite]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


def suite_of_report(rd: RunData, configs: pd.DataFrame, changes: list[Change] | None,
                    baseline: RunData | None = None, baseline_configs: pd.DataFrame | None = None) -> GateSuite:
    """The one suite of ``harness report DIR [--baseline OLD]``."""
    if changes is None or baseline is None:
        return GateSuite(rd.run, keys_of(configs), None, rd.finished, {"run": rd.run, "folder": str(rd.out)})
    extra = [baseline_configs] if baseline_configs is not None else []
    return GateSuite(f"{baseline.run} -> {rd.run}", keys_of(configs, *extra), changes, rd.finished,
                     {"baseline": baseline.run, "run": rd.run, "baseline_folder": str(baseline.out),
                      "folder": str(rd.out)})


__all__ = ["History", "HistoryRun", "Pair", "GateSuite", "load_history", "trend_table", "write_trend",
           "write_metrics", "metrics_text", "write_junit", "junit_tree", "suites_of", "suite_of_report", "run_info"]
