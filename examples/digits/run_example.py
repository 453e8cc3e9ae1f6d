"""The shipped example, end to end: train the three digits checkpoints (once), then gate both candidates.

Expected: the good candidate passes (exit 0) and the regressed one fails (exit 1) on class 3's recall.
This script exits non-zero if either outcome differs, so CI proves the example still tells them apart.

Usage: python examples/digits/run_example.py [--force-retrain]
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
OUT = HERE / "out"


def gate_executable() -> str:
    beside = Path(sys.executable).with_name("gate")
    return str(beside) if beside.exists() else (shutil.which("gate") or "gate")


def run_gate(candidate: str) -> tuple[int, dict]:
    OUT.mkdir(exist_ok=True)
    cmd = [
        gate_executable(), "check", str(ARTIFACTS / f"{candidate}.safetensors"),
        "--baseline", str(ARTIFACTS / "baseline.safetensors"),
        "--data", str(ARTIFACTS / "eval.npz"),
        "--config", str(HERE / "gate.yaml"),
        "--json", str(OUT / f"{candidate}.json"),
        "--markdown", str(OUT / f"{candidate}.md"),
        "--junit", str(OUT / f"{candidate}.xml"),
    ]
    print("$ " + " ".join(Path(c).relative_to(ROOT).as_posix() if c.startswith(str(ROOT)) else c for c in cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT)
    report = json.loads((OUT / f"{candidate}.json").read_text()) if proc.returncode in (0, 1) else {}
    return proc.returncode, report


def main() -> int:
    if "--force-retrain" in sys.argv or not (ARTIFACTS / "candidate_regressed.safetensors").exists():
        subprocess.run([sys.executable, str(HERE / "make_models.py"), str(ARTIFACTS)], check=True, cwd=ROOT)
    expected = {"candidate_good": 0, "candidate_regressed": 1}
    ok = True
    for candidate, want in expected.items():
        print(f"\n=== {candidate} (expected exit {want}) ===", flush=True)
        code, _ = run_gate(candidate)
        if code != want:
            print(f"UNEXPECTED: {candidate} exited {code}, expected {want}", file=sys.stderr)
            ok = False
    print(f"\nreports in {OUT.relative_to(ROOT)}/ (JSON, Markdown, JUnit)")
    print("example: " + ("the good candidate passed and the regressed one failed, as expected" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
