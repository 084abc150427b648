"""Puzzle files: JSON lines of task records (``Task.to_record``), and the common sudoku CSV form
``source,q,a,rating`` (one puzzle per row; '.' or '0' for a blank; an empty ``a`` is solved on reading).

A record without an id gets "<file name>-<line number>". The CSV form has no id column, so ids do not
survive a CSV round trip.
"""
from __future__ import annotations

import csv
import json
from math import isqrt
from pathlib import Path
from typing import Any, Iterable

from . import make_task
from .base import Puzzle, Task

CSV_FIELDS = ("source", "q", "a", "rating")
MIN_ARC_CANVAS = 6

Records = list[tuple[int, dict[str, Any]]]  # (line number, record)


def write_jsonl(path: str | Path, task: Task, puzzles: Iterable[Puzzle]) -> None:
    with Path(path).open("w") as f:
        for p in puzzles:
            f.write(json.dumps(task.to_record(p)) + "\n")


def write_csv(path: str | Path, task: Task, puzzles: Iterable[Puzzle]) -> None:
    """Sudoku puzzles in the ``source,q,a,rating`` form, with the task's difficulty as the rating."""
    if task.name != "sudoku":
        raise ValueError(f"the CSV form holds sudoku puzzles, not {task.name}")
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for p in puzzles:
            rec = task.to_record(p)
            writer.writerow(["harness", rec["input"], rec["solution"], f"{task.difficulty(p):g}"])


def read_puzzles(path: str | Path, task: Task | None = None) -> tuple[Task, list[Puzzle]]:
    """Puzzles of a ``.csv`` (sudoku form) or JSON-lines file, and the task that encodes them.

    Without ``task`` it is inferred from the records: their task name and the grid size."""
    path = Path(path)
    records = _csv_records(path) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    if task is None:
        task = _infer_task(path, records)
    puzzles = []
    for line, rec in records:
        where = f"{path}:{line}"
        if rec.get("task", task.name) != task.name:
            raise ValueError(f"{where}: a {rec['task']!r} record where {task.name!r} ones were expected")
        try:
            puzzles.append(task.from_record({**rec, "id": rec.get("id") or f"{path.name}-{line}"}))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from e
    return task, puzzles


def _jsonl_records(path: Path) -> Records:
    records = []
    with path.open() as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line}: not JSON: {e}") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{line}: expected a JSON object, got {type(rec).__name__}")
            records.append((line, rec))
    return records


def _csv_records(path: Path) -> Records:
    records = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if "q" not in (reader.fieldnames or ()):
            raise ValueError(f"{path}:1: expected a header with columns {','.join(CSV_FIELDS)}")
        for row in reader:  # DictReader skips blank lines itself
            meta: dict[str, Any] = {}
            if row.get("source"):
                meta["source"] = row["source"]
            if row.get("rating"):
                meta["rating"] = _number(row["rating"])
            records.append((reader.line_num, {"task": "sudoku", "input": row["q"],
                                              "solution": row.get("a") or None, "meta": meta}))
    return records


def _number(text: str) -> int | float | str:
    """A rating as a number when it reads as one, else as the text itself."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def _infer_task(path: Path, records: Records) -> Task:
    if not records:
        raise ValueError(f"{path}: no records, so the task cannot be inferred; pass one")
    names = {rec.get("task") for _, rec in records}
    if len(names) != 1 or None in names:
        raise ValueError(f"{path}: cannot infer one task from records naming {sorted(map(str, names))}")
    name = names.pop()
    line, first = records[0]
    try:
        if name == "sudoku":
            return make_task("sudoku", size=_sudoku_size(first["input"]))
        if name == "maze":
            rows = first["input"]
            return make_task("maze", size=len(rows.strip().split("/") if isinstance(rows, str) else rows))
        if name == "arc":
            rows, size = _arc_canvas(records)
            return make_task("arc", size=size, rows=rows)
        return make_task(name)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{line}: cannot infer the {name} task: {e}") from e


def _sudoku_size(grid: Any) -> int:
    """Side of a sudoku given as a string of cells, a flat list of cells or a list of rows."""
    if not isinstance(grid, str) and grid and isinstance(grid[0], list):
        return len(grid)
    cells = len(grid.strip()) if isinstance(grid, str) else len(grid)
    if isqrt(cells) ** 2 != cells:
        raise ValueError(f"{cells} cells do not make a square grid")
    return isqrt(cells)


def _arc_canvas(records: Records) -> tuple[int | None, int]:
    """(rows, size) of the smallest canvas that holds every grid of the file (one task encodes them
    all): a single row when every grid is one row high, else a square; size at least MIN_ARC_CANVAS.
    Rows None means square. Malformed grids are left for from_record to report with their line."""
    side, heights = MIN_ARC_CANVAS, set()
    for _, rec in records:
        given = rec.get("input")
        for grid in [*(given.values() if isinstance(given, dict) else ()), rec.get("solution")]:
            if isinstance(grid, list) and grid and all(isinstance(row, list) for row in grid):
                heights.add(len(grid))
                side = max(side, *map(len, grid))
    if heights == {1}:
        return 1, side
    return None, max([side, *heights])
