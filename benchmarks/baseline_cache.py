"""CPU time of `gate check --baseline-cache DIR` on the MiniLM reviews example: the first run (a miss: both models
run, the baseline's scores are kept) vs the rerun (a hit: only the candidate runs).

Goal (issue 15, item 2): the cached rerun at most 0.6x the first run's CPU. Each pair is a fresh cache folder, a
miss then a hit, each a whole `gate check` process (user + system CPU of the child, from getrusage), and the
pairs are repeated; the median of the per-pair ratios is printed beside the verdicts of both runs, which must be
the same. drift is disabled: it reads the baseline's live activations, so it bypasses the cache by design.

    python examples/reviews/make_models.py [DIR]         # once: builds the checkpoints (minutes on 2 cores)
    python benchmarks/baseline_cache.py [--artifacts DIR] [--repeats 3] [--candidate candidate_good]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = ROOT / "examples" / "reviews"


def gate_run(args: list[str]) -> tuple[float, int]:
    """CPU seconds (user + system) of one `python -m gate check ...` process, and its exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "gate", "check", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"gate check could not run (exit {done.returncode}): {done.stderr.strip()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=REVIEWS / "artifacts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidate", default="candidate_regressed")
    opts = parser.parse_args()
    art = opts.artifacts
    if not (art / "baseline" / "model.safetensors").is_file():
        raise SystemExit(f"{art}: no reviews checkpoints; build them with: python examples/reviews/make_models.py {art}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'pair':<6} {'first run (miss) CPU s':>22} {'rerun (hit) CPU s':>18} {'ratio':>7}  verdicts")
        for pair in range(opts.repeats):
            cache = Path(tmp) / f"cache-{pair}"
            reports = [Path(tmp) / f"{pair}-{kind}.json" for kind in ("miss", "hit")]
            base = [str(art / opts.candidate), "-b", str(art / "baseline"), "-d", str(art / "eval.jsonl"),
                    "-c", str(REVIEWS / "gate.yaml"), "--disable", "drift", "-q", "--baseline-cache", str(cache)]
            miss, code_miss = gate_run([*base, "--json", str(reports[0])])
            hit, code_hit = gate_run([*base, "--json", str(reports[1])])
            notes = [json.loads(r.read_text())["notes"] for r in reports]
            if not any(n.startswith("baseline cache hit") for n in notes[1]):
                raise SystemExit(f"the rerun did not hit the cache: {notes[1]}")
            metrics = [json.loads(r.read_text())["metrics"] for r in reports]
            same = "same" if metrics[0] == metrics[1] and code_miss == code_hit else "DIFFERENT"
            ratios.append(hit / miss)
            print(f"{pair:<6} {miss:>22.2f} {hit:>18.2f} {hit / miss:>7.3f}  exit {code_miss} / {code_hit}, "
                  f"metrics {same}", flush=True)
    ratio = statistics.median(ratios)
    print(f"median ratio {ratio:.3f} (goal <= 0.6): {'ok' if ratio <= 0.6 else 'ABOVE GOAL'}")


if __name__ == "__main__":
    main()
