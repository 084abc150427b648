"""A small client of the GDB remote serial protocol, enough for a probe: halt, continue, breakpoints,
registers and memory. Packets are ``$payload#checksum`` and acknowledged with ``+``; a stop is reported
as a ``T``/``S`` packet. Binary data in a packet escapes ``}#$*`` as ``}`` + (byte ^ 0x20); replies may
also be run-length encoded (``c*N``: ``c`` repeated N - 29 more times). The checksum is the sum of the
bytes as sent, escapes and run-lengths included. Works against QEMU's gdbstub (``-gdb tcp:…``) and any gdbserver speaking the
same protocol (Renode, OpenOCD, ``pyocd gdbserver``)."""
from __future__ import annotations

import socket
import time

from . import SteppingProbe


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
    def __init__(self, host: str = "127.0.0.1", port: int = 3333, timeout: float = 10.0, resume: bool = True):
        """Attach; with ``resume`` the core keeps running (an attach stops it on QEMU)."""
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
        self.packets: list[str] = []
        self.timeout = timeout
        # a server may stop the core when a client attaches (QEMU does, and says so with a stop packet)
        self.running = False
        try:
            self._pump(time.monotonic() + 0.2)
        except TimeoutError:
            pass
        stopped = bool(self.packets)
        self.packets.clear()
        if resume and stopped:
            self.cont()

    # --- packets ---
    # The stream from the server holds acknowledgements ('+', '-') and packets ('$…#cc'), in any order
    # (QEMU, for one, reports a stop packet the moment a client connects): _pump sorts them.
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
                self.packets.append(decode(payload).decode("latin-1"))
            else:
                del self.buf[:1]

    def _send(self, payload: str | bytes) -> None:
        """Send a packet (``bytes``: already escaped where it carries binary data) until acknowledged."""
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        self.last = data[:32].decode("latin-1")
        packet = b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode()
        for _ in range(3):
            self.sock.sendall(packet)
            deadline = time.monotonic() + self.timeout
            while not self.acks:
                self._pump_due(deadline)
            if self.acks.pop(0):
                return
        raise ProbeError(f"gdbserver did not acknowledge {payload[:20]!r}")

    def _packet(self, timeout: float | None = None) -> str:
        """The next packet's payload: an answer due within the probe's timeout, or (``timeout`` given) a
        stop that may not come."""
        if timeout is not None:
            deadline = time.monotonic() + timeout
            while not self.packets:
                self._pump(deadline)
        deadline = time.monotonic() + self.timeout
        while not self.packets:
            self._pump_due(deadline)
        return self.packets.pop(0)

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
        """Stop the core; returns the stop reply."""
        self.last = "interrupt (0x03)"
        self.sock.sendall(b"\x03")
        self.running = False
        return self._packet()

    def cont(self) -> None:
        """Resume; ``wait_stop`` collects the next stop."""
        self._send("c")
        self.running = True

    def step(self) -> str:
        """Execute one instruction; returns the stop reply."""
        self._send("s")
        return self._packet()


    def wait_stop(self, timeout: float) -> str | None:
        """The stop reply (e.g. ``T05…`` at a breakpoint) or None when the core is still running."""
        try:
            reply = self._packet(timeout)
        except TimeoutError:
            return None
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
