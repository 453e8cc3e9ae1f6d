"""examples/ci/release-check.sh on self-contained checkpoints: a GATE_CONFIG that names a missing file never deploys."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny_models as tm

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "ci" / "release-check.sh"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TorchScript baseline and candidate (no factory, so no config is needed) and an npz eval set."""
    ws = tmp_path_factory.mktemp("release")
    x, y = tm.make_data(200)
    np.savez(ws / "eval.npz", x=x, labels=y)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|save)` is deprecated",
                                category=DeprecationWarning)
        torch.jit.save(torch.jit.script(tm.teacher()), str(ws / "prod.pt"))
        torch.jit.save(torch.jit.script(tm.good_candidate()), str(ws / "cand.pt"))
    return ws


def _release(ws: Path, marker: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_", "GATE_"))}
    # The release pipeline built both TorchScript files itself: it trusts them (programs need trust).
    environ |= {"GATE": f"{sys.executable} -m gate", "GATE_REPORT_DIR": "reports", "GATE_TRUST": "all", **env}
    return subprocess.run(["bash", str(SCRIPT), "cand.pt", "prod.pt", "eval.npz", "--", "touch", str(marker)],
                          cwd=ws, env=environ, capture_output=True, text=True, timeout=600, check=False)


def test_missing_gate_config_is_exit_2_and_nothing_deploys(shipped: Path):
    marker = shipped / "deployed"
    done = _release(shipped, marker, GATE_CONFIG="does-not-exist.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: GATE_CONFIG=does-not-exist.yaml: config file not found"]
    assert not marker.exists()
    assert not (shipped / "reports" / "report.json").exists()


def test_without_gate_config_the_same_models_pass_and_deploy(shipped: Path):
    """The control: the models above pass with the defaults, so the exit 2 above is the missing file's doing."""
    marker = shipped / "deployed-default"
    done = _release(shipped, marker)
    assert done.returncode == 0, done.stdout + done.stderr
    assert marker.exists()
