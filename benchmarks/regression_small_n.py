"""The regression check's wrong claims at the truth, per side, with and without its small-sample expansion, on the
same evaluation sets (a paired before / after).

The population, the truth and the rules are benchmarks/regression_coverage.py's (a skewed target, both models'
errors sharing a heavy-tailed t part, the candidate noisier). Each set of n samples is bootstrapped once by the
real check (`RegressionCheck._replicates`, 2,000 resamples, seeded by the set's number), and every rule's evidence
at the true value (`RegressionCheck._evidence`, the check's own code) is read twice: with the expansion
(`regression.EXPANDED = True`, the check now) and without (the check before). At the truth both claims are errors:
"beyond" (p beyond < alpha) and "within" (p within < alpha), each at most alpha = 2.5% if the claim holds at its
confidence. Only this threshold is judged (the power columns need benchmarks/regression_coverage.py), so it costs
a third of that script per set.

    python benchmarks/regression_small_n.py [--sets 1000] [--sizes 50 100 200] [--df 5] [--seed 0]

Monte Carlo standard error of a 2.5% rate: 0.5 points at 1,000 sets, 0.35 at 2,000.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import regression_coverage as cov  # noqa: E402

from gate import regression_stats as rs  # noqa: E402
from gate.checks import regression as regression_check  # noqa: E402
from gate.checks.regression import RegressionCheck  # noqa: E402
from gate.verdict import DecisionSettings  # noqa: E402

RULES = [rule for rule in cov.RULES if rule[0] != "worse_rate"]
ALPHA = cov.ALPHA


def context(y, pb, pc, settings: DecisionSettings) -> dict:
    """What the check's compute() builds before judging its rules: figures, influences, the bootstrap."""
    y, pb, pc = (a.astype(np.float64) for a in (y, pb, pc))
    preds = {"baseline": pb, "candidate": pc}
    fig = {role: rs.figures(y, p) for role, p in preds.items()}
    ctx = {"fig": fig, "infl": {role: rs.influences(y, p, fig[role]) for role, p in preds.items()}}
    boot = RegressionCheck._replicates(y, preds, fig, settings)          # noqa: SLF001
    ctx["boot"], ctx["reps"] = boot, boot["reps"]
    return ctx


def claims(ctx: dict, truth: dict, settings: DecisionSettings, *, expanded: bool) -> dict:
    """(claims beyond, claims within) of every rule with its threshold at the truth."""
    regression_check.EXPANDED = expanded
    out = {}
    for metric, rule in RULES:
        ev = RegressionCheck._evidence(rule, truth[(metric, rule)], 0, metric, ctx, settings)   # noqa: SLF001
        out[(metric, rule)] = (ev.p_beyond < ALPHA, ev.p_within < ALPHA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--df", type=float, default=5.0, help="the errors' shared t part (4: infinite fourth moment)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the evaluation-set draws")
    args = ap.parse_args()
    started = time.process_time()
    y, pb, pc = cov.population(df=args.df)
    truth = cov.truth(y, pb, pc)
    print(f"{args.sets} sets per row; errors' shared part t({args.df:g}); seed {args.seed}; wrong claims at the "
          f"truth, beyond / within, alpha {ALPHA:.1%} each")
    print("| rule | n | not expanded (before) | expanded (now) | mean factor |")
    print("|---|--:|--:|--:|--:|")
    for n in args.sizes:
        rng = np.random.default_rng(n + 7919 * args.seed + 104_729)
        before = {k: [] for k in RULES}
        after = {k: [] for k in RULES}
        factor = {k: [] for k in RULES}
        for i in range(args.sets):
            idx = np.sort(rng.integers(0, len(y), n))
            settings = DecisionSettings(mode="non-inferiority", confidence=0.95, inconclusive="warn",
                                        resamples=2000, multiple_comparisons="holm", seed=i)
            ctx = context(y[idx], pb[idx], pc[idx], settings)
            for key, v in claims(ctx, truth, settings, expanded=False).items():
                before[key].append(v)
            for key, v in claims(ctx, truth, settings, expanded=True).items():
                after[key].append(v)
            for metric, rule in RULES:
                b = float(ctx["fig"]["baseline"].get(metric)[0])
                c = float(ctx["fig"]["candidate"].get(metric)[0])
                u = regression_check.compared_influence(rule, b, c, ctx["infl"]["baseline"][metric][:, 0],
                                                        ctx["infl"]["candidate"][metric][:, 0])
                factor[(metric, rule)].append(rs.small_sample_expansion(u, confidence=0.95))
        for key in RULES:
            b, a = np.mean(before[key], axis=0), np.mean(after[key], axis=0)
            print(f"| {key[0]} {key[1]} | {n} | {b[0]:.1%} / {b[1]:.1%} | {a[0]:.1%} / {a[1]:.1%} | "
                  f"{np.mean(factor[key]):.3f} |", flush=True)
    regression_check.EXPANDED = True
    print(f"CPU {time.process_time() - started:.0f} s")


if __name__ == "__main__":
    main()
