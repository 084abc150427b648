"""Host evaluation of a torch TRM: accuracy after every supervision step, and with halting."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..depth import Depth
from ..tasks import Puzzle, Task, score, stack
from .trm import TRM


def default_depth(model: TRM) -> Depth:
    c = model.cfg
    return Depth(c.T, c.n, c.steps, False)


@torch.no_grad()
def predict(model: TRM, inputs: np.ndarray, depth: Depth, batch_size: int = 256,
            progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Predictions after every step [S, B, L], halting logits [S, B] and the step each puzzle halts
    at (1-based; ``steps`` when it never halts or halting is off)."""
    model.eval()
    preds, qs = [], []
    for i in range(0, len(inputs), batch_size):
        tokens = torch.as_tensor(inputs[i:i + batch_size])
        out = model.forward_trace(tokens, depth.T, depth.n, depth.steps, carries=False)
        preds.append(out["logits"].argmax(-1).numpy())
        qs.append(out["q_halt"].numpy())
        if progress:
            progress(len(tokens))
    pred = np.concatenate(preds, axis=1)
    q = np.concatenate(qs, axis=1)
    return {"per_step": pred, "q_halt": q, "halt_step": halt_steps(q, depth)}


def halt_steps(q_halt: np.ndarray, depth: Depth) -> np.ndarray:
    """1-based step at which each puzzle stops: the first positive halting logit, else the last step."""
    S = q_halt.shape[0]
    if not depth.halting:
        return np.full(q_halt.shape[1], S)
    positive = q_halt > 0
    first = positive.argmax(0) + 1
    return np.where(positive.any(0), first, S)


def accuracy_report(task: Task, inputs: np.ndarray, labels: np.ndarray, per_step: np.ndarray,
                    halt_step: np.ndarray, depth: Depth) -> dict[str, Any]:
    """Cell and puzzle-exact accuracy after each step ([S, B, L] predictions) and at the step each
    puzzle stops at (1-based ``halt_step``)."""
    per = []
    for s, pred in enumerate(per_step, start=1):
        sc = score(task, inputs, labels, pred)
        per.append({"step": s, "cell_accuracy": sc["cell_accuracy"], "exact_accuracy": sc["exact_accuracy"]})
    final_pred = per_step[halt_step - 1, np.arange(len(inputs))]
    final = score(task, inputs, labels, final_pred)
    return {
        "puzzles": len(inputs),
        "depth": {"T": depth.T, "n": depth.n, "steps": depth.steps, "halting": depth.halting},
        "cell_accuracy": final["cell_accuracy"],
        "exact_accuracy": final["exact_accuracy"],
        "mean_steps": float(halt_step.mean()),
        "per_step": per,
        "predictions": final_pred,
        "exact": final["exact"],
        "cells": final["cells"],
    }


def by_family(puzzles: list[Puzzle], exact: np.ndarray) -> dict[str, dict[str, Any]] | None:
    """Puzzle-exact accuracy per family (``meta["family"]``, the ARC task's transformation) with its 95%
    Wilson interval, where every puzzle names one and there are at least two; else None."""
    from ..stats import wilson

    families = [p.meta.get("family") for p in puzzles]
    if None in families or len(set(families)) < 2:
        return None
    out = {}
    for fam in sorted(set(families)):
        hits = np.asarray(exact)[[f == fam for f in families]]
        lo, hi = wilson(int(hits.sum()), len(hits))
        out[fam] = {"puzzles": len(hits), "exact_accuracy": float(hits.mean()), "exact_accuracy_lo": lo,
                    "exact_accuracy_hi": hi}
    return out


def evaluate(model: TRM, task: Task, puzzles: list[Puzzle], depth: Depth, batch_size: int = 256,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Cell and puzzle-exact accuracy of a torch model after each step, and at the halting step."""
    inputs, labels = stack(puzzles)
    out = predict(model, inputs, depth, batch_size, progress)
    return accuracy_report(task, inputs, labels, out["per_step"], out["halt_step"], depth)
