"""What the ROC / precision-recall curves (gate/curves.py) add to the scores check's compute(), side by side, and
how big they are in the JSON and HTML reports.

The same ScoresCheck state is computed with its curves and with `_curve_outputs` replaced by a no-op, interleaved
(with, without, with, ...), median CPU seconds of this process each (time.process_time); then the curves' share
of the JSON report (`details.curves` as json.dumps(indent=2) writes it, as the JSON report does) and the
HTML section's bytes. Synthetic logits of both models from a fixed seed; no rules (metrics and intervals only).

    python benchmarks/curves_overhead.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
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
from gate.report import html  # noqa: E402

WORKLOADS = ((100_000, 2), (20_000, 10), (10_000, 100), (10_000, 1000))


def fed_check(n: int, k: int) -> ScoresCheck:
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    common = rng.standard_normal((n, k))
    z = {r: (common + 0.5 * rng.standard_normal((n, k))).astype(np.float32) for r in ("baseline", "candidate")}
    for r in z:
        z[r][np.arange(n), y] += 1.5
    config = build_config({"checks": {"scores": {"enabled": True, "top_k": 1}}})
    models = {r: SimpleNamespace(output="logits") for r in z}
    check = ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=tuple(map(str, range(k))), device=None))
    for i, start in enumerate(range(0, n, 4096)):
        sl = slice(start, start + 4096)
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                          scores={r: torch.from_numpy(v[sl]) for r, v in z.items()}))
    return check


def cpu(fn) -> tuple[float, object]:
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'samples x classes':>18} {'compute s':>10} {'no curves s':>12} {'ratio':>6} {'curves JSON KiB':>16} "
          f"{'HTML section KiB':>17}")
    for n, k in WORKLOADS:
        check = fed_check(n, k)
        real = ScoresCheck._curve_outputs
        with_s, without_s, result = [], [], None
        for _ in range(args.repeats):
            t, result = cpu(check.compute)
            with_s.append(t)
            check._curve_outputs = lambda odds, y, rankings: {}    # the same compute without its curves
            without_s.append(cpu(check.compute)[0])
            del check._curve_outputs
        assert ScoresCheck._curve_outputs is real
        curves = result.details["curves"]
        report = SimpleNamespace(checks=(result,), class_names=tuple(map(str, range(k))))
        section = html._score_curves(report)
        a, b = statistics.median(with_s), statistics.median(without_s)
        print(f"{n:>9} x {k:<6} {a:>10.3f} {b:>12.3f} {a / b:>6.3f} "
              f"{len(json.dumps(curves, indent=2)) / 1024:>16.1f} {len(section.encode()) / 1024:>17.1f}")


if __name__ == "__main__":
    main()
