"""Coverage of the scores check's intervals, by simulation against a known truth.

A finite population of 200,000 samples (labels and two models' logits, the candidate noisier and its logits times a
temperature T: 0.9 about calibrated, better calibrated than the underconfident baseline; 1.6 overconfident) is
drawn once; each evaluation set is n samples drawn from it at random, so the true value of every metric, and
of every difference between the models, is the metric on the whole population. Each set is judged by the real
ScoresCheck (the code the gate runs), with a rule on every metric; the finding's interval is the two-sided 95%
interval of the compared quantity (a drop for higher-is-better metrics, an increase for lower-is-better ones).
Printed per (task, T, metric, n): the share of sets whose interval covers the truth (goal 95%), and the share that
miss it on each side (each goal <= 2.5%): an interval wholly above the truth overstates how much worse the
candidate is (a good candidate looks beyond its threshold), one wholly below understates it (a bad candidate looks
within). Also DeLong's standard error against a large paired bootstrap.

    python benchmarks/scores_coverage.py [--sets 400] [--sizes 200,1000,5000] [--temperatures 0.9,1.6]
                                         [--metrics log_loss,ece] [--quick]

Monte Carlo standard error of a 95% coverage at 400 sets: 1.1 points; of a 2.5% miss rate: 0.8 points (at 1,000
sets: 0.7 and 0.5). `--resamples` sets decision.bootstrap_resamples, which the scores check no longer uses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate import score_metrics as sm  # noqa: E402
from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.scores import ScoresCheck, compared_value, log_odds_of  # noqa: E402
from gate.config import build_config  # noqa: E402

RULES = {"log_loss": {"max_increase": 0.05}, "brier": {"max_increase": 0.02}, "ece": {"max_increase": 0.02},
         "roc_auc": {"max_drop": 0.01}, "pr_auc": {"max_drop": 0.01}, "top_k_accuracy": {"max_drop": 0.01}}
RULE_OF = {m: next(iter(r)) for m, r in RULES.items()}


def population(k: int, size: int = 200_000, seed: int = 0, temperature: float = 1.6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size)
    common = rng.standard_normal((size, k))
    zb = common + 0.5 * rng.standard_normal((size, k))
    zc = common + 0.8 * rng.standard_normal((size, k))
    zb[np.arange(size), y] += 1.5
    zc[np.arange(size), y] += 1.5
    return y, zb.astype(np.float32), (temperature * zc).astype(np.float32)


def truth(y, zb, zc, *, top_k: int, bins: int) -> dict[str, float]:
    """Each metric's compared quantity on the whole population."""
    out = {}
    ob, oc = (log_odds_of(torch.from_numpy(z), "logits", role="x").astype(np.float64) for z in (zb, zc))
    pb, pc = sm.probabilities(ob), sm.probabilities(oc)
    values = {
        "log_loss": (sm.log_loss_terms(ob, y).mean(), sm.log_loss_terms(oc, y).mean()),
        "brier": (sm.brier_terms(pb, y).mean(), sm.brier_terms(pc, y).mean()),
        "ece": (sm.reliability(pb, y, bins=bins).ece, sm.reliability(pc, y, bins=bins).ece),
        "roc_auc": (sm.roc_auc(ob, y).value, sm.roc_auc(oc, y).value),
        "pr_auc": (float(sm.pr_auc(ob, y)[0]), float(sm.pr_auc(oc, y)[0])),
    }
    if zb.shape[1] > top_k:
        values["top_k_accuracy"] = (sm.top_k_hits(ob, y, top_k).mean(), sm.top_k_hits(oc, y, top_k).mean())
    for metric, (b, c) in values.items():
        out[metric] = compared_value(RULE_OF[metric], float(b), float(c))
    return out


def judge_set(y, zb, zc, *, resamples: int, seed: int, top_k: int, metrics: tuple[str, ...] = tuple(RULES)):
    k = zb.shape[1]
    rules = {m: r for m, r in RULES.items() if m in metrics and (k > top_k or m != "top_k_accuracy")}
    config = build_config({"decision": {"bootstrap_resamples": resamples}, "seed": seed,
                           "checks": {"scores": {"enabled": True, "top_k": top_k, **rules}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    ctx = RunContext(config=config, models=models, class_names=tuple(map(str, range(k))), device=None)
    check = ScoresCheck(config.check("scores"), ctx)
    check.update(Step(index=0, offset=0, inputs=None, labels=torch.from_numpy(y),
                      scores={"baseline": torch.from_numpy(zb), "candidate": torch.from_numpy(zc)}))
    result = check.compute()
    out, methods = {}, {}
    for f in result.findings:
        metric = "top_k_accuracy" if f.metric.startswith("top_") else f.metric
        out[metric] = f.interval
    for key, m in result.details["metrics"].items():
        methods["top_k_accuracy" if key.startswith("top_") else key] = m["statistic"]
    return out, methods


def delong_vs_bootstrap(k: int, n: int = 3000, resamples: int = 1000) -> tuple[float, float]:
    y, zb, zc = population(k, size=n, seed=7)
    ob, oc = (log_odds_of(torch.from_numpy(z), "logits", role="x").astype(np.float64) for z in (zb, zc))
    _, _, se = sm.delong_paired(ob, oc, y)
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        diffs.append(sm.roc_auc(oc[i], y[i]).value - sm.roc_auc(ob[i], y[i]).value)
    return se, float(np.std(diffs, ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sizes", default="200,1000,5000", help="evaluation set sizes, comma-separated")
    parser.add_argument("--temperatures", default="0.9,1.6",
                        help="the candidate's logit temperatures (0.9: about calibrated, better than the baseline; "
                             "1.6: overconfident, worse)")
    parser.add_argument("--classes", default="2,5")
    parser.add_argument("--metrics", default=",".join(RULES), help="the metrics with a rule, comma-separated")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sets = 60 if args.quick else args.sets
    sizes = (200, 1000) if args.quick else tuple(int(v) for v in args.sizes.split(","))
    top_k = 2
    started = time.process_time()
    print(f"{sets} evaluation sets per row, 95% two-sided intervals of the "
          "compared quantity (positive = the candidate worse)")
    print("| task | T | metric (rule) | statistic | n | true value | coverage | interval above truth (good looks "
          "beyond) | interval below truth (bad looks within) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for k in (int(v) for v in args.classes.split(",")):
        for temperature in (float(v) for v in args.temperatures.split(",")):
            y, zb, zc = population(k, temperature=temperature)
            true = {m: v for m, v in truth(y, zb, zc, top_k=top_k, bins=15).items() if m in args.metrics.split(",")}
            rng = np.random.default_rng(100 + k)
            for n in sizes:
                hits = {m: [0, 0, 0] for m in true}
                methods: dict[str, str] = {}
                for s in range(sets):
                    i = rng.integers(0, y.size, n)
                    intervals, used = judge_set(y[i], zb[i], zc[i], resamples=args.resamples, seed=s, top_k=top_k,
                                               metrics=tuple(args.metrics.split(",")))
                    methods.update(used)
                    for metric, (lo, hi) in intervals.items():
                        t = true[metric]
                        hits[metric][0 if lo <= t <= hi else (1 if t < lo else 2)] += 1
                for metric, (cover, above, below) in hits.items():
                    name = f"top_{top_k}_accuracy" if metric == "top_k_accuracy" else metric
                    task = "binary" if k == 2 else f"{k} classes"
                    print(f"| {task} | {temperature:g} | {name} ({RULE_OF[metric]}) | {methods[metric]} | {n} | "
                          f"{true[metric]:+.4f} | {cover / sets:.1%} | {above / sets:.1%} | {below / sets:.1%} |",
                          flush=True)
    print()
    print("| task | n | DeLong se of the AUC difference | paired bootstrap sd (1,000 resamples) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for k in (2, 4) if "roc_auc" in args.metrics.split(",") else ():
        se, boot = delong_vs_bootstrap(k)
        print(f"| {'binary' if k == 2 else f'{k} classes'} | 3000 | {se:.5f} | {boot:.5f} | {se / boot:.3f} |")
    print(f"\nCPU time: {time.process_time() - started:.0f} s")


if __name__ == "__main__":
    main()
