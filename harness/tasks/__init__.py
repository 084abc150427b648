"""Puzzle tasks: sudoku, maze, arc. ``make_task(name, **params)`` builds one from its spec."""
from __future__ import annotations

from typing import Any

from .base import Puzzle, Task, difficulty_text, score, split_of, stack


TASKS = {"sudoku": (".sudoku", "Sudoku"), "maze": (".maze", "Maze"), "arc": (".arc", "Arc")}


def make_task(name: str, **params: Any) -> Task:
    from importlib import import_module

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {sorted(TASKS)}")
    module, cls = TASKS[name]
    return getattr(import_module(module, __name__), cls)(**params)


def vary_task(task: Task, changes: dict[str, Any]) -> Task:
    """``task`` with some of its generation parameters changed (harder or easier puzzles for the same
    model, e.g. fewer sudoku givens): the vocabulary and the sequence length must stay the same."""
    spec = task.spec()
    params = sorted(k for k in spec if k != "name")
    for key in changes:
        if key not in params:
            raise ValueError(f"task parameter {key!r}: {spec['name']} has {', '.join(params)}")
    varied = make_task(**{**spec, **changes})
    for attr in ("vocab_size", "seq_len"):
        if getattr(varied, attr) != getattr(task, attr):
            raise ValueError(f"task parameters {changes} change the {attr} from {getattr(task, attr)} to "
                             f"{getattr(varied, attr)}: a model is evaluated on puzzles of its own shape only")
    return varied


__all__ = ["Puzzle", "Task", "difficulty_text", "make_task", "score", "split_of", "stack", "vary_task"]
