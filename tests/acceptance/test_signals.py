"""SIGTERM and SIGINT end a run with one `error:` line, the documented exit code, and no report."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_mid_run_leaves_one_error_line_and_no_report(sig, code, name, world, tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "check", str(world.good), "--baseline", str(world.baseline),
         "--data", "tests.acceptance.data_factories:slow_batches", "--model-factory", "tests.tiny_models:build_mlp",
         "--json", str(report)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "pass started"      # the models are loaded and the pass is running
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert lines == [f"error: terminated ({name}); no report was written" if name == "SIGTERM"
                     else f"error: interrupted ({name}); no report was written"], err
    assert not report.exists() and not list(tmp_path.glob(".r.json*"))


@pytest.mark.slow
def test_an_interrupt_that_something_swallowed_still_ends_the_run_without_a_report(world, tmp_path):
    """The reader swallows the KeyboardInterrupt and the pass runs to its end: the run still ends as interrupted,
    130 and no report, since the handler remembered the signal."""
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "check", str(world.good), "--baseline", str(world.baseline),
         "--data", "tests.acceptance.data_factories:swallowing_batches", "--model-factory",
         "tests.tiny_models:build_mlp", "--json", str(report)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "pass started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines() == ["error: interrupted (SIGINT); no report was written"], err
    assert not report.exists() and not list(tmp_path.glob(".r.json*"))
