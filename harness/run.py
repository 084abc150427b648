"""One job on one board: blob -> board -> (probe) -> rows. ``harness run`` and the farm both use it.

For every puzzle: the board's predictions after every step it ran and its final carries, the same
from the golden reference (``from_blob`` of the very blob the board holds), and the board's counts
(counter, stack high-water mark, arena bytes, flash bytes read). A row says whether the board agreed
with golden bit for bit; a disagreement is a bug, never a tolerance. With a probe, every cycle's carries
are read at the firmware's cycle hook and the device's carry-trajectory fidelity is computed from them.

It sits above ``boards/`` and ``probe/`` and joins them: a board says where its debug port is, a probe
attaches there; deployment figures come from ``figures``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from . import figures as F
from . import stats as S
from .boards import protocol as P
from .boards.base import Board, RunRequest
from .boards.errors import BoardTimeout
from .depth import Depth
from .export import blob as B
from .golden.fidelity import carry_fidelity
from .probe import attach
from .probe.capture import HOOK, CarryRecord, capture, carries_array, inject
from .probe.elf import address
from .tasks import score, stack


class RunError(ValueError):
    """The blob and the puzzles cannot run together (a corrupt blob, another model's blob): said before
    any board starts."""


def golden_of(blob: bytes, seq_len: int, what: str = "the blob"):
    """The golden integer model of ``blob`` (``blob.from_blob``), validated as the firmware will (header,
    CRC, tensor table, every tensor) and against the puzzles' length."""
    try:
        im = B.from_blob(blob)
    except B.BlobError as e:
        raise RunError(f"{what} is not a valid model blob: {e}; re-export it (`harness export`)") from e
    if im.config["seq_len"] != seq_len:
        raise RunError(f"{what} is for puzzles of {im.config['seq_len']} tokens, these puzzles have {seq_len}: "
                       "another model's blob? export the blob of this model")
    return im


def check_blob(blob: bytes, seq_len: int, what: str = "the blob") -> dict:
    """``golden_of``'s checks, before any board starts; returns the blob's header."""
    golden_of(blob, seq_len, what)
    return B.read_header(blob)


def open_probe(board: Board, timeout: float = 10.0):
    """A probe attached to ``board``'s debug port, core running; a physical board's (``serial``) debug probe
    through pyOCD's API (its probe id and pyOCD target type from the board: not yet run on hardware)."""
    port = board.debug_port()
    if port is None and board.backend == "serial":
        from .probe.pyocd_probe import PyOcdProbe
        return PyOcdProbe.open(getattr(board.flasher, "probe_id", None), board.target.pyocd_target)
    if port is None:
        raise RuntimeError(f"{board.describe()}: no debug port (a QEMU or Renode board started with gdb_port)")
    return attach(port.kind, port.host, port.port, halts_on_attach=port.halts_on_attach, timeout=timeout)


def run_traced(board: Board, probe, elf, request: RunRequest, timeout: float = 600.0, prefix: int = 0,
               start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[P.Result, list[CarryRecord]]:
    """Run one puzzle with a breakpoint at the cycle hook; returns the RESULT and the carry records
    (``prefix`` + L rows each: the blob's prefix rows, then the sequence). ``start`` (y, z): written over
    the carries at the first stop, so that the second cycle starts from them (``locate_update``)."""
    info = board.model_info or board.info()
    hook = address(elf, HOOK)
    if probe.running:
        probe.halt()
    probe.set_breakpoint(hook)
    records: list[CarryRecord] = []
    probe.cont()
    seq = board.send(P.RUN, request.payload())
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise BoardTimeout(f"{board.describe()}: traced run did not finish in {timeout} s")
            if probe.wait_stop(0.02) is not None:
                records.append(capture(probe, prefix + info.seq_len, info.hidden))
                if start is not None and len(records) == 1:
                    inject(probe, *start)
                probe.cont_from_breakpoint(hook)
                continue
            answer = board.poll(seq, 0.01)
            if answer is not None:
                kind, body = answer
                if kind != P.RESULT:
                    raise P.ProtocolError(f"{board.describe()}: expected RESULT, got type {kind:#x}")
                return P.parse_result(body, info.hidden), records
    finally:
        if probe.running:
            probe.halt()
        probe.clear_breakpoint(hook)
        probe.cont()


def golden_batch(im, x: np.ndarray, depth: Depth) -> list[dict]:
    """The golden reference on a batch of puzzles at once (vectorised: much cheaper than one by one),
    split into what ``puzzle_row(golden=...)`` takes for each puzzle."""
    g = im.run(x, depth.T, depth.n, depth.steps, keep_carries=True)
    return [{"per_step": g["per_step"][:, i:i + 1], "halt": g["halt"][:, i:i + 1],
             "y": g["y"][:, :, i:i + 1], "z": g["z"][:, :, i:i + 1]} for i in range(len(x))]


def puzzle_row(board: Board, im, task, p, x: np.ndarray, y: np.ndarray, depth: Depth, check: bool = True,
               embed_ram: bool = False, timeout: float = 600.0, probe=None, fp32=None, golden=None) -> dict:
    """Run one puzzle (tokens ``x``, label ``y``) on ``board`` and return its row. ``im`` is the golden
    integer model of the board's blob (None: no check, no trace); ``golden``, when given, is its output
    for this puzzle already computed (``golden_batch``). Board failures (``boards.errors``) propagate."""
    return _puzzle(board, im, task, p, x, y, depth, check, embed_ram, timeout, probe, fp32, golden)[0]


def _puzzle(board: Board, im, task, p, x: np.ndarray, y: np.ndarray, depth: Depth, check: bool = True,
            embed_ram: bool = False, timeout: float = 600.0, probe=None, fp32=None, golden=None
            ) -> tuple[dict, list[CarryRecord] | None, dict | None]:
    """``puzzle_row``, with the carry records read over the probe (None without one) and the golden
    output it compared with (None without ``im``)."""
    request = RunRequest(x, depth.T, depth.n, depth.steps, depth.halting, carries=check, embed_ram=embed_ram)
    trace = None
    t0 = time.monotonic()
    if probe is not None:
        res, records = run_traced(board, probe, board.firmware, request, timeout=timeout,
                                  prefix=im.prefix if im is not None else 0)
        trace = {"records": records, "wall_s": time.monotonic() - t0}
    else:
        res = board.run(request, timeout=timeout)
    device_s = time.monotonic() - t0
    s = score(task, x[None], y[None], res.prediction[None])
    kind = F.counts_kind(board.backend, res.counter_unit)
    row = {"puzzle_id": p.id, "correct": bool(s["exact"][0]), "cell_accuracy": s["cell_accuracy"],
           "steps": res.steps_run, "counter": res.counter, "counter_unit": res.counter_unit, "counts_kind": kind,
           "instructions": F.instructions(res.counter, res.counter_unit, res.counter_hz, board.backend),
           "stack_bytes": res.stack_bytes, "arena_bytes": res.arena_bytes,
           "ram_inference_bytes": res.arena_bytes + res.stack_bytes, "flash_bytes_read": res.flash_bytes_read}
    row.update(F.puzzle_figures(board.target, kind, count_of(row)))
    if trace is None:
        row["device_wall_s"] = device_s    # host time of the request: emulated compute + the UART round trip
    # one golden run per puzzle serves both the bit-exactness check and the trace
    g = golden if golden is not None else (
        im.run(x[None], depth.T, depth.n, depth.steps, keep_carries=True) if im is not None else None)
    if check:
        k = res.steps_run
        if depth.halting:
            halted = np.flatnonzero(g["halt"][:, 0])
            want_steps = int(halted[0]) + 1 if len(halted) else depth.steps
        else:
            want_steps = depth.steps
        row["golden_match"] = bool(
            k == want_steps and np.array_equal(g["per_step"][:k, 0], res.per_step)
            and np.array_equal(g["y"][k - 1, -1, 0], res.y) and np.array_equal(g["z"][k - 1, -1, 0], res.z))
    if trace is not None:
        k = res.steps_run
        yd, zd = carries_array(trace["records"], k, depth.T)
        row["trace_cycles"] = len(trace["records"])
        row["trace_wall_s"] = trace["wall_s"]
        row["carries_match_golden"] = bool(
            len(trace["records"]) == k * depth.T and np.array_equal(g["y"][:k, :, 0], yd)
            and np.array_equal(g["z"][:k, :, 0], zd))
        if fp32 is not None:
            dev, gold = fidelities(fp32, (yd, zd), (g["y"][:k, :, 0], g["z"][:k, :, 0]), im.carry_scale)
            row["device_fidelity_per_cycle"] = [float(v) for v in dev]
            row["device_fidelity_final"] = float(dev[-1])
            row["device_fidelity_equals_golden"] = bool(np.array_equal(dev, gold))
    return row, trace["records"] if trace is not None else None, g


def fidelities(fp32: dict, device: tuple[np.ndarray, np.ndarray], golden: tuple[np.ndarray, np.ndarray],
               scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cycle run, the fidelity to the fp32 carries (``fp32`` [S, T, 1, R, D]) of one puzzle's device
    carries and of golden's (y, z [k, T, R, D] each, k the steps run): the one formula, ``carry_fidelity``."""
    k = device[0].shape[0]
    ref = {"y": fp32["y"][:k], "z": fp32["z"][:k]}
    return tuple(carry_fidelity(ref, y[:, :, None], z[:, :, None], scale)[0] for y, z in (device, golden))


# what a divergence's location pins (its ``resolution``; docs/farm.md says why no finer)
RESOLUTIONS = {
    "update": "step, cycle and update (z1..zn: the cycle's z-updates; y: its y-update), and the element of that "
              "update's output: the cycle replayed from golden's carry before it (the probe writes it at the cycle "
              "hook) with 1..n z-updates; the block is not observable (no hook inside a network evaluation)",
    "cycle": "step, cycle and the element of the carry after the cycle (z before y: the z-updates come first); the "
             "replay from golden's carry did not give the device's carry after the cycle again, so the update is "
             "not pinned; the block is not observable"}


def trace_puzzle(board: Board, probe, im, task, p, x: np.ndarray, y: np.ndarray, depth: Depth, fp32: dict,
                 timeout: float = 600.0, golden: dict | None = None) -> tuple[dict, list[dict], dict | None]:
    """Puzzle ``p`` run over the probe: its row (``puzzle_row``'s, checked against golden, ``im``), one
    entry per cycle run (``step``, ``cycle``; ``fidelity``: the device carry's to the fp32 carries ``fp32``
    [S, T, 1, R, D]; ``golden_fidelity``: golden's at the same cycle, computed on the host; ``carry_sha256``
    of the device carry, y then z as int8 bytes; ``equals_golden``; ``carry``: those bytes when they are not
    golden's, else None), and where the device's carries first part from golden's (``first_divergence``,
    the update pinned by ``locate_update``), None when they never do."""
    row, records, g = _puzzle(board, im, task, p, x, y, depth, check=True, timeout=timeout, probe=probe, golden=golden)
    k, T = row["steps"], depth.T
    yd, zd = carries_array(records, k, T)
    yg, zg = g["y"][:k, :, 0], g["z"][:k, :, 0]
    dev, gold = fidelities(fp32, (yd, zd), (yg, zg), im.carry_scale)
    cycles = []
    for i in range(k * T):
        s, c = divmod(i, T)
        carry = yd[s, c].tobytes() + zd[s, c].tobytes()
        same = bool(np.array_equal(yd[s, c], yg[s, c]) and np.array_equal(zd[s, c], zg[s, c]))
        cycles.append({"step": s, "cycle": c, "fidelity": float(dev[i]), "golden_fidelity": float(gold[i]),
                       "carry_sha256": hashlib.sha256(carry).hexdigest(), "equals_golden": same,
                       "carry": None if same else carry})
    where = first_divergence((yd, zd), (yg, zg))
    if where is not None:
        where = locate_update(board, probe, im, x, depth, where, (yd, zd), (yg, zg), timeout)
    return row, cycles, where


def first_divergence(device: tuple[np.ndarray, np.ndarray], golden: tuple[np.ndarray, np.ndarray]) -> dict | None:
    """The first cycle where the device's carries (y, z [S, T, R, D]) differ from golden's, in the order
    they are computed (cycle by cycle; within a cycle z, whose updates come first, then y), and the first
    element (row, channel) of that carry that differs, with both values; None when they never differ."""
    (yd, zd), (yg, zg) = device, golden
    S, T = yd.shape[:2]
    for i in range(S * T):
        s, c = divmod(i, T)
        for carry, a, b in (("z", zd[s, c], zg[s, c]), ("y", yd[s, c], yg[s, c])):
            if (where := _first_element(a, b)) is not None:
                return {"step": s, "cycle": c, "update_name": carry, "block": None, "carry": carry, **where,
                        "resolution": "cycle"}
    return None


def _first_element(device: np.ndarray, golden: np.ndarray) -> dict | None:
    """The first (row-major) element of [R, D] where ``device`` differs from ``golden``, with both values."""
    diff = np.flatnonzero(device != golden)
    if not diff.size:
        return None
    row, channel = divmod(int(diff[0]), device.shape[1])
    return {"row": row, "channel": channel, "device": int(device[row, channel]), "golden": int(golden[row, channel])}


def locate_update(board: Board, probe, im, x: np.ndarray, depth: Depth, where: dict,
                  device: tuple[np.ndarray, np.ndarray], golden: tuple[np.ndarray, np.ndarray],
                  timeout: float = 600.0) -> dict:
    """Pin a divergence found in the carry after a cycle (``first_divergence``) to the update of that cycle
    whose output first parts from golden's. The device shows its carry only after whole cycles, so the
    cycle is replayed: the board runs 2 cycles of j z-updates (one step, no halting) and the probe writes,
    at the first cycle's hook, the carry before the diverging cycle (golden's, which the device's equals
    there) over the board's; the second cycle's z is then the device's z after j z-updates of the diverging
    cycle, and with j = n its y is the y-update's. Compared with golden's updates (``IntModel.cycle``), the
    first that differs names the update (z<j> or y) and the element of its output. The replay with j = n
    must give the device's carry after the diverging cycle again; when it does not, the cycle-level
    location stands (resolution "cycle", ``RESOLUTIONS``). The replays' counts are thrown away."""
    s, c, T, n = where["step"], where["cycle"], depth.T, depth.n
    i = s * T + c
    R, D = device[0].shape[2:]
    if i == 0:
        start = (np.broadcast_to(im.y_init, (R, D)), np.broadcast_to(im.z_init, (R, D)))
    else:
        ps, pc = divmod(i - 1, T)
        start = (golden[0][ps, pc], golden[1][ps, pc])
    start = tuple(np.ascontiguousarray(a, np.int8) for a in start)
    rows = im.input_rows(np.asarray(x, np.int64)[None])
    want = im.cycle(rows, start[0][None].astype(np.int64), start[1][None].astype(np.int64), n)

    def replay(j: int) -> CarryRecord:
        request = RunRequest(np.asarray(x), 2, j, 1, False)
        return run_traced(board, probe, board.firmware, request, timeout=timeout, prefix=im.prefix, start=start)[1][1]

    full = replay(n)
    if not (np.array_equal(full.y, device[0][s, c]) and np.array_equal(full.z, device[1][s, c])):
        return where
    for j in range(1, n + 1):
        got = full if j == n else replay(j)
        if (el := _first_element(got.z, want[j - 1][1][0])) is not None:
            return {**where, "update_name": f"z{j}", "carry": "z", **el, "resolution": "update"}
    el = _first_element(full.y, want[-1][1][0])
    return {**where, "update_name": "y", "carry": "y", **(el or {}), "resolution": "update"}


def count_of(row: dict) -> float:
    """The count a row's figures are computed from: instructions on an emulator, the counter elsewhere."""
    return row["instructions"] if row["counts_kind"] == "instructions" else row["counter"]


def run_puzzles(board: Board, blob: bytes, task, puzzles, depth: Depth, progress=None,
                check: bool = True, embed_ram: bool = False, timeout: float = 600.0,
                probe=None, reference=None) -> dict:
    """Run every puzzle on ``board``. With a ``probe`` (attached to the board's debug port) every cycle's
    carries are captured at the firmware's cycle hook; with the fp32 ``reference`` model as well, the
    device's carry-trajectory fidelity is computed from them (and, with ``check``, the golden
    reference's fidelity beside it: equal when the carries are bit-identical)."""
    x, y = stack(puzzles)
    im = golden_of(blob, x.shape[1])        # the golden model of the very blob the board holds
    if not (check or probe is not None):
        im = None                           # nothing to compare: no golden runs
    info = board.info()
    fp32 = fp32_carries(reference, x, depth) if (probe is not None and reference is not None) else None
    rows = []
    for i, p in enumerate(puzzles):
        fp32_i = {"y": fp32["y"][:, :, i:i + 1], "z": fp32["z"][:, :, i:i + 1]} if fp32 is not None else None
        rows.append(puzzle_row(board, im, task, p, x[i], y[i], depth, check=check, embed_ram=embed_ram,
                               timeout=timeout, probe=probe, fp32=fp32_i))
        if progress:
            progress(1)
    summary = summarize(rows, board, len(blob), B.read_header(blob))
    return {"info": info, "rows": rows, "summary": summary}


def summarize(rows: list[dict], board: Board, blob_bytes: int, header: dict) -> dict:
    """Accuracy and agreement over the rows, and the configuration's deployment figures
    (``figures.config_figures``: the report computes the same from the same rows)."""
    if not rows:
        return {}
    out = F.outcome([r["correct"] for r in rows], [r["cell_accuracy"] for r in rows], [r["steps"] for r in rows],
                    [r["arena_bytes"] for r in rows], [r["flash_bytes_read"] for r in rows])
    out.update(S.intervals(sum(bool(r["correct"]) for r in rows), len(rows), [r["cell_accuracy"] for r in rows]))
    if "golden_match" in rows[0]:
        out["golden_match"] = sum(r["golden_match"] for r in rows)
    if "trace_cycles" in rows[0]:
        out["carries_match_golden"] = sum(r["carries_match_golden"] for r in rows)
        out["trace_wall_s_mean"] = float(np.mean([r["trace_wall_s"] for r in rows]))
    if "device_fidelity_final" in rows[0]:
        out["device_fidelity_final"] = float(np.mean([r["device_fidelity_final"] for r in rows]))
        out["device_fidelity_equals_golden"] = sum(r["device_fidelity_equals_golden"] for r in rows)
    out.update(F.config_figures(board.target, board.backend, rows[0]["counts_kind"], [count_of(r) for r in rows],
                                [r["stack_bytes"] for r in rows], [r["ram_inference_bytes"] for r in rows],
                                blob_bytes, firmware_sections(board), F.ram_theoretical_min(header)))
    return out


def profile_puzzles(board: Board, blob: bytes, task, puzzles, depth: Depth, rows: list[dict] | None = None,
                    embed_ram: bool = False, timeout: float = 600.0) -> dict:
    """Every puzzle again with the RUN flag PROFILE (``harness.profile``): per operation its calls, its
    counts (instructions on an emulator, else the counter's unit) summed over the puzzles, its share,
    and counts per MAC where it multiplies. The parts add up to the profiled runs' total exactly (in
    the counter's units). ``rows`` (the same puzzles run without the flag) give the marks' own cost:
    the profiled total against the plain one. The answers must not change: a profiled puzzle whose
    steps, correctness or cell accuracy differ from its plain run is an error."""
    from . import profile as PR
    sums = [[0, 0] for _ in PR.OPS]
    total = 0
    unit = hz = None
    for i, p in enumerate(puzzles):
        x = np.array(p.inputs, dtype=np.uint8)
        res = board.run(RunRequest(x, depth.T, depth.n, depth.steps, depth.halting, embed_ram=embed_ram,
                                   profile=True), timeout=timeout)
        if rows is not None:
            sc = score(task, x[None].astype(np.int64), np.array(p.labels)[None], res.prediction[None])
            if (res.steps_run, bool(sc["exact"][0]), sc["cell_accuracy"]) != \
                    (rows[i]["steps"], rows[i]["correct"], rows[i]["cell_accuracy"]):
                raise RuntimeError(f"{board.describe()}: puzzle {p.id} answers differently with PROFILE: a firmware bug")
        for k, (calls, counts) in enumerate(res.profile):
            sums[k][0] += calls
            sums[k][1] += counts
        total += res.counter
        unit, hz = res.counter_unit, res.counter_hz
    prof = PR.Profile([tuple(v) for v in sums], total)
    kind = F.counts_kind(board.backend, unit)
    scale = F.instructions_per_count(unit, hz, board.backend) or 1.0
    out = {"counts_kind": kind, "counter_unit": unit, "counter_hz": hz, "puzzles": len(puzzles),
           "total": total * scale, "total_counter": total, "parts_counter": prof.parts,
           "ops": prof.table(PR.macs_per_call(B.read_header(blob)), scale)}
    if rows is not None:
        plain = sum(int(r["counter"]) for r in rows)
        out["plain_total"] = plain * scale
        out["marks_cost"] = (total - plain) * scale
        out["marks_share"] = (total - plain) / plain if plain else 0.0
    top = max((r for r in out["ops"] if r["op"] != "other"), key=lambda r: r["counts"], default=None)
    out["top"] = top["op"] if top else None
    return out


def fp32_carries(reference, x: np.ndarray, depth: Depth) -> dict[str, np.ndarray]:
    """The fp32 model's carries [S, T, B, L, D] on the puzzles (no halting: every step)."""
    import torch
    with torch.no_grad():
        r = reference.forward_trace(torch.as_tensor(x), depth.T, depth.n, depth.steps)
    return {"y": r["y"].float().numpy(), "z": r["z"].float().numpy()}


def firmware_image(board: Board) -> Path | None:
    """The firmware ELF whose sections count against the target: the board's, or for a board without one
    (the host build) the target's prebuilt image, the one a device would run."""
    fw = getattr(board, "firmware", None)
    if fw is None:
        from .firmware import FirmwareError, firmware_elf
        try:
            fw = firmware_elf(board.target.name)
        except FirmwareError:
            return None
    return Path(fw)


def manifest(firmware: Path | None) -> dict:
    path = Path(firmware).parent / "manifest.json" if firmware else None
    return json.loads(path.read_text()) if path is not None and path.exists() else {}


def firmware_sections(board: Board) -> dict | None:
    return manifest(firmware_image(board)).get("sections")


def prebuilt_sections(target) -> dict | None:
    """The sections of ``target``'s prebuilt firmware image (firmware-bin/), None when there is none."""
    from .firmware import FirmwareError, firmware_elf
    try:
        return manifest(firmware_elf(target.name)).get("sections")
    except FirmwareError:
        return None


def provenance(board: Board, blob: bytes) -> dict:
    out = {"board": board.id, "backend": board.backend, "target": board.target.name,
           "blob_sha256": hashlib.sha256(blob).hexdigest()}
    version = getattr(board, "emulator_version", None)
    if version is not None and (v := version()) is not None:
        out["emulator"] = v              # e.g. "Renode v1.15.1.37254, build: ..." (docs/boards.md: what counts mean)
    fw = getattr(board, "firmware", None)
    if fw is not None:
        out["firmware_sha256"] = hashlib.sha256(Path(fw).read_bytes()).hexdigest()
        m = manifest(fw)
        if m:
            out["firmware_build_id"] = m.get("build_id")
            out["firmware_sections"] = m.get("sections")
    return out
