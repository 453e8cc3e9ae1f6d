"""What the score, multi-label and regression examples share: train once, gate each candidate against the baseline
with the example's gate.yaml, and check every candidate got its expected exit code and failing findings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_gate(here: Path, candidate: str, *, suffix: str) -> tuple[int, dict]:
    """`gate check` of artifacts/<candidate><suffix> against artifacts/baseline<suffix> on artifacts/eval.npz."""
    artifacts, out = here / "artifacts", here / "out"
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "gate", "check", str(artifacts / f"{candidate}{suffix}"),
           "--baseline", str(artifacts / f"baseline{suffix}"), "--data", str(artifacts / "eval.npz"),
           "--config", str(here / "gate.yaml"), "--json", str(out / f"{candidate}.json"),
           "--markdown", str(out / f"{candidate}.md")]
    proc = subprocess.run(cmd, cwd=ROOT)
    report = json.loads((out / f"{candidate}.json").read_text()) if proc.returncode in (0, 1) else {}
    return proc.returncode, report


def run_examples(here: Path, expected: dict[str, tuple[int, set[str]]], *, suffix: str, check: str,
                 field: str = "metric", exact: bool = False) -> int:
    """expected: candidate -> (exit code, the `field`s of `check`'s failing findings it must show: at least those,
    or exactly those with `exact`). Trains first when the last candidate is missing or with --force-retrain."""
    last = list(expected)[-1]
    if "--force-retrain" in sys.argv or not (here / "artifacts" / f"{last}{suffix}").exists():
        subprocess.run([sys.executable, str(here / "make_models.py"), str(here / "artifacts")], check=True, cwd=ROOT)
    ok = True
    for candidate, (want, failing) in expected.items():
        listed = f", failing {', '.join(sorted(failing))}" if failing else ""
        print(f"\n=== {candidate} (expected exit {want}{listed}) ===", flush=True)
        code, report = run_gate(here, candidate, suffix=suffix)
        failed = {f[field] for c in report.get("checks", []) if c["name"] == check
                  for f in c["findings"] if f["status"] == "fail" and f.get(field)}
        if code != want or not (failed == failing if exact and failing else failing <= failed):
            print(f"UNEXPECTED: {candidate} exited {code} with failing {check} {field}s {sorted(failed)}",
                  file=sys.stderr)
            ok = False
    print("\nexample: " + ("every candidate got the expected verdict" if ok else "FAILED"))
    return 0 if ok else 1
