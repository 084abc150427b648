"""The per-operation profile of one RUN: where a board's instructions (or cycles) go.

With the RUN flag ``PROFILE`` the firmware splits the run's counter into the operations below: at each
boundary between two operations it reads the counter once and gives the stretch since the last
boundary to the operation that ran it, so the parts add up to the run's count exactly (the first
stretch, before the interpreter starts, and the last, after it returns, are ``other``). The marks
themselves cost instructions, which land in the operations they separate; ``harness run --profile``
measures that cost against the same puzzle run without the flag and states it.

``OPS`` is the one home of the operations' names and order: ``firmware/tools/gen_tables.py`` writes
``firmware/core/profile_ops.h`` (``TRM_OP_<NAME>``) from it, and the RESULT's profile section lists the
operations in this order (docs/protocol.md). Torch-free.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

# (name, what it counts); the position is the operation's id in the firmware
OPS: list[tuple[str, str]] = [
    ("other", "the server around the run (depth checks, the stretch before and after the interpreter)"),
    ("copy", "carry initialisation, the carries kept after every cycle, the final carries"),
    ("z_input", "the weighted add z + x + y before every z update (reads L embedding rows)"),
    ("y_input", "the weighted add y + z before every y update"),
    ("mix_gather", "mlp mixer: each channel's column gathered from [L][D] and scattered back"),
    ("mix_gate_up", "mlp mixer: the SwiGLU's gate and up linear along the sequence"),
    ("mix_act", "mlp mixer: silu(gate) * up, requantized"),
    ("mix_down", "mlp mixer: the SwiGLU's down linear along the sequence"),
    ("qkv", "attention: the q, k and v projections"),
    ("rotary", "attention: rotary positions on q and k"),
    ("softmax", "attention: the q.k scores and the integer softmax"),
    ("values", "attention: the probability-weighted sum of the values"),
    ("att_out", "attention: the output projection"),
    ("mix_norm", "the residual add and RMSNorm after the mixer"),
    ("ffn_gate_up", "channel SwiGLU (ffn): the gate and up linear"),
    ("ffn_act", "channel SwiGLU (ffn): silu(gate) * up, requantized"),
    ("ffn_down", "channel SwiGLU (ffn): the down linear"),
    ("ffn_norm", "the residual add and RMSNorm after the ffn"),
    ("head", "readout: the output head (int16 logits) per position"),
    ("argmax_halt", "readout: the argmax per position and the halting accumulator"),
]
NAMES = [name for name, _ in OPS]
ENTRY = struct.Struct("<IQ")      # per operation in RESULT: calls u32, counts u64


def section_bytes() -> int:
    return ENTRY.size * len(OPS)


def parse(p: bytes, offset: int = 0) -> list[tuple[int, int]]:
    """(calls, counts) per operation, in ``OPS`` order, from a RESULT's profile section."""
    return [ENTRY.unpack_from(p, offset + i * ENTRY.size) for i in range(len(OPS))]


def macs_per_call(header: dict[str, Any]) -> dict[str, float]:
    """Multiply-accumulates per call of each operation that multiplies, from the blob header's shape
    (``export.blob.read_header``: hidden D, seq_len L, vocab_size V, mixer 0 mlp / 1 attention, heads,
    ffn_inner F, mix_inner I). Where a call is (calls count vectors, also where a kernel takes two at
    once): per position (ffn, head, attention's projections), per channel (the mlp mixer), per position
    and head (scores, values). The attention's first pass makes k and v of a position in one call and
    its second pass q in another: qkv's 3 D^2 MACs per position over 2 calls."""
    D, L, F, V = header["hidden"], header["seq_len"], header["ffn_inner"], header["vocab_size"]
    out: dict[str, float] = {"ffn_gate_up": 2 * F * D, "ffn_down": D * F, "head": V * D}
    if header["mixer"] == 0:
        inner = header["mix_inner"]
        out.update(mix_gate_up=2 * inner * L, mix_down=L * inner)
    else:
        hd = D // header["heads"]
        out.update(qkv=3 * D * D / 2, att_out=D * D, softmax=hd * L, values=hd * L)
    return out


@dataclass
class Profile:
    """A RUN's profile: per operation its calls and counts, the unit and the run's total."""
    ops: list[tuple[int, int]]
    total: int

    def table(self, macs: dict[str, float] | None = None, per_instruction: float = 1.0) -> list[dict[str, Any]]:
        """One row per operation that ran (calls > 0 or counts > 0): calls, counts (scaled by
        ``per_instruction``: instructions per counter unit), share of the total and, for the linear
        operations, counts per MAC."""
        rows = []
        for (name, what), (calls, counts) in zip(OPS, self.ops):
            if not calls and not counts:
                continue
            value = counts * per_instruction
            row = {"op": name, "calls": calls, "counter": counts, "counts": value,
                   "share": counts / self.total if self.total else 0.0, "what": what}
            if macs and name in macs and calls:
                row["macs"] = round(macs[name] * calls)
                row["counts_per_mac"] = value / row["macs"]
            rows.append(row)
        return rows

    @property
    def parts(self) -> int:
        return sum(c for _, c in self.ops)
