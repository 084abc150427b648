"""A farm over two lab hosts through labgrid's real processes, on loopback: a `labgrid-coordinator`, and
per lab host a QEMU board served by `harness board serve` (UART and gdbstub on TCP) exported by a
`labgrid-exporter`; places created with `labgrid-client`. Nothing of labgrid is mocked."""
from __future__ import annotations

import importlib.metadata
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.boards.inventory import BoardSpec, InventoryError, load_inventory
from harness.export.exporter import export_blob
from harness.farm.journal import Journal
from harness.farm.plan import plan_from_dict
from harness.farm.scheduler import FarmStopped, farm_run
from harness.report.tables import load_run
from test_farm import _cli_run, _rows_in, assert_same_tables, frame, write_toml

TARGET = "mps2-an386"
PLAN = {"name": "lab", "models": ["sudoku6-mlp"], "recipes": ["int8"], "depths": ["1,1,2", "2,2,2"],
        "targets": [TARGET], "puzzles": {"count": 8, "seed": 5},
        "run": {"puzzle_timeout_s": 10, "retries": 1}, "budgets": {"min_exact_accuracy": 0.0}}
PLAN_TOML = """
name = "lab"
models = ["sudoku6-mlp"]
recipes = ["int8"]
depths = ["1,1,2", "2,2,2"]
targets = ["mps2-an386"]
[puzzles]
count = 8
seed = 5
[run]
puzzle_timeout_s = 10
retries = 1
[budgets]
min_exact_accuracy = 0.0
"""
TOTAL = 2 * 8

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("labgrid-coordinator") is None,
                                reason="needs qemu-system-arm and labgrid (`pip install labgrid`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A process in its own session, its output in a log file; ``kill`` ends its whole group."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None):
        self.log = log
        with open(log, "ab") as out:
            self.p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                      env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert self.p.poll() is None, f"{self.log.name} exited with {self.p.returncode}:\n{self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {text!r} in {self.log} within {timeout} s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait()


class Lab:
    """The coordinator, and lab hosts added per test (each: a served QEMU board, its exporter, a place)."""

    def __init__(self, root: Path, blob: Path):
        self.root, self.blob, self.procs = root, blob, []
        self.address = f"127.0.0.1:{free_port()}"
        (root / "coordinator").mkdir()   # it keeps places.yaml and resources.yaml in its working directory
        self.coordinator = self.start(["labgrid-coordinator", "-l", self.address], "coordinator.log",
                                      cwd=root / "coordinator")
        self.coordinator.wait_for("Coordinator ready")
        self.names = itertools.count(1)

    def start(self, cmd: list[str], log: str, **kw) -> Proc:
        proc = Proc(cmd, self.root / log, **kw)
        self.procs.append(proc)
        return proc

    def client(self, *args: str, env: dict | None = None) -> str:
        r = subprocess.run(["labgrid-client", "-x", self.address, *args], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **(env or {})})
        assert r.returncode == 0, f"labgrid-client {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    def host(self, power: bool = False, blob: bool = True) -> dict:
        """A lab host: `harness board serve` with the blob (none without ``blob``), its exporter, and a place
        matching its board; with ``power``, the board's power switch exported as a NetworkPowerPort too."""
        n = next(self.names)
        name, place = f"lab-{n}", f"place-{n}"
        port, gdb, switch = free_port(), free_port(), free_port()
        serve = self.start([sys.executable, "-m", "harness.cli", "board", "serve", "--target", TARGET, "--port",
                            str(port), "--gdb-port", str(gdb)] + (["--blob", str(self.blob)] if blob else [])
                           + (["--power-port", str(switch)] if power else []), f"{name}-serve.log")
        serve.wait_for("serving")
        yaml = self.root / f"{name}.yaml"
        yaml.write_text(f"board:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {port}\n    protocol: raw\n"
                        f"  NetworkService:\n    address: 127.0.0.1\n    port: {gdb}\n    username: gdb\n"
                        + (f"  NetworkPowerPort:\n    model: simplerest\n    host: 'http://127.0.0.1:{switch}/power/{{value}}'\n"
                           "    index: 0\n" if power else ""))
        exporter = self.start(["labgrid-exporter", "-c", self.address, "-n", name, str(yaml)], f"{name}-exporter.log")
        exporter.wait_for("Exporter ready")
        self.client("-p", place, "create")
        self.client("-p", place, "add-match", f"{name}/board/*")
        deadline = time.monotonic() + 30
        while f"{name}/board/NetworkSerialPort" not in self.client("resources"):
            assert time.monotonic() < deadline, f"{name}'s resources never reached the coordinator"
            time.sleep(0.2)
        return {"name": name, "place": place, "serve": serve, "exporter": exporter}

    def holder(self, place: str) -> str | None:
        for line in self.client("-p", place, "show").splitlines():
            if line.strip().startswith("acquired:"):
                value = line.split(":", 1)[1].strip()
                return None if value == "None" else value
        raise AssertionError(f"labgrid-client show {place} names no holder line")

    def inventory(self, hosts: list[dict], acquire_timeout: float = 30) -> list[BoardSpec]:
        return [BoardSpec(h["place"], "labgrid", TARGET, {"place": h["place"], "coordinator": self.address,
                                                         "acquire_timeout": acquire_timeout}) for h in hosts]

    def inventory_toml(self, path: Path, hosts: list[dict]) -> Path:
        return write_toml(path, "".join(
            f'[[board]]\nid = "{h["place"]}"\nbackend = "labgrid"\ntarget = "{TARGET}"\nplace = "{h["place"]}"\n'
            f'coordinator = "{self.address}"\n' for h in hosts))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    blob = root / "sudoku6-mlp-int8.bin"
    blob.write_bytes(export_blob("sudoku6-mlp", "int8"))
    lab = Lab(root, blob)
    yield lab
    lab.close()


def _down(host: dict) -> None:
    """The lab host goes down: its exporter and its board."""
    host["exporter"].kill()
    host["serve"].kill()


@pytest.fixture
def new_host(lab):
    """Makes lab hosts (``Lab.host``'s options) that go down when the test ends."""
    made = []

    def make(**options) -> dict:
        made.append(lab.host(**options))
        return made[-1]
    yield make
    for h in made:
        _down(h)


@pytest.fixture
def two_hosts(new_host):
    return [new_host(), new_host()]


@pytest.fixture
def power_host(new_host):
    return new_host(power=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The plan on one local QEMU board: what the lab's tables must equal."""
    out = tmp_path_factory.mktemp("local")
    farm_run(plan_from_dict(PLAN, "lab"), [BoardSpec("q1", "qemu", TARGET)], out, log=lambda m: None)
    return out


def _rows_of(out: Path, board: str) -> int:
    """Rows the journal holds from ``board`` (0 while there is no journal)."""
    try:
        db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT COUNT(*) FROM results WHERE board = ?", (board,)).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _farm_until(out: Path, plan: Path, inventory: Path, ready, what: str) -> subprocess.Popen:
    """`harness farm run` into ``out``, returned (still running) once ``ready()`` holds."""
    proc = _cli_run(out, plan, inventory, resume=False)
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    return proc


def test_one_distribution_provides_the_serial_package():
    """labgrid's pyserial-labgrid and pyserial install the same `serial` files; the harness depends on the
    first only (docs/farm.md): two owners would delete each other's files on uninstall."""
    owners = sorted(d.metadata["Name"] for d in importlib.metadata.distributions()
                    if any(str(f) == "serial/__init__.py" for f in d.files or ()))
    assert owners == ["pyserial-labgrid"], owners


@pytest.mark.parametrize("entry, message", [
    ('place = "p"\nserves = "fpga"', "`serves` must be one of qemu, renode, serial"),
    ('coordinator = "127.0.0.1:1"', "backend labgrid needs `place`"),
    ('place = "p"', "backend labgrid needs the coordinator"),
    ('place = "p"\ncoordinator = "c:1"\nacquire_timeout = 0', "`acquire_timeout` must be a positive number"),
    ('place = "p"\ncoordinator = "c:1"\nport = "/dev/ttyACM0"', "unknown key(s) port for backend labgrid"),
])
def test_an_inventory_labgrid_board_is_checked(tmp_path, monkeypatch, entry, message):
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    path = write_toml(tmp_path / "inv.toml", f'[[board]]\nid = "a"\nbackend = "labgrid"\ntarget = "{TARGET}"\n{entry}\n')
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    assert message in str(e.value) and "board 1 (a)" in str(e.value), str(e.value)


def test_a_farm_across_two_lab_hosts_gives_the_local_runs_tables(lab, two_hosts, local_run, tmp_path):
    farm_run(plan_from_dict(PLAN, "lab"), lab.inventory(two_hosts), tmp_path, log=lambda m: None)
    assert_same_tables(frame(local_run, drop_board=True), frame(tmp_path, drop_board=True))
    boards = set(frame(tmp_path)["puzzles"].board)
    assert boards == {h["place"] for h in two_hosts}, "both places ran a job"
    assert set(load_run(tmp_path).provenance["counts"]) == {"qemu"}, "counts are the served QEMU's"
    assert [lab.holder(h["place"]) for h in two_hosts] == [None, None], "every place released"


def test_a_place_held_by_someone_else_is_waited_for_then_skipped(lab, two_hosts, local_run, tmp_path):
    busy, free = two_hosts
    lab.client("-p", busy["place"], "acquire", env={"LG_HOSTNAME": "bench-7", "LG_USERNAME": "alice"})
    t0 = time.monotonic()
    farm_run(plan_from_dict(PLAN, "lab"), lab.inventory(two_hosts, acquire_timeout=3), tmp_path, log=lambda m: None)
    assert time.monotonic() - t0 >= 3
    skipped = [e for e in load_run(tmp_path).events if e["kind"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["board"] == busy["place"]
    assert busy["place"] in skipped[0]["message"] and "bench-7/alice" in skipped[0]["message"], skipped[0]["message"]
    assert set(frame(tmp_path)["puzzles"].board) == {free["place"]}
    assert_same_tables(frame(local_run, drop_board=True), frame(tmp_path, drop_board=True))
    assert lab.holder(busy["place"]) == "bench-7/alice" and lab.holder(free["place"]) is None


def test_a_lab_host_killed_mid_run_moves_its_job_to_the_other_place(lab, two_hosts, local_run, tmp_path):
    plan = write_toml(tmp_path / "lab.toml", PLAN_TOML)
    inventory = lab.inventory_toml(tmp_path / "inv.toml", two_hosts)
    out = tmp_path / "run"
    victim = two_hosts[0]
    proc = _farm_until(out, plan, inventory, lambda: _rows_of(out, victim["place"]) >= 2, "the first place ran no puzzle")
    _down(victim)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-3000:]
    rd = load_run(out)
    kinds = [e["kind"] for e in rd.events if e["board"] == victim["place"]]
    assert "failure" in kinds and "quarantine" in kinds, rd.events
    assert _rows_of(out, two_hosts[1]["place"]) > TOTAL // 2, "the other place finished the job"
    with Journal.in_dir(out) as j:
        assert len(j.results(j.meta("run"))) == TOTAL
    assert_same_tables(frame(local_run, drop_board=True), frame(out, drop_board=True))
    assert lab.holder(two_hosts[1]["place"]) is None


def test_a_killed_farm_resumes_to_the_same_tables_and_leaves_no_place_locked(lab, two_hosts, local_run, tmp_path):
    plan = write_toml(tmp_path / "lab.toml", PLAN_TOML)
    inventory = lab.inventory_toml(tmp_path / "inv.toml", two_hosts)
    out = tmp_path / "run"
    proc = _farm_until(out, plan, inventory, lambda: _rows_in(out) >= 3, "no puzzle ran")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [h["place"] for h in two_hosts if lab.holder(h["place"])]
    assert left, "the killed run left its places locked"
    proc = _cli_run(out, plan, inventory, resume=True)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-3000:]
    with Journal.in_dir(out) as j:
        assert j.meta("finished") and len(j.results(j.meta("run"))) == TOTAL
    assert_same_tables(frame(local_run, drop_board=True), frame(out, drop_board=True))
    assert [lab.holder(h["place"]) for h in two_hosts] == [None, None]


def test_a_wedged_board_is_power_cycled_through_labgrids_power_driver(lab, power_host, local_run, tmp_path):
    """The board at the place freezes (its QEMU gets SIGSTOP): the puzzle times out, and the reset that
    follows power-cycles it through labgrid's NetworkPowerDriver and the lab host's switch; the same
    place finishes the plan, nothing lost."""
    plan = write_toml(tmp_path / "lab.toml", PLAN_TOML.replace("puzzle_timeout_s = 10", "puzzle_timeout_s = 2"))
    inventory = lab.inventory_toml(tmp_path / "inv.toml", [power_host])
    out = tmp_path / "run"
    proc = _farm_until(out, plan, inventory, lambda: _rows_in(out) >= 2, "no puzzle ran")
    serve = power_host["serve"].p.pid
    qemu = [int(c) for c in Path(f"/proc/{serve}/task/{serve}/children").read_text().split()]
    assert len(qemu) == 1
    os.kill(qemu[0], signal.SIGSTOP)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-3000:]
    events = load_run(out).events
    assert [e["kind"] for e in events] == ["failure"] and "BoardTimeout" in events[0]["message"], events
    log = power_host["serve"].log.read_text()
    assert log.count("power off") >= 2 and log.count("power on") >= 2, log   # the first start, and the reset
    assert_same_tables(frame(local_run, drop_board=True), frame(out, drop_board=True))
    assert lab.holder(power_host["place"]) is None


@pytest.mark.skipif(shutil.which("renode") is None, reason="renode not on PATH")
def test_a_renode_board_is_served_on_tcp(tmp_path, lab):
    """`harness board serve --emulator renode`: the firmware answers over the TCP UART, client after client."""
    from harness.boards import protocol as P
    from harness.boards.base import Session
    port = free_port()
    serve = Proc([sys.executable, "-m", "harness.cli", "board", "serve", "--target", TARGET, "--emulator", "renode",
                  "--port", str(port), "--blob", str(lab.blob)], tmp_path / "serve.log")
    try:
        serve.wait_for("serving", timeout=180)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                session = Session(sock, "served renode")
                assert session.poll(session.send(P.PING, b"lab"), 30.0) == (P.PONG, b"lab")
    finally:
        serve.kill()


def test_a_run_that_stops_releases_the_place(lab, new_host, tmp_path):
    """A board holding another blob than the job's is a set-up error, not a board failure: the run stops
    naming both blobs and the fix, and the place it had acquired is released."""
    host = new_host(blob=False)
    with pytest.raises(FarmStopped) as e:
        farm_run(plan_from_dict(PLAN, "lab"), lab.inventory([host]), tmp_path, log=lambda m: None)
    assert f"labgrid place {host['place']}" in str(e.value) and "holds another blob" in str(e.value), str(e.value)
    assert "harness board serve --blob" in str(e.value)
    assert lab.holder(host["place"]) is None
