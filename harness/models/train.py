"""Training with deep supervision, TRM style.

A batch is a set of *slots*, each holding one puzzle and its carry. Every iteration runs one supervision
step on every slot (gradient through the last cycle only), takes one optimizer step, and detaches the
carry. A slot whose puzzle has used N_sup steps, or whose halting head says stop, is refilled with a
fresh augmented training puzzle and a fresh carry. So each optimizer step sees puzzles at every depth.

Checkpoints (EMA weights, as served) are written to ``out/`` every ``save_every`` iterations together
with ``train_state.pt`` (raw weights, optimizer, EMA, iteration, RNG), from which ``--resume`` goes on.
Carries in flight at the interruption are not saved: the resumed run starts its slots afresh.

The same loop fine-tunes and distils compressed models (``harness.compress.train_recipes``): ``init``
starts from a given model, whose linear layers may carry parametrizations (fake-quantized weights: they
are trained through them, and checkpoints hold the float weights underneath); ``point`` fake-quantizes
activations; ``teacher`` adds distillation losses. Gradients only ever see training-split puzzles.
"""
from __future__ import annotations

import copy
import json
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, replace, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..tasks import Puzzle, Task, make_task, stack
from ..tasks.files import read_puzzles, write_jsonl
from .checkpoint import CONFIG, save_checkpoint
from ..depth import Depth
from .evaluate import evaluate
from .hrm import build
from .trm import TRM, Point, TRMConfig, halt_score, identity, macs_per_inference

STATE = "train_state.pt"
POOL = "train_pool.jsonl"


@dataclass
class TrainConfig:
    task: dict[str, Any]                     # task spec, e.g. {"name": "sudoku", "size": 6}
    model: dict[str, Any] = field(default_factory=dict)  # TRMConfig fields (vocab/seq_len come from the task)
    seed: int = 0
    train_puzzles: int = 3000                # base pool, augmented on the fly
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 200
    iterations: int = 6000
    ema: float = 0.999
    halt_explore: float = 0.1                # chance a slot ignores its halting head (TRM's exploration)
    eval_every: int = 500
    eval_puzzles: int = 256
    save_every: int = 250
    threads: int = 1
    max_minutes: float = 0.0                 # stop (and save) after this invocation trained this long; 0 = no limit
    # Loss weights with a teacher (distillation); without one the loss is the label cross-entropy alone.
    # KL(teacher ‖ student) on the scored positions at temperature 1; carry: MSE of y and z after the step.
    distill_ce: float = 0.5
    distill_kl: float = 1.0
    distill_carry: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**d)


def build_model(cfg: TrainConfig, task: Task) -> TRM:
    return build(TRMConfig(vocab_size=task.vocab_size, seq_len=task.seq_len, **cfg.model))


def _check_fits(model: TRM, task: Task, role: str) -> None:
    c = model.cfg
    if (c.vocab_size, c.seq_len) != (task.vocab_size, task.seq_len):
        raise ValueError(f"the {role} model (vocabulary {c.vocab_size}, sequence {c.seq_len}) was not made for "
                         f"task {task.spec()} (vocabulary {task.vocab_size}, sequence {task.seq_len}): "
                         f"give a model of this task")


def _served(model: TRM) -> TRM:
    """The model as checkpoints hold it: without parametrizations (which only shape training, e.g. fake
    quantization), with the float weights underneath them."""
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return model
    # A plain model built anew: removing the parametrizations from a copy would also strip the
    # parametrized class, which the copy shares with the model being trained.
    state = {}
    for key, value in model.state_dict().items():
        module, parametrized, rest = key.partition(".parametrizations.")
        if not parametrized:
            state[key] = value
        elif rest.endswith(".original"):
            state[f"{module}.{rest.removesuffix('.original')}"] = value
    plain = build(model.cfg)
    plain.load_state_dict(state)
    return plain


def _initial_carry(model: TRM, tokens: torch.Tensor, point: Point) -> tuple[torch.Tensor, torch.Tensor]:
    # the initial carry is stored like every carry, in the RMSNorm output format
    y, z = model.initial_carry(tokens)
    return point("norm", y), point("norm", z)


def _pool(cfg: TrainConfig, task: Task, out: Path, progress: Progress) -> list[Puzzle]:
    """The base training puzzles, generated once and kept in ``out`` so a resume reuses them."""
    path = out / POOL
    if path.exists():
        _, puzzles = read_puzzles(path, task)
        if len(puzzles) == cfg.train_puzzles:
            return puzzles
    bar = progress.add_task("generating training puzzles", total=cfg.train_puzzles, status="")
    puzzles = []
    for p in task.iter_generate(cfg.train_puzzles, cfg.seed, "train"):
        puzzles.append(p)
        progress.advance(bar)
    progress.remove_task(bar)
    write_jsonl(path, task, puzzles)
    return puzzles


class _Slots:
    """The batch of puzzles in flight, each with its own carry (and the teacher's) and step count."""

    def __init__(self, model: TRM, task: Task, pool: list[Puzzle], batch: int, rng: random.Random,
                 point: Point, teacher: TRM | None):
        self.model, self.task, self.pool, self.rng = model, task, pool, rng
        self.point, self.teacher = point, teacher
        fresh = [self._draw() for _ in range(batch)]
        self.inputs, self.labels = (torch.as_tensor(a) for a in stack(fresh))
        self.y, self.z = _initial_carry(model, self.inputs, point)
        if teacher is not None:
            self.ty, self.tz = teacher.initial_carry(self.inputs)
        self.steps = torch.zeros(batch, dtype=torch.long)

    def scored(self) -> torch.Tensor:
        """Positions the loss sees: every labelled one, and every answer cell even where its label is
        padding (an arc output smaller than the canvas: the model must learn the output's size)."""
        answer = torch.as_tensor(self.task.answer_mask(self.inputs.numpy()))
        return (self.labels != 0) | answer

    def _draw(self) -> Puzzle:
        return self.task.augment(self.rng.choice(self.pool), self.rng, "train")

    def refill(self, done: torch.Tensor) -> None:
        idx = done.nonzero().flatten().tolist()
        if not idx:
            return
        fresh = [self._draw() for _ in idx]
        x, lab = (torch.as_tensor(a) for a in stack(fresh))
        self.inputs[idx], self.labels[idx] = x, lab
        self.y[idx], self.z[idx] = _initial_carry(self.model, x, self.point)
        if self.teacher is not None:
            self.ty[idx], self.tz[idx] = self.teacher.initial_carry(x)
        self.steps[idx] = 0


def _halting_loss(model: TRM, x, y, z, q, correct, step, point: Point) -> torch.Tensor:
    """The halting head's loss. One logit: binary cross-entropy against "every scored cell is right".
    Two (halt, continue; HRM's Q-learning): the halt logit the same, the continue logit against the
    value of going on, sigmoid of the next step's best logit (its halt logit alone after the last step),
    from one more step without gradient on the new carry, as the official HRM computes it."""
    if model.cfg.halt_logits == 1:
        return F.binary_cross_entropy_with_logits(q, correct.float())
    with torch.no_grad():
        nq = model.step(x, y.detach(), z.detach(), point=point)[3]
        last = step >= model.cfg.steps
        target = torch.sigmoid(torch.where(last, nq[:, 0], torch.maximum(nq[:, 0], nq[:, 1])))
    return (F.binary_cross_entropy_with_logits(q[:, 0], correct.float())
            + F.binary_cross_entropy_with_logits(q[:, 1], target))


def _lr_at(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    frac = (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, frac))))


def train(cfg: TrainConfig, out: Path, resume: bool = False, console=None, command: str = "", *,
          init: TRM | None = None, point: Point = identity, teacher: TRM | None = None,
          progress: Progress | None = None) -> dict[str, Any]:
    """Train (or resume) the run in ``out`` and return its record (sizes, iterations, history).

    init      start from a copy of this model instead of a fresh one from ``cfg.model`` (then unused)
    point     quantization point applied in every training step (e.g. fake quantization with a
              straight-through gradient); the held-out evaluations in the history run the EMA model
              without it, in float activations (its weights as any parametrization makes them)
    teacher   distil from this model: it runs the same slots with its own carries, without gradient,
              and the loss weights are cfg.distill_*; its hidden size must equal the student's
    progress  show the bars in this rich Progress (it stays the caller's) instead of a new one on
              ``console``; a disabled Progress keeps training quiet
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / STATE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a training run: pass --resume to continue it, "
                              f"or choose another --out")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    task = make_task(**cfg.task)
    if init is not None:
        _check_fits(init, task, "initial")
        model = copy.deepcopy(init).train()
    else:
        model = build_model(cfg, task)
    if teacher is not None:
        _check_fits(teacher, task, "teacher")
        if teacher.cfg.hidden != model.cfg.hidden:
            raise ValueError(f"distillation matches the carries, so the teacher's hidden size "
                             f"({teacher.cfg.hidden}) must equal the student's ({model.cfg.hidden})")
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    it, elapsed, history, commands = 0, 0.0, [], []
    if resume and (out / STATE).exists():
        state = torch.load(out / STATE, weights_only=False)
        # through from_dict, so that a run saved before a config field existed gets its default
        saved = TrainConfig.from_dict(state["config"])
        # the time limit is this invocation's, not the run's: a run cut by it resumes with any limit
        same = replace(saved, iterations=cfg.iterations, max_minutes=cfg.max_minutes) == cfg
        if not same or cfg.iterations < saved.iterations:
            raise ValueError(f"{out / STATE} was made with another training config; resume needs the same "
                             f"one (only --iterations may grow, to extend a run, and --max-minutes change)")
        previous = json.loads((out / CONFIG).read_text()) if (out / CONFIG).exists() else {}
        commands = previous.get("train_commands") or [c for c in [previous.get("train_command")] if c]
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        it, elapsed, history = state["iteration"], state["elapsed"], state["history"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    depth = Depth(model.cfg.T, model.cfg.n, model.cfg.steps)
    heldout = task.generate(cfg.eval_puzzles, seed=cfg.seed + 1, split="test")
    record = {
        "params": model.parameter_count(),
        "macs_per_inference": macs_per_inference(model.cfg),
        "train": asdict(cfg),
        # every invocation that made this checkpoint, in order (an extension resumes with more iterations
        # and recomputes the cosine schedule for the new length from where it stands)
        "train_commands": [*commands, command] if command else commands,
    }

    def save() -> None:
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "ema": ema.state_dict(),
                    "optimizer": opt.state_dict(), "iteration": it, "elapsed": elapsed,
                    "history": history, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()},
                   out / (STATE + ".tmp"))
        os.replace(out / (STATE + ".tmp"), out / STATE)
        save_checkpoint(out, _served(ema), task, {**record, "iterations": it, "train_seconds": round(elapsed, 1),
                                                  "history": history})

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    own_progress = progress is None
    bars = Progress(*columns, console=console, transient=False) if own_progress else nullcontext(progress)
    with bars as progress:
        pool = _pool(cfg, task, out, progress)
        slots = _Slots(model, task, pool, cfg.batch, rng, point, teacher)
        bar = progress.add_task(f"training {task.name} {model.cfg.mixer}", total=cfg.iterations,
                                completed=it, status="")
        started = time.monotonic() - elapsed
        invoked = time.monotonic()
        loss_avg = None
        while it < cfg.iterations:
            model.train()
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, it)
            x = point("x", model.input_embedding(slots.inputs))
            y, z, logits, q = model.step(x, slots.y, slots.z, point=point)
            mask = slots.scored()
            ce = F.cross_entropy(logits[mask], slots.labels[mask])
            correct = ((logits.argmax(-1) == slots.labels) | ~mask).all(-1)
            bce = _halting_loss(model, x, y, z, q, correct, slots.steps + 1, point) if model.cfg.halting else 0.0
            if teacher is None:
                loss = ce + 0.5 * bce
            else:
                with torch.no_grad():
                    ty, tz, t_logits, _ = teacher.step(teacher.input_embedding(slots.inputs), slots.ty, slots.tz)
                kl = F.kl_div(F.log_softmax(logits[mask], -1), F.log_softmax(t_logits[mask], -1),
                              log_target=True, reduction="batchmean")
                carry = F.mse_loss(y, ty) + F.mse_loss(z, tz)
                loss = cfg.distill_ce * ce + cfg.distill_kl * kl + cfg.distill_carry * carry + 0.5 * bce
                slots.ty, slots.tz = ty, tz
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                decay = min(cfg.ema, (1 + it) / (10 + it))  # warm-up so short runs are not all init
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            slots.y, slots.z = y.detach(), z.detach()
            slots.steps += 1
            done = slots.steps >= model.cfg.steps
            if model.cfg.halting:
                explore = torch.rand(len(done)) < cfg.halt_explore
                done |= (halt_score(q.detach(), model.cfg.halt_logits) > 0) & ~explore
            slots.refill(done)
            it += 1
            elapsed = time.monotonic() - started
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            status = f"loss {loss_avg:.3f}"
            if history:
                status += f"  held-out exact {history[-1]['exact_accuracy']:.1%}"
            progress.update(bar, completed=it, status=status)
            over_time = cfg.max_minutes and time.monotonic() - invoked > cfg.max_minutes * 60
            if it % cfg.eval_every == 0 or it == cfg.iterations or over_time:
                res = evaluate(ema, task, heldout, depth)
                history.append({"iteration": it, "seconds": round(elapsed, 1), "loss": round(loss_avg, 4),
                                "cell_accuracy": res["cell_accuracy"], "exact_accuracy": res["exact_accuracy"]})
            if it % cfg.save_every == 0 or it == cfg.iterations or over_time:
                save()
            if over_time:
                break
        if not own_progress:
            progress.remove_task(bar)
    save()
    return {**record, "iterations": it, "train_seconds": round(elapsed, 1), "history": history}
