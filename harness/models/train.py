"""Training with deep supervision, TRM style.

A batch is a set of *slots*, each holding one puzzle and its carry. Every iteration runs one supervision
step on every slot (gradient through the last cycle only), takes one optimizer step, and detaches the
carry. A slot whose puzzle has used N_sup steps, or whose halting head says stop, is refilled with a
fresh augmented training puzzle and a fresh carry. So each optimizer step sees puzzles at every depth.

Checkpoints (EMA weights, as served) are written to ``out/`` every ``save_every`` iterations together
with ``train_state.pt`` (raw weights, optimizer, EMA, iteration, RNG), from which ``--resume`` goes on.
Carries in flight at the interruption are not saved: the resumed run starts its slots afresh.
"""
from __future__ import annotations

import copy
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..tasks import Puzzle, Task, make_task, stack
from ..tasks.files import read_puzzles, write_jsonl
from .checkpoint import save_checkpoint
from .evaluate import Depth, evaluate
from .trm import TRM, TRMConfig, macs_per_inference

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
    max_minutes: float = 0.0                 # stop (and save) after this long; 0 = no limit

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**d)


def build_model(cfg: TrainConfig, task: Task) -> TRM:
    return TRM(TRMConfig(vocab_size=task.vocab_size, seq_len=task.seq_len, **cfg.model))


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
    """The batch of puzzles in flight, each with its own carry and step count."""

    def __init__(self, model: TRM, task: Task, pool: list[Puzzle], batch: int, rng: random.Random):
        self.model, self.task, self.pool, self.rng = model, task, pool, rng
        fresh = [self._draw() for _ in range(batch)]
        self.inputs, self.labels = (torch.as_tensor(a) for a in stack(fresh))
        self.y, self.z = model.initial_carry(self.inputs)
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
        y0, z0 = self.model.initial_carry(x)
        self.y[idx], self.z[idx] = y0, z0
        self.steps[idx] = 0


def _lr_at(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    frac = (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, frac))))


def train(cfg: TrainConfig, out: Path, resume: bool = False, console=None, command: str = "") -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / STATE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a training run: pass --resume to continue it, "
                              f"or choose another --out")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    task = make_task(**cfg.task)
    model = build_model(cfg, task)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    it, elapsed, history = 0, 0.0, []
    if resume and (out / STATE).exists():
        state = torch.load(out / STATE, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{out / STATE} was made with another training config; resume needs the same one")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        it, elapsed, history = state["iteration"], state["elapsed"], state["history"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    depth = Depth(model.cfg.T, model.cfg.n, model.cfg.n_sup)
    heldout = task.generate(cfg.eval_puzzles, seed=cfg.seed + 1, split="test")
    record = {
        "params": model.parameter_count(),
        "macs_per_inference": macs_per_inference(model.cfg),
        "train": asdict(cfg),
        "train_command": command,
    }

    def save() -> None:
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "ema": ema.state_dict(),
                    "optimizer": opt.state_dict(), "iteration": it, "elapsed": elapsed,
                    "history": history, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()},
                   out / (STATE + ".tmp"))
        os.replace(out / (STATE + ".tmp"), out / STATE)
        save_checkpoint(out, ema, task, {**record, "iterations": it, "train_seconds": round(elapsed, 1),
                                          "history": history})

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        pool = _pool(cfg, task, out, progress)
        slots = _Slots(model, task, pool, cfg.batch, rng)
        bar = progress.add_task(f"training {task.name} {model.cfg.mixer}", total=cfg.iterations,
                                completed=it, status="")
        started = time.monotonic() - elapsed
        loss_avg = None
        while it < cfg.iterations:
            model.train()
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, it)
            x = model.input_embedding(slots.inputs)
            y, z, logits, q_halt = model.step(x, slots.y, slots.z)
            mask = slots.scored()
            ce = F.cross_entropy(logits[mask], slots.labels[mask])
            correct = ((logits.argmax(-1) == slots.labels) | ~mask).all(-1)
            bce = F.binary_cross_entropy_with_logits(q_halt, correct.float()) if model.cfg.halting else 0.0
            loss = ce + 0.5 * bce
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
            done = slots.steps >= model.cfg.n_sup
            if model.cfg.halting:
                explore = torch.rand(len(done)) < cfg.halt_explore
                done |= (q_halt.detach() > 0) & ~explore
            slots.refill(done)
            it += 1
            elapsed = time.monotonic() - started
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            status = f"loss {loss_avg:.3f}"
            if history:
                status += f"  held-out exact {history[-1]['exact_accuracy']:.1%}"
            progress.update(bar, completed=it, status=status)
            over_time = cfg.max_minutes and elapsed > cfg.max_minutes * 60
            if it % cfg.eval_every == 0 or it == cfg.iterations or over_time:
                res = evaluate(ema, task, heldout, depth)
                history.append({"iteration": it, "seconds": round(elapsed, 1), "loss": round(loss_avg, 4),
                                "cell_accuracy": res["cell_accuracy"], "exact_accuracy": res["exact_accuracy"]})
            if it % cfg.save_every == 0 or it == cfg.iterations or over_time:
                save()
            if over_time:
                break
    save()
    return {**record, "iterations": it, "train_seconds": round(elapsed, 1), "history": history}
