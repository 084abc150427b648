"""Importing checkpoints saved by the official code: TinyRecursiveModels (TRM, attention or ``mlp_t``)
and HRM (sapientinc/HRM), into this harness's model (trm.py, hrm.py) and checkpoint format.

The official ``pretrain.py`` saves ``torch.save(model.state_dict())`` of ``torch.compile(ACTLossHead(
model))``, so its keys start with ``_orig_mod.`` and ``model.inner.``; tensors are bf16 or fp32. The
tensors give every shape; what they cannot say (heads, depth, the halting rule, the prefix length of an
attention TRM, rotary settings) comes from the run's ``all_config.yaml`` or from explicit overrides; the
task (``sudoku`` size 9 for the official sudoku models) gives the sequence length and is checked against
the vocabulary. ``docs/import.md`` is the key map. Every problem stops with an ``ImportError_`` whose one
line names the file, the key, the shape found and the shape expected.

Two facts of the official layout become a change of the weights, not a config field:
  * the rotary positions rotate channel i with channel i + hd/2 of a head (``rotate_half``); this
    harness rotates channel pairs (2i, 2i+1) at the same frequencies. Permuting the q and k rows of
    every head (new 2i <- old i, new 2i+1 <- old i + hd/2) makes the two equal: the scores q·k are sums
    over the same pairs, and v and the carries are untouched.
  * a TRM trained with ``no_ACT_continue`` (its default) halts when the halt logit alone is positive;
    its continue logit is never used, so the import keeps the halt row only (a one-logit head). HRM's
    head keeps both rows (halt when halt > continue).
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch

from .hrm import build
from .trm import TRM, TRMConfig

KINDS = ("trm-official", "hrm-official")
VARIANTS = ("trm-attention", "trm-mlp", "hrm")
PREFIXES = ("_orig_mod.", "model.", "inner.")


class ImportError_(ValueError):
    """A checkpoint or config that cannot be imported; the message names what is wrong and where."""


def _shape(t) -> list[int]:
    return list(t.shape)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint, keys without the compile and loss-head prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file (give the checkpoint the official pretrain.py saved, "
                           f"e.g. checkpoints/<run>/step_N)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, pickled objects other than tensors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ImportError_(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {first}): the file "
                           f"is truncated, corrupt or not a torch.save of a state dict") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict) and not any(
            isinstance(v, torch.Tensor) for v in obj.values()):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else "a dict whose values are not all tensors"
        raise ImportError_(f"{path}: not a state dict (found {kind}): give the file saved by "
                           f"torch.save(model.state_dict())")
    state = {}
    for key, value in obj.items():
        short = key
        for prefix in PREFIXES:
            short = short.removeprefix(prefix)
        state[short] = value
    return state


def detect_variant(state: dict[str, torch.Tensor], path: Path) -> str:
    """trm-attention, trm-mlp or hrm, from the keys alone."""
    if any(k.startswith("H_level.") for k in state):
        return "hrm"
    if any(".mlp_t." in k for k in state):
        return "trm-mlp"
    if any(".self_attn." in k for k in state):
        return "trm-attention"
    raise ImportError_(f"{path}: no key of an official TRM or HRM (L_level.layers.N.self_attn.*, "
                       f"L_level.layers.N.mlp_t.*, H_level.*); first keys: {sorted(state)[:3]}")


def read_config(path: Path | None) -> dict[str, Any]:
    """The ``arch`` section of an official all_config.yaml (or the arch fields at the top level)."""
    if path is None:
        return {}
    import yaml

    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file (the official run writes all_config.yaml next to its "
                           f"checkpoints)") from None
    except yaml.YAMLError as e:
        raise ImportError_(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise ImportError_(f"{path}: expected a mapping (all_config.yaml), found {type(cfg).__name__}")
    arch = cfg.get("arch", cfg)
    if not isinstance(arch, dict):
        raise ImportError_(f"{path}: arch must be a mapping, found {type(arch).__name__}")
    return arch


def _layers(state, level: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{level}\.layers\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _need(state, key: str, path: Path, ndim: int) -> torch.Tensor:
    if key not in state:
        raise ImportError_(f"{path}: key {key!r} is missing (an official checkpoint of this variant has it)")
    t = state[key]
    if t.dim() != ndim:
        raise ImportError_(f"{path}: key {key!r} has shape {_shape(t)}; expected {ndim} dimension(s)")
    return t


def _from_config(arch: dict, key: str, found, where: str, cfg_path: Path | None):
    """A field the tensors say (``found``) checked against the config, which may not contradict it."""
    if key in arch and arch[key] is not None and arch[key] != found:
        raise ImportError_(f"{cfg_path}: arch.{key} is {arch[key]!r} but the checkpoint's {where} says {found!r}")
    return found


def model_config(state: dict[str, torch.Tensor], variant: str, arch: dict, seq_len: int, path: Path,
                 cfg_path: Path | None = None, overrides: dict[str, Any] | None = None) -> TRMConfig:
    """Our config for an official checkpoint: shapes from the tensors, the rest from the official config
    (with its defaults where a field is absent), and any explicit override."""
    arch = {**arch, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    embed = _need(state, "embed_tokens.embedding_weight", path, 2)
    vocab, hidden = embed.shape
    _from_config(arch, "hidden_size", hidden, "embed_tokens.embedding_weight [vocab, hidden]", cfg_path)
    # positions: learned (an embed_pos table) or rotary; the config may say so but not contradict it.
    # "none" (no positions at all) is what mlp_t runs have: the mlp mixer's positions are in its weights
    pos = "learned" if "embed_pos.embedding_weight" in state else "rope"
    said = arch.get("pos_encodings")
    mlp_t = variant == "trm-mlp"
    if said not in (None, "rope", "learned") and not (said == "none" and mlp_t):
        raise ImportError_(f"{cfg_path}: arch.pos_encodings is {said!r}: this harness has rope and learned "
                           f"positions (and none for mlp_t) only")
    if said in ("rope", "learned") and said != pos:
        raise ImportError_(f"{cfg_path}: arch.pos_encodings is {said!r} but the checkpoint "
                           f"{'has' if pos == 'learned' else 'has no'} embed_pos.embedding_weight ({pos})")
    L_layers = _from_config(arch, "L_layers", _layers(state, "L_level"), "L_level.layers.N keys", cfg_path)
    if not L_layers:
        raise ImportError_(f"{path}: no L_level.layers.N.* keys: not an official TRM/HRM checkpoint")
    y_layers = _layers(state, "H_level") if variant == "hrm" else 0
    if variant == "hrm":
        _from_config(arch, "H_layers", y_layers, "H_level.layers.N keys", cfg_path)
    ffn_inner = _need(state, "L_level.layers.0.mlp.down_proj.weight", path, 2).shape[1]
    ids, ndim = 0, 0
    if "puzzle_emb.weights" in state:
        ids, ndim = _need(state, "puzzle_emb.weights", path, 2).shape
        _from_config(arch, "puzzle_emb_ndim", ndim, "puzzle_emb.weights [identifiers, ndim]", cfg_path)
    elif arch.get("puzzle_emb_ndim"):
        raise ImportError_(f"{cfg_path}: arch.puzzle_emb_ndim is {arch['puzzle_emb_ndim']} but the checkpoint "
                           f"has no puzzle_emb.weights")
    # the prefix length: an HRM (and a TRM with puzzle_emb_len 0) takes ceil(ndim / hidden); a TRM's
    # config says it, 16 by default
    P = math.ceil(ndim / hidden)
    if variant != "hrm":
        P = int(arch.get("puzzle_emb_len", 16)) or P
    mix_inner = 0
    if variant == "trm-mlp":
        gu = _need(state, "L_level.layers.0.mlp_t.gate_up_proj.weight", path, 2)
        mix_inner = gu.shape[0] // 2
        if gu.shape[1] != P + seq_len:
            raise ImportError_(f"{path}: key 'L_level.layers.0.mlp_t.gate_up_proj.weight' has shape {_shape(gu)}; "
                               f"expected [{gu.shape[0]}, {P + seq_len}] (prefix {P} + sequence {seq_len}): the "
                               f"task or puzzle_emb_len does not fit this checkpoint")
    elif arch.get("mlp_t"):
        raise ImportError_(f"{cfg_path}: arch.mlp_t is true but the checkpoint has attention keys (self_attn)")
    heads = arch.get("num_heads")
    if variant != "trm-mlp" and heads is None:
        raise ImportError_(f"{path}: the attention heads are not in the tensors: give --config all_config.yaml "
                           f"(arch.num_heads) or --heads")
    q_head = _need(state, "q_head.weight", path, 2)
    if list(q_head.shape) != [2, hidden]:
        raise ImportError_(f"{path}: key 'q_head.weight' has shape {_shape(q_head)}; expected [2, {hidden}]")
    two = variant == "hrm" or not arch.get("no_ACT_continue", True)
    fields = dict(
        arch="hrm" if variant == "hrm" else "trm", vocab_size=vocab, seq_len=seq_len, hidden=hidden,
        layers=L_layers, y_layers=y_layers, mixer="mlp" if variant == "trm-mlp" else "attention",
        heads=int(heads) if heads is not None else 1, T=int(arch.get("H_cycles", 3 if variant != "hrm" else 2)),
        n=int(arch.get("L_cycles", 6 if variant != "hrm" else 2)), steps=int(arch.get("halt_max_steps", 16)),
        halting=True, mix_inner=mix_inner, ffn_inner=ffn_inner, norm_eps=float(arch.get("rms_norm_eps", 1e-5)),
        rope_theta=float(arch.get("rope_theta", 10000.0)), pos_encodings=pos, puzzle_emb_len=P if ndim else 0,
        puzzle_emb_ndim=ndim, puzzle_ids=ids, halt_logits=2 if two else 1, halt_read="first",
        mix_norm="sequence" if variant == "trm-mlp" else "channels")
    if variant == "trm-mlp":
        fields["heads"] = int(heads) if heads is not None and hidden % int(heads) == 0 else 1
    try:
        return TRMConfig(**fields)
    except ValueError as e:
        raise ImportError_(f"{cfg_path or path}: the checkpoint and config make no valid model: {e}") from None


def _interleave_rotary(w: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k rows [heads·hd, D] of the official rotate_half layout → this harness's (2i, 2i+1) pairs."""
    hd = w.shape[0] // heads
    half = torch.arange(hd // 2)
    order = torch.stack((half, half + hd // 2), dim=1).flatten()       # new 2i <- i, 2i+1 <- i + hd/2
    return w.view(heads, hd, -1)[:, order].reshape(w.shape)


def key_map(cfg: TRMConfig, variant: str) -> dict[str, str]:
    """official key → our key, for every tensor the official checkpoint holds (docs/import.md)."""
    m = {"embed_tokens.embedding_weight": "embed.weight", "lm_head.weight": "head.weight",
         "q_head.weight": "halt.weight", "q_head.bias": "halt.bias", "H_init": "y_init", "L_init": "z_init"}
    if cfg.puzzle_ids:
        m["puzzle_emb.weights"] = "puzzle_emb"
    if cfg.pos_encodings == "learned":
        m["embed_pos.embedding_weight"] = "pos_emb"
    levels = [("L_level", "blocks", cfg.layers)] + ([("H_level", "y_blocks", cfg.y_layers)] if variant == "hrm" else [])
    for level, ours, count in levels:
        for l in range(count):
            o, b = f"{level}.layers.{l}", f"{ours}.{l}"
            if cfg.mixer == "mlp":
                m[f"{o}.mlp_t.gate_up_proj.weight"] = f"{b}.mixer.swiglu.gate_up.weight"
                m[f"{o}.mlp_t.down_proj.weight"] = f"{b}.mixer.swiglu.down.weight"
            else:
                m[f"{o}.self_attn.qkv_proj.weight"] = f"{b}.mixer.qkv.weight"
                m[f"{o}.self_attn.o_proj.weight"] = f"{b}.mixer.out.weight"
            m[f"{o}.mlp.gate_up_proj.weight"] = f"{b}.ffn.gate_up.weight"
            m[f"{o}.mlp.down_proj.weight"] = f"{b}.ffn.down.weight"
    return m


def convert(state: dict[str, torch.Tensor], cfg: TRMConfig, variant: str, path: Path) -> TRM:
    """Our model with the official tensors, each checked for its shape."""
    model = build(cfg)
    want = model.state_dict()
    mapping = key_map(cfg, variant)
    if (unknown := sorted(set(state) - set(mapping))):
        raise ImportError_(f"{path}: unknown key {unknown[0]!r} (shape {_shape(state[unknown[0]])}) for an official "
                           f"{variant} with these shapes ({len(unknown)} unknown in all; docs/import.md lists the keys)")
    ours = {}
    for key, target in mapping.items():
        if key not in state:
            raise ImportError_(f"{path}: key {key!r} is missing; expected shape {_shape(want[target])}")
        t = state[key].to(torch.float32)
        if target in ("halt.weight", "halt.bias") and cfg.halt_logits == 1:
            t = t[:1]                      # the halt row alone (module docstring)
        if list(t.shape) != list(want[target].shape):
            raise ImportError_(f"{path}: key {key!r} has shape {_shape(state[key])}; expected "
                               f"{_shape(want[target])} (as {target})")
        if target.endswith("mixer.qkv.weight") and cfg.rotary:
            D = cfg.hidden
            t = torch.cat((_interleave_rotary(t[:D], cfg.heads), _interleave_rotary(t[D:2 * D], cfg.heads), t[2 * D:]))
        ours[target] = t
    model.load_state_dict(ours)
    return model.eval()


def import_official(kind: str, checkpoint: Path, config: Path | None, seq_len: int,
                    overrides: dict[str, Any] | None = None) -> tuple[TRM, dict[str, Any]]:
    """The model of an official checkpoint and the record of where it came from."""
    if kind not in KINDS:
        raise ImportError_(f"unknown import kind {kind!r}: one of {', '.join(KINDS)}")
    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint)
    variant = detect_variant(state, checkpoint)
    if (variant == "hrm") != (kind == "hrm-official"):
        raise ImportError_(f"{checkpoint}: the keys are an official {variant} (H_level.* "
                           f"{'present' if variant == 'hrm' else 'absent'}), not {kind}: import it as "
                           f"{'hrm-official' if variant == 'hrm' else 'trm-official'}")
    arch = read_config(config)
    cfg = model_config(state, variant, arch, seq_len, checkpoint, config, overrides)
    model = convert(state, cfg, variant, checkpoint)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})
    origin = {
        "kind": kind, "variant": variant, "checkpoint": str(checkpoint),
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "config": str(config) if config else None,
        "config_sha256": hashlib.sha256(Path(config).read_bytes()).hexdigest() if config else None,
        "arch_name": arch.get("name"), "tensors": len(state), "dtypes": dtypes,
        "overrides": {k: v for k, v in (overrides or {}).items() if v is not None},
        "changes": (["q and k rows permuted per head: rotate_half layout -> (2i, 2i+1) pairs"]
                    if cfg.mixer == "attention" else [])
                   + (["continue row of q_head dropped (no_ACT_continue: halt when the halt logit > 0)"]
                      if cfg.halt_logits == 1 else []),
    }
    return model, origin
