"""In-process cost of the scores check over the default checks, on the same models and data, side by side.

Goal (issue 13): the default checks plus `scores` take at most 1.05x the default checks alone. Each variant is a
whole `run_gate` in this process (load, one pass, every check's compute, the verdict); the variants are
interleaved (default, scores, scores+rules, default, ...) and the median of each is compared, in CPU seconds of
this process (time.process_time: other processes on a shared machine do not count). Two whole runs still differ
by more than 5% by noise alone, so the script also times the scores check's own
work inside the same runs (its update() per batch plus its compute()) and prints the attributable ratio
(default median + scores' own median) / default median, which is the number to hold against the goal.
The check's own time is the CPU time of the thread that runs it (time.thread_time), not the process's: the runner
computes the checks that read no bootstrap (scores among them) while the default checks' paired bootstrap is drawn
on another thread (gate.checks.classification.prefetch_replicates, with two cores or more), and process time in
that window would count that bootstrap, which the default run pays too, as the check's own.
Two scores variants: enabled with no thresholds (metrics, DeLong and normal intervals, the reliability diagram),
and with a rule on every metric (which adds each rule's closed-form tests; the check resamples nothing).

    OMP_NUM_THREADS=1 python benchmarks/scores_overhead.py [--repeats 9] [--workload digits|cancer|reviews]
        [--profile] [--tile K] [--warm N] [--versus CHECKOUT]

`--workload reviews` is the reviews example: a real transformer (MiniLM-L6, 22M parameters) on 400 real movie
reviews, two classes, the default checks of its gate.yaml (accuracy, per_class, flips; drift, slices and cases off).

`--tile K` (digits) evaluates K copies of the 540 eval images, each copy but the first with seeded noise (sd 0.05
of the pixel range) so that the scores do not tie: the check's fixed costs against a larger evaluation set.

With one thread: process time counts the CPU an idle OpenMP thread spins away, which on a loaded machine inflates
the default run and hides the check's share.

`--profile` prints cProfile's top functions (cumulative) inside the scores check's update() and compute() over the
runs with a rule on every metric, instead of the timings. `--warm N` also times compute() alone, called N times again
on one run's check (warm caches). `--versus CHECKOUT` instead times this tree's scores check and CHECKOUT's (another
checkout of gate, e.g. main's) on the same batches of one run, interleaved, each after a write that evicts the caches:
a paired comparison of two versions of the check that a loaded machine moves alike (`--repeats` pairs).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.scores import ScoresCheck  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.runner import Sources, run_gate  # noqa: E402

RULES = {"log_loss": {"max_increase": 0.05}, "brier": {"max_increase": 0.02}, "ece": {"max_increase": 0.03},
         "roc_auc": {"max_drop": 0.01}, "pr_auc": {"max_drop": 0.02}}


def digits(tile: int = 1):
    import numpy as np
    import yaml

    art = ROOT / "examples" / "digits" / "artifacts"
    if not (art / "candidate_good.safetensors").exists():
        subprocess.run([sys.executable, str(ROOT / "examples/digits/make_models.py"), str(art)], check=True)
    raw = yaml.safe_load((ROOT / "examples/digits/gate.yaml").read_text())
    raw["checks"]["drift"] = {"enabled": False}     # the default checks only
    data = art / "eval.npz"
    if tile > 1:
        with np.load(data) as d:
            images, labels = d["images"], d["labels"]
        rng = np.random.default_rng(0)
        spread = float(images.max() - images.min())
        copies = [images] + [images + rng.normal(0.0, 0.05 * spread, images.shape).astype(images.dtype)
                             for _ in range(tile - 1)]
        data = Path(tempfile.mkdtemp(prefix="gate-digits-tiled-")) / "eval.npz"
        np.savez(data, images=np.concatenate(copies), labels=np.tile(labels, tile))
    return raw, art / "candidate_good.safetensors", art / "baseline.safetensors", data, {"top_k_accuracy": {"max_drop": 0.01}}


def cancer():
    import yaml

    from examples.breast_cancer.make_models import make

    paths = make(Path(tempfile.mkdtemp(prefix="gate-cancer-")))
    raw = yaml.safe_load((ROOT / "examples/breast_cancer/gate.yaml").read_text())
    raw["checks"].pop("scores")
    return raw, paths["candidate_good"], paths["baseline"], paths["data"], {}


def reviews():
    """The reviews example: two real MiniLM-L6 sentiment classifiers (Hugging Face directories) on its 400 real
    reviews (examples/reviews; the checkpoints built by its make_models.py if missing, a few minutes). The default
    checks of its gate.yaml, accuracy, per_class and flips; drift (hooks on every encoder layer), slices and cases
    are off, so that the baseline is what a run without `scores` would cost for these models on this data."""
    import os

    import yaml

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    art = ROOT / "examples" / "reviews" / "artifacts"
    if not all((art / name / "model.safetensors").is_file() for name in ("baseline", "candidate_good")) \
            or not (art / "eval.jsonl").is_file():
        subprocess.run([sys.executable, str(ROOT / "examples/reviews/make_models.py"), str(art)], check=True)
    raw = yaml.safe_load((ROOT / "examples/reviews/gate.yaml").read_text())
    for name in ("drift", "slices", "cases"):
        raw["checks"][name] = {"enabled": False}
    return raw, art / "candidate_good", art / "baseline", art / "eval.jsonl", {}


WORKLOADS = {"digits": digits, "cancer": cancer, "reviews": reviews}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="digits")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--tile", type=int, default=1, help="digits: evaluate this many (noised) copies of the data")
    parser.add_argument("--warm", type=int, default=0,
                        help="also time compute() alone, called this many times again on one run's check")
    parser.add_argument("--versus", metavar="CHECKOUT",
                        help="instead: this tree's scores check against CHECKOUT's, on one run's batches, interleaved")
    args = parser.parse_args()
    raw, candidate, baseline, data, extra_rules = digits(args.tile) if args.workload == "digits" else \
        WORKLOADS[args.workload]()
    variants = {"default checks": copy.deepcopy(raw)}
    with_scores = copy.deepcopy(raw)
    with_scores["checks"]["scores"] = {"enabled": True}
    variants["+ scores, no thresholds"] = with_scores
    with_rules = copy.deepcopy(raw)
    with_rules["checks"]["scores"] = {"enabled": True, **RULES, **extra_rules}
    variants["+ scores, a rule on every metric"] = with_rules
    configs = {name: build_config(v, source="benchmark") for name, v in variants.items()}
    sources = Sources(candidate=str(candidate), baseline=str(baseline), data=str(data), extras={})
    times: dict[str, list[float]] = {name: [] for name in configs}
    own: dict[str, list[float]] = {name: [] for name in configs}
    own_update: dict[str, list[float]] = {name: [] for name in configs}
    spent = [0.0]
    update = ScoresCheck.update

    def timed_update(self, step):
        t0 = time.thread_time()
        update(self, step)
        spent[0] += time.thread_time() - t0

    compute = ScoresCheck.compute
    compute_spent = [0.0]

    def timed_compute(self):
        t0 = time.thread_time()
        out = compute(self)
        compute_spent[0] = time.thread_time() - t0
        return out

    if args.versus:
        versus(configs["+ scores, a rule on every metric"], sources, Path(args.versus), args.repeats)
        return
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()

        def profiled_update(self, step):
            profile.enable()
            update(self, step)
            profile.disable()

        def profiled_compute(self):
            profile.enable()
            out = compute(self)
            profile.disable()
            return out

        config = configs["+ scores, a rule on every metric"]
        run_gate(config, sources)
        ScoresCheck.update, ScoresCheck.compute = profiled_update, profiled_compute
        for _ in range(args.repeats):
            run_gate(config, sources)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(15)
        return
    ScoresCheck.update = timed_update
    ScoresCheck.compute = timed_compute
    for name, config in configs.items():      # warm-up: imports, first-call costs
        run_gate(config, sources)
    for _ in range(args.repeats):
        for name, config in configs.items():
            spent[0] = compute_spent[0] = 0.0
            t0 = time.process_time()
            report = run_gate(config, sources)
            times[name].append(time.process_time() - t0)
            own[name].append(spent[0] + compute_spent[0])
            own_update[name].append(spent[0])
    if args.warm:
        warm_compute(configs["+ scores, a rule on every metric"], sources, args.warm, compute)
    base = statistics.median(times["default checks"])
    n = report.data.num_samples
    print(f"workload {args.workload}: {n} samples, {report.models[0].num_classes} classes, "
          f"{args.repeats} interleaved repeats, median of each")
    print(f"{'variant':36s} {'run median CPU s':>16s} {'run ratio':>9s} {'scores own CPU s':>16s} {'attributable':>12s}")
    for name in configs:
        med, mine = statistics.median(times[name]), statistics.median(own[name])
        print(f"{name:36s} {med:16.4f} {med / base:9.3f} {mine:16.4f} {(base + mine) / base:12.3f}")
    print("of the scores check's own CPU, median ms in update() (every batch) / in compute(): " + "; ".join(
        f"{name[2:]} {statistics.median(own_update[name]) * 1e3:.2f} / "
        f"{statistics.median([a - b for a, b in zip(own[name], own_update[name])]) * 1e3:.2f}"
        for name in configs if name != "default checks"))
    print("goal: attributable ratio <= 1.05")


def _scores_check_of(checkout: Path) -> tuple[type, Any]:
    """The ScoresCheck class of another checkout's gate package, imported beside this tree's (its modules under
    their own names for the import, then this tree's put back; a function-level `from gate import ...` inside it
    resolves through sys.modules["gate"], which `versus` points at the package of the check it is timing)."""
    import importlib

    ours = {name: mod for name, mod in sys.modules.items() if name == "gate" or name.startswith("gate.")}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    try:
        theirs = importlib.import_module("gate.checks.scores")
        importlib.import_module("gate.curves")
        package = sys.modules["gate"]
    finally:
        sys.path.remove(str(checkout))
        for name in [name for name in sys.modules if name == "gate" or name.startswith("gate.")]:
            del sys.modules[name]
        sys.modules.update(ours)
    return theirs.ScoresCheck, package


def versus(config, sources, checkout: Path, repeats: int) -> None:
    """The scores check's own CPU (update() of every batch, then compute(); thread time) of this tree and of
    `checkout`'s, on the batches of one run (a rule on every metric), alternating which goes first, a 32 MB write
    before each to evict the caches as a run's forward pass does: a paired comparison that the machine's load
    moves alike for both, where two whole runs differ by more than the change."""
    import numpy as np

    theirs, their_package = _scores_check_of(checkout)
    ours, our_package = ScoresCheck, sys.modules["gate"]
    steps, ctxs = [], []

    def keep(self, step):
        steps.append(step)
        ctxs.append(self.ctx)
        update(self, step)

    update = ScoresCheck.update
    ScoresCheck.update = keep
    run_gate(config, sources)
    ScoresCheck.update = update
    options, ctx = config.check("scores"), ctxs[0]
    junk = np.ones(4_000_000)
    spent: dict[str, list[float]] = {"this tree": [], str(checkout): []}
    sides = (("this tree", ours, our_package), (str(checkout), theirs, their_package))
    for i in range(repeats + 3):
        for name, cls, package in sides if i % 2 else sides[::-1]:
            sys.modules["gate"] = package
            check = cls(options, ctx)
            junk += 1.0
            t0 = time.thread_time()
            for step in steps:
                check.update(step)
            check.compute()
            if i >= 3:                      # the first calls pay for imports and first-call costs
                spent[name].append(time.thread_time() - t0)
    sys.modules["gate"] = our_package
    mine, other = spent["this tree"], spent[str(checkout)]
    print(f"scores check's own CPU (update + compute, a rule on every metric), {repeats} interleaved pairs:")
    for name, values in spent.items():
        print(f"  {name:30s} median {statistics.median(values) * 1e3:.2f} ms, min {min(values) * 1e3:.2f} ms")
    print(f"  paired median difference (theirs - this tree): "
          f"{statistics.median([b - a for a, b in zip(mine, other)]) * 1e3:+.2f} ms")


def warm_compute(config, sources, calls: int, compute) -> None:
    """compute() of one run's check (a rule on every metric) called `calls` more times in a row: its cost with warm
    caches, against the in-run figure, which pays for the caches the models' forward pass took."""
    checks = []

    def grab(self):
        checks.append(self)
        return compute(self)

    ScoresCheck.compute = grab
    run_gate(config, sources)
    ScoresCheck.compute = compute
    spent = []
    for _ in range(calls):
        t0 = time.thread_time()
        compute(checks[0])
        spent.append(time.thread_time() - t0)
    print(f"compute() alone, warm, a rule on every metric: median {statistics.median(spent) * 1e3:.2f} ms, "
          f"min {min(spent) * 1e3:.2f} ms over {calls} calls")


if __name__ == "__main__":
    main()
