"""Rotary positions: the angle each channel pair of an attention head turns by at each position, torch-free.

One home for the float model's tables (``harness.models.trm.rotary_tables``) and the integer model's Q14
tables (``harness.golden.arith.rope_tables``), which the blob carries to the firmware (so a new layout
needs no firmware change). Words: docs/glossary.md ("rotary axes").
"""
from __future__ import annotations

import numpy as np


def spell(axes: tuple[int, ...]) -> str:
    """Axes as the CLI, the cards and the errors write them: 3x3x3x3."""
    return "x".join(map(str, axes))


def check(length: int, axes: tuple[int, ...], pairs: int | None = None) -> None:
    """Refuse axes that do not lay out ``length`` positions (sizes of at least 2, product ``length``) or,
    given a head's ``pairs`` of channels, that leave an axis without a pair."""
    if int(np.prod(axes)) != length or min(axes) < 2:
        raise ValueError(f"rotary axes (rope_axes) {spell(axes)} must be sizes of at least 2 whose product is "
                         f"the sequence length {length}")
    if pairs is not None and len(axes) > pairs:
        raise ValueError(f"rotary axes (rope_axes) {spell(axes)} has {len(axes)} axes but a head has only "
                         f"{pairs} channel pairs: each axis needs one")


def layout(length: int, head_dim: int, axes: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each channel pair of a head turns.

    Pair j of position p turns by coord[p, j] · theta^(-num[j] / den[j]). ``axes`` are row-major sizes
    whose product is ``length``: pair j follows axis j mod len(axes), its coordinate is p's index along
    that axis, and the axis's m pairs take the exponents 0, 1/m, 2/m, ..., so every axis starts at one
    radian per step. No axes is the one axis (length,): coordinate p, exponent 2j / head_dim, the usual
    rotary positions.
    Returns coord [L, hd/2], num [hd/2], den [hd/2] (int64)."""
    pairs = head_dim // 2
    if axes:
        check(length, axes, pairs)
    axes = tuple(axes) or (length,)
    index = np.stack(np.unravel_index(np.arange(length), axes), 1).astype(np.int64)  # [L, axes]
    axis = np.arange(pairs) % len(axes)
    num = np.arange(pairs, dtype=np.int64) // len(axes)
    den = np.bincount(axis, minlength=len(axes)).astype(np.int64)[axis]
    return index[:, axis], num, den
