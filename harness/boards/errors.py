"""What a sick board looks like: the failures a reset and a retry may cure, raised where boards raise
them. The farm retries these, and only these; anything else (a bad input, a refused request, a bug in
the harness) stops the run with its message.

  BoardFailure          the base
  ├─ BoardTimeout       no answer in time (a wedged core, a frozen emulator, a dead link)
  ├─ BoardLinkLost      the stream to the board closed
  ├─ BoardGarbage       bytes that do not form a valid frame came back, or the firmware saw a garbled
  │                     request (its COBS, TRUNCATED, CRC or OVERSIZE errors): noise on the link
  ├─ BoardFault         the firmware reported a hard fault (its FAULT error) and reset itself
  ├─ EmulatorDied       the emulator process exited under the board
  └─ PlaceBusy          a labgrid place stayed acquired by someone else for the board's acquire timeout:
                        the farm skips the board (its jobs go to other boards) rather than retrying it

``BoardUnavailable`` is not a failure: the backend cannot run here at all (not installed, no firmware,
a port that does not exist), and retrying will not change that.
"""
from __future__ import annotations


class BoardFailure(Exception):
    """A board misbehaved; resetting it and retrying may help."""


class BoardTimeout(BoardFailure, TimeoutError):
    pass


class BoardLinkLost(BoardFailure, ConnectionError):
    pass


class BoardGarbage(BoardFailure):
    pass


class BoardFault(BoardFailure):
    pass


class EmulatorDied(BoardFailure):
    pass


class PlaceBusy(BoardFailure):
    """A labgrid place held by another client (``holder``: labgrid's "host/user") for longer than the
    board waits."""

    def __init__(self, message: str, place: str, holder: str):
        super().__init__(message)
        self.place, self.holder = place, holder


class BoardUnavailable(RuntimeError):
    """The backend cannot run here (emulator not installed, no firmware, unknown name, a port that does
    not exist): the message says what is missing and what to do."""
