"""Recipes, quantization, the golden integer model and carry-trajectory fidelity."""
import dataclasses

import numpy as np
import pytest
import torch

from harness.compress import quantize as Q
from harness.compress.compressed import _calibration_tokens
from harness.compress.recipes import BUILTIN, Recipe, apply, get_recipe, load_recipes
from harness.compress.study import evaluate_compressed
from harness.golden.fidelity import cosine_per_cycle, spearman, summarize
from harness.models.evaluate import Depth
from harness.models.train import TrainConfig, train
from harness.models.trm import TRM, macs_per_inference
from harness.tasks import score, split_of, stack


@pytest.fixture(scope="module", params=["mlp", "attention"])
def trained(request, tmp_path_factory):
    """A small sudoku-4 model that has learned something, for each mixer."""
    torch.manual_seed(0)
    cfg = TrainConfig(task={"name": "sudoku", "size": 4},
                      model=dict(hidden=16, layers=2, heads=2, mixer=request.param, T=1, n=2, n_sup=2),
                      train_puzzles=128, batch=32, lr=3e-3, warmup=10, iterations=150, eval_every=150,
                      eval_puzzles=32, save_every=150)
    out = tmp_path_factory.mktemp(request.param)
    train(cfg, out)
    from harness.models.checkpoint import load_checkpoint

    model, task, _ = load_checkpoint(out)
    return model, task, task.generate(60, seed=77, split="test")


DEPTH = Depth(1, 2, 2)


def test_every_builtin_recipe_applies_and_runs(trained):
    model, task, puzzles = trained
    x, y = stack(puzzles)
    for name, recipe in BUILTIN.items():
        comp = apply(recipe, model, task)
        out = comp.run(x, DEPTH)
        assert out["per_step"].shape == (2, len(x), task.seq_len), name
        assert out["y"].shape == (2, 1, len(x), task.seq_len, model.cfg.hidden), name
        assert np.isfinite(out["y"]).all(), name
        assert (comp.int_model is not None) == (recipe.kind == "integer"), name


def test_weight_bytes_follow_precision(trained):
    model, task, _ = trained
    size = {n: apply(BUILTIN[n], model, task).weight_bytes() for n in ("fp32", "fp16", "int8", "int4-pc")}
    assert size["fp32"] == 4 * model.parameter_count()
    assert size["fp16"] == 2 * model.parameter_count()
    assert size["int4-pc"] < size["int8"] < size["fp16"]


def test_integer_model_weights_are_in_range_and_match_the_recipe(trained):
    model, task, _ = trained
    for name, bits in (("int8", 8), ("int4-naive", 4), ("int4-pc", 4)):
        im = apply(BUILTIN[name], model, task).int_model
        qmax = 2 ** (bits - 1) - 1
        for blk in im.blocks:
            for lin in (blk.ffn.gate_up, blk.ffn.down):
                assert lin.bits == bits and np.abs(lin.w).max() <= qmax
                assert ((lin.M >= 2**30) & (lin.M < 2**31) | (lin.M == 0)).all()
        assert np.abs(im.embed).max() <= 127 and im.head.hi == 32767


def test_per_tensor_recipes_share_one_scale(trained):
    model, task, _ = trained
    im = apply(BUILTIN["int4-naive"], model, task).int_model
    lin = im.blocks[0].ffn.down
    assert len(set(lin.w_scale.tolist())) == 1


def test_golden_tracks_the_fake_quant_model(trained):
    """Same scales, same rounding points: the two differ only in float vs integer norm, softmax,
    rotary and SiLU-table details, so their predictions nearly always agree. (This tiny model's logits
    are close calls; the zoo-scale check, accuracy within 1 point on 500 puzzles, is in test_zoo.)"""
    model, task, puzzles = trained
    x, y = stack(puzzles)
    recipe = BUILTIN["int8"]
    cfg = model.cfg
    cal = Q.calibrate(model, _calibration_tokens(task, recipe), cfg.T, cfg.n, cfg.n_sup)
    qw = Q.quantized_weights(model, Q.WeightSpec(8, True, "minmax"), cal)
    scales = Q.activation_scales(model, cal)
    fq = Q.with_weights(model, qw).forward_trace(torch.as_tensor(x), 1, 2, 2, point=Q.fake_quant_point(scales))
    fq_pred = fq["logits"][-1].argmax(-1).numpy()
    golden = Q.build_int_model(model, qw, 8, scales).run(x, 1, 2, 2, keep_carries=False)["per_step"][-1]
    assert (fq_pred == golden).mean() > 0.93
    a, b = score(task, x, y, fq_pred), score(task, x, y, golden)
    assert abs(a["cell_accuracy"] - b["cell_accuracy"]) < 0.03


def test_golden_is_deterministic_and_batch_independent(trained):
    model, task, puzzles = trained
    im = apply(BUILTIN["int4-pc"], model, task).int_model
    x, _ = stack(puzzles)
    whole = im.run(x, 1, 2, 2)
    parts = [im.run(x[i:i + 7], 1, 2, 2) for i in range(0, len(x), 7)]
    assert np.array_equal(whole["y"], np.concatenate([p["y"] for p in parts], axis=2))
    assert whole["y"].dtype == np.int8


def test_calibration_never_sees_evaluation_puzzles(trained):
    model, task, puzzles = trained
    tokens = _calibration_tokens(task, BUILTIN["int8"])
    assert len(tokens) == BUILTIN["int8"].calib_puzzles
    assert all(split_of(t) == "train" for t in tokens)
    held_out = {p.inputs for p in task.generate(300, seed=1000, split="test")}
    assert not held_out & {tuple(int(v) for v in t) for t in tokens}


def test_fidelity_is_one_against_itself_and_falls_when_perturbed(trained):
    model, task, puzzles = trained
    fp32 = apply(BUILTIN["fp32"], model, task)
    res = evaluate_compressed(fp32, model, task, puzzles, DEPTH)
    assert res["fidelity_final"] == pytest.approx(1.0, abs=1e-6)
    assert res["fidelity_auc"] == pytest.approx(1.0, abs=1e-6)
    noisy = TRM(model.cfg)
    noisy.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in noisy.blocks.parameters():
            p.add_(0.3 * torch.randn_like(p) * p.std())
    from harness.compress.recipes import Compressed

    res_noisy = evaluate_compressed(Compressed(BUILTIN["fp32"], noisy, torch_model=noisy.eval()), model, task,
                                    puzzles, DEPTH)
    assert res_noisy["fidelity_final"] < 0.99
    assert len(res_noisy["fidelity_per_cycle"]) == DEPTH.steps * DEPTH.T


def test_cosine_and_spearman_helpers():
    a = {"y": np.ones((1, 2, 3, 4, 5)), "z": np.ones((1, 2, 3, 4, 5))}
    b = {"y": -np.ones((1, 2, 3, 4, 5)), "z": np.ones((1, 2, 3, 4, 5))}
    cos = cosine_per_cycle(a, b)
    assert cos.shape == (3, 2) and np.allclose(cos, 0.0)
    assert summarize(np.array([[1.0, 0.5]]))["fidelity_auc"] == 0.75
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_structured_pruning_shrinks_and_unstructured_zeroes(trained):
    model, task, _ = trained
    s = apply(BUILTIN["prune-50s"], model, task)
    assert s.params() < model.parameter_count()
    assert s.macs(DEPTH) < macs_per_inference(model.cfg, 1, 2, 2)
    u = apply(BUILTIN["prune-90"], model, task)
    assert u.params() == model.parameter_count()
    w = u.base.blocks[0].mlp.down.weight
    assert (w == 0).float().mean() >= 0.89


def test_mse_clipping_never_does_worse_than_minmax_on_its_objective():
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=(16, 32))
    x = rng.normal(size=(500, 32))
    gram = x.T @ x
    for per_channel in (True, False):
        qm, sm = Q.quantize_weight(w, 4, per_channel, "minmax")
        qe, se = Q.quantize_weight(w, 4, per_channel, "mse", gram)
        err = lambda q, s: np.einsum("nk,kj,nj->", w - q * s[:, None], gram, w - q * s[:, None])  # noqa: E731
        assert err(qe, se) <= err(qm, sm) + 1e-9
        assert np.abs(qe).max() <= 7


def test_recipes_from_toml_and_clear_errors(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('[recipes.int6ish]\nkind = "integer"\nweight_bits = 4\nper_channel = true\n'
                 'weight_clip = "percentile"\ncalib_puzzles = 32\n')
    r = load_recipes(f)["int6ish"]
    assert r.weight_clip == "percentile" and r.calib_puzzles == 32
    assert get_recipe(f"{f}:int6ish") == r
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("int3")
    with pytest.raises(ValueError, match="unknown fields"):
        Recipe.from_dict({"name": "x", "bitz": 3})
    with pytest.raises(ValueError, match="weight_bits"):
        Recipe("x", "integer", weight_bits=2)
    assert dataclasses.replace(BUILTIN["int8"], calib_puzzles=8).calib_puzzles == 8
