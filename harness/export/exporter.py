"""From a zoo model and a recipe to a model blob (``harness export``), with a cache.

Compressing (calibration on 128 training-split puzzles) takes seconds; the blob for a given
checkpoint, recipe and version of the compression/export code is cached under
``$HARNESS_CACHE/blobs/`` (default ``~/.cache/harness``) so runs and tests reuse it. The golden model
of an exported blob is ``harness.export.blob.from_blob(blob)``: exactly what the firmware reads.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from ..models.checkpoint import load_checkpoint, resolve
from . import blob as B

PKG = Path(__file__).resolve().parent.parent
CODE = ("compress", "golden", "export", "models")


def _cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "blobs"


def _key(model: str, recipe) -> str:
    h = hashlib.sha256()
    folder = resolve(model)
    for p in sorted(folder.iterdir()):
        if p.suffix in (".safetensors", ".json"):
            h.update(p.name.encode() + p.read_bytes())
    h.update(repr(sorted(asdict(recipe).items())).encode())
    h.update(_code_digest().encode())
    return h.hexdigest()[:24]


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The compression and export code that makes a blob, hashed once per process (it does not change
    under a running harness)."""
    h = hashlib.sha256()
    for sub in CODE:
        for p in sorted((PKG / sub).glob("*.py")):
            h.update(p.read_bytes())
    return h.hexdigest()


def _cached(path: Path) -> bytes | None:
    """A cache entry, validated the way the firmware reads a blob (header, sizes, CRC, tensor table,
    every tensor the model needs); None, with a warning naming the file, when it is unusable: the
    caller rebuilds it."""
    try:
        data = path.read_bytes()
        B.from_blob(data)
        return data
    except (B.BlobError, ValueError, OSError, IndexError, KeyError, struct.error) as e:
        warn(f"blob cache entry {path} is unusable ({e}): rebuilding it")
        return None


def warn(message: str) -> None:
    """A warning on the console (stderr), where the commands print theirs."""
    from rich.console import Console
    from rich.markup import escape
    Console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def export_blob(model: str, recipe_name: str, cache: bool = True, train: bool = False) -> bytes:
    """The model blob of ``model`` (zoo name or checkpoint folder) compressed with an integer recipe. A
    training recipe (qat-int4) trains only with ``train``; else its checkpoint must be cached
    (``train_recipes.NotTrained`` says what to run)."""
    from ..compress.recipes import apply, get_recipe
    recipe = get_recipe(recipe_name)
    path = _cache_dir() / f"{_key(model, recipe)}.bin"
    if cache and path.exists():
        data = _cached(path)
        if data is not None:
            return data
    net, task, _ = load_checkpoint(model)
    compressed = apply(recipe, net, task, train=train)
    if compressed.int_model is None:
        raise ValueError(f"recipe {recipe_name!r} is not an integer recipe: only integer models run on the "
                         "firmware (try int8, int8-pt, int4-naive, int4-pc, qat-int4, or a pruned integer recipe)")
    data = B.to_blob(compressed.int_model, embeddings_to_ram=recipe.embeddings == "ram")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data
