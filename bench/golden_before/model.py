# Frozen copy of harness/golden/model.py before the float64-carrier optimisation (git show
# e30205ece955:harness/golden/model.py, unchanged up to 513e08b). It is the pre-optimisation reference, kept
# only for bench/test_golden.py: the before/after ratio and the bit-for-bit equality check. Not used by
# the harness; do not edit (the current reference is harness/golden/).
"""The integer model: what a compressed TRM is on the device, and its reference execution in numpy.

``IntModel`` holds integers only where the device computes (weights, multipliers, shifts, tables,
coefficients) and keeps the float scales beside them for dequantizing carries on the host.
``run(model, tokens, T, n, steps)`` executes it exactly as docs/integer-inference.md says, vectorised
over a batch of puzzles. It is the oracle that the firmware must match bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import arith


@dataclass
class QLinear:
    """y = requantize(x @ w.T): w [N, K] integer values (bits 8 → [-127, 127], 4 → [-7, 7]),
    per output row multiplier M and shift n; the output saturates to [lo, hi]."""
    w: np.ndarray
    bits: int
    M: np.ndarray
    n: np.ndarray
    w_scale: np.ndarray          # float, per row (documentation and dequantization only)
    lo: int = arith.INT8_MIN
    hi: int = arith.INT8_MAX

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return arith.linear(x, self.w, self.M, self.n, self.lo, self.hi)


@dataclass
class QSwiGLU:
    """down(requantize(silu_lut(gate) * up)): gate_up rows [0, I) are the gate, [I, 2I) the up."""
    gate_up: QLinear
    silu: np.ndarray             # int8 [256], indexed by gate + 128
    prod_M: int
    prod_n: int
    down: QLinear

    def __call__(self, x: np.ndarray) -> np.ndarray:
        gu = self.gate_up(x)
        inner = gu.shape[-1] // 2
        act = arith.lut8(gu[..., :inner], self.silu)
        prod = arith.requantize(act * gu[..., inner:], self.prod_M, self.prod_n)
        return self.down(prod)


@dataclass
class QAttention:
    """Non-causal multi-head attention with rotary positions, integer softmax (Q15 probabilities)."""
    qkv: QLinear                 # [3D, D]: rows q, then k, then v
    heads: int
    rope_cos: np.ndarray         # Q14 [L, hd/2]
    rope_sin: np.ndarray
    score_M: int                 # scores → log2 domain (units of 2^-8)
    score_n: int
    pv_M: int                    # Q15-weighted sum of v → int8
    pv_n: int
    out: QLinear                 # [D, D]

    def __call__(self, h: np.ndarray) -> np.ndarray:
        B, L, D = h.shape
        hd = D // self.heads
        qkv = self.qkv(h).reshape(B, L, 3, self.heads, hd).transpose(2, 0, 3, 1, 4)  # [3, B, H, L, hd]
        q = arith.rope(qkv[0], self.rope_cos, self.rope_sin)
        k = arith.rope(qkv[1], self.rope_cos, self.rope_sin)
        p = arith.softmax(arith.imatmul(q, k.transpose(0, 1, 3, 2)), self.score_M, self.score_n)  # [B, H, L, L]
        a = arith.requantize(arith.imatmul(p, qkv[2]), self.pv_M, self.pv_n)                       # [B, H, L, hd]
        return self.out(a.transpose(0, 2, 1, 3).reshape(B, L, D))


@dataclass
class QBlock:
    mixer: QSwiGLU | QAttention  # a QSwiGLU mixer acts along the sequence axis
    mix_res: tuple[int, int]     # (a, b) of residual(h, a, mixer(h), b)
    ffn: QSwiGLU
    ffn_res: tuple[int, int]


@dataclass
class IntModel:
    config: dict[str, Any]       # TRMConfig fields
    embed: np.ndarray            # int8 [V, D], already multiplied by sqrt(D)
    y_init: np.ndarray           # int8 [D] at the carry scale
    z_init: np.ndarray
    z_in: tuple[int, int, int]   # coefficients of z, x, y in h = z + x + y
    y_in: tuple[int, int]        # coefficients of y, z in h = y + z
    blocks: list[QBlock]
    norm_const: int              # round(sqrt(D) / s_carry * 2^8)
    head: QLinear                # int16 logits
    halt_w: np.ndarray           # int8 [D]
    halt_threshold: int          # halt when sum_d halt_w[d] * sum_l y[l, d] > threshold
    scales: dict[str, float]     # float scale of every point ("norm" is the carry's)
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def carry_scale(self) -> float:
        return self.scales["norm"]

    # --- execution ----------------------------------------------------------------------------
    def net(self, h: np.ndarray) -> np.ndarray:
        for block in self.blocks:
            if isinstance(block.mixer, QSwiGLU):
                m = block.mixer(h.transpose(0, 2, 1)).transpose(0, 2, 1)
            else:
                m = block.mixer(h)
            h = arith.residual(h, block.mix_res[0], m, block.mix_res[1], self.norm_const)
            h = arith.residual(h, block.ffn_res[0], block.ffn(h), block.ffn_res[1], self.norm_const)
        return h

    def readout(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted tokens [B, L] (argmax of int16 logits, lowest index on ties) and the halting
        accumulator [B] (halt when it exceeds ``halt_threshold``)."""
        logits = self.head(y)
        pooled = y.astype(np.int64).sum(axis=1)                 # [B, D]
        return logits.argmax(-1), arith.imatmul(pooled, self.halt_w)

    def run(self, tokens: np.ndarray, T: int, n: int, steps: int, keep_carries: bool = True) -> dict[str, np.ndarray]:
        """Predictions after every step [S, B, L], halting accumulators [S, B], halt decisions, and
        (``keep_carries``) the int8 carry after every cycle: y and z as [S, T, B, L, D]."""
        tokens = np.asarray(tokens, np.int64)
        B, L = tokens.shape
        D = self.embed.shape[1]
        x = self.embed[tokens].astype(np.int64)
        y = np.broadcast_to(self.y_init.astype(np.int64), (B, L, D)).copy()
        z = np.broadcast_to(self.z_init.astype(np.int64), (B, L, D)).copy()
        a_z, a_x, a_y = self.z_in
        b_y, b_z = self.y_in
        preds, halts, ys, zs = [], [], [], []
        for _ in range(steps):
            step_y, step_z = [], []
            for _ in range(T):
                for _ in range(n):
                    z = self.net(arith.weighted_add([(z, a_z), (x, a_x), (y, a_y)]))
                y = self.net(arith.weighted_add([(y, b_y), (z, b_z)]))
                if keep_carries:
                    step_y.append(y.astype(np.int8))
                    step_z.append(z.astype(np.int8))
            pred, halt_acc = self.readout(y)
            preds.append(pred)
            halts.append(halt_acc)
            if keep_carries:
                ys.append(np.stack(step_y))
                zs.append(np.stack(step_z))
        out = {"per_step": np.stack(preds), "halt_acc": np.stack(halts)}
        out["halt"] = out["halt_acc"] > self.halt_threshold
        if keep_carries:
            out["y"], out["z"] = np.stack(ys), np.stack(zs)
        return out
