"""Bad input from users: every case is one line naming the file or option and what is expected, a
non-zero exit, no traceback, and nothing lost or written where it should not be (issue 11, item 8)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.farm.journal import Journal
from harness.farm.plan import load_plan
from harness.models.checkpoint import ZOO
from harness.tasks import make_task, score, stack
from harness.tasks.files import read_puzzles, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sudoku6-mlp"

PLAN = """
name = "tiny"
models = ["sudoku6-mlp"]
recipes = ["int8"]
depths = ["1,1,2"]
targets = ["mps2-an386"]
[puzzles]
{puzzles}
[run]
puzzle_timeout_s = 3
"""
COUNT = "count = 4\nseed = 3"
HOST_INVENTORY = '[[board]]\nid = "h1"\nbackend = "host"\ntarget = "mps2-an386"\n'


def cli(*args, ok: bool = False):
    """The CLI in-process; unless ``ok``, it must fail with one 'error:' line and no traceback."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output
        return r
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def harness(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a separate process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def sudoku_file(path: Path, n: int = 4, seed: int = 3) -> Path:
    task = make_task("sudoku", size=6)
    write_jsonl(path, task, task.generate(n, seed=seed, split="test"))
    return path


# --- farm plans: validated whole, before anything is written -------------------------------------
@pytest.mark.parametrize("change, message", [
    (("count = 4", 'count = "four"'), "tiny.toml [puzzles]: count = 'four': expected an integer >= 1"),
    (("count = 4", "count = 100000000"), "count = 100000000: expected an integer >= 1 and <= 100000"),
    (("puzzle_timeout_s = 3", 'puzzle_timeout_s = "sixty"'),
     "tiny.toml [run]: puzzle_timeout_s = 'sixty': expected a number > 0"),
    (("puzzle_timeout_s = 3", "retries = -1"), "tiny.toml [run]: retries = -1: expected an integer >= 0"),
    (("puzzle_timeout_s = 3", 'check = "yes"'), "tiny.toml [run]: check = 'yes': expected a boolean"),
    (('["sudoku6-mlp"]', '["sudoku7-nope"]'), "tiny.toml: models: no checkpoint at 'sudoku7-nope'"),
    (('"1,1,2"', '"1,x,2"'), "tiny.toml: depths[0]"),
    pytest.param(('"1,1,2"', '"99,1,2"'), "tiny.toml: depths[0] '99,1,2': T 99 > 16",
                 marks=pytest.mark.skipif(importlib.util.find_spec("harness.depth") is None,
                                          reason="depth bounds come with harness/depth.py")),
    (('"1,1,2"', "2"), "tiny.toml: depths[0] = 2: expected a string"),
    (("count = 4", 'file = "missing.jsonl"'), "tiny.toml [puzzles]: file = 'missing.jsonl' does not exist"),
    (("seed = 3", 'seed = 3\nfile = "p.jsonl"'), "give either count (generated puzzles) or file, not both"),
])
def test_a_bad_plan_fails_before_the_run_folder_exists(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    sudoku_file(tmp_path / "p.jsonl")
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN.format(puzzles=COUNT).replace(*change))
    err = cli("farm", "run", "--plan", plan.name, "--out", "run", "--no-report")
    assert message in err
    assert not (tmp_path / "run").exists()


def test_a_plan_puzzle_file_that_does_not_parse_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = sudoku_file(tmp_path / "p.jsonl").read_text().splitlines()
    rec = json.loads(good[1])
    rec["input"] = "7" + rec["input"][1:]
    (tmp_path / "p.jsonl").write_text("\n".join([good[0], json.dumps(rec), *good[2:]]) + "\n")
    (tmp_path / "tiny.toml").write_text(PLAN.format(puzzles='file = "p.jsonl"'))
    err = cli("farm", "run", "--plan", "tiny.toml", "--out", "run", "--no-report")
    assert "tiny.toml [puzzles]: file = 'p.jsonl' does not suit model sudoku6-mlp (sudoku): p.jsonl:2: field " \
           "'input': cell 1 (row 1, column 1) is '7'" in err
    assert not (tmp_path / "run").exists()


def test_a_plan_model_with_corrupt_weights_fails_before_the_run_folder_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ZOO / MODEL, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "tiny.toml").write_text(PLAN.format(puzzles=COUNT).replace('["sudoku6-mlp"]', '["m"]'))
    err = cli("farm", "run", "--plan", "tiny.toml", "--out", "run", "--no-report")
    assert err.startswith("error: tiny.toml: models: m/model.safetensors is not a readable safetensors file (")
    assert not (tmp_path / "run").exists()


def test_a_bad_plan_through_a_real_process_is_one_line(tmp_path):
    (tmp_path / "tiny.toml").write_text(PLAN.format(puzzles='count = "four"'))
    r = harness("farm", "run", "--plan", "tiny.toml", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # one line however narrow the terminal, and '[puzzles]' printed as written (not taken for markup)
    assert r.stderr.strip() == ("error: tiny.toml [puzzles]: count = 'four': expected an integer >= 1 "
                                "and <= 100000"), r.stderr
    assert not (tmp_path / "run").exists()


# --- the run folder --------------------------------------------------------------------------------
@pytest.fixture
def farm_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(PLAN.format(puzzles=COUNT))
    (tmp_path / "inv.toml").write_text(HOST_INVENTORY)
    return tmp_path


def farm(*args):
    return cli("farm", "run", "--plan", "tiny.toml", "--inventory", "inv.toml", "--no-report", *args)


def test_an_out_that_is_a_file_or_under_one_is_named(farm_dir):
    (farm_dir / "afile").write_text("x")
    assert farm("--out", "afile") == "error: --out afile is a file, not a folder: choose a folder (it is created when missing)"
    assert farm("--out", "afile/sub/run") == ("error: --out afile/sub/run: afile is a file, so the folder cannot "
                                              "be created there")
    assert farm("--out", "/proc/no-such/run").startswith("error: --out /proc/no-such/run: cannot create the run folder")


def test_resume_of_a_folder_that_does_not_exist_is_refused_and_creates_nothing(farm_dir):
    assert farm("--out", "nothing-here", "--resume") == (
        "error: --resume: nothing-here does not exist, so there is nothing to resume: leave out --resume to "
        "start a new run there")
    assert not (farm_dir / "nothing-here").exists()
    (farm_dir / "empty").mkdir()
    assert "--resume: empty holds no run (journal.sqlite not found)" in farm("--out", "empty", "--resume")


def test_a_corrupt_journal_is_named(farm_dir):
    (farm_dir / "run").mkdir()
    (farm_dir / "run" / "journal.sqlite").write_bytes(b"not a database, " * 100)
    err = farm("--out", "run", "--resume")
    assert err.startswith("error: run/journal.sqlite is not a journal this harness can open (file is not a database)")


def started_run(farm_dir: Path, plan: str) -> Path:
    """A folder holding a run of ``plan`` that has started (what a killed run leaves)."""
    p = load_plan(plan)
    with Journal.in_dir(farm_dir / "run") as j:
        j.set_metas({"run": "run-1", "plan": p.to_dict(), "plan_digest": p.digest()})
    return farm_dir / "run"


def test_a_resume_whose_puzzle_file_changed_is_refused(farm_dir):
    sudoku_file(farm_dir / "p.jsonl", seed=3)
    (farm_dir / "tiny.toml").write_text(PLAN.format(puzzles='file = "p.jsonl"'))
    started_run(farm_dir, "tiny.toml")
    sudoku_file(farm_dir / "p.jsonl", seed=4)          # other puzzles, same file name, same plan text
    err = farm("--out", "run", "--resume")
    assert err.startswith("error: --resume: the puzzle file p.jsonl changed since run-1 started (sha256 ")
    assert "a resume would mix two puzzle sets; restore the file" in err
    # and the digest itself differs, so a direct farm_run (no CLI) refuses it too
    assert load_plan("tiny.toml").digest() != Journal.in_dir(farm_dir / "run").meta("plan_digest")


def test_a_resume_of_another_plan_says_which_keys_differ(farm_dir):
    started_run(farm_dir, "tiny.toml")
    (farm_dir / "tiny.toml").write_text(PLAN.format(puzzles=COUNT).replace('"1,1,2"', '"1,1,3"'))
    err = farm("--out", "run", "--resume")
    assert err == ("error: --resume: run holds run run-1 of a different plan (depths differ): --resume needs "
                   "the same plan, or choose a new --out")
    assert "already holds run run-1: rerun with --resume" in farm("--out", "run")


def test_a_second_process_on_a_folder_is_told_who_holds_it(farm_dir):
    started_run(farm_dir, "tiny.toml")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.farm.folder import lock_folder\n"
         "with lock_folder('run', 'harness farm run --out run --resume'):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        cwd=farm_dir, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = farm("--out", "run", "--resume")
        assert err.startswith(f"error: run is in use by another farm run (pid {holder.pid}, "
                              "'harness farm run --out run --resume', since ")
        assert "lock run/farm.lock): wait for it to finish" in err
    finally:
        holder.kill()
        holder.wait()
    from harness.farm.folder import lock_folder
    with lock_folder(farm_dir / "run"):     # the lock goes with the process, however it ends
        pass


def test_a_run_killed_between_its_id_and_its_digest_starts_afresh(tmp_path):
    with Journal.in_dir(tmp_path) as j:
        j.set_meta("run", "run-1")           # what the scheduler's first write leaves behind
        j.set_meta("command", "harness farm run …")
    with Journal.in_dir(tmp_path) as j:
        assert j.meta("run") is None and j.meta("command") == "harness farm run …"
    with Journal.in_dir(tmp_path) as j:      # a run with results is never dropped
        j.set_meta("run", "run-2")
        j.record("run-2", "job", "p1", "ok", "b", 1, {})
    with Journal.in_dir(tmp_path) as j:
        assert j.meta("run") == "run-2"


def test_meta_keys_written_together_land_together(tmp_path):
    with Journal.in_dir(tmp_path) as j:
        with pytest.raises(TypeError):
            j.set_metas({"run": "run-1", "plan": {"bad": object()}})
        assert j.meta("run") is None
        j.set_metas({"run": "run-1", "plan_digest": "abc"})
        assert (j.meta("run"), j.meta("plan_digest")) == ("run-1", "abc")


# --- model folders -----------------------------------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(ZOO / MODEL, folder)
    return folder


def eval_error(folder: Path) -> str:
    return cli("eval", "--model", folder, "--puzzles", "2")


def test_a_random_or_truncated_weights_file_is_named(model_dir):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    err = eval_error(model_dir)
    assert err.startswith(f"error: {weights} is not a readable safetensors file (")
    assert err.endswith(f"it is truncated or corrupt; restore it (or retrain into {model_dir})")
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    assert eval_error(model_dir).startswith(f"error: {weights} is not a readable safetensors file (")


def test_weights_of_another_model_are_named_with_the_tensor(model_dir):
    shutil.copy(ZOO / "sudoku6-attention" / "model.safetensors", model_dir / "model.safetensors")
    err = eval_error(model_dir)
    assert err.startswith(f"error: {model_dir / 'model.safetensors'} lacks ")
    assert "the weights belong to another model; model.safetensors and config.json must come from the same" in err
    config = json.loads((ZOO / MODEL / "config.json").read_text())
    config["model"]["hidden"] //= 2
    shutil.copy(ZOO / MODEL / "model.safetensors", model_dir / "model.safetensors")
    (model_dir / "config.json").write_text(json.dumps(config))
    err = eval_error(model_dir)
    assert f"error: {model_dir / 'model.safetensors'}: tensor " in err
    assert "but config.json describes" in err


def test_a_random_or_foreign_config_is_named(model_dir):
    config = model_dir / "config.json"
    config.write_bytes(bytes(range(128, 256)) * 4)
    assert eval_error(model_dir).startswith(f"error: {config} is not text (not UTF-8)")
    config.write_text("{nope")
    assert eval_error(model_dir).startswith(f"error: {config} is not valid JSON (")
    config.write_text(json.dumps({"name": "x"}))
    assert eval_error(model_dir).startswith(f"error: {config}: expected a JSON object with 'model' and 'task'")


# --- the blob cache ----------------------------------------------------------------------------------
def test_a_corrupt_blob_cache_entry_is_named_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    cli("export", "--model", MODEL, "--recipe", "int8", "--out", tmp_path / "a.bin", ok=True)
    (entry,) = (tmp_path / "cache" / "blobs").glob("*.bin")
    good = entry.read_bytes()
    entry.write_bytes(good[:100] + bytes(len(good) - 100))
    r = cli("export", "--model", MODEL, "--recipe", "int8", "--out", tmp_path / "b.bin", ok=True)
    assert f"warning: blob cache entry {entry} is unusable (BLOB_CRC: CRC-32 mismatch: the blob is corrupt): " \
        "rebuilding it\n" in r.stderr
    assert (tmp_path / "b.bin").read_bytes() == good == entry.read_bytes()


# --- puzzle files --------------------------------------------------------------------------------------
def test_puzzle_file_errors_name_the_file_the_line_and_the_field(tmp_path):
    good = sudoku_file(tmp_path / "p.jsonl").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    cases = [
        ({"input": None}, "bad.jsonl:2: field 'input' is null: it must hold the puzzle"),
        ({"input": "7" + "." * 35, "solution": None},
         "bad.jsonl:2: field 'input': cell 1 (row 1, column 1) is '7': a 6x6 sudoku has the digits 1..6 and '.' "
         "or 0 for a blank"),
        ({"input": "x" + "." * 35}, "cell 1 (row 1, column 1) is 'x'"),
        ({"input": "." * 35}, "bad.jsonl:2: field 'input' has 35 cells, a 6x6 sudoku has 36"),
        ({"input": 5}, "bad.jsonl:2: field 'input' is int: expected a string of 36 cells"),
        ({"meta": [1]}, "bad.jsonl:2: field 'meta' is list: expected a JSON object"),
    ]
    for change, message in cases:
        rec = {**json.loads(good[1]), **change}
        bad.write_text("\n".join([good[0], json.dumps(rec)]) + "\n")
        err = cli("eval", "--model", MODEL, "--puzzles", bad)
        assert message in err and str(bad) in err, err
    rec = json.loads(good[0])
    del rec["input"]
    bad.write_text(json.dumps(rec) + "\n")
    assert "bad.jsonl:1: field 'input' is missing" in cli("eval", "--model", MODEL, "--puzzles", bad)


def test_a_binary_puzzle_file_is_named(tmp_path):
    bad = tmp_path / "noise.jsonl"
    bad.write_bytes(b"\x86\xff\x00" * 100)
    assert cli("eval", "--model", MODEL, "--puzzles", bad) == (
        f"error: {bad}:1: a NUL byte: this is a binary file, not JSON lines")
    bad.write_bytes(b'\n\xff\xfe\n')
    assert f"error: {bad}:2: not UTF-8 text (byte 0xff at column 1): expected JSON lines" == \
        cli("eval", "--model", MODEL, "--puzzles", bad)
    csv = tmp_path / "noise.csv"
    csv.write_bytes(b"source,q,a,rating\n\xff\n")
    assert cli("eval", "--model", MODEL, "--puzzles", csv).startswith(f"error: {csv}:2: not UTF-8 text")


def test_duplicate_puzzle_ids_are_refused_with_both_lines(tmp_path):
    lines = sudoku_file(tmp_path / "p.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    recs[3]["id"] = recs[1]["id"]
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert cli("eval", "--model", MODEL, "--puzzles", dup) == (
        f"error: {dup}: lines 2 and 4 both have id {recs[1]['id']!r}: puzzle ids must be unique in a file "
        "(results are kept per id); rename one")


def test_a_huge_count_is_refused_at_once(tmp_path):
    t0 = time.monotonic()
    err = cli("eval", "--model", MODEL, "--puzzles", "100000000")
    assert err.startswith("error: --puzzles 100000000: at most 100,000 puzzles are generated on the fly; for more, "
                          "write them once with `harness puzzles --task sudoku --n 100000000 --out FILE.jsonl`")
    assert time.monotonic() - t0 < 60


def test_reading_a_file_runs_no_solver_when_solutions_are_given(tmp_path, monkeypatch):
    path = sudoku_file(tmp_path / "p.jsonl", n=6)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    for r in recs:
        r["meta"].pop("difficulty")
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    import harness.tasks.sudoku as S

    def no_solver(*a, **k):
        raise AssertionError("the solver ran while reading")
    monkeypatch.setattr(S, "solve", no_solver)
    monkeypatch.setattr(S, "difficulty_guesses", no_solver)
    task, puzzles = read_puzzles(path)
    assert len(puzzles) == 6 and all("difficulty" not in p.meta for p in puzzles)
    monkeypatch.undo()
    assert all(task.difficulty(p) >= 0 for p in puzzles)       # on demand


# --- scoring: by the rules where a task has them -------------------------------------------------------
SOLUTION_A = "1234341221434321"
SOLUTION_B = "2134341212434321"    # the top-left 2x2 swap: rows 1 and 3, columns 1 and 2 stay valid


def test_a_sudoku_with_two_solutions_scores_the_same_whichever_the_file_lists():
    task = make_task("sudoku", size=4)
    given = "".join("." if i in (0, 1, 8, 9) else c for i, c in enumerate(SOLUTION_A))
    from harness.tasks.sudoku import solve
    assert len(solve(task.parse_grid(given), 4, limit=3)[0]) == 2
    lists_a = task.from_record({"id": "a", "input": given, "solution": SOLUTION_A})
    lists_b = task.from_record({"id": "b", "input": given, "solution": SOLUTION_B})
    predictions = np.array([lists_a.labels, lists_b.labels])      # the model answers A, then B
    for listed in (lists_a, lists_b):
        x, y = stack([listed, listed])
        s = score(task, x, y, predictions)
        assert s["exact"].tolist() == [True, True] and s["cell_accuracy"] == 1.0
    wrong = np.array([lists_a.labels])
    wrong[0, 0] = wrong[0, 1]                                    # a repeated digit in row 1
    x, y = stack([lists_a])
    assert score(task, x, y, wrong)["exact"].tolist() == [False]


def test_a_maze_with_two_shortest_paths_is_refused_on_read():
    task = make_task("maze", size=5)
    with pytest.raises(ValueError, match="maze 'loop' has 2 shortest paths from S to G: .* exactly one"):
        task.from_record({"id": "loop", "input": "S..../.###./.###./.###./....G"})
