"""The labgrid board: a board on another lab host, reached through a labgrid coordinator's place.

``start`` acquires the place (labgrid's lock: one client at a time), reads the place's resources from the
coordinator, connects the framed protocol to its ``NetworkSerialPort`` (raw TCP, as ``harness board
serve`` serves an emulated board's UART) and checks that the board holds the firmware of
``firmware-bin/`` and the very blob it was given. ``close`` releases the place; a failed start releases
it too. A ``NetworkService`` of the place is the board's GDB server (``debug_port``); where the place has a
``NetworkPowerPort``, every start power-cycles the board through labgrid's ``NetworkPowerDriver`` (a reset:
what cures a wedged board after a failure).

The blob: a TCP serial port cannot carry one to the board, and the protocol has no upload, so the lab
host loads it (``harness board serve --blob FILE``, or a physical board flashed there) and the board
refuses to run another (``BoardUnavailable``, naming both): one blob per place.

Who holds a place is labgrid's "host/user" (``LG_HOSTNAME``, ``LG_USERNAME``). A place held by someone
else is waited for, ``acquire_timeout`` s, then ``PlaceBusy``. A place held by this host and user is
taken back only when this board's place record (``<log_dir>/<board id>.place.json``, written before
every acquire) names it and the process that wrote it is gone: a run killed while it held the place,
resumed into the same run folder (whose lock guarantees the writer is no other live run).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
import socket
import struct
import threading
import time
from pathlib import Path

from ..targets import Target
from .base import Board, DebugPort, Session, check_blob_fits
from .errors import BoardLinkLost, BoardUnavailable, PlaceBusy

SERVES = ("qemu", "renode", "serial")   # what runs at a place: its rows' counts mean what they mean there
POLL_S = 0.5                            # between two looks at a busy place
POWER_OFF_S = 0.5                       # how long a power cycle keeps the board off


def labgrid_missing() -> str | None:
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError:
        return "labgrid is not installed: `python -m pip install 'labgrid>=25'` (docs/farm.md)"
    return None


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _on_loop(coro, timeout: float = 60.0):
    """Run ``coro`` on the one event loop this process talks to coordinators from (a daemon thread):
    grpc's asyncio client fails ("Internal error from Core") when threads drive loops of their own."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="labgrid-client", daemon=True).start()
    try:
        return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)
    except concurrent.futures.TimeoutError:
        raise BoardLinkLost(f"the labgrid coordinator did not answer within {timeout:g} s") from None


_sessions: dict[str, object] = {}      # coordinator address -> its ClientSession, used on the loop only
_opening = asyncio.Lock()              # one session opens at a time: two at once would share a connection


class _Coordinator:
    """This process's client session with a coordinator (labgrid's ``ClientSession``), one per address,
    shared by every board and kept open on ``_on_loop``'s loop, which serves its stream: the coordinator
    tells its clients apart by their connection, which grpc shares between the channels of one process.
    A session that ended (the coordinator went away) is replaced at the next use. Its methods run on the
    loop."""

    def __init__(self, address: str):
        self.address = address

    async def __aenter__(self):
        async with _opening:
            return await self._open()

    async def _open(self):
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager
        session = _sessions.get(self.address)
        if session is None or session.stopping.is_set():
            if session is not None:
                await session.close()
            grpc_address = proxymanager.get_grpc_address(self.address, default_port=20408)
            session = ClientSession(grpc_address, asyncio.get_running_loop(),
                                    args=argparse.Namespace(allow_unmatched=False))
            try:
                await session.start()
            except Exception as e:     # grpc's and labgrid's errors alike: the coordinator is not reachable
                await session.stop()
                await session.close()
                raise BoardLinkLost(f"labgrid coordinator {self.address}: {type(e).__name__}: {e}") from None
            _sessions[self.address] = session
        self.session = session
        return self

    async def __aexit__(self, *exc):
        pass

    def _forget_deleted(self) -> None:
        """Drop the resources the coordinator deleted (an exporter gone): a long-lived ClientSession keeps
        them as entries without data, which its ``check_matches`` cannot read."""
        for groups in self.session.resources.values():
            for group in groups.values():
                for name in [n for n, entry in group.items() if not entry.data]:
                    del group[name]

    def identity(self) -> str:
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    def place(self, name: str):
        from labgrid.remote.client import Error
        try:
            return self.session.get_place(name)
        except Error as e:
            raise BoardUnavailable(f"labgrid coordinator {self.address}: {e} (create it: `labgrid-client -x "
                                   f"{self.address} -p {name} create`, docs/farm.md)") from None

    async def _call(self, method: str, request) -> str | None:
        """A coordinator request and a sync; the coordinator's refusal as text (None when it agreed)."""
        import grpc
        try:
            await getattr(self.session.stub, method)(request)
        except grpc.aio.AioRpcError as e:
            return e.details()
        await self.session.sync_with_coordinator()
        return None

    async def acquire(self, name: str) -> str | None:
        from labgrid.remote.client import Error
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        self._forget_deleted()
        try:
            self.session.check_matches(self.place(name))
        except Error as e:     # a match with no resource: its exporter is gone (a lab host down)
            raise BoardLinkLost(f"labgrid place {name}: {e} (is its exporter running?)") from None
        return await self._call("AcquirePlace", pb.AcquirePlaceRequest(placename=name))

    async def release(self, name: str, holder: str | None = None) -> str | None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        fields = {"fromuser": holder} if holder else {}   # the coordinator releases only if `holder` holds it
        return await self._call("ReleasePlace", pb.ReleasePlaceRequest(placename=name, **fields))

    def resources(self, name: str) -> dict[str, dict]:
        """The place's acquired resources by class: ``{cls: {"name": ..., "params": ..., "avail": ...}}``."""
        from labgrid.remote.client import Error
        self._forget_deleted()
        try:
            found = self.session.get_target_resources(self.place(name))
        except Error as e:
            raise BoardLinkLost(f"labgrid place {name}: {e}") from None
        out: dict[str, dict] = {}
        for (res_name, cls), entry in found.items():
            if cls not in out or res_name == "gdb":
                out[cls] = {"name": res_name, "params": dict(entry.params), "avail": entry.avail}
        return out


class LabgridBoard(Board):
    """A board at a labgrid place. ``serves``: the backend running there (``qemu`` for ``harness board
    serve``), which is what this board's ``backend`` says, so its counts mean what they mean there."""
    start_timeout = 30.0

    def __init__(self, target: Target, blob: bytes | None, board_id: str | None = None, place: str | None = None,
                 coordinator: str | None = None, serves: str = "qemu", acquire_timeout: float = 60.0,
                 log_dir: Path | None = None):
        if serves not in SERVES:
            raise BoardUnavailable(f"labgrid board {board_id or place}: serves {serves!r} is not one of "
                                   f"{', '.join(SERVES)}")
        self.backend = serves
        super().__init__(target, board_id or f"labgrid-{place}")
        check_blob_fits(target, blob)
        self.place = place
        self.coordinator = coordinator or os.environ.get("LG_COORDINATOR")
        if not place or not self.coordinator:
            raise BoardUnavailable(f"{self.id}: a labgrid board needs a `place` and the coordinator's address "
                                   "(the inventory's `coordinator = \"host:port\"`, or LG_COORDINATOR)")
        self.blob = blob
        self.acquire_timeout = acquire_timeout
        self.record = Path(log_dir) / f"{self.id}.place.json" if log_dir else None
        self.held = False
        self.gdb: tuple[str, int] | None = None
        self.firmware = None          # firmware-bin/'s image, once the board showed it runs that build

    def describe(self) -> str:
        return f"{self.id} (labgrid place {self.place} at {self.coordinator}, {self.backend}, {self.target.name})"

    def debug_port(self) -> DebugPort | None:
        return DebugPort("gdb-remote", *self.gdb) if self.gdb else None

    # --- the place's lock ---
    def _stale(self, holder: str, me: str) -> bool:
        """The place is held by this host and user, and this board's record says a process now gone
        acquired it."""
        if holder != me or self.record is None or not self.record.exists():
            return False
        try:
            rec = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        if rec.get("place") != self.place or rec.get("holder") != holder:
            return False
        try:
            os.kill(int(rec["pid"]), 0)
            return False
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.acquire_timeout
        while True:
            if (holder := _on_loop(self._try_acquire())) is None:
                self.held = True
                return
            if time.monotonic() > deadline:
                raise PlaceBusy(f"labgrid place {self.place} is held by {holder}: waited {self.acquire_timeout:g} s "
                                f"(the inventory's `acquire_timeout`); skipped", self.place, holder)
            time.sleep(POLL_S)

    async def _try_acquire(self) -> str | None:
        """Acquire the place if nobody holds it (taking it back from a killed run of this board); None
        then, else who holds it."""
        async with _Coordinator(self.coordinator) as c:
            me, holder = c.identity(), c.place(self.place).acquired
            if holder and self._stale(holder, me):
                await c.release(self.place, holder)       # left by a killed run of this folder: taken back
                holder = c.place(self.place).acquired
            if holder:
                return holder
            if self.record is not None:
                self.record.parent.mkdir(parents=True, exist_ok=True)
                self.record.write_text(json.dumps({"place": self.place, "holder": me, "pid": os.getpid(),
                                                   "coordinator": self.coordinator}))
            refused = await c.acquire(self.place)
            return None if refused is None else c.place(self.place).acquired or f"nobody (refused: {refused})"

    async def _resources(self) -> dict[str, dict]:
        async with _Coordinator(self.coordinator) as c:
            return c.resources(self.place)

    async def _release_place(self) -> None:
        async with _Coordinator(self.coordinator) as c:
            await c.release(self.place)

    def _release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            _on_loop(self._release_place())
        except BoardLinkLost:
            return       # the coordinator is gone: the record stays, and a resume takes the place back
        if self.record is not None:
            self.record.unlink(missing_ok=True)

    # --- start and stop ---
    def start(self, timeout: float | None = None) -> None:
        timeout = timeout or self.start_timeout
        if self.session is not None or self.held:
            self.close()
        self._acquire()
        try:
            res = _on_loop(self._resources())
            host, port = self._serial(res)
            if "NetworkPowerPort" in res:
                self._power_cycle(res["NetworkPowerPort"]["params"])
            if "NetworkService" in res:
                p = res["NetworkService"]["params"]
                self.gdb = (p["address"], int(p.get("port", 22)))
            deadline = time.monotonic() + timeout
            try:
                sock = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
            except OSError as e:
                raise BoardLinkLost(f"{self.describe()}: cannot connect to its serial port {host}:{port}: {e}") from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.session = Session(sock, self.describe())
            # answers to a former client's requests may still come: a sequence of our own does not match them
            self.session.seq = random.randrange(0x10000)
            self.wait_ready(max(1.0, deadline - time.monotonic()))
            self._check_served(self.info())
        except BaseException:
            self.close()
            raise

    def _power_cycle(self, params: dict) -> None:
        """Off, then on, through labgrid's ``NetworkPowerDriver``: every start begins from reset, as a
        local emulator's does, and a wedged board is cured by the reset that follows its failure."""
        from labgrid import Target
        from labgrid.driver import NetworkPowerDriver
        from labgrid.resource import NetworkPowerPort
        target = Target(f"{self.place}-power")
        NetworkPowerPort(target, None, **{k: params[k] for k in ("model", "host", "index")})
        driver = NetworkPowerDriver(target, None, delay=POWER_OFF_S)
        try:
            target.activate(driver)
            driver.cycle()
        except Exception as e:     # the switch's HTTP errors, a backend's own: the lab host is not answering
            raise BoardLinkLost(f"{self.describe()}: its power switch ({params.get('model')} at "
                                f"{params.get('host')}): {type(e).__name__}: {e}") from None
        finally:
            target.deactivate_all_drivers()

    def _serial(self, res: dict[str, dict]) -> tuple[str, int]:
        if "NetworkSerialPort" not in res:
            raise BoardUnavailable(f"{self.describe()}: the place has no NetworkSerialPort (its resources: "
                                   f"{', '.join(sorted(res)) or 'none'}); export the board's UART (docs/farm.md)")
        r = res["NetworkSerialPort"]
        if not r["avail"]:
            raise BoardLinkLost(f"{self.describe()}: its NetworkSerialPort {r['name']} is not available")
        p = r["params"]
        if p.get("protocol", "rfc2217") != "raw":
            raise BoardUnavailable(f"{self.describe()}: its NetworkSerialPort speaks {p.get('protocol', 'rfc2217')!r}; "
                                   "the exporter's YAML must say `protocol: raw` (a TCP byte stream, as "
                                   "`harness board serve` gives)")
        return p["host"], int(p["port"])

    def _check_served(self, info) -> None:
        """The board runs firmware-bin/'s build and holds this board's blob, or it is not this board."""
        from ..firmware import FirmwareError, firmware_elf
        try:
            elf = firmware_elf(self.target.name)
            build = json.loads((elf.parent / "manifest.json").read_text()).get("build_id")
        except (FirmwareError, OSError, ValueError):
            elf, build = None, None
        if build is not None and info.build_id != build[:len(info.build_id)]:
            raise BoardUnavailable(f"{self.describe()}: it runs firmware build {info.build_id}, firmware-bin/ has "
                                   f"{build[:16]}: serve firmware-bin/{self.target.name}/firmware.elf there")
        self.firmware = elf
        if self.blob is None:
            return
        size, crc = struct.unpack_from("<II", self.blob, 8)
        if info.blob_status != "ok" or (info.blob_size, info.blob_crc) != (size, crc):
            raise BoardUnavailable(
                f"{self.describe()}: it holds another blob ({info.blob_status}, {info.blob_size:,} bytes, CRC "
                f"{info.blob_crc:#010x}) than the job's ({size:,} bytes, CRC {crc:#010x}); a remote board runs the "
                "blob its lab host loaded: `harness export --out B.bin` and `harness board serve --blob B.bin` there")

    def close(self) -> None:
        self._drop_session()
        self._release()
