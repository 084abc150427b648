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
import torch.nn.functional as F
from torch import nn

from ..golden import arith
from ..golden.model import IntModel, QAttention, QBlock, QLinear, QSwiGLU
from ..models.trm import FLOAT_OPS, TRM, SwiGLU

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


def with_weights(model: TRM, qweights: dict[str, tuple[np.ndarray, np.ndarray]],
                 dtype: torch.dtype = torch.float32) -> TRM:
    """A copy of the model in ``dtype`` whose linear weights are the dequantized integer weights.

    For a fake-quant model that is to follow the integer model bit for bit, use float64: in float32 the
    dequantized weights (q · s) and the matrix products are off by ~1e-7 relative, enough to move about
    one linear output in 10^5 across a rounding boundary, and the recursion amplifies each such flip."""
    m = copy.deepcopy(model).to(dtype)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for name, (q, s) in qweights.items():
            mods[name].weight.copy_(torch.as_tensor(q * s[:, None], dtype=dtype))
    return m


# --- activations: fake quantization ---------------------------------------------------------------
def round_half_up(t: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, halves towards +inf: the float counterpart of the contract's
    ``round_shift`` ((v + 2^(n-1)) >> n equals round_half_up(v / 2^n)). Exact for every float:
    ``floor(t + 0.5)`` is not (in float32, 0.49999997 + 0.5 rounds to 1.0)."""
    return _round_half_up_(t.clone())


def _round_half_up_(t: torch.Tensor) -> torch.Tensor:
    """round_half_up in place (t is overwritten with its fractional part; the result is returned)."""
    r = torch.floor(t)
    return r.add_(t.sub_(r).ge_(0.5))  # t - floor(t) is exact; ge_ leaves 1.0 or 0.0 in t's dtype


def _rounds_half_even(name: str) -> bool:
    """The points whose integer values are fixed at export with numpy's round (half to even): the
    embedding table (``x``) and the SiLU tables (``*.act``). Every other point is a run-time
    requantization (round_shift: half up). (The initial carry, point ``norm``, is rounded half to even at
    export too, but its float values are never exact halves.)"""
    return name == "x" or name.endswith(".act")


class FakeQuant:
    """The fake-quant point: ``point(name, t)`` rounds t to the integer grid of its scale as the integer
    model rounds there (half up for run-time requantization, half to even for the export-time embedding
    and SiLU tables) and saturates (int16 for ``logits``, int8 otherwise).

    With ``integer_ops`` (the default) it also carries ``ops``: the integer model's own fixed-point
    operations (``IntegerOps``: weighted add, residual + RMSNorm, rotary, softmax attention), which the
    torch model then uses instead of its float ones (see ``harness.models.trm.ops_of``). With ``ste`` the
    backward pass goes straight through every rounding and fixed-point operation (quantization-aware
    training): the gradient is that of the float computation."""

    def __init__(self, scales: dict[str, float], ste: bool = False, integer_ops: bool = True):
        self.scales, self.ste = scales, ste
        self.ops = IntegerOps(self) if integer_ops else None

    def integers(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """The integer values of t at the point ``name`` (a float tensor of t's dtype, no gradient)."""
        lo, hi = (arith.INT16_MIN, arith.INT16_MAX) if name == "logits" else (arith.INT8_MIN, arith.INT8_MAX)
        v = t.detach() / self.scales[name]
        return (v.round_() if _rounds_half_even(name) else _round_half_up_(v)).clamp_(lo, hi)

    def __call__(self, name: str, t: torch.Tensor) -> torch.Tensor:
        return self.straight_through(t, self.integers(name, t).mul_(self.scales[name]))

    def straight_through(self, t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """q forward; with ``ste``, t's gradient backward."""
        return t + (q - t).detach() if self.ste else q


def fake_quant_point(scales: dict[str, float], ste: bool = False, integer_ops: bool = True) -> FakeQuant:
    """The fake-quant point of ``scales`` (see ``FakeQuant``)."""
    return FakeQuant(scales, ste, integer_ops)


class IntegerOps:
    """The integer model's fixed-point operations for the torch model (``harness.models.trm.FloatOps``
    names them): the operands are taken to the integer grids of their points, the integer model's own
    arithmetic (``harness.golden.arith``, with the coefficients, multipliers and tables that
    ``build_int_model`` exports) computes the integer result, and it comes back dequantized at its
    point's scale. Given the same integer operands the result is the golden model's, bit for bit.
    Runs in numpy on the host (the tensors' device is kept)."""

    def __init__(self, point: FakeQuant):
        self.point = point
        self.scales = point.scales
        self._rope: dict[tuple[int, int, float], tuple[np.ndarray, np.ndarray]] = {}

    def _int(self, name: str, t: torch.Tensor) -> np.ndarray:
        return self.point.integers(name, t).cpu().numpy().astype(np.int64)

    def _out(self, name: str, q: np.ndarray, like: torch.Tensor, float_value) -> torch.Tensor:
        """Dequantized integer result q at ``name``'s scale; with ste, the float computation's gradient."""
        v = torch.as_tensor(q * self.scales[name], dtype=like.dtype, device=like.device)
        return self.point.straight_through(float_value(), v) if self.point.ste else v  # float only for ste

    def inject(self, name, terms):
        q = arith.weighted_add([(self._int(p, t), _coef(self.scales[p], self.scales[name])) for p, t in terms])
        return self._out(name, q, terms[0][1], lambda: FLOAT_OPS.inject(name, terms))

    def residual_norm(self, name, h, h_point, m, m_point, eps):
        a, b = _residual_coefs(self.scales[h_point], self.scales[m_point])
        q = arith.residual(self._int(h_point, h), a, self._int(m_point, m), b,
                           _norm_const(h.shape[-1], self.scales[name]))
        return self._out(name, q, h, lambda: FLOAT_OPS.residual_norm(name, h, h_point, m, m_point, eps))

    def rotary(self, name, t, cos, sin, theta, axes=()):
        L, hd = t.shape[-2:]
        key = (L, hd, float(theta), tuple(axes))
        if key not in self._rope:
            self._rope[key] = arith.rope_tables(L, hd, theta, axes)
        q = arith.rope(self._int(name, t), *self._rope[key])
        return self._out(name, q, t, lambda: FLOAT_OPS.rotary(name, t, cos, sin, theta, axes))

    def attention(self, name, q, k, v, kernel):
        if kernel is not F.scaled_dot_product_attention:  # the integer model has softmax attention only
            return FLOAT_OPS.attention(name, q, k, v, kernel)
        s = self.scales
        (sM, sn), (vM, vn) = _attention_multipliers(s[f"{name}.q"], s[f"{name}.k"], s[f"{name}.v"],
                                                    s[f"{name}.attn"], q.shape[-1])
        qi, ki, vi = self._int(f"{name}.q", q), self._int(f"{name}.k", k), self._int(f"{name}.v", v)
        p = arith.softmax(arith.imatmul(qi, np.swapaxes(ki, -1, -2)), sM, sn)
        a = arith.requantize(arith.imatmul(p, vi), vM, vn)
        return self._out(f"{name}.attn", a, q, lambda: FLOAT_OPS.attention(name, q, k, v, kernel))


def activation_scales(model: TRM, cal: Calibration, method: str = "max") -> dict[str, float]:
    """Int8 scale of every point from calibration; the input embedding's comes from the whole tables
    (every token's, prefix's and position's row is known, so none may saturate), the logits' is int16."""
    scales = {name: cal.scale(name, method) for name in cal.amax if name not in ("logits", "x")}
    scales["logits"] = cal.scale("logits", "max", arith.INT16_MAX)
    table = model.token_table().detach().abs().max().item()
    for extra in (model.prefix_table(), model.position_table()):
        if extra is not None:
            table = max(table, extra.detach().abs().max().item())
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


def _norm_const(D: int, s_out: float) -> int:
    """The integer RMSNorm's constant C = round(sqrt(D) / s_out · 2^8)."""
    return int(round(math.sqrt(D) / s_out * (1 << arith.NORM_CONST_SHIFT)))


def _attention_multipliers(s_q: float, s_k: float, s_v: float, s_attn: float,
                           hd: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(M, n) of the scores into the softmax's log2 domain and of the Q15-weighted sum of v."""
    (sM,), (sn,) = _multipliers(np.array([s_q * s_k / math.sqrt(hd) * math.log2(math.e) * 256]))
    (vM,), (vn,) = _multipliers(np.array([s_v / 2 ** arith.PROB_BITS / s_attn]))
    return (int(sM), int(sn)), (int(vM), int(vn))


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


def _int_block(block, l: int, prefix: str, module: str, cfg, qw, bits: int, scales) -> QBlock:
    """One block of a network: point names ``{prefix}{l}.*`` (b or yb), weights ``{module}.{l}.*``."""
    D, R = cfg.hidden, cfg.carry_len
    s_in = scales["h"] if l == 0 else scales["norm"]
    pfx = f"{prefix}{l}.mix"
    if cfg.mixer == "mlp":
        mixer = _qswiglu(block.mixer.swiglu, f"{module}.{l}.mixer.swiglu", pfx, qw, bits, s_in, scales)
    else:
        hd = D // cfg.heads
        s_q, s_k, s_v, s_a = (scales[f"{pfx}.{k}"] for k in ("q", "k", "v", "attn"))
        q, s_w = qw[f"{module}.{l}.mixer.qkv"]
        qkv = _qlinear(q, s_w, bits, s_in, np.repeat([s_q, s_k, s_v], D))
        cos, sin = arith.rope_tables(R, hd, cfg.rope_theta, cfg.rope_axes) if cfg.rotary else (None, None)
        (sM, sn), (vM, vn) = _attention_multipliers(s_q, s_k, s_v, s_a, hd)
        qo, so = qw[f"{module}.{l}.mixer.out"]
        mixer = QAttention(qkv, cfg.heads, cos, sin, sM, sn, vM, vn,
                           _qlinear(qo, so, bits, s_a, scales[f"{pfx}.out"]))
    ffn = _qswiglu(block.ffn, f"{module}.{l}.ffn", f"{prefix}{l}.ffn", qw, bits, scales["norm"], scales)
    return QBlock(mixer, _residual_coefs(s_in, scales[f"{pfx}.out"]), ffn,
                  _residual_coefs(scales["norm"], scales[f"{prefix}{l}.ffn.out"]))


def build_int_model(model: TRM, qw: dict, bits: int, scales: dict[str, float], recipe: dict | None = None) -> IntModel:
    cfg = model.cfg
    if cfg.attention_kernel != "softmax":
        raise ValueError(f"the integer model has softmax attention only; this model uses "
                         f"{cfg.attention_kernel!r} attention")
    D, R = cfg.hidden, cfg.carry_len
    s_n, s_x = scales["norm"], scales["x"]
    networks = {prefix: [_int_block(b, l, prefix, "blocks" if prefix == "b" else "y_blocks", cfg, qw, bits, scales)
                         for l, b in enumerate(blocks)] for prefix, blocks in model.networks()}
    qh, sh = qw["head"]
    # the halting decision: one logit w·y + b > 0; two (halt, continue): (w_h - w_c)·y + (b_h - b_c) > 0,
    # one logit of the difference (docs/integer-inference.md §4)
    w, bias = model.halt.weight.detach().numpy().astype(np.float64), model.halt.bias.detach().numpy().astype(np.float64)
    hw, hb = (w[0], bias[0]) if cfg.halt_logits == 1 else (w[0] - w[1], bias[0] - bias[1])
    s_hw = max(np.abs(hw).max(), 1e-12) / 127
    rows = 1 if cfg.halt_read == "first" else R       # the accumulator sums this many rows of y
    threshold = math.floor(-float(hb) * rows / (s_hw * s_n))
    prefix, pos = model.prefix_table(), model.position_table()
    return IntModel(
        config=cfg.to_dict(),
        embed=arith.sat8(np.round(model.token_table().detach().numpy() / s_x)),
        y_init=arith.sat8(np.round(model.y_init.numpy() / s_n)),
        z_init=arith.sat8(np.round(model.z_init.numpy() / s_n)),
        z_in=(_coef(s_n, scales["h"]), _coef(s_x, scales["h"]), _coef(s_n, scales["h"])),
        y_in=(_coef(s_n, scales["h"]), _coef(s_n, scales["h"])),
        blocks=networks["b"],
        norm_const=_norm_const(D, s_n),
        head=_qlinear(qh, sh, bits, s_n, scales["logits"], arith.INT16_MIN, arith.INT16_MAX),
        halt_w=np.clip(np.round(hw / s_hw), -127, 127).astype(np.int64),
        halt_threshold=int(max(min(threshold, 2**31 - 1), -2**31)),
        scales=dict(scales),
        recipe=dict(recipe or {}),
        prefix=cfg.puzzle_emb_len,
        puzzle_emb=(arith.sat8(np.round(prefix.detach().numpy() / s_x)) if prefix is not None
                    else np.zeros((1, cfg.puzzle_emb_len * D), np.int64) if cfg.puzzle_emb_len else None),
        y_blocks=networks.get("yb", []),
        halt_first=cfg.halt_read == "first",
        seq_norm_const=_norm_const(R, s_n) if cfg.mix_norm == "sequence" else 0,
        pos_emb=arith.sat8(np.round(pos.detach().numpy() / s_x)) if pos is not None else None,
    )
