"""The regression example on real data, end to end: train the diabetes regressors (once), then gate each
candidate. Expected: the candidate retrained from another seed passes (exit 0); the one with noise in its weights
fails on MAE and RMSE (exit 1). Exits non-zero otherwise.

Usage: python examples/diabetes/run_example.py [--force-retrain]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
OUT = HERE / "out"
EXPECTED = {"candidate_good": (0, set()), "candidate_noisy": (1, {"mae", "rmse"})}


def run_gate(candidate: str) -> tuple[int, dict]:
    OUT.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "gate", "check", str(ARTIFACTS / f"{candidate}.pt"),
           "--baseline", str(ARTIFACTS / "baseline.pt"), "--data", str(ARTIFACTS / "eval.npz"),
           "--config", str(HERE / "gate.yaml"), "--json", str(OUT / f"{candidate}.json"),
           "--markdown", str(OUT / f"{candidate}.md")]
    proc = subprocess.run(cmd, cwd=ROOT)
    report = json.loads((OUT / f"{candidate}.json").read_text()) if proc.returncode in (0, 1) else {}
    return proc.returncode, report


def main() -> int:
    if "--force-retrain" in sys.argv or not (ARTIFACTS / "candidate_noisy.pt").exists():
        subprocess.run([sys.executable, str(HERE / "make_models.py"), str(ARTIFACTS)], check=True, cwd=ROOT)
    ok = True
    for candidate, (want, metrics) in EXPECTED.items():
        print(f"\n=== {candidate} (expected exit {want}{', failing ' + ', '.join(sorted(metrics)) if metrics else ''})"
              " ===", flush=True)
        code, report = run_gate(candidate)
        failed = {f["metric"] for c in report.get("checks", []) if c["name"] == "regression"
                  for f in c["findings"] if f["status"] == "fail"}
        if code != want or not metrics <= failed:
            print(f"UNEXPECTED: {candidate} exited {code} with failing regression metrics {sorted(failed)}",
                  file=sys.stderr)
            ok = False
    print("\nexample: " + ("every candidate got the expected verdict" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
