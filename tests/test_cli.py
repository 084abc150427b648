import json

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "sudoku4"
    r = invoke("train", "--task", "sudoku", "--size", "4", "--out", out, "--hidden", "16", "--layers", "1",
               "--T", "1", "--n", "2", "--n-sup", "2", "--iterations", "40", "--train-puzzles", "32",
               "--eval-every", "20", "--eval-puzzles", "16", "--warmup", "5")
    assert r.exit_code == 0, r.output
    return out


def test_eval_json_on_generated_puzzles_and_a_foreign_file(tiny_checkpoint, tmp_path):
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", "20", "--depth", "1,2,3", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["puzzles"] == res["puzzle_set"]["count"] == 20 and len(res["per_step"]) == 3
    assert 0.0 <= res["exact_accuracy"] <= 1.0 and 0.0 <= res["cell_accuracy"] <= 1.0
    assert res["macs_per_inference"] > 0 and res["params"] > 0
    # a CSV made by someone else, '0' for blanks, no solution column values
    csv = tmp_path / "theirs.csv"
    csv.write_text("source,q,a,rating\nme,1030040220000001,,0\nme,1004300220430021,,1\n")
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", csv, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["puzzle_set"]["count"] == 2 and res["puzzle_set"]["kind"] == "file"
    # a file's puzzles are not solved for their difficulty (a large file would take hours); givens are counted
    assert res["difficulty"]["rated"] == 0 and "mean" not in res["difficulty"]
    assert res["difficulty"]["givens"] == {"min": 6, "mean": 7.5, "max": 9}


def test_eval_gives_arc_puzzle_exact_per_family_with_intervals():
    """The zoo's arc1x12-mlp on 70 generated puzzles: one row per family, counts that add up, and the
    overall puzzle-exact is the families' pooled."""
    r = invoke("eval", "--model", "arc1x12-mlp", "--puzzles", "70", "--depth", "1,1,2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    fam = res["by_family"]
    assert len(fam) >= 5 and sum(f["puzzles"] for f in fam.values()) == 70
    assert abs(sum(f["exact_accuracy"] * f["puzzles"] for f in fam.values()) / 70 - res["exact_accuracy"]) < 1e-9
    assert all(f["exact_accuracy_lo"] <= f["exact_accuracy"] <= f["exact_accuracy_hi"] for f in fam.values())


def test_eval_writes_a_model_card(tiny_checkpoint):
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", "10", "--write-card")
    assert r.exit_code == 0, r.output
    card = json.loads((tiny_checkpoint / "card.json").read_text())
    assert card["evaluation"]["puzzle_set"]["count"] == 10
    assert card["training"]["commands"][0].startswith("harness train --task sudoku")
    assert "puzzle-exact accuracy" in (tiny_checkpoint / "card.md").read_text()


def test_a_card_keeps_an_evaluation_at_another_difficulty_beside_its_own(tiny_checkpoint):
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", "12", "--write-card")
    assert r.exit_code == 0, r.output
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", "12", "--task-param", "min_givens=10",
               "--write-card", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["puzzle_set"]["task_params"] == {"min_givens": 10}
    assert res["difficulty"]["givens"]["min"] >= 10 and res["difficulty"]["measure"] == "solver guesses"
    card = json.loads((tiny_checkpoint / "card.json").read_text())
    assert card["evaluation"]["puzzle_set"].get("task_params") is None    # its own difficulty stays the card's
    assert card["evaluation"]["difficulty"]["givens"]["max"] < 10        # a 4x4 at min_givens 0 keeps few
    other = card["other_evaluations"]["generated min_givens=10"]
    assert other["exact_accuracy_lo"] <= other["exact_accuracy"] <= other["exact_accuracy_hi"]
    md = (tiny_checkpoint / "card.md").read_text()
    assert "| difficulty | givens" in md and "min_givens=10 (givens" in md and "Wilson" in md


def test_eval_task_params_that_cannot_apply_are_refused(tiny_checkpoint, tmp_path):
    r = invoke("eval", "--model", tiny_checkpoint, "--task-param", "givens=3")
    assert r.exit_code == 2 and "'givens': sudoku has min_givens, size" in r.output
    r = invoke("eval", "--model", tiny_checkpoint, "--task-param", "size=6")
    assert r.exit_code == 2 and "change the vocab_size from 6 to 8" in r.output
    csv = tmp_path / "theirs.csv"
    csv.write_text("source,q,a,rating\nme,1030040220000001,,0\n")
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", csv, "--task-param", "min_givens=10")
    assert r.exit_code == 2 and "are read as they are" in r.output


def test_puzzles_command_and_clear_errors(tiny_checkpoint, tmp_path):
    out = tmp_path / "mazes.jsonl"
    r = invoke("puzzles", "--task", "maze", "--size", "7", "--n", "4", "--out", out)
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 4
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", out)
    assert r.exit_code != 0  # a maze file for a sudoku model
    hard = tmp_path / "hard.jsonl"
    r = invoke("puzzles", "--task", "sudoku", "--size", "4", "--task-param", "min_givens=9", "--n", "3", "--out", hard)
    assert r.exit_code == 0, r.output
    assert all(json.loads(line)["meta"]["givens"] >= 9 for line in hard.read_text().splitlines())
    r = invoke("puzzles", "--task", "sudoku", "--task-param", "givens=3", "--out", hard)
    assert r.exit_code == 2 and "unexpected keyword argument 'givens'" in r.output
    r = invoke("eval", "--model", "no-such-model")
    assert r.exit_code == 2 and "no checkpoint" in r.output
    r = invoke("eval", "--model", tiny_checkpoint, "--task", "maze")
    assert r.exit_code == 2 and "solves 'sudoku'" in r.output
    r = invoke("eval", "--model", tiny_checkpoint, "--puzzles", "missing.jsonl")
    assert r.exit_code == 2 and "neither a count" in r.output


def test_train_takes_rotary_axes_and_the_card_names_them(tmp_path):
    out = tmp_path / "grid"
    r = invoke("train", "--task", "sudoku", "--size", "4", "--out", out, "--mixer", "attention", "--hidden", "16",
               "--heads", "2", "--layers", "1", "--T", "1", "--n", "1", "--n-sup", "1", "--iterations", "4",
               "--train-puzzles", "16", "--eval-every", "4", "--eval-puzzles", "4", "--rope-axes", "4x4",
               "--rope-theta", "100")
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["rope_axes"] == [4, 4] and config["model"]["rope_theta"] == 100.0
    r = invoke("eval", "--model", out, "--puzzles", "4", "--write-card")
    assert r.exit_code == 0, r.output
    assert "rotary positions over 4x4 axes, theta 100" in (out / "card.md").read_text()
    # sizes that do not make the sequence, or no sizes at all, are one line naming the option
    for axes, says in (("4x3", "product is the sequence length 16"), ("4xfour", "--rope-axes '4xfour'")):
        r = invoke("train", "--task", "sudoku", "--size", "4", "--out", tmp_path / axes, "--mixer", "attention",
                   "--hidden", "16", "--heads", "2", "--iterations", "1", "--rope-axes", axes)
        assert r.exit_code != 0 and says in r.output, r.output


def test_a_card_lists_a_resume_run_again_after_a_cut_once():
    from harness.models.card import training_commands
    first, resume, longer = "harness train A", "harness train A --resume", "harness train A --iterations 9 --resume"
    config = {"train_commands": [first, resume, resume, resume, longer, resume]}
    assert training_commands(config) == [first, resume, longer, resume]
    assert training_commands({"train_command": first}) == [first]


def test_a_card_drops_the_other_evaluations_of_a_replaced_checkpoint(tiny_checkpoint, tmp_path):
    import shutil

    ck = tmp_path / "sudoku4"
    shutil.copytree(tiny_checkpoint, ck)
    for f in ("card.json", "card.md"):
        (ck / f).unlink(missing_ok=True)
    assert invoke("eval", "--model", ck, "--puzzles", "12", "--write-card").exit_code == 0
    assert invoke("eval", "--model", ck, "--puzzles", "12", "--task-param", "min_givens=10",
                  "--write-card").exit_code == 0
    card = json.loads((ck / "card.json").read_text())
    assert card["model_sha256"] == card["evaluation"]["model_sha256"] and card["other_evaluations"]
    # the same folder trained further: its weights are another checkpoint
    r = invoke("train", "--task", "sudoku", "--size", "4", "--out", ck, "--hidden", "16", "--layers", "1",
               "--T", "1", "--n", "2", "--n-sup", "2", "--iterations", "50", "--train-puzzles", "32",
               "--eval-every", "20", "--eval-puzzles", "16", "--warmup", "5", "--resume")
    assert r.exit_code == 0, r.output
    r = invoke("eval", "--model", ck, "--puzzles", "12", "--task-param", "min_givens=10", "--write-card")
    assert r.exit_code == 2 and "describes another checkpoint" in r.output
    r = invoke("eval", "--model", ck, "--puzzles", "12", "--write-card")
    assert r.exit_code == 0 and "made with another checkpoint and are dropped" in " ".join(r.output.split())
    newer = json.loads((ck / "card.json").read_text())
    assert newer["other_evaluations"] == {} and newer["model_sha256"] != card["model_sha256"]
    assert newer["training"]["iterations"] == 50
