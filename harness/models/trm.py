"""Tiny Recursive Model (TRM): one small network, applied over and over to a latent carry.

Vocabulary of this file (the same words are used in the firmware and the reports):
  x      input embedding of the puzzle tokens                       [B, L, D]
  carry  (y, z): y is the current answer, z the latent reasoning state, both [B, L, D]
  cycle  z <- net(z, x + y) n times, then y <- net(y, z)
  step   T cycles, then the output head reads y (one *supervision step*)
  N_sup  at most this many steps per puzzle; the halting head may stop earlier

The network is a stack of post-norm blocks, h <- norm(h + mixer(h)); h <- norm(h + swiglu(h)), with
RMSNorm without weight or bias. The token mixer is a SwiGLU over the sequence axis (``mlp``) or
non-causal self-attention with rotary positions (``attention``), whose kernel is the usual softmax or
linear attention (cost linear in the sequence length; float models only, the integer model has none).

The official TRM layout (SamsungSAILMontreal/TinyRecursiveModels) is this file with config fields, not
another file: a *puzzle-embedding prefix* (``puzzle_emb_len`` rows before the sequence, taken from a
table with one row per puzzle identifier, ``puzzle_emb_ndim`` wide, zero-padded, scaled with the
token embeddings), so the carry has ``carry_len`` = prefix + sequence rows, the mixers and the rotary
positions run over all of them and the output head reads y after the prefix; the halting head reads
the first position (``halt_read = "first"``) and may have two logits (halt, continue: halt when
halt > continue). HRM (``hrm.py``) is this model with a second network for the y update. Positions are rotary (in the
attention mixer) or learned (``pos_encodings = "learned"``: a position table added to x, the official
``pos_encodings: learned``; then no rotary positions).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import rotary

MIXERS = ("mlp", "attention")
# config keys and weight names of earlier checkpoints -> today's (docs/glossary.md: one word per idea)
LEGACY = {"n_sup": "steps"}
LEGACY_WEIGHTS = ((".mixer.mlp.", ".mixer.swiglu."), (".mlp.", ".ffn."))
ATTENTION_KERNELS = ("softmax", "linear")
ARCHS = ("trm", "hrm")
HALT_READS = ("mean", "first")
MIX_NORMS = ("channels", "sequence")
# Where the positions come from (the official TRM's pos_encodings): rotary positions in the attention
# mixer, or a learned position table added to x (then the attention mixer has no rotary positions)
POS_ENCODINGS = ("rope", "learned")
# The official TRM scales x = token row + position row by 1/sqrt(2) to keep its variance
LEARNED_POS_SCALE = 0.707106781

# A quantization point: every tensor that the integer model stores as int8 passes through
# point(name, tensor). The float model uses the identity; harness.compress plugs in observers (to
# calibrate scales) and fake quantizers (to study and to train recipes). Names:
#   x              input embedding (scaled)
#   h              input of the shared network: z + x + y, or y + z
#   norm           every RMSNorm output, hence the carry y, z and their initial values
#   b{l}.mix.*     token mixer of block l: gate, up, act, prod, out (mlp) or q, k, v, attn, out
#   b{l}.ffn.*     channel SwiGLU of block l: gate, up, act, prod, out
#   logits         output head
# Between the points, four operations of the integer model are fixed point of its own rather than a
# rounding of the float result (docs/integer-inference.md §3): the network input (weighted add), residual
# + RMSNorm, rotary positions and the softmax attention kernel. The model computes them through
# ``ops_of(point)``: the float ``FloatOps`` unless the point carries replacements as ``point.ops`` (the
# fake-quant point of harness.compress.quantize does, so that it follows the integer model there too).
Point = Callable[[str, torch.Tensor], torch.Tensor]


def identity(name: str, t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class TRMConfig:
    vocab_size: int
    seq_len: int
    hidden: int = 64
    layers: int = 2
    expansion: float = 2.0   # SwiGLU inner width = expansion × width it acts on
    mixer: str = "mlp"       # "mlp" | "attention"
    heads: int = 4
    n: int = 3               # z updates per cycle
    T: int = 2               # cycles per supervision step
    steps: int = 8           # supervision steps (the official TRM's N_sup; the default depth at inference)
    halting: bool = True     # train a halting head; at inference halting is optional
    mix_inner: int = 0       # explicit SwiGLU inner widths (0: expansion × width); set by structured
    ffn_inner: int = 0       # pruning, which shrinks them
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_axes: tuple[int, ...] = ()  # rotary positions over these axes of the sequence (row-major, e.g.
                             # (9, 9) for a 9x9 grid: each head's channel pairs take turns among the
                             # axes); () : one axis, the flat position (the official TRM's)
    attention_kernel: str = "softmax"  # attention mixer: "softmax" | "linear"
    pos_encodings: str = "rope"  # "rope": rotary positions in the attention mixer (the mlp mixer has
                                 # its positions in its weights); "learned": a position table [carry_len,
                                 # D] added to x, no rotary positions (POS_ENCODINGS)
    # the official layout (module docstring); the defaults are this harness's own TRM
    puzzle_emb_len: int = 0  # prefix rows before the sequence (the official TRM: 16)
    puzzle_emb_ndim: int = 0  # width of one puzzle-embedding row, at most puzzle_emb_len × hidden
    puzzle_ids: int = 0      # rows of the puzzle-embedding table (puzzle identifiers)
    halt_logits: int = 1     # 1: halt when the halting logit > 0; 2: (halt, continue), halt when halt > continue
    halt_read: str = "mean"  # the halting head reads y's mean over positions, or its first position
    mix_norm: str = "channels"  # the RMSNorm after the mlp mixer: over each position's channels, or over
                                # each channel's positions ("sequence": the official TRM's mlp_t)
    arch: str = "trm"        # "trm" | "hrm" (hrm.py: a second network, y_layers blocks, updates y)
    y_layers: int = 0        # HRM: blocks of the y network (the official H_layers); 0 for a TRM

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise ValueError(f"attention_kernel must be one of {ATTENTION_KERNELS}, got {self.attention_kernel!r}")
        if self.mixer == "attention" and self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if (self.arch == "hrm") != (self.y_layers > 0):
            raise ValueError(f"y_layers (the y network's blocks) must be positive for an hrm and 0 for a trm, "
                             f"got arch {self.arch!r} with y_layers {self.y_layers}")
        if self.halt_logits not in (1, 2):
            raise ValueError(f"halt_logits must be 1 or 2, got {self.halt_logits!r}")
        if self.mix_norm not in MIX_NORMS or self.mix_norm == "sequence" and self.mixer != "mlp":
            raise ValueError(f"mix_norm must be one of {MIX_NORMS} ('sequence' with the mlp mixer only), "
                             f"got {self.mix_norm!r} with mixer {self.mixer!r}")
        if self.pos_encodings not in POS_ENCODINGS:
            raise ValueError(f"pos_encodings must be one of {POS_ENCODINGS}, got {self.pos_encodings!r}")
        self.rope_axes = tuple(int(a) for a in self.rope_axes)
        if self.rope_axes and self.pos_encodings != "rope":
            raise ValueError(f"rope_axes lay out rotary positions; pos_encodings {self.pos_encodings!r} has "
                             f"none: use rope_axes () with it")
        if self.rope_axes:
            rotary.check(self.seq_len, self.rope_axes,
                         self.hidden // self.heads // 2 if self.mixer == "attention" else None)
            if self.puzzle_emb_len:
                raise ValueError("rope_axes lay the sequence out as a grid; a puzzle-embedding prefix has no "
                                 "place on it: use rope_axes () with puzzle_emb_len")
        if self.halt_read not in HALT_READS:
            raise ValueError(f"halt_read must be one of {HALT_READS}, got {self.halt_read!r}")
        if (self.puzzle_ids > 0) != (self.puzzle_emb_ndim > 0) or self.puzzle_emb_ndim > self.puzzle_emb_len * self.hidden:
            raise ValueError(f"a puzzle-embedding table needs puzzle_ids > 0 and 0 < puzzle_emb_ndim <= "
                             f"puzzle_emb_len × hidden ({self.puzzle_emb_len} × {self.hidden}), got puzzle_ids "
                             f"{self.puzzle_ids} and puzzle_emb_ndim {self.puzzle_emb_ndim}")

    @property
    def rotary(self) -> bool:
        """Whether the attention mixer rotates q and k (rotary positions)."""
        return self.mixer == "attention" and self.pos_encodings == "rope"

    @property
    def carry_len(self) -> int:
        """Rows of the carry: the puzzle-embedding prefix, then the sequence."""
        return self.puzzle_emb_len + self.seq_len

    @property
    def mix_width(self) -> int:
        """Inner width of the sequence-mixing SwiGLU (mlp mixer)."""
        return self.mix_inner or max(1, round(self.expansion * self.carry_len))

    @property
    def ffn_width(self) -> int:
        """Inner width of the channel SwiGLU."""
        return self.ffn_inner or max(1, round(self.expansion * self.hidden))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TRMConfig":
        """From a checkpoint's config; the names earlier checkpoints used (``LEGACY``) are read as today's."""
        d = {LEGACY.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def rms_norm(h: torch.Tensor, eps: float) -> torch.Tensor:
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)


class FloatOps:
    """The float model's computations at the places where the integer model has fixed-point operations
    of its own. Arguments name the points their operands and results pass through, so that a
    replacement (``point.ops``, same methods) can find their scales."""

    def inject(self, name: str, terms: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """Network input: the first term plus the sum of the others, ``(point, tensor)`` pairs."""
        rest = terms[1][1]
        for _, t in terms[2:]:
            rest = rest + t
        return terms[0][1] + rest

    def residual_norm(self, name: str, h: torch.Tensor, h_point: str, m: torch.Tensor, m_point: str,
                      eps: float) -> torch.Tensor:
        """Post-norm residual: rms_norm(h + m), h the block input, m the mixer or SwiGLU output."""
        return rms_norm(h + m, eps)

    def rotary(self, name: str, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, theta: float,
               axes: tuple[int, ...] = ()) -> torch.Tensor:
        """Rotary positions on q or k; ``theta`` and ``axes`` are those the tables were made with."""
        return apply_rotary(t, cos, sin)

    def attention(self, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Callable) -> torch.Tensor:
        """The attention kernel of the mixer whose points are ``name.*`` (q, k, v: [B, H, L, hd])."""
        return kernel(q, k, v)


FLOAT_OPS = FloatOps()


def ops_of(point: Point) -> FloatOps:
    return getattr(point, "ops", None) or FLOAT_OPS


class SwiGLU(nn.Module):
    """down(silu(gate(h)) * up(h)) over the last axis."""

    def __init__(self, width: int, inner: int):
        super().__init__()
        self.gate_up = nn.Linear(width, 2 * inner, bias=False)
        self.down = nn.Linear(inner, width, bias=False)

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "") -> torch.Tensor:
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        gate, up = point(f"{name}.gate", gate), point(f"{name}.up", up)
        act = point(f"{name}.act", F.silu(gate))
        return point(f"{name}.out", self.down(point(f"{name}.prod", act * up)))


class SequenceMLP(nn.Module):
    """Token mixing: a SwiGLU applied along the sequence axis, shared by all channels."""

    def __init__(self, seq_len: int, inner: int):
        super().__init__()
        self.swiglu = SwiGLU(seq_len, inner)

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "") -> torch.Tensor:  # h [B, L, D]
        return self.swiglu(h.transpose(1, 2), point, name).transpose(1, 2)


def rotary_tables(seq_len: int, head_dim: int, theta: float,
                  axes: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Float cos and sin [L, head_dim/2] of the rotary positions (``harness.rotary.layout``)."""
    coord, num, den = rotary.layout(seq_len, head_dim, axes)
    inv_freq = 1.0 / theta ** (torch.as_tensor(num, dtype=torch.float32) / torch.as_tensor(den, dtype=torch.float32))
    angles = torch.as_tensor(coord, dtype=torch.float32) * inv_freq  # [L, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of t [B, H, L, hd] by position-dependent angles."""
    even, odd = t[..., 0::2], t[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Non-causal linear attention over [B, H, L, hd] with the feature map phi(t) = elu(t) + 1:
    out_i = phi(q_i) · S / (phi(q_i) · s + eps) with S = Σ_j phi(k_j)^T v_j and s = Σ_j phi(k_j).
    Building S and applying it cost L·hd² each per head, instead of L² · hd for the scores."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    kv = fk.transpose(-2, -1) @ v                            # [B, H, hd, hd]
    norm = fq @ fk.sum(dim=-2).unsqueeze(-1)                 # [B, H, L, 1]
    return (fq @ kv) / (norm + eps)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with rotary positions (softmax or linear kernel)."""

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.kernel = F.scaled_dot_product_attention if cfg.attention_kernel == "softmax" else linear_attention
        self.heads = cfg.heads
        self.head_dim = cfg.hidden // cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.rotary = cfg.rotary
        if self.rotary:
            cos, sin = rotary_tables(cfg.carry_len, self.head_dim, cfg.rope_theta, cfg.rope_axes)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
            self.rope_theta, self.rope_axes = cfg.rope_theta, cfg.rope_axes

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "") -> torch.Tensor:
        B, L, D = h.shape
        ops = ops_of(point)
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = point(f"{name}.q", q), point(f"{name}.k", k), point(f"{name}.v", v)
        if self.rotary:  # q and k keep their scale through the rotation (it preserves each pair's norm)
            q = point(f"{name}.q", ops.rotary(f"{name}.q", q, self.rope_cos, self.rope_sin, self.rope_theta,
                                              self.rope_axes))
            k = point(f"{name}.k", ops.rotary(f"{name}.k", k, self.rope_cos, self.rope_sin, self.rope_theta,
                                              self.rope_axes))
        a = point(f"{name}.attn", ops.attention(name, q, k, v, self.kernel))  # [B, H, L, hd]
        return point(f"{name}.out", self.out(a.transpose(1, 2).reshape(B, L, D)))


class Block(nn.Module):
    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.sequence_norm = cfg.mix_norm == "sequence"
        self.mixer = SequenceMLP(cfg.carry_len, cfg.mix_width) if cfg.mixer == "mlp" else Attention(cfg)
        self.ffn = SwiGLU(cfg.hidden, cfg.ffn_width)   # the channel SwiGLU

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "", h_point: str = "norm") -> torch.Tensor:
        """``h_point``: the point the block input comes from (``h`` for the first block, else ``norm``)."""
        ops = ops_of(point)
        m = self.mixer(h, point, f"{name}.mix")
        if self.sequence_norm:  # over each channel's positions: the same norm on [B, D, L]
            h = point("norm", ops.residual_norm("norm", h.transpose(1, 2), h_point, m.transpose(1, 2),
                                                f"{name}.mix.out", self.eps).transpose(1, 2))
        else:
            h = point("norm", ops.residual_norm("norm", h, h_point, m, f"{name}.mix.out", self.eps))
        m = self.ffn(h, point, f"{name}.ffn")
        return point("norm", ops.residual_norm("norm", h, "norm", m, f"{name}.ffn.out", self.eps))


def halt_score(q: torch.Tensor, halt_logits: int) -> torch.Tensor:
    """The halting head's decision as one number per puzzle, positive to halt: the logit of a one-logit
    head (q [...]), halt − continue of a two-logit head (q [..., 2])."""
    return q if halt_logits == 1 else q[..., 0] - q[..., 1]


class TRM(nn.Module):
    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(cfg.hidden))
        self.embed_scale = math.sqrt(cfg.hidden)
        if cfg.pos_encodings == "learned":
            # one row per carry row (prefix rows too, as the official code has it), initialised as the
            # token embedding; x = (token row + position row) / sqrt(2), both scaled by sqrt(hidden)
            self.embed_scale *= LEARNED_POS_SCALE
            self.pos_emb = nn.Parameter(torch.randn(cfg.carry_len, cfg.hidden) / math.sqrt(cfg.hidden))
        if cfg.puzzle_ids:
            # one row per puzzle identifier; zero at first, as the official code starts it
            self.puzzle_emb = nn.Parameter(torch.zeros(cfg.puzzle_ids, cfg.puzzle_emb_ndim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.halt = nn.Linear(cfg.hidden, cfg.halt_logits)
        nn.init.zeros_(self.halt.weight)
        nn.init.constant_(self.halt.bias, -5.0)  # start by never halting
        # Fixed (not learned) initial carry, one vector each for y and z, broadcast over positions.
        g = torch.Generator().manual_seed(0)
        self.register_buffer("y_init", torch.randn(cfg.hidden, generator=g))
        self.register_buffer("z_init", torch.randn(cfg.hidden, generator=g))

    # --- pieces -------------------------------------------------------------------------------
    def input_embedding(self, tokens: torch.Tensor, puzzle_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, carry_len, D]: the puzzle-embedding prefix (the row of each puzzle's identifier,
        zero-padded to puzzle_emb_len × hidden; identifier 0 when none is given), then the token
        embeddings, all scaled by sqrt(hidden) (and 1/sqrt(2) with learned positions, whose rows
        ``position_table`` are a term of their own in the z-update input)."""
        e = self.embed(tokens)
        P = self.cfg.puzzle_emb_len
        if P:
            B, D = tokens.shape[0], self.cfg.hidden
            if self.cfg.puzzle_ids:
                ids = torch.zeros(B, dtype=torch.long) if puzzle_ids is None else torch.as_tensor(puzzle_ids).long()
                rows = F.pad(self.puzzle_emb[ids], (0, P * D - self.cfg.puzzle_emb_ndim))
            else:
                rows = e.new_zeros(B, P * D)
            e = torch.cat((rows.view(B, P, D).to(e.dtype), e), dim=1)
        return e * self.embed_scale

    def token_table(self) -> torch.Tensor:
        """Every token's input row [V, D], scaled as x."""
        return self.embed.weight * self.embed_scale

    def position_table(self) -> torch.Tensor | None:
        """The learned position rows [carry_len, D], scaled as x; None with rotary positions."""
        return self.pos_emb * self.embed_scale if self.cfg.pos_encodings == "learned" else None

    def prefix_table(self) -> torch.Tensor | None:
        """Every puzzle identifier's prefix rows [ids, P·D] (zero-padded), scaled as x; None without a
        table."""
        if not self.cfg.puzzle_ids:
            return None
        pad = self.cfg.puzzle_emb_len * self.cfg.hidden - self.cfg.puzzle_emb_ndim
        return F.pad(self.puzzle_emb, (0, pad)) * self.embed_scale

    def initial_carry(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (tokens.shape[0], self.cfg.carry_len, self.cfg.hidden)
        return self.y_init.expand(shape).clone(), self.z_init.expand(shape).clone()

    def net(self, h: torch.Tensor, injection: torch.Tensor, point: Point = identity) -> torch.Tensor:
        """The shared network on h + injection."""
        return self.blocks_on(point("h", h + injection), point)

    def networks(self) -> list[tuple[str, nn.ModuleList]]:
        """(point-name prefix, blocks) of every network: a TRM has one (``b``), which updates z and y
        alike; an HRM adds its y network (``yb``)."""
        return [("b", self.blocks)]

    def blocks_on(self, h: torch.Tensor, point: Point = identity, which: str = "z") -> torch.Tensor:
        """The blocks of the network that updates ``which`` (z or y) on its input h (the point ``h``)."""
        nets = self.networks()
        prefix, blocks = nets[-1] if which == "y" else nets[0]
        for l, block in enumerate(blocks):
            h = block(h, point, f"{prefix}{l}", "h" if l == 0 else "norm")
        return h

    def z_update(self, x, y, z, point: Point = identity):
        """z <- net(z + x + y); with learned positions x is the token rows plus the position rows, two
        terms at the point ``x``."""
        ops = ops_of(point)
        terms = [("norm", z), ("x", x)]
        if (pos := self.position_table()) is not None:
            terms.append(("x", point("x", pos).expand_as(x)))
        return self.blocks_on(point("h", ops.inject("h", [*terms, ("norm", y)])), point, "z")

    def y_update(self, y, z, point: Point = identity):
        """y <- net(y + z)."""
        ops = ops_of(point)
        return self.blocks_on(point("h", ops.inject("h", [("norm", y), ("norm", z)])), point, "y")

    def cycle(self, x, y, z, n: int, point: Point = identity):
        for _ in range(n):  # z <- net(z, x + y) n times, then y <- net(y, z)
            z = self.z_update(x, y, z, point)
        return self.y_update(y, z, point), z

    def readout(self, y: torch.Tensor, point: Point = identity) -> tuple[torch.Tensor, torch.Tensor]:
        """Token logits [B, L, V] from the answer state y after the prefix, and the halting head: [B]
        for one logit, [B, 2] (halt, continue) for two, read from y's mean or its first position."""
        c = self.cfg
        q = self.halt(y[:, 0] if c.halt_read == "first" else y.mean(dim=1))
        return point("logits", self.head(y[:, c.puzzle_emb_len:])), (q.squeeze(-1) if c.halt_logits == 1 else q)

    # --- one supervision step (training: gradient through the last cycle only) ----------------
    def step(self, x, y, z, T: int | None = None, n: int | None = None, point: Point = identity):
        T = T or self.cfg.T
        n = n or self.cfg.n
        with torch.no_grad():
            for _ in range(T - 1):
                y, z = self.cycle(x, y, z, n, point)
        y, z = self.cycle(x, y, z, n, point)
        logits, q = self.readout(y, point)
        return y, z, logits, q

    @torch.no_grad()
    def forward_trace(self, tokens: torch.Tensor, T: int | None = None, n: int | None = None,
                      steps: int | None = None, point: Point = identity,
                      carries: bool = True, puzzle_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Run ``steps`` supervision steps of ``T`` cycles and keep everything a study needs.

        Returns logits [S, B, L, V], q_halt [S, B] (the halting decision, ``halt_score``: positive to
        halt), q_logits [S, B, halt_logits], and (unless ``carries`` is False: accuracy alone needs none,
        and they are most of the memory) the carry after every cycle of every step: y and z as
        [S, T, B, carry_len, D]."""
        T = T or self.cfg.T
        n = n or self.cfg.n
        steps = steps or self.cfg.steps
        x = point("x", self.input_embedding(tokens, puzzle_ids))
        y, z = (point("norm", c) for c in self.initial_carry(tokens))
        logits, qs, ys, zs = [], [], [], []
        for _ in range(steps):
            step_y, step_z = [], []
            for _ in range(T):
                y, z = self.cycle(x, y, z, n, point)
                if carries:
                    step_y.append(y)
                    step_z.append(z)
            lg, q = self.readout(y, point)
            logits.append(lg)
            qs.append(q)
            if carries:
                ys.append(torch.stack(step_y))
                zs.append(torch.stack(step_z))
        q = torch.stack(qs)                      # [S, B] or [S, B, 2], as readout gives them
        out = {"logits": torch.stack(logits), "q_logits": q.reshape(*q.shape[:2], -1),
               "q_halt": halt_score(q, self.cfg.halt_logits)}
        if carries:
            out.update(y=torch.stack(ys), z=torch.stack(zs))
        return out

    def forward(self, tokens: torch.Tensor, T=None, n=None, steps=None) -> torch.Tensor:
        """Logits after the last step (no halting)."""
        return self.forward_trace(tokens, T, n, steps)["logits"][-1]

    # --- size -------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def macs_per_net(cfg: TRMConfig, layers: int | None = None) -> int:
    """Multiply-accumulates of one application of a network to one puzzle: the z network (a TRM's only
    one), or ``layers`` blocks of the same shape (HRM's y network: ``cfg.y_layers``)."""
    L, D = cfg.carry_len, cfg.hidden
    channel = L * 3 * cfg.ffn_width * D
    if cfg.mixer == "mlp":
        mixer = D * 3 * cfg.mix_width * L
    elif cfg.attention_kernel == "softmax":
        mixer = L * 4 * D * D + 2 * L * L * D  # qkv + out projections, scores and weighted sum
    else:
        # qkv + out projections; per head Σ phi(k)^T v and phi(q) times it (L·hd² each, so 2·L·D·hd
        # over the heads); the normaliser phi(q) · Σ phi(k) (L·D)
        mixer = L * 4 * D * D + 2 * L * D * (D // cfg.heads) + L * D
    return (cfg.layers if layers is None else layers) * (mixer + channel)


def macs_per_inference(cfg: TRMConfig, T: int | None = None, n: int | None = None,
                       steps: int | None = None) -> int:
    """MACs for one puzzle at a given depth (defaults: the config's T, n, N_sup; no early halt)."""
    T = T or cfg.T
    n = n or cfg.n
    steps = steps or cfg.steps
    readout = cfg.seq_len * cfg.hidden * cfg.vocab_size + cfg.hidden * cfg.halt_logits
    y_net = macs_per_net(cfg, cfg.y_layers) if cfg.arch == "hrm" else macs_per_net(cfg)
    return steps * (T * (n * macs_per_net(cfg) + y_net) + readout)
