"""A plan: the jobs of a farm run (models × recipes × depths × targets on one puzzle set), how to run
them (timeouts, retries, quarantine) and what a deployable configuration must meet (budgets).

A plan is a TOML file: top-level ``name``, ``models``, ``recipes`` (integer recipes, run on the boards),
``host_recipes`` (host only: the fp32 reference), ``depths`` ('T,n,steps[,halt]' or 'default') and
``targets``; tables ``[puzzles]`` (``count`` + ``seed`` of generated held-out puzzles, or ``file``),
``[run]`` (timeouts, retries, quarantine, parallel cap, the puzzles of a job profiled and traced), ``[budgets]`` (every target; a
``[budgets.<target>]`` table overrides per target), ``[statistics]`` (the confidence of intervals and
tests, how an accuracy budget is judged on an interval, the interval width asked for) and
``[regression]`` (what ``harness report --baseline`` calls a regression). ``VALUES`` below gives every key's type and range; docs/farm.md
explains them; ``harness/farm/plans/demo.toml`` is the plan ``harness demo`` runs (read it there: this
docstring does not copy it).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PLANS = Path(__file__).resolve().parent / "plans"


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class Job:
    """One model × recipe × depth on one target, over the plan's puzzle set."""
    model: str
    recipe: str
    depth: str          # as written in the plan ('default' or 'T,n,steps[,halt]')
    target: str

    @property
    def key(self) -> str:
        return f"{self.model}|{self.recipe}|{self.depth}|{self.target}"


@dataclass
class RunOptions:
    puzzle_timeout_s: float = 120.0
    retries: int = 1                 # resets and retries of one puzzle before the board is quarantined
    quarantine_after: int = 3        # board failures (over the run) that quarantine a board
    start_timeout_s: float = 30.0    # a floor: a board whose own start-up timeout is longer gets that
    max_parallel: int = 0            # emulated boards running at once; 0 = the host's cores
    check: bool = True               # compare every puzzle with golden, bit for bit
    profile_puzzles: int = 2         # a job's first N puzzles run again with PROFILE after its plain runs; 0 = none
    trace: str = "sample:2"          # "off", "all" or "sample:N": a job's first N puzzles run again over the probe

    def traced(self, puzzles: int) -> int:
        """How many of a job's ``puzzles`` (its first ones) the ``trace`` setting runs over the probe."""
        return puzzles if self.trace == "all" else 0 if self.trace == "off" else min(puzzles, _sample(self.trace))


@dataclass
class Budgets:
    latency_ms: float | None = None
    energy_uj: float | None = None
    min_exact_accuracy: float | None = None


@dataclass
class Statistics:
    """How accuracy is judged (``harness.stats`` does the arithmetic; docs/farm.md explains it)."""
    confidence: float = 0.95                # of every interval; paired tests at level 1 - confidence
    accuracy_budget: str = "lower_bound"    # min_exact_accuracy is met by the interval's lower bound, or "point"
    interval_width: float | None = None     # the widest puzzle-exact interval wanted; the farm says what it needs


ACCURACY_BUDGET_RULES = ("lower_bound", "point")


@dataclass
class Regression:
    """Thresholds for ``harness report --baseline``: a change beyond one of them is a regression. An
    accuracy change must also be real: the paired test on the puzzles both runs share rejects "no
    change" at the plan's [statistics] confidence."""
    exact_accuracy_drop: float = 0.02       # absolute (0.02 = 2 points)
    cell_accuracy_drop: float = 0.01
    fidelity_drop: float = 0.01
    latency_increase: float = 0.02          # relative (0.02 = 2 %)
    memory_increase: float = 0.0            # relative; 0 = any byte more


@dataclass
class Plan:
    name: str
    models: list[str]
    recipes: list[str]
    depths: list[str]
    targets: list[str]
    host_recipes: list[str] = field(default_factory=lambda: ["fp32"])
    puzzles: dict[str, Any] = field(default_factory=lambda: {"count": 16, "seed": 1000})
    run: RunOptions = field(default_factory=RunOptions)
    budgets: dict[str, Budgets] = field(default_factory=dict)   # '*' = every target
    regression: Regression = field(default_factory=Regression)
    statistics: Statistics = field(default_factory=Statistics)
    path: str | None = None
    puzzle_sha256: str | None = None  # of the [puzzles] file's bytes: a resume refuses a changed file

    def jobs(self) -> list[Job]:
        return [Job(m, r, d, t) for m, r, d, t in itertools.product(self.models, self.recipes, self.depths, self.targets)]

    def puzzle_spec(self) -> tuple[str, int]:
        """(spec, seed) for ``load_puzzle_source``: a count or a file."""
        if "file" in self.puzzles:
            return str(self.puzzles["file"]), int(self.puzzles.get("seed", 1000))
        return str(int(self.puzzles.get("count", 16))), int(self.puzzles.get("seed", 1000))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        if d["puzzle_sha256"] is None:   # generated puzzles: count and seed say it all
            d.pop("puzzle_sha256")
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# What each value may be: (kind, low, high); a number may equal low unless the kind ends in '>'.
MAX_PUZZLES = 100_000          # a plan's generated puzzle count (each job runs every one of them)
DAY_S = 86_400.0
VALUES: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "run": {"puzzle_timeout_s": ("number>", 0, DAY_S), "retries": ("integer", 0, 100),
            "quarantine_after": ("integer", 1, 10_000), "start_timeout_s": ("number>", 0, DAY_S),
            "max_parallel": ("integer", 0, 1024), "check": ("boolean", None, None),
            "profile_puzzles": ("integer", 0, MAX_PUZZLES), "trace": ("trace", 1, MAX_PUZZLES)},
    "budgets": {"latency_ms": ("number>", 0, None), "energy_uj": ("number>", 0, None),
                "min_exact_accuracy": ("number", 0, 1)},
    "regression": {"exact_accuracy_drop": ("number", 0, 1), "cell_accuracy_drop": ("number", 0, 1),
                   "fidelity_drop": ("number", 0, 2), "latency_increase": ("number", 0, None),
                   "memory_increase": ("number", 0, None)},
    "statistics": {"confidence": ("number>", 0.5, 0.9999), "accuracy_budget": ("choice", None, None),
                   "interval_width": ("number>", 0, 1)},
    "puzzles": {"count": ("integer", 1, MAX_PUZZLES), "seed": ("integer", 0, 2**63 - 1),
                "file": ("string", None, None)},
}

CHOICES: dict[str, tuple[str, ...]] = {"accuracy_budget": ACCURACY_BUDGET_RULES}


def _sample(trace: str) -> int | None:
    """N of a trace setting 'sample:N' (digits only), None for anything else."""
    head, _, n = trace.partition(":")
    return int(n) if head == "sample" and n.isascii() and n.isdigit() else None


def _check_value(where: str, key: str, value: Any, rule: tuple[str, float | None, float | None]) -> None:
    kind, lo, hi = rule
    if kind == "trace":
        n = _sample(value) if isinstance(value, str) else None
        if value not in ("off", "all") and (n is None or not lo <= n <= hi):
            raise PlanError(f"{where}: {key} = {value!r}: expected 'off', 'all' or 'sample:N' with N an integer "
                            f">= {lo:g} and <= {hi:g} (a job's first N puzzles traced)")
        return
    if kind == "choice":
        allowed = CHOICES[key]
        if value not in allowed:
            raise PlanError(f"{where}: {key} = {value!r}: expected one of {', '.join(map(repr, allowed))}")
        return
    strict = kind.endswith(">")
    kind = kind.rstrip(">")
    ok = {"integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool),
          "boolean": isinstance(value, bool), "string": isinstance(value, str) and value != ""}[kind]
    if ok and kind in ("integer", "number"):
        ok = (lo is None or (value > lo if strict else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        bounds = ("" if lo is None else f" {'>' if strict else '>='} {lo:g}") + \
                 ("" if hi is None else f"{' and' if lo is not None else ''} <= {hi:g}")
        article = "an" if kind == "integer" else "a"
        raise PlanError(f"{where}: {key} = {value!r}: expected {article} {kind}{bounds}")


def _section(cls, data: Any, where: str, rules: dict | None = None):
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected a table of keys, got {data!r}")
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key, value in data.items():
        if rules and key in rules:
            _check_value(where, key, value, rules[key])
    return cls(**data)


def load_plan(path: str | Path) -> Plan:
    """Read a plan TOML (a path, or the name of a shipped plan in harness/farm/plans/)."""
    p = Path(path)
    if not p.exists() and (PLANS / f"{path}.toml").exists():
        p = PLANS / f"{path}.toml"
    if not p.exists():
        shipped = ", ".join(sorted(q.stem for q in PLANS.glob("*.toml")))
        raise PlanError(f"plan {str(path)!r} not found (shipped plans: {shipped})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{p}: not valid TOML: {e}") from e
    return plan_from_dict(data, str(p))


def plan_from_dict(data: dict[str, Any], where: str = "plan") -> Plan:
    """A plan, every value checked (types, ranges, models, recipes, depths, targets, the puzzle file
    parsed for every model's task) so that a bad plan fails here, before a run folder is touched."""
    from ..compress.recipes import get_recipe
    from ..targets import TargetError, load_target

    data = dict(data)
    if "name" in data and not (isinstance(data["name"], str) and data["name"]):
        raise PlanError(f"{where}: name = {data['name']!r}: expected a non-empty string")
    for key in ("models", "recipes", "depths", "targets"):
        if not data.get(key) or not isinstance(data[key], list):
            raise PlanError(f"{where}: '{key}' must be a non-empty list")
    for key in ("models", "recipes", "targets", "host_recipes"):
        for i, v in enumerate(data.get(key, [])):
            if not isinstance(v, str) or not v:
                raise PlanError(f"{where}: {key}[{i}] = {v!r}: expected a non-empty string")
    if "host_recipes" in data and not isinstance(data["host_recipes"], list):
        raise PlanError(f"{where}: 'host_recipes' must be a list of recipe names")
    for key in ("models", "recipes", "depths", "targets", "host_recipes"):
        seen = [str(v) for v in data.get(key, [])]
        if (dup := sorted({v for v in seen if seen.count(v) > 1})):
            raise PlanError(f"{where}: {key} lists {', '.join(map(repr, dup))} twice: each job would run twice")
    tasks = _models(data["models"], where)
    for r in data["recipes"]:
        try:
            recipe = get_recipe(r)
        except (ValueError, KeyError, OSError) as e:
            raise PlanError(f"{where}: recipe {r!r}: {e}") from e
        if recipe.kind != "integer":
            raise PlanError(f"{where}: recipe {r!r} is a {recipe.kind} recipe and cannot run on a board; "
                            f"list it under host_recipes")
    for r in data.get("host_recipes", []):
        try:
            get_recipe(r)
        except (ValueError, KeyError, OSError) as e:
            raise PlanError(f"{where}: host_recipes: recipe {r!r}: {e}") from e
    for i, d in enumerate(data["depths"]):
        _depth(d, f"{where}: depths[{i}]")
    for t in data["targets"]:
        try:
            load_target(t)
        except TargetError as e:
            raise PlanError(f"{where}: {e}") from e
    budgets_in = data.pop("budgets", {}) or {}
    if not isinstance(budgets_in, dict):
        raise PlanError(f"{where}: [budgets] must be a table, got {budgets_in!r}")
    budgets = {"*": _section(Budgets, {k: v for k, v in budgets_in.items() if not isinstance(v, dict)},
                             f"{where} [budgets]", VALUES["budgets"])}
    for t, b in budgets_in.items():
        if isinstance(b, dict):
            if t not in data["targets"]:
                raise PlanError(f"{where}: [budgets.{t}] names a target the plan does not run")
            budgets[t] = _section(Budgets, b, f"{where} [budgets.{t}]", VALUES["budgets"])
    known = set(Plan.__dataclass_fields__) - {"path", "budgets", "puzzle_sha256"}
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known | {'budgets'})}")
    puzzles = data.get("puzzles", {"count": 16, "seed": 1000})
    sha = _puzzles(puzzles, tasks, f"{where} [puzzles]")
    return Plan(name=data.get("name", Path(where).stem), models=data["models"], recipes=data["recipes"],
                depths=[str(d) for d in data["depths"]], targets=data["targets"],
                host_recipes=data.get("host_recipes", ["fp32"]), puzzles=puzzles,
                run=_section(RunOptions, data.get("run", {}), f"{where} [run]", VALUES["run"]),
                budgets=budgets,
                regression=_section(Regression, data.get("regression", {}), f"{where} [regression]",
                                    VALUES["regression"]),
                statistics=_section(Statistics, data.get("statistics", {}), f"{where} [statistics]",
                                    VALUES["statistics"]),
                path=where, puzzle_sha256=sha)


def _models(models: list[str], where: str) -> dict[str, Any]:
    """The task of every model; its config.json and weights are read and checked against each other
    (a corrupt or mismatched checkpoint fails here, not after the run has started)."""
    from ..models.checkpoint import CheckpointError, load_checkpoint
    tasks = {}
    for m in models:
        try:
            tasks[m] = load_checkpoint(m)[1]
        except (FileNotFoundError, CheckpointError) as e:
            raise PlanError(f"{where}: models: {e}") from None
    return tasks


def _depth(text: Any, where: str) -> None:
    if not isinstance(text, str):
        raise PlanError(f"{where} = {text!r}: expected a string 'T,n,steps[,halt]' (e.g. '2,3,8,halt') or 'default'")
    if text.strip() == "default":
        return
    from ..depth import Depth, DepthError
    try:
        Depth.parse(text, None, option=where)   # its message: "<where> '<text>': <what is wrong>"
    except DepthError as e:
        raise PlanError(str(e)) from None


def _puzzles(puzzles: Any, tasks: dict[str, Any], where: str) -> str | None:
    """Check the [puzzles] table; a file is read and parsed for every model's task. Returns the sha256
    of the file's bytes (None for generated puzzles)."""
    if not isinstance(puzzles, dict):
        raise PlanError(f"{where}: expected a table with count and seed, or file; got {puzzles!r}")
    unknown = set(puzzles) - set(VALUES["puzzles"])
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; expected count and seed, or file")
    for key, value in puzzles.items():
        _check_value(where, key, value, VALUES["puzzles"][key])
    if "file" in puzzles and "count" in puzzles:
        raise PlanError(f"{where}: give either count (generated puzzles) or file, not both")
    if "file" not in puzzles:
        return None
    from ..tasks.files import read_puzzles

    path = Path(puzzles["file"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"{where}: file = {str(path)!r} does not exist (relative paths are from the "
                        f"current folder, {Path.cwd()})") from None
    except OSError as e:
        raise PlanError(f"{where}: file = {str(path)!r} cannot be read: {e.strerror or e}") from None
    parsed: set[str] = set()
    for model, task in tasks.items():
        spec = json.dumps(task.spec(), sort_keys=True)
        if spec in parsed:            # models of one task read the file the same way
            continue
        parsed.add(spec)
        try:
            read_puzzles(path, task)
        except ValueError as e:
            raise PlanError(f"{where}: file = {str(path)!r} does not suit model {model} ({task.name}): {e}") from None
    return hashlib.sha256(data).hexdigest()
