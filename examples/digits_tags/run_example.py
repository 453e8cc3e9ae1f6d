"""The multi-label example on real data, end to end: train the digit taggers (once), then gate each candidate.
Expected: the fine-tuned candidate passes (exit 0); the one trained on tags where a 7 is not prime fails, naming
the `prime` tag (exit 1). Exits non-zero otherwise.

Usage: python examples/digits_tags/run_example.py [--force-retrain]
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
EXPECTED = {"candidate_good": (0, None), "candidate_forgets_seven": (1, "prime")}


def run_gate(candidate: str) -> tuple[int, dict]:
    OUT.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "gate", "check", str(ARTIFACTS / f"{candidate}.safetensors"),
           "--baseline", str(ARTIFACTS / "baseline.safetensors"), "--data", str(ARTIFACTS / "eval.npz"),
           "--config", str(HERE / "gate.yaml"), "--json", str(OUT / f"{candidate}.json"),
           "--markdown", str(OUT / f"{candidate}.md")]
    proc = subprocess.run(cmd, cwd=ROOT)
    report = json.loads((OUT / f"{candidate}.json").read_text()) if proc.returncode in (0, 1) else {}
    return proc.returncode, report


def main() -> int:
    if "--force-retrain" in sys.argv or not (ARTIFACTS / "candidate_forgets_seven.safetensors").exists():
        subprocess.run([sys.executable, str(HERE / "make_models.py"), str(ARTIFACTS)], check=True, cwd=ROOT)
    ok = True
    for candidate, (want, tag) in EXPECTED.items():
        print(f"\n=== {candidate} (expected exit {want}{', failing tag ' + tag if tag else ''}) ===", flush=True)
        code, report = run_gate(candidate)
        failed = {f["where"] for c in report.get("checks", []) if c["name"] == "multilabel"
                  for f in c["findings"] if f["status"] == "fail" and f.get("where")}
        if code != want or (tag is not None and failed != {tag}):
            print(f"UNEXPECTED: {candidate} exited {code} with failing tags {sorted(failed)}", file=sys.stderr)
            ok = False
    print("\nexample: " + ("every candidate got the expected verdict" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
