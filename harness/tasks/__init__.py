"""Puzzle tasks: sudoku, maze, arc. ``make_task(name, **params)`` builds one from its spec."""
from __future__ import annotations

from typing import Any

from .base import Puzzle, Task, score, split_of, stack


TASKS = {"sudoku": (".sudoku", "Sudoku"), "maze": (".maze", "Maze"), "arc": (".arc", "Arc")}


def make_task(name: str, **params: Any) -> Task:
    from importlib import import_module

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {sorted(TASKS)}")
    module, cls = TASKS[name]
    return getattr(import_module(module, __name__), cls)(**params)


__all__ = ["Puzzle", "Task", "make_task", "score", "split_of", "stack"]
