"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (model config, task spec, training
record). A checkpoint is a folder; zoo models are checkpoints shipped in ``harness/models/zoo/``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..tasks import Task, make_task
from .trm import TRM, TRMConfig

ZOO = Path(__file__).parent / "zoo"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


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


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / WEIGHTS).exists()) if ZOO.exists() else []


def resolve(name_or_path: str | Path) -> Path:
    """A zoo model name or a checkpoint folder → the folder."""
    p = Path(name_or_path)
    if (p / WEIGHTS).exists():
        return p
    if (ZOO / str(name_or_path) / WEIGHTS).exists():
        return ZOO / str(name_or_path)
    raise FileNotFoundError(
        f"no checkpoint at {name_or_path!r}: give a folder holding {WEIGHTS} and {CONFIG}, "
        f"or a zoo model name ({', '.join(zoo_names()) or 'the zoo is empty'})")


def load_checkpoint(name_or_path: str | Path) -> tuple[TRM, Task, dict[str, Any]]:
    folder = resolve(name_or_path)
    config = json.loads((folder / CONFIG).read_text())
    model = TRM(TRMConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    model.eval()
    task = make_task(**config["task"])
    config["path"] = str(folder)
    config.setdefault("name", folder.name)
    return model, task, config
