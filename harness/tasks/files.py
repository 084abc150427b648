"""Puzzle files: JSON lines of task records (``Task.to_record``), and the common sudoku CSV form
``source,q,a,rating`` (one puzzle per row; '.' or '0' for a blank; an empty ``a`` is solved on reading).

A record without an id gets "<file name>-<line number>". The CSV form has no id column, so ids do not
survive a CSV round trip. Ids must be unique within a file. Files are read as a stream, one line at a
time; every error names the file, the line and, where it is one field's fault, the field.
"""
from __future__ import annotations

import csv
import json
from math import isqrt
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import make_task
from .base import Puzzle, Task

CSV_FIELDS = ("source", "q", "a", "rating")
MIN_ARC_CANVAS = 6



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

    Without ``task`` it is inferred from the records: their task name and the grid size. The file is
    read as a stream, one record at a time (``iter_puzzles``)."""
    path = Path(path)
    if task is None:
        task = infer_task(path)
    return task, list(iter_puzzles(path, task))


def iter_puzzles(path: str | Path, task: Task) -> Iterator[Puzzle]:
    """The puzzles of a file one by one, each checked as it is read; a ValueError names the file, the
    line and the field. Puzzle ids must be unique in a file (results are keyed by them)."""
    path = Path(path)
    seen: dict[str, int] = {}
    for line, rec in iter_records(path):
        where = f"{path}:{line}"
        if rec.get("task", task.name) != task.name:
            raise ValueError(f"{where}: a {rec['task']!r} record where {task.name!r} ones were expected")
        for key in ("input",):
            if key not in rec:
                raise ValueError(f"{where}: field {key!r} is missing (a record has task, id, input, solution, meta)")
            if rec[key] is None:
                raise ValueError(f"{where}: field {key!r} is null: it must hold the puzzle")
        if rec.get("meta") is not None and not isinstance(rec["meta"], dict):
            raise ValueError(f"{where}: field 'meta' is {type(rec['meta']).__name__}: expected a JSON object")
        pid = rec.get("id")
        if pid is not None and not isinstance(pid, (str, int)):
            raise ValueError(f"{where}: field 'id' is {type(pid).__name__}: expected a string")
        pid = str(pid) if pid not in (None, "") else f"{path.name}-{line}"
        if pid in seen:
            raise ValueError(f"{path}: lines {seen[pid]} and {line} both have id {pid!r}: puzzle ids must be "
                             f"unique in a file (results are kept per id); rename one")
        seen[pid] = line
        try:
            yield task.from_record({**rec, "id": pid})
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            text = f"field {e} is missing" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{where}: {text}") from None


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a ``.csv`` or JSON-lines file, read line by line."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such puzzle file") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a puzzle file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    with f:
        lines = _text_lines(path, f)
        yield from (_csv_records(path, lines) if path.suffix.lower() == ".csv" else _jsonl_records(path, lines))


def _text_lines(path: Path, f) -> Iterator[str]:
    kind = "sudoku CSV (source,q,a,rating)" if path.suffix.lower() == ".csv" else "JSON lines"
    for line, raw in enumerate(f, 1):
        if b"\0" in raw:
            raise ValueError(f"{path}:{line}: a NUL byte: this is a binary file, not {kind}")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}): "
                             f"expected {kind}") from None


def _jsonl_records(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line}: not JSON: {e}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{line}: expected a JSON object, got {type(rec).__name__}")
        yield line, rec


def _csv_records(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(lines)
    try:
        fields = reader.fieldnames
    except csv.Error as e:
        raise ValueError(f"{path}:1: not CSV: {e}") from None
    if "q" not in (fields or ()):
        raise ValueError(f"{path}:1: expected a header with columns {','.join(CSV_FIELDS)}")
    while True:
        try:
            row = next(reader)    # DictReader skips blank lines itself
        except StopIteration:
            return
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: not CSV: {e}") from None
        meta: dict[str, Any] = {}
        if row.get("source"):
            meta["source"] = row["source"]
        if row.get("rating"):
            meta["rating"] = _number(row["rating"])
        yield reader.line_num, {"task": "sudoku", "input": row["q"], "solution": row.get("a") or None, "meta": meta}


def _number(text: str) -> int | float | str:
    """A rating as a number when it reads as one, else as the text itself."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def infer_task(path: Path) -> Task:
    """The task of a puzzle file, from its first record (and, for arc, every record's grid sizes)."""
    path = Path(path)
    first = next(iter_records(path), None)
    if first is None:
        raise ValueError(f"{path}: no records, so the task cannot be inferred; pass one")
    line, rec = first
    name = rec.get("task")
    if not isinstance(name, str):
        raise ValueError(f"{path}:{line}: field 'task' is {name!r}: expected a task name, one of sudoku, maze, arc")
    try:
        if name == "sudoku":
            return make_task("sudoku", size=_sudoku_size(rec.get("input")))
        if name == "maze":
            rows = rec.get("input")
            if not isinstance(rows, (str, list)):
                raise ValueError(f"field 'input' is {type(rows).__name__}: expected rows joined by '/'")
            return make_task("maze", size=len(rows.strip().split("/") if isinstance(rows, str) else rows))
        if name == "arc":
            rows, size = _arc_canvas(path)
            return make_task("arc", size=size, rows=rows)
        return make_task(name)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{line}: cannot infer the {name} task: {e}") from None


def _sudoku_size(grid: Any) -> int:
    """Side of a sudoku given as a string of cells, a flat list of cells or a list of rows."""
    if not isinstance(grid, (str, list)):
        raise ValueError(f"field 'input' is {type(grid).__name__}: expected a string of cells or a list of rows")
    if not isinstance(grid, str) and grid and isinstance(grid[0], list):
        return len(grid)
    cells = len(grid.strip()) if isinstance(grid, str) else len(grid)
    if isqrt(cells) ** 2 != cells:
        raise ValueError(f"{cells} cells do not make a square grid")
    return isqrt(cells)


def _arc_canvas(path: Path) -> tuple[int | None, int]:
    """(rows, size) of the smallest canvas that holds every grid of the file (one task encodes them
    all): a single row when every grid is one row high, else a square; size at least MIN_ARC_CANVAS.
    Rows None means square. Malformed grids are left for from_record to report with their line."""
    side, heights = MIN_ARC_CANVAS, set()
    for _, rec in iter_records(path):
        given = rec.get("input")
        for grid in [*(given.values() if isinstance(given, dict) else ()), rec.get("solution")]:
            if isinstance(grid, list) and grid and all(isinstance(row, list) for row in grid):
                heights.add(len(grid))
                side = max(side, *map(len, grid))
    if heights == {1}:
        return 1, side
    return None, max([side, *heights])
