"""Simulate the gate's decision rules on paired K-class predictions: how often they fail a good candidate,
catch a bad one, or cannot decide, at evaluation-set sizes from 200 to 10,000.

    python benchmarks/stats_simulation.py            # the table in docs/statistics.md (~35 s on 2 cores)
    python benchmarks/stats_simulation.py --quick    # smoke run

Each repetition draws a fresh evaluation set as counts over (label, baseline prediction, candidate prediction)
cells, exactly the state the gate keeps, and decides it with the gate's own code: gate.metrics for the metrics, gate.stats for the bootstrap and
Holm, and gate.verdict.judge for every decision, exactly as the checks call it.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

# The bootstrap's matrices are small (resamples x cells x classes): multi-threaded BLAS only adds overhead, and on
# a shared 2-core machine it was 50x slower. Set before numpy loads its BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

from gate import stats  # noqa: E402
from gate.metrics import Cells, model_metrics  # noqa: E402
from gate.verdict import DecisionSettings, judge  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    """Joint probabilities of (baseline right?, candidate right?) within every class; classes are balanced."""

    name: str
    p10: float        # baseline right, candidate wrong (negative flip)
    p01: float        # baseline wrong, candidate right (positive flip)
    base_accuracy: float

    @property
    def drop(self) -> float:
        return self.p10 - self.p01

    @property
    def discordance(self) -> float:
        return self.p10 + self.p01


def scenario(name: str, *, drop: float, discordance: float, base_accuracy: float) -> Scenario:
    return Scenario(name, (discordance + drop) / 2, (discordance - drop) / 2, base_accuracy)


def cell_table(sc: Scenario, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (y, pb, pc) cell with its probability. A wrong model predicts one of the next two classes (a
    confusable neighbour), independently for the two models."""
    p11 = sc.base_accuracy - sc.p10
    p00 = 1.0 - p11 - sc.p10 - sc.p01
    ys, pbs, pcs, probs = [], [], [], []
    for y in range(classes):
        wrong = [(y + 1) % classes, (y + 2) % classes]
        options = {
            (True, True): (p11, [(y, y)]),
            (True, False): (sc.p10, [(y, w) for w in wrong]),
            (False, True): (sc.p01, [(w, y) for w in wrong]),
            (False, False): (p00, [(wb, wc) for wb in wrong for wc in wrong]),
        }
        for prob, pairs in options.values():
            for pb, pc in pairs:
                ys.append(y), pbs.append(pb), pcs.append(pc), probs.append(prob / len(pairs) / classes)
    return np.array(ys), np.array(pbs), np.array(pcs), np.array(probs)


@dataclass
class Tally:
    """Decision counts over the repetitions of one (scenario, n)."""

    reps: int = 0
    fail_point: int = 0
    fail_ni: int = 0
    inconclusive_ni: int = 0
    mcnemar_reject: int = 0
    family_fail_point: int = 0
    family_fail_ni: int = 0
    family_fail_holm: int = 0

    def rate(self, field: str) -> float:
        return getattr(self, field) / self.reps


def draw_cells(table: tuple[np.ndarray, ...], n: int, classes: int, rng: np.random.Generator) -> Cells:
    y, pb, pc, probs = table
    counts = rng.multinomial(n, probs)
    keep = counts > 0                                   # the gate keeps only observed cells: m <= min(n, K^3)
    return Cells(y=y[keep], pb=pb[keep], pc=pc[keep], counts=counts[keep].astype(np.int64), num_classes=classes)


def decide(estimate: float, reps: np.ndarray, *, max_drop: float, confidence: float, mode: str,
           p_adjusted: float | None = None) -> str:
    """The gate's own decision (gate.verdict.judge, as the checks call it): "pass", "fail" or "inconclusive"."""
    settings = DecisionSettings(mode=mode, confidence=confidence, inconclusive="warn")
    low, high = stats.percentile_interval(reps, confidence=confidence)
    finding = judge(metric="drop", rule="max_drop", threshold=max_drop, value=float(estimate), settings=settings,
                    interval=(float(low), float(high)), p_adjusted=p_adjusted)
    return "inconclusive" if finding.inconclusive else finding.status


def run_scenario(sc: Scenario, *, n: int, args: argparse.Namespace, seed: int,
                 accuracy: bool, family: bool) -> Tally:
    table = cell_table(sc, args.classes)
    rng = np.random.default_rng(seed)
    alpha = stats.one_sided_alpha(args.confidence)
    tally = Tally()
    for rep in range(args.reps):
        cells = draw_cells(table, n, args.classes, rng)
        observed = cells.counts[None, :]
        weights = stats.bootstrap_weights(cells.counts, resamples=args.resamples, seed=seed * 100_003 + rep)
        base, cand = model_metrics(cells, cells.pb, weights), model_metrics(cells, cells.pc, weights)
        base_hat, cand_hat = model_metrics(cells, cells.pb, observed), model_metrics(cells, cells.pc, observed)
        tally.reps += 1
        if accuracy:
            reps = base["accuracy"] - cand["accuracy"]
            estimate = float(base_hat["accuracy"][0] - cand_hat["accuracy"][0])
            common = {"max_drop": args.max_drop, "confidence": args.confidence}
            point = decide(estimate, reps, mode="point", **common)
            ni = decide(estimate, reps, mode="non-inferiority", **common)
            tally.fail_point += point == "fail"
            tally.fail_ni += ni == "fail"
            tally.inconclusive_ni += ni == "inconclusive"
            base_ok, cand_ok = cells.pb == cells.y, cells.pc == cells.y
            negative = int(cells.counts[base_ok & ~cand_ok].sum())
            positive = int(cells.counts[~base_ok & cand_ok].sum())
            tally.mcnemar_reject += stats.significant(stats.mcnemar_one_sided(negative, positive), alpha)
        if family:
            reps_k = base["recall"] - cand["recall"]
            est_k = base_hat["recall"][0] - cand_hat["recall"][0]
            common = {"max_drop": args.recall_max_drop, "confidence": args.confidence}
            p_raw = stats.bootstrap_p_value(reps_k, bound=args.recall_max_drop, alternative="greater")
            p_holm = stats.adjust(p_raw, "holm")
            outcomes = [
                (decide(est_k[k], reps_k[:, k], mode="point", **common),
                 decide(est_k[k], reps_k[:, k], mode="non-inferiority", **common),
                 decide(est_k[k], reps_k[:, k], mode="non-inferiority", p_adjusted=float(p_holm[k]), **common))
                for k in range(args.classes)
            ]
            tally.family_fail_point += any(o[0] == "fail" for o in outcomes)
            tally.family_fail_ni += any(o[1] == "fail" for o in outcomes)
            tally.family_fail_holm += any(o[2] == "fail" for o in outcomes)
    return tally


def exact_false_fail(n: int, *, discordance: float, args: argparse.Namespace) -> float:
    """False-fail rate of the non-inferiority accuracy rule for a candidate exactly at max_drop, summed exactly over
    every (negative flips b, positive flips c) with its multinomial probability (the bootstrap is still random)."""
    from scipy.stats import multinomial

    drop = args.max_drop
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    span = [(int(max(0, n * p - 8 * np.sqrt(n * p) - 2)), int(n * p + 8 * np.sqrt(n * p) + 3)) for p in (p10, p01)]
    total = 0.0
    for b in range(*span[0]):
        for c in range(*span[1]):
            prob = float(multinomial.pmf([b, c, n - b - c], n, [p10, p01, 1 - discordance]))
            if prob < 1e-12:
                continue
            counts = np.array([b, c, n - b - c], dtype=np.int64)          # cells: negative, positive, concordant
            w = stats.bootstrap_weights(counts, resamples=args.resamples, seed=b * 7919 + c)
            reps = (w[:, 0] - w[:, 1]) / n
            decision = decide((b - c) / n, reps, max_drop=drop, confidence=args.confidence, mode="non-inferiority")
            total += prob * (decision == "fail")
    return total


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions and resamples")
    parser.add_argument("--reps", type=int, default=400, help="evaluation sets drawn per scenario and size")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per evaluation set")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 10000])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--base-accuracy", type=float, default=0.9)
    parser.add_argument("--discordance", type=float, default=0.04,
                        help="share of samples where exactly one model is right")
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy max_drop")
    parser.add_argument("--recall-max-drop", type=float, default=0.05, help="per-class recall max_drop")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true",
                        help="instead: exact false-fail rate at max_drop over a grid of n and discordance")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.resamples, args.sizes = 40, 300, [200, 1000]
    return args


def main_exact(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    grid = [(100, 0.02), (500, 0.02), (200, 0.04), (1000, 0.04), (3000, 0.04), (100, 0.1), (500, 0.1),
            (100, 0.3), (500, 0.3)]
    alpha = stats.one_sided_alpha(args.confidence)
    print(f"exact false-fail rate of non-inferiority for an accuracy drop exactly at max_drop {args.max_drop} "
          f"(nominal {alpha:g}), {args.resamples} bootstrap resamples per (b, c)")
    rows = [[n, psi, pct(exact_false_fail(n, discordance=psi, args=args))] for n, psi in grid]
    print(tabulate(rows, headers=["n", "discordance", "false-fail"], tablefmt="github"))
    print(f"elapsed: {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.exact:
        main_exact(args)
        return
    started = time.perf_counter()
    psi, acc = args.discordance, args.base_accuracy
    equal = scenario("as good", drop=0.0, discordance=psi, base_accuracy=acc)
    margin = scenario("at max_drop", drop=args.max_drop, discordance=psi, base_accuracy=acc)
    worse = scenario("2x max_drop", drop=2 * args.max_drop, discordance=psi, base_accuracy=acc)
    # Per-class family at its boundary: every class's recall drops by exactly recall_max_drop.
    fam_margin = scenario("recall at max_drop", drop=args.recall_max_drop,
                          discordance=max(psi, args.recall_max_drop + 0.02), base_accuracy=acc)
    alpha = stats.one_sided_alpha(args.confidence)
    print(f"settings: K={args.classes} balanced classes, baseline accuracy {acc}, discordance {psi} "
          f"(share where exactly one model is right), accuracy max_drop {args.max_drop}, per-class recall "
          f"max_drop {args.recall_max_drop}, confidence {args.confidence} (two-sided; each one-sided decision at "
          f"{alpha:g}), {args.reps} evaluation sets per cell, {args.resamples} bootstrap resamples, "
          f"seed {args.seed}, BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"candidates: as good (drop 0), at max_drop (drop {args.max_drop}), 2x max_drop (drop "
          f"{2 * args.max_drop}); per-class family at its boundary: recall drop {args.recall_max_drop} in every "
          f"class (discordance {fam_margin.discordance:g})")
    print(f"Monte Carlo standard error of a rate near {alpha:g}: "
          f"{pct(float(np.sqrt(alpha * (1 - alpha) / args.reps)))}\n")

    rows, fam_rows = [], []
    for i, n in enumerate(args.sizes):
        base = 1000 * args.seed + 10 * i
        t_eq = run_scenario(equal, n=n, args=args, seed=base + 1, accuracy=True, family=True)
        t_mg = run_scenario(margin, n=n, args=args, seed=base + 2, accuracy=True, family=False)
        t_wo = run_scenario(worse, n=n, args=args, seed=base + 3, accuracy=True, family=False)
        t_fm = run_scenario(fam_margin, n=n, args=args, seed=base + 4, accuracy=False, family=True)
        mdd = stats.min_detectable_drop(n, discordance=psi, confidence=args.confidence)
        rows.append([
            n, pct(t_eq.rate("fail_point")), pct(t_eq.rate("fail_ni")), pct(t_mg.rate("fail_ni")),
            pct(t_wo.rate("fail_point")), pct(t_wo.rate("fail_ni")),
            f"{pct(t_eq.rate('inconclusive_ni'))} / {pct(t_wo.rate('inconclusive_ni'))}",
            f"{pct(t_eq.rate('mcnemar_reject'))} / {pct(t_wo.rate('mcnemar_reject'))}",
            f"{mdd:.4f}",
        ])
        fam_rows.append([
            n, pct(t_eq.rate("family_fail_point")), pct(t_eq.rate("family_fail_ni")),
            pct(t_eq.rate("family_fail_holm")), pct(t_fm.rate("family_fail_ni")),
            pct(t_fm.rate("family_fail_holm")),
        ])

    print("Accuracy max_drop: false-fail = a candidate that meets max_drop is failed; detection = the 2x-worse "
          "candidate is failed")
    print(tabulate(rows, headers=[
        "n", "false-fail\npoint\n(as good)", "false-fail\nnon-inf\n(as good)", "false-fail\nnon-inf\n(at max_drop)",
        "detection\npoint\n(2x)", "detection\nnon-inf\n(2x)", "inconclusive\nnon-inf\n(as good / 2x)",
        "McNemar rejects\n'no drop'\n(as good / 2x)", "min detectable\ndrop (80%)"], tablefmt="github"))
    print(f"\nPer-class recall family ({args.classes} classes): share of evaluation sets where ANY class fails")
    print(tabulate(fam_rows, headers=[
        "n", "point\n(as good)", "non-inf, no adj.\n(as good)", "non-inf, Holm\n(as good)",
        "non-inf, no adj.\n(at max_drop)", "non-inf, Holm\n(at max_drop)"], tablefmt="github"))
    need = stats.required_samples(args.max_drop, discordance=psi, confidence=args.confidence)
    print(f"\nrequired_samples(drop={args.max_drop}, discordance={psi}, confidence={args.confidence}) = {need}: "
          f"the size at which a candidate {args.max_drop} beyond max_drop is failed (and one {args.max_drop} "
          f"inside it passed) 80% of the time")
    print(f"elapsed: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
