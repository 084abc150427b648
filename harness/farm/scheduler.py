"""``harness farm run``: the plan's jobs on the inventory's boards, in parallel, into the journal.

One worker thread per board takes the next job of its target, brings the board up with the job's blob
(a board keeps running while consecutive jobs share a blob), and runs every puzzle the journal does not
already hold. A puzzle that fails the board (``boards.errors.BoardFailure``: a timeout, garbage, a
fault, a dead emulator, a lost probe) is an event: the board is reset (closed and started again) and
the puzzle retried, ``run.retries`` times; a board that still
fails, or has failed ``run.quarantine_after`` times in the run, is quarantined and its job goes back to the queue for another board of the same target. When no
healthy board of a target is left, its remaining puzzles are journalled as ``board_failure`` (never as
wrong answers) and ``--resume`` tries them again. Once a job's puzzles all have rows, its first
``[run] profile_puzzles`` puzzles run again with the firmware's per-operation profile
(``harness.run.profile_puzzles``) into the journal's profiles, once per job; a board failure there is an
event, and the job goes without a profile until a resume. Then, on a board with a probe, the puzzles
``[run] trace`` names (and the first few whose row disagrees with golden) run again over the probe
(``harness.run.trace_puzzle``): every cycle's carry is read, its fidelity journalled beside golden's,
and where a carry parts from golden's the divergence is located; likewise an event on a board failure
and traced by a resume. Anything else (a refused request, a bad
input, a bug in the harness) is not a board's fault: the run stops, every board is closed, the journal keeps what
was recorded, and the error reaches the caller.

Emulated boards share the host's cores: at most ``run.max_parallel`` of them (default: the core
count) run at once. Host-side figures (golden or torch accuracy and carry fidelity on the same puzzles)
are computed first, for every model × recipe × depth, plus the plan's host-only recipes.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import figures as F
from .. import profile as PR
from ..boards import protocol as P
from ..boards.base import Board
from ..boards.errors import BoardFailure, PlaceBusy
from ..boards.inventory import BoardSpec
from ..boards.renode import free_ports
from ..depth import Depth
from ..models.evaluate import default_depth
from ..probe.gdb import ProbeError
from ..run import fp32_carries, golden_batch, open_probe, prebuilt_sections, profile_puzzles, puzzle_row, trace_puzzle
from ..targets import Target, load_target
from .folder import FolderError, match_journal
from .journal import Journal
from .plan import Job, Plan
from .provenance import collect_provenance

# what a sick board looks like from here (a lost probe too): anything else stops the run
BOARD_FAILURES = (BoardFailure, ProbeError)
EMULATED = ("qemu", "renode")
GOLDEN_BATCH = 32      # puzzles the golden reference runs at once for the bit-exactness check
TRACEABLE = EMULATED + ("serial", "labgrid")   # backends with a probe: GDB servers, a physical board's pyOCD
MISMATCH_TRACES = 4    # a job's puzzles that disagree with golden, traced beside [run] trace's (to locate why)


def default_inventory(plan: Plan, backend: str = "qemu") -> list[BoardSpec]:
    """One board of ``backend`` per target of the plan."""
    return [BoardSpec(f"{backend}-{t}", backend, t) for t in plan.targets]


# --- what every job needs, prepared once ----------------------------------------------------------
@dataclass
class ModelInputs:
    net: Any
    task: Any
    puzzles: list
    x: np.ndarray
    y: np.ndarray
    puzzle_set: dict[str, Any]
    puzzle_set_hash: str
    record: dict[str, Any] = None    # what the report says of the model (``model_record``)


def model_record(net, config: dict[str, Any]) -> dict[str, Any]:
    """A model as the report names it: parameters, and for a shape preset (random weights) that it is
    **untrained: cost only**, with the preset's source, published depth and paper-scale table."""
    out = {"parameters": int(sum(p.numel() for p in net.parameters())), "cost_only": bool(config.get("cost_only"))}
    if config.get("cost_only"):
        from ..models.shapes import COST_ONLY, SHAPES, table_bytes
        shape = config.get("shape") or {}
        out.update(label=config.get("label", COST_ONLY), shape=shape)
        if shape.get("preset") in SHAPES:
            preset = SHAPES[shape["preset"]]
            out.update(paper_table_bytes_int8=table_bytes(preset, 8), paper_table_bytes_fp32=table_bytes(preset, 32),
                       paper_puzzle_ids=preset.table_ids)
    return out


@dataclass
class BlobInfo:
    blob: bytes
    sha256: str
    golden: Any          # the integer model read back from the blob (harness.export.blob.from_blob)


class Prepared:
    def __init__(self, plan: Plan):
        from ..models.checkpoint import load_checkpoint
        from ..tasks import stack
        from ..tasks.puzzle_source import load_puzzle_source, puzzle_set_hash

        self.plan = plan
        self.models: dict[str, ModelInputs] = {}
        spec, seed = plan.puzzle_spec()
        for m in plan.models:
            net, task, config = load_checkpoint(m)
            source, puzzles = load_puzzle_source(task, spec, seed)
            x, y = stack(puzzles)
            self.models[m] = ModelInputs(net, task, puzzles, x, y, source, puzzle_set_hash(puzzles),
                                         model_record(net, config))
        self.blobs: dict[tuple[str, str], BlobInfo] = {}

    def depth(self, job_model: str, depth: str) -> Depth:
        net = self.models[job_model].net
        return Depth.parse(None if depth == "default" else depth, default_depth(net))

    def export_all(self, progress: Callable[[str], None] | None = None) -> None:
        from ..export import blob as B
        from ..export.exporter import export_blob
        for m in self.plan.models:
            for r in self.plan.recipes:
                if progress:
                    progress(f"{m} {r}")
                data = export_blob(m, r, train=True)   # a plan naming a training recipe asks for it
                self.blobs[(m, r)] = BlobInfo(data, hashlib.sha256(data).hexdigest(), B.from_blob(data))


# --- host-side figures ----------------------------------------------------------------------------
def host_figures(prep: Prepared, journal: Journal, run: str, progress=None) -> None:
    """Golden (integer recipes, from the very blob the boards run) or torch accuracy and carry fidelity
    to fp32, for every model × recipe × depth of the plan, on the plan's puzzles."""
    from ..compress.compressed import Compressed
    from ..compress.recipes import apply, get_recipe
    from ..compress.study import evaluate_compressed, reference_runs

    plan = prep.plan
    done = journal.host_done(run)
    todo = [(m, r, d) for m in plan.models for r in plan.host_recipes + plan.recipes for d in plan.depths
            if f"{m}|{r}|{d}" not in done]
    bar = progress.add_task("host: golden and fp32 figures", total=len(todo)) if progress else None
    refs: dict[tuple[str, str], list] = {}
    for m, r, d in todo:
        mi = prep.models[m]
        depth = prep.depth(m, d)
        recipe = get_recipe(r)
        if (m, r) in prep.blobs:
            comp = Compressed(recipe, mi.net, int_model=prep.blobs[(m, r)].golden)
        else:
            comp = apply(recipe, mi.net, mi.task)
        if (m, d) not in refs:
            refs[(m, d)] = reference_runs(mi.net, mi.puzzles, depth)
        res = evaluate_compressed(comp, mi.net, mi.task, mi.puzzles, depth, reference_runs=refs[(m, d)])
        journal.record_host(run, f"{m}|{r}|{d}", {
            "model": m, "recipe": r, "depth": depth.label(), "depth_spec": d, "mixer": mi.net.cfg.mixer,
            "evaluated_by": "golden" if comp.int_model is not None else "torch",
            "puzzles": res["puzzles"], "exact_accuracy": res["exact_accuracy"],
            "cell_accuracy": res["cell_accuracy"], "mean_steps": res["mean_steps"],
            "fidelity_final": res["fidelity_final"], "fidelity_auc": res["fidelity_auc"],
            "fidelity_per_cycle": [round(v, 6) for v in res["fidelity_per_cycle"]],
            "params": comp.params(), "weight_bytes": comp.weight_bytes(), "macs": comp.macs(depth),
            "puzzle_set_hash": mi.puzzle_set_hash,
            # per puzzle, in the plan's order: the paired tests and intervals of the report need them
            "puzzle_ids": [p.id for p in mi.puzzles], "exact_per_puzzle": [int(v) for v in res["exact"]],
            "cells_per_puzzle": [float(v) for v in res["cells"]]})
        if progress:
            progress.advance(bar)


# --- boards ---------------------------------------------------------------------------------------
@dataclass
class BoardState:
    spec: BoardSpec
    status: str = "waiting"       # waiting | running | idle | quarantined | done
    job: str = ""
    puzzles: int = 0
    failures: int = 0
    resets: int = 0
    busy_s: float = 0.0
    last_error: str = ""


class Farm:
    def __init__(self, plan: Plan, inventory: list[BoardSpec], journal: Journal, run: str, prep: Prepared,
                 log_dir: Path, make: Callable[..., Board] | None = None):
        from ..boards.factory import make_board
        self.plan, self.journal, self.run_id, self.prep, self.log_dir = plan, journal, run, prep, log_dir
        self.make = make or make_board
        self.changed = threading.Condition()
        self.active = {t: 0 for t in plan.targets}     # jobs of a target some board is running
        self.queues: dict[str, deque[Job]] = {t: deque() for t in plan.targets}
        self.skipped: list[tuple[Job, str]] = []
        self.targets: dict[str, Target] = {t: load_target(t) for t in plan.targets}
        sections = {name: prebuilt_sections(t) for name, t in self.targets.items()}   # one manifest read a target
        profiled = journal.profiled(run)
        self.traceable = {s.target for s in inventory if s.backend in TRACEABLE}
        for job in plan.jobs():
            fit = F.fit(self.targets[job.target], len(prep.blobs[(job.model, job.recipe)].blob), sections[job.target])
            if not fit["fits_flash"]:
                self.skipped.append((job, fit["does_not_fit"]))
                continue
            if len(journal.done(run, job.key)) < len(prep.models[job.model].puzzles) or \
                    (plan.run.profile_puzzles and job.key not in profiled) or self._to_trace(job):
                self.queues[job.target].append(job)
        self.states = [BoardState(s) for s in inventory if s.target in self.queues]
        self.stopping = threading.Event()      # set when a worker hit an error that is not a board's
        slots = plan.run.max_parallel or os.cpu_count() or 1
        self.emulated_slots = threading.Semaphore(slots)

    def total_puzzles(self) -> int:
        return sum(len(self.prep.models[j.model].puzzles) for q in self.queues.values() for j in q)

    def _next(self, target: str) -> Job | None:
        """The next job of ``target``; None once the queue is empty and no other board of the target
        still holds a job (one that a quarantine could hand back)."""
        with self.changed:
            while True:
                if self.stopping.is_set():
                    return None
                q = self.queues[target]
                if q:
                    self.active[target] += 1
                    return q.popleft()
                if not self.active[target]:
                    return None
                self.changed.wait()

    def _finished(self, job: Job, requeue: bool = False) -> None:
        with self.changed:
            self.active[job.target] -= 1
            if requeue:
                self.queues[job.target].appendleft(job)
            self.changed.notify_all()

    def _peek(self, target: str) -> Job | None:
        with self.changed:
            q = self.queues[target]
            return q[0] if q else None

    def run(self) -> None:
        errors: list[BaseException] = []

        def work(st: BoardState) -> None:
            try:
                self._worker(st)
            except BaseException as e:   # not a board failure: stop every worker and say so
                st.status, st.last_error = "crashed", f"{type(e).__name__}: {e}"
                errors.append(e)
                self.journal.event(self.run_id, "error", f"{type(e).__name__}: {e}"[:2000], st.spec.id, st.job)
                with self.changed:
                    self.stopping.set()
                    self.changed.notify_all()

        threads = [threading.Thread(target=work, args=(st,), name=st.spec.id, daemon=True) for st in self.states]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            e = errors[0]
            raise FarmStopped(f"the run stopped: {type(e).__name__}: {e} (not a board failure, so no board was "
                              f"retried; the journal keeps every row recorded before it: fix the cause and "
                              f"rerun with --resume)") from e
        self._record_unrunnable()

    # one board
    def _worker(self, st: BoardState) -> None:
        board: Board | None = None
        blob_of: tuple[str, str] | None = None
        holds_slot = False
        emulated = st.spec.backend in EMULATED
        try:
            while True:
                job = self._next(st.spec.target)
                if job is None:
                    break
                if (job.model, job.recipe) != blob_of and board is not None:
                    board.close()
                    board, blob_of = None, None
                if board is None and emulated and not holds_slot:
                    st.status = "waiting"
                    self.emulated_slots.acquire()
                    holds_slot = True
                st.status, st.job = "running", job.key
                try:
                    board = self._run_job(st, job, board)
                    blob_of = (job.model, job.recipe)
                except Quarantined as q:
                    board, blob_of = None, None
                    skipped = isinstance(q, Skipped)
                    st.status, st.last_error = "skipped" if skipped else "quarantined", str(q)
                    self.journal.event(self.run_id, "skipped" if skipped else "quarantine", str(q), st.spec.id, job.key)
                    self._finished(job, requeue=True)
                    return
                except BaseException:
                    self._finished(job, requeue=True)
                    raise
                self._finished(job)
                nxt = self._peek(st.spec.target)
                if board is not None and (nxt is None or (nxt.model, nxt.recipe) != blob_of):
                    board.close()
                    board, blob_of = None, None
                    if holds_slot:
                        self.emulated_slots.release()
                        holds_slot = False
                st.status = "idle"
        finally:
            if board is not None:
                board.close()
            if holds_slot:
                self.emulated_slots.release()
            if st.status not in ("quarantined", "skipped"):
                st.status = "done"

    def _start(self, st: BoardState, job: Job) -> Board:
        blob = self.prep.blobs[(job.model, job.recipe)].blob
        options = dict(st.spec.options)        # backend options, and a fault spec (boards/faults.py)
        if st.spec.backend == "labgrid":       # its place record (boards/labgrid.py): a resume takes the place back
            options["log_dir"] = self.log_dir
        if st.spec.backend in EMULATED:
            options["log_dir"] = self.log_dir
            if self.plan.run.trace != "off":    # the emulator's GDB server, for the probe
                options["gdb_port"] = free_ports(1)[0]
        board = self.make(st.spec.backend, self.targets[st.spec.target], blob, board_id=st.spec.id, **options)
        # the plan's start_timeout_s is a floor: a board that needs longer (its inventory `start_timeout`,
        # else its backend's default, e.g. Renode's 120 s) gets its own
        board.start(timeout=max(self.plan.run.start_timeout_s, board.start_timeout))
        return board

    def _run_job(self, st: BoardState, job: Job, board: Board | None) -> Board:
        mi = self.prep.models[job.model]
        bi = self.prep.blobs[(job.model, job.recipe)]
        depth = self.prep.depth(job.model, job.depth)
        done = self.journal.done(self.run_id, job.key)
        todo = [i for i, p in enumerate(mi.puzzles) if p.id not in done]
        gold: dict[int, dict] = {}
        for k, i in enumerate(todo):
            if self.stopping.is_set():
                break
            p = mi.puzzles[i]
            if self.plan.run.check and i not in gold:   # the golden reference, GOLDEN_BATCH puzzles at a time
                chunk = todo[k:k + GOLDEN_BATCH]
                gold = dict(zip(chunk, golden_batch(bi.golden, mi.x[chunk], depth)))
            attempts = 0
            while True:
                attempts += 1
                try:
                    if board is None:
                        board = self._start(st, job)
                    t0 = time.monotonic()
                    row = puzzle_row(board, bi.golden if self.plan.run.check else None, mi.task, p, mi.x[i], mi.y[i],
                                     depth, check=self.plan.run.check, timeout=self.plan.run.puzzle_timeout_s,
                                     golden=gold.get(i))
                    wall = time.monotonic() - t0
                    break
                except PlaceBusy as e:         # held by someone else: not this board's fault, nor cured by a reset
                    raise Skipped(f"{st.spec.id}: {e}") from None
                except P.BoardError as e:
                    if not (e.code == P.RUN_REFUSED and e.detail == P.WORKSPACE):
                        if board is not None:  # as for any error that is not a board's (below)
                            board.close()
                        raise
                    # the board measured that the run needs more arena than its image leaves (RAM mode's
                    # embedding tables, or the workspace itself): a result about this configuration
                    self._record_unrun(job, [mi.puzzles[j].id for j in todo[k:]], "does_not_fit",
                                       f"does not fit {job.target}: RAM: {st.spec.id} refused the run "
                                       f"({P.BLOB_STATUS[e.detail]}): {e}", over="ram")
                    return board
                except BOARD_FAILURES as e:
                    self._failed(st, job, board, e, f"puzzle {p.id}, attempt {attempts}")
                    board = None
                    if attempts > self.plan.run.retries:
                        raise Quarantined(f"{st.spec.id} failed puzzle {p.id} {attempts} times "
                                          f"(last: {st.last_error})")
                    if st.failures >= self.plan.run.quarantine_after:
                        raise Quarantined(f"{st.spec.id} failed {st.failures} times in this run "
                                          f"(last: {st.last_error})")
                except BaseException:
                    if board is not None:      # the worker holds no reference to a board started here
                        board.close()
                    raise
            row.update(model=job.model, recipe=job.recipe, depth=depth.label(), depth_spec=job.depth,
                       target=job.target, backend=board.backend, blob_sha256=bi.sha256, wall_s=wall)
            self.journal.record(self.run_id, job.key, p.id, "ok", st.spec.id, attempts, row)
            st.puzzles += 1
            st.busy_s += wall
        if self.plan.run.profile_puzzles and not self.stopping.is_set():
            board = self._profile(st, job, board)
        if st.spec.backend in TRACEABLE and not self.stopping.is_set():
            board = self._trace(st, job, board)
        return board

    def _record_unrun(self, job: Job, puzzle_ids, status: str, why: str, **extra) -> None:
        """Rows for puzzles of ``job`` no board answered: ``board_failure`` or ``does_not_fit``, with why."""
        depth = self.prep.depth(job.model, job.depth)
        for pid in puzzle_ids:
            self.journal.record(self.run_id, job.key, pid, status, None, 0, {
                "model": job.model, "recipe": job.recipe, "depth": depth.label(), "depth_spec": job.depth,
                "target": job.target, "error": why, **extra})

    def _failed(self, st: BoardState, job: Job, board: Board | None, e: BaseException, what: str) -> None:
        """A board failure during ``what``: an event, and the board closed (the caller starts it again)."""
        st.failures += 1
        st.last_error = f"{type(e).__name__}: {e}"[:300]
        self.journal.event(self.run_id, "failure", f"{what}: {st.last_error}", st.spec.id, job.key)
        if board is not None:
            board.close()
        st.resets += 1

    def _profile(self, st: BoardState, job: Job, board: Board | None) -> Board | None:
        """The job's first ``[run] profile_puzzles`` puzzles again with the RUN flag PROFILE, once all its
        puzzles have their rows, into the journal's profiles (one transaction; skipped when the job has
        one). Their plain rows go along, so an answer that changes under PROFILE stops the run (a
        firmware bug). A board failure here is an event and no more: the board is reset, the job keeps
        its rows and goes without a profile, and ``--resume`` profiles it."""
        if job.key in self.journal.profiled(self.run_id):
            return board
        mi = self.prep.models[job.model]
        bi = self.prep.blobs[(job.model, job.recipe)]
        depth = self.prep.depth(job.model, job.depth)
        puzzles = mi.puzzles[:self.plan.run.profile_puzzles]
        done = self.journal.job_results(self.run_id, job.key)
        if any(p.id not in done for p in puzzles):
            return board
        try:
            if board is None:
                board = self._start(st, job)
            prof = profile_puzzles(board, bi.blob, mi.task, puzzles, depth, [done[p.id] for p in puzzles],
                                   timeout=self.plan.run.puzzle_timeout_s)
        except BOARD_FAILURES as e:
            self._failed(st, job, board, e, f"profile of puzzles {', '.join(p.id for p in puzzles)} "
                                            "(the job goes without one; --resume profiles it)")
            return None
        except BaseException:
            if board is not None:
                board.close()
            raise
        whole = {"model": job.model, "recipe": job.recipe, "depth": depth.label(), "target": job.target,
                 "board": st.spec.id, "backend": board.backend, "top": prof["top"],
                 **{k: prof.get(k) for k in ("counts_kind", "counter_unit", "puzzles", "total", "total_counter",
                                             "plain_total", "marks_share")}}
        self.journal.record_profile(self.run_id, job.key, [
            {**whole, **{k: r.get(k) for k in ("op", "calls", "counter", "counts", "share", "macs", "counts_per_mac")},
             "position": PR.NAMES.index(r["op"])} for r in prof["ops"]])
        return board

    def _to_trace(self, job: Job) -> list[int]:
        """The job's puzzles (indices) to run over the probe that have their rows and no trace yet: the
        first ones ``[run] trace`` names, and the first ``MISMATCH_TRACES`` others whose row disagrees with
        golden. None where the plan says "off" or no board of the target has a probe."""
        if self.plan.run.trace == "off" or job.target not in self.traceable:
            return []
        puzzles = self.prep.models[job.model].puzzles
        first = self.plan.run.traced(len(puzzles))
        rows = self.journal.job_results(self.run_id, job.key)
        wrong = [i for i, p in enumerate(puzzles[first:], first) if rows.get(p.id, {}).get("golden_match") is False]
        done = self.journal.traced(self.run_id, job.key)
        return [i for i in list(range(first)) + wrong[:MISMATCH_TRACES]
                if puzzles[i].id in rows and puzzles[i].id not in done]

    def _trace(self, st: BoardState, job: Job, board: Board | None) -> Board | None:
        """The job's puzzles ``_to_trace`` names, one by one over the board's probe (``trace_puzzle``),
        each journalled in one transaction with its divergence. A traced answer or (emulated) count that
        differs from the puzzle's plain row stops the run: tracing must change neither. A board failure
        is an event: the board is reset, the puzzles left go untraced until ``--resume`` traces them."""
        todo = self._to_trace(job)
        if not todo:
            return board
        mi = self.prep.models[job.model]
        bi = self.prep.blobs[(job.model, job.recipe)]
        depth = self.prep.depth(job.model, job.depth)
        plain = self.journal.job_results(self.run_id, job.key)
        fp32 = fp32_carries(mi.net, mi.x[todo], depth)
        gold = golden_batch(bi.golden, mi.x[todo], depth)
        probe, p = None, mi.puzzles[todo[0]]
        try:
            if board is None:
                board = self._start(st, job)
            if board.debug_port() is None and st.spec.backend != "serial":
                return board            # no probe after all (a place without a GDB service): the job waits
            probe = open_probe(board)
            where = {"model": job.model, "recipe": job.recipe, "depth": depth.label(), "target": job.target,
                     "board": st.spec.id, "backend": board.backend}
            for k, i in enumerate(todo):
                if self.stopping.is_set():
                    break
                p = mi.puzzles[i]
                row, cycles, div = trace_puzzle(
                    board, probe, bi.golden, mi.task, p, mi.x[i], mi.y[i], depth,
                    {"y": fp32["y"][:, :, k:k + 1], "z": fp32["z"][:, :, k:k + 1]},
                    timeout=self.plan.run.puzzle_timeout_s, golden=gold[k])
                _same_as_plain(board, p.id, row, plain[p.id])
                self.journal.record_trace(self.run_id, job.key, [{**where, "puzzle": p.id, **c} for c in cycles],
                                          {**where, "puzzle": p.id, **div} if div else None)
        except BOARD_FAILURES as e:
            _close(probe)
            self._failed(st, job, board, e, f"trace of puzzle {p.id} (the job's untraced puzzles wait; "
                                            "--resume traces them)")
            return None
        except BaseException:
            _close(probe)
            if board is not None:
                board.close()
            raise
        probe.close()
        return board

    def _record_unrunnable(self) -> None:
        """Jobs left in a queue had no healthy board: their missing puzzles become board_failure rows."""
        for target, q in self.queues.items():
            for job in q:
                done = self.journal.done(self.run_id, job.key)
                self._record_unrun(job, [p.id for p in self.prep.models[job.model].puzzles if p.id not in done],
                                   "board_failure", f"no healthy {target} board left (see the events in the journal)")
        for job, why in self.skipped:      # a result, not a failure: the report shows it as "does not fit"
            self._record_unrun(job, [p.id for p in self.prep.models[job.model].puzzles], "does_not_fit", why,
                               over="flash")


class Quarantined(RuntimeError):
    pass


class Skipped(Quarantined):
    """A board whose labgrid place someone else held (``PlaceBusy``): its job goes back to the queue."""


def _same_as_plain(board: Board, puzzle: str, traced: dict, plain: dict) -> None:
    """A traced run must answer as the puzzle's plain run did, and on an emulator count the same."""
    keys = ("steps", "correct", "cell_accuracy") + (("counter",) if traced["counts_kind"] == "instructions" else ())
    if any(traced[k] != plain[k] for k in keys):
        raise RuntimeError(f"{board.describe()}: puzzle {puzzle} over the probe gave "
                           f"{', '.join(f'{k} {traced[k]}' for k in keys)}; its plain run "
                           f"{', '.join(f'{k} {plain[k]}' for k in keys)}: tracing must change neither")


def _close(probe) -> None:
    if probe is not None:
        try:
            probe.close()
        except (OSError, ProbeError):
            pass


# --- the live view --------------------------------------------------------------------------------
class LiveView:
    """A rich table of the boards, rebuilt on every refresh."""

    def __init__(self, farm: Farm, total: int):
        self.farm, self.total, self.t0 = farm, total, time.monotonic()

    def __rich__(self):
        from rich.table import Table
        done = sum(s.puzzles for s in self.farm.states)
        elapsed = time.monotonic() - self.t0
        t = Table(title=f"farm: {done}/{self.total} puzzles in {elapsed:.0f} s "
                        f"({done / elapsed if elapsed > 0 else 0:.2f}/s)", title_justify="left")
        t.add_column("board", no_wrap=True)
        t.add_column("status", no_wrap=True)
        t.add_column("job (model recipe depth)", overflow="fold")
        for col in ("done", "/s", "fail"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("last error", overflow="ellipsis", max_width=40)
        for s in self.farm.states:
            rate = s.puzzles / s.busy_s if s.busy_s else 0.0
            t.add_row(s.spec.id, s.status, " ".join(s.job.split("|")[:3]), str(s.puzzles), f"{rate:.1f}",
                      str(s.failures), s.last_error)
        return t


# --- the whole run --------------------------------------------------------------------------------
def farm_run(plan: Plan, inventory: list[BoardSpec], out: Path, resume: bool = False, console=None,
             log: Callable[[str], None] = print) -> str:
    """Run ``plan`` on ``inventory`` into ``out`` (journal, board logs). Returns the run id."""
    from rich.live import Live
    from rich.progress import Progress

    out = Path(out)
    journal = Journal.in_dir(out)
    try:
        try:
            run = match_journal(journal, out, plan, resume)
        except FolderError as e:
            raise FarmError(str(e)) from None
        if run is None:
            run = time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime())
            journal.set_metas({"run": run, "plan": plan.to_dict(), "plan_digest": plan.digest()})   # all or none
        else:
            log(f"resuming {run}")
        journal.set_meta("inventory", [s.__dict__ for s in inventory])
        missing = sorted(set(plan.targets) - {s.target for s in inventory})
        if missing:
            log(f"no board in the inventory for {', '.join(missing)}: their jobs will be journalled as board_failure")
        prep = Prepared(plan)
        if plan.statistics.interval_width is not None:
            log(width_note(plan, {m: len(mi.puzzles) for m, mi in prep.models.items()}))
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("exporting blobs", total=len(plan.models) * len(plan.recipes))
            prep.export_all(lambda what: progress.update(bar, description=f"exporting {what}", advance=1))
            host_figures(prep, journal, run, progress)
        journal.set_meta("provenance", collect_provenance(plan, prep, inventory))
        farm = Farm(plan, inventory, journal, run, prep, out / "logs")
        total = farm.total_puzzles()
        with Live(LiveView(farm, total), console=console, refresh_per_second=2, transient=False):
            farm.run()
        journal.set_meta("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if (parted := journal.divergences(run)):
            log(f"{len(parted)} traced puzzle(s) part from golden on the board: where, in the report's "
                "\"First divergence from golden\" (journal table divergences)")
        return run
    finally:
        journal.close()


def width_note(plan: Plan, puzzles: dict[str, int]) -> str:
    """What the plan's interval width asks for against the puzzles it runs (worst case: accuracy 0.5)."""
    from ..stats import puzzles_for_width
    st = plan.statistics
    need = puzzles_for_width(st.interval_width, 0.5, st.confidence)
    short = {m: n for m, n in puzzles.items() if n < need}
    head = (f"interval width {st.interval_width:g} at {st.confidence:.0%} asked: a Wilson interval needs {need:,} "
            f"puzzles at accuracy 0.5 (the widest case; fewer near 0 or 1)")
    if not short:
        return head + f"; every model runs {min(puzzles.values()):,} or more"
    return head + "; " + ", ".join(f"{m} runs {n:,}" for m, n in sorted(short.items())) + \
        ": its intervals may be wider (the report gives each one's width)"


class FarmError(RuntimeError):
    pass


class FarmStopped(FarmError):
    """A worker hit an error that is not a board failure: every worker stopped and closed its board."""
