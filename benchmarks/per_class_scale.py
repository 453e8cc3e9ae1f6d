"""Per-class decisions at ImageNet scale: CPU seconds and peak RSS of the default classification checks.

    python benchmarks/per_class_scale.py                       # 1,000 classes x 50,000 samples, one broken class
    python benchmarks/per_class_scale.py --classes 300 --samples 15000
    python benchmarks/per_class_scale.py --accuracy 0.5 --uniform-errors    # worst case: ~one cell per error
    python benchmarks/per_class_scale.py --f1-rule             # + per-class F1 max_drop 0.1: the bootstrap rules
    python benchmarks/per_class_scale.py --f1-rule --overrides 4   # + 4 override sections, other F1 thresholds

Builds the run's PairedCounts for a baseline at 80% accuracy and a candidate as good except that one class is
wholly broken (the candidate never gets it right), then runs what `gate check` runs after the pass:
AccuracyCheck, PerClassCheck, FlipsCheck with the default config and the report's metrics section.
Prints CPU time (process_time), peak RSS (getrusage) and each check's status; per_class must fail on the broken
class by itself. Target (issue 11): <= 60 CPU s and <= 1.5 GiB at 1,000 x 50,000.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from gate.checks import classification  # noqa: E402
from gate.checks.base import RunContext  # noqa: E402
from gate.checks.classification import AccuracyCheck, FlipsCheck, PerClassCheck  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.metrics import PairedCounts, metrics_report  # noqa: E402


def make_counts(classes: int, samples: int, *, seed: int, broken: int, accuracy: float,
                uniform_errors: bool) -> PairedCounts:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, samples)
    probs = [accuracy - 0.02, 0.02, 0.02, 1 - accuracy - 0.02]          # (both right, b only, c only, neither)
    kind = rng.choice(4, size=samples, p=probs)
    base_ok = kind <= 1
    cand_ok = (kind == 0) | (kind == 2)
    cand_ok &= y != broken                                           # the broken class: never right
    spread = classes - 1 if uniform_errors else 5                    # uniform: almost one cell per error
    wrong_b = (y + 1 + rng.integers(0, spread, samples)) % classes
    wrong_c = (y + 1 + rng.integers(0, spread, samples)) % classes
    counts = PairedCounts(classes)
    for start in range(0, samples, 256):                             # batches, as the runner feeds them
        sl = slice(start, start + 256)
        counts.update(y[sl], np.where(base_ok, y, wrong_b)[sl], np.where(cand_ok, y, wrong_c)[sl])
    return counts


#: [calls, CPU s] of the score test's interval inversion (metrics.class_score_interval) during the decision.
SCORE_INTERVAL = [0, 0.0]


def timed_score_interval(metric: str, rule: str, patterns: np.ndarray, *, alpha: float):
    start = time.process_time()
    try:
        return REAL_SCORE_INTERVAL(metric, rule, patterns, alpha=alpha)
    finally:
        SCORE_INTERVAL[0] += 1
        SCORE_INTERVAL[1] += time.process_time() - start


REAL_SCORE_INTERVAL = classification.class_score_interval
classification.class_score_interval = timed_score_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accuracy", type=float, default=0.8, help="baseline accuracy")
    parser.add_argument("--uniform-errors", action="store_true",
                        help="wrong predictions uniform over all classes (the most cells: the worst case)")
    parser.add_argument("--f1-rule", action="store_true",
                        help="add per_class f1 max_drop 0.1 (decided by the paired bootstrap, per_class replicates)")
    parser.add_argument("--overrides", type=int, default=0,
                        help="with --f1-rule: this many per-class override sections, each giving 10 classes "
                             "another F1 max_drop (a threshold group of its own)")
    args = parser.parse_args()
    broken = 7
    counts = make_counts(args.classes, args.samples, seed=args.seed, broken=broken, accuracy=args.accuracy,
                         uniform_errors=args.uniform_errors)
    names = tuple(f"c{k}" for k in range(args.classes))
    per_class: dict = {"f1": {"max_drop": 0.1}} if args.f1_rule else {}
    if args.f1_rule and args.overrides:
        per_class["overrides"] = [{"classes": [f"c{k}" for k in range(10 * i, 10 * i + 10)],
                                   "f1": {"max_drop": 0.1 + 0.01 * (i + 1)}} for i in range(args.overrides)]
    config = build_config({"checks": {"per_class": per_class}} if per_class else {})
    ctx = RunContext(config=config, models={}, class_names=names, device=None, counts=counts)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = [cls(config.check(cls.name), ctx).compute() for cls in (AccuracyCheck, PerClassCheck, FlipsCheck)]
    metrics_report(counts, names)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"{args.classes} classes x {args.samples} samples, {len(counts.cells().counts)} cells, "
          f"{config.decision['bootstrap_resamples']} bootstrap resamples, "
          f"{'default config + per-class F1 max_drop 0.1' if args.f1_rule else 'default config'}"
          f"{f' + {args.overrides} override sections' if args.overrides else ''} "
          f"(mode {config.decision['mode']})")
    print(f"decide: {cpu:.1f} CPU s ({wall:.1f} s wall), peak RSS of the process {peak_gib:.2f} GiB; "
          f"score interval: {SCORE_INTERVAL[0]} calls, {SCORE_INTERVAL[1]:.2f} CPU s")
    for r in results:
        failed = [f.metric for f in r.findings if f.status == "fail"]
        print(f"  {r.name:9s} {r.status:4s} fails: {', '.join(failed[:4]) or '-'}"
              f"{' (+%d more)' % (len(failed) - 4) if len(failed) > 4 else ''}")
        for note in r.notes:
            print(f"    note: {note}")
    per_class = next(r for r in results if r.name == "per_class")
    ok = per_class.status == "fail" and any(f.where == names[broken] and f.status == "fail" for f in per_class.findings)
    print(f"per_class fails the broken class {names[broken]} by itself: {ok}")


if __name__ == "__main__":
    main()
