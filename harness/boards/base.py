"""The board interface and the protocol session shared by all backends.

A ``Board`` is context-managed: ``start(timeout)`` brings it up with a firmware and a blob (the same
arguments on every backend), ``send`` and ``poll`` are the protocol underneath (send a request, collect
its answer by sequence number, so a caller can do other work, e.g. serve a probe, while the board
computes), ``info()``, ``run()``, ``bench()`` and ``ping()`` are requests on top of them, ``close()``
stops it. ``debug_port()`` says where a probe can attach (the probe connects to it: boards do not know
probes). Every wait has a timeout; what the board's process printed goes to a log file per board, named
in every error. Board failures (``errors.py``) are what a reset and retry may cure.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol as P
from .errors import BoardLinkLost, BoardTimeout, BoardUnavailable, EmulatorDied
from ..targets import Target

__all__ = ["Board", "BoardTimeout", "DebugPort", "RunRequest", "Session", "EmulatorProcess", "check_blob_fits"]


def check_blob_fits(target: Target, blob: bytes | None) -> None:
    """A blob larger than the target's blob region cannot be placed: say so before starting a board."""
    if blob is not None and len(blob) > target.blob.size:
        raise ValueError(f"blob of {len(blob):,} bytes does not fit {target.name}'s blob region "
                         f"of {target.blob.size:,} bytes (targets/{target.name}.toml, [memory.blob])")


class Session:
    """Requests and responses over a byte stream: a socket, or anything with its ``sendall``, ``recv``
    (raising ``socket.timeout``, i.e. TimeoutError, when nothing came in time) and ``settimeout``
    (``serial.SerialStream`` for a serial port, ``host._Loopback`` for the host build)."""

    def __init__(self, sock, describe: str = "board"):
        self.sock = sock
        self.describe = describe
        self.seq = 0
        self.buffer = bytearray()

    def send(self, kind: int, payload: bytes = b"") -> int:
        """Send one request; returns its sequence number."""
        self.seq = (self.seq + 1) & 0xFFFF
        # the leading 0x00 ends any partial frame left in the firmware's receive buffer
        self.send_raw(b"\x00" + P.frame(kind, self.seq, payload))
        return self.seq

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are, framed or not (tests of the firmware's decoder send garbage this way)."""
        try:
            self.sock.sendall(data)
        except ConnectionError as e:         # reset or broken pipe: the board's end is gone
            raise BoardLinkLost(f"{self.describe}: the connection was lost ({e})") from None

    def next_frame(self, timeout: float) -> bytes | None:
        """The next delimited frame's raw bytes (without the 0x00), or None when none came in time."""
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
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionError as e:     # reset by the peer (a lab host or emulator gone): the same loss
                raise BoardLinkLost(f"{self.describe}: the connection was lost ({e})") from None
            if not chunk:
                raise BoardLinkLost(f"{self.describe}: the connection closed")
            self.buffer += chunk

    def read_frame(self, timeout: float) -> bytes:
        """The next frame's raw bytes; BoardTimeout when none came in time."""
        wire = self.next_frame(timeout)
        if wire is None:
            raise BoardTimeout(f"{self.describe}: no answer within {timeout:.1f} s "
                               f"({len(self.buffer)} bytes of a partial frame received)")
        return wire

    def poll(self, seq: int, timeout: float) -> tuple[int, bytes] | None:
        """(type, payload) of the answer to request ``seq`` once it came, None if it did not within
        ``timeout`` s. An ERROR frame for it (or for no request: seq 0) raises its BoardError; answers to
        earlier, timed-out requests are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            wire = self.next_frame(max(0.0, deadline - time.monotonic()))
            if wire is None:
                return None
            kind, got, body = P.unframe(wire)
            if kind == P.ERROR and got in (seq, 0):
                raise P.parse_error(body)
            if got == seq and kind != P.ERROR:
                return kind, body


@dataclass
class RunRequest:
    tokens: np.ndarray
    T: int
    n: int
    steps: int
    halting: bool = False
    carries: bool = False
    embed_ram: bool = False
    profile: bool = False

    def payload(self) -> bytes:
        return P.run_payload(self.tokens, self.T, self.n, self.steps, self.halting, self.carries, self.embed_ram,
                             self.profile)


@dataclass(frozen=True)
class DebugPort:
    """Where a debug probe can attach to a board: a GDB remote server on ``host:port`` (QEMU's gdbstub,
    Renode's GDB server). ``halts_on_attach``: the server stops the core when a client connects and
    says nothing (Renode), so the probe must resume it."""
    kind: str               # "gdb-remote"
    host: str
    port: int
    halts_on_attach: bool = False


def die_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it gets SIGKILL when the harness thread that started it exits, however the
    harness ends (SIGKILL included): no emulator outlives the harness. Linux's parent-death signal, set by
    util-linux's ``setpriv`` (essential on Debian) just before it execs the emulator: a ``preexec_fn``
    would do the same but is unsafe in a process with threads (the farm starts boards from threads)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *cmd] if setpriv else cmd


OWNER_ENV = "HARNESS_BOARD_OWNER"   # set in every emulator's environment: the pid of the harness that started it


def in_own_group(cmd: list[str]) -> list[str]:
    """``cmd`` run under ``harness.boards.group``, the leader of a process group that ends as a whole when
    the supervisor is signalled, when ``cmd`` exits, or when the harness thread that started it exits.
    For launchers that run the emulator as a child (Renode's shell scripts), where signalling the
    launcher, or ``die_with_parent``'s signal to it, would leave the emulator running."""
    return [sys.executable, "-m", "harness.boards.group", str(os.getpid()), *cmd]


def emulators_of(owner: int | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes started as a board's emulator by the harness process
    ``owner`` (default: this one), found by ``OWNER_ENV`` in their environment (Linux's /proc): what a
    test checks is empty once its boards are closed."""
    owner = os.getpid() if owner is None else owner
    want = f"{OWNER_ENV}={owner}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if want not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue                     # a zombie: exited, not yet collected by its parent
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue                         # exited meanwhile, or not ours to read
        found.append((int(entry.name), cmdline))
    return found


def stop_process(proc: subprocess.Popen | None, ask=None, grace: float = 5.0, group: bool = False) -> None:
    """Stop a board's emulator process: ``ask()`` it to quit when given, then SIGTERM (with SIGCONT, so a
    stopped process, e.g. a wedged board under test, acts on it), then SIGKILL, ``grace`` s apart.
    ``group``: ``proc`` leads a process group (``in_own_group``), and the SIGKILL goes to the group."""
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
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()


class Board:
    """Base of the backends. Subclasses implement ``start``/``close`` and set ``self.session``;
    ``start_timeout`` is how long their start may take by default."""
    backend = "?"
    start_timeout = 10.0

    def __init__(self, target: Target, board_id: str | None = None):
        self.target = target
        self.id = board_id or f"{self.backend}-{target.name}"
        self.session: Session | None = None
        self.model_info: P.Info | None = None   # the last INFO the firmware gave (None before one)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def debug_port(self) -> DebugPort | None:
        """Where a probe can attach, None when this board has no debug port."""
        return None

    def describe(self) -> str:
        return f"{self.id} ({self.backend}, {self.target.name})"

    def _drop_session(self) -> None:
        if self.session is not None:
            try:
                self.session.sock.close()
            except OSError:
                pass
            self.session = None

    def _check_alive(self) -> None:
        """Raise EmulatorDied when the board's process has exited (backends with a process override)."""

    def wait_ready(self, timeout: float = 10.0) -> None:
        """PING until the firmware answers: bytes sent before its UART is up are lost (the STM32
        USART drops characters while disabled), so the first request is retried. A PING whose head
        was dropped reaches the firmware torn, and it answers with a link error (COBS, TRUNCATED or
        CRC, for no request): the firmware is up, so that PING is sent again too."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ping(b"ready", timeout=0.25)
                return
            except (BoardTimeout, P.LinkError) as e:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise BoardTimeout(f"{self.describe()}: the firmware did not answer PING within {timeout} s"
                                       f" (last: {e})") from None

    # --- protocol ---
    def send(self, kind: int, payload: bytes = b"") -> int:
        """Send one request (``protocol`` types); returns its sequence number for ``poll``."""
        if self.session is None:
            raise RuntimeError(f"{self.describe()}: not started (use the board as a context manager or call start())")
        return self.session.send(kind, payload)

    def poll(self, seq: int, timeout: float) -> tuple[int, bytes] | None:
        """The answer (type, payload) to request ``seq``, or None while it has not come within ``timeout``
        s; an ERROR answer raises its ``protocol.BoardError``."""
        try:
            answer = self.session.poll(seq, timeout)
        except BoardLinkLost:
            self._check_alive()
            raise
        if answer is None:
            self._check_alive()
        return answer

    def request(self, kind: int, payload: bytes = b"", timeout: float = 10.0, expect: int | None = None
                ) -> bytes:
        """Send a request and wait for its answer (of type ``expect`` when given); returns its payload."""
        seq = self.send(kind, payload)
        answer = self.poll(seq, timeout)
        if answer is None:
            raise BoardTimeout(f"{self.describe()}: no answer within {timeout:.1f} s "
                               f"({len(self.session.buffer)} bytes of a partial frame received)")
        got, body = answer
        if expect is not None and got != expect:
            raise P.ProtocolError(f"{self.describe()}: expected an answer of type {expect:#x}, got {got:#x}")
        return body

    def ping(self, payload: bytes = b"", timeout: float = 5.0) -> bytes:
        return self.request(P.PING, payload, timeout, expect=P.PONG)

    def info(self, timeout: float = 5.0) -> P.Info:
        self.model_info = P.parse_info(self.request(P.INFO, b"", timeout, expect=P.INFO_RSP))
        return self.model_info

    def reload(self, timeout: float = 10.0) -> P.Info:
        self.model_info = P.parse_info(self.request(P.RELOAD, b"", timeout, expect=P.INFO_RSP))
        return self.model_info

    def run(self, r: RunRequest, timeout: float = 120.0) -> P.Result:
        info = self.model_info or self.info()
        return P.parse_result(self.request(P.RUN, r.payload(), timeout, expect=P.RESULT), info.hidden)

    def bench(self, rows: int, cols: int, bits: int, reps: int = 1, timeout: float = 60.0,
              vectors: int = 1) -> P.Bench:
        """Time ``reps`` calls of the firmware's trm_linear (``vectors`` 2: trm_linear_pair) on a
        generated [rows, cols] matrix of int8 or int4 weights (no blob needed); see
        ``protocol.bench_reference`` for the pattern."""
        from ..figures import instructions_per_count
        b = P.parse_bench(self.request(P.BENCH, P.bench_payload(rows, cols, bits, reps, vectors), timeout,
                                       expect=P.BENCH_RSP))
        b.instructions_per_count = instructions_per_count(b.counter_unit, b.counter_hz, self.backend)
        return b


class EmulatorProcess:
    """For backends that run an emulator process (QEMU, Renode): a scratch folder per start holding the
    blob, and the process's output appended to ``<log_dir>/<board id>.log`` (appended: the log of a
    start that failed survives the restart that follows). Subclasses call ``_emulator_init`` after
    ``Board.__init__``."""

    def _emulator_init(self, blob: bytes | None, firmware: Path | None, log_dir: Path | None,
                       gdb_port: int | None) -> None:
        from ..firmware import firmware_elf
        self.blob = blob
        self.firmware = Path(firmware) if firmware else firmware_elf(self.target.name)
        if not self.firmware.is_file():
            raise BoardUnavailable(f"{self.describe()}: no firmware at {self.firmware} (the inventory's `firmware`, "
                                   f"or build it: `harness firmware build --target {self.target.name}`)")
        self.target = self.target.built_as(self.firmware)   # the blob goes where this image's linker put it
        check_blob_fits(self.target, blob)
        self.log_dir = Path(log_dir) if log_dir else None
        self.gdb_port = gdb_port            # the emulator's GDB server (the probe), when given
        self.proc: subprocess.Popen | None = None
        self.own_group = False              # proc leads a process group (``in_own_group``)
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None

    def _workspace(self, prefix: str) -> tuple[Path, Path | None]:
        """A fresh scratch folder (with the blob) for a new process. A board has one process: starting
        one that is still running (``with board:`` and then ``board.start()``) stops the old one first,
        which was otherwise left running, unreachable, polling its UART on a core."""
        if self.proc is not None or self.tmp is not None:
            self._stop()
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

    def debug_port(self) -> DebugPort | None:
        return DebugPort("gdb-remote", "127.0.0.1", self.gdb_port) if self.gdb_port is not None else None

    def emulator_version(self) -> str | None:
        """The emulator's name and version, for provenance (None where a backend does not say)."""
        return None

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path and self.log_path.exists() else ""
            raise EmulatorDied(f"{self.describe()}: the emulator exited with {self.proc.returncode}; "
                               f"log: {self.log_path}" + (f"\n{tail}" if tail else ""))

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
        if self.own_group:
            self.signal_emulator(signal.SIGCONT)   # a stopped emulator (a frozen board under test) can quit
        stop_process(self.proc, ask=ask, group=self.own_group)
        self.proc = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def _spawn(self, cmd: list[str], cwd: Path | None = None, own_group: bool = False,
               env: dict[str, str] | None = None) -> None:
        """Start the emulator, its output appended to the log; ``own_group``: under ``in_own_group`` (else
        ``die_with_parent``); ``env``: variables added to the harness's environment."""
        with open(self.log_path, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} " + " ".join(cmd) + "\n")
            log.flush()
            full_env = {**os.environ, **(env or {}), OWNER_ENV: str(os.getpid())}
            self.own_group = own_group
            self.proc = subprocess.Popen(in_own_group(cmd) if own_group else die_with_parent(cmd),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                         env=full_env, process_group=0 if own_group else None)

    def signal_emulator(self, sig: int) -> None:
        """Send ``sig`` to the emulator: to its whole process group when it has one (SIGSTOP to a Renode
        launcher alone would leave the emulator running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.own_group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
