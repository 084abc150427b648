"""Built-in recipes, recipes from TOML files, and ``apply``: a zoo model in, a ``Compressed`` model out.

Post-training recipes are here; training recipes (distill, linattn, qat-int4) are in
``harness.compress.train_recipes``. The record itself and the precision stage are in
``harness.compress.compressed``.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from ..models.trm import TRM
from ..tasks import Task
from .compressed import Compressed, Recipe, quantize
from .prune import prune
from .train_recipes import TRAINED, apply_trained

BUILTIN: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fp32", description="the trained model as it is"),
    Recipe("fp16", dtype="fp16", description="weights and activations in IEEE half precision"),
    Recipe("bf16", dtype="bf16", description="weights and activations in bfloat16"),
    Recipe("int8", "integer", weight_bits=8, per_channel=True,
           description="int8 per-channel weights, int8 activations (max calibration)"),
    Recipe("int8-ram", "integer", weight_bits=8, per_channel=True, embeddings="ram",
           description="int8 as above, the embedding tables copied to RAM on the board (not streamed from flash)"),
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
def apply(recipe: Recipe, model: TRM, task: Task, progress=None, train: bool = True) -> Compressed:
    """Compress ``model`` (fp32, from the zoo) with ``recipe``; a training recipe trains only with
    ``train`` (else ``train_recipes.NotTrained`` when its checkpoint is not cached)."""
    if recipe.train:
        return apply_trained(recipe, model, task, progress, train=train)
    base = prune(model, recipe.prune, recipe.prune_structured) if recipe.prune else model
    return quantize(recipe, base, task)
