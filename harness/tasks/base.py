"""What every puzzle task shares: the puzzle record, the split rule, scoring and the task interface.

A task turns puzzles into fixed-length token sequences (``inputs``) with a label token per position
(``labels``). Token 0 is always padding. Which positions count as *answer cells* is the task's call
(``answer_mask``): sudoku scores the blanks, maze every open cell, arc the output grid.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

PAD = 0

# A puzzle belongs to the held-out split when the hash of its input falls in the lower half of the
# hash space. Training generators and training augmentation reject such puzzles, so the held-out split
# can never contain a training puzzle whatever the seeds.
HELDOUT_FRACTION = 0.5
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Puzzle:
    task: str
    id: str
    inputs: tuple[int, ...]
    labels: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def split_of(inputs: tuple[int, ...] | list[int]) -> str:
    """The split a puzzle belongs to, decided by its input tokens alone."""
    digest = hashlib.sha1(bytes(int(t) & 0xFF for t in inputs)).digest()
    bucket = int.from_bytes(digest[:4], "big") / 2**32
    return "test" if bucket < HELDOUT_FRACTION else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")


class Task:
    """Interface of a puzzle task. Subclasses set ``name``, ``vocab_size``, ``seq_len``."""

    name: str = ""
    vocab_size: int = 0
    seq_len: int = 0

    # --- description -------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """Parameters that rebuild this task through ``harness.tasks.make_task(**spec)``."""
        raise NotImplementedError

    # --- generation --------------------------------------------------------------------------
    def _sample(self, rng: random.Random) -> Puzzle:
        """One random puzzle (any split); ``generate`` filters by split."""
        raise NotImplementedError

    def generate(self, n: int, seed: int, split: str = "train") -> list[Puzzle]:
        """``n`` distinct puzzles of ``split``, reproducible from ``seed``."""
        return list(self.iter_generate(n, seed, split))

    def iter_generate(self, n: int, seed: int, split: str = "train") -> Iterator[Puzzle]:
        check_split(split)
        rng = random.Random(f"{self.name}:{seed}:{split}")
        seen: set[tuple[int, ...]] = set()
        made = attempts = 0
        while made < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise ValueError(f"{self.name} {self.spec()} could only make {made} distinct {split} "
                                 f"puzzles of the {n} asked for: the task is too small for that many")
            p = self._sample(rng)
            if p.inputs in seen or split_of(p.inputs) != split:
                continue
            seen.add(p.inputs)
            yield Puzzle(p.task, f"{self.name}-{split}-{seed}-{made}", p.inputs, p.labels, p.meta)
            made += 1

    # --- augmentation ------------------------------------------------------------------------
    def _augment(self, p: Puzzle, rng: random.Random) -> Puzzle:
        raise NotImplementedError

    def augment(self, p: Puzzle, rng: random.Random, split: str = "train", tries: int = 32) -> Puzzle:
        """A random validity-preserving transform of ``p`` that stays inside ``split``.

        Falls back to ``p`` itself when no transform within ``tries`` lands in the split."""
        for _ in range(tries):
            q = self._augment(p, rng)
            if split_of(q.inputs) == split:
                return q
        return p

    # --- scoring -----------------------------------------------------------------------------
    def answer_mask(self, inputs: np.ndarray) -> np.ndarray:
        """Boolean mask [..., seq_len] of the positions that are scored."""
        raise NotImplementedError

    def difficulty(self, p: Puzzle) -> float:
        raise NotImplementedError

    difficulty_measure = "difficulty"   # what ``difficulty`` counts, in words (cards say it)

    def difficulty_summary(self, puzzles: list[Puzzle]) -> dict[str, Any]:
        """How hard a puzzle set is, for a card: over the puzzles that carry their ``difficulty`` (the
        generator records it; a file's puzzles are not solved here, which could take hours for a large
        sudoku file), its mean, largest value and the share at zero."""
        d = np.array([p.meta["difficulty"] for p in puzzles if "difficulty" in p.meta], dtype=float)
        out = {"measure": self.difficulty_measure, "puzzles": len(puzzles), "rated": len(d)}
        if len(d):
            out.update(mean=float(d.mean()), max=float(d.max()), zero_share=float((d == 0).mean()))
        return out

    def exact(self, inputs: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Per puzzle [...]: whether the prediction solves it. Default: it equals the label on every
        answer cell (tasks whose rules can accept another answer override this: sudoku)."""
        mask = self.answer_mask(inputs)
        return np.all((np.asarray(predictions) == np.asarray(labels)) | ~mask, axis=-1)

    def is_valid_solution(self, p: Puzzle, prediction: np.ndarray) -> bool:
        """Whether a prediction solves the puzzle. Default: it equals the label on the answer cells."""
        mask = self.answer_mask(np.asarray(p.inputs))
        return bool(np.all(np.asarray(prediction)[mask] == np.asarray(p.labels)[mask]))

    # --- files -------------------------------------------------------------------------------
    def to_record(self, p: Puzzle) -> dict[str, Any]:
        """JSON-ready dict: ``task``, ``id``, ``input``, ``solution`` (+ ``meta``)."""
        raise NotImplementedError

    def from_record(self, rec: dict[str, Any]) -> Puzzle:
        raise NotImplementedError


def difficulty_text(summary: dict[str, Any]) -> str:
    """One line for a ``difficulty_summary``: 'givens 36; solver guesses: mean 0.05, max 3, 96% at 0'."""
    parts = []
    if "givens" in summary:
        g = summary["givens"]
        parts.append(f"givens {g['min']}" if g["min"] == g["max"] else
                     f"givens {g['min']}-{g['max']} (mean {g['mean']:.1f})")
    if "mean" not in summary:
        parts.append(f"{summary['measure']}: not recorded for these puzzles")
    else:
        of = (f" (of the {summary['rated']} puzzles that record it)"
              if summary.get("rated", summary.get("puzzles")) != summary.get("puzzles") else "")
        parts.append(f"{summary['measure']}: mean {summary['mean']:.2f}, max {summary['max']:g}, "
                     f"{summary['zero_share']:.0%} at 0{of}")
    return "; ".join(parts)


def score(task: Task, inputs: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Cell accuracy over answer cells and puzzle-exact accuracy for a batch [B, L], and per puzzle
    (``exact``; ``cells``: the fraction of that puzzle's answer cells that are right). Puzzle-exact is
    the task's ``exact``; every answer cell of a puzzle-exact prediction counts as right (for a puzzle
    with one solution that is the same as comparing with the label)."""
    inputs, labels, predictions = (np.asarray(a) for a in (inputs, labels, predictions))
    mask = task.answer_mask(inputs)
    per_puzzle = np.asarray(task.exact(inputs, labels, predictions), dtype=bool)
    right = ((predictions == labels) | per_puzzle[..., None]) & mask
    cells = mask.sum()
    return {
        "puzzles": int(labels.shape[0]),
        "cell_accuracy": float(right.sum() / cells) if cells else float("nan"),
        "exact_accuracy": float(per_puzzle.mean()) if len(per_puzzle) else float("nan"),
        "exact": per_puzzle,
        "cells": right.sum(-1) / np.maximum(mask.sum(-1), 1),
    }


def stack(puzzles: list[Puzzle]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of a list of puzzles as int64 arrays [B, L]."""
    x = np.array([p.inputs for p in puzzles], dtype=np.int64)
    y = np.array([p.labels for p in puzzles], dtype=np.int64)
    return x, y
