"""Sudoku on n×n grids (4×4 with 2×2 boxes, 6×6 with 2×3 boxes, 9×9 with 3×3 boxes).

Tokens: 0 pad, 1 blank, d+1 for digit d. Every generated puzzle has exactly one solution (checked by
the solver below). Difficulty is the number of guesses a propagate-then-guess solver makes before it
finds the solution: 0 means naked and hidden singles alone solve it (the measure behind Sudoku-Extreme).
It is computed for generated puzzles; for puzzles read from a file only on demand (``difficulty``), so
reading a large file runs no solver (unless a record has no solution).

Scoring follows the rules, not the listed solution: a prediction is puzzle-exact when it keeps every
given and each row, column and box holds 1..n once (``exact``), so a puzzle with several solutions
(possible in a file) scores the same whichever one the file lists; the cells of such a prediction all
count as right. Other predictions are compared cell by cell with the listed solution.
"""
from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

import numpy as np

from .base import Puzzle, Task

BLANK = 1
BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


@lru_cache(maxsize=None)
def geometry(size: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """(units, peers) for a grid of ``size``: units are rows, columns and boxes as cell indices."""
    if size not in BOXES:
        raise ValueError(f"sudoku size {size} not supported: expected one of {sorted(BOXES)}")
    br, bc = BOXES[size]
    rows = [tuple(r * size + c for c in range(size)) for r in range(size)]
    cols = [tuple(r * size + c for r in range(size)) for c in range(size)]
    boxes = [tuple((r0 + r) * size + c0 + c for r in range(br) for c in range(bc))
             for r0 in range(0, size, br) for c0 in range(0, size, bc)]
    units = tuple(rows + cols + boxes)
    peers = tuple(tuple(sorted({p for u in units if cell in u for p in u} - {cell}))
                  for cell in range(size * size))
    return units, peers


class _Search:
    """Propagate (naked + hidden singles) then guess on the cell with fewest candidates."""

    def __init__(self, size: int, rng: random.Random | None = None):
        self.size = size
        self.units, self.peers = geometry(size)
        self.full = (1 << size) - 1
        self.rng = rng
        self.guesses = 0
        self.solutions: list[list[int]] = []

    def _assign(self, vals: list[int], cands: list[int], cell: int, d: int) -> bool:
        bit = 1 << (d - 1)
        if not cands[cell] & bit:
            return False
        vals[cell] = d
        cands[cell] = bit
        for p in self.peers[cell]:
            if vals[p] == d:
                return False
            cands[p] &= ~bit
        return True

    def _propagate(self, vals: list[int], cands: list[int]) -> bool:
        changed = True
        while changed:
            changed = False
            for cell, v in enumerate(vals):
                if v:
                    continue
                m = cands[cell]
                if m == 0:
                    return False
                if m & (m - 1) == 0:
                    if not self._assign(vals, cands, cell, m.bit_length()):
                        return False
                    changed = True
            for unit in self.units:
                for d in range(1, self.size + 1):
                    bit = 1 << (d - 1)
                    where = [c for c in unit if cands[c] & bit]
                    if not where:
                        return False
                    if len(where) == 1 and vals[where[0]] == 0:
                        if not self._assign(vals, cands, where[0], d):
                            return False
                        changed = True
        return True

    def start(self, grid: list[int]) -> tuple[list[int], list[int]] | None:
        vals = [0] * len(grid)
        cands = [self.full] * len(grid)
        for cell, d in enumerate(grid):
            if d and not self._assign(vals, cands, cell, d):
                return None
        return vals, cands

    def run(self, vals: list[int], cands: list[int], limit: int) -> None:
        if not self._propagate(vals, cands):
            return
        open_cells = [c for c, v in enumerate(vals) if v == 0]
        if not open_cells:
            self.solutions.append(vals)
            return
        cell = min(open_cells, key=lambda c: bin(cands[c]).count("1"))
        digits = [d for d in range(1, self.size + 1) if cands[cell] >> (d - 1) & 1]
        if self.rng is not None:
            self.rng.shuffle(digits)
        for d in digits:
            if len(self.solutions) >= limit:
                return
            self.guesses += 1
            v2, c2 = vals[:], cands[:]
            if self._assign(v2, c2, cell, d):
                self.run(v2, c2, limit)


def solve(grid: list[int], size: int, limit: int = 2, rng: random.Random | None = None) -> tuple[list[list[int]], int]:
    """Solutions of ``grid`` (0 = blank) up to ``limit``, and the guesses made to find the first one
    (or all of them when there are fewer than ``limit``)."""
    search = _Search(size, rng)
    state = search.start(list(grid))
    if state is None:
        return [], 0
    search.run(*state, limit=limit)
    return search.solutions, search.guesses


def difficulty_guesses(grid: list[int], size: int) -> int:
    """Guesses the deterministic propagate-then-guess solver makes before the first solution."""
    _, guesses = solve(grid, size, limit=1)
    return guesses


class Sudoku(Task):
    name = "sudoku"

    def __init__(self, size: int = 6, min_givens: int = 0):
        geometry(size)  # validates the size
        self.size = size
        self.min_givens = min_givens
        self.vocab_size = size + 2
        self.seq_len = size * size

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "min_givens": self.min_givens}

    # grids here are lists of digits, 0 = blank
    def _tokens(self, grid: list[int]) -> tuple[int, ...]:
        return tuple(d + 1 if d else BLANK for d in grid)

    def _grid(self, tokens) -> list[int]:
        return [int(t) - 1 if int(t) > BLANK else 0 for t in tokens]

    def _sample(self, rng: random.Random) -> Puzzle:
        n = self.size
        solutions, _ = solve([0] * (n * n), n, limit=1, rng=rng)
        solution = solutions[0]
        grid = solution[:]
        order = list(range(n * n))
        rng.shuffle(order)
        givens = n * n
        for cell in order:
            if givens <= self.min_givens:
                break
            keep = grid[cell]
            grid[cell] = 0
            if len(solve(grid, n, limit=2)[0]) != 1:
                grid[cell] = keep
            else:
                givens -= 1
        return self._puzzle(grid, solution, "", difficulty=True)

    def _puzzle(self, grid: list[int], solution: list[int], pid: str, meta: dict | None = None,
                difficulty: bool = False) -> Puzzle:
        """``difficulty``: run the solver for meta['difficulty'] now (generation); a file's puzzles
        keep what their record says and leave the rest to ``difficulty()``."""
        meta = dict(meta or {})
        meta["givens"] = sum(1 for d in grid if d)
        if difficulty:
            meta["difficulty"] = difficulty_guesses(grid, self.size)
        return Puzzle(self.name, pid, self._tokens(grid), self._tokens(solution), meta)

    def _augment(self, p: Puzzle, rng: random.Random) -> Puzzle:
        n = self.size
        br, bc = BOXES[n]
        relabel = list(range(1, n + 1))
        rng.shuffle(relabel)
        bands = list(range(n // br))
        stacks = list(range(n // bc))
        rng.shuffle(bands)
        rng.shuffle(stacks)
        rows = [b * br + r for b in bands for r in rng.sample(range(br), br)]
        cols = [s * bc + c for s in stacks for c in rng.sample(range(bc), bc)]
        transpose = br == bc and rng.random() < 0.5

        def move(grid: list[int]) -> list[int]:
            out = [grid[rows[r] * n + cols[c]] for r in range(n) for c in range(n)]
            if transpose:
                out = [out[c * n + r] for r in range(n) for c in range(n)]
            return [relabel[d - 1] if d else 0 for d in out]

        grid, sol = move(self._grid(p.inputs)), move(self._grid(p.labels))
        # The guess count is not invariant under symmetry: drop it rather than keep a stale value.
        meta = {k: v for k, v in p.meta.items() if k != "difficulty"}
        return Puzzle(self.name, p.id + "~", self._tokens(grid), self._tokens(sol), meta)

    def answer_mask(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(inputs) == BLANK

    def difficulty(self, p: Puzzle) -> float:
        return float(difficulty_guesses(self._grid(p.inputs), self.size))

    difficulty_measure = "solver guesses"

    def difficulty_summary(self, puzzles: list[Puzzle]) -> dict[str, Any]:
        """The solver's guesses (the base summary) and the givens: fewest, mean, most."""
        givens = np.array([sum(1 for t in p.inputs if t > BLANK) for p in puzzles])
        return {**super().difficulty_summary(puzzles),
                "givens": {"min": int(givens.min()), "mean": float(givens.mean()), "max": int(givens.max())}}

    def exact(self, inputs: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Per puzzle [...]: the givens with the predicted blanks make a grid whose every unit holds
        1..n once (what the model writes over a given is not scored, as in ``score``)."""
        x, pred = np.asarray(inputs), np.asarray(predictions)
        grid = np.where(x == BLANK, pred, x)
        units = np.asarray(geometry(self.size)[0])
        digits = np.sort(grid[..., units] - 1, axis=-1)          # [..., units, size]
        return np.all(digits == np.arange(1, self.size + 1), axis=(-2, -1))

    def is_valid_solution(self, p: Puzzle, prediction) -> bool:
        """Any grid that keeps the givens and satisfies every unit (``exact``) solves the puzzle."""
        x, pred = np.asarray(p.inputs), np.asarray(prediction)
        return bool(np.all((x == BLANK) | (pred == x)) and self.exact(x, None, pred))

    # --- files: digits as characters, '.' (or '0') for a blank ---------------------------------
    def to_record(self, p: Puzzle) -> dict[str, Any]:
        as_text = lambda g: "".join(str(d) if d else "." for d in g)  # noqa: E731
        return {"task": self.name, "id": p.id, "input": as_text(self._grid(p.inputs)),
                "solution": as_text(self._grid(p.labels)), "meta": p.meta}

    def parse_grid(self, text_or_list, field: str = "input") -> list[int]:
        """Digits of a grid written as a string of cells ('.' or '0' for a blank), a flat list of
        numbers or a list of rows; the error names the field and the first bad cell."""
        n = self.size
        want = (f"a string of {n * n} cells ('.' or '0' for a blank, digits 1..{n}) "
                f"or a list of {n} rows of {n} numbers (0 for a blank)")
        if isinstance(text_or_list, str):
            raw = list(text_or_list.strip())
        elif isinstance(text_or_list, list):
            raw = [v for row in text_or_list for v in (row if isinstance(row, list) else [row])]
        else:
            raise ValueError(f"field {field!r} is {type(text_or_list).__name__}: expected {want}")
        if len(raw) != n * n:
            raise ValueError(f"field {field!r} has {len(raw)} cells, a {n}x{n} sudoku has {n * n}: expected {want}")
        cells = []
        for i, v in enumerate(raw):
            d = (0 if v in ".0" else int(v) if v.isascii() and v.isdigit() else None) if isinstance(v, str) \
                else v if isinstance(v, int) and not isinstance(v, bool) else None
            if d is None or not 0 <= d <= n:
                raise ValueError(f"field {field!r}: cell {i + 1} (row {i // n + 1}, column {i % n + 1}) is {v!r}: "
                                 f"a {n}x{n} sudoku has the digits 1..{n} and '.' or 0 for a blank")
            cells.append(d)
        return cells

    def from_record(self, rec: dict[str, Any]) -> Puzzle:
        grid = self.parse_grid(rec["input"], "input")
        if rec.get("solution") not in (None, ""):
            solution = self.parse_grid(rec["solution"], "solution")
        else:
            sols, _ = solve(grid, self.size, limit=1)
            if not sols:
                raise ValueError(f"puzzle {rec.get('id')!r} has no solution")
            solution = sols[0]
        meta = dict(rec.get("meta") or {})
        puzzle = self._puzzle(grid, solution, str(rec.get("id", "")), meta)
        if not self.is_valid_solution(puzzle, puzzle.labels):
            raise ValueError(f"puzzle {rec.get('id')!r}: the given solution does not solve it")
        return puzzle
