"""CPU time and memory of the regression check at n = 10^4, 10^5, 10^6 samples (one target, batches of 1,000,
the default 2,000 resamples: the bootstrap runs on at most 20,000 samples, so compute() grows slowly with n).

    python benchmarks/regression_overhead.py
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.regression import RegressionCheck  # noqa: E402
from gate.config import build_config  # noqa: E402


def main() -> None:
    for n in (10_000, 100_000, 1_000_000):
        rng = np.random.default_rng(0)
        y = rng.normal(size=(n, 1)).astype(np.float32)
        pb = (y + rng.normal(size=(n, 1))).astype(np.float32)
        pc = (y + 1.1 * rng.normal(size=(n, 1))).astype(np.float32)
        config = build_config({"checks": {"regression": {"enabled": True, "r2": {"max_drop": 0.01},
                                                         "worse_rate": {"max": 0.5}}}})
        ctx = RunContext(config=config, models={}, class_names=("target",), device=None)
        check = RegressionCheck(config.check("regression"), ctx)
        t0 = time.process_time()
        for start in range(0, n, 1000):
            sl = slice(start, start + 1000)
            step = Step(index=start // 1000, offset=start, inputs=None, labels=torch.from_numpy(y[sl]), scores={},
                        preds={"baseline": pb[sl], "candidate": pc[sl]})
            step.task = "regression"
            check.update(step)
        t1 = time.process_time()
        result = check.compute()
        t2 = time.process_time()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"n = {n:>9,}: update() {t1 - t0:.2f} CPU s in all, compute() {t2 - t1:.2f} CPU s, kept "
              f"{result.details['kept_per_sample']['bytes'] / 2 ** 20:.1f} MiB, peak RSS {rss:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
