"""The score-metrics example on real data, end to end: train the breast-cancer scorers (once), then gate each
candidate. Expected: the fine-tuned candidate passes (exit 0); the overconfident one (every decision unchanged)
fails on log loss; the scrambled one (every decision unchanged) fails on ROC-AUC. Exits non-zero otherwise.

Usage: python examples/breast_cancer/run_example.py [--force-retrain]
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
EXPECTED = {"candidate_good": (0, None), "candidate_overconfident": (1, "log_loss"),
            "candidate_scrambled": (1, "roc_auc")}


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
    if "--force-retrain" in sys.argv or not (ARTIFACTS / "candidate_scrambled.pt").exists():
        subprocess.run([sys.executable, str(HERE / "make_models.py"), str(ARTIFACTS)], check=True, cwd=ROOT)
    ok = True
    for candidate, (want, metric) in EXPECTED.items():
        print(f"\n=== {candidate} (expected exit {want}{', failing ' + metric if metric else ''}) ===", flush=True)
        code, report = run_gate(candidate)
        failed = {f["metric"] for c in report.get("checks", []) if c["name"] == "scores"
                  for f in c["findings"] if f["status"] == "fail"}
        if code != want or (metric is not None and metric not in failed):
            print(f"UNEXPECTED: {candidate} exited {code} with failing score metrics {sorted(failed)}", file=sys.stderr)
            ok = False
    print("\nexample: " + ("every candidate got the expected verdict" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
