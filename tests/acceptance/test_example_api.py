"""examples/api/check_digits.py, the Python API's worked example, runs as documented on the digits checkpoints."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "api" / "check_digits.py"


def test_the_api_example_tells_the_candidates_apart(tmp_path):
    artifacts = ROOT / "examples" / "digits" / "artifacts"
    assert (artifacts / "candidate_regressed.safetensors").exists(), \
        "the digits checkpoints are missing: run python examples/digits/run_example.py first (CI does)"
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # 540 samples cannot prove every class within its threshold: the good candidate passes, perhaps with warnings
    # (exit 0), never fails.
    assert out.startswith("<gate.Report PASS")
    assert "per_class  recall[3]" in out and "\nfc.1\n" in out
    assert "error: enable: expected one of" in out and "(did you mean drift?)" in out
    report = json.loads((tmp_path / "regressed.json").read_text())
    assert report["verdict"] == "fail" and report["models"][1]["path"] == "<in-memory DigitsCNN>"
    assert (tmp_path / "regressed.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "regressed.md").read_text().startswith("## :x: gate FAILED")
