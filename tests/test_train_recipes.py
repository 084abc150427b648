import dataclasses

import numpy as np
import pytest
import torch
from rich.progress import Progress

from harness.compress import quantize as Q
from harness.compress import train_recipes
from harness.compress.recipes import Compressed, Recipe, get_recipe
from harness.compress.train_recipes import apply_trained, cache_key, fake_quant_weights
from harness.models.checkpoint import load_checkpoint
from harness.depth import Depth
from harness.models.train import STATE, TrainConfig, train
from harness.models.trm import TRM, TRMConfig, linear_attention, macs_per_net
from harness.tasks import make_task, score, stack

TASK = {"name": "sudoku", "size": 4}
DEPTH = Depth(1, 2, 2)
# recipe training cut down to seconds
SMALL = {"iterations": 40, "warmup": 5, "batch": 32, "train_puzzles": 64, "eval_puzzles": 16, "eval_every": 40}


def tiny(name: str, **train_overrides) -> Recipe:
    recipe = get_recipe(name)
    return dataclasses.replace(recipe, train={**recipe.train, **SMALL, **train_overrides}, calib_puzzles=16)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, task, record) of a tiny mlp model trained briefly (cell accuracy about 0.7, chance 0.25)."""
    cfg = TrainConfig(task=TASK, model=dict(hidden=16, layers=2, T=1, n=2, steps=2), train_puzzles=64, batch=32,
                      lr=3e-3, warmup=10, iterations=150, eval_every=150, eval_puzzles=32, save_every=150)
    out = tmp_path_factory.mktemp("base")
    with Progress(disable=True) as quiet:
        train(cfg, out, progress=quiet)
    return load_checkpoint(out)


@pytest.fixture(scope="module")
def heldout():
    task = make_task(**TASK)
    return stack(task.generate(64, seed=7, split="test"))


def attention_model(kernel: str = "softmax") -> TRM:
    torch.manual_seed(0)
    return TRM(TRMConfig(vocab_size=6, seq_len=16, hidden=16, layers=2, heads=2, mixer="attention", T=1, n=2,
                         steps=2, attention_kernel=kernel))


def cell_accuracy(comp: Compressed, task, heldout) -> float:
    inputs, labels = heldout
    return score(task, inputs, labels, comp.run(inputs, DEPTH)["per_step"][-1])["cell_accuracy"]


# --- linear attention ---------------------------------------------------------------------------
def test_linear_attention_follows_its_formula_and_is_not_causal():
    q, k, v = torch.randn(3, 2, 2, 5, 4).unbind(0)  # [B, H, L, hd]
    phi = lambda t: torch.nn.functional.elu(t) + 1
    weights = phi(q) @ phi(k).transpose(-2, -1)       # the quadratic form: weights of every j for every i
    expected = (weights @ v) / weights.sum(-1, keepdim=True)
    assert torch.allclose(linear_attention(q, k, v), expected, atol=1e-5)

    m = attention_model("linear")
    h = torch.randn(1, 16, 16)
    base = m.blocks[0].mixer(h)
    h2 = h.clone()
    h2[0, -1] += 1.0  # a change at the last position reaches the first
    assert torch.isfinite(base).all() and not torch.allclose(m.blocks[0].mixer(h2)[0, 0], base[0, 0])
    assert torch.isfinite(m(torch.randint(0, 6, (2, 16)))).all()


def test_linear_attention_config_and_macs():
    with pytest.raises(ValueError, match="attention_kernel"):
        TRMConfig(vocab_size=6, seq_len=16, attention_kernel="cosine")
    soft, lin = attention_model().cfg, attention_model("linear").cfg
    L, D, hd = 16, 16, 8
    projections = 2 * (L * 4 * D * D + L * 3 * 32 * D)  # two layers: qkv + out, channel SwiGLU
    assert macs_per_net(soft) == projections + 2 * 2 * L * L * D
    assert macs_per_net(lin) == projections + 2 * (2 * L * D * hd + L * D)


# --- QAT --------------------------------------------------------------------------------------
def test_fake_quantized_weights_lie_on_the_int4_grid_and_pass_gradients(trained):
    model = trained[0]
    qat = fake_quant_weights(model, Q.WeightSpec(4, True, "minmax"), None)
    gate_up = qat.blocks[0].ffn.gate_up
    levels = gate_up.weight / gate_up.parametrizations.weight[0].scale
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.round().abs().max() <= 7
    assert torch.equal(qat.halt.weight, model.halt.weight)  # int8 in every recipe: not fake-quantized
    x = qat.input_embedding(torch.randint(0, 6, (2, 16)))
    y, z = qat.initial_carry(torch.zeros(2, 16, dtype=torch.long))
    qat.step(x, y, z)[2].sum().backward()
    assert gate_up.parametrizations.weight.original.grad.abs().sum() > 0


def test_qat_int4_gives_a_working_int4_integer_model(trained, heldout):
    model, task, record = trained
    comp = apply_trained(tiny("qat-int4", lr=1e-3), model, task)
    assert comp.int_model is not None and comp.info["method"] == "qat"
    linears = [comp.int_model.head] + [b.ffn.gate_up for b in comp.int_model.blocks]
    assert all(q.bits == 4 and np.abs(q.w).max() <= 7 for q in linears)
    # the fine-tuning with fake quantization lowers the training loss of the fp32 run it starts from
    assert comp.info["train_history"][-1]["loss"] < record["history"][-1]["loss"]
    assert cell_accuracy(comp, task, heldout) > 0.5  # chance is 0.25


# --- distillation -----------------------------------------------------------------------------
def test_distill_trains_a_smaller_student(trained, heldout):
    model, task, _ = trained
    comp = apply_trained(tiny("distill", lr=3e-3), model, task)
    assert comp.base.cfg.layers == comp.info["layers"] == 1 and comp.info["source_layers"] == 2
    assert comp.params() == comp.info["params"] < model.parameter_count()
    assert (comp.base.cfg.hidden, comp.base.cfg.T, comp.base.cfg.n) == (16, 1, 2)
    assert cell_accuracy(comp, task, heldout) > 0.25


def test_distillation_needs_the_teacher_width(trained, tmp_path):
    teacher = trained[0]
    cfg = TrainConfig(task=TASK, model=dict(hidden=8, layers=1, heads=2, T=1, n=2, steps=2), iterations=1)
    with pytest.raises(ValueError, match="hidden size"):
        train(cfg, tmp_path / "run", teacher=teacher)


# --- linear attention recipe ------------------------------------------------------------------
def test_linattn_needs_attention_and_fine_tunes_it(trained, heldout):
    model, task, _ = trained
    with pytest.raises(ValueError, match="apply it to an attention model"):
        apply_trained(tiny("linattn"), model, task)
    comp = apply_trained(tiny("linattn"), attention_model(), task)
    assert comp.base.cfg.attention_kernel == "linear" and comp.int_model is None
    out = comp.run(heldout[0], DEPTH)
    assert np.isfinite(out["y"]).all() and out["per_step"].shape == (2, 64, 16)


# --- cache and recipe data --------------------------------------------------------------------
def test_a_second_apply_loads_the_cached_training(trained, monkeypatch):
    model, task, _ = trained
    recipe = tiny("linattn", iterations=5)
    first = apply_trained(recipe, attention_model(), task)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of using the cache")

    monkeypatch.setattr(train_recipes, "train_loop", no_training)
    again = apply_trained(recipe, attention_model(), task)
    assert all(torch.equal(a, b) for a, b in zip(first.base.state_dict().values(), again.base.state_dict().values()))
    longer = tiny("linattn", iterations=6)
    assert cache_key(longer, attention_model(), task) != cache_key(recipe, attention_model(), task)


def test_recipe_train_options_are_checked(trained, tmp_path):
    model, task, _ = trained
    with pytest.raises(ValueError, match="unknown"):
        apply_trained(tiny("distill", learning_rate=1.0), model, task)
    with pytest.raises(ValueError, match="train.method"):
        apply_trained(dataclasses.replace(tiny("distill"), train={"method": "magic"}), model, task)
    toml = tmp_path / "r.toml"
    toml.write_text('[recipes.quick-qat]\nkind = "integer"\nweight_bits = 4\nweight_clip = "mse"\n'
                    'train = { method = "qat", iterations = 10, lr = 1e-4 }\n')
    assert get_recipe(f"{toml}:quick-qat").train == {"method": "qat", "iterations": 10, "lr": 1e-4}


def test_resume_accepts_a_run_saved_before_the_distillation_fields(tmp_path):
    cfg = TrainConfig(task=TASK, model=dict(hidden=8, layers=1, T=1, n=1, steps=2), train_puzzles=8, batch=4,
                      iterations=2, eval_puzzles=4, save_every=2)
    with Progress(disable=True) as quiet:
        train(cfg, tmp_path, progress=quiet)
        state = torch.load(tmp_path / STATE, weights_only=False)
        for key in ("distill_ce", "distill_kl", "distill_carry"):
            del state["config"][key]
        torch.save(state, tmp_path / STATE)
        assert train(cfg, tmp_path, resume=True, progress=quiet)["iterations"] == 2


def test_export_never_trains_unless_asked(tmp_path, monkeypatch):
    """Exporting a training recipe whose checkpoint is not cached refuses, naming --train, and trains
    nothing (the cache stays empty); the code digest of the cache key is computed once per process."""
    from harness.compress.train_recipes import NotTrained
    from harness.export import exporter
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    with pytest.raises(NotTrained, match="--train"):
        exporter.export_blob("sudoku6-mlp", "qat-int4")
    assert not (tmp_path / "recipes").exists() or not any((tmp_path / "recipes").iterdir())
    exporter._code_digest.cache_clear()
    exporter._key("sudoku6-mlp", get_recipe("int8"))
    exporter._key("sudoku6-mlp", get_recipe("int4-pc"))
    assert exporter._code_digest.cache_info().misses == 1
