"""The run folder of ``harness farm run --out DIR``: checked, locked and matched to the plan before
anything runs.

- ``--out`` must be a folder (created when missing) that this user can write; a path that is a file,
  or under one, or cannot be created, is refused with the path named.
- ``--resume`` needs a folder holding a journal; on a folder that does not exist it is refused rather
  than starting a new run.
- One process at a time: ``DIR/farm.lock`` is held with ``fcntl.flock`` for the whole run (the kernel
  drops it when the process dies, however it dies). A second process on the folder is told who holds
  it (pid, command, start time) and exits non-zero.
- A resume must be of the same plan: a changed puzzle file is named (its sha256 is in the plan's
  digest); any other difference lists the plan keys that differ.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .journal import NAME, Journal
from .plan import Plan

LOCK = "farm.lock"


class FolderError(ValueError):
    """A run folder that cannot be used as asked; the message names the path and what to do."""


def check_out(out: Path, resume: bool) -> None:
    """What can be said about ``--out`` without writing anything."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out} is a file, not a folder: choose a folder (it is created when missing)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FolderError(f"--out {out}: {parent} is a file, so the folder cannot be created there")
            break
    if resume and not (out / NAME).exists():
        what = "does not exist" if not out.exists() else f"holds no run ({NAME} not found)"
        raise FolderError(f"--resume: {out} {what}, so there is nothing to resume: leave out --resume to "
                          f"start a new run there")


@contextmanager
def lock_folder(out: Path, command: str = "") -> Iterator[Path]:
    """Hold ``out/farm.lock`` (creating ``out``) for the duration; FolderError naming the holder when
    another process has it."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FolderError(f"--out {out}: cannot create the run folder or its lock file: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise FolderError(f"{out} is in use by another farm run ({holder}; lock {out / LOCK}): wait for "
                              f"it to finish, or stop it, before running on this folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        yield out
    finally:
        os.close(fd)     # closing the descriptor drops the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    words = [f"pid {info['pid']}" if "pid" in info else "a process"]
    if info.get("command"):
        words.append(repr(info["command"]))
    if info.get("since"):
        words.append(f"since {info['since']}")
    return ", ".join(words)


def match_journal(j: Journal, out: Path, plan: Plan, resume: bool) -> str | None:
    """The run ``out``'s open journal ``j`` holds (None for a new folder), refused unless ``resume`` asks
    for it and it is of the same ``plan``."""
    run = j.meta("run")
    if run is not None and not resume:
        raise FolderError(f"{out} already holds run {run}: rerun with --resume to finish it, or choose a new --out")
    if run is not None and j.meta("plan_digest") != plan.digest():
        old = j.meta("plan") or {}
        new = plan.to_dict()
        if old.get("puzzle_sha256") != new.get("puzzle_sha256") and old.get("puzzles") == new.get("puzzles"):
            was, now = (str(x)[:12] if x else "none" for x in (old.get("puzzle_sha256"), new.get("puzzle_sha256")))
            raise FolderError(f"--resume: the puzzle file {plan.puzzles.get('file')} changed since {run} started "
                              f"(sha256 {was}… then, {now}… now): a resume would mix two puzzle sets; "
                              f"restore the file, or start a new run in another --out")
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) or ["the digest"]
        raise FolderError(f"--resume: {out} holds run {run} of a different plan ({', '.join(differ)} differ): "
                          f"--resume needs the same plan, or choose a new --out")
    return run


def check_journal(out: Path, plan: Plan, resume: bool, command: str) -> None:
    """Match the folder's journal (if any) to ``plan`` and ``resume``; record the command of a new run."""
    with Journal.in_dir(out) as j:
        match_journal(j, out, plan, resume)
        if j.meta("command") is None:
            j.set_meta("command", command)
