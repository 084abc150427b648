"""The study sweep: rows land in a journal as they finish and an interrupted study resumes."""
import json

import pandas as pd

from harness.compress import study as S


def _plan():
    return S.StudyPlan(models=["sudoku6-mlp"], recipes=["fp32", "int8"], depths=[None, "1,1,2"],
                       puzzles=12, seed=7, depth_recipes=["fp32"])


def test_depths_after_the_first_apply_only_to_depth_recipes(tmp_path):
    df = S.run_study(_plan(), log=lambda m: None, out=tmp_path)
    assert sorted(zip(df.recipe, df.depth)) == [("fp32", "T1n1s2"), ("fp32", "T2n3s8"), ("int8", "T2n3s8")]
    assert len(S.read_rows(tmp_path)) == 3
    fp = df[(df.recipe == "fp32")]
    assert (fp.fidelity_final == 1.0).all()


def test_an_interrupted_study_resumes_without_recomputing(tmp_path, monkeypatch):
    full = S.run_study(_plan(), log=lambda m: None, out=tmp_path / "a")
    lines = (tmp_path / "a" / S.ROWS).read_text().splitlines()
    # a crash after the first row, in the middle of writing the second
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / S.ROWS).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    applied = []
    real_apply = S.apply
    monkeypatch.setattr(S, "apply", lambda r, *a, **k: applied.append(r.name) or real_apply(r, *a, **k))
    resumed = S.run_study(_plan(), log=lambda m: None, out=tmp_path / "b")
    pd.testing.assert_frame_equal(full.reset_index(drop=True), resumed.reset_index(drop=True))
    assert applied == ["fp32", "int8"]          # fp32 once for its missing depth; int8 once
    again = S.run_study(_plan(), log=lambda m: None, out=tmp_path / "b")
    assert applied == ["fp32", "int8"]          # nothing left to compute
    assert len(again) == 3
    assert all(json.loads(line) for line in (tmp_path / "b" / S.ROWS).read_text().splitlines()[2:])


def test_rows_of_a_replaced_checkpoint_are_computed_again(tmp_path, monkeypatch):
    """A row records the digest of the model it measured; on resume, rows of another checkpoint of the
    same name (or rows from before digests) are not reused."""
    S.run_study(_plan(), log=lambda m: None, out=tmp_path)
    rows = S.read_rows(tmp_path)
    assert len({r["model_sha256"] for r in rows}) == 1 and len(rows[0]["model_sha256"]) == 64
    lines = [json.dumps({**r, "model_sha256": "0" * 64}) if r["recipe"] == "int8" else json.dumps(r) for r in rows]
    (tmp_path / S.ROWS).write_text("\n".join(lines) + "\n")
    applied, logged = [], []
    real_apply = S.apply
    monkeypatch.setattr(S, "apply", lambda r, *a, **k: applied.append(r.name) or real_apply(r, *a, **k))
    df = S.run_study(_plan(), log=logged.append, out=tmp_path)
    assert applied == ["int8"] and len(df) == 3
    assert any("1 rows" in m and "another checkpoint" in m for m in logged)


def _row(model, arch, recipe, cell, exact, puzzles=300):
    r = {"model": model, "task": "sudoku", "mixer": "attention", "recipe": recipe, "depth": "T2n3s8",
         "cell_accuracy": cell, "exact_accuracy": exact, "puzzles": puzzles}
    if arch is not None:
        r["arch"] = arch
    return r


def test_the_architecture_question_sets_trm_beside_hrm_with_intervals():
    """Rows from before the arch column (None here) are TRMs; each accuracy carries its Wilson interval and
    each model its collapse verdict, computed from the rows."""
    df = pd.DataFrame([_row("t", None, "fp32", 0.99, 0.99), _row("t", None, "int4-naive", 0.83, 0.30),
                       _row("h", "hrm", "fp32", 0.96, 0.90), _row("h", "hrm", "int4-naive", 0.955, 0.70)])
    lines = S._architectures(df, {"t": "T2n3s8", "h": "T2n3s8"})
    text = "\n".join(lines)
    assert lines[1].startswith("  - TRM t:") and lines[2].startswith("  - HRM h:")
    assert "int4-naive 30.0% [25.1%, 35.4%]" in text and "both fell" in lines[1]
    assert "yes: cell accuracy held" in lines[2]
    # no HRM beside a TRM of the same task and mixer: nothing to say
    assert S._architectures(df[df.model == "t"], {"t": "T2n3s8"}) == []


def _mrow(model, mixer, recipe, cell, exact, depth="T2n3s8", hash_="a", macs=480):
    return {"model": model, "task": "sudoku", "mixer": mixer, "arch": "trm", "recipe": recipe, "depth": depth,
            "cell_accuracy": cell, "exact_accuracy": exact, "puzzles": 300, "puzzle_set_hash": hash_,
            "macs": macs, "weight_bytes": 1, "evaluated_by": "torch", "fidelity_final": 1.0, "fidelity_auc": 1.0}


def test_the_mixer_claim_is_answered_per_puzzle_set_and_tabulated():
    """The token-mixer claim pairs the mlp and attention TRMs that saw the same puzzles; the closing
    table carries each model's verdicts, and INT8 at one cycle is compared with fp32 at full depth."""
    df = pd.DataFrame([
        # set a: mlp collapses (-20), attention holds (-5): the claim holds
        _mrow("a-mlp", "mlp", "fp32", 0.99, 0.95), _mrow("a-mlp", "mlp", "int4-naive", 0.985, 0.75),
        _mrow("a-att", "attention", "fp32", 0.99, 0.95), _mrow("a-att", "attention", "int4-naive", 0.98, 0.90),
        _mrow("a-mlp", "mlp", "int8", 0.99, 0.94, depth="T1n1s1", macs=10),
        _mrow("a-att", "attention", "int8", 0.90, 0.50, depth="T1n1s1", macs=10),
        # set b: the attention model collapses, the mlp model holds: the claim fails
        _mrow("b-mlp", "mlp", "fp32", 0.99, 0.95, hash_="b"), _mrow("b-mlp", "mlp", "int4-naive", 0.99, 0.94, hash_="b"),
        _mrow("b-att", "attention", "fp32", 0.99, 0.95, hash_="b"),
        _mrow("b-att", "attention", "int4-naive", 0.80, 0.30, hash_="b"),
    ])
    text = S.claims(df)
    section = text.split("## Does naive INT4 collapse the mlp mixer")[1].split("##")[0]
    assert "a-mlp / a-att" in section and "the claim holds" in section.split("\n- b-mlp")[0]
    assert "b-mlp / b-att" in section and "the claim fails: attention collapsed, mlp held" in section
    assert "95.0% [91.9%, 96.9%] → 75.0% [69.8%, 79.6%] (collapsed, −20.0 points)" in section
    one = text.split("## Does INT8 at one cycle")[1].split("##")[0]
    assert "a-mlp: int8 at T1n1s1 94.0%" in one and "(48× fewer): matches (within 2 points)" in one
    assert "a-att: int8 at T1n1s1 50.0%" in one and "45.0 points below full depth" in one
    table = {line.split(" | ")[0][2:]: line for line in text.split("## Where the claims hold")[1].split("\n## ")[0].splitlines()
             if line.startswith("| ") and not line.startswith("| model")}
    assert "| yes | holds |" in table["a-mlp"] and table["a-mlp"].endswith("| — | — | yes |")
    assert table["a-att"].endswith("| no (45.0 points below) |")
    assert "| both fell | fails: attention collapsed, mlp held |" in table["b-att"]
    # a study with one mixer per puzzle set cannot answer it, and says so
    alone = S.claims(df[df.model.isin(["a-mlp", "b-att"])])
    assert "not answered by this study: it has no TRM of each mixer on the same puzzles" in alone
