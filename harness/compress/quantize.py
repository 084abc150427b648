"""Post-training quantization: calibrate activation scales, quantize weights, build the integer model.

Calibration runs the float model on calibration puzzles (training split only) at its default depth and
watches every quantization point (see ``harness.models.trm``): the largest magnitude, or a percentile of
the magnitudes, sets each point's int8 scale. The same pass accumulates, for every linear layer, the
Gram matrix X^T X of its inputs, so a weight's clipping can be chosen to minimise the error of the layer's
*output* on those puzzles (``clip="mse"``) rather than of the weights themselves.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..golden import arith
from ..golden.model import IntModel, QAttention, QBlock, QLinear, QSwiGLU
from ..models.trm import TRM, SwiGLU

CLIP_GRID = np.linspace(0.30, 1.0, 36)
SAMPLE_PER_POINT = 200_000


@dataclass
class Calibration:
    """Per point: largest |value| and a sample of |values|; per linear layer: input Gram matrix."""
    amax: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    gram: dict[str, np.ndarray] = field(default_factory=dict)
    puzzles: int = 0

    def scale(self, name: str, method: str = "max", qmax: int = 127) -> float:
        if method == "max":
            amax = self.amax[name]
        elif method.startswith("p"):  # "p99.99"
            amax = float(np.percentile(np.concatenate(self.samples[name]), float(method[1:])))
        else:
            raise ValueError(f"unknown activation calibration {method!r}: 'max' or 'pNN.NN'")
        return max(amax, 1e-8) / qmax


@torch.no_grad()
def calibrate(model: TRM, tokens: np.ndarray, T: int, n: int, steps: int, batch: int = 64,
              seed: int = 0) -> Calibration:
    cal = Calibration(puzzles=len(tokens))
    rng = np.random.default_rng(seed)

    def observe(name: str, t: torch.Tensor) -> torch.Tensor:
        a = t.detach().abs().flatten().numpy()
        cal.amax[name] = max(cal.amax.get(name, 0.0), float(a.max()))
        kept = sum(len(s) for s in cal.samples.get(name, []))
        if kept < SAMPLE_PER_POINT:
            take = min(len(a), SAMPLE_PER_POINT - kept, 20_000)
            cal.samples.setdefault(name, []).append(rng.choice(a, take, replace=False))
        return t

    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name != "halt":
            def pre(m, args, name=name):
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                g = (x.T @ x).numpy()
                cal.gram[name] = cal.gram.get(name, 0) + g
            hooks.append(mod.register_forward_pre_hook(pre))
    try:
        for i in range(0, len(tokens), batch):
            model.forward_trace(torch.as_tensor(tokens[i:i + batch]), T, n, steps, point=observe)
    finally:
        for h in hooks:
            h.remove()
    return cal


# --- weights -------------------------------------------------------------------------------------
def quantize_weight(w: np.ndarray, bits: int, per_channel: bool, clip: str = "minmax",
                    gram: np.ndarray | None = None, percentile: float = 99.9) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantization of w [N, K] to ``bits`` (values in [-(2^(b-1)-1), 2^(b-1)-1]).

    clip: "minmax" (scale from the largest magnitude), "percentile" (from a percentile of the
    magnitudes), or "mse" (per row, the clipping ratio from CLIP_GRID that minimises the output error
    d^T G d with G the calibration Gram matrix of the layer's inputs; needs ``gram``).
    Returns integer values [N, K] and the scale of each row [N]."""
    w = np.asarray(w, np.float64)
    qmax = 2 ** (bits - 1) - 1
    absw = np.abs(w)
    if per_channel:
        base = absw.max(axis=1) if clip != "percentile" else np.percentile(absw, percentile, axis=1)
    else:
        base = np.full(w.shape[0], absw.max() if clip != "percentile" else np.percentile(absw, percentile))
    base = np.maximum(base, 1e-12)

    def q_at(amax):
        s = amax / qmax
        return np.clip(np.round(w / s[:, None]), -qmax, qmax), s

    if clip != "mse":
        q, s = q_at(base)
        return q.astype(np.int64), s
    if gram is None:
        raise ValueError("clip='mse' needs the calibration Gram matrix of the layer's inputs")
    best_err = np.full(w.shape[0], np.inf)
    best_ratio = np.ones(w.shape[0])
    for ratio in CLIP_GRID:
        q, s = q_at(base * ratio)
        d = w - q * s[:, None]
        err = np.einsum("nk,kj,nj->n", d, gram, d)
        if not per_channel:
            err = np.full_like(err, err.sum())
        better = err < best_err
        best_err[better], best_ratio[better] = err[better], ratio
    q, s = q_at(base * best_ratio)
    return q.astype(np.int64), s


@dataclass
class WeightSpec:
    bits: int = 8
    per_channel: bool = True
    clip: str = "minmax"


def quantized_weights(model: TRM, spec: WeightSpec, cal: Calibration | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Integer values and row scales of every linear weight that the integer model stores.
    The output head follows the recipe; the embedding and halting head stay int8 (see the contract)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name != "halt":
            gram = cal.gram.get(name) if cal else None
            out[name] = quantize_weight(mod.weight.detach().numpy(), spec.bits, spec.per_channel, spec.clip, gram)
    return out


def with_weights(model: TRM, qweights: dict[str, tuple[np.ndarray, np.ndarray]]) -> TRM:
    """A copy of the model whose linear weights are the dequantized integer weights."""
    m = copy.deepcopy(model)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for name, (q, s) in qweights.items():
            mods[name].weight.copy_(torch.as_tensor(q * s[:, None], dtype=torch.float32))
    return m


# --- activations: fake quantization ---------------------------------------------------------------
def fake_quant_point(scales: dict[str, float], ste: bool = False):
    """point(name, t): round t to the int grid of its scale and saturate (int16 for logits).
    With ``ste`` the backward pass goes straight through (quantization-aware training)."""
    def point(name: str, t: torch.Tensor) -> torch.Tensor:
        s = scales[name]
        lo, hi = (arith.INT16_MIN, arith.INT16_MAX) if name == "logits" else (arith.INT8_MIN, arith.INT8_MAX)
        q = torch.clamp(torch.round(t / s), lo, hi) * s
        return t + (q - t).detach() if ste else q
    return point


def activation_scales(model: TRM, cal: Calibration, method: str = "max") -> dict[str, float]:
    """Int8 scale of every point from calibration; the input embedding's comes from the whole table
    (every token's row is known, so none may saturate), the logits' is int16."""
    scales = {name: cal.scale(name, method) for name in cal.amax if name not in ("logits", "x")}
    scales["logits"] = cal.scale("logits", "max", arith.INT16_MAX)
    table = model.input_embedding(torch.arange(model.cfg.vocab_size)).detach().abs().max().item()
    scales["x"] = max(table, 1e-8) / 127
    return scales


# --- the integer model ------------------------------------------------------------------------------
def _multipliers(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return arith.quantize_multiplier(np.asarray(real, np.float64))


def _coef(s: float, s_out: float) -> int:
    return int(round(s / s_out * (1 << arith.ADD_SHIFT)))


def _residual_coefs(s_h: float, s_m: float) -> tuple[int, int]:
    top = max(s_h, s_m)
    return _coef(s_h, top), _coef(s_m, top)


def _qlinear(q: np.ndarray, s_w: np.ndarray, bits: int, s_in: float, s_out: np.ndarray | float,
             lo: int = arith.INT8_MIN, hi: int = arith.INT8_MAX) -> QLinear:
    M, n = _multipliers(s_in * s_w / np.broadcast_to(s_out, s_w.shape))
    return QLinear(q, bits, M, n, s_w, lo, hi)


def _qswiglu(mod: SwiGLU, name: str, point: str, qw, bits: int, s_in: float, scales) -> QSwiGLU:
    q, s_w = qw[f"{name}.gate_up"]
    inner = q.shape[0] // 2
    s_gate, s_up, s_act = scales[f"{point}.gate"], scales[f"{point}.up"], scales[f"{point}.act"]
    s_prod, s_out = scales[f"{point}.prod"], scales[f"{point}.out"]
    row_out = np.concatenate([np.full(inner, s_gate), np.full(inner, s_up)])
    gate_up = _qlinear(q, s_w, bits, s_in, row_out)
    grid = np.arange(-128, 128) * s_gate
    silu = grid / (1 + np.exp(-grid))
    table = np.clip(np.round(silu / s_act), -128, 127).astype(np.int64)
    (pM,), (pn,) = _multipliers(np.array([s_act * s_up / s_prod]))
    qd, sd = qw[f"{name}.down"]
    return QSwiGLU(gate_up, table, int(pM), int(pn), _qlinear(qd, sd, bits, s_prod, s_out))


def build_int_model(model: TRM, qw: dict, bits: int, scales: dict[str, float], recipe: dict | None = None) -> IntModel:
    cfg = model.cfg
    if cfg.attention_kernel != "softmax":
        raise ValueError(f"the integer model has softmax attention only; this model uses "
                         f"{cfg.attention_kernel!r} attention")
    D, L = cfg.hidden, cfg.seq_len
    s_n, s_h, s_x = scales["norm"], scales["h"], scales["x"]
    embed = model.input_embedding(torch.arange(cfg.vocab_size)).detach().numpy()
    blocks = []
    for l, block in enumerate(model.blocks):
        s_in = s_h if l == 0 else s_n
        pfx = f"b{l}.mix"
        if cfg.mixer == "mlp":
            mixer = _qswiglu(block.mixer.mlp, f"blocks.{l}.mixer.mlp", pfx, qw, bits, s_in, scales)
        else:
            hd = D // cfg.heads
            s_q, s_k, s_v, s_a = (scales[f"{pfx}.{k}"] for k in ("q", "k", "v", "attn"))
            q, s_w = qw[f"blocks.{l}.mixer.qkv"]
            qkv = _qlinear(q, s_w, bits, s_in, np.repeat([s_q, s_k, s_v], D))
            cos, sin = arith.rope_tables(L, hd, cfg.rope_theta)
            (sM,), (sn,) = _multipliers(np.array([s_q * s_k / math.sqrt(hd) * math.log2(math.e) * 256]))
            (vM,), (vn,) = _multipliers(np.array([s_v / 2 ** arith.PROB_BITS / s_a]))
            qo, so = qw[f"blocks.{l}.mixer.out"]
            mixer = QAttention(qkv, cfg.heads, cos, sin, int(sM), int(sn), int(vM), int(vn),
                               _qlinear(qo, so, bits, s_a, scales[f"{pfx}.out"]))
        ffn = _qswiglu(block.mlp, f"blocks.{l}.mlp", f"b{l}.ffn", qw, bits, s_n, scales)
        blocks.append(QBlock(mixer, _residual_coefs(s_in, scales[f"{pfx}.out"]), ffn,
                             _residual_coefs(s_n, scales[f"b{l}.ffn.out"])))
    qh, sh = qw["head"]
    hw = model.halt.weight.detach().numpy()[0].astype(np.float64)
    s_hw = max(np.abs(hw).max(), 1e-12) / 127
    threshold = math.floor(-float(model.halt.bias.item()) * L / (s_hw * s_n))
    return IntModel(
        config=cfg.to_dict(),
        embed=arith.sat8(np.round(embed / s_x)),
        y_init=arith.sat8(np.round(model.y_init.numpy() / s_n)),
        z_init=arith.sat8(np.round(model.z_init.numpy() / s_n)),
        z_in=(_coef(s_n, s_h), _coef(s_x, s_h), _coef(s_n, s_h)),
        y_in=(_coef(s_n, s_h), _coef(s_n, s_h)),
        blocks=blocks,
        norm_const=int(round(math.sqrt(D) / s_n * (1 << arith.NORM_CONST_SHIFT))),
        head=_qlinear(qh, sh, bits, s_n, scales["logits"], arith.INT16_MIN, arith.INT16_MAX),
        halt_w=np.clip(np.round(hw / s_hw), -127, 127).astype(np.int64),
        halt_threshold=int(max(min(threshold, 2**31 - 1), -2**31)),
        scales=dict(scales),
        recipe=dict(recipe or {}),
    )
