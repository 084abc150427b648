"""The farm's journal: every result is written to SQLite (WAL, synchronous=FULL) the moment it arrives,
keyed by (run, job, puzzle), so a crash loses at most the puzzle in flight and a rerun with
``--resume`` neither loses nor duplicates a row.

Tables:
  meta     key → JSON value (run id, plan, inventory, provenance)
  results  (run, job, puzzle) → status, board, attempts, row JSON; status is 'ok' (the board answered),
           'board_failure' (no healthy board was left to answer) or 'does_not_fit' (the blob or the
           firmware image does not fit the target: ``figures.fit``)
  host     (run, job) → host-side figures of a model × recipe × depth (golden/torch accuracy, fidelity)
  profiles (run, job, op) → one operation of the job's profile (``harness.run.profile_puzzles`` on
           the plan's first ``[run] profile_puzzles`` puzzles): its calls, counter, counts and share,
           with the job's whole-profile facts on every row (``PROFILE_COLUMNS``); a job's rows land in
           one transaction, all or none, once per run
  traces   (run, job, puzzle, step, cycle) → one cycle of a puzzle run over the board's probe (``[run]
           trace``): the device's fidelity to fp32 and golden's at the same cycle (host), the sha256 of
           the device carry, whether it equals golden's, and the carry's bytes only when it does not
           (``TRACE_COLUMNS``); a puzzle's rows land in one transaction with its divergence, once per run
  divergences (run, job, puzzle) → where a traced puzzle's device carry first parts from golden's
           (``DIVERGENCE_COLUMNS``: step, cycle, update, block, element and both values)
  events   what happened to boards: failures, resets, quarantines, and the error that stopped a run
           (timing-dependent; never in the tables)

A board failure (``boards.errors.BoardFailure``: timeout, garbage, fault, dead emulator) is an event; only when no healthy board of the target is
left is the puzzle recorded as ``board_failure``: never as a wrong answer. ``--resume`` runs those
again.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    run TEXT NOT NULL, job TEXT NOT NULL, puzzle TEXT NOT NULL, status TEXT NOT NULL,
    board TEXT, attempts INTEGER NOT NULL, row TEXT NOT NULL, PRIMARY KEY (run, job, puzzle));
CREATE TABLE IF NOT EXISTS host (
    run TEXT NOT NULL, job TEXT NOT NULL, row TEXT NOT NULL, PRIMARY KEY (run, job));
CREATE TABLE IF NOT EXISTS profiles (
    run TEXT NOT NULL, job TEXT NOT NULL, op TEXT NOT NULL, position INTEGER NOT NULL,
    model TEXT NOT NULL, recipe TEXT NOT NULL, depth TEXT NOT NULL, target TEXT NOT NULL,
    board TEXT NOT NULL, backend TEXT NOT NULL, counts_kind TEXT NOT NULL, counter_unit TEXT NOT NULL,
    puzzles INTEGER NOT NULL, calls INTEGER NOT NULL, counter INTEGER NOT NULL, counts REAL NOT NULL,
    share REAL NOT NULL, macs INTEGER, counts_per_mac REAL, total REAL NOT NULL, total_counter INTEGER NOT NULL,
    plain_total REAL, marks_share REAL, top TEXT, PRIMARY KEY (run, job, op));
CREATE TABLE IF NOT EXISTS traces (
    run TEXT NOT NULL, job TEXT NOT NULL, puzzle TEXT NOT NULL, step INTEGER NOT NULL, cycle INTEGER NOT NULL,
    model TEXT NOT NULL, recipe TEXT NOT NULL, depth TEXT NOT NULL, target TEXT NOT NULL, board TEXT NOT NULL,
    backend TEXT NOT NULL, fidelity REAL, golden_fidelity REAL, carry_sha256 TEXT NOT NULL,
    equals_golden INTEGER NOT NULL, carry BLOB, PRIMARY KEY (run, job, puzzle, step, cycle));
CREATE TABLE IF NOT EXISTS divergences (
    run TEXT NOT NULL, job TEXT NOT NULL, puzzle TEXT NOT NULL, model TEXT NOT NULL, recipe TEXT NOT NULL,
    depth TEXT NOT NULL, target TEXT NOT NULL, board TEXT NOT NULL, step INTEGER NOT NULL,
    cycle INTEGER NOT NULL, update_name TEXT NOT NULL, block INTEGER, carry TEXT NOT NULL, row INTEGER NOT NULL,
    channel INTEGER NOT NULL, device INTEGER NOT NULL, golden INTEGER NOT NULL, resolution TEXT NOT NULL,
    PRIMARY KEY (run, job, puzzle));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, time REAL NOT NULL, board TEXT,
    job TEXT, kind TEXT NOT NULL, message TEXT);
"""

# a profile row: the operation (its position in harness.profile.OPS; calls; counter in the counter's
# unit; counts in counts_kind units, instructions on an emulator; share of the total; MACs and counts per
# MAC where it multiplies), then the job's whole profile, the same on each of its rows: the puzzles
# profiled, the total (counts_kind units, and in the counter's unit: the operations' counters add up
# to it), the same puzzles' plain total, the marks' share of it and the top operation
PROFILE_COLUMNS = ("op", "position", "model", "recipe", "depth", "target", "board", "backend", "counts_kind",
                   "counter_unit", "puzzles", "calls", "counter", "counts", "share", "macs", "counts_per_mac",
                   "total", "total_counter", "plain_total", "marks_share", "top")

# a traced cycle (``harness.run.trace_puzzle``): where it ran, the device carry's fidelity to fp32 and
# golden's at the same cycle (computed on the host), the sha256 of the device carry (y then z, int8
# bytes), whether it equals golden's, and those bytes only when it does not (else NULL)
TRACE_COLUMNS = ("puzzle", "step", "cycle", "model", "recipe", "depth", "target", "board", "backend", "fidelity",
                 "golden_fidelity", "carry_sha256", "equals_golden", "carry")
# where a puzzle's device carry first parts from golden's (``harness.run.first_divergence``): the first
# step and cycle, the update (z1..zn or y) and block (NULL: not observable), the carry (z or y) and the
# element (row, channel) of that update's output, the device's and golden's values, and the resolution
DIVERGENCE_COLUMNS = ("puzzle", "model", "recipe", "depth", "target", "board", "step", "cycle", "update_name",
                      "block", "carry", "row", "channel", "device", "golden", "resolution")

# PRAGMA user_version: 1 = no number (meta, results, host, profiles, events), 2 = traces and divergences
# added. Opening an older journal adds the tables it lacks (CREATE ... IF NOT EXISTS) and its number.
SCHEMA_VERSION = 2

NAME = "journal.sqlite"
# what a run's start writes, in one transaction: a journal holding some but not all of them was killed
# while starting a run (before the scheduler wrote them together) and never ran anything
RUN_KEYS = ("run", "plan", "plan_digest")


class JournalError(ValueError):
    """A journal that cannot be opened or read; the message names the file."""


class Journal:
    """Thread-safe: every board's worker writes through one connection under a lock; each write is its
    own committed transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JournalError(f"cannot create the run folder {self.path.parent}: {e.strerror or e}") from None
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version <= SCHEMA_VERSION:
                self.db.executescript(SCHEMA)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"{self.path} is not a journal this harness can open ({e}): move it away "
                               f"(or choose another --out) and start the run again") from None
        if version > SCHEMA_VERSION:
            self.db.close()
            raise JournalError(f"{self.path} is a journal of schema version {version}; this harness writes "
                               f"version {SCHEMA_VERSION}: report or resume it with the harness that made it")
        self.lock = threading.Lock()
        self._drop_half_started_run()

    def _drop_half_started_run(self) -> None:
        """A run id without its plan digest (a kill between the two writes, before they shared a
        transaction) started nothing: forget it, so the folder starts the run afresh."""
        have = {k for (k,) in self.db.execute(
            f"SELECT key FROM meta WHERE key IN ({','.join('?' * len(RUN_KEYS))})", RUN_KEYS)}
        if have and have != set(RUN_KEYS) and "run" in have:
            busy = self.db.execute("SELECT (SELECT count(*) FROM results) + (SELECT count(*) FROM host)").fetchone()[0]
            if not busy:
                self.db.execute(f"DELETE FROM meta WHERE key IN ({','.join('?' * len(RUN_KEYS))})", RUN_KEYS)

    @classmethod
    def in_dir(cls, out: Path) -> "Journal":
        return cls(Path(out) / NAME)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writes -----------------------------------------------------------------------------------
    def _write(self, sql: str, args: tuple) -> None:
        with self.lock:
            self.db.execute(sql, args)

    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def _write_all(self, sql: str, rows: list[tuple], *more: tuple[str, list[tuple]]) -> None:
        """``sql`` for every row (then each further (sql, rows) of ``more``), in one transaction: all of
        them land, or none."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement, args_list in ((sql, rows),) + more:
                    for args in args_list:
                        self.db.execute(statement, args)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def set_metas(self, values: dict[str, Any]) -> None:
        """Several meta keys in one transaction: all of them land, or none (a run's id, plan and digest)."""
        self._write_all("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()])

    def record(self, run: str, job: str, puzzle: str, status: str, board: str | None, attempts: int,
               row: dict[str, Any]) -> None:
        """A puzzle's result. 'ok' rows are final; a 'board_failure' row is replaced when a resumed run
        gets the puzzle through."""
        self._write("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run, job, puzzle, status, board, attempts, json.dumps(row, sort_keys=True)))

    def record_host(self, run: str, job: str, row: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO host VALUES (?, ?, ?)", (run, job, json.dumps(row, sort_keys=True)))

    def record_profile(self, run: str, job: str, rows: list[dict[str, Any]]) -> None:
        """A job's profile, one row per operation (``PROFILE_COLUMNS``), in one transaction. Written once
        per job and run: a second profile of the job is refused (the primary key), never mixed in."""
        cols = ("run", "job") + PROFILE_COLUMNS
        self._write_all(f"INSERT INTO profiles ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [(run, job) + tuple(r.get(c) for c in PROFILE_COLUMNS) for r in rows])

    def record_trace(self, run: str, job: str, cycles: list[dict[str, Any]], divergence: dict[str, Any] | None) -> None:
        """One puzzle's traced cycles (``TRACE_COLUMNS``) and, when its carries part from golden's, its
        divergence (``DIVERGENCE_COLUMNS``), in one transaction. Once per puzzle and run: a second trace
        of a puzzle is refused (the primary key), never mixed in."""
        def insert(table, cols):
            cols = ("run", "job") + cols
            return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self._write_all(insert("traces", TRACE_COLUMNS),
                        [(run, job) + tuple(c.get(k) for k in TRACE_COLUMNS) for c in cycles],
                        (insert("divergences", DIVERGENCE_COLUMNS),
                         [(run, job) + tuple(divergence.get(k) for k in DIVERGENCE_COLUMNS)] if divergence else []))

    def event(self, run: str, kind: str, message: str, board: str | None = None, job: str | None = None) -> None:
        self._write("INSERT INTO events (run, time, board, job, kind, message) VALUES (?, ?, ?, ?, ?, ?)",
                    (run, time.time(), board, job, kind, message))

    # --- reads ------------------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path} cannot be read ({e}): the journal is damaged") from None

    def meta(self, key: str, default: Any = None) -> Any:
        got = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(got[0][0]) if got else default

    def done(self, run: str, job: str) -> set[str]:
        """Puzzles of ``job`` with a final ('ok') result."""
        return {p for (p,) in self._rows("SELECT puzzle FROM results WHERE run = ? AND job = ? AND status = 'ok'",
                                         (run, job))}

    def results(self, run: str) -> list[dict[str, Any]]:
        out = []
        for job, puzzle, status, board, attempts, row in self._rows(
                "SELECT job, puzzle, status, board, attempts, row FROM results WHERE run = ? ORDER BY job, puzzle", (run,)):
            out.append({**json.loads(row), "job": job, "puzzle_id": puzzle, "status": status, "board": board,
                        "attempts": attempts})
        return out

    def job_results(self, run: str, job: str) -> dict[str, dict[str, Any]]:
        """The 'ok' rows of ``job`` by puzzle id."""
        return {p: json.loads(row) for p, row in self._rows(
            "SELECT puzzle, row FROM results WHERE run = ? AND job = ? AND status = 'ok'", (run, job))}

    def profiles(self, run: str) -> list[dict[str, Any]]:
        """Every profile row of the run, by job and the operations' order (``PROFILE_COLUMNS`` and job)."""
        cols = ("job",) + PROFILE_COLUMNS
        return [dict(zip(cols, r)) for r in self._rows(
            f"SELECT {', '.join(cols)} FROM profiles WHERE run = ? ORDER BY job, position", (run,))]

    def profiled(self, run: str) -> set[str]:
        """Jobs whose profile is journalled."""
        return {j for (j,) in self._rows("SELECT DISTINCT job FROM profiles WHERE run = ?", (run,))}

    def traces(self, run: str) -> list[dict[str, Any]]:
        """Every traced cycle of the run, by job, puzzle, step and cycle (``TRACE_COLUMNS`` and job)."""
        cols = ("job",) + TRACE_COLUMNS
        return [dict(zip(cols, r)) for r in self._rows(
            f"SELECT {', '.join(cols)} FROM traces WHERE run = ? ORDER BY job, puzzle, step, cycle", (run,))]

    def traced(self, run: str, job: str) -> set[str]:
        """Puzzles of ``job`` whose trace is journalled."""
        return {p for (p,) in self._rows("SELECT DISTINCT puzzle FROM traces WHERE run = ? AND job = ?", (run, job))}

    def divergences(self, run: str) -> list[dict[str, Any]]:
        cols = ("job",) + DIVERGENCE_COLUMNS
        return [dict(zip(cols, r)) for r in self._rows(
            f"SELECT {', '.join(cols)} FROM divergences WHERE run = ? ORDER BY job, puzzle", (run,))]

    def host_rows(self, run: str) -> list[dict[str, Any]]:
        return [{**json.loads(row), "job": job}
                for job, row in self._rows("SELECT job, row FROM host WHERE run = ? ORDER BY job", (run,))]

    def host_done(self, run: str) -> set[str]:
        return {j for (j,) in self._rows("SELECT job FROM host WHERE run = ?", (run,))}

    def events(self, run: str) -> list[dict[str, Any]]:
        return [dict(zip(("time", "board", "job", "kind", "message"), r))
                for r in self._rows("SELECT time, board, job, kind, message FROM events WHERE run = ? ORDER BY seq", (run,))]
