"""The statistics behind every accuracy the harness reports and every decision it takes: one home.

  - puzzle-exact accuracy is a proportion of independent puzzles: its interval is the **Wilson score**
    interval (statsmodels ``proportion_confint(method="wilson")``);
  - cell accuracy is a mean over puzzles of each puzzle's fraction of right answer cells (the cells of
    one puzzle are not independent, so the unit is the puzzle): its interval is the **t interval of
    that mean** (statsmodels ``DescrStatsW.tconfint_mean``), clipped to [0, 1];
  - two configurations run on the same puzzles are compared with the **exact McNemar test** on the
    discordant puzzles (statsmodels ``mcnemar(exact=True)``: a binomial test of b against b + c); on
    different puzzles (no shared id) with Fisher's exact test (SciPy ``fisher_exact``); per-puzzle cell
    fractions of the same puzzles with the Wilcoxon signed-rank test (SciPy ``wilcoxon``);
  - the puzzles a target interval width needs: the smallest count whose Wilson interval, at the
    accuracy given (0.5 = the widest case), is no wider than the width.

No formula is written out here: the arithmetic is the libraries'. Torch-free; the farm (planning) and
the report (tables, decisions, the gate) both use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95      # the default level of every interval and test (a plan's [statistics] confidence)
INTERVAL = "Wilson score"
CELL_INTERVAL = "t interval of the per-puzzle mean"
PAIRED_TEST = "exact McNemar (binomial on the discordant puzzles)"


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` out of ``n``; (nan, nan) for no puzzles."""
    from statsmodels.stats.proportion import proportion_confint
    if n <= 0:
        return math.nan, math.nan
    lo, hi = proportion_confint(int(correct), int(n), alpha=1 - confidence, method="wilson")
    # at 0 of n (n of n) the bound is 0 (1) exactly; the library's floating point leaves ~1e-17 there
    return (0.0 if correct == 0 else float(max(0.0, lo))), (1.0 if correct == n else float(min(1.0, hi)))


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t interval of the mean of per-puzzle values in [0, 1], clipped to [0, 1]; (nan, nan) below
    two values. All values equal gives a zero-width interval (the t interval has nothing to spread)."""
    from statsmodels.stats.weightstats import DescrStatsW
    v = np.asarray(list(values), dtype=float)
    if len(v) < 2:
        return math.nan, math.nan
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=1 - confidence)
    return float(max(0.0, lo)), float(min(1.0, hi))


def intervals(correct: int | None, n: int, cells: Iterable[float] | None = None, confidence: float = CONFIDENCE,
              prefix: str = "") -> dict[str, float]:
    """The interval columns of one configuration: ``<prefix>exact_accuracy_lo/hi`` (Wilson) and, given
    per-puzzle cell fractions, ``<prefix>cell_accuracy_lo/hi``."""
    lo, hi = wilson(correct, n, confidence) if correct is not None else (math.nan, math.nan)
    out = {f"{prefix}exact_accuracy_lo": lo, f"{prefix}exact_accuracy_hi": hi}
    if cells is not None:
        out[f"{prefix}cell_accuracy_lo"], out[f"{prefix}cell_accuracy_hi"] = mean_interval(cells, confidence)
    return out


@dataclass(frozen=True)
class Comparison:
    """A and B compared. Paired (the same puzzles): how many only A solved and only B solved, and the
    exact McNemar p-value (1.0 when they disagree on no puzzle). Different puzzles: Fisher's exact test
    on the two proportions (``only_a``/``only_b`` are then the solved counts)."""
    test: str
    puzzles: int
    only_a: int
    only_b: int
    p_value: float

    def differs(self, confidence: float = CONFIDENCE) -> bool:
        return self.p_value < 1 - confidence

    def describe(self, a: str = "A", b: str = "B") -> str:
        if self.test == FISHER:
            return f"different puzzles: {self.only_a} and {self.only_b} solved ({FISHER} p = {self.p_value:.3g})"
        return (f"{self.only_a} puzzle(s) only {a} solved, {self.only_b} only {b}, of {self.puzzles} "
                f"(exact McNemar p = {self.p_value:.3g})")

    def as_dict(self) -> dict:
        return {"test": self.test, "puzzles": self.puzzles, "only_a": self.only_a, "only_b": self.only_b,
                "p_value": self.p_value}


FISHER = "Fisher's exact test"


def paired(a: Sequence[bool], b: Sequence[bool]) -> Comparison:
    """Exact McNemar test of two configurations' per-puzzle outcomes, in the same puzzle order."""
    from statsmodels.stats.contingency_tables import mcnemar
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison of {a.size} and {b.size} puzzles: the same puzzles are needed")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return Comparison(PAIRED_TEST, int(a.size), 0, 0, 1.0)
    table = np.array([[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]])
    return Comparison(PAIRED_TEST, int(a.size), only_a, only_b, float(mcnemar(table, exact=True).pvalue))


def compare(a: Mapping[str, bool], b: Mapping[str, bool]) -> Comparison:
    """A against B from their outcomes (puzzle id -> solved): paired on the puzzles both ran when they
    share any, else Fisher's exact test of the two proportions (SciPy)."""
    shared = sorted(set(a) & set(b))
    if shared:
        return paired([a[k] for k in shared], [b[k] for k in shared])
    from scipy.stats import fisher_exact
    ka, kb = sum(map(bool, a.values())), sum(map(bool, b.values()))
    if not a or not b:
        raise ValueError("a comparison needs the outcomes of both configurations' puzzles")
    p = fisher_exact([[ka, len(a) - ka], [kb, len(b) - kb]]).pvalue
    return Comparison(FISHER, len(a) + len(b), ka, kb, float(p))


def paired_mean_change(a: Sequence[float], b: Sequence[float]) -> float:
    """The p-value of the Wilcoxon signed-rank test (SciPy) that per-puzzle values ``a`` and ``b`` (the
    same puzzles, same order) do not differ; 1.0 when no puzzle changed."""
    from scipy.stats import wilcoxon
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(np.asarray(a, dtype=float), np.asarray(b, dtype=float), zero_method="wilcox").pvalue)


def puzzles_for_width(width: float, accuracy: float = 0.5, confidence: float = CONFIDENCE,
                      limit: int = 1_000_000) -> int:
    """The fewest puzzles whose Wilson interval (at ``accuracy``; 0.5 is the widest case) is at most
    ``width`` wide (hi - lo). Found by bisection over the library's interval."""
    from statsmodels.stats.proportion import proportion_confint
    if not 0 < width <= 1:
        raise ValueError(f"interval width {width!r}: expected a number in (0, 1]")

    def wide(n: int) -> float:
        lo, hi = proportion_confint(accuracy * n, n, alpha=1 - confidence, method="wilson")
        return hi - lo

    lo, hi = 1, 1
    while wide(hi) > width:
        lo, hi = hi, hi * 2
        if hi > limit:
            raise ValueError(f"an interval of width {width:g} needs more than {limit:,} puzzles")
    while lo < hi:
        mid = (lo + hi) // 2
        if wide(mid) > width:
            lo = mid + 1
        else:
            hi = mid
    return hi
