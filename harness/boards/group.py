"""``python -m harness.boards.group PARENT_PID CMD...``: run CMD in a process group and end the whole
group with it, for emulators whose launcher is a script that runs the emulator as its child.

Every Linux launcher of Renode is a shell script that starts ``mono Renode.exe`` (or ``dotnet``) as a
child, without ``exec``: a signal to the script, or the script's death, leaves the emulator running, at
full CPU, polling a UART nobody reads. This supervisor (stdlib only, so it starts in milliseconds) is
what the board's ``Popen`` holds instead. The board starts it as the leader of a new process group
(``base.in_own_group``), and CMD and everything CMD starts inherit that group. Then:

- SIGTERM, SIGINT or SIGHUP to the supervisor, or its parent's death (Linux's parent-death signal, armed
  here as SIGTERM), send SIGTERM and SIGCONT to the rest of the group, then SIGKILL after ``GRACE`` s;
- when CMD exits by itself, whatever is left of the group is ended the same way, and the supervisor
  exits with CMD's status (128 + N for a signal N, as a shell reports it);
- the board can signal, or kill, the whole group at once: its id is the supervisor's pid.

``PARENT_PID`` is the harness process: if it is gone before the parent-death signal was armed, the
supervisor stops at once.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE = 2.0              # s between SIGTERM and SIGKILL to the group (base.stop_process waits 5 s for us)
PR_SET_PDEATHSIG = 1
ENDING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signum)


def members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` other than this one (Linux's /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:     # state, ppid, pgrp
            out.append(int(entry.name))
    return out


def signal_each(pids: list[int], sig: int) -> None:
    """``sig`` to each of ``pids`` that is still there."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def end_group(child: subprocess.Popen | None) -> None:
    """SIGTERM (with SIGCONT: a stopped emulator acts on it), then SIGKILL, to every other process of
    this process's group."""
    pgid = os.getpgid(0)
    signal_each(members(pgid), signal.SIGTERM)
    signal_each(members(pgid), signal.SIGCONT)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()                 # collect the launcher, so it is no zombie member
        if not members(pgid):
            return
        time.sleep(0.05)
    signal_each(members(pgid), signal.SIGKILL)


def _arm_parent_death_signal() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m harness.boards.group PARENT_PID CMD [ARG...]", file=sys.stderr)
        return 2
    parent, cmd = int(argv[0]), argv[1:]
    if os.getpgrp() != os.getpid():    # lead a group of our own: end_group signals the whole group
        os.setpgid(0, 0)
    for sig in ENDING:
        signal.signal(sig, _raise_stop)
    child = None
    try:
        _arm_parent_death_signal()
        if os.getppid() != parent:     # the harness died before the parent-death signal was armed
            return 1
        child = subprocess.Popen(cmd)
        code = child.wait()
    except _Stop:
        code = 128 + signal.SIGTERM
    finally:
        for sig in ENDING:
            signal.signal(sig, signal.SIG_IGN)
        end_group(child)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
