"""Paper-shaped presets (harness/models/shapes.py): random weights, **untrained: cost only**, and the
report's rule that such a model's accuracy is never shown nor decided on; the depth count model that
extrapolates the published depth."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import figures as F
from harness.models import shapes
from harness.report.decide import decide
from harness.report.tables import cost_only_rows


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    return tmp_path


def test_the_5m_trm_mlp_shape_has_the_papers_size_and_says_cost_only(cache):
    from harness.models.checkpoint import load_checkpoint, resolve
    net, task, config = load_checkpoint("shape:paper-trm-mlp-sudoku9")
    assert 5_000_000 < sum(p.numel() for p in net.parameters()) < 5_060_000      # "about 5.03 M"
    assert (task.name, task.seq_len, task.vocab_size) == ("sudoku", 81, 11)
    assert net.cfg.hidden == 512 and net.cfg.layers == 2 and net.cfg.puzzle_emb_len == 16
    assert config["cost_only"] is True and config["label"] == shapes.COST_ONLY
    assert config["shape"]["paper_depth"] == "3,6,16"
    # seeded: the same preset and seed give the same weights, another seed others
    folder = resolve("shape:paper-trm-mlp-sudoku9")
    assert folder == resolve("shape:paper-trm-mlp-sudoku9") and folder.parent == cache / "shapes"
    other = load_checkpoint("shape:paper-trm-mlp-sudoku9@1")[0]
    assert not all((a == b).all() for a, b in zip(net.parameters(), other.parameters()))


def test_unknown_presets_and_bad_seeds_are_named():
    with pytest.raises(shapes.ShapeError, match="unknown shape preset 'nope'.*paper-trm-mlp-sudoku9"):
        shapes.parse("shape:nope")
    with pytest.raises(shapes.ShapeError, match="the seed after @ must be an integer"):
        shapes.parse("shape:paper-hrm-sudoku9@x")


def test_the_arc_table_at_the_papers_scale_is_computed_from_its_shape():
    arc = shapes.SHAPES["paper-trm-attention-arc30"]
    assert shapes.table_bytes(arc, 8) == 876_406 * 512 and shapes.table_bytes(arc, 32) == 4 * 876_406 * 512
    assert arc.model["puzzle_ids"] == 1     # what is exported: the network, not the table


def test_depth_count_model_extrapolates_the_firmware_loop_and_rejects_too_few_depths():
    def count(T, n, s):
        return 5_000 + s * (700 + T * (n * 9_000 + 4_000))
    depths = [(1, 1, 1), (1, 2, 1), (2, 1, 1), (1, 1, 2), (1, 2, 2)]
    m = F.depth_count_model([(*d, count(*d)) for d in depths])
    assert m["residual_max"] < 1e-6 and m["points"] == 5
    assert F.count_at_depth(m, 3, 6, 16) == pytest.approx(count(3, 6, 16))
    assert F.depth_count_model([(*d, count(*d)) for d in depths[:3]]) is None
    # four depths that do not separate the terms (steps always 1, T always 1) pin nothing
    assert F.depth_count_model([(1, n, 1, count(1, n, 1)) for n in (1, 2, 3, 4)]) is None


def test_cost_only_rows_lose_every_accuracy_and_take_no_part_in_decisions():
    prov = {"models": {"shape:x@0": {"cost_only": True, "label": shapes.COST_ONLY}, "zoo": {"cost_only": False}}}
    base = {"recipe": "int8", "depth": "T1n1s1", "target": "mps2-an386", "exact_accuracy": 0.5,
            "exact_accuracy_lo": 0.2, "exact_accuracy_hi": 0.8, "cell_accuracy": 0.6, "host_exact_accuracy": 0.5,
            "fidelity_final": 0.9, "latency_ms": 10.0, "counts_mean": 1e6}
    df = cost_only_rows(pd.DataFrame([{"model": "shape:x@0", **base}, {"model": "zoo", **base}]), prov)
    cost, kept = df.iloc[0], df.iloc[1]
    assert cost.cost_only and cost.label == shapes.COST_ONLY
    assert all(cost[c] is None for c in ("exact_accuracy", "exact_accuracy_lo", "cell_accuracy",
                                         "host_exact_accuracy", "fidelity_final"))
    assert cost.latency_ms == 10.0 and cost.counts_mean == 1e6          # cost figures stay
    assert not kept.cost_only and kept.exact_accuracy == 0.5
    configs = df.assign(board_failures=0, fits_flash=True, fits_ram=True, puzzles=3, energy_uj=1.0,
                        flash_total=1, ram_inference_peak=1, flash_limit=2, ram_static=1, ram_limit=2)
    d = decide({"configs": configs.iloc[:1], "puzzles": pd.DataFrame(), "host_puzzles": pd.DataFrame()},
               {"budgets": {}})[0]
    assert [r["model"] for r in d.cost_only] == ["shape:x@0"]
    assert not d.fitting and not d.not_fitting and d.recommended is None
    json.dumps([r["label"] for r in d.cost_only])


def test_harness_run_on_a_shape_shows_no_accuracy_and_says_cost_only(cache, monkeypatch):
    """`harness run --json` on a shape preset (a tiny one here, so the test is quick): rows and summary carry
    the label and no accuracy field; the costs are there; the blob runs bit-exact with golden."""
    from typer.testing import CliRunner
    from harness.cli import app
    tiny = shapes.Shape("tiny-test", {"name": "sudoku", "size": 4},
                        dict(vocab_size=6, seq_len=16, hidden=16, layers=1, mixer="mlp", T=1, n=1, steps=1,
                             puzzle_emb_len=2, puzzle_emb_ndim=32, puzzle_ids=1), "a test shape", paper_depth="2,2,2")
    monkeypatch.setitem(shapes.SHAPES, "tiny-test", tiny)
    r = CliRunner().invoke(app, ["run", "--board", "host", "--target", "mps2-an386", "--model", "shape:tiny-test",
                                 "--puzzles", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["label"] == shapes.COST_ONLY and out["summary"]["label"] == shapes.COST_ONLY
    for part in [out["summary"], *out["rows"]]:
        assert not [k for k in part if "accuracy" in k or k == "correct"], part
    assert out["summary"]["golden_match"] == 2 and out["summary"]["counts_mean"] > 0
    r = CliRunner().invoke(app, ["run", "--board", "host", "--target", "mps2-an386", "--model", "shape:tiny-test",
                                 "--puzzles", "1"])
    assert r.exit_code == 0 and "untrained: cost only" in r.output and "accuracy intervals" not in r.output


def test_a_farm_run_of_a_shape_reports_cost_only_with_the_published_depth_extrapolated(cache, monkeypatch, tmp_path):
    """A plan of a (tiny) shape preset on the host build at four depths: the report has the "Paper scale"
    section with the count at the published depth extrapolated, the configs table has no accuracy for it,
    and the target's card says no decision was made."""
    from harness.boards.inventory import BoardSpec
    from harness.farm.plan import plan_from_dict
    from harness.farm.scheduler import farm_run
    from harness.report.build import build_report
    tiny = shapes.Shape("tiny-test", {"name": "sudoku", "size": 4},
                        dict(vocab_size=6, seq_len=16, hidden=16, layers=1, mixer="mlp", T=1, n=1, steps=1,
                             puzzle_emb_len=2, puzzle_emb_ndim=32, puzzle_ids=1), "a test shape", paper_depth="2,2,2")
    monkeypatch.setitem(shapes.SHAPES, "tiny-test", tiny)
    plan = plan_from_dict({"name": "tiny-shape", "models": ["shape:tiny-test"], "recipes": ["int8", "int8-ram"],
                           "host_recipes": [], "depths": ["1,1,1", "1,2,1", "2,1,1", "1,1,2"],
                           "targets": ["mps2-an386"], "puzzles": {"count": 2, "seed": 3},
                           "run": {"profile_puzzles": 0, "trace": "off"}}, "tiny-shape")
    out = tmp_path / "run"
    farm_run(plan, [BoardSpec("h", "host", "mps2-an386")], out, log=lambda m: None)
    rep = build_report(out)
    c = rep.tables["configs"]
    assert c.cost_only.all() and c.exact_accuracy.isna().all() and c.host_exact_accuracy.isna().all()
    md = (out / "report.md").read_text()
    section = md[md.index("## Paper scale: untrained, cost only"):]
    assert "| T2n2s2 |" in section and "fitted to 4 measured depths" in section
    assert "RAM saved by streaming" in section          # int8-ram beside int8, measured
    assert "every configuration on this target is untrained (cost only: 8)" in md
    decisions = json.loads((out / "decisions.json").read_text())[0]
    assert decisions["recommended"] is None and len(decisions["cost_only"]) == 8
