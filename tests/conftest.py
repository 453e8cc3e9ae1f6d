from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `tests.tiny_models:build_mlp` imports as a factory, as it does from the CLI
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from tests.tiny_models import make_world

    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def in_repo_root(monkeypatch):
    """The CLI imports factories relative to the working directory, like `python -m` does."""
    monkeypatch.chdir(ROOT)
    return ROOT
