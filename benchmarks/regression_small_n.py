"""The regression check's wrong claims at the truth, per side, before and after a change of its method, on the
same evaluation sets (a paired before / after): by default without and with the R^2 rules' Fieller log-ratio
member (`--before no-fieller`), or without and with the small-sample expansion (`--before unexpanded`).

The population, the truth and the rules are benchmarks/regression_coverage.py's (a skewed target, both models'
errors sharing a heavy-tailed t part, the candidate noisier). Each set of n samples is bootstrapped once by the
real check (`RegressionCheck._replicates`, 2,000 resamples, seeded by the set's number), and every rule's evidence
at the true value (`RegressionCheck._evidence`, the check's own code) is read twice: as the check is now and as it
was (`regression.FIELLER = False`: the hull of BCa and the bootstrap-t alone; or `regression.EXPANDED = False`
as well, the check before the expansion, with `--before unexpanded`). At the truth both claims are errors:
"beyond" (p beyond < alpha) and "within" (p within < alpha), each at most alpha = 2.5% if the claim holds at its
confidence. The thresholds 2.5 sd of the estimate either side of the truth give the power (the right claim) and
the wrong claim there, as in benchmarks/regression_coverage.py; one bootstrap serves all of them, before and after.
The as-good candidate's fail rate needs benchmarks/regression_coverage.py.

    python benchmarks/regression_small_n.py [--sets 1000] [--sizes 50 100 200] [--df 5] [--seed 0]
        [--before no-fieller|unexpanded]

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

#: benchmarks/regression_coverage.py's rules (less the worse rate, an exact test) and R^2's relative drop
RULES = [rule for rule in cov.RULES if rule[0] != "worse_rate"] + [("r2", "max_relative_drop")]
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


def claims(ctx: dict, thresholds: dict, settings: DecisionSettings, *, now: bool, before: str) -> dict:
    """(claims beyond, claims within) of every rule at the given thresholds, as the check is now or was before."""
    regression_check.EXPANDED = now or before != "unexpanded"
    regression_check.FIELLER = now
    out = {}
    for metric, rule in RULES:
        ev = RegressionCheck._evidence(rule, thresholds[(metric, rule)], 0, metric, ctx, settings)  # noqa: SLF001
        out[(metric, rule)] = (ev.p_beyond < ALPHA, ev.p_within < ALPHA)
    return out


def shifted(truth: dict, sd: dict, sign: int) -> dict:
    """Thresholds 2.5 sd of the estimate from the truth: sign +1 on the good side (truly within), -1 the bad."""
    out = {}
    for (metric, rule), t in truth.items():
        direction = -sign if rule == "min" else sign          # a floor: "within" means the truth above it
        th = t + direction * 2.5 * sd[(metric, rule)]
        out[(metric, rule)] = min(th, 1.0) if rule == "min" else max(th, 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--df", type=float, default=5.0, help="the errors' shared t part (4: infinite fourth moment)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the evaluation-set draws")
    ap.add_argument("--before", choices=("no-fieller", "unexpanded"), default="no-fieller",
                    help="the check before: without the R^2 Fieller member, or also without the expansion")
    args = ap.parse_args()
    # only the claims are read here: the Fieller member's interval (a bisection for the report) is not needed
    RegressionCheck._fieller_interval = staticmethod(lambda *a, **k: (-np.inf, np.inf))  # noqa: SLF001
    started = time.process_time()
    y, pb, pc = cov.population(df=args.df)
    truth = {k: v for k, v in cov.truth(y, pb, pc).items() if k in RULES}
    y64, pb64, pc64 = (a.astype(np.float64) for a in (y, pb, pc))
    r2_b, r2_c = float(rs.figures(y64, pb64).r2[0]), float(rs.figures(y64, pc64).r2[0])
    truth[("r2", "max_relative_drop")] = float(regression_check.compared("max_relative_drop", r2_b, r2_c))
    print(f"{args.sets} sets per row; errors' shared part t({args.df:g}); seed {args.seed}; alpha {ALPHA:.1%} per "
          f"claim; each cell before ({args.before}) -> now")
    print("| rule | n | at the truth: claims beyond | at the truth: claims within | truly within (+2.5 sd): "
          "called within | truly beyond (-2.5 sd): called beyond | wrong claim 2.5 sd away | mean factor |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for n in args.sizes:
        rng = np.random.default_rng(n + 7919 * args.seed + 104_729)
        draws = [np.sort(rng.integers(0, len(y), n)) for _ in range(args.sets)]
        sd = {k: float(np.std([cov.estimate(y[i], pb[i], pc[i], k) for i in draws], ddof=1)) for k in RULES}
        cases = {"at": truth, "within": shifted(truth, sd, +1), "beyond": shifted(truth, sd, -1)}
        tally = {(case, exp): {k: [] for k in RULES} for case in cases for exp in (False, True)}
        factor = {k: [] for k in RULES}
        for i, idx in enumerate(draws):
            settings = DecisionSettings(mode="non-inferiority", confidence=0.95, inconclusive="warn",
                                        resamples=2000, multiple_comparisons="holm", seed=i)
            ctx = context(y[idx], pb[idx], pc[idx], settings)
            for case, th in cases.items():
                for exp in (False, True):
                    for key, v in claims(ctx, th, settings, now=exp, before=args.before).items():
                        tally[(case, exp)][key].append(v)
            for metric, rule in RULES:
                b = float(ctx["fig"]["baseline"].get(metric)[0])
                c = float(ctx["fig"]["candidate"].get(metric)[0])
                u = regression_check.compared_influence(rule, b, c, ctx["infl"]["baseline"][metric][:, 0],
                                                        ctx["infl"]["candidate"][metric][:, 0])
                factor[(metric, rule)].append(rs.small_sample_expansion(u, confidence=0.95))
        for key in RULES:
            r = {ce: np.mean(tally[ce][key], axis=0) for ce in tally}
            cell = lambda case, j: f"{r[(case, False)][j]:.1%} -> {r[(case, True)][j]:.1%}"  # noqa: E731
            wrong = f"{r[('within', False)][0] + r[('beyond', False)][1]:.1%} -> " \
                    f"{r[('within', True)][0] + r[('beyond', True)][1]:.1%}"
            print(f"| {key[0]} {key[1]} | {n} | {cell('at', 0)} | {cell('at', 1)} | {cell('within', 1)} | "
                  f"{cell('beyond', 0)} | {wrong} | {np.mean(factor[key]):.3f} |", flush=True)
    regression_check.EXPANDED, regression_check.FIELLER = True, True
    print(f"CPU {time.process_time() - started:.0f} s")


if __name__ == "__main__":
    main()
