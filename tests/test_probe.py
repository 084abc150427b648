"""The debug probe on an emulated board (QEMU's gdbstub, Renode's GDB server: the --board chosen):
per-cycle carries read at the firmware's cycle hook equal the golden reference's, the device fidelity
equals golden's, and tracing does not change the counted instructions. The GDB remote-protocol client
at the packet level against a scripted server (escaping, run-lengths, checksums, a server that stops
answering, a late stop reply, an unanswered interrupt), and against the emulator's real server (memory
of odd sizes and alignments, binary writes, a frozen emulator and a board restart)."""
from __future__ import annotations

import signal
import socket
import threading
import time

import numpy as np
import pytest

from harness.boards.base import RunRequest
from harness.export import blob as B
from harness.tasks import stack

def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EMULATED = ("qemu", "renode")


def _emulated_board(board_kind: str, blob: bytes | None, gdb_port: int, log_dir=None):
    """An mps2-an386 board of --board (QEMU or Renode) with its GDB server on ``gdb_port``, not started."""
    from harness.boards.factory import BoardUnavailable, make_board
    from harness.targets import load_target
    if board_kind not in EMULATED:
        pytest.skip(f"the probe tests need an emulator's GDB server (--board qemu or renode), not {board_kind}")
    try:
        return make_board(board_kind, load_target("mps2-an386"), blob, gdb_port=gdb_port, log_dir=log_dir)
    except BoardUnavailable as e:
        pytest.fail(f"--board {board_kind}: {e}", pytrace=False)


@pytest.fixture(scope="module")
def traced_board(board_kind, board_log_dir):
    from harness.export.exporter import export_blob
    from harness.run import open_probe
    blob = export_blob("sudoku6-mlp", "int8")
    with _emulated_board(board_kind, blob, _port(), board_log_dir) as board:
        board.info()
        probe = open_probe(board)
        try:
            yield board, probe, blob
        finally:
            probe.close()


@pytest.mark.board
def test_probe_reads_memory_by_symbol(traced_board):
    from harness.probe.elf import address, symbols
    board, probe, _ = traced_board
    probe.halt()
    try:
        addr, size = symbols(board.firmware)["trm_carry_snapshot"]
        before = int.from_bytes(probe.read_memory(addr + 16, 4), "little")   # .count (after y, z, step, cycle)
    finally:
        probe.cont()
    board.run(RunRequest(np.ones(36, np.uint8), 2, 1, 3))
    probe.halt()
    try:
        after = int.from_bytes(probe.read_memory(address(board.firmware, "trm_carry_snapshot") + 16, 4), "little")
    finally:
        probe.cont()
    assert after - before == 2 * 3          # one hook call per cycle: T = 2 cycles x 3 steps


@pytest.mark.board
def test_per_cycle_carries_equal_golden_and_tracing_does_not_perturb_counts(traced_board, zoo_model):
    from harness.probe.capture import carries_array
    from harness.run import run_traced
    board, probe, blob = traced_board
    im = B.from_blob(blob)
    _, task, _ = zoo_model("sudoku6-mlp")
    x, _ = stack(task.generate(2, seed=31, split="test"))
    for i in range(len(x)):
        req = RunRequest(x[i], 2, 2, 3)
        plain = board.run(req)
        res, records = run_traced(board, probe, board.firmware, req)
        assert [(r.step, r.cycle) for r in records] == [(s, c) for s in range(3) for c in range(2)]
        y, z = carries_array(records, 3, 2)
        g = im.run(x[i:i + 1], 2, 2, 3, keep_carries=True)
        np.testing.assert_array_equal(y, g["y"][:, :, 0])
        np.testing.assert_array_equal(z, g["z"][:, :, 0])
        np.testing.assert_array_equal(res.per_step, plain.per_step)
        # The hook is not counted (trm_counter_pause/resume) and every counted segment restarts the
        # SysTick period (ports/counter.c), so the time a probe holds the core changes nothing: equal.
        assert res.counter == plain.counter, f"tracing changed the count: {res.counter} vs {plain.counter}"


@pytest.mark.board
def test_device_fidelity_equals_golden_fidelity(traced_board, zoo_model):
    """Through the whole `harness run --trace` path: carries bit-identical, so fidelity identical."""
    from harness.run import run_puzzles
    from harness.depth import Depth
    board, probe, blob = traced_board
    net, task, _ = zoo_model("sudoku6-mlp")
    puzzles = task.generate(2, seed=32, split="test")
    out = run_puzzles(board, blob, task, puzzles, Depth(2, 2, 2), probe=probe, reference=net)
    for row in out["rows"]:
        assert row["golden_match"] and row["carries_match_golden"] and row["device_fidelity_equals_golden"]
        assert len(row["device_fidelity_per_cycle"]) == 4 and 0 < row["device_fidelity_final"] <= 1


# --- the GDB remote protocol at the packet level, against a scripted server -------------------------------

class ScriptedServer:
    """A gdbserver that plays ``script(server)`` on the first connection, in a thread; ``received`` holds
    every packet's raw payload as sent by the client (escaped, before any decoding)."""

    def __init__(self, script):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.acks = bytearray()
        self.errors: list[BaseException] = []
        self.buf = bytearray()
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)
        try:
            script(self)
        except BaseException as e:  # reported by the test through finish()
            self.errors.append(e)

    def packet(self, ack: bytes = b"+") -> bytes:
        """The next packet from the client, its checksum verified, acknowledged with ``ack``."""
        while True:
            while self.buf[:1] in (b"+", b"-"):
                self.acks += self.buf[:1]
                del self.buf[:1]
            end = self.buf.find(b"#")
            if self.buf[:1] == b"$" and end > 0 and len(self.buf) >= end + 3:
                payload, check = bytes(self.buf[1:end]), int(self.buf[end + 1:end + 3], 16)
                del self.buf[:end + 3]
                assert sum(payload) & 0xFF == check, f"bad checksum from the client: {payload!r}"
                self.received.append(payload)
                self.conn.sendall(ack)
                return payload
            chunk = self.conn.recv(4096)
            if not chunk:
                raise ConnectionError("client went away")
            self.buf += chunk

    def reply(self, payload: bytes, checksum: int | None = None) -> None:
        check = sum(payload) & 0xFF if checksum is None else checksum
        self.conn.sendall(b"$" + payload + b"#" + f"{check:02x}".encode())

    def interrupt(self) -> None:
        """Wait for the client's interrupt byte (0x03) and take it off the stream."""
        while b"\x03" not in self.buf:
            chunk = self.conn.recv(4096)
            if not chunk:
                raise ConnectionError("client went away")
            self.buf += chunk
        self.buf = self.buf.replace(b"\x03", b"", 1)

    def read_ack(self) -> bytes:
        while not (self.acks or self.buf[:1] in (b"+", b"-")):
            self.buf += self.conn.recv(4096)
        if not self.acks:
            self.acks += self.buf[:1]
            del self.buf[:1]
        ack = bytes(self.acks[:1])
        del self.acks[:1]
        return ack

    def finish(self) -> None:
        self.thread.join(5)
        self.listener.close()
        if self.errors:
            raise self.errors[0]


def unescape(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == 0x7D:
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def test_binary_write_escapes_special_bytes_and_resends_after_a_nak():
    from harness.probe.gdb import GdbRemote
    data = b"a}b#c$d*e\x00\xff}}" + bytes(range(0x20, 0x30))

    def script(server):
        first = server.packet(ack=b"-")          # as if corrupted on the way: the client must resend
        again = server.packet()
        assert first == again
        server.reply(b"OK")
        assert server.read_ack() == b"+"

    server = ScriptedServer(script)
    probe = GdbRemote(port=server.port, timeout=2.0)
    probe.write_memory(0x20000003, data)
    server.finish()
    payload = server.received[-1]
    header, _, body = payload.partition(b":")
    assert header == b"X20000003,%x" % len(data)
    assert not set(body) & set(b"#$*") and unescape(body) == data
    special = sum(data.count(c) for c in b"}#$*")
    assert len(body) == len(data) + special and body.count(b"}") == special


def test_replies_are_checksummed_unescaped_and_run_length_decoded():
    from harness.probe.gdb import GdbRemote, decode, escape
    want = bytes(6) + b"\x12\x34"

    def script(server):
        assert server.packet() == b"m20000000,8"
        server.reply(b"0*(1234", checksum=0)      # a corrupted reply: the client asks again with '-'
        assert server.read_ack() == b"-"
        server.reply(b"0*(1234")                  # "0" then 11 more (ord('(') - 29): 12 hex zeros
        assert server.read_ack() == b"+"
        assert server.packet() == b"qRcmd,00"
        server.reply(b"a}]b}\x03c}\x04d}\x0ae")      # escaped } # $ *
        assert server.read_ack() == b"+"

    server = ScriptedServer(script)
    probe = GdbRemote(port=server.port, timeout=2.0)
    assert probe.read_memory(0x20000000, 8) == want
    assert probe.command("qRcmd,00") == "a}b#c$d*e"
    server.finish()
    for data in (b"}#$*", bytes(range(256)), b""):
        assert decode(escape(data)) == data


def test_a_server_that_stops_answering_times_out_with_a_clear_error():
    from harness.probe.gdb import GdbRemote, ProbeTimeout
    stop = threading.Event()

    def script(server):
        server.packet(ack=b"")                    # takes the request, never acknowledges or answers
        stop.wait(10)

    server = ScriptedServer(script)
    probe = GdbRemote(port=server.port, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ProbeTimeout, match=rf"gdbserver at 127.0.0.1:{server.port} did not answer 'm20000000,4' "
                                           r"in time \(timeout 0.5 s\).*restart the board") as e:
        probe.read_memory(0x20000000, 4)
    assert isinstance(e.value, TimeoutError) and time.monotonic() - t0 < 2
    t0 = time.monotonic()
    probe.close()                                 # no goodbyes to a hung server: no further waits
    assert time.monotonic() - t0 < 0.5
    stop.set()
    server.finish()


def _packet(payload: bytes) -> bytes:
    return b"$" + payload + b"#" + f"{sum(payload) & 0xFF:02x}".encode()


def test_a_late_attach_stop_sent_a_byte_at_a_time_is_not_read_as_the_next_answer():
    """Renode: the stop reply to an attach comes 0.1-0.35 s later, one byte per TCP segment. The probe waits
    for it before resuming the core, so the answer to the next request is that request's."""
    from harness.probe.gdb import GdbRemote

    def script(server):
        server.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(0.3)                           # later than a QEMU-style attach wait (0.2 s)
        for b in _packet(b"S05"):
            server.conn.sendall(bytes([b]))
            time.sleep(0.01)
        assert server.read_ack() == b"+"
        assert server.packet() == b"c"            # resumed only once the stop came
        assert server.packet() == b"m20000000,2"
        server.reply(b"beef")
        assert server.read_ack() == b"+"

    server = ScriptedServer(script)
    probe = GdbRemote(port=server.port, timeout=2.0, halts_on_attach=True)
    assert probe.running
    assert probe.read_memory(0x20000000, 2) == b"\xbe\xef"
    server.finish()


def test_a_stop_reply_that_comes_before_an_answer_is_kept_for_wait_stop():
    """A stop reply is never the answer to a memory request: it is kept, and wait_stop returns it."""
    from harness.probe.gdb import GdbRemote

    def script(server):
        assert server.packet() == b"m20000000,1"
        server.reply(b"T05thread:01;")            # the core hit a breakpoint meanwhile
        server.reply(b"2a")
        assert server.read_ack() == b"+" and server.read_ack() == b"+"

    server = ScriptedServer(script)
    probe = GdbRemote(port=server.port, timeout=2.0, resume=False)
    assert probe.read_memory(0x20000000, 1) == b"\x2a"
    assert probe.wait_stop(0.5) == "T05thread:01;"
    server.finish()


def test_an_unanswered_interrupt_is_followed_by_a_question(monkeypatch):
    """Renode 1.15 sometimes lets an interrupt (0x03) go unanswered and always answers ``?`` (S00): after
    INTERRUPT_WAIT the probe asks, and counts the interrupt as unanswered. A halts_on_attach server that
    sends no attach stop at all is asked the same way."""
    from harness.probe import gdb

    monkeypatch.setattr(gdb, "INTERRUPT_WAIT", 0.2)
    monkeypatch.setattr(gdb, "ATTACH_STOP_WAIT", 0.2)

    def script(server):
        assert server.packet() == b"?"            # no attach stop came: asked
        server.reply(b"S00")
        assert server.read_ack() == b"+"
        assert server.packet() == b"c"
        server.interrupt()                        # ignored
        assert server.packet() == b"?"
        server.reply(b"S00")
        assert server.read_ack() == b"+"
        assert server.packet() == b"c"
        server.interrupt()                        # answered
        server.reply(b"S05")
        assert server.read_ack() == b"+"

    server = ScriptedServer(script)
    probe = gdb.GdbRemote(port=server.port, timeout=2.0, halts_on_attach=True)
    assert probe.running
    assert probe.halt() == "S00" and probe.interrupts_unanswered == 1 and not probe.running
    probe.cont()
    assert probe.halt() == "S05" and probe.interrupts_unanswered == 1
    server.finish()


# --- against the emulator's real GDB server ------------------------------------------------------------------------

@pytest.mark.board
def test_memory_reads_of_odd_sizes_and_alignments_and_binary_writes(traced_board):
    from harness.probe.elf import symbols
    board, probe, blob = traced_board
    image = (board.firmware.parent / "firmware.bin").read_bytes()
    flash = board.target.flash.origin
    probe.halt()
    try:
        for offset, size in [(0, 1), (1, 1), (3, 3), (5, 7), (0x101, 7), (2045, 2048 + 7)]:
            assert probe.read_memory(flash + offset, size) == image[offset:offset + size], (offset, size)
        origin = board.target.blob.origin
        assert probe.read_memory(origin + 1, 3) == blob[1:4]
        # RAM written and read back, then restored (QEMU 7.2's stub has no binary X packet: the client
        # falls back to hex M there; the escaping itself is tested against the scripted server above)
        addr = symbols(board.firmware)["trm_carry_snapshot"][0] + 1
        data = b"}#$*\x00\xff}#$"
        saved = probe.read_memory(addr, len(data))
        probe.write_memory(addr, data)
        assert probe.read_memory(addr, len(data)) == data
        probe.write_memory(addr, saved)
        assert probe.read_memory(addr, len(data)) == saved
    finally:
        probe.cont()
    assert board.ping(b"still running") == b"still running"


@pytest.mark.board
def test_frozen_emulator_times_out_the_probe_and_a_restarted_board_answers(board_kind, board_log_dir):
    """The emulator stopped (SIGSTOP, to Renode's whole process group) stops its GDB server answering: the
    probe times out with a clear error and lets go at once; the board is closed and started again, and
    both the firmware and the probe answer."""
    from harness.probe.gdb import ProbeTimeout
    from harness.probe.elf import address
    from harness.run import open_probe
    board = _emulated_board(board_kind, None, _port(), board_log_dir)
    board.start()
    try:
        probe = open_probe(board, timeout=0.5)
        board.signal_emulator(signal.SIGSTOP)
        with pytest.raises(ProbeTimeout, match=r"did not answer .interrupt \(0x03\)"):
            probe.halt()
        t0 = time.monotonic()
        probe.close()
        board.close()                             # the stopped emulator is resumed to act on SIGTERM
        assert time.monotonic() - t0 < 3
        board.gdb_port = _port()
        board.start()
        assert board.ping(b"after reset") == b"after reset"
        probe = open_probe(board, timeout=5.0)
        probe.halt()
        word = probe.read_memory(address(board.firmware, "trm_carry_snapshot") + 16, 4)
        probe.cont()
        probe.close()
        assert int.from_bytes(word, "little") == 0  # no cycles run since the restart
    finally:
        board.close()
