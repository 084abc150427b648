"""Mazes on a square grid of odd side g: cells sit at even coordinates, the squares between them are
wall or passage. The maze is a perfect maze (a random spanning tree of the (g+1)/2 × (g+1)/2 cells), so
between start and goal there is exactly one path: the shortest path is unique by construction and no
tie-breaking rule is needed. Difficulty = length of that path in grid squares. A maze read from a file
may have loops: it is refused unless its shortest path is unique, because a maze is scored against
that path (the label).

Tokens: 0 pad, 1 wall, 2 open, 3 start, 4 goal, 5 path. Input has 1-4; the label is the input with
the open squares of the path (start and goal excluded) turned into 5.
"""
from __future__ import annotations

import random
from collections import deque
from typing import Any

import numpy as np

from .base import Puzzle, Task

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
CHARS = {WALL: "#", OPEN: ".", START: "S", GOAL: "G", PATH: "o"}
TOKENS = {c: t for t, c in CHARS.items()}


def shortest_path(grid: np.ndarray) -> list[tuple[int, int]]:
    """Squares of the shortest start→goal path (BFS, 4-neighbour), start and goal included."""
    g = grid.shape[0]
    (sr, sc), = np.argwhere(grid == START)
    (gr, gc), = np.argwhere(grid == GOAL)
    prev = {(sr, sc): None}
    queue = deque([(sr, sc)])
    while queue:
        r, c = queue.popleft()
        if (r, c) == (gr, gc):
            break
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < g and 0 <= nc < g and grid[nr, nc] != WALL and (nr, nc) not in prev:
                prev[(nr, nc)] = (r, c)
                queue.append((nr, nc))
    if (gr, gc) not in prev:
        raise ValueError("maze has no path from start to goal")
    path, node = [], (gr, gc)
    while node is not None:
        path.append(node)
        node = prev[node]
    return [(int(r), int(c)) for r, c in reversed(path)]


def count_shortest_paths(grid: np.ndarray) -> int:
    """Number of distinct shortest start→goal paths (for checking uniqueness)."""
    g = grid.shape[0]
    (sr, sc), = np.argwhere(grid == START)
    dist = {(sr, sc): 0}
    ways = {(sr, sc): 1}
    queue = deque([(sr, sc)])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < g and 0 <= nc < g and grid[nr, nc] != WALL:
                if (nr, nc) not in dist:
                    dist[(nr, nc)] = dist[(r, c)] + 1
                    ways[(nr, nc)] = 0
                    queue.append((nr, nc))
                if dist[(nr, nc)] == dist[(r, c)] + 1:
                    ways[(nr, nc)] += ways[(r, c)]
    (gr, gc), = np.argwhere(grid == GOAL)
    return ways.get((gr, gc), 0)


class Maze(Task):
    name = "maze"

    def __init__(self, size: int = 7, min_path: int = 0):
        if size < 3 or size % 2 == 0:
            raise ValueError(f"maze size must be odd and >= 3, got {size}")
        self.size = size
        self.min_path = min_path
        self.vocab_size = 6
        self.seq_len = size * size

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "min_path": self.min_path}

    def _carve(self, rng: random.Random) -> np.ndarray:
        """Randomised depth-first spanning tree over the cells."""
        g, cells = self.size, (self.size + 1) // 2
        grid = np.full((g, g), WALL, dtype=np.int64)
        start = (rng.randrange(cells), rng.randrange(cells))
        seen, stack = {start}, [start]
        grid[start[0] * 2, start[1] * 2] = OPEN
        while stack:
            r, c = stack[-1]
            nxt = [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= r + dr < cells and 0 <= c + dc < cells and (r + dr, c + dc) not in seen]
            if not nxt:
                stack.pop()
                continue
            nr, nc = rng.choice(nxt)
            grid[r + nr, c + nc] = OPEN  # the square between the two cells
            grid[nr * 2, nc * 2] = OPEN
            seen.add((nr, nc))
            stack.append((nr, nc))
        return grid

    def _sample(self, rng: random.Random) -> Puzzle:
        cells = (self.size + 1) // 2
        while True:
            grid = self._carve(rng)
            a, b = rng.sample(range(cells * cells), 2)
            grid[(a // cells) * 2, (a % cells) * 2] = START
            grid[(b // cells) * 2, (b % cells) * 2] = GOAL
            if len(shortest_path(grid)) >= self.min_path:
                return self._puzzle(grid, "")

    def _puzzle(self, grid: np.ndarray, pid: str, meta: dict | None = None) -> Puzzle:
        path = shortest_path(grid)
        label = grid.copy()
        for r, c in path[1:-1]:
            label[r, c] = PATH
        meta = dict(meta or {})
        meta["difficulty"] = len(path)
        return Puzzle(self.name, pid, tuple(int(t) for t in grid.ravel()),
                      tuple(int(t) for t in label.ravel()), meta)

    def _augment(self, p: Puzzle, rng: random.Random) -> Puzzle:
        k, flip = rng.randrange(4), rng.random() < 0.5

        def move(tokens) -> tuple[int, ...]:
            a = np.rot90(np.asarray(tokens).reshape(self.size, self.size), k)
            return tuple(int(t) for t in (a.T if flip else a).ravel())

        return Puzzle(self.name, p.id + "~", move(p.inputs), move(p.labels), dict(p.meta))

    def answer_mask(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs)
        return (inputs != WALL) & (inputs != 0)

    difficulty_measure = "shortest-path cells"

    def difficulty(self, p: Puzzle) -> float:
        return float(len(shortest_path(np.asarray(p.inputs).reshape(self.size, self.size))))

    def is_valid_solution(self, p: Puzzle, prediction) -> bool:
        return bool(np.array_equal(np.asarray(prediction), np.asarray(p.labels)))

    # --- files: one string of rows joined by '/', '#' wall '.' open 'S' start 'G' goal 'o' path ----
    def _text(self, tokens) -> str:
        a = np.asarray(tokens).reshape(self.size, self.size)
        return "/".join("".join(CHARS[int(t)] for t in row) for row in a)

    def to_record(self, p: Puzzle) -> dict[str, Any]:
        return {"task": self.name, "id": p.id, "input": self._text(p.inputs),
                "solution": self._text(p.labels), "meta": p.meta}

    def parse_grid(self, value, field: str = "input") -> np.ndarray:
        if not isinstance(value, (str, list)) or (isinstance(value, list) and
                                                  not all(isinstance(r, (str, list)) for r in value)):
            raise ValueError(f"field {field!r} is {type(value).__name__}: expected {self.size} rows of "
                             f"{''.join(TOKENS)} joined by '/', or a list of rows")
        rows = value.strip().split("/") if isinstance(value, str) else value
        try:
            grid = np.array([[TOKENS[ch] if isinstance(ch, str) else int(ch) for ch in row] for row in rows])
        except KeyError as e:
            raise ValueError(f"field {field!r}: unknown maze character {e}: expected one of {''.join(TOKENS)}") from None
        except (ValueError, TypeError):
            raise ValueError(f"field {field!r}: rows of different lengths or cells that are not characters: "
                             f"expected a {self.size}x{self.size} maze") from None
        if grid.shape != (self.size, self.size):
            raise ValueError(f"field {field!r}: expected a {self.size}x{self.size} maze, got shape {grid.shape}")
        return grid

    def from_record(self, rec: dict[str, Any]) -> Puzzle:
        grid = self.parse_grid(rec["input"], "input")
        if (grid == START).sum() != 1 or (grid == GOAL).sum() != 1:
            raise ValueError(f"maze {rec.get('id')!r} needs exactly one S and one G")
        puzzle = self._puzzle(grid, str(rec.get("id", "")), rec.get("meta"))
        if (ways := count_shortest_paths(grid)) != 1:
            raise ValueError(f"maze {rec.get('id')!r} has {ways} shortest paths from S to G: a maze is scored "
                             "against its one shortest path, so it must have exactly one (remove a loop)")
        if rec.get("solution"):
            given = tuple(int(t) for t in self.parse_grid(rec["solution"], "solution").ravel())
            if given != puzzle.labels:
                raise ValueError(f"maze {rec.get('id')!r}: the given solution is not the shortest path")
        return puzzle
