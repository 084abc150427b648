"""``harness report --history`` and the CI exports (OpenMetrics, JUnit), on copies of the committed demo
run (reports/example) given other run ids and finish times, one with a real regression injected and one
with a wobble the gate must not fail on. No QEMU: only journals are read."""
from __future__ import annotations

import json
import math
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.farm.journal import NAME
from harness.farm.plan import Regression
from harness.report.tables import load_run, tables

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"
KEY = ("model", "recipe", "depth", "target")
LABELS = set(KEY)


def _copy(dest: Path, run: str, finished: str) -> Path:
    """A copy of the example journal (nothing else: the run folder needs only it) as another run."""
    dest.mkdir(parents=True)
    shutil.copy(EXAMPLE / NAME, dest / NAME)
    db = sqlite3.connect(dest / NAME)
    (old,) = db.execute("SELECT value FROM meta WHERE key = 'run'").fetchone()
    for table in ("results", "host", "events"):
        db.execute(f"UPDATE {table} SET run = ? WHERE run = ?", (run, json.loads(old)))
    db.execute("UPDATE meta SET value = ? WHERE key = 'run'", (json.dumps(run),))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', ?)", (json.dumps(finished),))
    db.commit()
    db.close()
    return dest


def _solved(folder: Path) -> dict[tuple, list[tuple[str, str, dict]]]:
    """Per configuration, its solved puzzles: (job, puzzle, row)."""
    db = sqlite3.connect(folder / NAME)
    out: dict[tuple, list] = {}
    for job, puzzle, row in db.execute("SELECT job, puzzle, row FROM results WHERE status = 'ok' ORDER BY job, puzzle"):
        r = json.loads(row)
        if r["correct"]:
            out.setdefault(tuple(r[k] for k in KEY), []).append((job, puzzle, r))
    db.close()
    return out


def _unsolve(folder: Path, puzzles: list[tuple[str, str, dict]], cells: float) -> None:
    db = sqlite3.connect(folder / NAME)
    for job, puzzle, r in puzzles:
        r = {**r, "correct": False, "cell_accuracy": cells}
        db.execute("UPDATE results SET row = ? WHERE job = ? AND puzzle = ?", (json.dumps(r, sort_keys=True), job, puzzle))
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """base, same (identical figures), wobble (a few puzzles of one configuration lost: beyond the
    exact-accuracy threshold, not beyond chance) and regressed (every solved puzzle of another lost)."""
    root = tmp_path_factory.mktemp("history")
    base = _copy(root / "nightly-1", "run-nightly-1", "2027-01-01T02:00:00Z")
    same = _copy(root / "nightly-2", "run-nightly-2", "2027-01-02T02:00:00Z")
    wobble = _copy(root / "nightly-3", "run-nightly-3", "2027-01-03T02:00:00Z")
    regressed = _copy(root / "nightly-4", "run-nightly-4", "2027-01-04T02:00:00Z")
    solved = _solved(base)
    n = sqlite3.connect(base / NAME).execute(
        "SELECT count(*) FROM results WHERE job = (SELECT min(job) FROM results)").fetchone()[0]
    k = math.floor(Regression().exact_accuracy_drop * n) + 1   # the fewest puzzles beyond the threshold
    assert k <= 5, "a wobble this large would be beyond chance (exact McNemar, 5 discordant puzzles: p = 0.0625)"
    ranked = sorted(solved, key=lambda key: (-len(solved[key]), key))
    bad = ranked[0]
    assert len(solved[bad]) >= 8, "the regression needs enough solved puzzles for the paired test to see it"
    wobbly = next(key for key in ranked[1:] if len(solved[key]) >= k)
    _unsolve(wobble, solved[wobbly][:k], 1 - 1 / 36)
    _unsolve(regressed, solved[wobbly][:k], 1 - 1 / 36)
    _unsolve(regressed, solved[bad], 0.5)
    configs = tables(load_run(regressed))["configs"]
    names = [" ".join(str(x) for x in key) for key in configs[list(KEY)].itertuples(index=False)]
    return {"root": root, "base": base, "same": same, "wobble": wobble, "regressed": regressed,
            "bad": " ".join(bad), "bad_solved": solved[bad], "wobbly": " ".join(wobbly),
            "configs": sorted(names), "newest": configs.assign(name=names)}


def _cli(*args) -> object:
    return CliRunner().invoke(app, ["report", *map(str, args)])


def _junit(path: Path) -> dict[str, dict[tuple[str, str], object]]:
    from junitparser import JUnitXml
    xml = JUnitXml.fromfile(str(path))
    return {s.name: {(c.classname, c.name): c for c in s} for s in xml}


def _failures(case) -> list:
    from junitparser import Failure
    return [r for r in case.result if isinstance(r, Failure)]


def test_identical_runs_pass_and_write_the_trend(runs, tmp_path):
    r = _cli("--history", runs["base"], runs["same"], "--to", tmp_path / "trend", "--junit", tmp_path / "gate.xml")
    assert r.exit_code == 0, r.output
    assert "0 regression(s)" in r.output
    md = (tmp_path / "trend" / "trend.md").read_text()
    html = (tmp_path / "trend" / "trend.html").read_text()
    assert (tmp_path / "trend" / "plots" / "trend_exact.png").stat().st_size > 1000
    assert "data:image/png;base64," in html and "No change: every figure is identical." in md
    for config in runs["configs"]:
        model, recipe, depth, target = config.split()
        assert f"| {model} | {recipe} | {depth} | {target} |" in md
    cases = _junit(tmp_path / "gate.xml")["run-nightly-1 -> run-nightly-2"]
    assert len(cases) == len(runs["configs"]) and not any(_failures(c) for c in cases.values())


def test_the_regression_of_the_newest_run_fails_and_the_wobble_does_not(runs, tmp_path):
    # given newest first, and the middle one as a quoted glob: the runs are ordered by their finish time
    r = _cli("--history", runs["regressed"], str(runs["root"] / "nightly-[3]"), runs["base"],
             "--to", tmp_path / "trend", "--metrics", tmp_path / "m.txt", "--junit", tmp_path / "gate.xml")
    assert r.exit_code == 1, r.output
    assert "regression(s) of run-nightly-4 against run-nightly-3" in r.output and runs["bad"] in r.output
    md = (tmp_path / "trend" / "trend.md").read_text()
    assert md.index("run-nightly-1 -> run-nightly-3") < md.index("run-nightly-3 -> run-nightly-4")
    assert "not beyond chance" in md and "not a regression" in md

    suites = _junit(tmp_path / "gate.xml")
    assert list(suites) == ["run-nightly-1 -> run-nightly-3", "run-nightly-3 -> run-nightly-4"]
    wobble, regressed = suites.values()
    # the wobble: a note in system-out, no failure
    assert not any(_failures(c) for c in wobble.values())
    target, name = runs["wobbly"].rsplit(" ", 1)[1], runs["wobbly"].rsplit(" ", 1)[0]
    assert "not beyond chance" in wobble[(target, name)].system_out
    # the regression: the failed cases are the configurations the gate flagged, with their metrics
    failed = {f"{n} {t}": _failures(c)[0] for (t, n), c in regressed.items() if _failures(c)}
    assert list(failed) == [runs["bad"]]
    assert "exact_accuracy" in failed[runs["bad"]].text and failed[runs["bad"]].type == "regression"
    tree = ET.parse(tmp_path / "gate.xml").getroot()
    assert tree.tag == "testsuites" and tree.get("failures") == "1"

    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "m.txt").read_text())}
    for name in ("harness_exact_accuracy", "harness_exact_accuracy_lo", "harness_exact_accuracy_hi",
                 "harness_cell_accuracy", "harness_latency_ms", "harness_energy_uj",
                 "harness_ram_inference_peak_bytes", "harness_flash_total_bytes", "harness_fidelity_final"):
        f = families[name]
        assert f.type == "gauge", name
        column = name.removeprefix("harness_").removesuffix("_bytes")
        have = runs["newest"][runs["newest"][column].notna()]       # a configuration that did not fit has no latency
        assert sorted(" ".join(s.labels[k] for k in KEY) for s in f.samples) == sorted(have.name), name
        assert all(set(s.labels) == LABELS for s in f.samples), name
    exact = {" ".join(s.labels[k] for k in KEY): s.value for s in families["harness_exact_accuracy"].samples}
    assert exact[runs["bad"]] == 0.0       # the newest run's figures
    (info,) = families["harness_run"].samples
    assert info.labels["run"] == "run-nightly-4" and info.labels["plan"] == "demo"


def test_an_earlier_regression_does_not_fail_the_nightly(runs, tmp_path):
    """base, regressed, then a run that recovered: the newest run against the one before it is not a
    regression (the earlier one is shown, not failed on)."""
    recovered = _copy(tmp_path / "nightly-5", "run-nightly-5", "2027-01-05T02:00:00Z")
    r = _cli("--history", runs["base"], runs["regressed"], recovered, "--to", tmp_path / "trend",
             "--junit", tmp_path / "gate.xml")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "trend" / "trend.md").read_text()
    assert "run-nightly-4: exact_accuracy" in md
    first, last = _junit(tmp_path / "gate.xml").values()
    assert any(_failures(c) for c in first.values()) and not any(_failures(c) for c in last.values())


def test_a_single_report_exports_with_its_baseline(runs, tmp_path):
    new = _copy(tmp_path / "new", "run-new", "2027-01-06T02:00:00Z")
    # one puzzle left solved: the report's own plots (plots.py) fail on a configuration at 0 %
    _unsolve(new, runs["bad_solved"][1:], 0.5)
    r = _cli(new, "--baseline", runs["base"], "--metrics", tmp_path / "m.txt", "--junit", tmp_path / "gate.xml")
    assert r.exit_code == 1, r.output
    assert (new / "report.md").exists()
    (suite,) = _junit(tmp_path / "gate.xml").values()
    assert sorted(f"{n} {t}" for (t, n), c in suite.items() if _failures(c)) == [runs["bad"]]
    assert "harness_exact_accuracy{" in (tmp_path / "m.txt").read_text()
    # without a baseline there is nothing to gate: every case is skipped, and the exit is 0
    r = _cli(new, "--junit", tmp_path / "alone.xml")
    assert r.exit_code == 0, r.output
    root = ET.parse(tmp_path / "alone.xml").getroot()
    assert root.get("failures") == "0" and root.get("skipped") == str(len(runs["configs"]))


def test_missing_folders_and_empty_patterns_are_named(runs, tmp_path):
    r = _cli("--history", runs["base"], tmp_path / "nowhere")
    assert r.exit_code == 2 and "nowhere" in r.output and "no such run folder" in r.output
    (tmp_path / "empty").mkdir()
    r = _cli("--history", runs["base"], tmp_path / "empty")
    assert r.exit_code == 2 and "empty has no journal.sqlite" in r.output
    r = _cli("--history", str(tmp_path / "nightly-*"))
    assert r.exit_code == 2 and "nightly-* matches no run folder" in r.output
    r = _cli(runs["base"], runs["same"])
    assert r.exit_code == 2 and "--history" in r.output
