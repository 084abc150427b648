"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (model config, task spec, training
record). A checkpoint is a folder; zoo models are checkpoints shipped in ``harness/models/zoo/``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..tasks import Task, make_task
from .hrm import build
from .trm import LEGACY_WEIGHTS, TRM, TRMConfig

ZOO = Path(__file__).parent / "zoo"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder whose config.json or model.safetensors cannot be used; the message names the
    file, what is wrong with it and what to do."""


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(folder: Path, model: TRM, task: Task, extra: dict[str, Any] | None = None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    config = {"model": model.cfg.to_dict(), "task": task.spec(), **(extra or {})}
    atomic_write_text(folder / CONFIG, json.dumps(config, indent=2) + "\n")


def model_digest(model: TRM) -> str:
    """sha256 of a model's weights (name and bytes of every tensor, in order) and its config: what a
    cached result or a study row was made from."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / WEIGHTS).exists()) if ZOO.exists() else []


def resolve(name_or_path: str | Path) -> Path:
    """A zoo model name, a checkpoint folder or a shape preset (``shape:NAME[@SEED]``, random weights:
    cost only, ``shapes.py``) → the folder."""
    from . import shapes
    if shapes.is_shape(name_or_path):
        return shapes.materialise(str(name_or_path))
    p = Path(name_or_path)
    if (p / WEIGHTS).exists():
        return p
    if (ZOO / str(name_or_path) / WEIGHTS).exists():
        return ZOO / str(name_or_path)
    raise FileNotFoundError(
        f"no checkpoint at {name_or_path!r}: give a folder holding {WEIGHTS} and {CONFIG}, "
        f"or a zoo model name ({', '.join(zoo_names()) or 'the zoo is empty'})")


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, checked far enough to build the model and the task
    (torch-free: the farm checks a plan's models with it before anything runs)."""
    path = Path(folder) / CONFIG
    fix = f"restore it from where the checkpoint came from (or retrain into {Path(folder)})"
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: a checkpoint folder holds {WEIGHTS} and {CONFIG}; {fix}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not text (not UTF-8): it should be the checkpoint's JSON config; {fix}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not isinstance(config.get("task"), dict):
        raise CheckpointError(f"{path}: expected a JSON object with 'model' and 'task' objects "
                              f"(written by harness train); {fix}")
    for key in ("vocab_size", "seq_len"):
        if not isinstance(config["model"].get(key), int):
            raise CheckpointError(f"{path}: model.{key} must be an integer, got {config['model'].get(key)!r}; {fix}")
    if not isinstance(config["task"].get("name"), str):
        raise CheckpointError(f"{path}: task.name must be a task name (sudoku, maze, arc), "
                              f"got {config['task'].get('name')!r}; {fix}")
    return config


def checkpoint_task(name_or_path: str | Path) -> Task:
    """The task a checkpoint solves, from its config.json alone (no torch, no weights)."""
    folder = resolve(name_or_path)
    config = read_config(folder)
    try:
        return make_task(**config["task"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG}: task {config['task']}: {e}") from None


def load_checkpoint(name_or_path: str | Path) -> tuple[TRM, Task, dict[str, Any]]:
    folder = resolve(name_or_path)
    config = read_config(folder)
    where = folder / CONFIG
    try:
        model = build(TRMConfig.from_dict(config["model"]))
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the model config {config['model']} does not build a model ({e})") from None
    model.load_state_dict(_weights(folder, model))
    model.eval()
    task = checkpoint_task(folder)
    config["path"] = str(folder)
    config.setdefault("name", folder.name)
    return model, task, config


def _legacy_name(key: str) -> str:
    """A weight's name as today's model names it (``trm.LEGACY_WEIGHTS``: earlier checkpoints called the
    channel SwiGLU ``mlp``, the word of the mixer kind)."""
    for old, new in LEGACY_WEIGHTS:
        if old in key:
            return key.replace(old, new)
    return key


def _weights(folder: Path, model: TRM) -> dict[str, Any]:
    """The tensors of ``model.safetensors``, checked name by name and shape by shape against the model
    that config.json describes."""
    from safetensors import SafetensorError

    path = folder / WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}): it is "
                              f"truncated or corrupt; restore it (or retrain into {folder})") from None
    state = {_legacy_name(k): v for k, v in state.items()}
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    other = f"{WEIGHTS} and {CONFIG} must come from the same training run"
    if (missing := sorted(set(want) - set(got))):
        raise CheckpointError(f"{path} lacks {len(missing)} tensor(s) the model of {CONFIG} needs "
                              f"(first: {missing[0]!r}): the weights belong to another model; {other}")
    if (extra := sorted(set(got) - set(want))):
        raise CheckpointError(f"{path} has {len(extra)} tensor(s) the model of {CONFIG} does not have "
                              f"(first: {extra[0]!r}): the weights belong to another model; {other}")
    for k in sorted(want):
        if got[k] != want[k]:
            raise CheckpointError(f"{path}: tensor {k!r} has shape {list(got[k])} but {CONFIG} describes "
                                  f"{list(want[k])}: the weights belong to another model; {other}")
    return state
