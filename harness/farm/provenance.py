"""Where every figure of a farm run comes from: code, firmware, blobs, puzzles, tools."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from typing import Any

from ..boards.inventory import counts_backend
from ..compress.recipes import get_recipe
from ..figures import counts_note, ram_theoretical_min
from ..firmware import BIN, REPO



def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None, "note": "not a git checkout"}


def _relative(path: str | None) -> str | None:
    """A path inside the checkout as the repository names it (the same in every clone)."""
    from pathlib import Path
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def firmware(target: str) -> dict[str, Any]:
    path = BIN / target / "manifest.json"
    if not path.exists():
        return {"missing": f"no prebuilt firmware for {target}"}
    m = json.loads(path.read_text())
    return {"elf_sha256": m["files"]["firmware.elf"]["sha256"], "build_id": m.get("build_id"),
            "toolchain": m.get("toolchain"), "source_hash": m.get("source_hash"), "sections": m.get("sections")}


def blob_facts(blob: bytes) -> dict[str, Any]:
    """sha256, size and the RAM an inference needs at the least (docs/boards.md: carries, input and the
    largest working buffer, from the blob's dimensions)."""
    from ..export.blob import read_header
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
            "ram_theoretical_min": ram_theoretical_min(read_header(blob))}


def collect_provenance(plan, prep, inventory) -> dict[str, Any]:
    tools = {"python": platform.python_version(), "qemu": _version(["qemu-system-arm", "--version"])}
    if any(s.backend == "renode" for s in inventory):   # its counts' resolution depends on it (docs/boards.md)
        from ..boards.renode import renode_version
        tools["renode"] = renode_version()
    for pkg in ("harness", "torch", "numpy", "pandas", "labgrid"):
        try:
            tools[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            tools[pkg] = None
    return {
        "git": git_state(),
        "plan": _relative(plan.path), "plan_digest": plan.digest(),
        "firmware": {t: firmware(t) for t in plan.targets},
        "blobs": {f"{m}|{r}": blob_facts(b.blob) for (m, r), b in sorted(prep.blobs.items())},
        "puzzles": {m: {**mi.puzzle_set, "sha256": mi.puzzle_set_hash} for m, mi in prep.models.items()},
        "models": {m: mi.record for m, mi in prep.models.items()},
        "seeds": {"puzzles": plan.puzzle_spec()[1],
                  "calibration": {r: get_recipe(r).calib_seed for r in plan.recipes}},
        "tools": tools,
        "counts": {b: counts_note(b) for b in map(counts_backend, inventory)},
        "machine": platform.machine(),
    }
