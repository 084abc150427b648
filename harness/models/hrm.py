"""Hierarchical Reasoning Model (HRM, sapientinc/HRM): two recurrent networks, a fast one and a slow one.

In this harness's words (docs/glossary.md) HRM is the TRM of ``trm.py`` with a second network:
  z      the fast state (HRM's z_L), updated n times per cycle by the z network (HRM's L module,
         ``layers`` blocks): z <- net_z(z + y + x)
  y      the slow state (HRM's z_H), updated once per cycle by the y network (HRM's H module,
         ``y_layers`` blocks of the same kind): y <- net_y(y + z); the output head reads it
  cycle  HRM's H cycle (T of them per step, HRM's H_cycles; n = HRM's L_cycles)
Every block is a post-norm block of trm.py (attention with rotary positions and SwiGLU, as HRM has
them; the mlp mixer is allowed too). Training takes HRM's one-step gradient approximation: of a
supervision step only the last z update and the last y update carry a gradient. The halting head has
two logits (halt, continue) read from y's first position, and halts when halt > continue; the puzzle-
embedding prefix is the official TRM layout's (trm.py), which HRM shares.
"""
from __future__ import annotations

import torch
from torch import nn

from .trm import TRM, Block, Point, TRMConfig, identity


def hrm_config(**fields) -> TRMConfig:
    """An HRM's config: the official layout's defaults (two-logit halting head on the first position,
    attention), with any field given."""
    base = dict(arch="hrm", mixer="attention", halt_logits=2, halt_read="first", y_layers=fields.get("layers", 2))
    return TRMConfig(**{**base, **fields})


class HRM(TRM):
    def __init__(self, cfg: TRMConfig):
        if cfg.arch != "hrm":
            raise ValueError(f"an HRM needs arch 'hrm', got {cfg.arch!r}")
        super().__init__(cfg)
        self.y_blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.y_layers))

    def networks(self) -> list[tuple[str, nn.ModuleList]]:
        """The z network's blocks (``b{l}``) and the y network's (``yb{l}``)."""
        return [("b", self.blocks), ("yb", self.y_blocks)]

    def step(self, x, y, z, T: int | None = None, n: int | None = None, point: Point = identity):
        """One supervision step with HRM's one-step gradient: every update but the last z and the last
        y update without gradient."""
        T = T or self.cfg.T
        n = n or self.cfg.n
        with torch.no_grad():
            for c in range(T):
                for i in range(n - 1 if c == T - 1 else n):
                    z = self.z_update(x, y, z, point)
                if c < T - 1:
                    y = self.y_update(y, z, point)
        z = self.z_update(x, y, z, point)
        y = self.y_update(y, z, point)
        logits, q = self.readout(y, point)
        return y, z, logits, q


def build(cfg: TRMConfig) -> TRM:
    """The model a config describes: an HRM for arch 'hrm', else a TRM."""
    return HRM(cfg) if cfg.arch == "hrm" else TRM(cfg)
