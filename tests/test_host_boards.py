"""Host boards side by side: every ``NativeServer`` (``trm_host_server_open``) is its own C server with
its own buffers and arena, so two host boards with different models, host boards on threads, and a
board closed while another goes on all answer with their own model, bit-exact with golden. The same
under AddressSanitizer + UBSan (64- and 32-bit), through the ``trm_check serve`` driver (servers in
turn, or each on its own thread); and a build
whose strong ``trm_cycle_hook`` replaces the core's weak one still returns the right final carries.
"""
from __future__ import annotations

import os
import struct
import subprocess
import threading
import zlib

import numpy as np
import pytest

from harness import native
from harness.boards import protocol as P
from harness.boards.base import RunRequest
from harness.boards.host import HostBoard
from harness.export import blob as B
from harness.targets import load_target
from harness.tasks import stack

pytest_plugins = ["pytester"]

TARGET = "mps2-an386"


def held_out(zoo_model, model: str, n: int, seed: int = 4242) -> np.ndarray:
    _, task, _ = zoo_model(model)
    return stack(task.generate(n, seed=seed, split="test"))[0]


def check_bit_exact(board, blob: bytes, x: np.ndarray, T: int, n: int, steps: int, golden=None) -> int:
    """Every puzzle of x run on the board against golden; returns how many matched (asserts all)."""
    g = golden or B.from_blob(blob).run(x, T, n, steps, keep_carries=True)
    for i in range(len(x)):
        r = board.run(RunRequest(x[i], T, n, steps, carries=True), timeout=60)
        assert r.steps_run == steps
        np.testing.assert_array_equal(r.per_step, g["per_step"][:, i], err_msg=f"{board.describe()} puzzle {i}")
        np.testing.assert_array_equal(r.halt_acc, g["halt_acc"][:, i], err_msg=f"{board.describe()} puzzle {i}")
        np.testing.assert_array_equal(r.y, g["y"][-1, -1, i], err_msg=f"{board.describe()} final y, puzzle {i}")
        np.testing.assert_array_equal(r.z, g["z"][-1, -1, i], err_msg=f"{board.describe()} final z, puzzle {i}")
    return len(x)


def header_crc(blob: bytes) -> int:
    return struct.unpack_from("<I", blob, 12)[0]


# --- in this process: NativeServer / HostBoard ------------------------------------------------------

def test_two_host_boards_with_different_models_each_answer_with_their_own(blobs, zoo_model):
    """Started one after the other, the first still reports and runs its own model (before: the
    second's, through one static server); and closing one leaves the other working."""
    t = load_target(TARGET)
    mlp, att = blobs("sudoku6-mlp", "int8"), blobs("maze7-mlp", "int4-pc")
    xa, xb = held_out(zoo_model, "sudoku6-mlp", 3), held_out(zoo_model, "maze7-mlp", 3)
    a = HostBoard(t, mlp)
    a.start()
    b = HostBoard(t, att)
    try:
        first = a.info()
        b.start()
        ia, ib = a.info(), b.info()
        assert (ia.blob_crc, ia.seq_len, ia.blob_size) == (header_crc(mlp), 36, len(mlp)) == \
            (first.blob_crc, first.seq_len, first.blob_size)
        assert (ib.blob_crc, ib.seq_len, ib.blob_size) == (header_crc(att), 49, len(att))
        check_bit_exact(a, mlp, xa, 1, 2, 2)
        check_bit_exact(b, att, xb, 1, 2, 2)
        check_bit_exact(a, mlp, xa, 2, 1, 3)
        a.close()
        assert b.info().blob_crc == header_crc(att)
        check_bit_exact(b, att, xb, 2, 2, 2)
    finally:
        a.close()
        b.close()
    with pytest.raises(RuntimeError, match="not started"):
        a.info()


def test_host_boards_on_two_threads_are_all_bit_exact(blobs, zoo_model):
    """Two boards on one blob, 50 puzzles each on its own thread, at the same time (ctypes releases
    the GIL while the C core runs): every result equals golden (before: 61 of 150 differed)."""
    t = load_target(TARGET)
    blob = blobs("sudoku6-mlp", "int8")
    x = held_out(zoo_model, "sudoku6-mlp", 100, seed=77)
    parts = [x[:50], x[50:]]
    golden = [B.from_blob(blob).run(p, 1, 2, 2, keep_carries=True) for p in parts]
    done, errors = [0, 0], []

    def work(k: int, board: HostBoard):
        try:
            done[k] = check_bit_exact(board, blob, parts[k], 1, 2, 2, golden[k])
        except BaseException as e:        # reported below, with the thread
            errors.append((k, e))

    boards = [HostBoard(t, blob, board_id=f"host-{k}") for k in range(2)]
    for b in boards:
        b.start()
    try:
        threads = [threading.Thread(target=work, args=(k, boards[k])) for k in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
    finally:
        for b in boards:
            b.close()
    assert not errors, errors
    assert done == [50, 50]


def test_native_servers_share_nothing_and_close_independently(blobs):
    mlp, att = blobs("sudoku6-mlp", "int8"), blobs("maze7-mlp", "int4-pc")
    a = native.NativeServer(mlp, region=2 << 20)
    with native.NativeServer(att, region=2 << 20, arena_capacity=1 << 20) as b:
        assert a.blob_status == b.blob_status == 0
        for server, blob in ((a, mlp), (b, att)):
            kind, seq, body = P.unframe(server.feed(P.frame(P.INFO, 3))[:-1])
            info = P.parse_info(body)
            assert kind == P.INFO_RSP and info.blob_crc == header_crc(blob)
        assert P.parse_info(P.unframe(b.feed(P.frame(P.INFO, 4))[:-1])[2]).arena_capacity == 1 << 20
    assert b.closed and not a.closed
    with pytest.raises(RuntimeError, match="closed"):
        b.feed(P.frame(P.PING, 1))
    assert P.unframe(a.feed(P.frame(P.PING, 5, b"hi"))[:-1]) == (P.PONG, 5, b"hi")
    a.close()
    a.close()                              # twice is fine
    with pytest.raises(ValueError, match="TRM_HOST_ARENA_MAX"):
        native.NativeServer(mlp, arena_capacity=1 << 30)


def test_a_stale_library_is_named_with_what_to_do(tmp_path):
    """A libtrm_host.so of another ABI version: the error names the file and how to rebuild it."""
    import shutil
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    src, lib = tmp_path / "old.c", tmp_path / "libtrm_host.so"
    src.write_text("int trm_host_abi_version(void) { return 1; }\n"
                   "unsigned long trm_host_model_bytes(void) { return 0; }\n"
                   + "".join(f"void {f}(void) {{}}\n" for f in (
                       "trm_host_parse", "trm_host_model_info", "trm_workspace_bytes", "trm_host_run_batch",
                       "trm_host_server_open", "trm_host_server_feed", "trm_host_server_close", "trm_status_name")))
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    with pytest.raises(RuntimeError) as e:
        native.library(str(lib))
    msg = str(e.value)
    assert str(lib) in msg and "ABI version 1" in msg and f"needs {native.ABI_VERSION}" in msg
    assert f"rm -r {tmp_path}" in msg and "rebuilt" in msg


# --- sanitizer and hook builds of the driver: trm_check serve ----------------------------------------

SAN_ENV = {"ASAN_OPTIONS": "halt_on_error=1:detect_leaks=0:strict_string_checks=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def check_exe(variant: str):
    if variant.startswith("sanitize"):
        ok, why = native.sanitizer_available(variant=variant)
        if not ok:
            pytest.skip(f"{variant}: AddressSanitizer/UBSan runtime unavailable: {why}")
    return native.build(native.CHECK, variant)


def serve(exe, tmp_path, region: int, arena: int, *servers: tuple[bytes | None, bytes], mode: str = "serve"
          ) -> tuple[list, str]:
    """Run ``trm_check serve`` (or ``serve-threads``: each server on its own thread) with one server per
    (blob, wire input); returns each server's answers as (type, seq, payload) and the driver's stdout."""
    args = []
    for k, (blob, wire) in enumerate(servers):
        bpath = "-"
        if blob is not None:
            bpath = tmp_path / f"blob{k}.bin"
            bpath.write_bytes(blob)
        (tmp_path / f"in{k}.bin").write_bytes(wire)
        args += [bpath, tmp_path / f"in{k}.bin", tmp_path / f"out{k}.bin"]
    p = subprocess.run([str(exe), mode, str(region), str(arena), *map(str, args)], capture_output=True,
                       text=True, env={**os.environ, **SAN_ENV}, timeout=600)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr[-4000:]
    assert p.returncode == 0, p.stderr[-4000:]
    out = []
    for k in range(len(servers)):
        raw = (tmp_path / f"out{k}.bin").read_bytes()
        out.append([P.unframe(w) for w in raw.split(b"\0")[:-1]])
    return out, p.stdout


def run_frames(x: np.ndarray, T: int, n: int, steps: int, seq0: int = 1) -> bytes:
    return b"".join(P.frame(P.RUN, seq0 + i, P.run_payload(x[i], T, n, steps, carries=True)) for i in range(len(x)))


def assert_results_golden(answers, blob: bytes, x: np.ndarray, T: int, n: int, steps: int):
    g = B.from_blob(blob).run(x, T, n, steps, keep_carries=True)
    hidden = B.read_header(blob)["hidden"]
    results = [(seq, body) for kind, seq, body in answers if kind == P.RESULT]
    assert len(results) == len(x), [(k, s, b[:80]) for k, s, b in answers if k != P.RESULT]
    for i, (seq, body) in enumerate(results):
        r = P.parse_result(body, hidden)
        np.testing.assert_array_equal(r.per_step, g["per_step"][:, i], err_msg=f"puzzle {i}")
        np.testing.assert_array_equal(r.halt_acc, g["halt_acc"][:, i], err_msg=f"puzzle {i}")
        np.testing.assert_array_equal(r.y, g["y"][-1, -1, i], err_msg=f"final y, puzzle {i}")
        np.testing.assert_array_equal(r.z, g["z"][-1, -1, i], err_msg=f"final z, puzzle {i}")


def test_a_strong_cycle_hook_leaves_the_results_alone(tmp_path, blobs, zoo_model):
    """A build overriding trm_cycle_hook (as trm.h allows a port): RESULT's final carries still equal
    golden; they come from trm_result's own buffers, not from what the weak hook records."""
    exe = check_exe("hook")
    blob = blobs("sudoku6-mlp", "int8")
    x = held_out(zoo_model, "sudoku6-mlp", 4, seed=5)
    T, n, steps = 2, 2, 3
    (answers,), stdout = serve(exe, tmp_path, 2 << 20, 65536, (blob, run_frames(x, T, n, steps)))
    assert stdout.split() == ["hook", "calls", str(len(x) * T * steps)]   # the strong hook ran, every cycle
    assert_results_golden(answers, blob, x, T, n, steps)
    # halting that stops early: the carries (placed for all steps) are compacted with the predictions
    g = B.from_blob(blob).run(x, T, n, 8, keep_carries=True)
    wire = b"".join(P.frame(P.RUN, i + 1, P.run_payload(x[i], T, n, 8, halting=True, carries=True)) for i in range(len(x)))
    (answers,), _ = serve(exe, tmp_path, 2 << 20, 65536, (blob, wire))
    for i, (kind, seq, body) in enumerate(answers):
        r = P.parse_result(body, 32)
        halted = np.flatnonzero(g["halt"][:, i])
        last = int(halted[0]) if len(halted) else 7
        assert r.steps_run == last + 1
        np.testing.assert_array_equal(r.y, g["y"][last, -1, i])
        np.testing.assert_array_equal(r.z, g["z"][last, -1, i])


@pytest.mark.parametrize("variant", ["sanitize", "sanitize32"])
def test_sanitized_servers_side_by_side_and_one_closed_early(variant, tmp_path, blobs, zoo_model):
    """Two servers with different models fed in turn, the first closed (freed) after 2 puzzles while
    the second goes on with 6: all bit-exact, no AddressSanitizer/UBSan report (64- and 32-bit)."""
    exe = check_exe(variant)
    mlp, att = blobs("sudoku6-mlp", "int8"), blobs("maze7-mlp", "int4-pc")
    xa, xb = held_out(zoo_model, "sudoku6-mlp", 2), held_out(zoo_model, "maze7-mlp", 6)
    info = P.frame(P.INFO, 100)
    (a, b), _ = serve(exe, tmp_path, 2 << 20, 65536, (mlp, info + run_frames(xa, 1, 2, 2)),
                      (att, info + run_frames(xb, 1, 2, 2) + info))
    assert P.parse_info(a[0][2]).blob_crc == header_crc(mlp)
    assert P.parse_info(b[0][2]).blob_crc == P.parse_info(b[-1][2]).blob_crc == header_crc(att)
    assert_results_golden(a[1:], mlp, xa, 1, 2, 2)
    assert_results_golden(b[1:-1], att, xb, 1, 2, 2)


@pytest.mark.parametrize("variant", ["sanitize", "sanitize32"])
def test_sanitized_servers_on_two_threads_are_bit_exact(variant, tmp_path, blobs, zoo_model):
    """Two servers on one blob, 25 puzzles each, each fed on its own thread at the same time: every
    result equals golden, no AddressSanitizer/UBSan report (64- and 32-bit)."""
    exe = check_exe(variant)
    blob = blobs("sudoku6-mlp", "int8")
    x = held_out(zoo_model, "sudoku6-mlp", 50, seed=78)
    (a, b), _ = serve(exe, tmp_path, 2 << 20, 65536, (blob, run_frames(x[:25], 1, 2, 2)),
                      (blob, run_frames(x[25:], 1, 2, 2)), mode="serve-threads")
    assert_results_golden(a, blob, x[:25], 1, 2, 2)
    assert_results_golden(b, blob, x[25:], 1, 2, 2)


def bench_overflow_frames() -> dict[str, bytes]:
    """BENCH shapes whose byte sizes pass 2^32: a 32-bit sum wrapped to a matrix that 'fit'."""
    return {"int8": P.frame(P.BENCH, 11, P.bench_payload(65528, 65535, 8, 1)),
            "int4": P.frame(P.BENCH, 12, P.bench_payload(65535, 65535, 4, 1))}


def bench_need(rows: int, cols: int, bits: int) -> int:
    """The arena bytes BENCH needs (no DSP scratch: these shapes are past the DSP path's 256 columns)."""
    row_bytes = (cols + 1) // 2 if bits == 4 else cols
    return 8 * rows + (row_bytes * rows + 7) // 8 * 8 + cols + rows


@pytest.mark.parametrize("variant", ["sanitize", "sanitize32"])
def test_sanitized_bench_overflow_gets_an_error(variant, tmp_path):
    """The BENCH overflow frames get an ARGS ERROR with the bytes needed and available, and the server
    answers the next request; nothing is written past the (heap) arena (64- and 32-bit builds)."""
    exe = check_exe(variant)
    frames = bench_overflow_frames()
    wire = b"".join(frames.values()) + P.frame(P.PING, 13, b"still") + P.frame(P.BENCH, 14, P.bench_payload(16, 32, 8, 2))
    (answers,), _ = serve(exe, tmp_path, 4096, 65536, (None, wire))
    (k8, _, e8), (k4, _, e4), pong, bench = answers
    assert k8 == k4 == P.ERROR and e8[0] == e4[0] == 7                         # ARGS
    assert e8[2:].decode() == f"BENCH 65528x65535 int8 needs {bench_need(65528, 65535, 8)} bytes, the arena has 65536"
    assert e4[2:].decode() == f"BENCH 65535x65535 int4 needs {bench_need(65535, 65535, 4)} bytes, the arena has 65536"
    assert pong == (P.PONG, 13, b"still")
    assert bench[0] == P.BENCH_RSP
    from harness.golden.arith import linear
    w, x, M, n = P.bench_reference(16, 32, 8)
    assert P.parse_bench(bench[2]).checksum == P.bench_checksum(linear(x[None], w, M, n)[0])


def carries_past_32_bits_blob(L: int = 65535, D: int = 32769) -> bytes:
    """A valid blob with no layers whose carries 2·L·D = 2^32 + 65534 bytes: on a 32-bit size_t the
    workspace wrapped to 65,538 bytes and trm_run wrote the carries past it."""
    tensors = [("embed", 0, 1, D, bytes(D)), ("y_init", 0, D, 1, bytes(D)), ("z_init", 0, D, 1, bytes(D)),
               ("head", 0, 1, D, bytes(D)), ("head.mn", 3, 1, 2, struct.pack("<ii", 1 << 30, 40)),
               ("halt", 0, D, 1, bytes(D))]
    at = (B.HEADER.size + B.ENTRY.size * len(tensors) + 15) // 16 * 16
    entries, payload = [], bytearray()
    for name, dtype, rows, cols, data in tensors:
        off = at + len(payload)
        entries.append(B.ENTRY.pack(name.encode(), dtype, 2, 0, rows, cols, off, len(data)))
        payload += data + bytes(-len(data) % 16)
    buf = bytearray(at) + payload
    buf[:4] = b"TRMB"
    struct.pack_into("<HHI", buf, 4, 1, 64, len(buf))
    struct.pack_into("<HHHBBBB", buf, 16, 1, L, D, 0, 0, 0, 8)           # V, L, D, layers 0, mlp
    buf[30:34] = bytes([1, 1, 1, 0])
    struct.pack_into("<H", buf, 34, len(tensors))
    struct.pack_into("<Ii3h2h", buf, 36, 1 << 10, 0, 4096, 4096, 4096, 4096, 4096)
    buf[64:64 + len(b"".join(entries))] = b"".join(entries)
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])) & 0xFFFFFFFF)
    return bytes(buf)


def test_sanitized32_parser_refuses_carries_a_32_bit_size_t_cannot_hold(tmp_path):
    """L·D > SIZE_MAX/8: BLOB_SHAPE on a 32-bit build (before: the workspace size wrapped and the run
    overflowed it). The 64-bit build accepts the blob (checked without running it: 8 GB of carries)."""
    exe = check_exe("sanitize32")
    blob = carries_past_32_bits_blob()
    (tmp_path / "big.blob").write_bytes(blob)
    p = subprocess.run([str(exe), "parse", str(tmp_path / "big.blob")], capture_output=True, text=True,
                       env={**os.environ, **SAN_ENV}, timeout=300)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr[-4000:]
    assert p.returncode == 0 and p.stdout.split() == ["BLOB_SHAPE", "-"], (p.stdout, p.stderr[-2000:])
    m = native.NativeModel(blob)                     # 64-bit: a valid model (no run: 2·L·D = 4 GiB)
    assert (m.info["seq_len"], m.info["hidden"]) == (65535, 32769)
    assert m.workspace_bytes == (2 * 65535 * 32769 + 7) // 8 * 8 + 2


def test_a_farm_with_two_host_boards_journals_golden_answers(tmp_path):
    """Two host boards in one farm, two blobs (int8, int4-naive) served at the same time: every puzzle
    journalled ok and golden_match (before: one static server, wrong answers journalled)."""
    from harness.boards.inventory import BoardSpec
    from harness.farm.plan import plan_from_dict
    from harness.farm.scheduler import farm_run
    from harness.report.tables import load_run, tables
    plan = {"name": "two-hosts", "models": ["sudoku6-mlp"], "recipes": ["int8", "int4-naive"],
            "depths": ["1,2,2"], "targets": [TARGET], "puzzles": {"count": 12, "seed": 3},
            "run": {"puzzle_timeout_s": 10, "retries": 1}}
    boards = [BoardSpec(f"h{k}", "host", TARGET, {}) for k in (1, 2)]
    farm_run(plan_from_dict(plan, "two-hosts"), boards, tmp_path, log=lambda m: None)
    p = tables(load_run(tmp_path))["puzzles"]
    assert len(p) == 2 * 12 and (p.status == "ok").all(), p.status.value_counts()
    assert p.golden_match.all(), p[~p.golden_match]
    assert set(p.board) == {"h1", "h2"}


def test_info_into_the_smallest_transmit_buffer_is_a_response_error(blobs):
    """server.h allows a 64-byte response buffer; INFO (70 bytes here) used to be written past it
    (found by fuzz_request). Now it is refused with RESPONSE, naming the bytes needed."""
    with native.NativeServer(blobs("sudoku6-mlp", "int8"), tx_bytes=64) as s:
        kind, _, body = P.unframe(s.feed(P.frame(P.INFO, 9))[:-1])
        assert kind == P.ERROR and P.ERRORS[body[0]] == "RESPONSE"
        assert b"INFO needs" in body and b"has 64" in body


# --- the plugin closes a shared board after its last test ------------------------------------------------

SHARED_BOARD_TESTS = """
SEEN = []

def test_alpha(board):
    SEEN.append(board)
    assert board.session is not None

def test_beta(board):
    assert board.session is not None and board is SEEN[0]

def test_omega():
    assert len(SEEN) == 1
    print("OPEN AFTER LAST USER", SEEN[0].session is not None)
"""


def test_the_shared_board_is_closed_after_the_last_test_that_uses_it(pytester):
    """An idle emulator costs a core (Renode's spins in WFI): the ``board`` fixture's board is closed once
    the last collected test that uses it is torn down, counting only the tests left after ``-k``."""
    pytester.makepyfile(test_shared=SHARED_BOARD_TESTS)
    # test_beta, deselected, would use the board after test_alpha: the board closes after test_alpha
    r = pytester.runpytest_subprocess("-s", "-p", "no:labgrid", "--target", TARGET, "-k", "alpha or omega")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*OPEN AFTER LAST USER False*"])
