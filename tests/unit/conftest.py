from __future__ import annotations

import sys
import uuid

import pytest

from tests.unit import model_fixtures as fx


@pytest.fixture
def netmod(tmp_path, monkeypatch):
    """The user's model code as a module file in the working directory, already imported (unique name)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))   # load_model puts the cwd on sys.path; undo it afterwards
    name = f"tinynets_{uuid.uuid4().hex[:10]}"
    module = fx.import_file(fx.write_net_module(tmp_path, name), name)
    yield module
    sys.modules.pop(name, None)
