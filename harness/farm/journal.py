"""The farm's journal: every result is written to SQLite (WAL, synchronous=FULL) the moment it arrives,
keyed by (run, job, puzzle), so a crash loses at most the puzzle in flight and a rerun with
``--resume`` neither loses nor duplicates a row.

Tables:
  meta     key → JSON value (run id, plan, inventory, provenance)
  results  (run, job, puzzle) → status, board, attempts, row JSON; status is 'ok' (the board answered),
           'board_failure' (no healthy board was left to answer) or 'does_not_fit' (the blob or the
           firmware image does not fit the target: ``figures.fit``)
  host     (run, job) → host-side figures of a model × recipe × depth (golden/torch accuracy, fidelity)
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
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, time REAL NOT NULL, board TEXT,
    job TEXT, kind TEXT NOT NULL, message TEXT);
"""

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
            self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"{self.path} is not a journal this harness can open ({e}): move it away "
                               f"(or choose another --out) and start the run again") from None
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

    def set_metas(self, values: dict[str, Any]) -> None:
        """Several meta keys in one transaction: all of them land, or none (a run's id, plan and digest)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for key, value in values.items():
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def record(self, run: str, job: str, puzzle: str, status: str, board: str | None, attempts: int,
               row: dict[str, Any]) -> None:
        """A puzzle's result. 'ok' rows are final; a 'board_failure' row is replaced when a resumed run
        gets the puzzle through."""
        self._write("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run, job, puzzle, status, board, attempts, json.dumps(row, sort_keys=True)))

    def record_host(self, run: str, job: str, row: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO host VALUES (?, ?, ?)", (run, job, json.dumps(row, sort_keys=True)))

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

    def host_rows(self, run: str) -> list[dict[str, Any]]:
        return [{**json.loads(row), "job": job}
                for job, row in self._rows("SELECT job, row FROM host WHERE run = ? ORDER BY job", (run,))]

    def host_done(self, run: str) -> set[str]:
        return {j for (j,) in self._rows("SELECT job FROM host WHERE run = ?", (run,))}

    def events(self, run: str) -> list[dict[str, Any]]:
        return [dict(zip(("time", "board", "job", "kind", "message"), r))
                for r in self._rows("SELECT time, board, job, kind, message FROM events WHERE run = ? ORDER BY seq", (run,))]
