"""Peak RSS of a whole `gate check` at 500,000 samples vs 50,000: the default checks, and with drift.

Goal (issue 15, item 5): at most 5% above at 10x the data. Each run is a fresh process (the real CLI, in-process
in that child) whose own peak resident size (getrusage ru_maxrss) is printed side by side. The data is streamed
by a factory that draws each batch from a seed (the tiny MLP of tests/tiny_models labels Gaussian inputs), so what
grows, if anything, is the gate's own state, not a data file held in memory (a tensor file is loaded whole by
design: its size is the caller's). Run from the repository root:

    python benchmarks/memory_flat.py [--small 50000] [--large 500000] [--batch-size 256]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys
from gate.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print("RESULT", code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def stream(n: int, batch_size: int = 256, seed: int = 0):
    """`n` samples in batches drawn one at a time from a seed: (inputs (B, 8) float32, labels (B,) int64)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import IN_FEATURES, teacher

    model = teacher(seed)
    rng = np.random.default_rng(seed)
    done = 0
    with torch.no_grad():
        while done < n:
            size = min(batch_size, n - done)
            x = torch.from_numpy(rng.standard_normal((size, IN_FEATURES)).astype(np.float32))
            y = model(x).argmax(1)
            flip = torch.from_numpy(rng.random(size) < 0.1)
            y[flip] = torch.from_numpy(rng.integers(0, 3, int(flip.sum())))
            done += size
            yield x, y


def peak_rss_kib(folder: Path, *, n: int, batch_size: int, drift: bool) -> int:
    config = folder / f"gate-{n}-{drift}.json"
    config.write_text(json.dumps({"data": {"factory": "benchmarks.memory_flat:stream", "batch_size": batch_size,
                                           "kwargs": {"n": n, "batch_size": batch_size}}}))
    args = ["check", str(folder / "good.pt"), "-b", str(folder / "baseline.pt"), "-c", str(config), "-q",
            "--model-factory", "tests.tiny_models:build_mlp"] + (["--enable", "drift"] if drift else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise SystemExit(f"the gate run failed: {done.stderr.strip()}")
    _, code, rss = line[-1].split()
    if code not in ("0", "1"):
        raise SystemExit(f"the gate run could not run (exit {code}): {done.stderr.strip()}")
    return int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import good_candidate, save_state_dict, teacher

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_state_dict(teacher(0), folder / "baseline.pt")
        save_state_dict(good_candidate(0), folder / "good.pt")
        print(f"{'checks':<22} {'peak RSS at ' + format(args.small, ','):>22} {'at ' + format(args.large, ','):>14}"
              f" {'ratio':>7}  goal <= 1.05")
        for label, drift in (("default", False), ("default + drift", True)):
            small = peak_rss_kib(folder, n=args.small, batch_size=args.batch_size, drift=drift)
            large = peak_rss_kib(folder, n=args.large, batch_size=args.batch_size, drift=drift)
            ratio = large / small
            print(f"{label:<22} {small / 1024:>19.1f} MB {large / 1024:>11.1f} MB {ratio:>7.3f}  "
                  f"{'ok' if ratio <= 1.05 else 'ABOVE GOAL'}", flush=True)


if __name__ == "__main__":
    main()
