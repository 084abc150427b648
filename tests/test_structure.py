"""The house's rooms, held against the code: data flows one way (tasks -> models -> compress -> export ->
boards/probe -> run -> farm -> report), boards and probe know nothing of each other, and describing a
depth or a figure imports no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "harness"
# rooms a room may never import, directly or inside a function
FORBIDDEN = {
    "boards": {"export", "golden", "models", "compress", "farm", "report", "run", "probe", "tasks"},
    "probe": {"export", "golden", "models", "compress", "farm", "report", "run", "boards", "tasks"},
    "golden": {"boards", "probe", "run", "farm", "report"},
    "export": {"boards", "probe", "run", "farm", "report"},
    "run": {"farm", "report"},
    "figures": {"boards", "probe", "export", "golden", "models", "compress", "run", "farm", "report", "tasks"},
    "depth": {"boards", "probe", "export", "golden", "models", "compress", "run", "farm", "report", "tasks"},
    "profile": {"boards", "probe", "export", "golden", "models", "compress", "run", "farm", "report", "tasks"},
    "stats": {"boards", "probe", "export", "golden", "models", "compress", "run", "farm", "report", "tasks"},
    "farm": {"report"},
}


def harness_imports(path: Path) -> set[str]:
    """The top-level rooms of ``harness`` that the module at ``path`` imports (``harness.X`` or
    relative ``..X`` / ``.X`` from the package root)."""
    rel = path.relative_to(PKG)
    depth = len(rel.parts) - 1           # how many package levels below harness/
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("harness."):
                out.add(node.module.split(".")[1])
            elif node.level and node.level - 1 == depth:     # relative to harness/ itself
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("harness."))
    return out


def room(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_no_room_imports_a_room_above_it(name):
    files = sorted((PKG / name).rglob("*.py")) if (PKG / name).is_dir() else [PKG / f"{name}.py"]
    wrong = {f"{f.relative_to(PKG)} -> {r}" for f in files for r in harness_imports(f) & FORBIDDEN[name]}
    assert not wrong, sorted(wrong)


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    """The checker itself: it must see the imports it is meant to forbid."""
    assert {"export", "tasks", "golden"} <= harness_imports(PKG / "run.py")
    assert "probe" in harness_imports(PKG / "run.py") and "boards" in harness_imports(PKG / "run.py")
    assert room(PKG / "boards" / "base.py") == "boards" and room(PKG / "run.py") == "run"


@pytest.mark.parametrize("module", ["harness.depth", "harness.figures", "harness.profile", "harness.stats", "harness.boards.base",
                                    "harness.probe.gdb"])
def test_describing_a_depth_a_figure_or_a_board_imports_no_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
