"""How deep a recursive reasoner runs at inference: the depth spec ``"2,3,8,halt"`` and its label
``"T2n3s8h"``, one type, torch-free (describing a depth imports no model code).

T cycles of n z-updates make one supervision step; ``steps`` supervision steps at most; with
``halting`` a puzzle stops at the first step whose halting head says so.

The bounds of one run live here and nowhere else: the firmware's copy (``firmware/core/limits.h``) is
generated from them by ``firmware/tools/gen_tables.py``, so a legal request cannot keep a board busy
for hours and the host refuses what a board would refuse, before any board starts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Per RUN: cycles T, z-updates per cycle n, supervision steps, and network evaluations T*(n+1)*steps.
LIMITS = {"T": 16, "n": 16, "steps": 64, "evaluations": 2048}
# Per BENCH: repetitions, and multiply-accumulates rows*cols*reps*vectors.
BENCH_LIMITS = {"reps": 1000, "macs": 1 << 30}

_LABEL = re.compile(r"T(\d+)n(\d+)s(\d+)(h?)")


class DepthError(ValueError):
    """A depth spec or label that is malformed or outside ``LIMITS``; the message says which part."""


@dataclass(frozen=True)
class Depth:
    T: int
    n: int
    steps: int
    halting: bool = False

    def __post_init__(self):
        problems = check(self.T, self.n, self.steps)
        if problems:
            raise DepthError(f"depth {self.spec()}: " + "; ".join(problems))

    @classmethod
    def parse(cls, text: str | None, default: "Depth | None" = None, option: str = "--depth") -> "Depth":
        """``'T,n,steps'`` (e.g. ``'2,3,8'``), optionally followed by ``',halt'``; ``default`` when the
        text is empty or ``"default"``. ``option`` names where the text came from in the error."""
        if text is None or not str(text).strip() or str(text).strip() == "default":
            if default is None:
                raise DepthError(f"{option}: no depth given and no default")
            return default
        parts = [p.strip() for p in str(text).split(",")]
        halting = parts[-1] == "halt"
        nums = parts[:-1] if halting else parts
        # str.isdigit accepts '²' and other digit-like characters that int() refuses: ASCII only
        if len(nums) != 3 or not all(re.fullmatch(r"[0-9]+", p) for p in nums):
            raise DepthError(f"{option} {text!r}: expected 'T,n,steps' with positive integers, optionally "
                             "followed by ',halt' (e.g. '2,3,8,halt')")
        T, n, steps = (int(p) for p in nums)
        problems = check(T, n, steps)
        if problems:
            raise DepthError(f"{option} {text!r}: " + "; ".join(problems))
        return cls(T, n, steps, halting)

    @classmethod
    def from_label(cls, label: str) -> "Depth":
        """The inverse of ``label()``: ``'T2n3s8h'`` -> Depth(2, 3, 8, True)."""
        m = _LABEL.fullmatch(label)
        if not m:
            raise DepthError(f"depth label {label!r}: expected 'T<T>n<n>s<steps>' with an optional 'h' (e.g. 'T2n3s8h')")
        return cls(int(m[1]), int(m[2]), int(m[3]), bool(m[4]))

    def spec(self) -> str:
        return f"{self.T},{self.n},{self.steps}" + (",halt" if self.halting else "")

    def label(self) -> str:
        return f"T{self.T}n{self.n}s{self.steps}" + ("h" if self.halting else "")

    def evaluations(self) -> int:
        """Network evaluations at most (every step run): n z-updates and one y-update per cycle."""
        return self.T * (self.n + 1) * self.steps


def check(T: int, n: int, steps: int) -> list[str]:
    """What is wrong with a depth against ``LIMITS`` (empty when it is within them)."""
    out = [f"{name} {v} must be >= 1" for name, v in (("T", T), ("n", n), ("steps", steps)) if v < 1]
    out += [f"{name} {v} > {LIMITS[name]} (the most one run may ask for)"
            for name, v in (("T", T), ("n", n), ("steps", steps)) if v > LIMITS[name]]
    if not out and T * (n + 1) * steps > LIMITS["evaluations"]:
        out.append(f"T*(n+1)*steps = {T * (n + 1) * steps} network evaluations > {LIMITS['evaluations']} "
                   "(the most one run may ask for)")
    return out
