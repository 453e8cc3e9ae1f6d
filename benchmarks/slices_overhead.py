"""What slices and behavioural cases add to a gate pass: the same pass over the same batches with the default checks,
and with the default checks plus `slices` (by source and source x label) and `cases` (the example's must-pass suite).

Goal: at most 1.05x. Both are timed in the same process, interleaved (plain, sliced, plain, sliced, ...), on the
same pre-read batches (tokenized once: I/O excluded from both), and the medians are compared, because this
machine is shared and noisy. Flipped examples are collected in both (they are part of every pass).

    python benchmarks/slices_overhead.py [--repeats 5] [--limit 400]

Workload: the reviews example (the real MiniLM-L6 encoder on real IMDB / Rotten Tomatoes reviews, 400 samples,
examples/reviews/artifacts; built by examples/reviews/run_example.py on first use).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.base import ROLES, RunContext  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.data import open_data  # noqa: E402
from gate.forward import move_to  # noqa: E402
from gate.models import load_model  # noqa: E402
from gate.runner import align_models, build_checks, evaluate  # noqa: E402

REVIEWS = ROOT / "examples" / "reviews"
ART = REVIEWS / "artifacts"


def ensure_artifacts() -> None:
    if not (ART / "candidate_source_regressed" / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(REVIEWS / "make_models.py"), str(ART)], check=True, cwd=ROOT)


def configs(limit: int | None) -> tuple[dict, dict]:
    raw = yaml.safe_load((REVIEWS / "gate.yaml").read_text())
    raw["checks"]["drift"] = {"enabled": False}      # drift has its own benchmark
    if limit:
        raw["data"]["limit"] = limit
    sliced = copy.deepcopy(raw)
    sliced["checks"]["cases"]["file"] = str(REVIEWS / "cases.yaml")
    plain = copy.deepcopy(raw)
    plain["checks"]["slices"] = {"enabled": False}
    plain["checks"]["cases"] = {"enabled": False}
    return plain, sliced


class Timed:
    """A check whose setup / update / compute calls are timed: the seconds slices and cases themselves take, an
    attribution that machine noise cannot swamp the way it can a difference of two medians."""

    def __init__(self, check, spent: dict[str, float]) -> None:
        self.check, self.spent = check, spent

    def __getattr__(self, name: str):
        return getattr(self.check, name)

    def _timed(self, method: str, *args):
        t0 = time.perf_counter()
        try:
            return getattr(self.check, method)(*args)
        finally:
            self.spent[self.check.name] = self.spent.get(self.check.name, 0.0) + time.perf_counter() - t0

    def setup(self):
        return self._timed("setup")

    def update(self, step):
        return self._timed("update", step)

    def compute(self):
        return self._timed("compute")


class Cached:
    """Pre-read (inputs, labels, meta) batches, shaped like gate.data.EvalData."""

    def __init__(self, batches: list, path: str) -> None:
        self.cached, self.path, self.format, self.sha256 = batches, path, "jsonl", None
        self.num_samples = sum(len(y) for _, y, _ in batches)

    def batches_with_meta(self):
        return iter(self.cached)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N reviews")
    parser.add_argument("--candidate", default="candidate_source_regressed")
    args = parser.parse_args()
    ensure_artifacts()
    plain_raw, sliced_raw = configs(args.limit)
    device = torch.device("cpu")
    plain_cfg, sliced_cfg = build_config(plain_raw), build_config(sliced_raw, source=str(REVIEWS / "gate.yaml"))
    models = {role: load_model(str(ART / name), role=role, options=plain_cfg.model_options(role), device=device)
              for role, name in (("baseline", "baseline"), ("candidate", args.candidate))}
    models, alignment = align_models(plain_cfg, models)
    tokenizer = models["candidate"].tokenizer or models["baseline"].tokenizer
    data = open_data(str(ART / "eval.jsonl"), options=plain_cfg.data, class_names=alignment.names, tokenizer=tokenizer)
    cached = Cached([(move_to(x, device), y, m) for x, y, m in data.batches_with_meta()], data.path)
    encoder = data.source.encoder

    spent: dict[str, float] = {}

    def run(config) -> None:
        ctx = RunContext(config=config, models=dict(models), class_names=alignment.names or (), device=device,
                         classes=alignment, extras={"encoder": encoder})
        checks = [Timed(c, spent) if c.name in ("slices", "cases") else c for c in build_checks(config, ctx)]
        for c in checks:
            c.setup()
        ctx.counts, _, _ = evaluate(ctx, cached, checks)
        for c in checks:
            c.compute()
            c.teardown()

    with torch.inference_mode():
        run(plain_cfg), run(sliced_cfg)      # warm-up
        times: dict[str, list[float]] = {"plain": [], "sliced": []}
        spent.clear()
        for _ in range(args.repeats):
            for name, config in (("plain", plain_cfg), ("sliced", sliced_cfg)):
                t0 = time.perf_counter()
                run(config)
                times[name].append(time.perf_counter() - t0)
    inside = {name: seconds / args.repeats for name, seconds in spent.items()}
    plain, sliced = statistics.median(times["plain"]), statistics.median(times["sliced"])
    cases = len(yaml.safe_load((REVIEWS / "cases.yaml").read_text())["cases"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} (medians), "
          f"{cached.num_samples} reviews, {cases} cases, roles {', '.join(ROLES)}")
    print(f"{'workload':<44}{'plain s':>10}{'+slices+cases s':>17}{'ratio':>8}")
    print(f"{'MiniLM-L6 reviews (' + args.candidate + ')':<44}{plain:>10.3f}{sliced:>17.3f}{sliced / plain:>8.3f}")
    print(f"time inside the checks per sliced pass: " + ", ".join(f"{k} {v:.3f} s" for k, v in sorted(inside.items()))
          + f" = {sum(inside.values()) / sliced:.2%} of it (1 + that = {1 + sum(inside.values()) / sliced:.3f}x)")
    print(f"goal: ratio <= 1.05 -> {'met' if sliced / plain <= 1.05 else 'NOT met'} by the medians; "
          f"{'met' if sum(inside.values()) / sliced <= 0.05 else 'NOT met'} by the time inside the checks")


if __name__ == "__main__":
    main()
