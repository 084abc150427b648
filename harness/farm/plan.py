"""A plan: the jobs of a farm run (models × recipes × depths × targets on one puzzle set), how to run
them (timeouts, retries, quarantine) and what a deployable configuration must meet (budgets).

A plan is a TOML file; ``harness/farm/plans/demo.toml`` is the one ``harness demo`` runs::

    name = "demo"
    models = ["sudoku6-mlp", "sudoku6-attention"]
    recipes = ["int8", "int4-naive", "int4-pc"]    # integer recipes: exported and run on the boards
    host_recipes = ["fp32"]                        # host only (golden/torch): the reference beside them
    depths = ["2,3,8,halt", "1,3,4,halt"]          # 'T,n,steps[,halt]' or 'default'
    targets = ["mps2-an386", "mps3-an547"]
    [puzzles]                                      # count + seed (generated held-out) or file
    count = 24
    seed = 1000
    [run]
    puzzle_timeout_s = 120
    retries = 1             # resets and retries of one puzzle on one board before the board is quarantined
    quarantine_after = 3    # a board failing this often (timeouts, garbage, faults) is quarantined
    [budgets]               # every target; a [budgets.<target>] table overrides per target
    latency_ms = 2000       # at the target clock (estimate on emulators, stated as such)
    energy_uj = 20000
    min_exact_accuracy = 0.8
    [regression]            # what `harness report --baseline` calls a regression
    exact_accuracy_drop = 0.02
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
    start_timeout_s: float = 30.0
    max_parallel: int = 0            # emulated boards running at once; 0 = the host's cores
    check: bool = True               # compare every puzzle with golden, bit for bit


@dataclass
class Budgets:
    latency_ms: float | None = None
    energy_uj: float | None = None
    min_exact_accuracy: float | None = None


@dataclass
class Regression:
    """Thresholds for ``harness report --baseline``: a change beyond one of them is a regression."""
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
    path: str | None = None

    def jobs(self) -> list[Job]:
        return [Job(m, r, d, t) for m, r, d, t in itertools.product(self.models, self.recipes, self.depths, self.targets)]

    def budget(self, target: str) -> Budgets:
        out = Budgets(**asdict(self.budgets.get("*", Budgets())))
        for k, v in asdict(self.budgets.get(target, Budgets())).items():
            if v is not None:
                setattr(out, k, v)
        return out

    def puzzle_spec(self) -> tuple[str, int]:
        """(spec, seed) for ``load_puzzle_source``: a count or a file."""
        if "file" in self.puzzles:
            return str(self.puzzles["file"]), int(self.puzzles.get("seed", 1000))
        return str(int(self.puzzles.get("count", 16))), int(self.puzzles.get("seed", 1000))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _section(cls, data: dict, where: str):
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
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
    from ..compress.recipes import get_recipe
    from ..targets import TargetError, load_target

    data = dict(data)
    for key in ("models", "recipes", "depths", "targets"):
        if not data.get(key) or not isinstance(data[key], list):
            raise PlanError(f"{where}: '{key}' must be a non-empty list")
    for r in data["recipes"]:
        try:
            recipe = get_recipe(r)
        except (ValueError, KeyError) as e:
            raise PlanError(f"{where}: recipe {r!r}: {e}") from e
        if recipe.kind != "integer":
            raise PlanError(f"{where}: recipe {r!r} is a {recipe.kind} recipe and cannot run on a board; "
                            f"list it under host_recipes")
    for t in data["targets"]:
        try:
            load_target(t)
        except TargetError as e:
            raise PlanError(f"{where}: {e}") from e
    budgets_in = data.pop("budgets", {}) or {}
    budgets = {"*": _section(Budgets, {k: v for k, v in budgets_in.items() if not isinstance(v, dict)}, f"{where} [budgets]")}
    for t, b in budgets_in.items():
        if isinstance(b, dict):
            if t not in data["targets"]:
                raise PlanError(f"{where}: [budgets.{t}] names a target the plan does not run")
            budgets[t] = _section(Budgets, b, f"{where} [budgets.{t}]")
    known = set(Plan.__dataclass_fields__) - {"path", "budgets"}
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known | {'budgets'})}")
    return Plan(name=data.get("name", Path(where).stem), models=data["models"], recipes=data["recipes"],
                depths=[str(d) for d in data["depths"]], targets=data["targets"],
                host_recipes=data.get("host_recipes", ["fp32"]),
                puzzles=data.get("puzzles", {"count": 16, "seed": 1000}),
                run=_section(RunOptions, data.get("run", {}), f"{where} [run]"),
                budgets=budgets, regression=_section(Regression, data.get("regression", {}), f"{where} [regression]"),
                path=where)
