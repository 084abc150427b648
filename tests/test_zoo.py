"""The shipped zoo: every checkpoint has a card whose figures match the model, and (slow) a fresh
held-out set with another seed reproduces the card's puzzle-exact accuracy within 2 points."""
import json

import pytest
import torch

from harness.compress.compressed import _calibration_tokens

from harness.models.checkpoint import ZOO, model_digest, zoo_names
from harness.depth import Depth
from harness.models.evaluate import evaluate
from harness.models.trm import macs_per_inference

REQUIRED = [f"{task}-{mixer}" for task in ("sudoku6", "maze7", "arc1x12") for mixer in ("mlp", "attention")]
# The paper's grid size, both mixers
REQUIRED += ["sudoku9-mlp", "sudoku9-attention"]
# ARC on a 2-D canvas
REQUIRED += ["arc5-mlp"]
LIMIT_PARAMS, LIMIT_MACS = 300_000, 400_000_000


def card(name):
    return json.loads((ZOO / name / "card.json").read_text())


def test_the_required_models_ship_with_cards():
    missing = [n for n in REQUIRED if n not in zoo_names() or not (ZOO / n / "card.json").exists()]
    assert not missing, f"zoo models without checkpoint or card: {missing}"


@pytest.mark.parametrize("name", zoo_names())
def test_card_matches_the_model_and_fits_the_budget(name, zoo_model):
    model, task, config = zoo_model(name)
    c = card(name)
    assert c["params"] == model.parameter_count() <= LIMIT_PARAMS
    d = c["depth"]
    assert c["macs_per_inference"] == macs_per_inference(model.cfg, d["T"], d["n"], d["steps"]) <= LIMIT_MACS
    assert c["task"] == task.spec()
    assert c["evaluation"]["puzzle_set"]["count"] >= 1000
    assert c["training"]["commands"][0].startswith("harness train")
    if "model_sha256" in c:  # cards written since cards record the weights they were evaluated with
        assert c["model_sha256"] == c["evaluation"]["model_sha256"] == model_digest(model)


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_names())
def test_fresh_heldout_set_reproduces_the_card(name, zoo_model):
    torch.set_num_threads(2)
    model, task, _ = zoo_model(name)
    c = card(name)
    seed = c["evaluation"]["puzzle_set"]["seed"] + 7919
    count = c["evaluation"]["puzzle_set"]["count"]  # as many as the card used, at least 1000
    d = c["depth"]
    res = evaluate(model, task, task.generate(count, seed=seed, split="test"), Depth(d["T"], d["n"], d["steps"]))
    assert abs(res["exact_accuracy"] - c["evaluation"]["exact_accuracy"]) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["int8", "int4-pc"])
@pytest.mark.parametrize("name", zoo_names())
def test_golden_and_fake_quant_agree_on_accuracy(name, recipe, zoo_model):
    """docs/integer-inference.md §7: within 1 point of puzzle-exact accuracy on 500 puzzles. The
    fake-quant model (float64, the integer model's own fixed-point ops) follows the golden model puzzle
    for puzzle, so the paired check is stricter: at least 99% of the puzzles get the same answer."""
    from harness.compress import quantize as Q
    from harness.compress import recipes as R
    from harness.tasks import score, stack

    torch.set_num_threads(2)
    model, task, _ = zoo_model(name)
    c, r = model.cfg, R.BUILTIN[recipe]
    x, y = stack(task.generate(500, seed=2000, split="test"))
    cal = Q.calibrate(model, _calibration_tokens(task, r), c.T, c.n, c.steps)
    qw = Q.quantized_weights(model, Q.WeightSpec(r.weight_bits, r.per_channel, r.weight_clip), cal)
    scales = Q.activation_scales(model, cal, r.act_calibration)
    with torch.no_grad():
        fq = Q.with_weights(model, qw, torch.float64).forward_trace(torch.as_tensor(x),
                                                                     point=Q.fake_quant_point(scales))
    golden = Q.build_int_model(model, qw, r.weight_bits, scales).run(x, c.T, c.n, c.steps, keep_carries=False)
    fq_pred, golden_pred = fq["logits"][-1].argmax(-1).numpy(), golden["per_step"][-1]
    a = score(task, x, y, fq_pred)["exact_accuracy"]
    b = score(task, x, y, golden_pred)["exact_accuracy"]
    same = ((fq_pred == golden_pred) | ~task.answer_mask(x)).all(-1).mean()
    assert abs(a - b) <= 0.01, f"fake-quant {a:.3f} vs golden {b:.3f}"
    assert same >= 0.99, f"fake-quant and golden answer {1 - same:.1%} of the puzzles differently"


def test_the_zoo_table_gives_every_puzzle_exact_accuracy_its_interval():
    """Cards from before intervals were recorded get theirs from the puzzle count and accuracy, which give
    the number solved; the recorded ones are as the card says."""
    from harness.models.card import zoo_table
    from harness.stats import wilson

    cards = [card(n) for n in zoo_names()]
    table = zoo_table(cards).splitlines()[2:]
    assert len(table) == len(cards)
    for c, line in zip(cards, table):
        ev = c["evaluation"]
        n = ev["puzzle_set"]["count"]
        lo, hi = (ev["exact_accuracy_lo"], ev["exact_accuracy_hi"]) if "exact_accuracy_lo" in ev else \
            wilson(round(ev["exact_accuracy"] * n), n)
        assert line.endswith(f"{ev['exact_accuracy']:.1%} [{lo:.1%}, {hi:.1%}] |"), line
        assert lo <= ev["exact_accuracy"] <= hi
