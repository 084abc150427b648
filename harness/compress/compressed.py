"""The recipe record and the compressed model it produces.

A ``Recipe`` is data (a name and fields, loadable from TOML); ``quantize`` applies its precision to an
fp32 model and gives a ``Compressed`` model that runs puzzles at any depth and reports its carries.
Kinds of recipe:
  float     the torch model in a floating-point dtype (fp32, fp16, bf16), optionally pruned
  weights   weight-only quantization: integer weights dequantized, activations in fp16 (w8a16, w4a16)
  integer   the integer model of docs/integer-inference.md, executed by the golden reference
Depth (T, n, steps, halting) is not part of a recipe: it is chosen when a compressed model runs.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..depth import Depth
from ..golden.fidelity import dequantize
from ..models.evaluate import halt_steps
from ..models.trm import TRM, macs_per_inference
from ..tasks import Task
from . import quantize as Q

KINDS = ("float", "weights", "integer")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


EMBEDDINGS = ("flash", "ram")


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
    embeddings: str = "flash"         # integer kind, on the board: "flash" (streamed from the blob) or
                                      # "ram" (the blob's EMBED_RAM flag: the tables copied to the arena)
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
        if self.embeddings not in EMBEDDINGS:
            raise ValueError(f"recipe {self.name!r}: embeddings = {self.embeddings!r}: expected one of "
                             f"{', '.join(EMBEDDINGS)} (where the board keeps the embedding tables)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"recipe {d.get('name', '?')!r}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
                s = self.int_model.carry_scale   # the fidelity's dequantization (device carries: the same)
                out["y"], out["z"] = dequantize(r["y"], s), dequantize(r["z"], s)
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


# Calibration inputs per (task spec, puzzles, seed): every recipe of a study calibrates on the same
# training puzzles, which take seconds to generate (the generators reject non-training splits). A copy
# is handed out, so no caller can change the cached array.
_CALIBRATION: dict[tuple[str, int, int], np.ndarray] = {}


def _calibration_tokens(task: Task, recipe: Recipe) -> np.ndarray:
    key = (json.dumps(task.spec(), sort_keys=True, default=str), recipe.calib_puzzles, recipe.calib_seed)
    if key not in _CALIBRATION:
        if len(_CALIBRATION) >= 16:
            _CALIBRATION.clear()
        puzzles = task.generate(recipe.calib_puzzles, seed=recipe.calib_seed, split="train")
        _CALIBRATION[key] = np.array([p.inputs for p in puzzles], dtype=np.int64)
    return _CALIBRATION[key].copy()


def quantize(recipe: Recipe, base: TRM, task: Task) -> Compressed:
    """The precision part of a recipe applied to an fp32 model (the last stage of every recipe)."""
    dtype = DTYPES[recipe.dtype]
    if recipe.kind == "float":
        return Compressed(recipe, base, torch_model=_cast(base, dtype), dtype=dtype)
    cfg = base.cfg
    cal = Q.calibrate(base, _calibration_tokens(task, recipe), cfg.T, cfg.n, cfg.steps)
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
    return copy.deepcopy(model).to(dtype)
