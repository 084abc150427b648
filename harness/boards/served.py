"""``harness board serve``: an emulated board on this host for clients on others (a labgrid lab host).

The emulator runs with its UART and GDB server on TCP (``QemuBoard.serve``, ``RenodeBoard.serve``). With a power port, an HTTP server in the
form of labgrid's ``simplerest`` power backend switches the board: ``GET /power/0`` stops the emulator,
``GET /power/1`` starts it afresh (firmware and blob from reset, as a power cycle would), ``GET /power``
answers ``1`` or ``0``. Exported as a ``NetworkPowerPort`` (``model: simplerest``,
``host: http://HOST:PORT/power/{value}``), it lets a labgrid board power-cycle a wedged board.

Everything runs in the calling thread: the emulator gets its parent-death signal when the thread that
started it ends (``base.die_with_parent``), so a request handler thread must not be the one to start it.
"""
from __future__ import annotations

import http.server
from typing import Callable

from .base import Board


class _Switch(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        board: Board = self.server.board
        path = self.path.rstrip("/")
        if path in ("/power/0", "/power/1"):
            on = path.endswith("1")
            if on and board.proc is None:
                board.serve()
            elif not on:
                board.close()
            self.server.say(f"power {'on' if on else 'off'}")
            body = b"ok"
        elif path == "/power":
            body = b"1" if board.proc is not None else b"0"
        else:
            self.send_error(404, "expected /power, /power/0 or /power/1")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(board: Board, power_port: int | None = None, listen: str = "127.0.0.1",
          say: Callable[[str], None] = print) -> int:
    """Serve ``board`` until its emulator exits while powered (its exit status) or the caller is stopped."""
    board.serve()
    switch = None
    if power_port is not None:
        switch = http.server.HTTPServer((listen, power_port), _Switch)
        switch.board, switch.say, switch.timeout = board, say, 0.2
    say(f"serving {board.target.name}: UART tcp {board.listen}:{board.uart_port}"
        + (f", gdb tcp {board.listen}:{board.gdb_port}" if board.gdb_port else "")
        + (f", power http://{listen}:{power_port}/power/{{value}}" if switch else "")
        + (f", blob of {len(board.blob):,} bytes" if board.blob else ", no blob") + f"; log {board.log_path}")
    try:
        while True:
            if switch is None:
                board.proc.wait()
            else:
                switch.handle_request()
            if board.proc is not None and board.proc.poll() is not None:
                return board.proc.returncode
    finally:
        if switch is not None:
            switch.server_close()
        board.close()
