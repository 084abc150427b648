"""The board interface and the protocol session shared by all backends.

A ``Board`` is context-managed: ``start()`` brings it up with a firmware and a blob, ``info()``,
``run()``, ``bench()`` and ``ping()`` talk the protocol, ``close()`` stops it. Every wait has a
timeout; what the board's process printed goes to a log file per board, named in every error.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol as P
from ..targets import Target


class BoardTimeout(TimeoutError):
    pass


def check_blob_fits(target: Target, blob: bytes | None) -> None:
    """A blob larger than the target's blob region cannot be placed: say so before starting a board."""
    if blob is not None and len(blob) > target.blob.size:
        raise ValueError(f"blob of {len(blob)} bytes does not fit {target.name}'s blob region "
                         f"of {target.blob.size} bytes")


class Session:
    """Requests and responses over a byte stream: a socket, or anything with its ``sendall``, ``recv``
    (raising ``socket.timeout``, i.e. TimeoutError, when nothing came in time) and ``settimeout``
    (``serial.SerialStream`` for a serial port, ``host._Loopback`` for the host build)."""

    def __init__(self, sock, describe: str = "board"):
        self.sock = sock
        self.describe = describe
        self.seq = 0
        self.buffer = bytearray()
        self.garbage = 0          # bytes that did not form a valid frame

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self, timeout: float) -> bytes:
        """The next delimited frame's raw bytes (without the 0x00)."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buffer.find(0)
            if i >= 0:
                wire = bytes(self.buffer[:i])
                del self.buffer[:i + 1]
                if wire:
                    return wire
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardTimeout(f"{self.describe}: no answer within {timeout:.1f} s "
                                   f"({len(self.buffer)} bytes of a partial frame received)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError(f"{self.describe}: the connection closed")
            self.buffer += chunk

    def request(self, kind: int, payload: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
        """Send one request and return (type, payload) of its response; ERROR frames raise BoardError."""
        self.seq = (self.seq + 1) & 0xFFFF
        # the leading 0x00 ends any partial frame left in the firmware's receive buffer
        self.send_raw(b"\x00" + P.frame(kind, self.seq, payload))
        while True:
            kind_back, seq, body = P.unframe(self.read_frame(timeout))
            if kind_back == P.ERROR:
                if seq in (self.seq, 0):
                    raise P.parse_error(body)
                continue
            if seq != self.seq:
                continue      # a stale answer to an earlier (timed-out) request
            return kind_back, body


@dataclass
class RunRequest:
    tokens: np.ndarray
    T: int
    n: int
    steps: int
    halting: bool = False
    carries: bool = False
    embed_ram: bool = False


def stop_process(proc: subprocess.Popen | None, ask=None, grace: float = 5.0) -> None:
    """Stop a board's emulator process: ``ask()`` it to quit when given, then SIGTERM (with SIGCONT, so a
    stopped process, e.g. a wedged board under test, acts on it), then SIGKILL, ``grace`` s apart."""
    if proc is None or proc.poll() is not None:
        return
    steps = ([ask] if ask else []) + [lambda: (proc.terminate(), proc.send_signal(signal.SIGCONT))]
    for step in steps:
        step()
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


class Board:
    """Base of the backends. Subclasses implement ``start``/``close`` and set ``self.session``."""
    backend = "?"

    def __init__(self, target: Target, board_id: str | None = None):
        self.target = target
        self.id = board_id or f"{self.backend}-{target.name}"
        self.session: Session | None = None
        self._info: P.Info | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Bring the board back to a known state: stop it and start it again (firmware and blob as
        before). Backends with a cheaper reset (a probe's reset line) may override."""
        self.close()
        self.start()

    def probe(self, timeout: float = 10.0):
        """The board's debug probe (``harness.probe.Probe``), attached with the core running."""
        raise NotImplementedError(f"{self.describe()}: the {self.backend} backend gives no debug probe")

    def _drop_session(self) -> None:
        if self.session is not None:
            try:
                self.session.sock.close()
            except OSError:
                pass
            self.session = None

    def describe(self) -> str:
        return f"{self.id} ({self.backend}, {self.target.name})"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """PING until the firmware answers: bytes sent before its UART is up are lost (the STM32
        USART drops characters while disabled), so the first request is retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ping(b"ready", timeout=0.25)
                return
            except BoardTimeout:
                if time.monotonic() > deadline:
                    raise BoardTimeout(f"{self.describe()}: the firmware did not answer PING within {timeout} s")

    # --- protocol ---
    def ping(self, payload: bytes = b"", timeout: float = 5.0) -> bytes:
        kind, body = self.session.request(P.PING, payload, timeout)
        return body

    def info(self, timeout: float = 5.0) -> P.Info:
        kind, body = self.session.request(P.INFO, b"", timeout)
        self._info = P.parse_info(body)
        return self._info

    def reload(self, timeout: float = 10.0) -> P.Info:
        kind, body = self.session.request(P.RELOAD, b"", timeout)
        self._info = P.parse_info(body)
        return self._info

    def run(self, r: RunRequest, timeout: float = 120.0) -> P.Result:
        info = self._info or self.info()
        kind, body = self.session.request(
            P.RUN, P.run_payload(r.tokens, r.T, r.n, r.steps, r.halting, r.carries, r.embed_ram), timeout)
        if kind != P.RESULT:
            raise P.ProtocolError(f"{self.describe()}: expected RESULT, got type {kind:#x}")
        return P.parse_result(body, info.hidden)

    def bench(self, rows: int, cols: int, bits: int, reps: int = 1, timeout: float = 60.0) -> P.Bench:
        """Time ``reps`` calls of the firmware's trm_linear on a generated [rows, cols] matrix of int8 or
        int4 weights (no blob needed); see ``protocol.bench_reference`` for the pattern."""
        kind, body = self.session.request(P.BENCH, P.bench_payload(rows, cols, bits, reps), timeout)
        if kind != P.BENCH_RSP:
            raise P.ProtocolError(f"{self.describe()}: expected BENCH_RESULT, got type {kind:#x}")
        return P.parse_bench(body)


class EmulatorProcess:
    """For backends that run an emulator process (QEMU, Renode): a scratch folder per start holding the
    blob, and the process's output appended to ``<log_dir>/<board id>.log`` (appended: the log of a
    start that failed survives the restart that follows). Subclasses call ``_emulator_init`` after
    ``Board.__init__``."""

    def _emulator_init(self, blob: bytes | None, firmware: Path | None, log_dir: Path | None,
                       gdb_port: int | None) -> None:
        from ..firmware import firmware_elf
        check_blob_fits(self.target, blob)
        self.blob = blob
        self.firmware = Path(firmware) if firmware else firmware_elf(self.target.name)
        self.log_dir = Path(log_dir) if log_dir else None
        self.gdb_port = gdb_port            # the emulator's GDB server (the probe), when given
        self.proc: subprocess.Popen | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None

    def _workspace(self, prefix: str) -> tuple[Path, Path | None]:
        self.tmp = tempfile.TemporaryDirectory(prefix=f"{prefix}-{self.target.name}-")
        work = Path(self.tmp.name)
        blob_path = None
        if self.blob is not None:
            blob_path = work / "model.bin"
            blob_path.write_bytes(self.blob)
        log_dir = self.log_dir or work
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.id}.log"
        return work, blob_path

    def _serve(self, sock, deadline: float, min_wait: float) -> None:
        """Open the protocol session on the emulator's UART stream and wait for the firmware to answer
        (at least ``min_wait`` s, else until ``deadline``); on failure the emulator is stopped."""
        self.session = Session(sock, self.describe())
        try:
            self.wait_ready(max(min_wait, deadline - time.monotonic()))
        except Exception:
            self.close()
            raise

    def _stop(self, ask=None) -> None:
        """Close the session, stop the process (``stop_process``), drop the scratch folder (and with it
        the log, unless it went to a ``log_dir``)."""
        self._drop_session()
        stop_process(self.proc, ask=ask)
        self.proc = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def _spawn(self, cmd: list[str], cwd: Path | None = None) -> None:
        with open(self.log_path, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} " + " ".join(cmd) + "\n")
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
