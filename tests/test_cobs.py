"""The board protocol's COBS: the host's (``harness.boards.protocol``, the ``cobs`` package) and the
firmware's C codec (``trm_cobs_write`` / ``trm_cobs_decode`` in firmware/core/protocol.c, called in the
host build of the core) give the same bytes, for encodings and for decodings of valid and invalid input."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from cobs import cobs

from harness.boards import protocol as P

PUT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)


@pytest.fixture(scope="module")
def c_codec():
    from harness.native import build
    lib = ctypes.CDLL(str(build()))
    lib.trm_cobs_write.argtypes = [ctypes.c_char_p, ctypes.c_size_t, PUT, ctypes.c_void_p]
    lib.trm_cobs_write.restype = ctypes.c_size_t
    lib.trm_cobs_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    lib.trm_cobs_decode.restype = ctypes.c_long

    def encode(data: bytes) -> bytes:
        out = bytearray()
        put = PUT(lambda ctx, p, n: out.extend(ctypes.string_at(p, n)))
        written = lib.trm_cobs_write(data, len(data), put, None)
        assert written == len(out) and out[-1:] == b"\x00"
        return bytes(out[:-1])                      # without the delimiter, as cobs.encode

    def decode(wire: bytes) -> bytes | None:
        buf = ctypes.create_string_buffer(max(len(wire), 1))
        n = lib.trm_cobs_decode(wire, len(wire), buf)
        return None if n < 0 else buf.raw[:n]

    return encode, decode


def _inputs():
    """Random strings of every length 0..600 at three zero densities, and runs of non-zero bytes of
    253..256 and 508..510 (the 254-byte block boundary) alone, between zeros and at either end."""
    rng = np.random.default_rng(11)
    for n in range(601):
        for zeros in (0.0, 0.01, 0.3):
            yield bytes(np.where(rng.random(n) < zeros, 0, rng.integers(1, 256, n)).astype(np.uint8))
    for run in (253, 254, 255, 256, 508, 509, 510):
        r = bytes(rng.integers(1, 256, run).astype(np.uint8))
        yield from (r, b"\x00" + r, r + b"\x00", b"\x00" + r + b"\x00", r + b"\x00" + r, b"\x00\x00" + r + b"\x00\x00")


def test_c_codec_and_cobs_package_encode_alike_and_decode_back(c_codec):
    c_encode, c_decode = c_codec
    count = 0
    for data in _inputs():
        enc = cobs.encode(data)
        assert c_encode(data) == enc, f"encodings differ for {len(data)} bytes"
        assert P.cobs_encode(data) == enc
        assert c_decode(enc) == data == cobs.decode(enc) == P.cobs_decode(enc)
        count += 1
    assert count == 601 * 3 + 7 * 6


def test_c_codec_and_cobs_package_agree_on_arbitrary_input(c_codec):
    """Random and mutated encodings, many of them invalid: the C decoder rejects exactly what the
    package rejects (the host raises ProtocolError there) and otherwise gives the same bytes."""
    _, c_decode = c_codec
    rng = np.random.default_rng(12)
    rejected = accepted = 0
    for i in range(3000):
        n = int(rng.integers(0, 600))
        if i % 2:
            wire = bytes(rng.integers(0, 256, n).astype(np.uint8))
            wire = bytes(b or 1 for b in wire) if i % 4 == 1 else wire     # half of them without zeros
        else:                                                               # a valid encoding, mutated
            data = bytes(np.where(rng.random(n) < 0.05, 0, rng.integers(1, 256, n)).astype(np.uint8))
            wire = bytearray(cobs.encode(data))
            for _ in range(int(rng.integers(0, 3))):
                wire[int(rng.integers(0, len(wire)))] = int(rng.integers(0, 256))
            if rng.random() < 0.3 and len(wire) > 1:
                wire = wire[:int(rng.integers(1, len(wire)))]
            wire = bytes(wire)
        try:
            want = cobs.decode(wire)
        except cobs.DecodeError:
            want = None
        assert c_decode(wire) == want, wire.hex()
        if want is None:
            rejected += 1
            with pytest.raises(P.ProtocolError):
                P.cobs_decode(wire)
        else:
            accepted += 1
            assert P.cobs_decode(wire) == want
    assert rejected > 500 and accepted > 500, (rejected, accepted)
