"""pytest plugin (entry point ``pytest11``): fixtures shared by the harness's own tests and by users'
device suites. Board fixtures (``--board``) arrive with the board backends."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def zoo_model():
    """Load a shipped zoo model by name: ``model, task, config = zoo_model("sudoku6-mlp")``."""
    from harness.models.checkpoint import load_checkpoint

    cache: dict[str, tuple] = {}

    def load(name: str):
        if name not in cache:
            cache[name] = load_checkpoint(name)
        return cache[name]

    return load
