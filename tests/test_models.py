import json

import numpy as np
import pytest
import torch

from harness.models.checkpoint import load_checkpoint, save_checkpoint
from harness.depth import Depth
from harness.models.evaluate import evaluate, halt_steps
from harness.models.train import TrainConfig, train
from harness.models.trm import TRM, TRMConfig, apply_rotary, macs_per_inference, macs_per_net, rotary_tables
from harness.tasks import make_task


@pytest.fixture(params=["mlp", "attention"])
def model(request):
    torch.manual_seed(0)
    return TRM(TRMConfig(vocab_size=8, seq_len=36, hidden=16, layers=2, heads=2, mixer=request.param,
                         T=2, n=2, steps=3))


def test_forward_trace_shapes_and_carry_count(model):
    tokens = torch.randint(0, 8, (5, 36))
    out = model.forward_trace(tokens, T=3, n=2, steps=4)
    assert out["logits"].shape == (4, 5, 36, 8)
    assert out["q_halt"].shape == (4, 5)
    # one carry (y, z) after every cycle of every step
    assert out["y"].shape == out["z"].shape == (4, 3, 5, 36, 16)
    # the last cycle's y is what the head read
    assert torch.allclose(model.head(out["y"][-1, -1]), out["logits"][-1], atol=1e-5)


def test_trace_is_the_recursion_run_by_hand(model):
    tokens = torch.randint(0, 8, (2, 36))
    out = model.forward_trace(tokens, T=2, n=2, steps=2)
    with torch.no_grad():
        x = model.input_embedding(tokens)
        y, z = model.initial_carry(tokens)
        for s in range(2):
            for t in range(2):
                for _ in range(2):
                    z = model.net(z, x + y)
                y = model.net(y, z)
                assert torch.allclose(out["y"][s, t], y) and torch.allclose(out["z"][s, t], z)


def test_blocks_are_post_norm(model):
    h = torch.randn(3, 36, 16) * 7
    out = model.blocks[0](h)
    assert torch.allclose(out.pow(2).mean(-1), torch.ones(3, 36), atol=1e-3)


def test_attention_is_not_causal_and_rotary_preserves_norm():
    cos, sin = rotary_tables(10, 8, 10000.0)
    t = torch.randn(1, 2, 10, 8)
    assert torch.allclose(apply_rotary(t, cos, sin).norm(dim=-1), t.norm(dim=-1), atol=1e-5)
    torch.manual_seed(0)
    m = TRM(TRMConfig(vocab_size=8, seq_len=10, hidden=8, layers=1, heads=2, mixer="attention"))
    h = torch.randn(1, 10, 8)
    base = m.blocks[0].mixer(h)
    h2 = h.clone()
    h2[0, -1] += 1.0  # a change at the last position reaches the first
    assert not torch.allclose(m.blocks[0].mixer(h2)[0, 0], base[0, 0])


def test_rotary_axes_lay_positions_out_on_a_grid():
    from harness import rotary

    # no axes: the usual rotary positions, coordinate p and exponent 2j / hd
    coord, num, den = rotary.layout(10, 8)
    assert (coord == np.arange(10)[:, None]).all() and np.allclose(num / den, np.arange(0, 8, 2) / 8)
    # a 9x9 sudoku's boxes: (box row, row in box, box column, column in box), pairs taking turns
    coord, num, den = rotary.layout(81, 12, (3, 3, 3, 3))
    r, c = divmod(40, 9)
    assert coord[40].tolist() == [r // 3, r % 3, c // 3, c % 3, r // 3, r % 3]
    assert num.tolist() == [0, 0, 0, 0, 1, 1] and den.tolist() == [2, 2, 1, 1, 2, 2]
    # the score of a q and a k depends only on their offset along each axis: same offset, same score
    cos, sin = rotary_tables(49, 8, 100.0, (7, 7))
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 49, 8)
    rq = apply_rotary(q, cos, sin)[0, 0]
    at = lambda r, c: 7 * r + c
    assert torch.allclose(rq[at(1, 2)] @ rq[at(2, 4)], rq[at(4, 0)] @ rq[at(5, 2)], atol=1e-4)
    assert not torch.allclose(rq[at(1, 2)] @ rq[at(2, 4)], rq[at(1, 2)] @ rq[at(1, 5)], atol=1e-2)


@pytest.mark.parametrize("fields, says", [
    (dict(seq_len=36, rope_axes=(6, 5)), "product is the sequence length 36"),
    (dict(seq_len=36, rope_axes=(36, 1)), "sizes of at least 2"),
    (dict(seq_len=16, rope_axes=(2, 2, 2, 2), hidden=8, heads=2), "only 2 channel pairs"),
    (dict(seq_len=36, rope_axes=(6, 6), puzzle_emb_len=2), "prefix has no place"),
])
def test_rotary_axes_are_checked(fields, says):
    with pytest.raises(ValueError, match=says):
        TRMConfig(**{"vocab_size": 8, "hidden": 16, "mixer": "attention", "heads": 2, **fields})


def test_learned_positions_are_a_table_added_to_x_and_no_rotary():
    """pos_encodings learned: x = sqrt(D)(e + p)/sqrt(2) as the official TRM computes it, one row per
    carry row (prefix rows too), no rotary tables in the attention mixer; the MACs are unchanged."""
    base = dict(vocab_size=8, seq_len=12, hidden=16, mixer="attention", heads=2, puzzle_emb_len=2,
                puzzle_emb_ndim=16, puzzle_ids=3)
    rope, learned = TRM(TRMConfig(**base)), TRM(TRMConfig(**base, pos_encodings="learned"))
    assert learned.pos_emb.shape == (14, 16) and rope.position_table() is None
    assert not hasattr(learned.blocks[0].mixer, "rope_cos") and hasattr(rope.blocks[0].mixer, "rope_cos")
    assert learned.parameter_count() == rope.parameter_count() + 14 * 16
    assert macs_per_inference(learned.cfg) == macs_per_inference(rope.cfg)
    tokens = torch.randint(0, 8, (2, 12))
    x = learned.input_embedding(tokens, torch.tensor([0, 2]))
    want = 4.0 * 0.707106781 * (torch.cat([torch.zeros(2, 2, 16), learned.embed(tokens)], 1) + learned.pos_emb)
    # the position rows are a term of the z-update input of their own: x + position_table is the sum
    assert torch.allclose(x + learned.position_table(), want, atol=1e-6)
    with pytest.raises(ValueError, match="pos_encodings must be one of"):
        TRMConfig(**base, pos_encodings="none")
    with pytest.raises(ValueError, match="rope_axes lay out rotary positions"):
        TRMConfig(**{**base, "puzzle_emb_len": 0, "puzzle_emb_ndim": 0, "puzzle_ids": 0},
                  pos_encodings="learned", rope_axes=(3, 4))


def test_parameter_and_mac_counts():
    cfg = TRMConfig(vocab_size=8, seq_len=36, hidden=32, layers=1, expansion=2.0, mixer="mlp", T=2, n=3, steps=4)
    m = TRM(cfg)
    # embed + (seq mixer 36→144 + 72→36) + (channel 32→128 + 64→32) + head + halting
    assert m.parameter_count() == 8 * 32 + (36 * 144 + 72 * 36) + (32 * 128 + 64 * 32) + 32 * 8 + 33
    # the count against a measurement: every nn.Linear's MACs during one network application
    measured = 0

    def count(mod, inp, out):
        nonlocal measured
        measured += inp[0].numel() * mod.out_features     # tokens x in_features x out_features

    hooks = [l.register_forward_hook(count) for l in m.modules() if isinstance(l, torch.nn.Linear)]
    with torch.no_grad():
        for block in m.blocks:
            block(torch.randn(1, 36, 32))
    for h in hooks:
        h.remove()
    assert macs_per_net(cfg) == measured > 0
    assert macs_per_inference(cfg) == 4 * (2 * 4 * macs_per_net(cfg) + 36 * 32 * 8 + 32)
    # deeper recursion costs proportionally more
    assert macs_per_inference(cfg, T=4) > macs_per_inference(cfg, T=2)


def test_depth_parsing_and_halting_steps():
    default = Depth(2, 3, 8)
    assert Depth.parse(None, default) == default
    assert Depth.parse("3,6,16,halt", default) == Depth(3, 6, 16, True)
    with pytest.raises(ValueError, match="T,n,steps"):
        Depth.parse("3,6", default)
    q = np.array([[-1.0, 2.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])  # [S=3, B=3]
    assert halt_steps(q, Depth(1, 1, 3, True)).tolist() == [2, 1, 3]
    assert halt_steps(q, Depth(1, 1, 3, False)).tolist() == [3, 3, 3]


def test_checkpoint_round_trip(model, tmp_path):
    task = make_task("sudoku", size=6)
    save_checkpoint(tmp_path / "ck", model, task, {"note": "x"})
    loaded, loaded_task, config = load_checkpoint(tmp_path / "ck")
    tokens = torch.randint(0, 8, (2, 36))
    assert torch.equal(loaded(tokens), model.eval()(tokens))
    assert loaded_task.spec() == task.spec() and config["note"] == "x"


def test_short_training_lowers_the_loss_and_resumes(tmp_path):
    cfg = TrainConfig(task={"name": "sudoku", "size": 4}, model=dict(hidden=16, layers=1, T=1, n=2, steps=2),
                      train_puzzles=64, batch=32, lr=3e-3, warmup=10, iterations=120, eval_every=60,
                      eval_puzzles=32, save_every=60)
    summary = train(cfg, tmp_path / "run")
    history = summary["history"]
    assert [h["iteration"] for h in history] == [60, 120]
    assert history[-1]["loss"] < 1.2  # from ~ln(6)=1.8 at the start
    assert history[-1]["cell_accuracy"] > 0.3  # chance is 1/4
    with pytest.raises(FileExistsError):
        train(cfg, tmp_path / "run")
    # resuming a finished run changes nothing; another config is refused; more iterations extend it
    again = train(cfg, tmp_path / "run", resume=True)
    assert again["iterations"] == 120 and again["history"] == history
    with pytest.raises(ValueError, match="another training config"):
        train(TrainConfig(**{**cfg.__dict__, "lr": 1e-3}), tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="another training config"):
        train(TrainConfig(**{**cfg.__dict__, "iterations": 100}), tmp_path / "run", resume=True)
    # the time limit is the invocation's: another one resumes (a run cut by its limit goes on)
    assert train(TrainConfig(**{**cfg.__dict__, "max_minutes": 5.0}), tmp_path / "run", resume=True)["iterations"] == 120
    longer = train(TrainConfig(**{**cfg.__dict__, "iterations": 150}), tmp_path / "run", resume=True,
                   command="extend")
    assert longer["iterations"] == 150 and longer["history"][:2] == history
    assert longer["train_commands"][-1] == "extend"
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["iterations"] == 150 and record["params"] == summary["params"]
    model, task, _ = load_checkpoint(tmp_path / "run")
    res = evaluate(model, task, task.generate(16, seed=5, split="test"), Depth(1, 2, 2))
    assert len(res["per_step"]) == 2


def test_a_checkpoint_in_the_earlier_words_loads_as_today(model, tmp_path):
    """Checkpoints written before the glossary (config `n_sup`, the channel SwiGLU saved as `mlp`) load
    into today's model with the same weights."""
    import json

    from safetensors.torch import load_file, save_file
    task = make_task("sudoku", size=6)
    save_checkpoint(tmp_path / "ck", model, task)
    state = load_file(str(tmp_path / "ck" / "model.safetensors"))
    old = {k.replace(".mixer.swiglu.", ".mixer.mlp.").replace(".ffn.", ".mlp."): v for k, v in state.items()}
    assert old.keys() != state.keys()
    save_file(old, str(tmp_path / "ck" / "model.safetensors"))
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["model"]["n_sup"] = cfg["model"].pop("steps") + 1
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    assert loaded.cfg.steps == model.cfg.steps + 1
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def _hrm(**kw):
    from harness.models.hrm import HRM, hrm_config

    torch.manual_seed(0)
    return HRM(hrm_config(vocab_size=8, seq_len=16, hidden=16, layers=2, y_layers=1, heads=2, T=2, n=2, steps=2, **kw))


def test_hrm_updates_z_with_its_z_network_and_y_with_its_y_network():
    m = _hrm()
    tokens = torch.randint(0, 8, (2, 16))
    out = m.forward_trace(tokens)
    with torch.no_grad():
        x = m.input_embedding(tokens)
        y, z = m.initial_carry(tokens)
        for s in range(2):
            for t in range(2):
                for _ in range(2):
                    z = m.blocks_on(z + x + y)                       # the z network (HRM's L module)
                h = y + z
                for block in m.y_blocks:                             # the y network (HRM's H module)
                    h = block(h)
                y = h
                assert torch.allclose(out["y"][s, t], y, atol=1e-6) and torch.allclose(out["z"][s, t], z, atol=1e-6)
    # two logits (halt, continue) read from y's first position; the decision is halt - continue
    assert out["q_logits"].shape == (2, 2, 2)
    assert torch.allclose(out["q_halt"], out["q_logits"][..., 0] - out["q_logits"][..., 1])
    assert torch.allclose(out["q_logits"][-1], m.halt(out["y"][-1, -1][:, 0]))
    # the count of MACs knows the y network has its own depth
    one = macs_per_net(m.cfg, 1)
    assert macs_per_inference(m.cfg) == 2 * (2 * (2 * 2 * one + one) + 16 * 16 * 8 + 16 * 2)


def test_hrm_step_takes_the_one_step_gradient():
    """Only the last z update and the last y update carry a gradient: the first z network input
    contributes nothing, so a step's loss has no gradient on the initial z through the no-grad part."""
    m = _hrm()
    tokens = torch.randint(0, 8, (2, 16))
    x = m.input_embedding(tokens)
    y, z = m.initial_carry(tokens)
    z = z.clone().requires_grad_(True)
    y2, z2, logits, q = m.step(x, y, z)
    logits.sum().backward()
    assert z.grad is None  # the first z update ran without gradient
    assert all(p.grad is not None for p in m.y_blocks.parameters()) and all(p.grad is not None for p in m.blocks.parameters())
    # a TRM's step keeps the whole last cycle: its first z update of that cycle sees the gradient
    trm = TRM(TRMConfig(vocab_size=8, seq_len=16, hidden=16, layers=1, heads=2, T=1, n=2, steps=1))
    z0 = trm.initial_carry(tokens)[1].clone().requires_grad_(True)
    trm.step(trm.input_embedding(tokens), trm.initial_carry(tokens)[0], z0)[2].sum().backward()
    assert z0.grad is not None


def test_the_prefix_comes_before_the_sequence_and_the_head_skips_it():
    cfg = TRMConfig(vocab_size=8, seq_len=16, hidden=16, layers=1, heads=2, mixer="attention", T=1, n=1, steps=1,
                    puzzle_emb_len=3, puzzle_emb_ndim=40, puzzle_ids=4, halt_read="first")
    torch.manual_seed(0)
    m = TRM(cfg)
    with torch.no_grad():
        m.puzzle_emb.normal_()
    tokens = torch.randint(0, 8, (2, 16))
    x = m.input_embedding(tokens, torch.tensor([1, 3]))
    assert x.shape == (2, 19, 16)
    assert torch.allclose(x[:, 3:], m.embed(tokens) * 4.0)
    rows = x[:, :3].reshape(2, -1) / 4.0
    assert torch.allclose(rows[0, :40], m.puzzle_emb[1]) and torch.all(rows[:, 40:] == 0)  # zero-padded
    out = m.forward_trace(tokens, puzzle_ids=torch.tensor([1, 3]))
    assert out["logits"].shape == (1, 2, 16, 8) and out["y"].shape == (1, 1, 2, 19, 16)
    assert torch.allclose(out["logits"][0], m.head(out["y"][0, 0][:, 3:]))
    with pytest.raises(ValueError, match="puzzle_emb_ndim"):
        TRMConfig(vocab_size=8, seq_len=16, hidden=16, puzzle_emb_len=2, puzzle_emb_ndim=40, puzzle_ids=1)


def test_an_hrm_trains_and_its_checkpoint_loads_as_an_hrm(tmp_path):
    from harness.models.hrm import HRM

    cfg = TrainConfig(task={"name": "sudoku", "size": 4},
                      model=dict(arch="hrm", y_layers=1, hidden=16, layers=1, heads=2, mixer="attention", T=1, n=2,
                                 steps=2, halt_logits=2, halt_read="first"),
                      train_puzzles=64, batch=8, iterations=6, eval_every=6, eval_puzzles=8, save_every=6)
    rec = train(cfg, tmp_path / "run")
    assert rec["iterations"] == 6
    model, task, config = load_checkpoint(tmp_path / "run")
    assert isinstance(model, HRM) and config["model"]["y_layers"] == 1
