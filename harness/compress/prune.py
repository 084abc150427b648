"""Magnitude pruning of the linear layers (the output and halting heads are left whole).

Unstructured: in every linear weight matrix the smallest |w| are set to zero; the matrices keep their
shape (the saving needs a sparse format, so weight bytes do not change). Structured: in every SwiGLU the
inner units with the smallest combined weight norm (gate row, up row and down column together) are
removed, so the matrices and the MACs really shrink."""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..models.hrm import build
from ..models.trm import TRM, SwiGLU

SKIP = ("head", "halt")


def prune(model: TRM, fraction: float, structured: bool = False) -> TRM:
    return _structured(model, fraction) if structured else _unstructured(model, fraction)


def _unstructured(model: TRM, fraction: float) -> TRM:
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, nn.Linear) and name not in SKIP:
                w = mod.weight
                k = int(round(fraction * w.numel()))
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= threshold] = 0.0
    return m


def _keep(mod: SwiGLU, fraction: float) -> torch.Tensor:
    """Indices of the inner units to keep, in their original order."""
    gate, up = mod.gate_up.weight.chunk(2, dim=0)
    score = gate.norm(dim=1) * up.norm(dim=1) * mod.down.weight.norm(dim=0)
    keep = max(1, round(len(score) * (1 - fraction)))
    return score.topk(keep).indices.sort().values


def _shrink(src: SwiGLU, dst: SwiGLU, idx: torch.Tensor) -> None:
    gate, up = src.gate_up.weight.chunk(2, dim=0)
    dst.gate_up.weight.copy_(torch.cat([gate[idx], up[idx]]))
    dst.down.weight.copy_(src.down.weight[:, idx])


def _structured(model: TRM, fraction: float) -> TRM:
    """Every block of every network keeps the same number of SwiGLU rows (the config has one inner
    width per kind), each block its own best ones."""
    cfg = model.cfg
    blocks = [b for _, net in model.networks() for b in net]
    mix = [_keep(b.mixer.swiglu, fraction) for b in blocks] if cfg.mixer == "mlp" else None
    ffn = [_keep(b.ffn, fraction) for b in blocks]
    small_cfg = dataclasses.replace(cfg, ffn_inner=len(ffn[0]), mix_inner=len(mix[0]) if mix else 0)
    small = build(small_cfg)
    state = {k: v for k, v in model.state_dict().items() if not (".ffn." in k or ".mixer.swiglu." in k)}
    small.load_state_dict(state, strict=False)
    with torch.no_grad():
        small_blocks = [b for _, net in small.networks() for b in net]
        for l, (src, dst) in enumerate(zip(blocks, small_blocks)):
            _shrink(src.ffn, dst.ffn, ffn[l])
            if mix:
                _shrink(src.mixer.swiglu, dst.mixer.swiglu, mix[l])
    return small.eval()
