"""Waiting for a board's firmware: the readiness PING is sent again while the firmware is not up, and
when the firmware answers a torn first PING with a link error (the head of the frame was dropped while
its UART was still disabled: seen on Renode's STM32 USART)."""
import itertools
import socket
import threading

import pytest

from harness.boards import protocol as P
from harness.boards.base import Board, Session
from harness.boards.errors import BoardTimeout
from harness.targets import load_target


class _Wired(Board):
    backend = "test"

    def __init__(self, sock):
        super().__init__(load_target("mps2-an386"))
        self.session = Session(sock, self.describe())


def _firmware(sock, answers):
    """Answer each received frame with the next of ``answers``: 'torn' (an ERROR for no request: what
    the firmware sends for bytes that are not a frame), 'pong', or 'silent'."""
    buf, frames = b"", []
    for answer in answers:
        while not frames:  # each request is 0x00, the frame, 0x00: split on the delimiters
            chunk = sock.recv(4096)
            if not chunk:
                return
            *done, buf = (buf + chunk).split(b"\x00")
            frames += [f for f in done if f]
        _, seq, payload = P.unframe(frames.pop(0))
        if answer == "torn":
            sock.sendall(P.frame(P.ERROR, 0, bytes([1, 0]) + b"COBS") + b"\x00")
        elif answer == "pong":
            sock.sendall(P.frame(P.PONG, seq, payload) + b"\x00")


@pytest.mark.parametrize("answers", [["torn", "pong"], ["silent", "torn", "silent", "pong"]])
def test_a_torn_first_ping_is_sent_again(answers):
    host, fw = socket.socketpair()
    t = threading.Thread(target=_firmware, args=(fw, answers), daemon=True)
    t.start()
    board = _Wired(host)
    board.wait_ready(5.0)
    t.join(2)
    assert not t.is_alive()


def test_a_firmware_that_only_answers_torn_frames_times_out_naming_the_last_error():
    host, fw = socket.socketpair()
    threading.Thread(target=_firmware, args=(fw, itertools.repeat("torn")), daemon=True).start()
    with pytest.raises(BoardTimeout, match="did not answer PING within 0.6 s .last: .*COBS"):
        _Wired(host).wait_ready(0.6)
