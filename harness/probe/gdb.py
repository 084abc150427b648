"""A small client of the GDB remote serial protocol, enough for a probe: halt, continue, breakpoints,
registers and memory. Packets are ``$payload#checksum`` and acknowledged with ``+``; a stop is reported
as a ``T``/``S`` packet. Works against QEMU's gdbstub (``-gdb tcp:…``) and any gdbserver speaking the
same protocol (Renode, OpenOCD, ``pyocd gdbserver``)."""
from __future__ import annotations

import socket
import time


class ProbeError(RuntimeError):
    pass


class GdbRemote:
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
        if left <= 0:
            raise TimeoutError("gdbserver did not answer in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("gdbserver did not answer in time") from None
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
                check = int(self.buf[end + 1:end + 3], 16)
                del self.buf[:end + 3]
                if sum(payload) & 0xFF != check:
                    self.sock.sendall(b"-")
                    continue
                self.sock.sendall(b"+")
                self.packets.append(payload.decode("latin-1"))
            else:
                del self.buf[:1]

    def _send(self, payload: str) -> None:
        data = payload.encode()
        packet = b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode()
        for _ in range(3):
            self.sock.sendall(packet)
            deadline = time.monotonic() + self.timeout
            while not self.acks:
                self._pump(deadline)
            if self.acks.pop(0):
                return
        raise ProbeError(f"gdbserver did not acknowledge {payload[:20]!r}")

    def _packet(self, timeout: float | None = None) -> str:
        """The next packet's payload."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.packets:
            self._pump(deadline)
        return self.packets.pop(0)

    def command(self, payload: str) -> str:
        self._send(payload)
        reply = self._packet()
        if reply.startswith("E") and len(reply) == 3:
            raise ProbeError(f"gdbserver error {reply} for {payload[:24]!r}")
        return reply

    # --- the probe interface ---
    def halt(self) -> str:
        """Stop the core; returns the stop reply."""
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

    def cont_from_breakpoint(self, addr: int) -> None:
        """Resume from a stop at the breakpoint ``addr`` as gdb does: lift it, step over, set it again."""
        self.clear_breakpoint(addr)
        self.step()
        self.set_breakpoint(addr)
        self.cont()

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

    def registers(self) -> list[int]:
        """r0..r15 (then whatever else the server sends), 32-bit little-endian each."""
        reply = self.command("g")
        return [int.from_bytes(bytes.fromhex(reply[i:i + 8]), "little") for i in range(0, 16 * 8, 8)]

    def close(self) -> None:
        try:
            if self.running:
                self.halt()
            self._send("D")
        except (OSError, ProbeError, TimeoutError):
            pass
        self.sock.close()
