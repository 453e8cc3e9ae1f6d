"""The scores check at scale: CPU seconds in update() over the pass and in compute(), and the peak RSS, exact mode.

Synthetic float32 logits of both models (the candidate the baseline plus noise) from a fixed seed, fed in batches of
256, with a ROC-AUC and a log-loss rule, as docs/checks/scores.md's "Memory" section quotes it:

    OMP_NUM_THREADS=1 python benchmarks/scores_scale.py [--samples 20000] [--classes 1000]

The peak RSS is the process's (ru_maxrss), so run it in a fresh process.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.scores import ScoresCheck  # noqa: E402
from gate.config import build_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=1_000)
    args = parser.parse_args()
    n, k = args.samples, args.classes
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    zb = rng.standard_normal((n, k)).astype(np.float32)
    zb[np.arange(n), y] += 3.0
    zc = (zb + 0.3 * rng.standard_normal((n, k))).astype(np.float32)
    config = build_config({"checks": {"scores": {"enabled": True, "roc_auc": {"max_drop": 0.01},
                                                 "log_loss": {"max_increase": 0.05}}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    check = ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=tuple(map(str, range(k))), device=None))
    t0 = time.process_time()
    for i, start in enumerate(range(0, n, 256)):
        sl = slice(start, start + 256)
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                          scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])}))
    spent_update = time.process_time() - t0
    t0 = time.process_time()
    result = check.compute()
    spent_compute = time.process_time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"{n} samples x {k} classes: update {spent_update:.2f} CPU s, compute {spent_compute:.2f} CPU s, "
          f"kept {result.details['kept_per_sample']['bytes'] / 2 ** 20:.0f} MiB, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
