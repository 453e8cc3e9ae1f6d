"""Payload tests: a checkpoint or config from a pull request never runs code, and never loosens the policy.

Per vector: the payload is live (torch itself runs it on load, in a separate process), and `gate check` with that
file as candidate or baseline exits 2 with one `error:` line, writes no report, and the marker never appears.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.helpers import run_cli
from tests.security import payloads

FACTORY = "tests.tiny_models:build_mlp"
ROOT = Path(__file__).resolve().parents[2]
# Vectors whose payload torch runs on load here (torch 2.13); the others are refused before any loader, whatever
# torch would make of them.
LIVE = {"torchscript __setstate__ from_file": "torchscript", "export pickled sample inputs": "export",
        "export use_pickle weights": "export", "pickle in a training dict": "pickle"}


def build(vector: str, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PAYLOAD_RAN"
    path = payloads.VECTORS[vector](tmp_path / "evil.pt2", marker)
    assert not marker.exists()
    return path, marker


def assert_refused(res, marker: Path, report: Path, *needles: str) -> None:
    assert res.code == 2, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.err, res.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not marker.exists(), "the payload ran"
    assert not report.exists()


@pytest.mark.parametrize("vector", sorted(LIVE))
def test_the_payload_is_live_when_torch_loads_the_file(vector, tmp_path):
    path, marker = build(vector, tmp_path)
    code = ("import sys, warnings, torch; warnings.simplefilter('ignore'); sys.path.insert(0, sys.argv[2]); "
            f"path = sys.argv[1]; {payloads.TORCH_LOADERS[LIVE[vector]]}")
    subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], capture_output=True, timeout=120, check=False)
    assert marker.exists(), f"{vector}: torch did not run the payload; the refusal test below would prove nothing"


@pytest.mark.parametrize("role", ["candidate", "baseline"])
@pytest.mark.parametrize("vector", sorted(payloads.VECTORS))
def test_gate_refuses_the_payload_without_running_it(vector, role, world, in_repo_root, tmp_path, capsys):
    path, marker = build(vector, tmp_path)
    report = tmp_path / "report.json"
    candidate, baseline = (path, world.baseline) if role == "candidate" else (world.good, path)
    res = run_cli(capsys, "check", candidate, "--baseline", baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", report)
    assert_refused(res, marker, report, f"{role} checkpoint", "refusing to load", f"--trust-checkpoint {role}")


@pytest.mark.parametrize("vector", sorted(payloads.VECTORS))
def test_trusting_the_baseline_does_not_trust_the_candidate(vector, world, in_repo_root, tmp_path, capsys):
    path, marker = build(vector, tmp_path)
    report = tmp_path / "report.json"
    res = run_cli(capsys, "check", path, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", report, "--trust-checkpoint", "baseline")
    assert_refused(res, marker, report, "candidate checkpoint", "refusing to load")


@pytest.mark.parametrize("section", ["model", "model.candidate"])
def test_a_config_file_cannot_give_trust(section, world, in_repo_root, tmp_path, capsys):
    path, marker = build("torchscript __setstate__ from_file", tmp_path)
    config = tmp_path / "gate.yaml"
    body = "  trust_checkpoint: true\n" if section == "model" else "  candidate:\n    trust_checkpoint: true\n"
    config.write_text("model:\n" + body, encoding="utf-8")
    report = tmp_path / "report.json"
    res = run_cli(capsys, "check", path, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", report, "--config", config)
    assert_refused(res, marker, report, f"{section}.trust_checkpoint", "trust cannot be given by a config file")
