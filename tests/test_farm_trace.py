"""Traces in the farm (plan ``[run] trace``): the plan key and its errors, the journal's traces and
divergences (schema version, one transaction per puzzle, once per run), device fidelity computed by the
host's formula, a QEMU farm run reading every cycle's carry over the probe, the report's device and host
fidelity side by side, and the first divergence of a board fed a blob one weight away from golden's."""
from __future__ import annotations

import hashlib
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.boards.inventory import BoardSpec
from harness.farm.journal import SCHEMA_VERSION, Journal, JournalError
from harness.farm.plan import PlanError, plan_from_dict
from harness.run import first_divergence

TARGET = "mps2-an386"
PLAN = {"name": "traced", "models": ["sudoku6-mlp"], "recipes": ["int8"], "depths": ["2,2,2"], "targets": [TARGET],
        "puzzles": {"count": 4, "seed": 3}, "run": {"puzzle_timeout_s": 20, "retries": 1, "profile_puzzles": 0}}

needs_qemu = pytest.mark.skipif(subprocess.run(["which", "qemu-system-arm"], capture_output=True).returncode != 0,
                                reason="qemu-system-arm is not installed")


def quiet(message: str) -> None:
    pass


# --- the plan key ---------------------------------------------------------------------------------
def test_a_plan_traces_two_puzzles_a_job_unless_it_says_otherwise():
    from harness.farm.plan import load_plan
    assert plan_from_dict(PLAN).run.trace == "sample:2" and load_plan("demo").run.trace == "sample:2"
    run = lambda trace: plan_from_dict({**PLAN, "run": {"trace": trace}}).run
    assert [run(t).traced(5) for t in ("off", "all", "sample:3", "sample:9", "sample:1")] == [0, 5, 3, 5, 1]


@pytest.mark.parametrize("value", ["sometimes", "sample:0", "sample:", "sample:x", "sample:-1", "sample:2.5",
                                   "sample:100001", "Sample:2", 2, True, ""])
def test_a_bad_trace_setting_names_the_file_section_key_and_what_is_allowed(value):
    allowed = ("expected 'off', 'all' or 'sample:N' with N an integer >= 1 and <= 100000 "
               "(a job's first N puzzles traced)")
    with pytest.raises(PlanError) as e:
        plan_from_dict({**PLAN, "run": {"trace": value}}, "bad.toml")
    assert str(e.value) == f"bad.toml [run]: trace = {value!r}: {allowed}"


# --- the journal ----------------------------------------------------------------------------------
def _cycle(step: int, cycle: int, equal: bool = True) -> dict:
    carry = bytes([step, cycle]) * 4
    return {"puzzle": "p1", "step": step, "cycle": cycle, "model": "m", "recipe": "int8", "depth": "T2n2s2",
            "target": TARGET, "board": "q1", "backend": "qemu", "fidelity": 0.5 + step, "golden_fidelity": 0.25,
            "carry_sha256": hashlib.sha256(carry).hexdigest(), "equals_golden": equal,
            "carry": None if equal else carry}


def test_the_journal_keeps_a_puzzles_trace_and_divergence_once(tmp_path):
    div = {"puzzle": "p1", "model": "m", "recipe": "int8", "depth": "T2n2s2", "target": TARGET, "board": "q1",
           "step": 1, "cycle": 0, "update_name": "z2", "block": None, "carry": "z", "row": 3, "channel": 7,
           "device": -5, "golden": 12, "resolution": "update"}
    with Journal.in_dir(tmp_path) as j:
        j.record_trace("r", "job", [_cycle(0, 0), _cycle(0, 1), _cycle(1, 0, equal=False)], div)
        with pytest.raises(sqlite3.IntegrityError):     # a second trace of the puzzle: none of it lands
            j.record_trace("r", "job", [_cycle(1, 1), _cycle(0, 0)], None)
    with Journal.in_dir(tmp_path) as j:
        rows = j.traces("r")
        assert [(r["step"], r["cycle"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
        assert [r["carry"] for r in rows] == [None, None, bytes([1, 0]) * 4]
        assert [r["equals_golden"] for r in rows] == [1, 1, 0] and rows[2]["fidelity"] == 1.5
        assert j.traced("r", "job") == {"p1"} and j.traced("r", "other") == set()
        assert j.divergences("r") == [{"job": "job", **div}]


def test_an_older_journal_gains_the_trace_tables_and_a_newer_one_is_refused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    db = sqlite3.connect(old / "journal.sqlite")       # a journal as written before schema versions
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE results (run TEXT NOT NULL, job TEXT NOT NULL, puzzle TEXT NOT NULL, "
                     "status TEXT NOT NULL, board TEXT, attempts INTEGER NOT NULL, row TEXT NOT NULL, "
                     "PRIMARY KEY (run, job, puzzle));"
                     "INSERT INTO results VALUES ('r', 'job', 'p1', 'ok', 'b', 1, '{}');")
    db.close()
    with Journal.in_dir(old) as j:
        assert j.done("r", "job") == {"p1"} and j.traces("r") == [] and j.divergences("r") == []
    assert sqlite3.connect(old / "journal.sqlite").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    newer = tmp_path / "newer"
    Journal.in_dir(newer).close()
    db = sqlite3.connect(newer / "journal.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}; this harness writes version 2"):
        Journal.in_dir(newer)


# --- the fidelity formula and the divergence --------------------------------------------------------
def test_device_fidelity_is_the_host_formula():
    """carry_fidelity (what the farm computes from carries read off a board) gives, on golden's carries,
    exactly the host's fidelity (``evaluate_compressed``'s path); and one cycle by hand."""
    from harness.compress.compressed import Compressed
    from harness.compress.recipes import get_recipe
    from harness.compress.study import reference_runs
    from harness.depth import Depth
    from harness.export import blob as B
    from harness.export.exporter import export_blob
    from harness.golden.fidelity import carry_fidelity, cosine_per_cycle
    from harness.models.checkpoint import load_checkpoint
    from harness.tasks import stack
    from harness.tasks.puzzle_source import load_puzzle_source
    net, task, _ = load_checkpoint("sudoku6-mlp")
    puzzles = load_puzzle_source(task, "3", 5)[1]
    depth = Depth.parse("2,2,2", None)
    im = B.from_blob(export_blob("sudoku6-mlp", "int8"))
    [ref] = reference_runs(net, puzzles, depth)
    host = cosine_per_cycle(ref, Compressed(get_recipe("int8"), net, int_model=im).run(stack(puzzles)[0], depth))
    g = im.run(stack(puzzles)[0], depth.T, depth.n, depth.steps)
    device = carry_fidelity(ref, g["y"], g["z"], im.carry_scale)
    assert device.shape == (3, 4) and np.array_equal(device, host) and 0.9 < device.min() < 1
    one = lambda v: np.full((1, 1, 1, 1, 1), v)
    by_hand = carry_fidelity({"y": one(2.0), "z": one(2.0)}, one(3).astype(np.int8), one(0).astype(np.int8), 0.25)
    assert by_hand[0, 0] == pytest.approx(1 / np.sqrt(2), abs=1e-12)    # (0.75, 0) against (2, 2)


def test_the_first_divergence_is_the_first_cycle_z_before_y_and_its_first_element():
    rng = np.random.default_rng(0)
    y, z = (rng.integers(-128, 128, (3, 2, 4, 5), dtype=np.int8) for _ in range(2))
    assert first_divergence((y, z), (y.copy(), z.copy())) is None
    yd, zd = y.copy(), z.copy()
    yd[1, 0, 2, 3] += 1                     # y at step 1, cycle 0 ...
    zd[1, 0, 3, 1] += 1                     # ... and z of the same cycle: z's updates come first
    zd[1, 0, 3, 4] += 1
    yd[0, 1, 0, 0] += 0
    zd[2, 1, 0, 0] += 1                     # later: not the first
    got = first_divergence((yd, zd), (y, z))
    assert got == {"step": 1, "cycle": 0, "update_name": "z", "block": None, "carry": "z", "row": 3, "channel": 1,
                   "device": int(zd[1, 0, 3, 1]), "golden": int(z[1, 0, 3, 1]), "resolution": "cycle"}
    zd[1, 0] = z[1, 0]
    assert first_divergence((yd, zd), (y, z))["update_name"] == "y"
    assert first_divergence((yd, zd), (y, z))[("row")] == 2


# --- on QEMU --------------------------------------------------------------------------------------
def _run(plan: dict, out: Path, inject: str | None = None, resume: bool = False, log=quiet) -> None:
    from harness.farm.scheduler import farm_run
    farm_run(plan_from_dict(plan, "traced"), [BoardSpec("q1", "qemu", TARGET, {"inject": inject} if inject else {})],
             out, resume=resume, log=log)


@needs_qemu
def test_a_farm_run_with_trace_all_journals_every_cycle_of_every_puzzle_and_reports_both_fidelities(tmp_path):
    from harness.export import blob as B
    from harness.export.exporter import export_blob
    from harness.models.checkpoint import load_checkpoint
    from harness.report.build import build_report
    from harness.report.tables import load_run, tables
    from harness.tasks import stack
    from harness.tasks.puzzle_source import load_puzzle_source
    out = tmp_path / "run"
    _run({**PLAN, "run": {**PLAN["run"], "trace": "all"}}, out)
    rd = load_run(out)
    assert len(rd.results) == 4 and all(r["golden_match"] for r in rd.results) and not rd.divergences
    puzzles = load_puzzle_source(load_checkpoint("sudoku6-mlp")[1], "4", 3)[1]
    g = B.from_blob(export_blob("sudoku6-mlp", "int8")).run(stack(puzzles)[0], 2, 2, 2)
    by_puzzle = {p.id: k for k, p in enumerate(puzzles)}
    steps = {r["puzzle_id"]: r["steps"] for r in rd.results}
    assert [(r["puzzle"], r["step"], r["cycle"]) for r in rd.traces] == \
        [(p, s, c) for p in sorted(steps) for s in range(steps[p]) for c in range(2)]   # every cycle, every puzzle
    for r in rd.traces:
        k = by_puzzle[r["puzzle"]]
        golden_carry = g["y"][r["step"], r["cycle"], k].tobytes() + g["z"][r["step"], r["cycle"], k].tobytes()
        assert r["carry_sha256"] == hashlib.sha256(golden_carry).hexdigest()
        assert r["equals_golden"] == 1 and r["carry"] is None and r["backend"] == "qemu"
        assert r["fidelity"] == r["golden_fidelity"] and 0.9 < r["fidelity"] < 1
    fid = tables(rd)["device_fidelity"]
    assert list(fid.traced_puzzles) == [4] and list(fid.cycles_equal_golden) == [len(rd.traces)]
    build_report(out)
    md = (out / "report.md").read_text()
    section = md.split("## Fidelity on the device, beside the host's\n", 1)[1].split("\n## ", 1)[0]
    assert ("| traced puzzles | cycles | cycles equal to golden | fidelity_final (device, over the probe) | "
            "fidelity_final (host, golden, same puzzles) | fidelity_final (host, golden, all puzzles) |") in section
    assert "First divergence" not in section and "Without traces" not in section
    assert "](plots/device_fidelity.png)" in section
    assert (out / "plots" / "device_fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data-table='device-fidelity'" in (out / "report.html").read_text()


@needs_qemu
def test_a_traced_count_that_differs_from_the_plain_run_stops_the_run(tmp_path, monkeypatch):
    """The traced runs' counts are checked against the plain rows': here the traced row is made to say one
    SysTick tick more, which is what a probe that perturbed the count would look like."""
    import harness.farm.scheduler as S
    from harness.farm.scheduler import FarmStopped
    real = S.trace_puzzle

    def one_more_tick(*args, **kwargs):
        row, cycles, divergence = real(*args, **kwargs)
        return {**row, "counter": row["counter"] + 1}, cycles, divergence

    monkeypatch.setattr(S, "trace_puzzle", one_more_tick)
    out = tmp_path / "run"
    with pytest.raises(FarmStopped, match="over the probe gave .*tracing must change neither"):
        _run(PLAN, out)
    with Journal.in_dir(out) as j:
        assert not j.traces(j.meta("run"))


@pytest.mark.slow
@needs_qemu
def test_a_trace_failure_is_an_event_and_a_resume_traces_the_missing_puzzles_once(tmp_path, monkeypatch):
    """hang@4: the 4 plain runs pass, the board freezes in the first traced one. The rows stay, the failure
    is an event, nothing is traced; a resume traces the job's 2 sampled puzzles, a second finds nothing."""
    import harness.farm.scheduler as S
    plan = {**PLAN, "run": {**PLAN["run"], "puzzle_timeout_s": 3}}
    out = tmp_path / "run"
    _run(plan, out, inject="hang@4")
    with Journal.in_dir(out) as j:
        run = j.meta("run")
        assert len(j.done(run, j.results(run)[0]["job"])) == 4 and not j.traces(run)
        failures = [e for e in j.events(run) if e["kind"] == "failure"]
    assert len(failures) == 1 and failures[0]["message"].startswith("trace of puzzle sudoku-test-3-0")
    real, calls = S.trace_puzzle, []
    monkeypatch.setattr(S, "trace_puzzle", lambda *a, **kw: calls.append(a[4].id) or real(*a, **kw))
    for _ in range(2):
        _run(plan, out, resume=True)
    with Journal.in_dir(out) as j:
        traced = {r["puzzle"] for r in j.traces(j.meta("run"))}
    assert calls == ["sudoku-test-3-0", "sudoku-test-3-1"] and traced == set(calls)


def flip_weight(blob: bytes, tensor: str, row: int, col: int, delta: int) -> bytes:
    """``blob`` with the int8 weight [row, col] of ``tensor`` changed by ``delta``, found through the blob's
    tensor table (``export.blob.ENTRY``), the CRC made right again so that the firmware takes it."""
    from harness.export import blob as B
    at = B.table_offset(blob)
    for i in range(B.read_header(blob)["tensor_count"]):
        name, code, _, _, rows, cols, off, size = B.ENTRY.unpack_from(blob, at + i * B.ENTRY.size)
        if name.rstrip(b"\0").decode() == tensor:
            assert B.DTYPES[code][0] == "int8" and size == rows * cols
            buf = bytearray(blob)
            k = off + row * cols + col
            buf[k] = (int(np.int8(buf[k] - 256 if buf[k] > 127 else buf[k])) + delta) & 0xFF
            struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])) & 0xFFFFFFFF)
            return bytes(buf)
    raise KeyError(tensor)


def host_divergence(good, bad, tokens: np.ndarray, T: int, n: int, steps: int) -> dict:
    """Where golden with the changed weight (``bad``) first parts from golden (``good``), computed on the
    host: the first cycle whose carry differs, then the first update of that cycle, both models run from
    good's carry before it, whose output differs, and its first differing element."""
    g, b = good.run(tokens[None], T, n, steps), bad.run(tokens[None], T, n, steps)
    R, D = g["y"].shape[-2:]
    for i in range(steps * T):
        s, c = divmod(i, T)
        if np.array_equal(g["y"][s, c], b["y"][s, c]) and np.array_equal(g["z"][s, c], b["z"][s, c]):
            continue
        if i == 0:
            y0, z0 = np.broadcast_to(good.y_init, (1, R, D)), np.broadcast_to(good.z_init, (1, R, D))
        else:
            y0, z0 = g["y"][(i - 1) // T, (i - 1) % T], g["z"][(i - 1) // T, (i - 1) % T]
        x = good.input_rows(tokens[None].astype(np.int64))
        args = (x, y0.astype(np.int64), z0.astype(np.int64), n)
        for (name, want), (_, got) in zip(good.cycle(*args), bad.cycle(*args)):
            if not np.array_equal(want, got):
                row, ch = map(int, np.argwhere(want[0] != got[0])[0])
                return {"step": s, "cycle": c, "update_name": name, "row": row, "channel": ch,
                        "device": int(got[0, row, ch]), "golden": int(want[0, row, ch])}
    raise AssertionError("the changed weight never shows in a carry")


@needs_qemu
def test_a_board_fed_a_blob_one_weight_off_is_located_where_golden_says(tmp_path, monkeypatch):
    """The board runs the blob with one int8 weight of b1.ffn.down one higher; golden keeps the original.
    Every puzzle disagrees with golden, so the farm traces all three (one sampled, two for disagreeing) and
    locates each: the step, cycle, update and element (with both values) equal what golden computes on the
    host with the same weight changed, and these puzzles part at different updates (z1, y, z3)."""
    import harness.farm.scheduler as S
    from harness.export import blob as B
    from harness.export.exporter import export_blob
    from harness.models.checkpoint import load_checkpoint
    from harness.report.build import build_report
    from harness.tasks import stack
    from harness.tasks.puzzle_source import load_puzzle_source
    good_blob = export_blob("sudoku6-mlp", "int8")
    bad_blob = flip_weight(good_blob, "b1.ffn.down", 5, 7, 1)
    good_t, bad_t = B.parse(good_blob)[1], B.parse(bad_blob)[1]
    assert [k for k in good_t if not np.array_equal(good_t[k], bad_t[k])] == ["b1.ffn.down"]
    assert np.argwhere(good_t["b1.ffn.down"] != bad_t["b1.ffn.down"]).tolist() == [[5, 7]]
    real = S.Prepared.export_all

    def export_all(self, progress=None):
        real(self, progress)
        self.blobs[("sudoku6-mlp", "int8")].blob = bad_blob        # the board's; golden stays the good one

    monkeypatch.setattr(S.Prepared, "export_all", export_all)
    plan = {**PLAN, "depths": ["2,3,2"], "puzzles": {"count": 3, "seed": 7},
            "run": {**PLAN["run"], "trace": "sample:1"}}
    out, said = tmp_path / "run", []
    _run(plan, out, log=said.append)
    assert said == ['3 traced puzzle(s) part from golden on the board: where, in the report\'s "First divergence '
                    'from golden" (journal table divergences)']
    with Journal.in_dir(out) as j:
        run = j.meta("run")
        results, traces, divs = j.results(run), j.traces(run), {d["puzzle"]: d for d in j.divergences(run)}
    assert not any(r["golden_match"] for r in results)
    puzzles = load_puzzle_source(load_checkpoint("sudoku6-mlp")[1], "3", 7)[1]
    x = stack(puzzles)[0]
    good, bad = B.from_blob(good_blob), B.from_blob(bad_blob)
    assert set(divs) == {p.id for p in puzzles}
    for k, p in enumerate(puzzles):
        want = host_divergence(good, bad, x[k], 2, 3, 2)
        d = divs[p.id]
        assert {key: d[key] for key in want} == want, p.id
        assert d["block"] is None and d["resolution"] == "update" and d["carry"] == want["update_name"][0]
        first = next(t for t in traces if t["puzzle"] == p.id and not t["equals_golden"])
        assert (first["step"], first["cycle"]) == (want["step"], want["cycle"]) and first["carry"] is not None
        assert all(t["carry"] is None for t in traces if t["puzzle"] == p.id and t["equals_golden"])
    assert [divs[p.id]["update_name"] for p in puzzles] == ["z1", "y", "z3"]
    build_report(out)
    md = (out / "report.md").read_text()
    section = md.split("### First divergence from golden\n", 1)[1].split("\n## ", 1)[0]
    d = divs[puzzles[1].id]
    assert (f"| sudoku6-mlp | int8 | T2n3s2 | {TARGET} | {puzzles[1].id} | {d['step']} | {d['cycle']} | y | "
            f"not observable | y[{d['row']}, {d['channel']}] | {d['device']} | {d['golden']} | update |") in section
    assert "| value (device, over the probe) | value (host, golden) |" in section


def test_a_physical_boards_probe_is_pyocds_with_the_boards_probe_and_target_type(monkeypatch):
    """A serial board has no GDB port: its trace goes through pyOCD, on the probe that flashed it, for the
    target's pyOCD type (no hardware here: the session is not opened, its arguments are checked)."""
    from harness.boards.serial import SerialBoard
    from harness.probe.pyocd_probe import PyOcdProbe
    from harness.run import open_probe
    from harness.targets import load_target
    target = load_target("netduinoplus2")
    board = SerialBoard(target, None, port="/dev/ttyACM9", probe_id="0669FF535155878281")
    opened = []
    monkeypatch.setattr(PyOcdProbe, "open", classmethod(lambda cls, *a, **kw: opened.append(a) or "probe"))
    assert board.debug_port() is None and open_probe(board) == "probe"
    assert opened == [("0669FF535155878281", target.pyocd_target)] and target.pyocd_target


def test_the_replays_name_the_update_and_a_replay_that_disagrees_leaves_the_cycle(monkeypatch):
    """locate_update without a board: the replays (``run_traced`` with a carry written at the first hook)
    are answered by golden with the changed weight, as a board holding that blob answers them. The update
    and element found equal ``host_divergence``'s; replays that do not give the board's carry after the
    diverging cycle again leave the cycle-level location (resolution "cycle")."""
    from types import SimpleNamespace

    import harness.run as R
    from harness.depth import Depth
    from harness.export import blob as B
    from harness.export.exporter import export_blob
    from harness.models.checkpoint import load_checkpoint
    from harness.probe.capture import CarryRecord
    from harness.tasks import stack
    from harness.tasks.puzzle_source import load_puzzle_source
    good_blob = export_blob("sudoku6-mlp", "int8")
    good, bad = B.from_blob(good_blob), B.from_blob(flip_weight(good_blob, "b1.ffn.down", 5, 7, 1))
    x = stack(load_puzzle_source(load_checkpoint("sudoku6-mlp")[1], "3", 7)[1])[0]
    depth = Depth.parse("2,3,2", None)
    replays = []

    def board_replay(board, probe, elf, request, timeout=600.0, prefix=0, start=None):
        replays.append(request.n)
        assert (request.T, request.steps, request.halting) == (2, 1, False) and start is not None
        rows = bad.input_rows(np.asarray(request.tokens, np.int64)[None])
        updates = bad.cycle(rows, start[0][None].astype(np.int64), start[1][None].astype(np.int64), request.n)
        return None, [None, CarryRecord(0, 1, updates[-1][1][0].astype(np.int8), updates[-2][1][0].astype(np.int8))]

    board = SimpleNamespace(firmware=None)
    names, runs = [], []
    for tokens in x:
        replays.clear()
        g, b = (m.run(tokens[None], depth.T, depth.n, depth.steps) for m in (good, bad))
        device, golden = (b["y"][:, :, 0], b["z"][:, :, 0]), (g["y"][:, :, 0], g["z"][:, :, 0])
        where = first_divergence(device, golden)
        monkeypatch.setattr(R, "run_traced", board_replay)
        got = R.locate_update(board, None, good, tokens, depth, where, device, golden)
        want = host_divergence(good, bad, tokens, depth.T, depth.n, depth.steps)
        assert {k: got[k] for k in want} == want and got["resolution"] == "update" and got["block"] is None
        names.append(got["update_name"])
        runs.append(list(replays))
        wrong = CarryRecord(0, 1, np.zeros_like(device[0][0, 0]), np.zeros_like(device[1][0, 0]))
        monkeypatch.setattr(R, "run_traced", lambda *a, **kw: (None, [None, wrong]))
        assert R.locate_update(board, None, good, tokens, depth, where, device, golden) == where
    assert names == ["z1", "y", "z3"] and where["resolution"] == "cycle"
    assert runs == [[3, 1], [3, 1, 2], [3, 1, 2]]    # j = n first (it must give the board's carry again), then 1..


def test_a_board_without_a_probe_traces_nothing_and_the_report_names_its_configurations(tmp_path):
    """The host build has no debug port: its jobs run and profile, nothing is traced, and the report's
    device-fidelity section says which configurations went without traces and why."""
    from harness.farm.scheduler import farm_run
    from harness.report.build import build_report
    from harness.report.tables import load_run
    out = tmp_path / "run"
    farm_run(plan_from_dict({**PLAN, "puzzles": {"count": 2, "seed": 3}}, "traced"), [BoardSpec("h1", "host", TARGET)],
             out, log=quiet)
    rd = load_run(out)
    assert len(rd.results) == 2 and not rd.traces and not rd.divergences
    build_report(out)
    section = (out / "report.md").read_text().split("## Fidelity on the device, beside the host's\n", 1)[1]
    assert "Without traces (1: a board with no probe, such as the host build, ran them" in section
    assert f"sudoku6-mlp int8 T2n2s2 on {TARGET}." in section and "| traced puzzles |" not in section
