"""Training recipes: compressions that fine-tune or retrain the model (``Recipe.train`` is not empty).

  qat-int4  quantization-aware fine-tuning: int4 per-channel weights and int8 activations are
            fake-quantized (straight-through gradients) while the fp32 zoo model trains on; the result
            is rounded onto the same int4 grid and activation scales into the integer model of
            docs/integer-inference.md
  distill   a student of the same width with half the layers, trained from scratch on the labels, the
            teacher's token distributions and the teacher's carries
  linattn   attention models only: softmax attention replaced by linear attention, fine-tuned briefly

``Recipe.train`` holds ``method`` (qat | distill | linattn) and overrides of ``TrainConfig`` fields
(iterations, lr, warmup, batch, train_puzzles, distill_* ...), so a TOML recipe can change them.
Training runs the loop of ``harness.models.train`` on training-split puzzles only: evaluation puzzles
are never seen. The trained fp32 model is cached in ``$HARNESS_CACHE/recipes/<key>`` (default
``~/.cache/harness``), the key hashing the source model, its task and the recipe, so applying the same
recipe to the same model again loads it instead of training (and an interrupted training resumes).

Training is a step a caller asks for (``train=True``), never a side effect: without it a recipe whose
checkpoint is not cached raises ``NotTrained`` naming what to run. Training and loading a cached
checkpoint are both said on the console (``log``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.nn.utils import parametrize

from ..models.checkpoint import CONFIG, load_checkpoint, model_digest
from ..models.hrm import build
from ..models.train import TrainConfig
from ..models.train import train as train_loop
from ..models.trm import TRM, Point, identity
from ..tasks import Task
from . import quantize as Q
from .compressed import Compressed, Recipe, _calibration_tokens, quantize

TRAINED: dict[str, Recipe] = {r.name: r for r in [
    Recipe("qat-int4", "integer", weight_bits=4, per_channel=True, weight_clip="mse",
           train={"method": "qat", "iterations": 600, "lr": 3e-4, "warmup": 50, "batch": 64, "train_puzzles": 2000},
           description="int4 per-channel weights and int8 activations, fine-tuned with both fake-quantized "
                       "(straight-through gradients, scales fixed by calibration); then rounded onto that same grid"),
    Recipe("distill", "float",
           train={"method": "distill", "iterations": 2000, "lr": 2e-3, "warmup": 200, "train_puzzles": 2000},
           description="a student with the same width and half the layers, trained from scratch on the labels, "
                       "the teacher's token distributions and its carries (loss weights: TrainConfig.distill_*)"),
    Recipe("linattn", "float",
           train={"method": "linattn", "iterations": 600, "lr": 5e-4, "warmup": 50, "train_puzzles": 2000},
           description="attention models only: softmax attention replaced by linear attention "
                       "(elu+1 features, cost linear in the sequence length), fine-tuned"),
]}


class NotTrained(ValueError):
    """A training recipe's checkpoint is not cached and the caller did not ask to train."""


def _say(message: str) -> None:
    from rich.console import Console
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", "~/.cache/harness")).expanduser() / "recipes"


def cache_key(recipe: Recipe, model: TRM, task: Task) -> str:
    """sha256 of the source model (its `model_digest`), its task and the recipe."""
    meta = {"model": model_digest(model), "task": task.spec(), "recipe": recipe.to_dict()}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


# --- fake-quantized weights ---------------------------------------------------------------------
class FakeQuantWeight(nn.Module):
    """Parametrization of a linear weight [N, K]: rounded to the integer grid of fixed per-row scales and
    saturated to ±(2^(bits-1) - 1); the gradient goes straight through (the rounding counts as identity)."""

    def __init__(self, scale: np.ndarray, bits: int):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).unsqueeze(1))
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(w / self.scale), -self.qmax, self.qmax) * self.scale
        return w + (q - w).detach()


def fake_quant_weights(model: TRM, spec: Q.WeightSpec, cal: Q.Calibration | None) -> TRM:
    """A copy of the model whose linear weights (those the integer model stores at ``spec.bits``: all but
    the halting head) are fake-quantized, each row with the scale that ``spec`` calibrates now."""
    m = copy.deepcopy(model)
    modules = dict(m.named_modules())
    for name, (_, scale) in Q.quantized_weights(m, spec, cal).items():
        parametrize.register_parametrization(modules[name], "weight", FakeQuantWeight(scale, spec.bits))
    return m


# --- the methods: what each hands to train() ----------------------------------------------------
@dataclass
class _Run:
    model: dict[str, Any] = field(default_factory=dict)  # TrainConfig.model, when training from scratch
    init: TRM | None = None
    point: Point = identity
    teacher: TRM | None = None


def _qat(recipe: Recipe, model: TRM, task: Task) -> _Run:
    c = model.cfg
    cal = Q.calibrate(model, _calibration_tokens(task, recipe), c.T, c.n, c.steps)
    # float ops between the points, as this recipe has always trained (its cache key does not hash code)
    point = Q.fake_quant_point(Q.activation_scales(model, cal, recipe.act_calibration), ste=True, integer_ops=False)
    spec = Q.WeightSpec(recipe.weight_bits, recipe.per_channel, recipe.weight_clip)
    return _Run(init=fake_quant_weights(model, spec, cal), point=point)


def _distill(recipe: Recipe, model: TRM, task: Task) -> _Run:
    c = model.cfg   # half the blocks of every network (an HRM's y network too)
    student = replace(c, layers=max(1, c.layers // 2), y_layers=max(1, c.y_layers // 2) if c.y_layers else 0).to_dict()
    del student["vocab_size"], student["seq_len"]  # TrainConfig.model leaves them to the task
    return _Run(model=student, teacher=model)


def _linattn(recipe: Recipe, model: TRM, task: Task) -> _Run:
    linear = build(replace(model.cfg, attention_kernel="linear"))
    linear.load_state_dict(model.state_dict())
    return _Run(init=linear)


METHODS: dict[str, Callable[[Recipe, TRM, Task], _Run]] = {"qat": _qat, "distill": _distill, "linattn": _linattn}


def _check(recipe: Recipe, method: str, model: TRM) -> None:
    """Refuse, before any training, what a method cannot do."""
    if method not in METHODS:
        raise ValueError(f"recipe {recipe.name!r}: train.method must be one of {sorted(METHODS)}, got {method!r}")
    if recipe.prune:
        raise ValueError(f"recipe {recipe.name!r}: training recipes do not prune; set prune = 0")
    if method == "qat" and recipe.kind != "integer":
        raise ValueError(f"recipe {recipe.name!r}: method qat trains for the integer model, so kind must be "
                         f"'integer' (got {recipe.kind!r})")
    if method == "linattn" and model.cfg.mixer != "attention":
        raise ValueError(f"recipe {recipe.name!r} replaces softmax attention by linear attention, but this "
                         f"model mixes tokens with {model.cfg.mixer!r}: apply it to an attention model")
    if method == "linattn" and recipe.kind == "integer":
        raise ValueError(f"recipe {recipe.name!r}: the integer model has no linear attention; "
                         f"use kind 'float' or 'weights'")


def _train_config(recipe: Recipe, options: dict[str, Any], task: Task) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)} - {"task", "model"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"recipe {recipe.name!r}: train keys {sorted(unknown)} are unknown; besides 'method' "
                         f"they are TrainConfig fields: {sorted(known)}")
    return TrainConfig(task=task.spec(), **options)


def _finished(folder: Path, cfg: TrainConfig) -> bool:
    if not (folder / CONFIG).exists():  # written after the weights
        return False
    return json.loads((folder / CONFIG).read_text()).get("iterations", 0) >= cfg.iterations


def _qat_integer(recipe: Recipe, source: TRM, trained: TRM, task: Task) -> Compressed:
    """The integer model on the grid the fine-tuning saw: activation and weight scales calibrated on the
    source model (as during QAT), the trained weights rounded onto them. Calibrating afresh on the
    trained model would move the grid the weights adapted to (on sudoku6-mlp that cost 3.5 points)."""
    c = source.cfg
    cal = Q.calibrate(source, _calibration_tokens(task, recipe), c.T, c.n, c.steps)
    spec = Q.WeightSpec(recipe.weight_bits, recipe.per_channel, recipe.weight_clip)
    qmax = 2 ** (recipe.weight_bits - 1) - 1
    modules = dict(trained.named_modules())
    qw = {}
    for name, (_, scale) in Q.quantized_weights(source, spec, cal).items():
        w = modules[name].weight.detach().numpy().astype(np.float64)
        qw[name] = (np.clip(np.round(w / scale[:, None]), -qmax, qmax).astype(np.int64), scale)
    scales = Q.activation_scales(source, cal, recipe.act_calibration)
    im = Q.build_int_model(trained, qw, recipe.weight_bits, scales, recipe.to_dict())
    return Compressed(recipe, trained, int_model=im,
                      info={"calibration_puzzles": cal.puzzles, "calibration_seed": recipe.calib_seed})


def apply_trained(recipe: Recipe, model: TRM, task: Task, progress: Progress | None = None, train: bool = True,
                  log: Callable[[str], None] | None = _say) -> Compressed:
    """Compress ``model`` (fp32, from the zoo) with a training recipe: train (with ``train``; else
    ``NotTrained``) or load the cached result, then apply the recipe's precision with
    ``recipes.quantize``. Training bars go to ``progress`` when given; what happens is said to ``log``."""
    options = dict(recipe.train)
    method = options.pop("method", None)
    _check(recipe, method, model)
    cfg = _train_config(recipe, options, task)
    folder = cache_root() / cache_key(recipe, model, task)
    name = getattr(model.cfg, "name", None) or "the model"
    if not _finished(folder, cfg):
        if not train:
            raise NotTrained(f"recipe {recipe.name!r} trains {name} first ({cfg.iterations} iterations on "
                             f"{cfg.train_puzzles} training puzzles, minutes on a CPU) and no trained checkpoint is "
                             f"cached at {folder}: rerun with --train to train it now (it is cached for next time)")
        if log:
            log(f"training recipe {recipe.name} for {name}: {cfg.iterations} iterations; checkpoint {folder}")
        run = METHODS[method](recipe, model, task)
        with nullcontext(progress) if progress is not None else Progress(disable=True) as bars:
            train_loop(replace(cfg, model=run.model), folder, resume=True, init=run.init, point=run.point,
                  teacher=run.teacher, progress=bars)
    elif log:
        log(f"recipe {recipe.name}: the trained checkpoint cached at {folder}")
    trained, _, record = load_checkpoint(folder)
    compressed = _qat_integer(recipe, model, trained, task) if method == "qat" else quantize(recipe, trained, task)
    compressed.info.update({
        "method": method,
        "train_iterations": record["iterations"],
        "train_seconds": record["train_seconds"],
        "train_history": record["history"],
        "trained_checkpoint": str(folder),
        "source_params": model.parameter_count(),
        "source_layers": model.cfg.layers,
        "params": trained.parameter_count(),
        "layers": trained.cfg.layers,
    })
    return compressed
