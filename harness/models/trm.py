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
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

MIXERS = ("mlp", "attention")
# config keys and weight names of earlier checkpoints -> today's (docs/glossary.md: one word per idea)
LEGACY = {"n_sup": "steps"}
LEGACY_WEIGHTS = ((".mixer.mlp.", ".mixer.swiglu."), (".mlp.", ".ffn."))
ATTENTION_KERNELS = ("softmax", "linear")

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
    attention_kernel: str = "softmax"  # attention mixer: "softmax" | "linear"

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise ValueError(f"attention_kernel must be one of {ATTENTION_KERNELS}, got {self.attention_kernel!r}")
        if self.mixer == "attention" and self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")

    @property
    def mix_width(self) -> int:
        """Inner width of the sequence-mixing SwiGLU (mlp mixer)."""
        return self.mix_inner or max(1, round(self.expansion * self.seq_len))

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

    def rotary(self, name: str, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, theta: float) -> torch.Tensor:
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


def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # [L, head_dim/2]
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
        cos, sin = rotary_tables(cfg.seq_len, self.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.rope_theta = cfg.rope_theta

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "") -> torch.Tensor:
        B, L, D = h.shape
        ops = ops_of(point)
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = point(f"{name}.q", q), point(f"{name}.k", k), point(f"{name}.v", v)
        # q and k keep their scale through the rotation (it preserves the norm of each pair)
        q = point(f"{name}.q", ops.rotary(f"{name}.q", q, self.rope_cos, self.rope_sin, self.rope_theta))
        k = point(f"{name}.k", ops.rotary(f"{name}.k", k, self.rope_cos, self.rope_sin, self.rope_theta))
        a = point(f"{name}.attn", ops.attention(name, q, k, v, self.kernel))  # [B, H, L, hd]
        return point(f"{name}.out", self.out(a.transpose(1, 2).reshape(B, L, D)))


class Block(nn.Module):
    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.mixer = SequenceMLP(cfg.seq_len, cfg.mix_width) if cfg.mixer == "mlp" else Attention(cfg)
        self.ffn = SwiGLU(cfg.hidden, cfg.ffn_width)   # the channel SwiGLU

    def forward(self, h: torch.Tensor, point: Point = identity, name: str = "", h_point: str = "norm") -> torch.Tensor:
        """``h_point``: the point the block input comes from (``h`` for the first block, else ``norm``)."""
        ops = ops_of(point)
        m = self.mixer(h, point, f"{name}.mix")
        h = point("norm", ops.residual_norm("norm", h, h_point, m, f"{name}.mix.out", self.eps))
        m = self.ffn(h, point, f"{name}.ffn")
        return point("norm", ops.residual_norm("norm", h, "norm", m, f"{name}.ffn.out", self.eps))


class TRM(nn.Module):
    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(cfg.hidden))
        self.embed_scale = math.sqrt(cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.halt = nn.Linear(cfg.hidden, 1)
        nn.init.zeros_(self.halt.weight)
        nn.init.constant_(self.halt.bias, -5.0)  # start by never halting
        # Fixed (not learned) initial carry, one vector each for y and z, broadcast over positions.
        g = torch.Generator().manual_seed(0)
        self.register_buffer("y_init", torch.randn(cfg.hidden, generator=g))
        self.register_buffer("z_init", torch.randn(cfg.hidden, generator=g))

    # --- pieces -------------------------------------------------------------------------------
    def input_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) * self.embed_scale

    def initial_carry(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L = tokens.shape
        shape = (B, L, self.cfg.hidden)
        return self.y_init.expand(shape).clone(), self.z_init.expand(shape).clone()

    def net(self, h: torch.Tensor, injection: torch.Tensor, point: Point = identity) -> torch.Tensor:
        """The shared network on h + injection."""
        return self.blocks_on(point("h", h + injection), point)

    def blocks_on(self, h: torch.Tensor, point: Point = identity) -> torch.Tensor:
        """The shared network's blocks on its input h (the point ``h``)."""
        for l, block in enumerate(self.blocks):
            h = block(h, point, f"b{l}", "h" if l == 0 else "norm")
        return h

    def cycle(self, x, y, z, n: int, point: Point = identity):
        ops = ops_of(point)
        for _ in range(n):  # z <- net(z, x + y) n times, then y <- net(y, z)
            z = self.blocks_on(point("h", ops.inject("h", [("norm", z), ("x", x), ("norm", y)])), point)
        y = self.blocks_on(point("h", ops.inject("h", [("norm", y), ("norm", z)])), point)
        return y, z

    def readout(self, y: torch.Tensor, point: Point = identity) -> tuple[torch.Tensor, torch.Tensor]:
        """Token logits [B, L, V] and halting logit [B] from the answer state y."""
        return point("logits", self.head(y)), self.halt(y.mean(dim=1)).squeeze(-1)

    # --- one supervision step (training: gradient through the last cycle only) ----------------
    def step(self, x, y, z, T: int | None = None, n: int | None = None, point: Point = identity):
        T = T or self.cfg.T
        n = n or self.cfg.n
        with torch.no_grad():
            for _ in range(T - 1):
                y, z = self.cycle(x, y, z, n, point)
        y, z = self.cycle(x, y, z, n, point)
        logits, q_halt = self.readout(y, point)
        return y, z, logits, q_halt

    @torch.no_grad()
    def forward_trace(self, tokens: torch.Tensor, T: int | None = None, n: int | None = None,
                      steps: int | None = None, point: Point = identity,
                      carries: bool = True) -> dict[str, torch.Tensor]:
        """Run ``steps`` supervision steps of ``T`` cycles and keep everything a study needs.

        Returns logits [S, B, L, V], q_halt [S, B], and (unless ``carries`` is False: accuracy alone
        needs none, and they are most of the memory) the carry after every cycle of every step:
        y and z as [S, T, B, L, D]."""
        T = T or self.cfg.T
        n = n or self.cfg.n
        steps = steps or self.cfg.steps
        x = point("x", self.input_embedding(tokens))
        y, z = (point("norm", c) for c in self.initial_carry(tokens))
        logits, q_halt, ys, zs = [], [], [], []
        for _ in range(steps):
            step_y, step_z = [], []
            for _ in range(T):
                y, z = self.cycle(x, y, z, n, point)
                if carries:
                    step_y.append(y)
                    step_z.append(z)
            lg, q = self.readout(y, point)
            logits.append(lg)
            q_halt.append(q)
            if carries:
                ys.append(torch.stack(step_y))
                zs.append(torch.stack(step_z))
        out = {"logits": torch.stack(logits), "q_halt": torch.stack(q_halt)}
        if carries:
            out.update(y=torch.stack(ys), z=torch.stack(zs))
        return out

    def forward(self, tokens: torch.Tensor, T=None, n=None, steps=None) -> torch.Tensor:
        """Logits after the last step (no halting)."""
        return self.forward_trace(tokens, T, n, steps)["logits"][-1]

    # --- size -------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def macs_per_net(cfg: TRMConfig) -> int:
    """Multiply-accumulates of one application of the shared network to one puzzle."""
    L, D = cfg.seq_len, cfg.hidden
    channel = L * 3 * cfg.ffn_width * D
    if cfg.mixer == "mlp":
        mixer = D * 3 * cfg.mix_width * L
    elif cfg.attention_kernel == "softmax":
        mixer = L * 4 * D * D + 2 * L * L * D  # qkv + out projections, scores and weighted sum
    else:
        # qkv + out projections; per head Σ phi(k)^T v and phi(q) times it (L·hd² each, so 2·L·D·hd
        # over the heads); the normaliser phi(q) · Σ phi(k) (L·D)
        mixer = L * 4 * D * D + 2 * L * D * (D // cfg.heads) + L * D
    return cfg.layers * (mixer + channel)


def macs_per_inference(cfg: TRMConfig, T: int | None = None, n: int | None = None,
                       steps: int | None = None) -> int:
    """MACs for one puzzle at a given depth (defaults: the config's T, n, N_sup; no early halt)."""
    T = T or cfg.T
    n = n or cfg.n
    steps = steps or cfg.steps
    readout = cfg.seq_len * cfg.hidden * cfg.vocab_size + cfg.hidden
    return steps * (T * (n + 1) * macs_per_net(cfg) + readout)
