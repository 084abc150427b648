"""The farm: plans, the journal, kill-and-resume, failing boards, identical reruns, the baseline gate."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.boards.inventory import BoardSpec
from harness.farm.journal import Journal
from harness.farm.plan import PlanError, load_plan, plan_from_dict
from harness.farm.scheduler import farm_run
from harness.report.build import build_report
from harness.report.tables import load_run, tables

TARGET = "mps2-an386"
TINY = {"name": "tiny", "models": ["sudoku6-mlp"], "recipes": ["int8", "int4-naive"], "depths": ["1,1,2"],
        "targets": [TARGET], "puzzles": {"count": 12, "seed": 3}, "run": {"puzzle_timeout_s": 3, "retries": 1}}

needs_qemu = pytest.mark.skipif(subprocess.run(["which", "qemu-system-arm"], capture_output=True).returncode != 0,
                                reason="qemu-system-arm is not installed")


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY_TOML = """
name = "tiny"
models = ["sudoku6-mlp"]
recipes = ["int8", "int4-naive"]
depths = ["1,1,2"]
targets = ["mps2-an386"]
[puzzles]
count = 12
seed = 3
[run]
puzzle_timeout_s = 3
retries = 1
[budgets]
min_exact_accuracy = 0.0
"""


def qemu_boards(*specs: tuple[str, str | None]) -> list[BoardSpec]:
    return [BoardSpec(i, "qemu", TARGET, {"inject": inj} if inj else {}) for i, inj in specs]


def frame(out: Path, drop_board: bool = False) -> dict[str, pd.DataFrame]:
    t = tables(load_run(out))
    if drop_board:
        t["puzzles"] = t["puzzles"].drop(columns=["board", "attempts"])
        t["profiles"] = t["profiles"].drop(columns=["board"])
    return t


TABLES = ("puzzles", "host", "configs", "profiles", "traces", "divergences", "device_fidelity")


def assert_same_tables(a: dict, b: dict, names: tuple[str, ...] = TABLES) -> None:
    for name in names:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


# --- plans ----------------------------------------------------------------------------------------
def test_the_shipped_demo_plan_loads():
    p = load_plan("demo")
    keys = [j.key for j in p.jobs()]
    assert len(keys) == len(set(keys)) >= 2 * 3 * 2 * 2     # no job twice (a repeated depth or recipe would)
    assert {"sudoku6-mlp", "sudoku6-attention"} <= set(p.models) and "fp32" in p.host_recipes


@pytest.mark.parametrize("change, message", [
    ({"recipes": ["fp16"]}, "host_recipes"),
    ({"targets": ["no-such-board"]}, "no-such-board"),
    ({"colour": "blue"}, "unknown keys"),
    ({"run": {"retry": 3}}, "unknown keys"),
    ({"budgets": {"mps3-an547": {"latency_ms": 1}}}, "does not run"),
    ({"models": []}, "non-empty"),
    ({"statistics": {"accuracy_budget": "median"}}, "accuracy_budget = 'median': expected one of 'lower_bound', 'point'"),
    ({"statistics": {"confidence": 1.5}}, r"\[statistics\]: confidence = 1.5: expected a number > 0.5 and <= 0.9999"),
    ({"statistics": {"interval_width": 0}}, "interval_width"),
    ({"run": {"profile_puzzles": -1}}, r"^bad.toml \[run\]: profile_puzzles = -1: expected an integer >= 0 and <= 100000$"),
    ({"run": {"profile_puzzles": 2.5}}, r"^bad.toml \[run\]: profile_puzzles = 2.5: expected an integer"),
    ({"run": {"profile_puzzles": True}}, r"^bad.toml \[run\]: profile_puzzles = True: expected an integer"),
    ({"run": {"profile_puzzles": "2"}}, r"^bad.toml \[run\]: profile_puzzles = '2': expected an integer"),
])
def test_a_bad_plan_says_what_is_wrong(change, message):
    with pytest.raises(PlanError, match=message):
        plan_from_dict({**TINY, **change}, "bad.toml")


def test_a_plan_profiles_two_puzzles_a_job_unless_it_says_otherwise():
    assert plan_from_dict(TINY).run.profile_puzzles == 2
    assert plan_from_dict({**TINY, "run": {"profile_puzzles": 0}}).run.profile_puzzles == 0
    assert load_plan("demo").run.profile_puzzles == 2


def test_budgets_per_target_override_the_defaults():
    p = plan_from_dict({**TINY, "budgets": {"latency_ms": 5, "min_exact_accuracy": 0.5,
                                            TARGET: {"latency_ms": 9}}})
    from harness.report.decide import budgets_for
    assert budgets_for(p.to_dict(), TARGET) == {"latency_ms": 9, "min_exact_accuracy": 0.5}
    assert budgets_for(p.to_dict(), "another") == {"latency_ms": 5, "min_exact_accuracy": 0.5}


def test_the_farm_says_how_many_puzzles_the_interval_width_needs():
    from harness.farm.scheduler import width_note
    p = plan_from_dict({**TINY, "statistics": {"interval_width": 0.2}})
    assert "needs 93 puzzles" in width_note(p, {"sudoku6-mlp": 12}) and "sudoku6-mlp runs 12" in width_note(p, {"sudoku6-mlp": 12})
    assert "every model runs 128 or more" in width_note(p, {"sudoku6-mlp": 128})


# --- the journal ----------------------------------------------------------------------------------
def test_the_journal_keeps_one_row_per_key_and_survives_reopening(tmp_path):
    with Journal.in_dir(tmp_path) as j:
        j.record("r", "job", "p1", "board_failure", None, 0, {"error": "x"})
        j.record("r", "job", "p1", "ok", "b", 2, {"correct": True})
        j.record("r", "job", "p2", "ok", "b", 1, {"correct": False})
        j.event("r", "failure", "timeout", "b", "job")
    with Journal.in_dir(tmp_path) as j:
        rows = j.results("r")
        assert [(r["puzzle_id"], r["status"]) for r in rows] == [("p1", "ok"), ("p2", "ok")]
        assert j.done("r", "job") == {"p1", "p2"}
        assert j.events("r")[0]["message"] == "timeout"
    mode = sqlite3.connect(tmp_path / "journal.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


# --- runs on QEMU ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of the tiny plan on one QEMU board."""
    if subprocess.run(["which", "qemu-system-arm"], capture_output=True).returncode != 0:
        pytest.skip("qemu-system-arm is not installed")
    out = tmp_path_factory.mktemp("reference")
    farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None)), out, log=lambda m: None)
    return out


@needs_qemu
def test_every_puzzle_runs_once_and_matches_golden(reference_run):
    t = frame(reference_run)
    p = t["puzzles"]
    assert len(p) == 2 * 12 and (p.status == "ok").all() and p.golden_match.all()
    assert p.instructions.notna().all() and (p.instructions > 0).all()
    c = t["configs"]
    assert list(c.recipe) == ["int4-naive", "int8"]
    assert (c.exact_accuracy == c.host_exact_accuracy).all()


# --- the per-operation profile of each job ---------------------------------------------------------
SMALL = {**TINY, "recipes": ["int8"], "puzzles": {"count": 4, "seed": 3}}   # one job of 4 puzzles


def _profiles_by_job(out: Path) -> dict[str, list[dict]]:
    with Journal.in_dir(out) as j:
        by_job: dict[str, list[dict]] = {}
        for r in j.profiles(j.meta("run")):
            by_job.setdefault(r["job"], []).append(r)
    return by_job


def _assert_profile_adds_up(ops: list[dict], kind: str, puzzles: int) -> None:
    """One job's profile rows: each operation once, in OPS order, the job's facts the same on every row,
    the operations' counters adding up to the total exactly, the top named by the rule."""
    assert len({r["op"] for r in ops}) == len(ops)
    assert [r["position"] for r in ops] == sorted(r["position"] for r in ops)
    for k in ("total", "total_counter", "plain_total", "marks_share", "top", "puzzles", "counts_kind", "counter_unit"):
        assert len({r[k] for r in ops}) == 1, k
    first = ops[0]
    assert first["counts_kind"] == kind and first["puzzles"] == puzzles
    assert sum(r["counter"] for r in ops) == first["total_counter"]
    assert sum(r["counts"] for r in ops) == first["total"]
    assert sum(r["share"] for r in ops) == pytest.approx(1.0)
    assert first["top"] == max((r for r in ops if r["op"] != "other"), key=lambda r: r["counts"])["op"]


@needs_qemu
def test_every_job_journals_one_profile_whose_parts_add_up_to_its_total(reference_run):
    """The tiny plan says nothing of profiles: the default profiles each job's first 2 puzzles, once,
    in emulated instructions; the plain total is those two puzzles' instructions in the results."""
    from harness.models.checkpoint import load_checkpoint
    from harness.tasks.puzzle_source import load_puzzle_source
    by_job = _profiles_by_job(reference_run)
    with Journal.in_dir(reference_run) as j:
        results = j.results(j.meta("run"))
    assert set(by_job) == {r["job"] for r in results} and len(by_job) == 2
    first_two = [p.id for p in load_puzzle_source(load_checkpoint("sudoku6-mlp")[1], "12", 3)[1][:2]]
    for job, ops in by_job.items():
        _assert_profile_adds_up(ops, "instructions", 2)
        plain = sum(r["instructions"] for r in results if r["job"] == job and r["puzzle_id"] in first_two)
        assert ops[0]["plain_total"] == plain
        assert 0 < ops[0]["marks_share"] < 0.06 and ops[0]["total"] > plain


@needs_qemu
def test_the_report_shows_each_configurations_profile_and_names_its_top_cost(reference_run):
    from harness.report.tables import KEY
    build_report(reference_run)
    md = (reference_run / "report.md").read_text()
    html = (reference_run / "report.html").read_text()
    prof = frame(reference_run)["profiles"]
    assert len(prof) and set(prof.counts_kind) == {"instructions"}
    section = md.split("## Where the counts go: per-operation profile\n", 1)[1].split("\n## ", 1)[0]
    for (m, r, d, t), g in prof.groupby(KEY):
        top = g.loc[g[g.op != "other"].counts.idxmax()]
        assert f"- top cost on {t} for {m} {r} {d}: {top.op} {top.share:.1%} (of " in section
    assert "![Per-operation profile" in section and "](plots/profile.png)" in section
    assert (reference_run / "plots" / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = "| model | recipe | depth | target | operation | calls | instructions | share | instructions_per_mac |"
    assert header in section
    assert len([x for x in section.splitlines() if x.startswith("| sudoku6-mlp |")]) == len(prof)
    assert "cycle" not in section.replace("not silicon cycles", "")    # emulated instructions, never cycles
    assert "id='where-the-counts-go-per-operation-profile'" in html and "id='plot-profile'" in html
    assert "data-table='profile-instructions'" in html


@needs_qemu
def test_a_profile_failure_is_an_event_and_a_resume_profiles_the_job_once(tmp_path, monkeypatch):
    """hang@4: the job's 4 puzzles pass, the board wedges on the first profiled run. The run goes on
    and finishes: every row kept, the failure an event, no profile; the report names the job without
    one. A resume profiles it; a second resume finds nothing to do."""
    import harness.farm.scheduler as S
    plan = plan_from_dict(SMALL, "small")
    out = tmp_path / "run"
    farm_run(plan, qemu_boards(("bad", "hang@4")), out, log=lambda m: None)
    rd = load_run(out)
    assert len(rd.results) == 4 and {r["status"] for r in rd.results} == {"ok"} and not rd.profiles
    failures = [e for e in rd.events if e["kind"] == "failure"]
    assert len(failures) == 1 and failures[0]["message"].startswith("profile of puzzles")
    assert "BoardTimeout" in failures[0]["message"]
    build_report(out)
    assert "Without a profile (1: " in (out / "report.md").read_text()
    real, calls = S.profile_puzzles, []
    monkeypatch.setattr(S, "profile_puzzles", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for _ in range(2):
        farm_run(plan, qemu_boards(("good", None)), out, resume=True, log=lambda m: None)
    assert calls == [1]
    by_job = _profiles_by_job(out)
    assert len(by_job) == 1
    _assert_profile_adds_up(next(iter(by_job.values())), "instructions", 2)
    assert len(load_run(out).results) == 4
    build_report(out)
    assert "Without a profile" not in (out / "report.md").read_text()


@needs_qemu
def test_an_answer_that_changes_under_the_profile_stops_the_run(tmp_path, monkeypatch):
    """The profile is handed the puzzles' plain rows: a profiled answer that differs from them is a
    firmware bug, not a board failure. Here the plain rows are made to say one more step."""
    from harness.farm.scheduler import FarmStopped
    real = Journal.job_results

    def one_more_step(self, run, job):
        rows = real(self, run, job)
        for r in rows.values():
            r["steps"] += 1
        return rows

    monkeypatch.setattr(Journal, "job_results", one_more_step)
    out = tmp_path / "run"
    with pytest.raises(FarmStopped, match="answers differently with PROFILE"):
        farm_run(plan_from_dict(SMALL, "small"), qemu_boards(("q1", None)), out, log=lambda m: None)
    assert not _profiles_by_job(out) and len(load_run(out).results) == 4


def test_a_host_board_journals_its_profile_as_host_ns(tmp_path):
    """The host build answers PROFILE too: its profile is journalled and shown in host-ns, its own kind."""
    from harness.report.build import Doc, _profile_blocks, to_markdown
    out = tmp_path / "run"
    farm_run(plan_from_dict({**SMALL, "run": {"profile_puzzles": 3}}, "small"), [BoardSpec("h1", "host", TARGET)],
             out, log=lambda m: None)
    [ops] = _profiles_by_job(out).values()
    _assert_profile_adds_up(ops, "host-ns", 3)
    assert {r["counter_unit"] for r in ops} == {"ns"} and {r["backend"] for r in ops} == {"host"}
    rd = load_run(out)
    doc = Doc()
    _profile_blocks(doc, tables(rd), rd, tmp_path)
    md = to_markdown(doc)
    assert "| operation | calls | host-ns | share | host-ns_per_mac |" in md
    assert "host-ns per puzzle over 3 puzzle(s)" in md and "instructions" not in md
    # the whole report of a host-board run: host-ns counts have no energy proxy, which the decision
    # text says instead of formatting a missing number
    from harness.report.build import build_report
    build_report(out)
    report = (out / "report.md").read_text()
    assert "no energy proxy" in report and "nan uJ" not in report


def test_a_board_that_needs_longer_to_start_than_the_plan_gives_gets_its_own_start_timeout(tmp_path, monkeypatch):
    """The plan's `[run] start_timeout_s` is a floor, the board's own start-up timeout (an inventory's
    `start_timeout`, else its backend's default, as Renode's 120 s) counts where it is longer: the farm
    used to start every board with the plan's alone. Seen at the board's `start`, on host boards."""
    import harness.boards.factory as factory
    from harness.boards.host import HostBoard
    from harness.boards.inventory import load_inventory
    inventory = write_toml(tmp_path / "boards.toml", """
[[board]]
id = "slow"
backend = "host"
target = "mps2-an386"
start_timeout = 90
[[board]]
id = "quick"
backend = "host"
target = "mps2-an500"
start_timeout = 5
[[board]]
id = "default"
backend = "host"
target = "netduinoplus2"
""")
    monkeypatch.setattr(HostBoard, "start_timeout", 60.0)     # a backend whose default is longer than the plan's
    real, started = factory.make_board, {}

    def make_board(*args, **kw):
        board = real(*args, **kw)
        start = board.start

        def spy(timeout=None):
            started[board.id] = timeout
            start(timeout)
        board.start = spy
        return board

    monkeypatch.setattr(factory, "make_board", make_board)
    plan = plan_from_dict({**SMALL, "targets": ["mps2-an386", "mps2-an500", "netduinoplus2"],
                           "puzzles": {"count": 1, "seed": 3},
                           "run": {"start_timeout_s": 30, "profile_puzzles": 0, "trace": "off"}}, "small")
    farm_run(plan, load_inventory(inventory), tmp_path / "run", log=lambda m: None)
    assert started == {"slow": 90.0, "quick": 30, "default": 60.0}
    assert {r["status"] for r in load_run(tmp_path / "run").results} == {"ok"}


@needs_qemu
def test_two_runs_of_a_plan_on_emulators_give_identical_tables(reference_run, tmp_path):
    farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None)), tmp_path, log=lambda m: None)
    assert_same_tables(frame(reference_run), frame(tmp_path))


def _cli_run(out: Path, plan: Path, inventory: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "harness.cli", "farm", "run", "--plan", str(plan), "--inventory", str(inventory),
           "--out", str(out), "--no-report"] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    plan = write_toml(d / "tiny.toml", TINY_TOML)
    inventory = write_toml(d / "inv.toml", f'[[board]]\nid = "q1"\nbackend = "qemu"\ntarget = "{TARGET}"\n')
    return plan, inventory


@needs_qemu
def test_the_cli_farm_run_gives_the_same_tables(reference_run, cli_files, tmp_path):
    out = tmp_path / "run"
    proc = _cli_run(out, *cli_files, resume=False)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    assert_same_tables(frame(reference_run), frame(out))


def _rows_in(out: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


@needs_qemu
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_killed_run_resumes_to_the_same_table(reference_run, cli_files, tmp_path, seed):
    """SIGKILL the whole process group (harness and its QEMU) at random moments, resume until the run
    finishes: the tables equal the uninterrupted run's, no row lost, none twice. Each kill comes either
    at a random time in the first seconds (start-up, export, host figures) or once the journal holds a
    random number of device rows (mid-run)."""
    rng = random.Random(seed)
    out = tmp_path / "run"
    kills, total = 0, 2 * 12
    for attempt in range(12):
        # resume once a journal exists: a kill before it left nothing to resume (--resume is refused there)
        proc = _cli_run(out, *cli_files, resume=(out / "journal.sqlite").exists())
        if kills < 3:
            early = rng.random() < 0.3
            deadline = time.monotonic() + (rng.uniform(0.2, 2.5) if early else 300)
            before = _rows_in(out)
            at_rows = before + rng.randint(1, 6)
            # an early kill comes at its random time or, on a run quicker than that, as the first device
            # row lands (a resumed run can finish within the window)
            while proc.poll() is None and time.monotonic() < deadline and (
                    _rows_in(out) == before if early else _rows_in(out) < min(at_rows, total)):
                time.sleep(0.01)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        proc.wait(timeout=300)
        assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
        break
    else:
        pytest.fail("the run did not finish in 12 attempts")
    assert kills == 3
    with Journal.in_dir(out) as j:
        assert j.meta("finished")
        assert len(j.results(j.meta("run"))) == total
    assert_same_tables(frame(reference_run), frame(out))


@needs_qemu
@pytest.mark.parametrize("fault, quarantined", [("hang@5", False), ("hang@0", True), ("garbage@1", True)])
def test_a_failing_board_is_reset_or_quarantined_and_nothing_is_lost(reference_run, tmp_path, fault, quarantined):
    """hang@5 wedges after five puzzles of every start: a reset recovers it (two failures, under the
    quarantine threshold of three). hang@0 never answers and garbage@1 fails every second puzzle: both
    are quarantined and the good board finishes their job."""
    out = tmp_path / "run"
    farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("bad", fault), ("good", None)), out, log=lambda m: None)
    rd = load_run(out)
    kinds = [e["kind"] for e in rd.events if e["board"] == "bad"]
    assert "failure" in kinds and ("quarantine" in kinds) == quarantined
    assert not [e for e in rd.events if e["board"] == "good"]
    ref, got = frame(reference_run, drop_board=True), frame(out, drop_board=True)
    assert_same_tables(ref, got, TABLES[:4])
    # a trace the fault cut short is left to --resume; every cycle that was traced is the reference's
    assert len(got["traces"]) and (got["traces"].merge(ref["traces"], how="left", indicator=True)._merge == "both").all()
    report = build_report(out)
    md = (out / "report.md").read_text()
    assert "## Board failures" in md and ("quarantine" in md) == quarantined
    assert report.decisions[0].recommended is not None


@needs_qemu
def test_with_no_healthy_board_left_puzzles_are_board_failures_never_wrong_answers(tmp_path):
    out = tmp_path / "run"
    plan = plan_from_dict({**TINY, "recipes": ["int8"]}, "tiny")
    farm_run(plan, qemu_boards(("bad", "garbage@0")), out, log=lambda m: None)
    p = frame(out)["puzzles"]
    assert (p.status == "board_failure").sum() == 12
    assert "correct" not in p            # a board failure is never scored as a wrong answer
    r = build_report(out)
    assert r.decisions[0].recommended is None
    assert "board failures" in (out / "report.md").read_text()
    # a resumed run with a healthy board finishes the job
    farm_run(plan, qemu_boards(("good", None)), out, resume=True, log=lambda m: None)
    p = frame(out)["puzzles"]
    assert (p.status == "ok").all() and len(p) == 12


@needs_qemu
def test_a_blob_too_big_for_the_target_is_reported_as_not_fitting(tmp_path, monkeypatch):
    import dataclasses

    import harness.farm.scheduler as S
    from harness.targets import Layout, Region, load_target

    def small(name):
        t = load_target(name)
        return dataclasses.replace(t, layout=Layout(Region(t.blob.origin, 30_000), t.arena))   # int8 (36 KB) no, int4 (22 KB) yes

    monkeypatch.setattr(S, "load_target", small)
    out = tmp_path / "run"
    farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None)), out, log=lambda m: None)
    p = frame(out)["puzzles"]
    assert set(p[p.recipe == "int8"].status) == {"does_not_fit"} and set(p[p.recipe == "int4-naive"].status) == {"ok"}
    r = build_report(out)
    assert [(x["recipe"], x["why"].split(" (")[0]) for x in r.decisions[0].not_fitting] == [("int8", "does not fit flash")]
    assert r.decisions[0].recommended["recipe"] == "int4-naive"


@needs_qemu
def test_a_run_folder_is_not_overwritten_without_resume(reference_run):
    from harness.farm.scheduler import FarmError
    with pytest.raises(FarmError, match="--resume"):
        farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None)), reference_run, log=lambda m: None)


@needs_qemu
def test_the_baseline_gate_passes_a_rerun_and_flags_a_regression(reference_run, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    rerun = tmp_path / "rerun"
    farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None)), rerun, log=lambda m: None)
    ok = CliRunner().invoke(app, ["report", str(rerun), "--baseline", str(reference_run)])
    assert ok.exit_code == 0, ok.output
    assert "no regression" in ok.output
    # inject a real regression: every int8 puzzle loses cells and its solution, and takes 20 % more
    # instructions (the gate's paired tests must see it, not only its thresholds)
    db = sqlite3.connect(rerun / "journal.sqlite")
    rows = db.execute("SELECT job, puzzle, row FROM results WHERE job LIKE '%|int8|%' ORDER BY puzzle").fetchall()
    import json
    for job, puzzle, row in rows:
        r = json.loads(row)
        r["cell_accuracy"] -= 0.5
        r["correct"] = False
        r["instructions"] = int(r["instructions"] * 1.2)
        db.execute("UPDATE results SET row = ? WHERE job = ? AND puzzle = ?", (json.dumps(r), job, puzzle))
    db.commit()
    db.close()
    bad = CliRunner().invoke(app, ["report", str(rerun), "--baseline", str(reference_run)])
    assert bad.exit_code == 1, bad.output
    assert "cell_accuracy" in bad.output and "latency_ms" in bad.output and "int8" in bad.output


# --- one definition per figure: harness run and the report agree --------------------------------------------
FIGURES = ("exact_accuracy", "cell_accuracy", "mean_steps", "golden_match", "counts_kind", "counts_mean", "counts_max",
           "latency_ms", "latency_basis", "energy_uj", "energy_model", "blob_bytes", "blob_region", "firmware_flash",
           "flash_total", "flash_limit", "ram_static", "ram_limit", "stack_bytes_max", "stack_reservation",
           "ram_inference_peak", "ram_theoretical_min", "ram_peak_over_min", "arena_bytes_max", "flash_bytes_read_mean",
           "fits_flash", "fits_ram", "fits", "does_not_fit")


@needs_qemu
def test_harness_run_and_the_report_give_the_same_figures_for_a_configuration(reference_run):
    """The same configuration (sudoku6-mlp int8 T1n1s2 on mps2-an386, the plan's 12 puzzles) through
    `harness run --json` and through the farm and the report: every deployment figure is equal."""
    import json

    from typer.testing import CliRunner

    from harness.cli import app
    r = CliRunner().invoke(app, ["run", "--board", "qemu", "--target", TARGET, "--model", "sudoku6-mlp", "--recipe",
                                 "int8", "--depth", "1,1,2", "--puzzles", "12", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout.strip().splitlines()[-1])["summary"]
    c = frame(reference_run)["configs"]
    report = c[(c.recipe == "int8") & (c.depth == "T1n1s2")].iloc[0].to_dict()
    for name in FIGURES:
        got, want = run[name], report[name]
        if want is None or (isinstance(want, float) and pd.isna(want)):
            assert got is None, name
        else:
            assert got == (want.item() if hasattr(want, "item") else want), (name, got, want)


# --- what is not a board failure stops the run ------------------------------------------------------------------
def _qemu_children() -> list[int]:
    """QEMU processes whose parent is this test process (the boards it started)."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "qemu-system-arm"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@needs_qemu
def test_an_error_that_is_no_board_failure_stops_the_run_and_every_board(tmp_path, monkeypatch):
    """A bug in the per-puzzle path (an injected ValueError after 3 puzzles, on one of two boards): the run
    stops with it (FarmStopped names it), rows journalled before it stay, no row is board_failure, no
    board was quarantined and no QEMU is left running."""
    import harness.farm.scheduler as S
    from harness.farm.scheduler import FarmStopped
    real, calls = S.puzzle_row, []

    def buggy(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise ValueError("a bug in the harness")
        return real(*a, **kw)

    monkeypatch.setattr(S, "puzzle_row", buggy)
    out = tmp_path / "run"
    with pytest.raises(FarmStopped, match="ValueError: a bug in the harness"):
        farm_run(plan_from_dict(TINY, "tiny"), qemu_boards(("q1", None), ("q2", None)), out, log=lambda m: None)
    assert _qemu_children() == []
    with Journal.in_dir(out) as j:
        results = j.results(j.meta("run"))
        kinds = [e["kind"] for e in j.events(j.meta("run"))]
    assert results and {r["status"] for r in results} == {"ok"}
    assert "error" in kinds and "quarantine" not in kinds and "failure" not in kinds


@needs_qemu
def test_a_missing_firmware_stops_the_run_without_board_failures(tmp_path):
    from harness.farm.scheduler import FarmStopped
    boards = [BoardSpec("q1", "qemu", TARGET, {"firmware": str(tmp_path / "no-such.elf")})]
    out = tmp_path / "run"
    with pytest.raises(FarmStopped, match="no-such.elf"):
        farm_run(plan_from_dict(TINY, "tiny"), boards, out, log=lambda m: None)
    with Journal.in_dir(out) as j:
        assert not [r for r in j.results(j.meta("run")) if r["status"] == "board_failure"]
    assert _qemu_children() == []


@needs_qemu
@pytest.mark.parametrize("trial", range(3))
def test_emulators_die_with_a_killed_harness(tmp_path, trial):
    """SIGKILL to the harness process alone (not its group): its QEMU gets SIGKILL from the kernel."""
    cmd = [sys.executable, "-m", "harness.cli", "run", "--board", "qemu", "--model", "sudoku6-mlp", "--puzzles", "200",
           "--depth", "2,3,8", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, qemu = time.monotonic() + 120, []
    while not qemu and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        qemu = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "qemu-system-arm"], capture_output=True,
                              text=True).stdout.split()
    assert qemu, "the harness started no QEMU"
    time.sleep(random.Random(trial).uniform(0.1, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{qemu[0]}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{qemu[0]}"), f"QEMU {qemu[0]} outlived the harness"


@needs_qemu
def test_a_blob_the_firmware_refuses_stops_the_run_with_its_error(tmp_path, monkeypatch):
    """A blob whose bytes changed after export (the host's golden model is still the good one): every
    board answers BLOB_CRC, which no reset cures, so the run stops at once with it, no board_failure."""
    import harness.farm.scheduler as S
    from harness.farm.scheduler import FarmStopped
    real = S.Prepared.export_all

    def export_all(self, progress=None):
        real(self, progress)
        bi = self.blobs[("sudoku6-mlp", "int8")]
        bad = bytearray(bi.blob)
        bad[len(bad) // 2] ^= 0x40
        bi.blob = bytes(bad)

    monkeypatch.setattr(S.Prepared, "export_all", export_all)
    out = tmp_path / "run"
    plan = plan_from_dict({**TINY, "recipes": ["int8"]}, "tiny")
    with pytest.raises(FarmStopped, match="BLOB"):
        farm_run(plan, qemu_boards(("q1", None), ("q2", None)), out, log=lambda m: None)
    with Journal.in_dir(out) as j:
        run = j.meta("run")
        assert not j.results(run) and "quarantine" not in [e["kind"] for e in j.events(run)]
    assert _qemu_children() == []
