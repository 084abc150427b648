"""Carry-trajectory fidelity: how closely a compressed model's reasoning path follows the fp32 one.

For each puzzle and each cycle (every cycle of every supervision step, in order), the cosine
similarity between the compressed model's carry and the fp32 model's carry at the same cycle, the
carry being y and z (dequantized to float) flattened into one vector. Label-free: no solution is used.
The host (golden, from ``IntModel.run``) and the device (carries read over the probe) compute it with
the same function, ``carry_fidelity``, from int8 carries; torch models go through ``cosine_per_cycle``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def carry_matrix(run: dict[str, np.ndarray]) -> np.ndarray:
    """[C, B, 2·L·D] from a run's y and z [S, T, B, L, D]: one carry vector per cycle and puzzle."""
    y, z = run["y"], run["z"]
    S, T, B = y.shape[:3]
    return np.concatenate([y.reshape(S * T, B, -1), z.reshape(S * T, B, -1)], axis=-1).astype(np.float64)


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    """An int8 carry at the carry scale as the float32 values it stands for."""
    return q.astype(np.float32) * scale


def carry_fidelity(reference: dict[str, np.ndarray], y: np.ndarray, z: np.ndarray, scale: float) -> np.ndarray:
    """Fidelity [B, C] of int8 carries y, z [S, T, B, R, D] (at the carry ``scale``) to the reference's
    float carries: golden's on the host and a board's over the probe alike."""
    return cosine_per_cycle(reference, {"y": dequantize(y, scale), "z": dequantize(z, scale)})


def cosine_per_cycle(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity [B, C] of every puzzle's carry at every cycle (0 where a carry is all zero)."""
    a, b = carry_matrix(reference), carry_matrix(other)
    if a.shape != b.shape:
        raise ValueError(f"carries differ in shape {a.shape} vs {b.shape}: run both at the same depth")
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0).T


def summarize(cos: np.ndarray) -> dict[str, Any]:
    """Mean per cycle, final (last cycle), and the area under the per-cycle curve normalised to [0, 1]
    (the mean over cycles: 1.0 means the path is followed exactly throughout)."""
    per_cycle = cos.mean(0)
    return {"fidelity_per_cycle": per_cycle.tolist(), "fidelity_final": float(per_cycle[-1]),
            "fidelity_auc": float(per_cycle.mean()), "fidelity_min_puzzle": float(cos[:, -1].min())}


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = pd.Series(list(x)).rank(), pd.Series(list(y)).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
