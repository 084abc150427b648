"""A small client of the GDB remote serial protocol, enough for a probe: halt, continue, breakpoints,
registers and memory. Packets are ``$payload#checksum`` and acknowledged with ``+``; a stop is reported
as a ``T``/``S`` packet. Binary data in a packet escapes ``}#$*`` as ``}`` + (byte ^ 0x20); replies may
also be run-length encoded (``c*N``: ``c`` repeated N - 29 more times). The checksum is the sum of the
bytes as sent, escapes and run-lengths included. Works against QEMU's gdbstub (``-gdb tcp:…``), Renode's
GDB server, and any gdbserver speaking the same protocol (OpenOCD, ``pyocd gdbserver``).

Stop replies (``S``/``T`` with a signal number, ``W``/``X``) are kept apart from the answers to other
requests: a server may send one unasked (QEMU the moment a client attaches, Renode 0.1 to 0.35 s after
it, one byte per TCP segment), and a late one must not be read as the answer to the next request."""
from __future__ import annotations

import socket
import string
import time

from . import SteppingProbe

ATTACH_WAIT = 0.2        # s a server that stops the core on attach (QEMU) takes to say so at once
ATTACH_STOP_WAIT = 2.0   # s for a server that says so late (Renode: 0.1-0.35 s seen; when none came in 2 s, none came in 5)
INTERRUPT_WAIT = 1.0     # s for the stop an interrupt (0x03) asks for before asking with `?` instead


class ProbeError(RuntimeError):
    pass


class ProbeTimeout(ProbeError, TimeoutError):
    """The gdbserver did not answer in time: the core, the emulator or the probe is hung."""


ESCAPED = b"}#$*"


def escape(data: bytes) -> bytes:
    """Binary data as sent in a packet."""
    out = bytearray()
    for b in data:
        out += bytes((0x7D, b ^ 0x20)) if b in ESCAPED else bytes((b,))
    return bytes(out)


def is_stop_reply(packet: str) -> bool:
    """A stop reply: ``S``/``T`` + a two-digit signal, or ``W``/``X`` (exited); never an answer to a memory,
    register or breakpoint request (hex digits, ``OK``, ``E..``, empty)."""
    return len(packet) >= 3 and packet[0] in "STWX" and all(c in string.hexdigits for c in packet[1:3])


def decode(payload: bytes) -> bytes:
    """A received packet's data: escapes undone, run-lengths expanded."""
    out, i = bytearray(), 0
    while i < len(payload):
        c = payload[i]
        if c in (0x7D, 0x2A) and i + 1 == len(payload):
            raise ProbeError(f"packet ends inside an escape or a run-length: {payload[-20:]!r}")
        if c == 0x7D:
            out.append(payload[i + 1] ^ 0x20)
            i += 2
        elif c == 0x2A and out:
            out += out[-1:] * (payload[i + 1] - 29)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


class GdbRemote(SteppingProbe):
    def __init__(self, host: str = "127.0.0.1", port: int = 3333, timeout: float = 10.0, resume: bool = True,
                 halts_on_attach: bool = False):
        """Attach; with ``resume`` the core keeps running (an attach stops it on QEMU and on Renode).
        ``halts_on_attach``: the server stops the core on attach and says so late (Renode): wait up to
        ``ATTACH_STOP_WAIT`` s for that stop reply, and ask with ``?`` if it does not come."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ProbeError(f"no gdbserver at {host}:{port} after {timeout} s")
                time.sleep(0.05)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.where = f"{host}:{port}"
        self.last = "attach"        # the last request sent, named when an answer does not come
        self.hung = False           # a wait timed out: close() does not wait for goodbyes
        self.buf = bytearray()
        self.acks: list[bool] = []
        self.packets: list[str] = []    # answers to requests, in order
        self.stops: list[str] = []      # stop replies, in order
        self.timeout = timeout
        self.interrupts_unanswered = 0  # halts that needed `?` (Renode 1.15 sometimes ignores 0x03)
        self.running = False
        stop = self._stop(time.monotonic() + (min(timeout, ATTACH_STOP_WAIT) if halts_on_attach else ATTACH_WAIT),
                          owed=False)
        if stop is None and halts_on_attach:
            stop = self._ask_stop("attach, then '?'")
        if stop is None:             # a server that leaves the core running on attach
            self.running = True
        elif resume:
            self.cont()

    # --- packets ---
    # The stream from the server holds acknowledgements ('+', '-') and packets ('$…#cc'), in any order
    # and split anywhere: _pump sorts them into acks, answers and stop replies.
    def _pump(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise socket.timeout
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise ProbeTimeout(f"gdbserver at {self.where} did not answer {self.last!r} in time (timeout "
                               f"{self.timeout:g} s): the core, emulator or probe is hung; close the probe, "
                               "restart the board and attach again") from None
        if not chunk:
            raise ProbeError("gdbserver closed the connection")
        self.buf += chunk
        while self.buf:
            c = self.buf[:1]
            if c in (b"+", b"-"):
                self.acks.append(c == b"+")
                del self.buf[:1]
            elif c == b"$":
                end = self.buf.find(b"#")
                if end < 0 or len(self.buf) < end + 3:
                    return
                payload = bytes(self.buf[1:end])
                check = self.buf[end + 1:end + 3]
                del self.buf[:end + 3]
                if f"{sum(payload) & 0xFF:02x}".encode() != check.lower():
                    self.sock.sendall(b"-")     # the server sends it again
                    continue
                self.sock.sendall(b"+")
                packet = decode(payload).decode("latin-1")
                (self.stops if is_stop_reply(packet) else self.packets).append(packet)
            else:
                del self.buf[:1]

    def _send(self, payload: str | bytes, what: str | None = None) -> None:
        """Send a packet (``bytes``: already escaped where it carries binary data) until acknowledged;
        ``what`` names it in a timeout's message (default: its first bytes)."""
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        self.last = what or data[:32].decode("latin-1")
        packet = b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode()
        for _ in range(3):
            self.sock.sendall(packet)
            deadline = time.monotonic() + self.timeout
            while not self.acks:
                self._pump_due(deadline)
            if self.acks.pop(0):
                return
        raise ProbeError(f"gdbserver did not acknowledge {payload[:20]!r}")

    def _packet(self) -> str:
        """The answer the last request is owed (not a stop reply), due within the probe's timeout."""
        deadline = time.monotonic() + self.timeout
        while not self.packets:
            self._pump_due(deadline)
        return self.packets.pop(0)

    def _stop(self, deadline: float, owed: bool = True) -> str | None:
        """The next stop reply by ``deadline``; when none came: ProbeTimeout if it was ``owed`` (the
        server is hung), else None (the core still runs)."""
        while not self.stops:
            try:
                self._pump(deadline)
            except ProbeTimeout:
                if owed:
                    self.hung = True
                    raise
                return None
        return self.stops.pop(0)

    def _ask_stop(self, what: str) -> str:
        """Ask why the core stopped (``?``, which Renode always answers, with ``S00``, and QEMU with the last
        stop); ``what`` names the request in a timeout's message."""
        self._send("?", what)
        return self._stop(time.monotonic() + self.timeout)

    def _pump_due(self, deadline: float) -> None:
        """``_pump`` for an answer the server owes: its absence marks the server hung."""
        try:
            self._pump(deadline)
        except ProbeTimeout:
            self.hung = True
            raise

    def command(self, payload: str | bytes) -> str:
        self._send(payload)
        reply = self._packet()
        if reply.startswith("E") and len(reply) == 3:
            raise ProbeError(f"gdbserver error {reply} for {payload[:24]!r}")
        return reply

    # --- the probe interface ---
    def halt(self) -> str:
        """Stop the core; returns the stop reply. An interrupt (0x03) not answered within
        ``INTERRUPT_WAIT`` s (Renode 1.15 sometimes lets one go: its core is then already single-stepping,
        i.e. stopped) is followed by a ``?``, whose answer is returned."""
        self.last = "interrupt (0x03)"
        self.sock.sendall(b"\x03")
        self.running = False
        stop = self._stop(time.monotonic() + min(self.timeout, INTERRUPT_WAIT), owed=False)
        if stop is None:
            self.interrupts_unanswered += 1
            stop = self._ask_stop("interrupt (0x03), then '?'")
        return stop

    def cont(self) -> None:
        """Resume; ``wait_stop`` collects the next stop (stop replies from before are dropped)."""
        self.stops.clear()
        self._send("c")
        self.running = True

    def step(self) -> str:
        """Execute one instruction; returns the stop reply."""
        self.stops.clear()
        self._send("s")
        return self._stop(time.monotonic() + self.timeout)

    def wait_stop(self, timeout: float) -> str | None:
        """The stop reply (e.g. ``T05…`` at a breakpoint) or None when the core is still running."""
        reply = self._stop(time.monotonic() + timeout, owed=False)
        if reply is not None:
            self.running = False
        return reply

    def set_breakpoint(self, addr: int) -> None:
        if self.command(f"Z0,{addr & ~1:x},2") != "OK":
            raise ProbeError(f"could not set a breakpoint at {addr:#x}")

    def clear_breakpoint(self, addr: int) -> None:
        self.command(f"z0,{addr & ~1:x},2")

    def read_memory(self, addr: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            n = min(length - len(out), 2048)
            reply = self.command(f"m{addr + len(out):x},{n:x}")
            out += bytes.fromhex(reply)
        return bytes(out)

    def write_memory(self, addr: int, data: bytes) -> None:
        """Write with the binary ``X`` packet (escaped), or ``M`` (hex) on a server without ``X``."""
        for off in range(0, len(data), 1024):
            chunk = data[off:off + 1024]
            reply = self.command(f"X{addr + off:x},{len(chunk):x}:".encode() + escape(chunk))
            if reply == "":
                reply = self.command(f"M{addr + off:x},{len(chunk):x}:{chunk.hex()}")
            if reply != "OK":
                raise ProbeError(f"could not write {len(chunk)} bytes at {addr + off:#x}: {reply!r}")

    def registers(self) -> list[int]:
        """r0..r15 (then whatever else the server sends), 32-bit little-endian each."""
        reply = self.command("g")
        return [int.from_bytes(bytes.fromhex(reply[i:i + 8]), "little") for i in range(0, 16 * 8, 8)]

    def close(self) -> None:
        try:
            if self.hung:
                raise ProbeTimeout("no goodbyes to a hung server")
            if self.running:
                self.halt()
            self._send("D")
        except (OSError, ProbeError, TimeoutError):
            pass
        self.sock.close()
