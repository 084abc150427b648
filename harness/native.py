"""The firmware's integer core (``firmware/core/``) built for the host and driven through ctypes.

``NativeModel(blob)`` parses a model blob with the C parser (``firmware/core/blob.c``) and runs
puzzles with the C interpreter (``firmware/core/trm.c``); ``run`` returns what
``harness.golden.model.IntModel.run`` returns, so the two can be compared bit for bit.

The shared library is compiled on demand with the system C compiler (``$CC``, default ``gcc``) into
``build/native/<variant>-<hash>/`` under the repository (``$HARNESS_NATIVE_CACHE`` overrides the
folder); the hash covers the C sources, the flags and the compiler version, so any change rebuilds.
Variants: ``release`` (``-O2``), ``sanitize`` (AddressSanitizer + UBSan, for the driver executable
``trm_check``; loading a sanitized library into Python would need ``LD_PRELOAD`` of libasan),
``sanitize32`` (the same for 32 bits, ``-m32``: a 32-bit ``size_t`` as on the boards; needs
gcc-multilib) and ``hook`` (release ``trm_check`` with a strong ``trm_cycle_hook`` of its own, as a
port may define).

``NativeServer(blob)`` is the firmware's protocol server (``firmware/core/server.c``) in this process,
one C handle each (``trm_host_server_open``): any number at a time, on any threads.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from .export.blob import BlobError

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
CORE = FIRMWARE / "core"
HOST = FIRMWARE / "host"

WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wshadow", "-Wvla", "-Wconversion",
        "-Wsign-conversion", "-Wcast-align=strict", "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wundef"]
FLAGS = {
    "release": ["-O2", "-fvect-cost-model=dynamic", *WARN],
    "sanitize": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                 "-fno-sanitize-recover=all", *WARN],
}
FLAGS["sanitize32"] = [*FLAGS["sanitize"], "-m32"]
FLAGS["hook"] = [*FLAGS["release"], "-DTRM_CHECK_STRONG_HOOK"]
# the C side's TRM_HOST_ABI_VERSION (firmware/host/trm_host.h): 2 = one opaque handle per server
ABI_VERSION = 3
LIBRARY = "libtrm_host.so"
CHECK = "trm_check"

# trm_status (firmware/core/trm_common.h); 1..7 are harness.export.blob.BlobError codes
STATUS = {0: "TRM_OK", 1: "BLOB_TRUNCATED", 2: "BLOB_MAGIC", 3: "BLOB_VERSION", 4: "BLOB_TOO_BIG",
          5: "BLOB_CRC", 6: "BLOB_TABLE", 7: "BLOB_MISSING", 8: "BLOB_SHAPE", 9: "TRM_ERR_ARG",
          10: "TRM_ERR_WORKSPACE"}
INFO_KEYS = ("vocab_size", "seq_len", "hidden", "layers", "mixer", "heads", "weight_bits", "T", "n",
             "steps", "flags", "halt_threshold", "norm_const", "mix_inner", "ffn_inner", "head_bits",
             "prefix", "y_layers", "carry_len", "puzzle_ids")


class NativeError(RuntimeError):
    """The C core returned an error status (``status``: the number, ``code``: its name)."""

    def __init__(self, status: int, what: str):
        self.status = status
        self.code = STATUS.get(status, f"TRM_STATUS_{status}")
        super().__init__(f"{self.code}: {what}")


class NativeBlobError(BlobError):
    """The C parser rejected a blob; ``code`` is the same string as the Python reader's BlobError
    (plus ``BLOB_SHAPE`` and ``TRM_ERR_ARG``, which only the firmware reports), ``status`` the number."""

    def __init__(self, status: int):
        self.status = status
        super().__init__(STATUS.get(status, f"TRM_STATUS_{status}"), f"firmware blob parser status {status}")


# --- building ---------------------------------------------------------------------------------------

def sources() -> list[Path]:
    return sorted(CORE.glob("*.c"))


def _hashed_files() -> list[Path]:
    return sorted([*CORE.glob("*.c"), *CORE.glob("*.h"), *HOST.glob("*.c"), *HOST.glob("*.h")])


@functools.lru_cache(maxsize=None)
def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"no working C compiler {cc!r} to build the firmware core: {e}") from e
    return out.splitlines()[0] if out else cc


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_NATIVE_CACHE", REPO / "build" / "native"))


def build(target: str = LIBRARY, variant: str = "release", force: bool = False) -> Path:
    """Compile ``libtrm_host.so`` or the ``trm_check`` driver (``target``) in a variant; returns its path.

    Cached by a hash of the sources, flags and compiler; the output appears atomically, so concurrent
    builds are safe."""
    if target not in (LIBRARY, CHECK) or variant not in FLAGS:
        raise ValueError(f"unknown target/variant {target!r}/{variant!r}")
    cc = os.environ.get("CC", "gcc")
    flags = FLAGS[variant] + (["-fPIC", "-shared"] if target == LIBRARY else [])
    mains = [HOST / "trm_host.c"] if target == LIBRARY else [HOST / "trm_check.c", HOST / "trm_host.c"]
    h = hashlib.sha256()
    for part in (cc, _compiler_id(cc), target, *flags):
        h.update(part.encode() + b"\0")
    for f in _hashed_files():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    out_dir = cache_dir() / f"{variant}-{h.hexdigest()[:16]}"
    out = out_dir / target
    if out.exists() and not force:
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target + ".", suffix=".tmp", dir=out_dir)
    os.close(fd)
    cmd = [cc, *flags, "-o", tmp, *map(str, sources()), *map(str, mains)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"building the firmware core failed:\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    return out


@functools.lru_cache(maxsize=None)
def sanitizer_available(cc: str | None = None, variant: str = "sanitize") -> tuple[bool, str]:
    """Whether ``cc`` can link and run an ASan+UBSan program here in ``variant`` (``sanitize`` or
    ``sanitize32``), and why not."""
    cc = cc or os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        return False, f"no C compiler {cc!r}"
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "t.c", Path(d) / "t"
        src.write_text("#include <string.h>\nint main(void) { return (int)strlen(\"\"); }\n")
        p = subprocess.run([cc, *FLAGS[variant], "-o", str(exe), str(src)], capture_output=True, text=True)
        if p.returncode != 0:
            extra = (" (for -m32 install the 32-bit runtime: `apt-get install -y gcc-multilib libc6-dev-i386`)"
                     if "-m32" in FLAGS[variant] else "")
            return False, f"{cc} cannot link {' '.join(FLAGS[variant][:5])}{extra}: {p.stderr.strip()[:300]}"
        r = subprocess.run([str(exe)], capture_output=True, text=True,
                           env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
        if r.returncode != 0:
            return False, f"sanitized programs do not run here: {r.stderr.strip()[:300]}"
    return True, ""


# --- the library ------------------------------------------------------------------------------------

_P = ctypes.c_void_p
_SZ = ctypes.c_size_t


@functools.lru_cache(maxsize=None)
def library(path: str | None = None) -> ctypes.CDLL:
    """Load (building if needed) the release library; the same handle on every call."""
    lib = ctypes.CDLL(str(path or build()))
    lib.trm_host_abi_version.restype = ctypes.c_int
    lib.trm_host_model_bytes.restype = _SZ
    lib.trm_host_parse.argtypes = [_P, _SZ, _SZ, _P]
    lib.trm_host_parse.restype = ctypes.c_int
    lib.trm_host_model_info.argtypes = [_P, _P]
    lib.trm_host_model_info.restype = None
    lib.trm_workspace_bytes.argtypes = [_P]
    lib.trm_workspace_bytes.restype = _SZ
    lib.trm_host_run_batch.argtypes = [_P, _P, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int, _P, _SZ, _P, _P, _P, _P]
    lib.trm_host_run_batch.restype = ctypes.c_int
    version = lib.trm_host_abi_version()
    if version != ABI_VERSION:
        where = Path(path or build())
        raise RuntimeError(
            f"{where} has ABI version {version}, this harness needs {ABI_VERSION}: a stale build of "
            f"firmware/host/trm_host.c. Delete it (rm -r {where.parent}) and run again: the library is rebuilt "
            f"from the sources on first use (or now: python -c 'from harness import native; native.build(force=True)')")
    lib.trm_host_server_open.argtypes = [_P, _SZ, _SZ, _SZ, _SZ, ctypes.POINTER(ctypes.c_int)]
    lib.trm_host_server_open.restype = _P
    lib.trm_host_server_feed.argtypes = [_P, _P, _SZ, _P, _SZ]
    lib.trm_host_server_feed.restype = _SZ
    lib.trm_host_server_close.argtypes = [_P]
    lib.trm_host_server_close.restype = None
    lib.trm_status_name.argtypes = [ctypes.c_int]
    lib.trm_status_name.restype = ctypes.c_char_p
    return lib


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class NativeModel:
    """A model blob parsed by the firmware's C parser, run by its C interpreter.

    ``NativeModel(blob, max_size=None)`` raises ``NativeBlobError`` (a ``BlobError`` whose ``code`` is
    the firmware's: BLOB_TRUNCATED, BLOB_MAGIC, BLOB_VERSION, BLOB_TOO_BIG, BLOB_CRC, BLOB_TABLE,
    BLOB_MISSING, BLOB_SHAPE) for a blob it rejects."""

    def __init__(self, blob: bytes, max_size: int | None = None, lib: ctypes.CDLL | None = None):
        self.lib = lib or library()
        data = bytes(blob)
        # the parsed model points into this buffer: malloc'ed, so aligned as the parser requires
        self._blob = ctypes.create_string_buffer(data, max(len(data), 1))
        self._model = ctypes.create_string_buffer(self.lib.trm_host_model_bytes())
        st = self.lib.trm_host_parse(self._blob, len(data), max_size or 0, self._model)
        if st != 0:
            raise NativeBlobError(st)
        info = np.zeros(len(INFO_KEYS), np.int64)
        self.lib.trm_host_model_info(self._model, info.ctypes.data)
        self.info = dict(zip(INFO_KEYS, (int(v) for v in info)))
        self.workspace_bytes = int(self.lib.trm_workspace_bytes(self._model))
        self._ws = ctypes.create_string_buffer(max(self.workspace_bytes, 1))

    @property
    def config(self) -> dict:
        i = self.info
        return {"vocab_size": i["vocab_size"], "seq_len": i["seq_len"], "hidden": i["hidden"],
                "layers": i["layers"], "mixer": "mlp" if i["mixer"] == 0 else "attention",
                "heads": i["heads"], "T": i["T"], "n": i["n"], "steps": i["steps"]}

    @property
    def halt_threshold(self) -> int:
        return self.info["halt_threshold"]

    def run(self, tokens: np.ndarray, T: int | None = None, n: int | None = None, steps: int | None = None,
            halting: bool = False, keep_carries: bool = True,
            puzzle_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """As ``IntModel.run``: per_step [S, B, L] int64 predictions, halt_acc [S, B] int64, halt [S, B]
        bool and (``keep_carries``) y, z int8 [S, T, B, R, D] (R = prefix + L rows). T, n and steps
        default to the blob's; ``puzzle_ids`` [B] to 0.

        With ``halting`` a puzzle stops after its first halting step; the entries of the steps it did
        not run repeat its last step (its state is frozen), and ``steps`` [B] says how many ran."""
        T = self.info["T"] if T is None else int(T)
        n = self.info["n"] if n is None else int(n)
        S = self.info["steps"] if steps is None else int(steps)
        if T < 0 or n < 0 or S < 0:
            raise ValueError("T, n and steps must be >= 0")
        tok = np.asarray(tokens)
        L, D, V = self.info["seq_len"], self.info["hidden"], self.info["vocab_size"]
        if tok.ndim != 2 or tok.shape[1] != L:
            raise ValueError(f"tokens must be [B, {L}], got {tok.shape}")
        if tok.size and (tok.min() < 0 or tok.max() >= V):
            raise ValueError(f"tokens must lie in [0, {V})")
        tok = np.ascontiguousarray(tok, dtype=np.uint8)
        B = tok.shape[0]
        pred = np.zeros((B, S, L), np.uint8)
        acc = np.zeros((B, S), np.int64)
        ran = np.zeros(B, np.int32)
        R = self.info["carry_len"]
        car = np.zeros((B, S, T, 2, R, D), np.int8) if keep_carries else None
        ids = None if puzzle_ids is None else np.ascontiguousarray(puzzle_ids, dtype=np.int32)
        if ids is not None and ids.shape != (B,):
            raise ValueError(f"puzzle_ids must be [{B}], got {ids.shape}")
        st = self.lib.trm_host_run_batch(self._model, _ptr(tok), _ptr(ids), B, T, n, S, int(bool(halting)), self._ws,
                                         self.workspace_bytes, _ptr(pred), _ptr(acc), _ptr(ran), _ptr(car))
        if st != 0:
            raise NativeError(st, "trm_run failed")
        if halting:
            for b in np.nonzero(ran < S)[0]:
                last = int(ran[b]) - 1
                if last < 0:
                    continue
                pred[b, last + 1:] = pred[b, last]
                acc[b, last + 1:] = acc[b, last]
                if car is not None:
                    car[b, last + 1:] = car[b, last]
        out = {"per_step": pred.transpose(1, 0, 2).astype(np.int64), "halt_acc": acc.T.copy()}
        out["halt"] = out["halt_acc"] > self.halt_threshold
        if car is not None:
            c = car.transpose(3, 1, 2, 0, 4, 5)            # [2, S, T, B, L, D]
            out["y"], out["z"] = np.ascontiguousarray(c[0]), np.ascontiguousarray(c[1])
        if halting:
            out["steps"] = ran.astype(np.int64)
        return out


def status_name(status: int) -> str:
    return library().trm_status_name(status).decode()


class NativeServer:
    """The firmware's protocol server (``firmware/core/server.c``) running in this process: wire bytes
    in, wire bytes out, exactly what a board's UART would carry. Each one is its own C server (an
    opaque handle owning its receive and transmit buffers and its arena), so any number can be open at
    once and used from different threads; ``close()`` (or the end of a ``with`` block) frees it.

    ``region``, ``arena_capacity``, ``rx_bytes`` and ``tx_bytes`` mirror a target's blob region and
    buffers (``targets/*.toml``); ``blob_status`` is the blob's TRM_BLOB_* status as INFO reports it."""

    REGION = 4 << 20
    ARENA_MAX = 1 << 28          # TRM_HOST_ARENA_MAX (firmware/host/trm_host.h)

    def __init__(self, blob: bytes, region: int | None = None, arena_capacity: int = 1 << 16,
                 rx_bytes: int = 1024, tx_bytes: int = 16384, lib: ctypes.CDLL | None = None):
        self.lib = lib or library()
        self._lock = threading.Lock()
        self._h = None
        region = region or self.REGION
        if not 8 <= arena_capacity <= self.ARENA_MAX:
            raise ValueError(f"arena_capacity {arena_capacity} outside [8, {self.ARENA_MAX}] (TRM_HOST_ARENA_MAX)")
        # the blob region as on a board: the blob, then erased flash (0xFF) up to the region size; the
        # C server points into it, so it lives as long as this object
        data = bytes(blob)[:region]
        self._mem = np.full(max(region, 16), 0xFF, dtype=np.uint8)
        self._mem[:len(data)] = np.frombuffer(data, dtype=np.uint8)
        status = ctypes.c_int(-1)
        h = self.lib.trm_host_server_open(self._mem.ctypes.data, max(region, 16), arena_capacity, rx_bytes,
                                          tx_bytes, ctypes.byref(status))
        if not h:
            raise RuntimeError(f"trm_host_server_open refused region {region}, arena {arena_capacity}, rx {rx_bytes}, "
                               f"tx {tx_bytes} bytes (rx >= 16, tx >= 64, each <= 16 MiB) or ran out of memory")
        self._h = h
        self.blob_status = status.value
        self.tx_bytes = tx_bytes

    def feed(self, wire: bytes) -> bytes:
        src = np.frombuffer(bytes(wire), dtype=np.uint8) if wire else np.zeros(1, np.uint8)
        # room for two of the largest responses, COBS-encoded (one byte in 254 more, the delimiter)
        cap = max(1 << 16, 2 * (self.tx_bytes + self.tx_bytes // 254 + 2))
        out = np.empty(cap, dtype=np.uint8)
        with self._lock:
            if self._h is None:
                raise RuntimeError("NativeServer is closed")
            n = self.lib.trm_host_server_feed(self._h, src.ctypes.data, len(wire), out.ctypes.data, cap)
        if n == ctypes.c_size_t(-1).value:
            raise RuntimeError(f"responses larger than the host buffer ({cap} bytes): feed fewer frames at a time")
        return out[:n].tobytes()

    def close(self) -> None:
        with self._lock:
            h, self._h = self._h, None
        if h:
            self.lib.trm_host_server_close(h)

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "NativeServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
