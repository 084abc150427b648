"""The model blob's tensor names: the one table that Python (``export/blob.py`` writes and reads them)
and C (``firmware/core/blob.c`` looks them up, through ``firmware/core/tensor_names.h``, generated from
this table by ``firmware/tools/gen_tables.py``) agree on. A rename here changes both; a name that C uses
and this table lost fails the firmware build, not a board at run time.

A block's tensors are ``b<layer>`` + a suffix (``b0.att.qkv``; an HRM's y network's ``yb<layer>``); a SwiGLU's are its prefix (``b0.mix``,
``b0.ffn``) + ``.gu`` / ``.silu`` / ``.prod`` / ``.down``; a weight matrix ``W`` has its requantization
pairs in ``W.mn``. Names are at most 15 bytes (docs/model-blob.md).
"""
from __future__ import annotations

NAMES = {
    # the model
    "EMBED": "embed", "Y_INIT": "y_init", "Z_INIT": "z_init", "HEAD": "head", "HALT": "halt",
    "PUZZLE_EMB": "puzzle_emb",  # the prefix rows of every puzzle identifier (format version 2)
    "POS_EMB": "pos_emb",        # the learned position rows, one per carry row (format version 3)
    # a block: BLOCK (the z network's; Y_BLOCK the y network's, HRM) + layer number + one of these
    "BLOCK": "b", "Y_BLOCK": "yb",
    "MIX": ".mix",              # the mlp mixer's SwiGLU (prefix)
    "FFN": ".ffn",              # the channel SwiGLU (prefix)
    "ATT_QKV": ".att.qkv", "ATT_COS": ".att.cos", "ATT_SIN": ".att.sin", "ATT_SM": ".att.sm", "ATT_OUT": ".att.out",
    "MIX_RES": ".mix.res", "FFN_RES": ".ffn.res",
    # the parts of a SwiGLU, and a matrix's requantization pairs
    "GU": ".gu", "SILU": ".silu", "PROD": ".prod", "DOWN": ".down", "MN": ".mn",
}
MAX_NAME = 15

EMBED, Y_INIT, Z_INIT, HEAD, HALT = (NAMES[k] for k in ("EMBED", "Y_INIT", "Z_INIT", "HEAD", "HALT"))
PUZZLE_EMB, POS_EMB = NAMES["PUZZLE_EMB"], NAMES["POS_EMB"]
MIX, FFN, MIX_RES, FFN_RES = NAMES["MIX"], NAMES["FFN"], NAMES["MIX_RES"], NAMES["FFN_RES"]
ATT_QKV, ATT_COS, ATT_SIN, ATT_SM, ATT_OUT = (NAMES[k] for k in ("ATT_QKV", "ATT_COS", "ATT_SIN", "ATT_SM", "ATT_OUT"))
GU, SILU, PROD, DOWN, MN = (NAMES[k] for k in ("GU", "SILU", "PROD", "DOWN", "MN"))


def block(layer: int, suffix: str, network: str = "z") -> str:
    """The name of a block's tensor: ``block(0, ATT_QKV)`` is ``b0.att.qkv``; of the y network's
    (``network="y"``, HRM) ``yb0.att.qkv``."""
    return f"{NAMES['BLOCK' if network == 'z' else 'Y_BLOCK']}{layer}{suffix}"
