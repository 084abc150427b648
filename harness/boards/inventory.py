"""The board inventory: which boards exist and how to reach them (a TOML file, read by the pytest plugin's
``--inventory`` and by the farm).

    [[board]]
    id = "f405-1"                 # unique; `--board serial:f405-1` picks it
    backend = "serial"            # qemu | renode | host | serial | labgrid
    target = "netduinoplus2"      # targets/<target>.toml
    port = "/dev/ttyACM0"         # serial: the UART (required)
    baud = 115200                 # serial: optional, 115200
    probe = "0669FF535155878281"  # serial: pyOCD probe unique id (`pyocd list`); optional with one probe
    # place = "lab-a-an386"       # labgrid: the place (required)
    # coordinator = "lab:20408"   # labgrid: the coordinator's address (else LG_COORDINATOR)
    # serves = "qemu"             # labgrid: the backend at the place, qemu | renode | serial (default qemu)
    # acquire_timeout = 60        # labgrid: seconds to wait for a place someone else holds, then skip it
    tags = ["nightly"]
    # start_timeout = 180         # any backend: seconds a start may take (default: the backend's, e.g. Renode 120;
    #                             # the farm gives the longer of it and the plan's [run] start_timeout_s)
    # inject = "hang@3"           # any backend: misbehave after 3 puzzles (testing the farm, boards/faults.py)

A ``BoardSpec``'s ``options`` are ``make_board``'s keyword arguments (``probe`` becomes ``probe_id``):
``make_board(spec.backend, load_target(spec.target), blob, board_id=spec.id, **spec.options)``.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..targets import target_names
from .factory import BACKENDS


class InventoryError(ValueError):
    pass


@dataclass(frozen=True)
class BoardSpec:
    id: str
    backend: str
    target: str
    options: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


# inventory key -> make_board keyword, per backend
OPTIONS = {"serial": {"port": "port", "baud": "baud", "probe": "probe_id"},
           "labgrid": {"place": "place", "coordinator": "coordinator", "serves": "serves",
                       "acquire_timeout": "acquire_timeout"}}
REQUIRED = {"serial": ("port",), "labgrid": ("place",)}


def load_inventory(path: str | Path) -> list[BoardSpec]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise InventoryError(f"inventory {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise InventoryError(f"inventory {p} is not valid TOML: {e}") from None
    unknown = set(data) - {"board"}
    if unknown or not isinstance(data.get("board"), list):
        raise InventoryError(f"inventory {p}: expected only [[board]] tables"
                             + (f", found {', '.join(sorted(unknown))}" if unknown else ""))
    specs: list[BoardSpec] = []
    for i, entry in enumerate(data["board"]):
        specs.append(_spec(entry, f"inventory {p}, board {i + 1}"))
    ids = [s.id for s in specs]
    if (dup := sorted({x for x in ids if ids.count(x) > 1})):
        raise InventoryError(f"inventory {p}: board id(s) used twice: {', '.join(dup)}")
    return specs


def _spec(entry: dict, where: str) -> BoardSpec:
    for key in ("id", "backend", "target"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise InventoryError(f"{where}: `{key}` is required (a string)")
    where = f"{where} ({entry['id']})"
    backend, target = entry["backend"], entry["target"]
    if backend not in BACKENDS:
        raise InventoryError(f"{where}: backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if target not in target_names():
        raise InventoryError(f"{where}: unknown target {target!r}; known: {', '.join(target_names())}")
    keys = OPTIONS.get(backend, {})
    allowed = {"id", "backend", "target", "tags", "inject", "start_timeout", *keys}
    if (extra := sorted(set(entry) - allowed)):
        raise InventoryError(f"{where}: unknown key(s) {', '.join(extra)} for backend {backend}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    for key in REQUIRED.get(backend, ()):
        if key not in entry:
            raise InventoryError(f"{where}: backend {backend} needs `{key}`")
    for key, kind in (("port", str), ("probe", str), ("baud", int), ("place", str), ("coordinator", str)):
        if key in entry and (not isinstance(entry[key], kind) or not entry[key] or isinstance(entry[key], bool)
                             or (kind is int and entry[key] <= 0)):
            raise InventoryError(f"{where}: `{key}` must be a {'positive integer' if kind is int else 'string'}, "
                                 f"not {entry[key]!r}")
    if backend == "labgrid":
        _check_labgrid(entry, where)
    for key in ("start_timeout", "acquire_timeout"):
        if key in entry:
            from .factory import check_start_timeout
            try:
                check_start_timeout(entry[key], f"`{key}`")
            except ValueError as e:
                raise InventoryError(f"{where}: {e}") from None
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InventoryError(f"{where}: `tags` must be a list of strings")
    if "inject" in entry:                 # testing the farm: harness/boards/faults.py
        from .faults import parse
        try:
            parse(entry["inject"])
        except (ValueError, TypeError) as e:
            raise InventoryError(f"{where}: {e}") from None
    options = {keys.get(k, k): v for k, v in entry.items() if k in keys or k in ("inject", "start_timeout")}
    return BoardSpec(entry["id"], backend, target, options, list(tags))


def _check_labgrid(entry: dict, where: str) -> None:
    from .labgrid import SERVES
    if entry.get("serves", "qemu") not in SERVES:
        raise InventoryError(f"{where}: `serves` must be one of {', '.join(SERVES)} (the backend at the place), "
                             f"not {entry['serves']!r}")
    if "coordinator" not in entry and not os.environ.get("LG_COORDINATOR"):
        raise InventoryError(f"{where}: backend labgrid needs the coordinator: `coordinator = \"host:port\"`, "
                             "or LG_COORDINATOR in the environment")


def counts_backend(spec: BoardSpec) -> str:
    """The backend whose counts ``spec``'s board gives: a labgrid board's `serves`, else its own."""
    return spec.options.get("serves", "qemu") if spec.backend == "labgrid" else spec.backend


def find_board(specs: list[BoardSpec], board_id: str, where: str = "the inventory") -> BoardSpec:
    for s in specs:
        if s.id == board_id:
            return s
    raise InventoryError(f"no board {board_id!r} in {where}; its boards: {', '.join(s.id for s in specs) or 'none'}")
