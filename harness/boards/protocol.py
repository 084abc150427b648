"""Host side of the board protocol (docs/protocol.md): COBS framing, CRC, request and response layouts.

The firmware's side is ``firmware/core/protocol.c`` and ``server.c``; a frame is
``version u8 | type u8 | seq u16 | payload | crc32 u32`` (little-endian), COBS-encoded and ended by 0x00.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from cobs import cobs as _cobs

from .. import profile as PR
from .errors import BoardFault, BoardGarbage

VERSION = 1
PING, INFO, RUN, RELOAD, BENCH = 0x01, 0x02, 0x03, 0x04, 0x05
PONG, INFO_RSP, RESULT, BENCH_RSP, ERROR = 0x81, 0x82, 0x83, 0x85, 0xFF
RUN_HALTING, RUN_CARRIES, RUN_EMBED_RAM, RUN_PROFILE = 1, 2, 4, 8
ERRORS = {1: "COBS", 2: "TRUNCATED", 3: "CRC", 4: "VERSION", 5: "OVERSIZE", 6: "COMMAND", 7: "ARGS",
          8: "PUZZLE", 9: "BLOB", 10: "RUN", 11: "RESPONSE", 12: "FAULT"}
UNITS = {0: "none", 1: "cycles", 2: "systick", 3: "ns"}
PATHS = {0: "portable", 1: "dsp", 2: "mve"}   # BENCH: the linear kernels' implementation
BLOB_STATUS = {0: "ok", 1: "BLOB_TRUNCATED", 2: "BLOB_MAGIC", 3: "BLOB_VERSION", 4: "BLOB_TOO_BIG", 5: "BLOB_CRC",
               6: "BLOB_TABLE", 7: "BLOB_MISSING", 8: "BLOB_SHAPE", 9: "TRM_ERR_ARG", 10: "TRM_ERR_WORKSPACE"}


class ProtocolError(BoardGarbage):
    """A frame the host cannot read (bad COBS or CRC, wrong version, unexpected type)."""


class BoardError(RuntimeError):
    """The firmware answered with an ERROR frame: it refused the request (``parse_error`` gives the
    subclasses below for the codes that mean a sick link or board)."""

    def __init__(self, code: int, detail: int, message: str):
        self.code, self.detail = code, detail
        self.name = ERRORS.get(code, f"ERROR_{code}")
        super().__init__(f"{self.name} ({detail}): {message}")


# --- COBS ---------------------------------------------------------------------------------------------

def cobs_encode(data: bytes) -> bytes:
    """COBS without the delimiter (the ``cobs`` package): blocks of up to 254 non-zero bytes, each led by
    its length + 1; a block shorter than 254 stands for a zero after it (except at the very end). The
    firmware's ``trm_cobs_write`` gives the same bytes (tests/test_cobs.py)."""
    return _cobs.encode(bytes(data))


def cobs_decode(data: bytes) -> bytes:
    """The bytes a COBS encoding (without the delimiter) stands for; ``ProtocolError`` when it is not
    one (a zero byte, or a block running past the end)."""
    try:
        return _cobs.decode(bytes(data))
    except _cobs.DecodeError as e:
        raise ProtocolError(f"bad COBS: {e}") from None


def frame(kind: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """The wire bytes of a request: COBS(header + payload + CRC) + 0x00."""
    body = struct.pack("<BBH", version, kind, seq & 0xFFFF) + payload
    return cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


def unframe(wire: bytes) -> tuple[int, int, bytes]:
    """(type, seq, payload) of one received frame (without its 0x00)."""
    body = cobs_decode(wire)
    if len(body) < 8:
        raise ProtocolError(f"frame of {len(body)} bytes is shorter than header + CRC")
    if zlib.crc32(body[:-4]) != struct.unpack("<I", body[-4:])[0]:
        raise ProtocolError("CRC mismatch in a frame from the board")
    version, kind, seq = struct.unpack("<BBH", body[:4])
    if version != VERSION:
        raise ProtocolError(f"board speaks protocol version {version}, the host {VERSION}")
    return kind, seq, body[4:-4]


# --- messages -------------------------------------------------------------------------------------------

def run_payload(tokens: np.ndarray, T: int, n: int, steps: int, halting: bool = False, carries: bool = False,
                embed_ram: bool = False, profile: bool = False, puzzle_id: int | None = None) -> bytes:
    """RUN's payload; ``puzzle_id`` (the row of a prefix model's puzzle-embedding table) is sent only when
    given (the board takes 0 without it)."""
    tokens = np.asarray(tokens, dtype=np.uint8)
    flags = ((RUN_HALTING if halting else 0) | (RUN_CARRIES if carries else 0) | (RUN_EMBED_RAM if embed_ram else 0)
             | (RUN_PROFILE if profile else 0))
    tail = b"" if puzzle_id is None else struct.pack("<H", puzzle_id)
    return struct.pack("<BBBBH", T, n, steps, flags, len(tokens)) + tokens.tobytes() + tail


@dataclass
class Info:
    blob_status: str
    counter_unit: str
    mixer: str
    layers: int
    core_hz: int
    counter_hz: int
    blob_size: int
    blob_crc: int
    blob_region: int
    arena_capacity: int              # the arena the firmware reserves
    workspace_bytes: int
    vocab: int
    seq_len: int
    hidden: int
    weight_bits: int
    max_steps: int
    target: str
    build_id: str
    firmware: str
    default_depth: tuple[int, int, int]


def parse_info(p: bytes) -> Info:
    (status, unit, mixer, layers, core_hz, counter_hz, blob_size, blob_crc, region, arena, ws, vocab, L, D, bits,
     max_steps) = struct.unpack_from("<BBBBIIIIIIIHHHBB", p)
    off, strings = 40, []
    for _ in range(3):
        n = p[off]
        strings.append(p[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return Info(BLOB_STATUS.get(status, str(status)), UNITS.get(unit, str(unit)), ("mlp", "attention")[mixer] if mixer < 2 else str(mixer),
                layers, core_hz, counter_hz, blob_size, blob_crc, region, arena, ws, vocab, L, D, bits, max_steps,
                *strings, tuple(p[off:off + 3]))


@dataclass
class Result:
    steps_run: int
    flags: int
    counter: int
    counter_unit: str
    counter_hz: int
    stack_bytes: int
    arena_bytes: int
    flash_bytes_read: int            # bytes the run read from the blob in flash
    halt_acc: np.ndarray             # [steps_run] int64
    per_step: np.ndarray             # [steps_run, L] predictions after every step
    y: np.ndarray | None = None      # final carries [L, D] int8 (RUN_CARRIES)
    z: np.ndarray | None = None
    profile: list[tuple[int, int]] | None = None   # (calls, counts) per harness.profile.OPS (RUN_PROFILE)

    @property
    def prediction(self) -> np.ndarray:
        return self.per_step[-1]


def parse_result(p: bytes, hidden: int) -> Result:
    steps, flags, L, unit = struct.unpack_from("<BBHB", p)
    counter_hz, counter, stack, arena, flash = struct.unpack_from("<IQIIQ", p, 8)
    off = 36
    halt = np.frombuffer(p, dtype="<i8", count=steps, offset=off).astype(np.int64)
    off += 8 * steps
    per_step = np.frombuffer(p, dtype=np.uint8, count=steps * L, offset=off).reshape(steps, L).astype(np.int64)
    off += steps * L
    y = z = None
    if flags & RUN_CARRIES:
        # the carries have R rows (the prefix, then the L sequence rows): what the payload leaves for them
        rest = len(p) - off - (PR.section_bytes() if flags & RUN_PROFILE else 0)
        R = max(rest, 0) // (2 * hidden)
        LD = R * hidden
        y = np.frombuffer(p, dtype=np.int8, count=LD, offset=off).reshape(R, hidden).copy()
        z = np.frombuffer(p, dtype=np.int8, count=LD, offset=off + LD).reshape(R, hidden).copy()
        off += 2 * LD
    profile = None
    if flags & RUN_PROFILE:
        if off + PR.section_bytes() > len(p):
            raise ProtocolError(f"RESULT payload has {len(p)} bytes, too few for its profile of {len(PR.OPS)} operations")
        profile = PR.parse(p, off)
        off += PR.section_bytes()
    if off != len(p):
        raise ProtocolError(f"RESULT payload has {len(p)} bytes, its fields {off}")
    return Result(steps, flags, counter, UNITS.get(unit, str(unit)), counter_hz, stack, arena, flash, halt, per_step, y, z,
                  profile)


class LinkError(BoardError, BoardGarbage):
    """The firmware received a garbled request (COBS, TRUNCATED, CRC, OVERSIZE): noise on the link."""


class FaultError(BoardError, BoardFault):
    """The firmware took a hard fault (FAULT, with the PC) and reset itself."""


LINK_ERRORS = {1, 2, 3, 5}     # COBS, TRUNCATED, CRC, OVERSIZE
RUN_REFUSED, WORKSPACE = 10, 10  # ERROR RUN with detail TRM_ERR_WORKSPACE: the run needs more arena than there is
FAULT = 12


def parse_error(p: bytes) -> BoardError:
    if len(p) < 2:
        raise ProtocolError(f"ERROR payload of {len(p)} bytes, at least 2 expected")
    cls = LinkError if p[0] in LINK_ERRORS else FaultError if p[0] == FAULT else BoardError
    return cls(p[0], p[1], p[2:].decode("ascii", "replace"))


# --- BENCH: one linear layer on a generated matrix -------------------------------------------------------

def bench_payload(rows: int, cols: int, bits: int, reps: int = 1, vectors: int = 1) -> bytes:
    """vectors 2: the two-vector kernel (trm_linear_pair); 1 sends the 7-byte request of old."""
    head = struct.pack("<HHBH", rows, cols, bits, reps)
    return head if vectors == 1 else head + bytes([vectors])


@dataclass
class Bench:
    rows: int
    cols: int
    bits: int
    path: str            # "portable", "dsp" or "mve": what the firmware's linear kernels compiled to
    reps: int
    counter_unit: str
    counter_hz: int
    counter: int         # counter delta over the `reps` calls of trm_linear
    checksum: int        # CRC-32 of the int8 outputs (the last repetition; both vectors' in order)
    vectors: int = 1     # 2: the two-vector kernel, trm_linear_pair
    # instructions per count on the board that answered (figures.instructions_per_count: an emulator's
    # SysTick); Board.bench sets it, None where the count is no instruction count
    instructions_per_count: float | None = None

    @property
    def macs(self) -> int:
        return self.rows * self.cols * self.reps * self.vectors

    @property
    def instructions(self) -> float | None:
        """Instructions over the reps on an emulated board; None for other counters."""
        return None if self.instructions_per_count is None else self.counter * self.instructions_per_count

    @property
    def instructions_per_mac(self) -> float | None:
        n = self.instructions
        return None if n is None else n / self.macs


def parse_bench(p: bytes) -> Bench:
    if len(p) != 28:
        raise ProtocolError(f"BENCH_RESULT payload has {len(p)} bytes, 28 expected")
    rows, cols, bits, path, reps, unit, vectors = struct.unpack_from("<HHBBHBB", p)
    counter_hz, counter, checksum = struct.unpack_from("<IQI", p, 12)
    return Bench(rows, cols, bits, PATHS.get(path, str(path)), reps, UNITS.get(unit, str(unit)), counter_hz,
                 counter, checksum, vectors or 1)


def bench_reference(rows: int, cols: int, bits: int, vectors: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The BENCH pattern as the firmware makes it (server.c): (w [rows, cols] values, x [cols] (with
    ``vectors`` 2: [2, cols], the second drawn after the first), M [rows], n [rows]), all int64, for
    checking a BENCH checksum against the golden linear layer (with two vectors the checksum covers
    both outputs, the first's then the second's)."""
    state = 0x2545F491

    def draw(count: int) -> np.ndarray:
        nonlocal state
        out = np.empty(count, np.int64)
        v = state
        for i in range(count):
            v ^= (v << 13) & 0xFFFFFFFF
            v ^= v >> 17
            v ^= (v << 5) & 0xFFFFFFFF
            out[i] = v
        state = v
        return out

    mn = draw(2 * rows).reshape(rows, 2)
    M = 0x40000000 | (mn[:, 0] & 0x3FFFFFFF)
    n = 32 + mn[:, 1] % 16
    r = draw(rows * cols).reshape(rows, cols)
    w = r % 255 - 127 if bits == 8 else r % 15 - 7
    x = (draw(vectors * cols) >> 24) - 128
    if vectors == 2:
        x = x.reshape(2, cols)
    return w, x, M, n


def bench_checksum(outputs: np.ndarray) -> int:
    """The BENCH checksum of int8 outputs: CRC-32 of their bytes."""
    return zlib.crc32(np.asarray(outputs, np.int8).tobytes())
