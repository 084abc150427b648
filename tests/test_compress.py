"""Recipes, quantization, the golden integer model and carry-trajectory fidelity."""

import numpy as np
import pytest
import torch

from harness.compress import quantize as Q
from harness.compress.compressed import _calibration_tokens
from harness.compress.recipes import BUILTIN, Recipe, apply, get_recipe, load_recipes
from harness.compress.study import evaluate_compressed
from harness.golden import arith
from harness.golden.fidelity import cosine_per_cycle, spearman, summarize
from harness.depth import Depth
from harness.models.train import TrainConfig, train
from harness.models.trm import TRM, macs_per_inference
from harness.tasks import split_of, stack


@pytest.fixture(scope="module", params=["mlp", "attention"])
def trained(request, tmp_path_factory):
    """A small sudoku-4 model that has learned something, for each mixer."""
    torch.manual_seed(0)
    cfg = TrainConfig(task={"name": "sudoku", "size": 4},
                      model=dict(hidden=16, layers=2, heads=2, mixer=request.param, T=1, n=2, steps=2),
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
    """Same scales, same rounding at the same points, the integer model's own weighted add, residual +
    RMSNorm, rotary and softmax (``point.ops``), linear layers in float64: the fake-quant model's carry
    is the golden model's, cycle for cycle (a float64 linear output can still fall on the other side of a
    rounding boundary than M / 2^n puts it, about once in 10^8, so a puzzle may diverge in principle).
    With the float ops in float32 instead (``integer_ops=False``, as before) the carries part."""
    model, task, puzzles = trained
    x, y = stack(puzzles)
    recipe = BUILTIN["int8"]
    cfg = model.cfg
    cal = Q.calibrate(model, _calibration_tokens(task, recipe), cfg.T, cfg.n, cfg.steps)
    qw = Q.quantized_weights(model, Q.WeightSpec(8, True, "minmax"), cal)
    scales = Q.activation_scales(model, cal)
    golden = Q.build_int_model(model, qw, 8, scales).run(x, 1, 2, 2)
    fq = Q.with_weights(model, qw, torch.float64).forward_trace(torch.as_tensor(x), 1, 2, 2,
                                                                 point=Q.fake_quant_point(scales))
    s = scales["norm"]
    same = [(np.round(fq[c].numpy() / s) == golden[c]).all(axis=(0, 1, 3, 4)) for c in ("y", "z")]
    assert (same[0] & same[1]).mean() >= 0.98
    fq_pred = fq["logits"].argmax(-1).numpy()
    assert (fq_pred == golden["per_step"]).all(axis=(0, 2)).mean() >= 0.98
    floats = Q.with_weights(model, qw).forward_trace(torch.as_tensor(x), 1, 2, 2,
                                                     point=Q.fake_quant_point(scales, integer_ops=False))
    assert not np.array_equal(np.round(floats["y"].numpy() / s), golden["y"])


def test_round_half_up_is_the_contracts_round_shift():
    rng = np.random.default_rng(0)
    v = rng.integers(-2**40, 2**40, 20_000)
    v[:8] = [-3, -2, -1, 0, 1, 2, 3, 2**39 + 2**8]      # exact halves and their neighbours at n = 1, 9
    for n in (1, 2, 9, 12, 24):
        t = torch.as_tensor(v / 2.0**n, dtype=torch.float64)   # exact: |v| < 2^53
        assert np.array_equal(Q.round_half_up(t).numpy().astype(np.int64), arith.round_shift(v, n)), n
    t = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, np.nextafter(np.float32(0.5), np.float32(0)), -0.50000006],
                     dtype=torch.float32)
    before = t.clone()
    assert Q.round_half_up(t).tolist() == [-2, -1, 0, 1, 2, 3, 0, -1]  # floor(t + 0.5) gives 1 for 0.49999997
    assert torch.equal(t, before)


def test_fake_quant_point_rounds_and_saturates_as_the_integer_model():
    scales = {"h": 0.5, "x": 0.5, "b0.ffn.act": 0.5, "b0.ffn.prod": 0.5, "logits": 0.5}
    point = Q.fake_quant_point(scales)
    t = torch.tensor([-1.25, -0.75, 0.25, 0.75, 1.25, 100.0, -100.0])   # halves of the grid
    assert (point("h", t) / 0.5).tolist() == [-2, -1, 1, 2, 3, 127, -128]           # round_shift: half up
    assert (point("b0.ffn.prod", t) / 0.5).tolist() == [-2, -1, 1, 2, 3, 127, -128]
    assert (point("x", t) / 0.5).tolist() == [-2, -2, 0, 2, 2, 127, -128]           # export: np.round
    assert (point("b0.ffn.act", t) / 0.5).tolist() == [-2, -2, 0, 2, 2, 127, -128]
    assert (point("logits", torch.tensor([1e5, -1e5])) / 0.5).tolist() == [32767, -32768]
    grad = torch.tensor([0.3, -0.8], requires_grad=True)
    Q.fake_quant_point(scales, ste=True)("h", grad).sum().backward()
    assert grad.grad.tolist() == [1.0, 1.0]


def test_integer_ops_compute_what_the_golden_model_computes():
    """Each fixed-point op of the fake-quant point against the golden arithmetic on random integers."""
    rng = np.random.default_rng(1)
    B, H, L, hd = 3, 2, 7, 8
    names = ["h", "x", "norm", "b0.mix.out", "b0.mix.q", "b0.mix.k", "b0.mix.v", "b0.mix.attn"]
    scales = dict(zip(names, rng.uniform(0.01, 0.2, len(names)).tolist()))
    ops = Q.fake_quant_point(scales).ops
    ints = lambda *shape: rng.integers(-128, 128, shape)  # noqa: E731
    deq = lambda q, name: torch.as_tensor(q * scales[name])  # noqa: E731
    back = lambda t, name: np.round(t.numpy() / scales[name]).astype(np.int64)  # noqa: E731

    z, x, y = ints(B, L, H * hd), ints(B, L, H * hd), ints(B, L, H * hd)
    got = ops.inject("h", [("norm", deq(z, "norm")), ("x", deq(x, "x")), ("norm", deq(y, "norm"))])
    coef = lambda p: int(round(scales[p] / scales["h"] * 4096))  # noqa: E731
    assert np.array_equal(back(got, "h"), arith.weighted_add([(z, coef("norm")), (x, coef("x")), (y, coef("norm"))]))

    m = ints(B, L, H * hd)
    got = ops.residual_norm("norm", deq(z, "h"), "h", deq(m, "b0.mix.out"), "b0.mix.out", 1e-5)
    a, b = Q._residual_coefs(scales["h"], scales["b0.mix.out"])
    want = arith.residual(z, a, m, b, Q._norm_const(H * hd, scales["norm"]))
    assert np.array_equal(back(got, "norm"), want)

    q, k, v = ints(B, H, L, hd), ints(B, H, L, hd), ints(B, H, L, hd)
    cos, sin = arith.rope_tables(L, hd, 10000.0)
    got = ops.rotary("b0.mix.q", deq(q, "b0.mix.q"), None, None, 10000.0)
    assert np.array_equal(back(got, "b0.mix.q"), arith.rope(q, cos, sin))

    (sM, sn), (vM, vn) = Q._attention_multipliers(*(scales[f"b0.mix.{c}"] for c in ("q", "k", "v", "attn")), hd)
    got = ops.attention("b0.mix", deq(q, "b0.mix.q"), deq(k, "b0.mix.k"), deq(v, "b0.mix.v"),
                        torch.nn.functional.scaled_dot_product_attention)
    p = arith.softmax(q @ np.swapaxes(k, -1, -2), sM, sn)
    assert np.array_equal(back(got, "b0.mix.attn"), arith.requantize(p @ v, vM, vn))


def test_integer_ops_pass_float_gradients_for_training(trained):
    model, task, puzzles = trained
    x, _ = stack(puzzles[:4])
    cal = Q.calibrate(model, x, 1, 2, 1)
    point = Q.fake_quant_point(Q.activation_scales(model, cal), ste=True)
    m = Q.with_weights(model, Q.quantized_weights(model, Q.WeightSpec(8, True, "minmax"), cal))
    xe = point("x", m.input_embedding(torch.as_tensor(x)))
    y, z = (point("norm", c) for c in m.initial_carry(torch.as_tensor(x)))
    m.step(xe, y, z, 1, 2, point)[2].sum().backward()
    grads = [p.grad for p in m.blocks.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0


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
    w = u.base.blocks[0].ffn.down.weight
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


def test_calibration_puzzles_are_made_once_per_task_count_and_seed(monkeypatch):
    """Every recipe of a study calibrates on the same training puzzles: they are generated once per
    (task spec, count, seed), equal to a fresh generation, and handed out as copies."""
    from harness.tasks import make_task
    task = make_task(name="sudoku", size=4)
    calls = []
    generate = type(task).generate
    monkeypatch.setattr(type(task), "generate", lambda self, n, seed, split="train": calls.append((n, seed)) or
                        generate(self, n, seed, split))
    int8 = BUILTIN["int8"]
    first = _calibration_tokens(task, int8)
    first[0, 0] = 99                                     # a caller's change stays its own
    int4 = Recipe(**{**vars(BUILTIN["int4-pc"]), "calib_puzzles": int8.calib_puzzles, "calib_seed": int8.calib_seed})
    again = _calibration_tokens(make_task(name="sudoku", size=4), int4)  # another recipe, an equal task
    fresh = np.array([p.inputs for p in generate(task, int8.calib_puzzles, int8.calib_seed, "train")], np.int64)
    assert np.array_equal(again, fresh) and again[0, 0] != 99
    assert len([c for c in calls if c == (int8.calib_puzzles, int8.calib_seed)]) <= 1
    other = Recipe(**{**vars(int8), "calib_seed": int8.calib_seed + 1})
    _calibration_tokens(task, other)
    assert (int8.calib_puzzles, int8.calib_seed + 1) in calls
