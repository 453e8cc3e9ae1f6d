"""Error rates of the regression check's rules, both directions, by simulation against a known truth.

A population of 400,000 samples (a skewed target, two models whose errors share a heavy-tailed part, the candidate
noisier) is drawn once, so every metric's true value, and every true difference between the models, is its value
on the whole population. Each evaluation set is n samples drawn from it; the real RegressionCheck (the code the
gate runs, default 2,000 resamples) judges it with a rule on every metric, three times:

- threshold AT the truth: "claims beyond" (p_beyond < alpha) and "claims within" (p_within < alpha) are both
  errors; each should happen at most alpha = 2.5% of the time. Also the interval's misses on each side;
- threshold 2.5 sd ABOVE the truth (truly within): how often it is called within (power), and beyond (an error);
- threshold 2.5 sd BELOW the truth (truly beyond): how often it is called beyond (power), and within (an error);
(sd: the spread of the estimate over the sets). Plus a candidate as good as the baseline (the same error
distribution) under the default mode with the default rules: how often the check fails (goal <= 2.5%).

    python benchmarks/regression_coverage.py [--sets 400] [--sizes 100 1000] [--interval hull] [--percentile]
        [--no-expansion] [--as-good-only] [--df 5] [--seed 0]

`--interval` picks what decides the MAE / RMSE / R^2 rules: `hull` (the default, the check's: a claim only when
both BCa and the bootstrap-t make it), `bootstrap-t` alone, or `bca` alone. `--percentile` switches the BCa
correction off (z0 = a = 0: the plain percentile bootstrap; with `--interval bca`) for comparison;
`--no-expansion` drops the small-sample widening (the check before it). Monte Carlo standard error of a 2.5% rate:
0.8 points at 400 sets, 0.5 at 1,000.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate import regression_stats as rs  # noqa: E402
from gate.checks import regression as regression_check  # noqa: E402
from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.regression import RegressionCheck, compared  # noqa: E402
from gate.config import build_config  # noqa: E402

RULES = [("mae", "max_increase"), ("mae", "max_relative_increase"), ("rmse", "max_increase"),
         ("rmse", "max_relative_increase"), ("r2", "max_drop"), ("r2", "min"), ("worse_rate", "max")]
WORSE_BY = 0.5
ALPHA = 0.025


def population(size: int = 400_000, seed: int = 0, *, noise_c: float = 1.6, df: float = 5.0):
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 2.0, size) + 5.0                           # skewed target
    shared = 0.6 * rng.standard_t(df, size)                       # what both models miss alike (heavy-tailed)
    eb = shared + 0.5 * rng.standard_normal(size)
    ec = shared + 0.5 * noise_c * rng.standard_normal(size)
    return (y[:, None].astype(np.float32), (y + eb)[:, None].astype(np.float32),
            (y + ec)[:, None].astype(np.float32))


def truth(y, pb, pc) -> dict[tuple[str, str], float]:
    y, pb, pc = (a.astype(np.float64) for a in (y, pb, pc))
    fb, fc = rs.figures(y, pb), rs.figures(y, pc)
    out = {}
    for metric, rule in RULES:
        if metric == "worse_rate":
            out[(metric, rule)] = float(np.mean(np.abs(pc - y) - np.abs(pb - y) > WORSE_BY))
        else:
            out[(metric, rule)] = float(compared(rule, float(fb.get(metric)[0]), float(fc.get(metric)[0])))
    return out


def judge(y, pb, pc, thresholds: dict[tuple[str, str], float], *, seed: int, mode: str = "non-inferiority",
          defaults: bool = False):
    if defaults:
        options = {}
    else:
        options = {"mae": {"max_relative_increase": None}, "rmse": {"max_relative_increase": None},
                   "worse_by": WORSE_BY}
        for (metric, rule), th in thresholds.items():
            options.setdefault(metric, {})[rule] = float(th)
    config = build_config({"seed": seed, "decision": {"mode": mode},
                           "checks": {"regression": {"enabled": True, **options}}})
    ctx = RunContext(config=config, models={}, class_names=("target",), device=None)
    check = RegressionCheck(config.check("regression"), ctx)
    s = Step(index=0, offset=0, inputs=None, labels=torch.from_numpy(y),
             scores={"baseline": torch.from_numpy(pb), "candidate": torch.from_numpy(pc)},
             preds={"baseline": pb, "candidate": pc})
    s.task = "regression"
    check.update(s)
    return check.compute()


def by_rule(result) -> dict[tuple[str, str], object]:
    return {(f.metric, f.rule): f for f in result.findings}


def estimate(y, pb, pc, key: tuple[str, str]) -> float:
    """The value a rule compares on one evaluation set (what the check reports as the finding's value)."""
    metric, rule = key
    y, pb, pc = (a.astype(np.float64) for a in (y, pb, pc))
    if metric == "worse_rate":
        return float(np.mean(np.abs(pc - y) - np.abs(pb - y) > WORSE_BY))
    return float(compared(rule, float(rs.figures(y, pb).get(metric)[0]), float(rs.figures(y, pc).get(metric)[0])))


class OneBootstrap:
    """The check's `_replicates` with a one-entry memory: the three judgements of one evaluation set (thresholds
    at, above and below the truth) share the seed and the data, so the check would draw the same resamples
    three times; drawing them once gives the same findings (only the thresholds differ) at a third of the cost."""

    def __init__(self) -> None:
        self.original = RegressionCheck._replicates
        self.key: tuple | None = None
        self.value = None

    def __call__(self, y, preds, fig, settings):
        key = (y.tobytes(), preds["baseline"].tobytes(), preds["candidate"].tobytes(), settings.seed,
               settings.resamples)
        if key != self.key:
            self.key, self.value = key, self.original(y, preds, fig, settings)
        return self.value


def simulate(pop, n: int, sets: int, seed: int) -> list[tuple]:
    y, pb, pc = pop
    true = truth(y, pb, pc)
    rng = np.random.default_rng(seed)
    draws = [np.sort(rng.integers(0, len(y), n)) for _ in range(sets)]
    # sd: the spread of the estimate over the sets (from the point values, which need no bootstrap)
    sd = {k: float(np.std([estimate(y[idx], pb[idx], pc[idx], k) for idx in draws], ddof=1)) for k in true}
    shifted_th = {}
    for sign in (+1, -1):
        th = {}
        for (metric, rule), t in true.items():
            # min is a floor (higher is better): "within" means the truth above it, so the shift is the other way
            direction = -sign if rule == "min" else sign
            # (clipped to what the config accepts: an R^2 floor is at most 1, the other thresholds at least 0)
            th[(metric, rule)] = max(t + direction * 2.5 * sd[(metric, rule)], 0.0) if rule != "min" else \
                min(t + direction * 2.5 * sd[(metric, rule)], 1.0)
        shifted_th[sign] = th
    at = {k: [] for k in true}
    shifted = {sign: {k: [] for k in true} for sign in (+1, -1)}
    memo = OneBootstrap()
    RegressionCheck._replicates = staticmethod(memo)          # type: ignore[method-assign]
    try:
        for i, idx in enumerate(draws):
            res = by_rule(judge(y[idx], pb[idx], pc[idx], true, seed=i))
            for key in true:
                f = res[key]
                lo, hi = f.interval
                at[key].append((f.status == "fail", f.status == "pass", hi < true[key], lo > true[key]))
            for sign in (+1, -1):
                res = by_rule(judge(y[idx], pb[idx], pc[idx], shifted_th[sign], seed=i))
                for key in true:
                    shifted[sign][key].append((res[key].status == "fail", res[key].status == "pass"))
    finally:
        RegressionCheck._replicates = staticmethod(memo.original)   # type: ignore[method-assign]
    rows = []
    for key in true:
        a = np.array(at[key])
        w = np.array(shifted[+1][key])
        b = np.array(shifted[-1][key])
        rows.append((f"{key[0]} {key[1]}", n, true[key], a[:, 0].mean(), a[:, 1].mean(), a[:, 2].mean(),
                     a[:, 3].mean(), w[:, 1].mean(), w[:, 0].mean(), b[:, 0].mean(), b[:, 1].mean()))
    return rows


def as_good(n: int, sets: int, seed: int, df: float, *, both: bool = False) -> tuple[float, dict[str, float]] | dict:
    """A candidate whose errors have the baseline's distribution: the default rules, the default mode.

    With `both`, every set is judged with and without the small-sample expansion (one bootstrap for the two):
    {True: (rate, per rule), False: (rate, per rule)}."""
    y, pb, pc = population(size=200_000, seed=seed + 7, noise_c=1.0, df=df)
    rng = np.random.default_rng(seed)
    modes = (True, False) if both else (regression_check.EXPANDED,)
    fails = {m: 0 for m in modes}
    per: dict[bool, dict[str, int]] = {m: {} for m in modes}
    memo = OneBootstrap()
    RegressionCheck._replicates = staticmethod(memo)          # type: ignore[method-assign]
    keep = regression_check.EXPANDED
    try:
        for i in range(sets):
            idx = rng.integers(0, len(y), n)
            for m in modes:
                regression_check.EXPANDED = m
                res = judge(y[idx], pb[idx], pc[idx], {}, seed=i, mode="significant-and-beyond", defaults=True)
                fails[m] += res.status == "fail"
                for f in res.findings:
                    if f.status == "fail":
                        per[m][f"{f.metric} {f.rule}"] = per[m].get(f"{f.metric} {f.rule}", 0) + 1
    finally:
        RegressionCheck._replicates = staticmethod(memo.original)   # type: ignore[method-assign]
        regression_check.EXPANDED = keep
    out = {m: (fails[m] / sets, {k: v / sets for k, v in per[m].items()}) for m in modes}
    return out if both else out[modes[0]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=400)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--interval", choices=("hull", "bootstrap-t", "bca"), default="hull")
    ap.add_argument("--percentile", action="store_true", help="plain percentile bootstrap (no BCa correction)")
    ap.add_argument("--as-good-only", action="store_true",
                    help="only the as-good candidate, each set with and without the expansion (one bootstrap)")
    ap.add_argument("--no-expansion", action="store_true",
                    help="without the small-sample widening (regression.EXPANDED = False: the check before it)")
    ap.add_argument("--quick", action="store_true", help="40 sets, a smoke run")
    ap.add_argument("--seed", type=int, default=0, help="seed of the evaluation-set draws")
    ap.add_argument("--df", type=float, default=5.0,
                    help="degrees of freedom of the errors' shared t part (4: infinite fourth moment)")
    args = ap.parse_args()
    sets = 40 if args.quick else args.sets
    regression_check.STUDENTIZED = {"hull": "hull", "bootstrap-t": "bootstrap-t", "bca": "off"}[args.interval]
    regression_check.EXPANDED = not args.no_expansion
    if args.percentile:
        rs.acceleration = lambda u: np.zeros(np.shape(u)[1:])                   # type: ignore[assignment]
        rs.bias_correction = lambda reps, est: np.zeros(np.shape(reps)[1:])     # type: ignore[assignment]
    started = time.process_time()
    if args.as_good_only:
        for n in args.sizes:
            res = as_good(n, sets, seed=n + 1 + 7919 * args.seed, df=args.df, both=True)
            for m in (False, True):
                rate, per = res[m]
                detail = ", ".join(f"{k} {v:.1%}" for k, v in sorted(per.items())) or "none"
                print(f"as good as the baseline, default rules and mode, n = {n}, {sets} sets, t({args.df:g}), "
                      f"{'expanded' if m else 'not expanded'}: the check fails {rate:.1%} ({detail})", flush=True)
        print(f"CPU {time.process_time() - started:.0f} s")
        return
    pop = population(df=args.df)
    print(f"interval: {args.interval}{' (BCa without correction: percentile)' if args.percentile else ''}"
          f"{'' if regression_check.EXPANDED else ', not expanded'}; {sets} sets per row; alpha {ALPHA:.1%} per side; "
          f"errors' shared part t({args.df:g}); seed {args.seed}")
    print("| rule | n | truth | AT: claims beyond | AT: claims within | CI misses below | CI misses above | "
          "WITHIN (+2.5 sd): called within | WITHIN: called beyond | BEYOND (-2.5 sd): called beyond | "
          "BEYOND: called within |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n in args.sizes:
        for row in simulate(pop, n, sets, seed=n + 7919 * args.seed):
            name, n_, t, *rates = row
            print(f"| {name} | {n_} | {t:.4g} | " + " | ".join(f"{r:.1%}" for r in rates) + " |", flush=True)
    for n in args.sizes:
        rate, per = as_good(n, sets, seed=n + 1 + 7919 * args.seed, df=args.df)
        detail = ", ".join(f"{k} {v:.1%}" for k, v in sorted(per.items())) or "none"
        print(f"as good as the baseline, default rules and mode, n = {n}: the check fails {rate:.1%} ({detail})")
    print(f"CPU {time.process_time() - started:.0f} s")


if __name__ == "__main__":
    main()
