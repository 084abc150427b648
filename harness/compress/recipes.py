"""Recipes: a compression is data (a name and fields, loadable from TOML); ``apply`` turns a zoo model
into a ``Compressed`` model that runs puzzles and reports its carries.

Kinds of recipe:
  float     the torch model in a floating-point dtype (fp32, fp16, bf16), optionally pruned
  weights   weight-only quantization: integer weights dequantized, activations in fp16 (w8a16, w4a16)
  integer   the integer model of docs/integer-inference.md, executed by the golden reference
            (int8, int8-pt, int4-naive, int4-pc, and qat-int4 after its fine-tuning)
Training recipes (distill, linattn, qat) are in ``harness.compress.train_recipes``.
Depth (T, n, steps, halting) is not part of a recipe: it is chosen when a compressed model runs.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.evaluate import Depth, halt_steps
from ..models.trm import TRM, macs_per_inference
from ..tasks import Task
from . import quantize as Q
from .prune import prune

KINDS = ("float", "weights", "integer")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str = "float"
    dtype: str = "fp32"               # float and weights kinds: the compute dtype
    weight_bits: int = 0              # weights and integer kinds: 8 or 4
    per_channel: bool = True
    weight_clip: str = "minmax"       # minmax | percentile | mse
    act_calibration: str = "max"      # integer kind: max | pNN.NN
    calib_puzzles: int = 128          # from the training split, never the evaluation puzzles
    calib_seed: int = 12345
    prune: float = 0.0                # fraction of linear weights removed (by magnitude)
    prune_structured: bool = False    # remove whole SwiGLU inner units: the matrices shrink
    train: dict[str, Any] = field(default_factory=dict)  # training recipes (distill, linattn, qat)
    description: str = ""

    def __post_init__(self):
        if self.kind not in KINDS and not self.train:
            raise ValueError(f"recipe {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"recipe {self.name!r}: dtype must be one of {sorted(DTYPES)}")
        if self.kind in ("weights", "integer") and self.weight_bits not in (4, 8):
            raise ValueError(f"recipe {self.name!r}: weight_bits must be 4 or 8 for kind {self.kind}")
        if not 0.0 <= self.prune < 1.0:
            raise ValueError(f"recipe {self.name!r}: prune must be in [0, 1)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"recipe {d.get('name', '?')!r}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUILTIN: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fp32", description="the trained model as it is"),
    Recipe("fp16", dtype="fp16", description="weights and activations in IEEE half precision"),
    Recipe("bf16", dtype="bf16", description="weights and activations in bfloat16"),
    Recipe("int8", "integer", weight_bits=8, per_channel=True,
           description="int8 per-channel weights, int8 activations (max calibration)"),
    Recipe("int8-pt", "integer", weight_bits=8, per_channel=False,
           description="int8 per-tensor weights, int8 activations"),
    Recipe("int4-naive", "integer", weight_bits=4, per_channel=False, weight_clip="minmax",
           description="int4 per-tensor min-max weights, no calibrated clipping; int8 activations"),
    Recipe("int4-pc", "integer", weight_bits=4, per_channel=True, weight_clip="mse",
           description="int4 per-channel weights, clipping chosen to minimise the layer output error on "
                       "the calibration puzzles; int8 activations; no retraining"),
    Recipe("w8a16", "weights", dtype="fp16", weight_bits=8, per_channel=True,
           description="int8 per-channel weights, activations in fp16 (weight-only)"),
    Recipe("w4a16", "weights", dtype="fp16", weight_bits=4, per_channel=True, weight_clip="mse",
           description="int4 per-channel MSE-clipped weights, activations in fp16 (weight-only)"),
    Recipe("prune-50", prune=0.5, description="50% of linear weights zeroed by magnitude, no fine-tuning"),
    Recipe("prune-75", prune=0.75, description="75% of linear weights zeroed by magnitude, no fine-tuning"),
    Recipe("prune-90", prune=0.9, description="90% of linear weights zeroed by magnitude, no fine-tuning"),
    Recipe("prune-50s", prune=0.5, prune_structured=True,
           description="half of every SwiGLU's inner units removed (smallest weight norm): matrices shrink"),
]}


def load_recipes(path: str | Path) -> dict[str, Recipe]:
    """Recipes from a TOML file: one table per recipe, ``[recipes.NAME]`` with Recipe fields."""
    data = tomllib.loads(Path(path).read_text())
    tables = data.get("recipes", {})
    if not tables:
        raise ValueError(f"{path}: no [recipes.NAME] tables")
    return {name: Recipe.from_dict({"name": name, **fields_}) for name, fields_ in tables.items()}


def get_recipe(name_or_file: str, extra: dict[str, Recipe] | None = None) -> Recipe:
    """A built-in recipe, one from ``extra``, or 'FILE.toml:NAME'."""
    from .train_recipes import TRAINED

    if ":" in name_or_file and name_or_file.split(":", 1)[0].endswith(".toml"):
        path, name = name_or_file.split(":", 1)
        recipes = load_recipes(path)
        if name not in recipes:
            raise ValueError(f"{path} has no recipe {name!r}: it has {sorted(recipes)}")
        return recipes[name]
    table = {**BUILTIN, **TRAINED, **(extra or {})}
    if name_or_file not in table:
        raise ValueError(f"unknown recipe {name_or_file!r}: built-in recipes are {sorted(table)}, "
                         f"or give FILE.toml:NAME")
    return table[name_or_file]


# --- the compressed model -------------------------------------------------------------------------
@dataclass
class Compressed:
    """A compressed model ready to run puzzles at any depth.

    ``base`` is the fp32 torch model the compression ends in (pruned, fine-tuned or a student: it
    fixes the architecture, parameters and MACs). It runs either as ``int_model`` (integer recipes,
    through the golden reference) or as ``torch_model`` (``base`` or a cast or weight-quantized copy)."""
    recipe: Recipe
    base: TRM
    torch_model: TRM | None = None
    int_model: Any = None
    dtype: torch.dtype = torch.float32
    info: dict[str, Any] = field(default_factory=dict)

    def run(self, tokens: np.ndarray, depth: Depth, batch: int = 128, keep_carries: bool = True) -> dict[str, np.ndarray]:
        """Predictions after every step [S, B, L], halting decisions [S, B], the step each puzzle
        stops at, and the carry after every cycle dequantized to float32: y and z [S, T, B, L, D]."""
        parts = [self._run_batch(np.asarray(tokens[i:i + batch]), depth, keep_carries)
                 for i in range(0, len(tokens), batch)]
        batch_axis = {"per_step": 1, "halt": 1, "y": 2, "z": 2}
        out = {k: np.concatenate([p[k] for p in parts], axis=batch_axis[k]) for k in parts[0]}
        out["halt_step"] = halt_steps(np.where(out["halt"], 1.0, -1.0), depth)
        return out

    def _run_batch(self, tokens: np.ndarray, depth: Depth, keep_carries: bool) -> dict[str, np.ndarray]:
        if self.int_model is not None:
            r = self.int_model.run(tokens, depth.T, depth.n, depth.steps, keep_carries)
            out = {"per_step": r["per_step"], "halt": r["halt"]}
            if keep_carries:
                s = self.int_model.carry_scale
                out["y"], out["z"] = r["y"].astype(np.float32) * s, r["z"].astype(np.float32) * s
            return out
        with torch.no_grad():
            r = self.torch_model.forward_trace(torch.as_tensor(tokens), depth.T, depth.n, depth.steps)
        out = {"per_step": r["logits"].argmax(-1).numpy(), "halt": (r["q_halt"] > 0).numpy()}
        if keep_carries:
            out["y"], out["z"] = r["y"].float().numpy(), r["z"].float().numpy()
        return out

    # --- size ----------------------------------------------------------------------------------
    def params(self) -> int:
        return self.base.parameter_count()

    def nonzero_params(self) -> int:
        return int(sum((p != 0).sum().item() for p in self.base.parameters()))

    def weight_bytes(self) -> int:
        """Bytes of the weights as this recipe stores them. Float recipes: every parameter at the
        dtype's size. Integer and weight-only recipes: linear layers at ``weight_bits`` plus 8 bytes per
        output row (multiplier and shift, or a scale), the rest (embedding, halting head) at int8 for
        integer recipes and at the dtype's size for weight-only ones."""
        linears = [mod.weight for name, mod in self.base.named_modules()
                   if isinstance(mod, torch.nn.Linear) and name != "halt"]
        linear = sum(w.numel() for w in linears)
        rows = sum(w.shape[0] for w in linears)
        other = self.base.parameter_count() - linear
        dtype_bytes = torch.finfo(self.dtype).bits // 8
        if self.int_model is None and not self.recipe.weight_bits:
            return (linear + other) * dtype_bytes
        rest = other if self.int_model is not None else other * dtype_bytes
        return int(np.ceil(linear * self.recipe.weight_bits / 8)) + rows * 8 + rest

    def macs(self, depth: Depth) -> int:
        return macs_per_inference(self.base.cfg, depth.T, depth.n, depth.steps)


def _calibration_tokens(task: Task, recipe: Recipe) -> np.ndarray:
    puzzles = task.generate(recipe.calib_puzzles, seed=recipe.calib_seed, split="train")
    return np.array([p.inputs for p in puzzles], dtype=np.int64)


def apply(recipe: Recipe, model: TRM, task: Task, progress=None) -> Compressed:
    """Compress ``model`` (fp32, from the zoo) with ``recipe``."""
    if recipe.train:
        from .train_recipes import apply_trained

        return apply_trained(recipe, model, task, progress)
    base = prune(model, recipe.prune, recipe.prune_structured) if recipe.prune else model
    return quantize(recipe, base, task)


def quantize(recipe: Recipe, base: TRM, task: Task) -> Compressed:
    """The precision part of a recipe applied to an fp32 model (the last stage of every recipe)."""
    dtype = DTYPES[recipe.dtype]
    if recipe.kind == "float":
        return Compressed(recipe, base, torch_model=_cast(base, dtype), dtype=dtype)
    cfg = base.cfg
    cal = Q.calibrate(base, _calibration_tokens(task, recipe), cfg.T, cfg.n, cfg.n_sup)
    qw = Q.quantized_weights(base, Q.WeightSpec(recipe.weight_bits, recipe.per_channel, recipe.weight_clip), cal)
    info = {"calibration_puzzles": cal.puzzles, "calibration_seed": recipe.calib_seed}
    if recipe.kind == "weights":
        return Compressed(recipe, base, torch_model=_cast(Q.with_weights(base, qw), dtype), dtype=dtype, info=info)
    scales = Q.activation_scales(base, cal, recipe.act_calibration)
    im = Q.build_int_model(base, qw, recipe.weight_bits, scales, recipe.to_dict())
    return Compressed(recipe, base, int_model=im, info=info)


def _cast(model: TRM, dtype: torch.dtype) -> TRM:
    if dtype == torch.float32:
        return model
    import copy

    return copy.deepcopy(model).to(dtype)
