"""Paper-shaped models with random weights: **untrained, cost only**.

A shape preset is the published model's architecture as our config (the official layout of
``trm.py``'s docstring, with the fields ``importer.model_config`` derives from an official checkpoint),
filled with seeded random weights. It answers cost questions at the paper's scale (flash, RAM,
instructions per puzzle, whether it fits a board) and nothing else: its accuracy is chance, so every
row, table and report that shows one says "untrained: cost only", and no accuracy decision uses it.

``shape:NAME`` (or ``shape:NAME@SEED``) names one wherever a model is named (``harness export``,
``harness run``, a plan's ``models``): ``materialise`` writes it once as an ordinary checkpoint folder
under the cache (``HARNESS_CACHE``, default ``~/.cache/harness``) whose ``config.json`` carries
``cost_only: true`` and the preset's source, so everything downstream reads it like any checkpoint.

The shapes (their sources: the official repositories' configs, ``config/arch/trm.yaml`` and
``config/arch/hrm_v1.yaml``, and the papers):
- ``paper-trm-mlp-sudoku9``: TRM with the mlp mixer over the sequence (``mlp_t``), sudoku 9×9 (81
  tokens, vocabulary 11), hidden 512, 2 layers, expansion 4 (channel SwiGLU 1536, sequence SwiGLU 512),
  a 16-row puzzle-embedding prefix (one identifier, as sudoku-extreme has), depth T 3, n 6, 16 steps.
  About 5.03 M parameters (importing the official checkpoint's shapes gave 5,028,865).
- ``paper-hrm-sudoku9``: HRM, hidden 512, 4 + 4 attention blocks, 8 heads, expansion 4, a 1-row prefix
  (puzzle_emb_ndim 512), T 2, n 2, 16 steps: about 27 M parameters (the HRM paper's figure).
- ``paper-trm-attention-arc30``: TRM with attention, ARC at the paper's 900 tokens (its 30×30 canvas; our
  arc task holds them as three 10×30 grids, vocabulary 11 against the paper's 12), hidden
  512, 2 layers, 8 heads, a 16-row prefix. The exported network has a one-identifier table; the paper's
  table is ``PAPER_ARC_PUZZLE_IDS`` identifiers of 512 channels, whose size ``table_bytes`` computes from
  the shape (it is never materialised).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "shape:"
DEFAULT_SEED = 0
COST_ONLY = "untrained: cost only"
# the ARC-AGI-1 training set's augmented puzzle identifiers (TinyRecursiveModels issue #18 counts
# 876,406 of them, each a 512-channel row of the puzzle-embedding table)
PAPER_ARC_PUZZLE_IDS = 876_406


@dataclass(frozen=True)
class Shape:
    name: str
    task: dict[str, Any]
    model: dict[str, Any]
    source: str
    paper_depth: str = ""              # the published depth "T,n,steps" (the config's default is one cycle)
    paper_puzzle_ids: int = 0          # the published table's identifiers where the preset exports fewer
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def table_ids(self) -> int:
        """The puzzle identifiers of the published table (the exported model's where it has them all)."""
        return self.paper_puzzle_ids or self.model.get("puzzle_ids", 0)


def _official(**kw) -> dict[str, Any]:
    # the default depth is one cycle (T 1, n 1, one step): what calibration runs (random weights have
    # nothing to calibrate for) and what a plan can afford on an emulator; the published one is paper_depth
    base = dict(hidden=512, layers=2, heads=8, halting=True, halt_logits=2, halt_read="first", norm_eps=1e-5,
                rope_theta=10000.0, T=1, n=1, steps=1)
    return {**base, **kw}


SHAPES: dict[str, Shape] = {s.name: s for s in [
    Shape("paper-trm-mlp-sudoku9", {"name": "sudoku", "size": 9},
          _official(vocab_size=11, seq_len=81, mixer="mlp", mix_norm="sequence", heads=8, mix_inner=512,
                    ffn_inner=1536, puzzle_emb_len=16, puzzle_emb_ndim=512, puzzle_ids=1),
          "TinyRecursiveModels config/arch/trm.yaml with mlp_t (the sudoku-extreme run): hidden 512, L_layers 2, "
          "expansion 4, H_cycles 3, L_cycles 6, halt_max_steps 16, puzzle_emb_len 16", paper_depth="3,6,16"),
    Shape("paper-hrm-sudoku9", {"name": "sudoku", "size": 9},
          _official(vocab_size=11, seq_len=81, mixer="attention", arch="hrm", layers=4, y_layers=4, ffn_inner=1536,
                    puzzle_emb_len=1, puzzle_emb_ndim=512, puzzle_ids=1),
          "HRM config/arch/hrm_v1.yaml: hidden 512, H_layers 4, L_layers 4, 8 heads, expansion 4, H_cycles 2, "
          "L_cycles 2, halt_max_steps 16, puzzle_emb_ndim 512", paper_depth="2,2,16"),
    Shape("paper-trm-attention-arc30", {"name": "arc", "size": 30, "rows": 10},
          _official(vocab_size=11, seq_len=900, mixer="attention", ffn_inner=1536, puzzle_emb_len=16,
                    puzzle_emb_ndim=512, puzzle_ids=1),
          "TinyRecursiveModels config/arch/trm.yaml (ARC-AGI-1): hidden 512, L_layers 2, 8 heads, expansion 4, "
          "30x30 canvas (900 tokens), puzzle_emb_len 16, H_cycles 3, L_cycles 6, halt_max_steps 16",
          paper_depth="3,6,16", paper_puzzle_ids=PAPER_ARC_PUZZLE_IDS,
          notes=("exported with a one-identifier table; the paper's table is computed from its shape",
                 "900 tokens as the paper's 30x30 canvas; our arc task lays them out as three 10x30 grids "
                 "(a demonstration pair and the test input) with vocabulary 11 (the paper's has 12): the "
                 "cost is the same shape")),
]}


class ShapeError(ValueError):
    pass


def is_shape(name: str | Path) -> bool:
    return str(name).startswith(PREFIX)


def parse(name: str) -> tuple[Shape, int]:
    """``shape:NAME[@SEED]`` → the preset and the seed."""
    body = str(name)[len(PREFIX):]
    preset, _, seed = body.partition("@")
    if preset not in SHAPES:
        raise ShapeError(f"unknown shape preset {preset!r} in {name!r}: known: {', '.join(sorted(SHAPES))} "
                         f"(write shape:NAME or shape:NAME@SEED)")
    try:
        return SHAPES[preset], int(seed) if seed else DEFAULT_SEED
    except ValueError:
        raise ShapeError(f"{name!r}: the seed after @ must be an integer") from None


def table_bytes(shape: Shape, bits: int = 8) -> int:
    """The puzzle-embedding table at the paper's scale: identifiers × prefix rows × hidden, at ``bits``
    per element (the table is stored at the blob's 8-bit width; ``bits`` 32 gives the fp32 checkpoint)."""
    return shape.table_ids * shape.model.get("puzzle_emb_ndim", 0) * bits // 8


def _cache() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "shapes"


def materialise(name: str) -> Path:
    """The checkpoint folder of ``shape:NAME[@SEED]``, written on first use (random weights, seeded)."""
    shape, seed = parse(name)
    folder = _cache() / f"{shape.name}@{seed}"
    from .checkpoint import CONFIG, WEIGHTS
    if (folder / WEIGHTS).exists() and (folder / CONFIG).exists():
        return folder
    import torch

    from ..tasks import make_task
    from .checkpoint import save_checkpoint
    from .hrm import build
    from .trm import TRMConfig
    task = make_task(**shape.task)
    torch.manual_seed(seed)
    model = build(TRMConfig(**shape.model))
    tmp = folder.with_name(folder.name + ".tmp")
    save_checkpoint(tmp, model, task, extra={
        "name": f"{PREFIX}{shape.name}@{seed}", "cost_only": True, "label": COST_ONLY,
        "shape": {"preset": shape.name, "seed": seed, "source": shape.source, "paper_depth": shape.paper_depth,
                  "paper_puzzle_ids": shape.paper_puzzle_ids, "notes": list(shape.notes)},
        "parameters": sum(p.numel() for p in model.parameters())})
    if not folder.exists():
        os.replace(tmp, folder)
    return folder

