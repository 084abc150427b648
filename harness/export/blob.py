"""Model blob writer and reader (docs/model-blob.md, format versions 1 to 3).

``to_blob(int_model)`` gives the bytes the firmware reads in place; ``from_blob(data)`` validates them
and rebuilds the integer model, so the round trip is checked on the host with the golden reference."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..golden import arith
from ..golden.model import IntModel, QAttention, QBlock, QLinear, QSwiGLU
from . import names as N

MAGIC = b"TRMB"
VERSION = 2                         # what a blob is written as, unless it needs version 3 (``version_of``)
VERSIONS = {1: 64, 2: 80, 3: 80}    # format version -> its header size
HEADER = struct.Struct("<4sHHII HHHBBBBHH BBBBH Ii 3h 2h I f H")
# version 2 adds, at 64: prefix rows, y-network layers, puzzle identifiers, the sequence norm's constant
HEADER2 = struct.Struct("<BBHI8s")
ENTRY = struct.Struct("<16sBBHHHII")
ALIGN = 16
DTYPES = {0: ("int8", 1), 1: ("int4", None), 2: ("int16", 2), 3: ("int32", 4)}
DTYPE_CODE = {name: code for code, (name, _) in DTYPES.items()}
NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32}
# header flags: bits 0 and 1 in every version, bit 2 from version 3 (the firmware refuses a blob with a
# bit its version does not define: BLOB_SHAPE)
FLAG_EMBED_RAM, FLAG_HALT_FIRST, FLAG_POS_LEARNED = 1, 2, 4
assert HEADER.size == 64 and HEADER.size + HEADER2.size == VERSIONS[2] and ENTRY.size == 32


class BlobError(ValueError):
    """A blob that fails validation; ``code`` matches the firmware's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class Tensor:
    name: str
    dtype: str
    data: np.ndarray          # values (int4: the unpacked values)

    def payload(self) -> bytes:
        if self.dtype == "int4":
            return arith.pack_int4(np.atleast_2d(self.data)).tobytes()
        return np.ascontiguousarray(self.data, dtype=NP[self.dtype]).tobytes()

    def shape(self) -> tuple[int, int]:
        d = np.atleast_2d(self.data) if self.data.ndim == 2 else self.data.reshape(-1, 1)
        return int(d.shape[0]), int(d.shape[1])


def _mn(lin: QLinear) -> np.ndarray:
    return np.stack([lin.M, lin.n], axis=1).astype(np.int64)


def _linear(name: str, lin: QLinear) -> list[Tensor]:
    return [Tensor(name, "int4" if lin.bits == 4 else "int8", lin.w), Tensor(name + N.MN, "int32", _mn(lin))]


def _swiglu(prefix: str, s: QSwiGLU) -> list[Tensor]:
    return [*_linear(prefix + N.GU, s.gate_up), Tensor(prefix + N.SILU, "int8", s.silu),
            Tensor(prefix + N.PROD, "int32", np.array([s.prod_M, s.prod_n])), *_linear(prefix + N.DOWN, s.down)]


def _blocks(blocks: list[QBlock], network: str) -> list[Tensor]:
    out = []
    for l, b in enumerate(blocks):
        name = lambda suffix: N.block(l, suffix, network)
        if isinstance(b.mixer, QSwiGLU):
            out += _swiglu(name(N.MIX), b.mixer)
        else:
            a = b.mixer
            out += _linear(name(N.ATT_QKV), a.qkv)
            if a.rope_cos is not None:
                out += [Tensor(name(N.ATT_COS), "int16", a.rope_cos), Tensor(name(N.ATT_SIN), "int16", a.rope_sin)]
            out += [Tensor(name(N.ATT_SM), "int32", np.array([a.score_M, a.score_n, a.pv_M, a.pv_n])),
                    *_linear(name(N.ATT_OUT), a.out)]
        out += [Tensor(name(N.MIX_RES), "int32", np.array(b.mix_res)), *_swiglu(name(N.FFN), b.ffn),
                Tensor(name(N.FFN_RES), "int32", np.array(b.ffn_res))]
    return out


def tensors(m: IntModel) -> list[Tensor]:
    out = [Tensor(N.EMBED, "int8", m.embed), Tensor(N.Y_INIT, "int8", m.y_init), Tensor(N.Z_INIT, "int8", m.z_init)]
    if m.prefix:
        out.append(Tensor(N.PUZZLE_EMB, "int8", np.atleast_2d(m.puzzle_emb)))
    if m.pos_emb is not None:
        out.append(Tensor(N.POS_EMB, "int8", np.atleast_2d(m.pos_emb)))
    out += _blocks(m.blocks, "z") + _blocks(m.y_blocks, "y")
    out += [*_linear(N.HEAD, m.head), Tensor(N.HALT, "int8", m.halt_w)]
    return out


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def version_of(m: IntModel) -> int:
    """The format version a model is written as: 3 for learned positions (which a version 2 reader would
    not know to add), else 2, so that firmware built before version 3 keeps reading every other blob."""
    return 3 if m.pos_emb is not None else VERSION


def to_blob(m: IntModel, embeddings_to_ram: bool = False) -> bytes:
    c = m.config
    ts = tensors(m)
    version = version_of(m)
    size = VERSIONS[version]
    table_end = size + ENTRY.size * len(ts)
    offset = _align(table_end)
    entries, payloads = [], []
    for t in ts:
        data = t.payload()
        rows, cols = t.shape()
        name = t.name.encode("ascii")
        if len(name) > N.MAX_NAME:
            raise ValueError(f"tensor name {t.name!r} longer than {N.MAX_NAME} characters")
        entries.append(ENTRY.pack(name, DTYPE_CODE[t.dtype], 2 if t.data.ndim == 2 else 1, 0, rows, cols,
                                  offset, len(data)))
        payloads.append((offset, data))
        offset = _align(offset + len(data))
    total = offset
    bits = m.head.bits
    mix_inner = m.blocks[0].mixer.gate_up.w.shape[0] // 2 if isinstance(m.blocks[0].mixer, QSwiGLU) else 0
    ffn_inner = m.blocks[0].ffn.gate_up.w.shape[0] // 2
    flags = ((FLAG_EMBED_RAM if embeddings_to_ram else 0) | (FLAG_HALT_FIRST if m.halt_first else 0) |
             (FLAG_POS_LEARNED if m.pos_emb is not None else 0))
    header = HEADER.pack(MAGIC, version, size, total, 0,
                         c["vocab_size"], c["seq_len"], c["hidden"], c["layers"],
                         0 if c["mixer"] == "mlp" else 1, c["heads"], bits, mix_inner, ffn_inner,
                         c["T"], c["n"], c["steps"], flags, len(ts),
                         m.norm_const, m.halt_threshold, *m.z_in, *m.y_in, 0, m.carry_scale, 0)
    header += HEADER2.pack(m.prefix, len(m.y_blocks), m.puzzle_emb.shape[0] if m.prefix else 0,
                           m.seq_norm_const, bytes(8))
    buf = bytearray(total)
    buf[:size] = header
    buf[size:table_end] = b"".join(entries)
    for off, data in payloads:
        buf[off:off + len(data)] = data
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])) & 0xFFFFFFFF)
    return bytes(buf)


# the header fields after magic, version, header size, total size and CRC
HEADER_KEYS = ("vocab_size", "seq_len", "hidden", "layers", "mixer", "heads", "weight_bits", "mix_inner",
               "ffn_inner", "T", "n", "steps", "flags", "tensor_count", "norm_const", "halt_threshold",
               "z_in0", "z_in1", "z_in2", "y_in0", "y_in1", "reserved", "carry_scale", "reserved2")
HEADER2_KEYS = ("prefix", "y_layers", "puzzle_ids", "seq_norm_const", "reserved3")


def _fields(data: bytes, version: int) -> dict:
    """The header fields after magic, version, size, total and CRC; a version 1 header has the version 2
    fields at their meaning of "none" (no prefix, no y network, norms over channels)."""
    f = dict(zip(HEADER_KEYS, HEADER.unpack_from(data)[5:]))
    more = HEADER2.unpack_from(data, HEADER.size) if version >= 2 else (0, 0, 0, 0, bytes(8))
    return {**f, **dict(zip(HEADER2_KEYS, more))}


def table_offset(data: bytes) -> int:
    """Where a blob's tensor table starts: the size of its version's header."""
    return VERSIONS.get(struct.unpack_from("<H", data, 4)[0], HEADER.size)


def read_header(data: bytes) -> dict:
    """The header fields of a blob (model dimensions and constants), without validating the rest; use
    ``parse`` for that."""
    if len(data) < HEADER.size:
        raise BlobError("BLOB_TRUNCATED", f"{len(data)} bytes is shorter than the 64-byte header")
    f = HEADER.unpack_from(data)
    if f[0] != MAGIC:
        raise BlobError("BLOB_MAGIC", f"magic is {f[0]!r}, expected {MAGIC!r}: not a model blob")
    if f[1] not in VERSIONS or len(data) < VERSIONS[f[1]]:
        raise BlobError("BLOB_VERSION" if f[1] not in VERSIONS else "BLOB_TRUNCATED",
                        f"format version {f[1]}, this reader knows {', '.join(map(str, VERSIONS))}")
    return _fields(data, f[1])


def parse(data: bytes, max_size: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Validate a blob and return (header fields, tensors by name as arrays; int4 unpacked)."""
    if len(data) < HEADER.size:
        raise BlobError("BLOB_TRUNCATED", f"{len(data)} bytes is shorter than the 64-byte header")
    f = HEADER.unpack_from(data)
    magic, version, hsize, total, crc = f[:5]
    if magic != MAGIC:
        raise BlobError("BLOB_MAGIC", f"magic is {magic!r}, expected {MAGIC!r}: not a model blob")
    if version not in VERSIONS:
        raise BlobError("BLOB_VERSION", f"format version {version}, this reader knows "
                                        f"{' and '.join(map(str, VERSIONS))}: export the model again with this harness")
    if hsize != VERSIONS[version] or total > len(data) or total < hsize:
        raise BlobError("BLOB_TRUNCATED", f"header says {total} bytes ({hsize}-byte header), {len(data)} available")
    if max_size is not None and total > max_size:
        raise BlobError("BLOB_TOO_BIG", f"{total} bytes do not fit the {max_size}-byte blob region")
    if zlib.crc32(bytes(data[16:total])) & 0xFFFFFFFF != crc:
        raise BlobError("BLOB_CRC", "CRC-32 mismatch: the blob is corrupt")
    header = _fields(data, version)
    header["version"] = version
    found = {}
    for i in range(header["tensor_count"]):
        at = hsize + i * ENTRY.size
        if at + ENTRY.size > total:
            raise BlobError("BLOB_TABLE", "tensor table runs past the end of the blob")
        raw, code, ndim, _, rows, cols, off, size = ENTRY.unpack_from(data, at)
        name = raw.rstrip(b"\0").decode("ascii", "replace")
        if code not in DTYPES:
            raise BlobError("BLOB_TABLE", f"tensor {name!r} has unknown dtype {code}")
        dtype, width = DTYPES[code]
        want = rows * ((cols + 1) // 2) if dtype == "int4" else rows * cols * width
        if off % ALIGN or off + size > total or size != want:
            raise BlobError("BLOB_TABLE", f"tensor {name!r}: offset {off} size {size} (expected {want}) "
                                          f"is misaligned or outside the blob")
        raw_bytes = np.frombuffer(data, np.uint8, size, off)
        if dtype == "int4":
            arr = arith.unpack_int4(raw_bytes.reshape(rows, -1), cols)
        else:
            arr = raw_bytes.view(NP[dtype]).astype(np.int64).reshape(rows, cols)
        found[name] = arr if ndim == 2 else arr.reshape(-1)
    return header, found


def from_blob(data: bytes) -> IntModel:
    """Rebuild the integer model from a blob (validating it as the firmware does)."""
    h, t = parse(data)

    def need(name: str) -> np.ndarray:
        if name not in t:
            raise BlobError("BLOB_MISSING", f"tensor {name!r} is missing")
        return t[name]

    bits = h["weight_bits"]

    def lin(name: str, lo=arith.INT8_MIN, hi=arith.INT8_MAX) -> QLinear:
        mn = need(name + N.MN)
        w = need(name)
        return QLinear(w, bits, mn[:, 0], mn[:, 1], np.full(w.shape[0], np.nan), lo, hi)

    def swiglu(p: str) -> QSwiGLU:
        prod = need(p + N.PROD)
        return QSwiGLU(lin(p + N.GU), need(p + N.SILU), int(prod[0]), int(prod[1]), lin(p + N.DOWN))

    def network(layers: int, net: str) -> list[QBlock]:
        blocks = []
        for l in range(layers):
            name = lambda suffix: N.block(l, suffix, net)
            if h["mixer"] == 0:
                mixer = swiglu(name(N.MIX))
            else:
                qkv = lin(name(N.ATT_QKV))
                cos, sin = (None, None) if learned else (need(name(N.ATT_COS)), need(name(N.ATT_SIN)))
                sm = need(name(N.ATT_SM))
                mixer = QAttention(qkv, h["heads"], cos, sin, int(sm[0]), int(sm[1]), int(sm[2]), int(sm[3]),
                                   lin(name(N.ATT_OUT)))
            mr, fr = need(name(N.MIX_RES)), need(name(N.FFN_RES))
            blocks.append(QBlock(mixer, (int(mr[0]), int(mr[1])), swiglu(name(N.FFN)), (int(fr[0]), int(fr[1]))))
        return blocks

    learned = bool(h["flags"] & FLAG_POS_LEARNED)
    embed, y_init, z_init = need(N.EMBED), need(N.Y_INIT), need(N.Z_INIT)
    puzzle_emb = need(N.PUZZLE_EMB) if h["prefix"] else None
    pos_emb = need(N.POS_EMB) if learned else None
    blocks, y_blocks = network(h["layers"], "z"), network(h["y_layers"], "y")
    config = {"vocab_size": h["vocab_size"], "seq_len": h["seq_len"], "hidden": h["hidden"], "layers": h["layers"],
              "mixer": "mlp" if h["mixer"] == 0 else "attention", "heads": h["heads"],
              "T": h["T"], "n": h["n"], "steps": h["steps"], "puzzle_emb_len": h["prefix"],
              "arch": "hrm" if h["y_layers"] else "trm", "y_layers": h["y_layers"],
              "pos_encodings": "learned" if learned else "rope"}
    return IntModel(config=config, embed=embed, y_init=y_init, z_init=z_init,
                    z_in=(h["z_in0"], h["z_in1"], h["z_in2"]), y_in=(h["y_in0"], h["y_in1"]), blocks=blocks,
                    norm_const=h["norm_const"], head=lin(N.HEAD, arith.INT16_MIN, arith.INT16_MAX),
                    halt_w=need(N.HALT), halt_threshold=h["halt_threshold"],
                    scales={"norm": float(h["carry_scale"])}, prefix=h["prefix"], puzzle_emb=puzzle_emb,
                    y_blocks=y_blocks, halt_first=bool(h["flags"] & FLAG_HALT_FIRST),
                    seq_norm_const=h["seq_norm_const"], pos_emb=pos_emb)
