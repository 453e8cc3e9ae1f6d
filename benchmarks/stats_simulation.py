"""Operating characteristics of the gate's decision rules, through the checks' own code.

    python benchmarks/stats_simulation.py --oc        # OC table of every decision.mode (exact, ~1 min)
    python benchmarks/stats_simulation.py --coverage  # exact error rates of the Tango accuracy rule, n 50..10,000
    python benchmarks/stats_simulation.py --gate      # gate-level false-fail rate of the defaults (simulated)
    python benchmarks/stats_simulation.py --f1        # coverage of the macro-F1 bootstrap rule (simulated)
    python benchmarks/stats_simulation.py --class-f1  # coverage of the per-class F1 bootstrap rule (simulated)
    python benchmarks/stats_simulation.py --precision # coverage of the per-class precision delta method
    python benchmarks/stats_simulation.py --score-crossings   # double crossings of Fieller's score test (tiny classes)
    python benchmarks/stats_simulation.py             # all five

--oc and --coverage sum over every (negative flips b, positive flips c) outcome with its multinomial probability
(tails below 1e-12 dropped), deciding each with gate.checks.classification.paired_drop_evidence and
gate.verdict.judge, exactly as AccuracyCheck does. --gate draws evaluation sets of K balanced classes and runs the
real AccuracyCheck, PerClassCheck and FlipsCheck with the default config on them.
"""
from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402
from tabulate import tabulate  # noqa: E402

from gate import stats  # noqa: E402
from gate.checks.base import RunContext  # noqa: E402
from gate.checks.classification import AccuracyCheck, FlipsCheck, PerClassCheck, paired_drop_evidence  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.metrics import PairedCounts  # noqa: E402
from gate.verdict import DecisionSettings, Evidence, judge  # noqa: E402

POLICIES = (
    ("significant-and-beyond (default)", "significant-and-beyond", "warn"),
    ("non-inferiority, inconclusive: warn", "non-inferiority", "warn"),
    ("non-inferiority, inconclusive: fail", "non-inferiority", "fail"),
    ("point", "point", "warn"),
)


def outcome_grid(n: int, *, p10: float, p01: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (b, c) with non-negligible multinomial probability, and that probability."""
    spans = []
    for p in (p10, p01):
        sd = np.sqrt(n * p * (1 - p)) + 1
        spans.append(np.arange(max(0, int(n * p - 10 * sd)), min(n, int(n * p + 10 * sd) + 2) + 1))
    b, c = np.meshgrid(*spans, indexing="ij")
    b, c = b.ravel(), c.ravel()
    keep = b + c <= n
    b, c = b[keep], c[keep]
    pmf = sps.multinomial.pmf(np.stack([b, c, n - b - c], axis=1), n, [p10, p01, max(0.0, 1 - p10 - p01)])
    keep = pmf > 1e-12
    return b[keep], c[keep], pmf[keep]


def oc_row(n: int, *, drop: float, discordance: float, max_drop: float, confidence: float
           ) -> dict[str, tuple[float, float, float]]:
    """policy -> (P(exit 1), P(exit 0 with a warning), P(clean pass)) for the accuracy max_drop rule."""
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    b, c, pmf = outcome_grid(n, p10=p10, p01=p01)
    ev = paired_drop_evidence(b, c, np.full_like(b, n), threshold=max_drop, confidence=confidence)
    out = {}
    for label, mode, inconclusive in POLICIES:
        settings = DecisionSettings(mode=mode, confidence=confidence, inconclusive=inconclusive)
        fail = warn = clean = 0.0
        for i in range(b.size):
            evidence = Evidence(p_beyond=float(ev["beyond"][i]), p_within=float(ev["within"][i]),
                                p_worse=float(ev["worse"][i]), interval=(float(ev["low"][i]), float(ev["high"][i])))
            f = judge(metric="accuracy", rule="max_drop", threshold=max_drop, value=(b[i] - c[i]) / n,
                      settings=settings, evidence=evidence)
            if f.status == "fail":
                fail += pmf[i]
            elif f.status == "warn":
                warn += pmf[i]
            else:
                clean += pmf[i]
        total = fail + warn + clean
        out[label] = (fail / total, warn / total, clean / total)
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main_oc(args: argparse.Namespace) -> None:
    print(f"Operating characteristic of accuracy max_drop {args.max_drop} (exact over every outcome): "
          f"discordance {args.discordance}, confidence {args.confidence} (one-sided tests at "
          f"{stats.one_sided_alpha(args.confidence):g})")
    multiples = (0, 0.5, 1, 1.5, 2, 3)
    for n in args.sizes:
        rows = []
        for k in multiples:
            drop = k * args.max_drop
            res = oc_row(n, drop=drop, discordance=max(args.discordance, drop), max_drop=args.max_drop,
                         confidence=args.confidence)
            for label, _, _ in POLICIES:
                fail, warn, clean = res[label]
                rows.append([n, f"{k:g}x ({drop:g})", label, pct(fail), pct(warn), pct(clean)])
        print()
        print(tabulate(rows, headers=["n", "true drop", "policy", "P(exit 1)", "P(exit 0, warning)",
                                      "P(clean pass)"], tablefmt="github"))


def main_coverage(args: argparse.Namespace) -> None:
    alpha = stats.one_sided_alpha(args.confidence)
    print(f"\nExact error rates of the Tango rule (true drop AT the bound; nominal {alpha:g} each): "
          f"P(claims within) = false pass of a candidate at max_drop, P(claims beyond) = false fail")
    rows = []
    worst = (0.0, 0.0)
    for n in (50, 100, 200, 1000, 10000):
        for psi in (0.0, 0.01, 0.02, 0.04, 0.1):
            for bound in (0.0, 0.005, 0.01, 0.02):
                if bound > psi:
                    continue
                b, c, pmf = outcome_grid(n, p10=(psi + bound) / 2, p01=(psi - bound) / 2)
                beyond, within = stats.paired_difference_p_values(b, c, np.full_like(b, n), bound=bound)
                claim_w, claim_b = float(pmf[within < alpha].sum()), float(pmf[beyond < alpha].sum())
                worst = (max(worst[0], claim_w), max(worst[1], claim_b))
                rows.append([n, psi, bound, pct(claim_w), pct(claim_b)])
    print(tabulate(rows, headers=["n", "discordance", "bound (= true drop)", "P(claims within)",
                                  "P(claims beyond)"], tablefmt="github"))
    print(f"maximum over the grid: P(claims within) {pct(worst[0])}, P(claims beyond) {pct(worst[1])}")
    saved, stats.TANGO_CORRECTION = stats.TANGO_CORRECTION, 0.0       # the same grid without the correction
    try:
        plain = (0.0, None)
        for n in (50, 100, 200, 1000, 10000):
            for psi in (0.01, 0.02, 0.04, 0.1):
                for bound in (0.0, 0.005, 0.01, 0.02):
                    if bound > psi:
                        continue
                    b, c, pmf = outcome_grid(n, p10=(psi + bound) / 2, p01=(psi - bound) / 2)
                    beyond, within = stats.paired_difference_p_values(b, c, np.full_like(b, n), bound=bound)
                    err = max(float(pmf[within < alpha].sum()), float(pmf[beyond < alpha].sum()))
                    plain = max(plain, (err, (n, psi, bound)))
    finally:
        stats.TANGO_CORRECTION = saved
    print(f"without the continuity correction: worst {pct(plain[0])} at (n, discordance, bound) = {plain[1]}")
    print("\nRates (single proportions) truly AT their ceiling, n in {50, 100, 200}, rates 1% to 25%: worst exact "
          "one-sided error of the exact binomial tests (what the gate uses) and of the Wilson interval (what it used)")
    z = float(sps.norm.isf(alpha))
    worst_exact, worst_wilson = (0.0, None), (0.0, None)
    for n in (50, 100, 200):
        x = np.arange(n + 1)
        for rate in (0.01, 0.02, 0.04, 0.1, 0.25):
            pmf = sps.binom.pmf(x, n, rate)
            greater, less = stats.binomial_p_values(x, np.full_like(x, n), bound=rate)
            exact = max(float(pmf[less < alpha].sum()), float(pmf[greater < alpha].sum()))
            p = x / n
            centre = (p + z * z / (2 * n)) / (1 + z * z / n)
            half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
            wilson = max(float(pmf[centre + half < rate].sum()), float(pmf[centre - half > rate].sum()))
            worst_exact = max(worst_exact, (exact, (n, rate)))
            worst_wilson = max(worst_wilson, (wilson, (n, rate)))
    print(f"exact binomial: {pct(worst_exact[0])} (n, rate = {worst_exact[1]}); "
          f"Wilson: {pct(worst_wilson[0])} (n, rate = {worst_wilson[1]})")


def draw_counts(rng: np.random.Generator, n: int, classes: int, *, accuracy: float, discordance: float,
                drop: float) -> PairedCounts:
    """One evaluation set: per sample (baseline right?, candidate right?) from (p11, p10, p01, p00); a wrong
    prediction goes to one of two neighbouring classes, independently for the two models."""
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    p11 = accuracy - p10
    probs = np.maximum(np.array([p11, p10, p01, 1 - p11 - p10 - p01]), 0.0)   # p00 is 0 at the feasible edge
    y = rng.integers(0, classes, n)
    kind = rng.choice(4, size=n, p=probs)
    base_ok = (kind == 0) | (kind == 1)
    cand_ok = (kind == 0) | (kind == 2)
    wrong_b = (y + 1 + rng.integers(0, 2, n)) % classes
    wrong_c = (y + 1 + rng.integers(0, 2, n)) % classes
    counts = PairedCounts(classes)
    counts.update(y, np.where(base_ok, y, wrong_b), np.where(cand_ok, y, wrong_c))
    return counts


def run_checks(counts: PairedCounts, classes: int, config) -> dict[str, str]:
    ctx = RunContext(config=config, models={}, class_names=tuple(f"c{k}" for k in range(classes)), device=None,
                     counts=counts)
    return {cls.name: cls(config.check(cls.name), ctx).compute().status
            for cls in (AccuracyCheck, PerClassCheck, FlipsCheck)}


def main_gate(args: argparse.Namespace) -> None:
    config = build_config({})
    print(f"\nGate-level false-fail rate of the DEFAULT config (mode {config.decision['mode']}) for a candidate as "
          f"good as the baseline: K={args.classes} balanced classes, baseline accuracy {args.accuracy}, "
          f"discordance {args.discordance}, {args.reps} evaluation sets per n, checks accuracy (accuracy, "
          f"macro F1), per_class (recall, precision), flips; {config.decision['bootstrap_resamples']} resamples")
    rows = []
    for i, n in enumerate(args.sizes):
        rng = np.random.default_rng(1000 + i)
        tally = {"accuracy": 0, "per_class": 0, "flips": 0, "gate": 0, "warn": 0}
        for rep in range(args.reps):
            statuses = run_checks(draw_counts(rng, n, args.classes, accuracy=args.accuracy,
                                              discordance=args.discordance, drop=0.0), args.classes, config)
            for name, status in statuses.items():
                tally[name] += status == "fail"
            tally["gate"] += any(s == "fail" for s in statuses.values())
            tally["warn"] += (not any(s == "fail" for s in statuses.values())) and any(
                s == "warn" for s in statuses.values())
        se = np.sqrt(max(tally["gate"], 1) / args.reps * (1 - tally["gate"] / args.reps) / args.reps)
        rows.append([n, pct(tally["accuracy"] / args.reps), pct(tally["per_class"] / args.reps),
                     pct(tally["flips"] / args.reps), f"{pct(tally['gate'] / args.reps)} (MC se {pct(se)})",
                     pct(tally["warn"] / args.reps)])
    print(tabulate(rows, headers=["n", "accuracy fails", "per_class fails", "flips fails", "gate exits 1",
                                  "gate exits 0 with a warning"], tablefmt="github"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oc", action="store_true")
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 10000])
    parser.add_argument("--discordance", type=float, default=0.04)
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--accuracy", type=float, default=0.9)
    parser.add_argument("--reps", type=int, default=300, help="--gate: evaluation sets per n")
    parser.add_argument("--f1", action="store_true", help="coverage of the macro-F1 bootstrap rule (simulated)")
    parser.add_argument("--class-f1", action="store_true",
                        help="coverage of the per-class F1 bootstrap rule (simulated)")
    parser.add_argument("--precision", action="store_true",
                        help="coverage of the per-class precision delta method (simulated)")
    parser.add_argument("--f1-reps", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=2000, help="--f1: bootstrap resamples")
    parser.add_argument("--seed-offset", type=int, default=0, help="--precision: another seed")
    parser.add_argument("--class-f1-method", choices=("default", "percentile", "percentile+bootstrap-t"),
                        default="default", help="--class-f1: decide by the percentile bootstrap alone (the rule before "
                                                "the bootstrap-t and the score test), or without the score test")
    parser.add_argument("--class-rule", choices=("f1", "precision-relative", "recall-relative", "f1-min"),
                        default="f1",
                        help="--class-f1: the per-class bootstrap rule simulated: F1 max_drop 0.1 (default), or "
                             "precision / recall max_relative_drop 0.1 (--class-f1-drop: the true relative drop), or "
                             "F1 min at every class's true candidate F1 (--class-f1-drop: the candidate's true accuracy "
                             "drop; both claims are wrong, and 'beyond' is unadjusted)")
    parser.add_argument("--class-f1-oracle", action="store_true",
                        help="the power of the best test on the per-class F1 drop's estimate alone at 2.5%%: its "
                             "2.5%% quantile at the bound, simulated (1,500 sets), and how often a no-drop class is "
                             "below it")
    parser.add_argument("--score-crossings", action="store_true",
                        help="how often a relative drop's score test crosses its level twice on classes of a few "
                             "samples, and whether class_score_interval misses an unclaimed bound (about 15 minutes)")
    parser.add_argument("--class-f1-drop", type=float, nargs="+", default=[0.1],
                        help="--class-f1: the TRUE per-class F1 drops to simulate (0.1, the bound, by default: its "
                             "'claims within' is the false pass; 0: a class with no drop, 'claims within' is power)")
    args = parser.parse_args(argv)
    if not (args.oc or args.coverage or args.gate or args.f1 or args.precision or args.class_f1
            or args.class_f1_oracle or args.score_crossings):
        args.oc = args.coverage = args.gate = args.f1 = args.precision = args.class_f1 = True
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.oc:
        main_oc(args)
    if args.coverage:
        main_coverage(args)
    if args.gate:
        main_gate(args)
    if args.f1:
        main_f1(args)
    if args.precision:
        main_precision(args)
    if args.class_f1:
        main_class_f1(args)
    if args.class_f1_oracle:
        main_class_f1_oracle(args)
    if args.score_crossings:
        main_score_crossings(args)
    print(f"\nelapsed: {time.perf_counter() - started:.1f} s")



# ---------------------------------------------------------------------------------------------- macro F1


def cell_probabilities(classes: int, *, accuracy: float, p10: float, p01: float):
    """Population (y, pb, pc, probability) of draw_counts' model: wrong predictions on the two next classes."""
    p11, p00 = accuracy - p10, 1 - accuracy - p01
    ys, pbs, pcs, probs = [], [], [], []
    for y in range(classes):
        wrong = [(y + 1) % classes, (y + 2) % classes]
        for prob, pairs in ((p11, [(y, y)]), (p10, [(y, w) for w in wrong]), (p01, [(w, y) for w in wrong]),
                            (p00, [(wb, wc) for wb in wrong for wc in wrong])):
            for pb, pc in pairs:
                ys.append(y), pbs.append(pb), pcs.append(pc), probs.append(prob / len(pairs) / classes)
    return np.array(ys), np.array(pbs), np.array(pcs), np.array(probs)


def true_drop(metric: str, classes: int, *, accuracy: float, p10: float, p01: float) -> float:
    """The baseline's figure minus the candidate's on the population: `macro_f1`, or class 0's `precision` / `f1`
    (every class has the same, by symmetry)."""
    from gate.metrics import Cells, model_metrics

    y, pb, pc, probs = cell_probabilities(classes, accuracy=accuracy, p10=p10, p01=p01)
    cells = Cells(y=y, pb=pb, pc=pc, counts=probs, num_classes=classes)
    w = probs[None, :]
    base, cand = model_metrics(cells, pb, w)[metric], model_metrics(cells, pc, w)[metric]
    return float(base[0] - cand[0]) if base.ndim == 1 else float(base[0, 0] - cand[0, 0])


def main_f1(args: argparse.Namespace) -> None:
    """P(claims within) and P(claims beyond) of the macro-F1 max_drop rule when the TRUE macro-F1 drop is exactly
    max_drop (0.02 by default), through AccuracyCheck with the default config."""
    from scipy.optimize import brentq

    bound = 0.02
    config = build_config({"checks": {"accuracy": {"accuracy": {"max_drop": None}, "macro_f1": {"max_drop": bound}}},
                           "decision": {"bootstrap_resamples": args.resamples}})
    print(f"\nMacro-F1 max_drop {bound} by the paired bootstrap ({args.resamples} resamples), true macro-F1 drop "
          f"exactly {bound}: K={args.classes}, baseline accuracy {args.accuracy}, {args.f1_reps} evaluation sets "
          f"per cell; nominal 2.5% each")
    rows = []
    for psi in (0.04, 0.1):
        drop = brentq(lambda d: true_drop("macro_f1", args.classes, accuracy=args.accuracy, p10=(psi + d) / 2,
                                                   p01=(psi - d) / 2) - bound, 0.0, psi)
        for i, n in enumerate(args.sizes):
            rng = np.random.default_rng(5000 + i)
            within = beyond = 0
            for _ in range(args.f1_reps):
                counts = draw_counts(rng, n, args.classes, accuracy=args.accuracy, discordance=psi, drop=drop)
                ctx = RunContext(config=config, models={}, class_names=tuple(map(str, range(args.classes))),
                                 device=None, counts=counts)
                f = AccuracyCheck(config.check("accuracy"), ctx).compute().findings[0]
                within += f.status == "pass"
                beyond += f.p_value is not None and f.p_value < 0.025     # claims beyond (the p column)
            rows.append([n, psi, f"{drop:.4f}", pct(within / args.f1_reps), pct(beyond / args.f1_reps)])
    print(tabulate(rows, headers=["n", "discordance", "accuracy drop giving macro-F1 drop 0.02",
                                  "P(claims within)", "P(claims beyond)"], tablefmt="github"))


# --------------------------------------------------------------------------------------- per-class precision


def main_precision(args: argparse.Namespace) -> None:
    """Per-class precision max_drop 0.1 by the delta method, TRUE precision drop of every class exactly 0.1:
    share of (evaluation set, class) pairs claimed within / beyond, unadjusted (one class at a time)."""
    from scipy.optimize import brentq

    from gate.metrics import class_counts, point_metrics, precision_correction, precision_drop_se

    bound = 0.1
    print(f"\nPer-class precision max_drop {bound} (delta method), true precision drop of every class exactly "
          f"{bound}: K={args.classes}, baseline accuracy {args.accuracy}, {args.f1_reps} sets per cell; each claim "
          f"nominal 2.5%, share of (set, class) pairs")
    rows = []
    for psi in (0.12, 0.2, 0.28):
        drop = brentq(lambda d: true_drop("precision", args.classes, accuracy=args.accuracy, p10=(psi + d) / 2,
                                                    p01=(psi - d) / 2) - bound, 0.0, psi)
        for i, n in enumerate(args.sizes):
            rng = np.random.default_rng(args.seed_offset + 7000 + i)
            within = beyond = total = wald = 0
            for _ in range(args.f1_reps):
                counts = draw_counts(rng, n, args.classes, accuracy=args.accuracy, discordance=psi, drop=drop)
                cells = counts.cells()
                cc = class_counts(cells)
                pm = point_metrics(counts)
                est = pm["baseline"]["precision"] - pm["candidate"]["precision"]
                p_beyond, p_within = stats.ratio_difference_p_values(
                    est, precision_drop_se(cells, cc, bound=bound), bound=bound, correction=precision_correction(cc))
                _, wald_within = stats.ratio_difference_p_values(est, precision_drop_se(cells, cc), bound=bound)
                ok = ~np.isnan(p_beyond)
                wald += int(np.sum(wald_within[ok] < 0.025))
                within += int(np.sum(p_within[ok] < 0.025))
                beyond += int(np.sum(p_beyond[ok] < 0.025))
                total += int(ok.sum())
            rows.append([n, n // args.classes, psi, f"{drop:.4f}", pct(within / total), pct(beyond / total),
                         pct(wald / total)])
    print(tabulate(rows, headers=["n", "samples per class", "discordance", "accuracy drop", "P(claims within)",
                                  "P(claims beyond)", "plain Wald: P(claims within)"], tablefmt="github"))



# ------------------------------------------------------------------------------------------- per-class F1


def true_class_value(rule: str, classes: int, *, accuracy: float, p10: float, p01: float) -> float:
    """Class 0's true compared value of a --class-rule: its F1 drop, or its precision / recall relative drop."""
    if rule == "f1":
        return true_drop("f1", classes, accuracy=accuracy, p10=p10, p01=p01)
    from gate.metrics import Cells, model_metrics

    metric = rule.split("-")[0]
    y, pb, pc, probs = cell_probabilities(classes, accuracy=accuracy, p10=p10, p01=p01)
    cells = Cells(y=y, pb=pb, pc=pc, counts=probs, num_classes=classes)
    base = float(model_metrics(cells, pb, probs[None, :])[metric][0, 0])
    return true_drop(metric, classes, accuracy=accuracy, p10=p10, p01=p01) / base


def main_class_f1(args: argparse.Namespace) -> None:
    """A per-class bootstrap rule (F1 max_drop 0.1, or with --class-rule precision / recall max_relative_drop 0.1),
    TRUE value of every class `--class-f1-drop` (0.1, the bound, by default), through PerClassCheck with the
    default decision: the share of (evaluation set, class) pairs claimed within (the finding passes: a bad class
    looks fine at the bound, power at drop 0) and beyond (its Holm-adjusted p below 2.5%)."""
    from scipy.optimize import brentq

    from gate.checks import classification
    from gate.checks.classification import PerClassCheck

    classification.STUDENTIZED = "off" if args.class_f1_method == "percentile" else "hull"
    classification.SCORE = args.class_f1_method == "default"
    if args.class_rule == "f1-min":
        main_class_f1_min(args)
        return
    bound = 0.1
    metric = args.class_rule.split("-")[0]
    rule = "max_drop" if args.class_rule == "f1" else "max_relative_drop"
    checks = {"recall": {}, "precision": {}, "f1": {}}
    checks[metric] = {rule: bound}
    config = build_config({"checks": {"per_class": checks}, "decision": {"bootstrap_resamples": args.resamples}})
    print(f"\nPer-class {metric} {rule} {bound} by the paired bootstrap ({args.resamples} resamples; "
          f"{args.class_f1_method}), true value of every class {', '.join(map(str, args.class_f1_drop))}: "
          f"K={args.classes}, baseline accuracy {args.accuracy}, {args.f1_reps} sets per cell; nominal 2.5% each at "
          f"the bound, share of (set, class) pairs")
    names = tuple(map(str, range(args.classes)))
    rows = []
    for f1_drop in args.class_f1_drop:
        for psi in (0.12, 0.2):
            drop = 0.0 if f1_drop == 0 else brentq(
                lambda d: true_class_value(args.class_rule, args.classes, accuracy=args.accuracy, p10=(psi + d) / 2,
                                           p01=(psi - d) / 2) - f1_drop, 0.0, psi)
            for i, n in enumerate(args.sizes):
                rng = np.random.default_rng(args.seed_offset + 9000 + i)
                within = beyond = total = 0
                for _ in range(args.f1_reps):
                    counts = draw_counts(rng, n, args.classes, accuracy=args.accuracy, discordance=psi, drop=drop)
                    ctx = RunContext(config=config, models={}, class_names=names, device=None, counts=counts)
                    for f in PerClassCheck(config.check("per_class"), ctx).compute().findings:
                        if not f.metric.startswith(f"{metric}[") or f.rule != rule:
                            continue
                        total += 1
                        within += f.status == "pass"
                        beyond += f.p_value is not None and f.p_value < 0.025
                rows.append([f1_drop, n, n // args.classes, psi, f"{drop:.4f}", pct(within / total),
                             pct(beyond / total)])
    print(tabulate(rows, headers=[f"true {metric} {rule}", "n", "samples per class", "discordance", "accuracy drop",
                                  "P(claims within)", "P(claims beyond)"], tablefmt="github"))


def true_class_f1(classes: int, *, accuracy: float, p10: float, p01: float) -> float:
    """Class 0's true candidate F1 (every class has the same, by symmetry)."""
    from gate.metrics import Cells, model_metrics

    y, pb, pc, probs = cell_probabilities(classes, accuracy=accuracy, p10=p10, p01=p01)
    cells = Cells(y=y, pb=pb, pc=pc, counts=probs, num_classes=classes)
    return float(model_metrics(cells, pc, probs[None, :])["f1"][0, 0])


def main_class_f1_min(args: argparse.Namespace) -> None:
    """Per-class F1 `min` at its bound: the threshold is every class's TRUE candidate F1 (the candidate's accuracy
    `--class-f1-drop` below the baseline's, discordance 0.2), so "within" (the finding passes) and "beyond" (its
    p_beyond below 2.5%, unadjusted: decision.multiple_comparisons none) are both wrong claims, each nominal 2.5%;
    share of (evaluation set, class) pairs, through PerClassCheck."""
    from gate.checks import classification
    from gate.checks.classification import PerClassCheck

    classification.STUDENTIZED = "off" if args.class_f1_method == "percentile" else "hull"
    classification.SCORE = args.class_f1_method == "default"
    print(f"\nPer-class F1 min at every class's true candidate F1, by the paired bootstrap ({args.resamples} "
          f"resamples; {args.class_f1_method}): K={args.classes}, baseline accuracy {args.accuracy}, {args.f1_reps} "
          f"sets per cell; nominal 2.5% each, share of (set, class) pairs, unadjusted")
    names = tuple(map(str, range(args.classes)))
    rows = []
    for drop in args.class_f1_drop:
        for psi in (0.2,):                              # a `min` sees the candidate alone: psi does not matter
            p10, p01 = (psi + drop) / 2, (psi - drop) / 2
            bound = true_class_f1(args.classes, accuracy=args.accuracy, p10=p10, p01=p01)
            config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, "f1": {"min": bound}}},
                                   "decision": {"bootstrap_resamples": args.resamples,
                                                "multiple_comparisons": "none"}})
            for i, n in enumerate(args.sizes):
                rng = np.random.default_rng(args.seed_offset + 9500 + i)
                within = beyond = total = 0
                started = time.perf_counter()
                for _ in range(args.f1_reps):
                    counts = draw_counts(rng, n, args.classes, accuracy=args.accuracy, discordance=psi, drop=drop)
                    ctx = RunContext(config=config, models={}, class_names=names, device=None, counts=counts)
                    for f in PerClassCheck(config.check("per_class"), ctx).compute().findings:
                        if not f.metric.startswith("f1[") or f.rule != "min":
                            continue
                        total += 1
                        within += f.status == "pass"
                        beyond += f.p_value is not None and f.p_value < 0.025
                rows.append([drop, n, n // args.classes, psi, f"{bound:.4f}", pct(within / total),
                             pct(beyond / total), f"{time.perf_counter() - started:.0f}"])
                print(rows[-1], flush=True)
    print(tabulate(rows, headers=["accuracy drop", "n", "samples per class", "discordance", "threshold (true F1)",
                                  "P(claims within)", "P(claims beyond)", "s"], tablefmt="github"))


def main_score_crossings(args: argparse.Namespace, *, seeds: int = 3, classes: int = 6000, points: int = 1025) -> None:
    """How often the score test of a relative drop crosses its level more than once, and whether
    metrics.class_score_interval misses an unclaimed bound: random classes of a few samples (Poisson pattern counts
    of mean 0.1-3, plus 0-2 of code 7), each end's path scanned at `points` points, against the interval."""
    from gate import metrics

    alpha = 0.025 - stats.tolerance(0.025)
    rows = []
    for seed in range(seeds):
        rng = np.random.default_rng(10 + seed)
        patterns = rng.poisson(rng.choice([0.1, 0.3, 0.7, 1.5, 3.0], size=(7, classes))).astype(np.float64)
        patterns[6] += rng.integers(0, 3, classes)
        for metric in ("precision", "recall", "f1"):
            rule = "max_relative_drop"
            value = metrics.class_rule_influence(metric, rule, patterns)[0]
            ok = np.isfinite(value)
            v = np.where(ok, value, 0.0)
            low, high = metrics.class_score_interval(metric, rule, patterns, alpha=alpha)
            q_v = 1.0 / (1.0 - np.minimum(v, 1.0 - 1e-12))
            for side in ("high", "low"):
                ts = np.linspace(0.0, 1.0, points)
                bounds = [v + t * (1.0 - v) if side == "high" else 1.0 - 1.0 / (q_v * (1e-12 / q_v) ** t) for t in ts]
                tail = sps.norm.cdf if side == "high" else sps.norm.sf
                unclaimed = np.stack([~(tail(metrics.class_score_test(metric, rule, patterns, bound=b)) < alpha)
                                      for b in bounds])
                unclaimed[0] = True
                changes = np.sum(unclaimed[1:] != unclaimed[:-1], axis=0)
                outermost = np.stack(bounds)[points - 1 - np.argmax(unclaimed[::-1], axis=0), np.arange(classes)]
                got = high if side == "high" else low
                missed = (ok & (outermost > got + 1e-9) if side == "high" else
                          ok & np.isfinite(got) & (outermost < got - 1e-9 * (1 + np.abs(got))))
                rows.append([seed, metric, side, int(ok.sum()), int(changes[ok].max()), int((ok & (changes > 1)).sum()),
                             int((ok & (changes > 2)).sum()), int(missed.sum())])
                print(rows[-1], flush=True)
    print(tabulate(rows, headers=["seed", "metric", "end", "classes", "most crossings", "classes crossing twice",
                                  "more than twice", "unclaimed beyond the interval"], tablefmt="github"))


def main_class_f1_oracle(args: argparse.Namespace, sets: int = 1500) -> None:
    """What no test on the per-class F1 drop's estimate can beat: its 2.5% quantile when the true drop is the bound
    (0.1), simulated, and the share of no-drop classes below it (the power of the test that knew the null)."""
    from scipy.optimize import brentq

    from gate.metrics import point_metrics

    print(f"\nPer-class F1 max_drop 0.1: power of the oracle test (the estimate below its simulated 2.5% quantile "
          f"at the bound) for a class with no drop, {sets} sets each, K={args.classes}")
    rows = []
    for psi in (0.12, 0.2):
        at_bound = brentq(lambda d: true_drop("f1", args.classes, accuracy=args.accuracy, p10=(psi + d) / 2,
                                              p01=(psi - d) / 2) - 0.1, 0.0, psi)
        for n in args.sizes:
            est = {}
            for drop in (at_bound, 0.0):
                rng = np.random.default_rng(1)
                parts = []
                for _ in range(sets):
                    pm = point_metrics(draw_counts(rng, n, args.classes, accuracy=args.accuracy, discordance=psi,
                                                   drop=drop))
                    parts.append(pm["baseline"]["f1"] - pm["candidate"]["f1"])
                est[drop] = np.concatenate(parts)
            q = float(np.quantile(est[at_bound], 0.025))
            rows.append([n, psi, f"{q:.4f}", pct(float(np.mean(est[0.0] < q)))])
    print(tabulate(rows, headers=["n", "discordance", "2.5% quantile at the bound", "oracle power (no drop)"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
