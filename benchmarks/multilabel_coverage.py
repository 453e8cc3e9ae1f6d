"""Operating characteristic of the multilabel check's rules, by simulation (seeded; prints tables).

Worlds: N samples, L labels with prevalences 0.1..0.5; each model is wrong on a (sample, label) pair with
probability err * h_i, where h_i ~ Gamma(2, 1/2) (mean 1) is the sample's difficulty, shared by both models: errors
cluster within samples (what a per-label test cannot see) and the two models are correlated through it.

  --oc        default rules: P(fail) / P(warn) / P(clean pass) of the check for candidates of equal quality (drawn
              independently: many discordant pairs; or the baseline re-drawn on 5% of its pairs: few), and for a
              real regression on one label (the candidate misses a share of that label's positives);
  --coverage  the bootstrap rules at their bound: a candidate whose true Hamming-loss increase (micro-F1 drop)
              is exactly max_increase (max_drop), and P(claims within) / P(claims beyond) against alpha = 2.5%.

    python benchmarks/multilabel_coverage.py --oc --reps 200
    python benchmarks/multilabel_coverage.py --coverage --reps 300
    python benchmarks/multilabel_coverage.py --oc --reps 100 --sizes 5000
    python benchmarks/multilabel_coverage.py --label-f1 --reps 400   # per-label F1 max_drop 0.1 on label l0
    python benchmarks/multilabel_coverage.py --scale      # CPU s, state bytes, peak RSS at large N x L

  --label-rules  the other per-label bootstrap rules at their bound, all in one world where the candidate misses
              `--share` (0.2) of l0's positives: precision / recall / F1 `max_relative_drop` and F1 `min`, each
              threshold l0's population value of the rule (from 10,000,000 samples; so "claims within" and "claims beyond" are both wrong
              claims, each nominal 2.5%), decision non-inferiority, multiple_comparisons none (the raw claims):

    python benchmarks/multilabel_coverage.py --label-rules --reps 1000 --sizes 200,1000 --worlds close

  --label-f1  per-label F1 max_drop 0.1 (a bootstrap rule) on label l0 (prevalence 0.1), the candidate missing a
              share of l0's positives so that l0's true F1 drop is exactly 0.1 (claims within: a false pass), and
              none (claims within: power); `--percentile-only` decides it by the percentile bootstrap alone (as
              before the bootstrap-t and the score test), on the same worlds.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.multilabel import MultiLabelCheck  # noqa: E402
from gate.config import build_config  # noqa: E402

ALPHA = 0.025


def world(rng: np.random.Generator, n: int, labels: int, *, err: float, kind: str, broken_share: float = 0.0,
          extra_err: float = 0.0):
    prevalence = np.linspace(0.1, 0.5, labels)
    y = rng.random((n, labels)) < prevalence
    h = rng.gamma(2.0, 0.5, size=(n, 1))
    p_wrong = np.clip(err * h, 0.0, 1.0) * np.ones((1, labels))
    wrong_b = rng.random((n, labels)) < p_wrong
    if kind == "independent":
        wrong_c = rng.random((n, labels)) < p_wrong
    elif kind == "close":                              # the baseline's errors, re-drawn on 5% of the pairs
        redraw = rng.random((n, labels)) < 0.05
        wrong_c = np.where(redraw, rng.random((n, labels)) < p_wrong, wrong_b)
    else:
        raise ValueError(kind)
    if broken_share:
        wrong_c[:, 0] |= y[:, 0] & (rng.random(n) < broken_share) & ~wrong_c[:, 0]
    if extra_err:                                      # more errors on every label, clustered like the others
        right = ~wrong_c
        add = rng.random((n, labels)) < np.clip(extra_err * h, 0, 1) / np.maximum(1 - p_wrong, 1e-9)
        wrong_c = wrong_c | (right & add)
    pb = np.where(wrong_b, ~y, y)
    pc = np.where(wrong_c, ~y, y)
    return y.astype(np.int64), pb.astype(np.float32), pc.astype(np.float32)


def run(config, y, sb, sc, batch: int = 512):
    labels = y.shape[1]
    ctx = RunContext(config=config, models={}, class_names=tuple(f"l{i}" for i in range(labels)), device=None)
    check = MultiLabelCheck(config.check("multilabel"), ctx)
    check.setup()
    for i, off in enumerate(range(0, len(y), batch)):
        sl = slice(off, off + batch)
        step = Step(index=i, offset=off, inputs=None, labels=y[sl], scores={"baseline": sb[sl], "candidate": sc[sl]})
        step.task = "multi_label"
        check.update(step)
    return check.compute()


def outcome(result) -> str:
    if result.status == "fail":
        return "fail"
    return "warn" if result.status == "warn" else "pass"


def oc(reps: int, labels: int, sizes: list[int]) -> None:
    config = build_config({})
    print(f"default rules, L = {labels}, per-pair error 0.1 x difficulty, {reps} worlds per row\n")
    print("| n | candidate | P(exit 1) | P(warning) | P(clean pass) | fails by rule (share of worlds) |")
    print("|--:|---|--:|--:|--:|---|")
    for n in sizes:
        for name, kind, broken in (("equal, independent", "independent", 0.0), ("equal, close", "close", 0.0),
                                   ("label l0 loses 20% of its positives", "close", 0.2),
                                   ("label l0 loses 50% of its positives", "close", 0.5)):
            rng = np.random.default_rng(1000 + n)
            counts = {"fail": 0, "warn": 0, "pass": 0}
            by_rule: dict[str, int] = {}
            t0 = time.perf_counter()
            for _ in range(reps):
                result = run(config, *world(rng, n, labels, err=0.1, kind=kind, broken_share=broken))
                counts[outcome(result)] += 1
                for f in result.findings:
                    if f.status == "fail":
                        key = f.metric.split("[")[0] + (f"[{f.where}]" if f.where == "l0" else "[other]" if f.where
                                                        else "") + f" {f.rule}"
                        by_rule[key] = by_rule.get(key, 0) + 1
            rules = ", ".join(f"{k} {v / reps:.1%}" for k, v in sorted(by_rule.items(), key=lambda kv: -kv[1]))
            print(f"| {n} | {name} | {counts['fail'] / reps:.1%} | {counts['warn'] / reps:.1%} | "
                  f"{counts['pass'] / reps:.1%} | {rules or '-'} |  <!-- {time.perf_counter() - t0:.0f} s -->",
                  flush=True)


def coverage(reps: int, labels: int, sizes: list[int], kinds: list[str]) -> None:
    print(f"rules at their bound, L = {labels}, {reps} worlds per row; claims within / beyond vs alpha {ALPHA:.1%}\n")
    print("| n | candidate | metric, bound | true value (simulated) | P(claims within) | P(claims beyond) |")
    print("|--:|---|---|--:|--:|--:|")
    for n in sizes:
        for kind in kinds:
            for metric, rule, bound in (("hamming_loss", "max_increase", 0.01), ("micro_f1", "max_drop", 0.02)):
                options = {"subset_accuracy": {"max_drop": None}, "micro_f1": {"max_drop": None},
                           "macro_f1": {"max_drop": None}, "hamming_loss": {"max_increase": None},
                           "recall": {"max_drop": None}, "precision": {"max_drop": None},
                           "per_label_negative_flip_rate": {"max": None}}
                options[metric] = {rule: bound}
                config = build_config({"decision": {"mode": "non-inferiority"}, "checks": {"multilabel": options}})
                extra = find_extra(metric, bound, labels, kind)
                rng = np.random.default_rng(7 + n)
                within = beyond = 0
                for _ in range(reps):
                    result = run(config, *world(rng, n, labels, err=0.1, kind=kind, extra_err=extra))
                    f = next(f for f in result.findings if f.metric == metric)
                    within += f.status == "pass"
                    beyond += f.status == "fail"
                print(f"| {n} | {kind} | {metric} {rule} {bound} | {true_value(metric, extra, labels, kind):.4f} | "
                      f"{within / reps:.1%} | {beyond / reps:.1%} |", flush=True)


def true_value(metric: str, extra: float, labels: int, kind: str, n: int = 400_000) -> float:
    """The population value of the compared quantity, from one very large world (seeded)."""
    rng = np.random.default_rng(99)
    y, sb, sc = world(rng, n, labels, err=0.1, kind=kind, extra_err=extra)
    yb, pb, pc = y == 1, sb > 0.5, sc > 0.5
    if metric == "hamming_loss":
        return float(np.mean(pc != yb) - np.mean(pb != yb))

    def micro(p: np.ndarray) -> float:
        tp = np.sum(p & yb)
        return 2 * tp / (2 * tp + np.sum(p & ~yb) + np.sum(~p & yb))

    return float(micro(pb) - micro(pc))


@functools.lru_cache(maxsize=None)
def find_extra(metric: str, bound: float, labels: int, kind: str) -> float:
    """The extra error rate whose true value is the bound (bisection on the large world)."""
    lo, hi = 0.0, 0.2
    for _ in range(25):
        mid = (lo + hi) / 2
        if true_value(metric, mid, labels, kind) < bound:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def label_f1_drop(share: float, labels: int, kind: str, n: int = 400_000) -> float:
    """l0's population F1 drop (baseline - candidate) when the candidate misses `share` of its positives."""
    y, sb, sc = world(np.random.default_rng(99), n, labels, err=0.1, kind=kind, broken_share=share)
    yb = y[:, 0] == 1

    def f1(p: np.ndarray) -> float:
        tp = np.sum(p & yb)
        return 2 * tp / (2 * tp + np.sum(p & ~yb) + np.sum(~p & yb))

    return f1(sb[:, 0] > 0.5) - f1(sc[:, 0] > 0.5)


def label_f1(reps: int, labels: int, sizes: list[int], kinds: list[str]) -> None:
    from scipy.optimize import brentq

    bound = 0.1
    options = {"subset_accuracy": {"max_drop": None}, "micro_f1": {"max_drop": None},
               "macro_f1": {"max_drop": None}, "hamming_loss": {"max_increase": None},
               "recall": {"max_drop": None}, "precision": {"max_drop": None},
               "per_label_negative_flip_rate": {"max": None}, "f1": {"max_drop": bound}}
    config = build_config({"decision": {"mode": "non-inferiority"}, "checks": {"multilabel": options}})
    print(f"per-label F1 max_drop {bound} on l0 (prevalence 0.1), L = {labels}, {reps} worlds per row; claims "
          f"within / beyond vs alpha {ALPHA:.1%}\n")
    print("| n | candidate | l0's true F1 drop | share of l0's positives lost | P(claims within) | P(claims beyond) |")
    print("|--:|---|--:|--:|--:|--:|")
    for kind in kinds:
        at_bound = brentq(lambda s: label_f1_drop(s, labels, kind) - bound, 0.0, 0.6, xtol=1e-6)
        for share in (at_bound, 0.0):
            for n in sizes:
                rng = np.random.default_rng(11 + n)
                within = beyond = 0
                for _ in range(reps):
                    result = run(config, *world(rng, n, labels, err=0.1, kind=kind, broken_share=share))
                    f = next(f for f in result.findings if f.metric == "f1[l0]")
                    within += f.status == "pass"
                    beyond += f.status == "fail"
                print(f"| {n} | {kind} | {label_f1_drop(share, labels, kind):.4f} | {share:.4f} | "
                      f"{within / reps:.1%} | {beyond / reps:.1%} |", flush=True)


#: --label-rules: (metric, rule) simulated on l0, each at its bound.
LABEL_RULES = (("precision", "max_relative_drop"), ("recall", "max_relative_drop"), ("f1", "max_relative_drop"),
               ("f1", "min"))


def label_rule_values(share: float, labels: int, kind: str, *, worlds: int = 5, n: int = 2_000_000
                      ) -> dict[tuple[str, str], float]:
    """l0's population value of each per-label rule of LABEL_RULES (the relative drop (b - c) / b, or the
    candidate's figure for `min`) when the candidate misses `share` of its positives: each figure from the counts
    of `worlds` very large worlds (seeded) together. One 400,000-sample world left the relative drops' thresholds
    0.0014-0.0021 (about 0.05 of an estimate's sd at n = 1,000) above this value, which alone moves a calibrated
    test's "within" from 2.5% to about 2.8%."""
    tp = np.zeros(2)
    predicted = np.zeros(2)
    positives = 0.0
    for i in range(worlds):
        y, sb, sc = world(np.random.default_rng(100 + i), n, labels, err=0.1, kind=kind, broken_share=share)
        yb = y[:, 0] == 1
        positives += float(np.sum(yb))
        for j, s in enumerate((sb, sc)):
            p = s[:, 0] > 0.5
            tp[j] += float(np.sum(p & yb))
            predicted[j] += float(np.sum(p))
    figures = {"precision": tp / predicted, "recall": tp / positives, "f1": 2 * tp / (predicted + positives)}
    out = {}
    for metric, rule in LABEL_RULES:
        base, cand = figures[metric]
        out[(metric, rule)] = float(cand if rule == "min" else (base - cand) / base)
    return out


def label_rules(reps: int, labels: int, sizes: list[int], kinds: list[str], share: float, seed: int = 0) -> None:
    print(f"per-label rules on l0 (prevalence 0.1) at their bound, the candidate missing {share:.0%} of l0's "
          f"positives, L = {labels}, {reps} worlds per row; raw claims within / beyond vs alpha {ALPHA:.1%}\n")
    print("| n | candidate | rule on l0 | threshold (l0's true value) | P(claims within) | P(claims beyond) |")
    print("|--:|---|---|--:|--:|--:|")
    for kind in kinds:
        bounds = label_rule_values(share, labels, kind)
        options = {"subset_accuracy": {"max_drop": None}, "micro_f1": {"max_drop": None},
                   "macro_f1": {"max_drop": None}, "hamming_loss": {"max_increase": None},
                   "recall": {"max_drop": None}, "precision": {"max_drop": None}, "f1": {},
                   "per_label_negative_flip_rate": {"max": None}}
        for (metric, rule), bound in bounds.items():
            options[metric] = {**options[metric], rule: bound}
        config = build_config({"decision": {"mode": "non-inferiority", "multiple_comparisons": "none"},
                               "checks": {"multilabel": options}})
        for n in sizes:
            rng = np.random.default_rng(13 + n + 100_000 * seed)
            within = {mr: 0 for mr in LABEL_RULES}
            beyond = {mr: 0 for mr in LABEL_RULES}
            t0 = time.perf_counter()
            for _ in range(reps):
                result = run(config, *world(rng, n, labels, err=0.1, kind=kind, broken_share=share))
                for f in result.findings:
                    if f.where == "l0" and (f.metric[:-4], f.rule) in bounds:
                        within[(f.metric[:-4], f.rule)] += f.status == "pass"
                        beyond[(f.metric[:-4], f.rule)] += f.status == "fail"
                done = _ + 1
                if done % 100 == 0 and done < reps:             # partial counts, should the run be cut short
                    print(f"<!-- n {n}, {done} worlds: " + "; ".join(
                        f"{m} {r} within {within[(m, r)]} beyond {beyond[(m, r)]}" for m, r in LABEL_RULES)
                        + " -->", flush=True)
            for mr, bound in bounds.items():
                print(f"| {n} | {kind} | {mr[0]} {mr[1]} | {bound:.4f} | {within[mr] / reps:.1%} | "
                      f"{beyond[mr] / reps:.1%} |  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


def scale() -> None:
    import resource

    config = build_config({"checks": {"multilabel": {"f1": {"max_drop": 0.1}}}})   # every bootstrap rule on
    print("| N x L | state bytes | distinct rows | update CPU s | compute CPU s | peak RSS |")
    print("|---|--:|--:|--:|--:|--:|")
    for n, labels in ((10_000, 20), (100_000, 20), (20_000, 100), (5_000, 1000)):
        y, sb, sc = world(np.random.default_rng(0), n, labels, err=0.1, kind="independent")
        ctx = RunContext(config=config, models={}, class_names=tuple(f"l{i}" for i in range(labels)), device=None)
        check = MultiLabelCheck(config.check("multilabel"), ctx)
        check.setup()
        t0 = time.process_time()
        for i, off in enumerate(range(0, n, 512)):
            step = Step(index=i, offset=off, inputs=None, labels=y[off:off + 512],
                        scores={"baseline": sb[off:off + 512], "candidate": sc[off:off + 512]})
            step.task = "multi_label"
            check.update(step)
        t1 = time.process_time()
        result = check.compute()
        t2 = time.process_time()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {n:,} x {labels} | {result.details['state_bytes']:,} | {result.details['bootstrap_distinct_rows']:,}"
              f" | {t1 - t0:.2f} | {t2 - t1:.1f} | {rss:.2f} GiB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oc", action="store_true")
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--scale", action="store_true")
    parser.add_argument("--label-f1", action="store_true")
    parser.add_argument("--label-rules", action="store_true")
    parser.add_argument("--share", type=float, default=0.2, help="--label-rules: share of l0's positives lost")
    parser.add_argument("--seed", type=int, default=0, help="--label-rules: another seed (0: the documented one)")
    parser.add_argument("--percentile-only", action="store_true",
                        help="decide the per-label bootstrap rules by the percentile bootstrap alone")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--worlds", default="close,independent", help="candidate kinds for --coverage")
    parser.add_argument("--sizes", default="200,1000,5000", help="evaluation-set sizes, comma-separated")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    if args.percentile_only:
        from gate.checks import classification

        classification.STUDENTIZED = "off"
    if args.scale:
        scale()
        return
    if args.label_rules:
        label_rules(args.reps, args.labels, sizes, args.worlds.split(","), args.share, args.seed)
        return
    if args.label_f1:
        label_f1(args.reps, args.labels, sizes, args.worlds.split(","))
        return
    if args.oc or not args.coverage:
        oc(args.reps, args.labels, sizes)
        print()
    if args.coverage:
        coverage(args.reps, args.labels, sizes, args.worlds.split(","))


if __name__ == "__main__":
    main()
