"""The integer model: what a compressed TRM is on the device, and its reference execution in numpy.

``IntModel`` holds integers only where the device computes (weights, multipliers, shifts, tables,
coefficients) and keeps the float scales beside them for dequantizing carries on the host.
``run(model, tokens, T, n, steps)`` executes it exactly as docs/integer-inference.md says, vectorised
over a batch of puzzles. It is the oracle that the firmware must match bit for bit.

``IntModel.run_reference`` is the same computation written operation by operation on int64 arrays with
the functions of ``arith`` (the contract as it reads); ``run`` computes it on float64 arrays holding the
same integers (see "batch execution on float64 carriers" below), several times faster, and returns the
same arrays bit for bit (tests/test_golden.py; bench/test_golden.py measures the difference).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import arith

F64 = np.float64
CHUNK = 16          # puzzles per pass through the network: measured fastest (bench/test_golden.py)
INT8_BOUND = 128    # |q| of any int8 value: every input of a linear layer is int8


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
    """Non-causal multi-head attention with rotary positions (none with learned positions: no tables),
    integer softmax (Q15 probabilities)."""
    qkv: QLinear                 # [3D, D]: rows q, then k, then v
    heads: int
    rope_cos: np.ndarray | None  # Q14 [L, hd/2]; None: no rotary positions
    rope_sin: np.ndarray | None
    score_M: int                 # scores → log2 domain (units of 2^-8)
    score_n: int
    pv_M: int                    # Q15-weighted sum of v → int8
    pv_n: int
    out: QLinear                 # [D, D]

    def __call__(self, h: np.ndarray) -> np.ndarray:
        B, L, D = h.shape
        hd = D // self.heads
        qkv = self.qkv(h).reshape(B, L, 3, self.heads, hd).transpose(2, 0, 3, 1, 4)  # [3, B, H, L, hd]
        q, k = qkv[0], qkv[1]
        if self.rope_cos is not None:
            q, k = arith.rope(q, self.rope_cos, self.rope_sin), arith.rope(k, self.rope_cos, self.rope_sin)
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
    halt_threshold: int          # halt when sum_d halt_w[d] * (sum over the halting rows of y[., d]) > threshold
    scales: dict[str, float]     # float scale of every point ("norm" is the carry's)
    recipe: dict[str, Any] = field(default_factory=dict)
    # the official layout (docs/integer-inference.md §4): a prefix of carry rows from a puzzle-embedding
    # table, a y network of its own (HRM), the halting head on the first row, the mlp mixer's norm over
    # the sequence (its constant for vectors of the carry's length)
    prefix: int = 0              # P: carry rows before the sequence
    puzzle_emb: np.ndarray | None = None   # int8 [identifiers, P·D] at the scale of x (rows zero-padded)
    y_blocks: list[QBlock] = field(default_factory=list)   # the y network (HRM); empty: the z network's
    halt_first: bool = False     # the halting head reads carry row 0 instead of the sum of all rows
    seq_norm_const: int = 0      # > 0: the mlp mixer's residual norm runs over the carry rows of each
                                 # channel, with this constant (round(sqrt(P + L) / s_carry · 2^8))
    pos_emb: np.ndarray | None = None   # learned positions: int8 [P + L, D] at the scale of x, added to
                                        # the input rows (a term of the z-update input with x's coefficient)

    @property
    def carry_scale(self) -> float:
        return self.scales["norm"]

    def y_network(self) -> list[QBlock]:
        return self.y_blocks or self.blocks

    def input_rows(self, tokens: np.ndarray, puzzle_ids: np.ndarray | None = None) -> np.ndarray:
        """x [B, P + L, D] (int64): the prefix rows of each puzzle's identifier (0 if none is given), then
        the embedding rows of its tokens; with learned positions plus each row's position row (the sum of
        two int8 rows, not saturated: the weighted add takes them as two terms with one coefficient,
        which is the same sum)."""
        x = self._table_rows(tokens, puzzle_ids)
        return x if self.pos_emb is None else x + self.pos_emb.astype(np.int64)

    def _table_rows(self, tokens: np.ndarray, puzzle_ids: np.ndarray | None) -> np.ndarray:
        x = self.embed[tokens].astype(np.int64)
        if not self.prefix:
            return x
        B, D = tokens.shape[0], self.embed.shape[1]
        ids = np.zeros(B, np.int64) if puzzle_ids is None else np.asarray(puzzle_ids, np.int64)
        if ids.shape != (B,) or ids.min() < 0 or ids.max() >= self.puzzle_emb.shape[0]:
            raise ValueError(f"puzzle identifiers must be {B} values in [0, {self.puzzle_emb.shape[0]}), "
                             f"got {puzzle_ids!r}")
        rows = self.puzzle_emb[ids].astype(np.int64).reshape(B, self.prefix, D)
        return np.concatenate([rows, x], axis=1)

    # --- execution ----------------------------------------------------------------------------
    def net(self, h: np.ndarray, blocks: list[QBlock] | None = None) -> np.ndarray:
        """A network (the z network's blocks unless ``blocks`` are given) on h [B, P + L, D]."""
        for block in self.blocks if blocks is None else blocks:
            if isinstance(block.mixer, QSwiGLU):
                m = block.mixer(h.transpose(0, 2, 1)).transpose(0, 2, 1)
            else:
                m = block.mixer(h)
            if self.seq_norm_const and isinstance(block.mixer, QSwiGLU):   # over each channel's rows
                h = arith.residual(h.transpose(0, 2, 1), block.mix_res[0], m.transpose(0, 2, 1),
                                   block.mix_res[1], self.seq_norm_const).transpose(0, 2, 1)
            else:
                h = arith.residual(h, block.mix_res[0], m, block.mix_res[1], self.norm_const)
            h = arith.residual(h, block.ffn_res[0], block.ffn(h), block.ffn_res[1], self.norm_const)
        return h

    def readout(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted tokens [B, L] (argmax of int16 logits of the sequence rows, lowest index on ties) and
        the halting accumulator [B] (halt when it exceeds ``halt_threshold``)."""
        logits = self.head(y[:, self.prefix:])
        pooled = y[:, 0].astype(np.int64) if self.halt_first else y.astype(np.int64).sum(axis=1)   # [B, D]
        return logits.argmax(-1), arith.imatmul(pooled, self.halt_w)

    def run(self, tokens: np.ndarray, T: int, n: int, steps: int, keep_carries: bool = True,
            chunk: int = CHUNK, puzzle_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Predictions after every step [S, B, L], halting accumulators [S, B], halt decisions, and
        (``keep_carries``) the int8 carry after every cycle: y and z as [S, T, B, P + L, D].

        Executed on float64 carriers (``_Plan``), ``chunk`` puzzles at a time (puzzles are independent;
        a chunk's temporaries stay in the processor's cache): bit for bit what ``run_reference`` gives."""
        return _Plan(self).run(tokens, T, n, steps, keep_carries, chunk, puzzle_ids)

    def cycle(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, n: int) -> list[tuple[str, np.ndarray]]:
        """One cycle from the carry (y, z) [B, P + L, D] with input rows x (``input_rows``), operation by
        operation: the output of every update in order, ("z1", z), ..., ("z<n>", z), ("y", y), as int64
        arrays; the last z and the y are the carry after the cycle (``run_reference``'s cycle)."""
        a_z, a_x, a_y = self.z_in
        b_y, b_z = self.y_in
        out = []
        for j in range(n):
            z = self.net(arith.weighted_add([(z, a_z), (x, a_x), (y, a_y)]))
            out.append((f"z{j + 1}", z))
        out.append(("y", self.net(arith.weighted_add([(y, b_y), (z, b_z)]), self.y_network())))
        return out

    def run_reference(self, tokens: np.ndarray, T: int, n: int, steps: int,
                      keep_carries: bool = True, puzzle_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``run`` computed operation by operation on int64 arrays with the functions of ``arith`` (``net``,
        ``readout``): the contract as written, slow. ``run`` must return the same arrays, bit for bit
        (tests/test_golden.py)."""
        tokens = np.asarray(tokens, np.int64)
        x = self.input_rows(tokens, puzzle_ids)
        B, R, D = x.shape
        y = np.broadcast_to(self.y_init.astype(np.int64), (B, R, D)).copy()
        z = np.broadcast_to(self.z_init.astype(np.int64), (B, R, D)).copy()
        preds, halts, ys, zs = [], [], [], []
        for _ in range(steps):
            step_y, step_z = [], []
            for _ in range(T):
                updates = self.cycle(x, y, z, n)
                y, z = updates[-1][1], (updates[-2][1] if n else z)
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


# --- batch execution on float64 carriers ------------------------------------------------------------
# ``IntModel.run`` computes what ``run_reference`` does, on float64 arrays that hold the same integers
# (arith.py, "the same operations on float64 carriers"): every linear layer is one float64 BLAS product
# with the requantization multiplier M * 2^-n already in its weights, every element-wise step one
# vectorised pass into an array reused from one network evaluation to the next (``_Workspace``);
# coefficients are divided by 2^12, the SiLU table multiplied by the product's multiplier and the
# softmax's exp2 indexed directly, once per run. Each of these is an exact power-of-two scaling or an
# integer product below 2^53. An operation whose bounds the blob's constants could break runs as the
# reference (int64) instead, on converted arrays.


class _Workspace:
    """Arrays by (role, shape, dtype), reused by every network evaluation of a run: a fresh large array
    costs a page fault per 4 KiB each time (the allocator hands big blocks back to the system when they
    are freed), more than the arithmetic done in it. Roles in use at the same time differ."""

    def __init__(self):
        self.arrays: dict[tuple, np.ndarray] = {}

    def __call__(self, role: str, shape: tuple[int, ...], dtype=F64) -> np.ndarray:
        key = (role, shape, dtype)
        a = self.arrays.get(key)
        if a is None:
            a = self.arrays[key] = np.empty(shape, dtype)
        return a


class _Linear:
    """A QLinear (or rows of it) prepared for float64 execution: the weights times each row's
    c = M * 2^-n, so that the product is acc * c. ``exact``: that product and adding 1/2 (and ``offset``,
    per row) before the floor are exact for int8 inputs (``arith.float_exact``). ``left``: the weights
    multiply from the left (x [B, K, D] -> [B, N, D])."""

    def __init__(self, q: QLinear, rows: np.ndarray | None = None, left: bool = False, offset=0):
        w = np.asarray(q.w, np.int64)
        N = w.shape[0]
        M = np.broadcast_to(np.asarray(q.M, np.int64), (N,))
        n = np.broadcast_to(np.asarray(q.n, np.int64), (N,))
        if rows is not None:
            w, M, n = w[rows], M[rows], n[rows]
        # |acc| <= 128 * sum_k |w[o, k]|, and so is every partial sum: the terms x * w * M / 2^n are
        # integers (|w| * M < 2^38) over 2^n, and so are all partial sums, below 2^53 / 2^n when ``exact``;
        # the float64 product is exact in any order of summation, with or without fused multiply-adds
        self.exact = arith.float_exact(INT8_BOUND * np.abs(w).sum(1), M, n, offset)
        ws = w * arith.fmultiplier(M, n)[:, None]
        self.w = np.ascontiguousarray(ws if left else ws.T)
        self.N, self.K = w.shape
        self.lo, self.hi, self.left = q.lo, q.hi, left
        self._split: dict[tuple[int, ...], tuple] = {}

    @staticmethod
    def _divisor(count: int, macs_each: int) -> int:
        """The largest divisor r of ``count`` with r * macs_each <= arith.BLAS_CALL_MACS (at least 1)."""
        return max([r for r in range(1, count + 1) if count % r == 0 and r * macs_each <= arith.BLAS_CALL_MACS] or [1])

    def scaled(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """acc * c into ``out``: [B, N, D] (left) or [..., N]; x and out contiguous. The product is split
        into BLAS calls of at most arith.BLAS_CALL_MACS: rows of x (right) or of the weights (left)."""
        plan = self._split.get(x.shape)
        if plan is None:
            if self.left:
                r = self._divisor(self.N, self.K * x.shape[-1])
                plan = (self.w.reshape(self.N // r, r, self.K), r)
            else:
                rows = x.size // self.K
                plan = (self.w, self._divisor(rows, self.K * self.N))
            self._split[x.shape] = plan
        w, r = plan
        assert out.flags.c_contiguous, "the product is written through a reshaped view of out"
        if self.left:                                            # [N/r, r, L] @ [B, 1, L, D]
            np.matmul(w, x[:, None], out=out.reshape(x.shape[0], self.N // r, r, x.shape[-1]))
        else:                                                    # [R/r, r, K] @ [K, N]
            np.matmul(x.reshape(-1, r, self.K), w, out=out.reshape(-1, r, self.N))
        return out

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return arith.fround(self.scaled(x, out), self.lo, self.hi)


class _SwiGLU:
    """QSwiGLU on float64 carriers: one product for gate and up, the gate's requantization landing on
    its SiLU table index. ``left``: the mlp mixer (along the sequence axis, x [B, L, D])."""

    def __init__(self, q: QSwiGLU, role: str, left: bool = False):
        self.q, self.role, self.left = q, role, left
        I = self.I = q.gate_up.w.shape[0] // 2
        # the gate: clip(floor(acc * c + 128 + 1/2), 0, 255) is sat8(round_shift(acc * M, n)) + 128, the
        # table index (exact with an offset of 128). The float's conversion to an integer truncates, which
        # is its floor wherever it is >= 0, and any value below 0 truncates to an index <= 0: np.take's
        # mode="clip" then does the saturation (|value| < 2^53 / 2^n: no overflow in the conversion)
        self.gate_up = _Linear(q.gate_up, left=left, offset=np.r_[np.full(I, 128), np.zeros(I, np.int64)])
        self.down = _Linear(q.down, left=left)
        # prod = requantize(act * up, M_p, n_p) with |act|, |up| <= 128: the table times c_p = M_p * 2^-n_p
        # (|SILU| * M_p < 2^38, exact) gives silu_c[gate] * up = act * up * M_p / 2^n_p exactly
        prod_exact = arith.float_exact(INT8_BOUND * INT8_BOUND, q.prod_M, q.prod_n)
        self.silu = np.asarray(q.silu, np.int64) * arith.fmultiplier(q.prod_M, q.prod_n)
        self.fast = self.gate_up.exact and self.down.exact and prod_exact

    def __call__(self, x: np.ndarray, ws: _Workspace, out: np.ndarray) -> np.ndarray:
        if not self.fast:
            xi = x.astype(np.int64)
            out[...] = self.q(xi.transpose(0, 2, 1)).transpose(0, 2, 1) if self.left else self.q(xi)
            return out
        I, B = self.I, x.shape[0]
        if self.left:                                            # x [B, L, D] -> [B, 2I, D]
            gu = self.gate_up.scaled(x, ws(self.role + ".gu", (B, 2 * I, x.shape[2])))
            gate, up = gu[:, :I], gu[:, I:]
        else:                                                    # x [B, L, K] -> [B, L, 2I]
            gu = self.gate_up.scaled(x, ws(self.role + ".gu", x.shape[:2] + (2 * I,)))
            gate, up = gu[..., :I], gu[..., I:]
        gate += 128.5
        idx = ws(self.role + ".idx", gate.shape, np.intp)
        np.copyto(idx, gate, casting="unsafe")
        act = np.take(self.silu, idx, mode="clip", out=ws(self.role + ".act", gate.shape))
        act *= arith.fround(up)
        return self.down(arith.fround(act), out)


class _Attention:
    """QAttention on float64 carriers, for sequences of the rotary tables' length."""

    def __init__(self, q: QAttention, R_rows: int):
        self.q = q
        D = q.qkv.w.shape[1]
        H = self.H = q.heads
        hd = self.hd = D // H
        h2 = hd // 2
        self.rotary = q.rope_cos is not None
        # q and k channels reordered: first every even channel (the first of a rotary pair) of q then of
        # k, head by head, then the odd ones in the same order, then v as it is: the rotation works on two
        # contiguous [L, D] halves. Scores sum over all the channels of a head, in any order.
        first = [part * D + j * hd + np.arange(0, hd, 2) for part in (0, 1) for j in range(H)]
        rows = np.concatenate(first + [f + 1 for f in first] + [np.arange(2 * D, 3 * D)])
        self.qkv = _Linear(q.qkv, rows=rows)
        # the Q14 tables times 2^-14 (exact), per column of a half: e * cos - o * sin (|.| <= 2^23) comes
        # out divided by 2^14
        tile = (1, 2 * H)
        if self.rotary:
            self.cos = np.tile(np.ldexp(np.asarray(q.rope_cos, F64), -arith.ROPE_SHIFT), tile)
            self.sin = np.tile(np.ldexp(np.asarray(q.rope_sin, F64), -arith.ROPE_SHIFT), tile)
        # scores as S^T [B, H, key, query] (k q^T), the softmax along axis -2, on scores times
        # c = M_s * 2^-n_s (k times c before the product: the terms q k M_s and every partial sum are
        # integers below hd * 2^14 * M_s, over 2^n_s). With R = EXP_RANGE and t = -d * c - 1/2,
        # -u = min(ceil(t), R); w = R - t = S c - (max S c - 1/2 - R) gives floor(max(w, 0)) =
        # R - min(ceil(t), R), the index into exp2 reversed. |S - max| <= hd * 2^15: exact with an offset
        # of R. Converting w to an integer truncates: the floor for w >= 0, an index <= 0 for w < 0, which
        # np.take's mode="clip" takes to 0 (|w| < 2^53: no overflow).
        R = arith.EXP_RANGE
        score_exact = arith.float_exact(hd << 15, q.score_M, q.score_n, offset=R)
        self.score_c = float(arith.fmultiplier(q.score_M, q.score_n))
        # e for -u = 0 .. R: EXP2[(-u) & 255] >> ((-u) >> 8), and 0 at R; stored reversed (indexed by w)
        neg = np.arange(R + 1)
        self.exp = np.where(neg >= R, 0, arith.EXP2[neg & 255] >> np.minimum(neg >> arith.EXP_FRAC_BITS, 62)
                            ).astype(F64)[::-1].copy()
        # a row of probabilities sums to at most 2^15 + L/2 (each rounds up by at most 1/2), |v| <= 128
        pv_exact = arith.float_exact(INT8_BOUND * ((1 << arith.PROB_BITS) + R_rows), q.pv_M, q.pv_n)
        self.pv_c = float(arith.fmultiplier(q.pv_M, q.pv_n))
        self.out = _Linear(q.out)
        self.fast = self.qkv.exact and self.out.exact and score_exact and pv_exact

    def softmax(self, sc: np.ndarray, ws: _Workspace) -> np.ndarray:
        """arith.softmax (along axis -2) of scores times c (``sc``, overwritten): Q15 probabilities."""
        off = sc.max(-2, keepdims=True)
        off -= arith.EXP_RANGE + 0.5
        np.subtract(sc, off, out=sc)                            # w <= R + 1/2
        idx = ws("att.idx", sc.shape, np.intp)
        np.copyto(idx, sc, casting="unsafe")                    # truncation: floor(w) for w >= 0, <= 0 below
        e = np.take(self.exp, idx, mode="clip", out=ws("att.e", sc.shape))   # max(., 0) by the mode
        total = e.sum(-2, keepdims=True)                        # exact: <= L * 2^15
        rcp = ((np.int64(1) << 30) // total.astype(np.int64)).astype(F64)
        e *= np.ldexp(rcp, -arith.PROB_BITS)                    # e * rcp <= 2^30, scaled by 2^-15: exact
        e += 0.5                                                # round_shift(e * rcp, 15); p <= 2^15
        return np.floor(e, out=e)

    def __call__(self, h: np.ndarray, ws: _Workspace, out: np.ndarray) -> np.ndarray:
        if not self.fast:
            out[...] = self.q(h.astype(np.int64))
            return out
        B, L, D = h.shape
        H, hd = self.H, self.hd
        h2 = hd // 2
        qkv = self.qkv(h, ws("att.qkv", (B, L, 3 * D)))
        e, o = qkv[..., :D], qkv[..., D:2 * D]
        rot = ws("att.rot", (2, B, H, L, hd))                   # rotated q, k: [2, B, H, L, hd]
        dst = rot.transpose(1, 3, 0, 2, 4).reshape(B, L, 2, H, hd)
        if self.rotary:
            t, u = ws("att.t", (B, L, D)), ws("att.u", (B, L, D))
            np.multiply(e, self.cos, out=t)
            t -= np.multiply(o, self.sin, out=u)
            arith.fround(t.reshape(B, L, 2, H, h2), out=dst[..., :h2])
            np.multiply(e, self.sin, out=t)
            t += np.multiply(o, self.cos, out=u)
            arith.fround(t.reshape(B, L, 2, H, h2), out=dst[..., h2:])
        else:  # the reordered halves as they are (integers already)
            dst[..., :h2] = e.reshape(B, L, 2, H, h2)
            dst[..., h2:] = o.reshape(B, L, 2, H, h2)
        rot[1] *= self.score_c
        sc = np.matmul(rot[1], rot[0].transpose(0, 1, 3, 2), out=ws("att.s", (B, H, L, L)))   # S^T c
        p = self.softmax(sc, ws).transpose(0, 1, 3, 2)          # [B, H, query, key]
        acc = np.matmul(p, qkv[..., 2 * D:].reshape(B, L, H, hd).transpose(0, 2, 1, 3),
                        out=ws("att.acc", (B, H, L, hd)))
        a = ws("att.a", (B, L, D))
        arith.frequantize(acc, self.pv_c, out=a.reshape(B, L, H, hd).transpose(0, 2, 1, 3))
        return self.out(a, out)


class _Plan:
    """An IntModel prepared for ``run``: float64 weights and folded constants, bounds checked."""

    def __init__(self, m: IntModel):
        self.m = m
        D = m.embed.shape[1]
        R = m.prefix + int(m.config["seq_len"])
        self.z_blocks = [self._block(blk, D, R) for blk in m.blocks]
        self.y_blocks = [self._block(blk, D, R) for blk in m.y_blocks] or self.z_blocks
        self.head = _Linear(m.head)
        self.halt_w = np.asarray(m.halt_w, F64)
        # weighted add: the coefficients / 2^12 (exact); every term q * a / 2^12 and each partial sum is an
        # integer over 2^12, exact while 128 * sum |a| + 2^11 <= 2^53 (x's coefficient counted twice with
        # learned positions: x is two int8 terms), and floor(sum + 1/2) is round_shift(sum q * a, 12)
        x_terms = 1 if m.pos_emb is None else 2
        z_bound = abs(m.z_in[0]) + x_terms * abs(m.z_in[1]) + abs(m.z_in[2])
        self.add_exact = all(INT8_BOUND * c + (1 << 11) <= arith.EXACT for c in (z_bound, sum(map(abs, m.y_in))))
        self.z_in = [np.ldexp(float(a), -arith.ADD_SHIFT) for a in m.z_in]
        self.y_in = [np.ldexp(float(a), -arith.ADD_SHIFT) for a in m.y_in]
        self.ws = _Workspace()

    def _block(self, blk: QBlock, D: int, R: int) -> tuple:
        """(mixer, its residual, channel SwiGLU, its residual) of one block; the mixer's residual runs over
        each channel's R rows under the sequence norm (``IntModel.seq_norm_const``)."""
        mlp = isinstance(blk.mixer, QSwiGLU)
        mixer = _SwiGLU(blk.mixer, "mix", left=True) if mlp else _Attention(blk.mixer, R)
        over_rows = mlp and self.m.seq_norm_const > 0
        mix_res = self._residual(blk.mix_res, R if over_rows else D, self.m.seq_norm_const if over_rows else self.m.norm_const)
        return mixer, mix_res, _SwiGLU(blk.ffn, "ffn"), self._residual(blk.ffn_res, D, self.m.norm_const), over_rows

    @staticmethod
    def _residual(coefs: tuple[int, int], D: int, C: int) -> tuple[int, int, bool, int]:
        a, b = coefs
        # |v| = |h * a + m * b| <= 128 (|a| + |b|): v and the sum of squares (every partial sum) are exact
        # while D v^2 <= 2^53
        vb = INT8_BOUND * (abs(a) + abs(b))
        return a, b, D * vb * vb <= arith.EXACT, C

    def residual(self, h: np.ndarray, r: tuple[int, int, bool, int], m: np.ndarray, out: np.ndarray) -> np.ndarray:
        """arith.residual(h, a, m, b, C) on float64 carriers into ``out`` (m is overwritten)."""
        a, b, exact, C = r
        if not exact:
            out[...] = arith.residual(h.astype(np.int64), a, m.astype(np.int64), b, C)
            return out
        v = np.multiply(h, float(a), out=self.ws("v", h.shape))
        m *= float(b)
        v += m
        ss = np.einsum("...d,...d->...", v, v).astype(np.int64)[..., None]
        # per row, as arith.rmsnorm
        k = np.maximum(0, (48 - arith.bit_length(ss)) // 2)
        r = arith.isqrt(ss << (2 * k))
        safe = np.maximum(r, 1)
        inv = ((np.int64(C) << (16 + k)) + safe // 2) // safe
        # |v * inv| < 2^37 (inv ~ C 2^16 / sqrt(ss), C < 2^20; |v| <= sqrt(ss)), so v * inv * 2^-24 is exact;
        # for ss = 0 (v = 0) inv may not be a float64 exactly, but 0 times it is 0, as in arith.rmsnorm
        v *= np.ldexp(inv.astype(F64), -arith.NORM_SHIFT)
        return arith.fround(v, out=out)

    def net(self, h: np.ndarray, out: np.ndarray, blocks: list | None = None) -> np.ndarray:
        """A network (the z network's unless ``blocks``) on h (the "in" array) into ``out``; every block's
        outputs alternate between two arrays, never its own input."""
        ws = self.ws
        blocks = self.z_blocks if blocks is None else blocks
        last = len(blocks) - 1
        for i, (mixer, mix_res, ffn, ffn_res, over_rows) in enumerate(blocks):
            m = mixer(h, ws, ws("sub", h.shape))
            if over_rows:   # the norm over each channel's rows: the same operation on [B, D, R] copies
                t = (h.shape[0], h.shape[2], h.shape[1])
                ht = ws("ht", t)
                ht[...] = h.transpose(0, 2, 1)
                mt = ws("mt", t)
                mt[...] = m.transpose(0, 2, 1)
                h1 = ws("h1", h.shape)
                h1[...] = self.residual(ht, mix_res, mt, ws("h1t", t)).transpose(0, 2, 1)
            else:
                h1 = self.residual(h, mix_res, m, ws("h1", h.shape))
            h = self.residual(h1, ffn_res, ffn(h1, ws, ws("sub", h.shape)), out if i == last else ws("h2", h.shape))
        return h

    def z_input(self, z: np.ndarray, x: np.ndarray, xa: np.ndarray, y: np.ndarray) -> np.ndarray:
        """weighted_add((z, a_z), (x, a_x), (y, a_y)) into the "in" array; xa = x * a_x / 2^12 + 1/2."""
        h = self.ws("in", z.shape)
        if not self.add_exact:
            h[...] = arith.weighted_add(list(zip((z, x, y), self.m.z_in)))
            return h
        a_z, _, a_y = self.z_in
        np.multiply(z, a_z, out=h)
        h += xa
        h += np.multiply(y, a_y, out=self.ws("v", z.shape))
        np.floor(h, out=h)                                       # xa holds the 1/2 already
        return np.clip(h, arith.INT8_MIN, arith.INT8_MAX, out=h)

    def y_input(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        h = self.ws("in", y.shape)
        if not self.add_exact:
            h[...] = arith.weighted_add(list(zip((y, z), self.m.y_in)))
            return h
        b_y, b_z = self.y_in
        np.multiply(y, b_y, out=h)
        h += np.multiply(z, b_z, out=self.ws("v", y.shape))
        return arith.fround(h)

    def readout(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seq = np.ascontiguousarray(y[:, self.m.prefix:]) if self.m.prefix else y
        if self.head.exact:
            logits = self.head(seq, self.ws("logits", seq.shape[:2] + (self.head.N,)))
        else:
            logits = self.m.head(seq.astype(np.int64))
        # as IntModel.readout: float64 product of integers, |.| <= 128 (P + L) * 128 D: exact
        pooled = y[:, 0] if self.m.halt_first else y.sum(axis=1)
        return logits.argmax(-1), np.matmul(pooled, self.halt_w).astype(np.int64)

    def run(self, tokens: np.ndarray, T: int, n: int, steps: int, keep_carries: bool, chunk: int,
            puzzle_ids: np.ndarray | None = None) -> dict:
        m = self.m
        tokens = np.asarray(tokens, np.int64)
        B, L = tokens.shape
        D = m.embed.shape[1]
        x_all = m.input_rows(tokens, puzzle_ids).astype(F64)
        R = x_all.shape[1]
        out = {"per_step": np.empty((steps, B, L), np.intp), "halt_acc": np.empty((steps, B), np.int64)}
        if keep_carries:
            out["y"] = np.empty((steps, T, B, R, D), np.int8)
            out["z"] = np.empty((steps, T, B, R, D), np.int8)
        chunk = max(1, chunk)
        for lo in range(0, B, chunk):
            hi = min(B, lo + chunk)
            x = x_all[lo:hi]
            xa = x * self.z_in[1]
            xa += 0.5                                            # the rounding term 2^11 / 2^12
            y, z = self.ws("y", x.shape), self.ws("z", x.shape)  # the carry, updated in place
            y[...], z[...] = m.y_init, m.z_init
            for s in range(steps):
                for t in range(T):
                    for _ in range(n):
                        self.net(self.z_input(z, x, xa, y), out=z)
                    self.net(self.y_input(y, z), out=y, blocks=self.y_blocks)
                    if keep_carries:                             # integers in [-128, 127]: exact casts
                        out["y"][s, t, lo:hi] = y
                        out["z"][s, t, lo:hi] = z
                out["per_step"][s, lo:hi], out["halt_acc"][s, lo:hi] = self.readout(y)
        out["halt"] = out["halt_acc"] > m.halt_threshold
        return out
