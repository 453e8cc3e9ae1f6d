"""Accuracy, per-class metrics and prediction flips: all computed from the run's paired counts (no extra state).

Which statistic backs which rule (docs/statistics.md has the table and the measured error rates):
- accuracy / per-class recall `max_drop`: Tango's score test for the paired difference p10 - p01 (within the class
  for recall); "worse at all" is the one-sided exact McNemar test;
- rates (`min` on accuracy / recall / precision / agreement, `max` on flip rates): exact binomial tests;
- per-class precision `max_drop`: delta method with Agresti-Caffo smoothing, variance under the null and a
  one-prediction continuity correction (simulated coverage in docs/statistics.md);
- macro / weighted F1, per-class F1 and every `max_relative_drop`: the paired bootstrap, drawn once per run
  (`run_replicates`, typed and owned by the run context) with `decision.bootstrap_resamples` resamples; the
  overall F1 replicates are widened to Tango's width for the accuracy drop (`tango_calibration`); a per-class
  claim is made only when the percentile bootstrap, the bootstrap-t (each resample studentized by its own
  delta-method se, from its per-class pattern counts) and a score-type test all make it (`class_bootstrap_evidence`).
Every rule is decided by gate.verdict.judge from that Evidence.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gate import distributions as sps

from gate import stats
from gate.checks.base import Check
from gate.metrics import (Cells, ClassCounts, bootstrap_block_rows, bootstrap_replicates, class_counts,
                          class_patterns, class_rule_se, class_score_interval, class_score_test, point_metrics,
                          precision_correction, precision_drop_se)
from gate.report.model import CheckResult, Finding, PowerNote, Table
from gate.verdict import DecisionSettings, Evidence, check_summary, decision_settings, judge

HIGHER_RULES = ("min", "max_drop", "max_relative_drop")

#: Which bootstrap decides the per-class bootstrap rules (F1, every `max_relative_drop`): "hull" (a claim only when
#: both the percentile bootstrap and the bootstrap-t make it), "bootstrap-t", or "off" (the percentile alone, and
#: no score test).
STUDENTIZED = "hull"
#: Whether their claims also need the score-type test (`class_score_p_values`): measured in docs/statistics.md.
SCORE = True


@dataclass(frozen=True)
class Replicates:
    """The run's paired-bootstrap replicates, shared by every check that uses them (same resamples, same seed)."""

    resamples: int
    seed: int
    baseline: dict[str, np.ndarray]       # accuracy, macro_f1, weighted_f1 (R,); precision/recall/f1 (R, K) if per_class
    candidate: dict[str, np.ndarray]
    per_class: bool
    patterns: np.ndarray | None = None    # (7, R, K) int32 pattern counts per class (gate.metrics.pattern_counts)


def _per_class_needs_bootstrap(config: Any) -> bool:
    """Only per-class F1 and relative-drop rules are decided by resampling; the defaults are analytic."""
    opts = config.checks.get("per_class", {})
    if not opts.get("enabled", False):
        return False
    sections = [opts] + list(opts.get("overrides") or [])
    for sec in sections:
        for metric in PerClassCheck.METRICS:
            th = sec.get(metric) or {}
            if metric == "f1" and any(th.get(r) is not None for r in HIGHER_RULES):
                return True
            if th.get("max_relative_drop") is not None:
                return True
    return False


def _draw_replicates(cells: Cells, per_class: bool, settings: DecisionSettings,
                     blocks: Iterable[np.ndarray] | None = None) -> Replicates:
    reps = bootstrap_replicates(cells, resamples=settings.resamples, seed=settings.seed, per_class=per_class,
                                blocks=blocks)
    return Replicates(resamples=settings.resamples, seed=settings.seed, baseline=reps["baseline"],
                      candidate=reps["candidate"], per_class=per_class,
                      patterns=reps["patterns"]["counts"] if per_class else None)


def run_replicates(ctx: Any, settings: DecisionSettings) -> Replicates:
    """The run's bootstrap, drawn on first use with the run-wide resample count and seed, then reused; its
    resamples read from the thread that `prefetch_replicates` started, when it did."""
    ahead = ctx.replicates if isinstance(ctx.replicates, DrawnAhead) else None
    if ahead is not None:
        ctx.replicates = None
        with ahead:                         # its thread ends here, read or not
            if (ahead.resamples, ahead.seed) == (settings.resamples, settings.seed):
                ctx.replicates = _draw_replicates(ahead.cells, _per_class_needs_bootstrap(ctx.config), settings,
                                                  blocks=ahead.blocks())
    if ctx.replicates is None:
        ctx.replicates = _draw_replicates(ctx.counts.cells(), _per_class_needs_bootstrap(ctx.config), settings)
    return ctx.replicates


def prefetch_replicates(ctx: Any, settings: DecisionSettings) -> None:
    """Start drawing the run's bootstrap resamples on a thread of their own (`DrawnAhead`), so that numpy's
    multinomial sampler, which releases the GIL and is most of the bootstrap's cost, runs while the checks that do
    not need it compute (the runner computes those first). Only with a second core to run on."""
    if ctx.replicates is not None or ctx.counts is None or _cores() < 2:
        return
    ctx.replicates = DrawnAhead(ctx.counts.cells(), resamples=settings.resamples, seed=settings.seed)


def discard_prefetch(ctx: Any) -> None:
    """Stop a prefetch that no check read (its thread ends, its blocks are dropped)."""
    if isinstance(ctx.replicates, DrawnAhead):
        ctx.replicates.close()
        ctx.replicates = None


class DrawnAhead:
    """The bootstrap's weight blocks (gate.stats.iter_bootstrap_weights: the same generator, the same blocks in the
    same order as a draw on the reader's thread) drawn on a thread of their own, at most `DEPTH` blocks ahead of
    their reader, so memory stays a few blocks. The cells are read on the caller's thread (PairedCounts folds its
    pending codes lazily, which the other checks also do). A reader takes `blocks()` once, inside `with`."""

    DEPTH = 2
    _END = object()

    def __init__(self, cells: Cells, *, resamples: int, seed: int) -> None:
        self.cells, self.resamples, self.seed = cells, resamples, seed
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.DEPTH)
        self._stop = threading.Event()
        rows = bootstrap_block_rows(cells, resamples)
        source = stats.iter_bootstrap_weights(cells.counts, resamples=resamples, seed=seed, chunk=rows)
        self._thread = threading.Thread(target=self._draw, args=(source,), name="gate-bootstrap", daemon=True)
        self._thread.start()
        time.sleep(0)                       # let it take the GIL now and enter the sampler, which releases it

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _draw(self, source: Iterator[np.ndarray]) -> None:
        try:
            for block in source:
                if not self._put(block):
                    return
        except BaseException as err:        # handed to the reader, raised there
            self._put(err)
            return
        self._put(self._END)

    def blocks(self) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> DrawnAhead:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                  # not on Linux
        return os.cpu_count() or 1


def _drop_value(rule: str, base: float, cand: float) -> float:
    if rule == "max_relative_drop":
        return (base - cand) / base if base > 0 else (0.0 if cand >= base else math.inf)
    return base - cand


def _drop_reps(rule: str, base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    if rule == "max_relative_drop":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(base > 0, (base - cand) / np.where(base > 0, base, 1.0), np.nan)
    return base - cand


# ------------------------------------------------------------------------------------------------ evidence


def paired_drop_evidence(b: np.ndarray, c: np.ndarray, n: np.ndarray, *, threshold: float,
                         confidence: float) -> dict[str, np.ndarray]:
    """Tango (beyond / within `threshold`), one-sided exact McNemar (worse at all) and Tango's interval; vectorised."""
    b, c, n = (np.asarray(x, dtype=np.int64) for x in (b, c, n))
    beyond, within = stats.paired_difference_p_values(b, c, n, bound=threshold)
    worse = np.where(b + c > 0, sps.binom.sf(b - 1, np.maximum(b + c, 1), 0.5), 1.0)
    low, high = stats.paired_difference_interval(b, c, n, confidence=confidence)
    return {"beyond": beyond, "within": within, "worse": np.where(n > 0, worse, np.nan), "low": low, "high": high}


def rate_evidence(successes: int, n: int, *, threshold: float, rule: str, confidence: float) -> Evidence:
    """Exact binomial evidence for a rate's `min` (floor) or `max` (ceiling)."""
    greater, less = stats.binomial_p_values(successes, n, bound=threshold)
    beyond, within = (float(less), float(greater)) if rule == "min" else (float(greater), float(less))
    return Evidence(p_beyond=beyond, p_within=within,
                    interval=stats.clopper_pearson_interval(successes, n, confidence=confidence),
                    method="exact binomial")


def _bootstrap_tails(reps: np.ndarray, *, threshold: float, rule: str,
                     confidence: float) -> tuple[Any, Any, Any, Any, Any]:
    """(beyond, within, worse, low, high) along axis 0 for a drop rule (reps of the drop) or a `min` rule (reps of
    the value); `worse` (the candidate worse at all) is None for `min`. One column or many."""
    lo, hi = stats.percentile_interval(reps, confidence=confidence)
    if rule == "min":
        beyond = stats.bootstrap_p_value(reps, bound=threshold, alternative="less")
        within = stats.bootstrap_p_value(reps, bound=threshold, alternative="greater")
        return beyond, within, None, lo, hi
    beyond = stats.bootstrap_p_value(reps, bound=threshold, alternative="greater")
    within = stats.bootstrap_p_value(reps, bound=threshold, alternative="less")
    worse = stats.bootstrap_p_value(reps, bound=0.0, alternative="greater")
    return beyond, within, worse, lo, hi


def bootstrap_evidence(reps: np.ndarray, *, threshold: float, rule: str, confidence: float) -> Evidence:
    """Bootstrap p-values along axis 0 for a drop rule (reps of the drop) or a `min` rule (reps of the value)."""
    beyond, within, worse, lo, hi = _bootstrap_tails(reps, threshold=threshold, rule=rule, confidence=confidence)
    return Evidence(p_beyond=float(beyond), p_within=float(within), p_worse=None if worse is None else float(worse),
                    interval=(float(lo), float(hi)), method="paired bootstrap")


def tango_calibration(reps: Replicates, tango: dict[str, np.ndarray], *, confidence: float) -> float:
    """How much wider the honest (Tango) interval of the accuracy drop is than the bootstrap's own: >= 1.

    The percentile bootstrap is too narrow when few samples are discordant (it never resamples a disagreement
    it did not see; with none it collapses to a point). F1 moves with the same discordant samples as accuracy,
    so its replicates are widened about their estimate by this factor; inf when the bootstrap saw no spread
    at all but Tango's interval has width (then nothing is proven either way).
    """
    lo, hi = stats.percentile_interval(reps.baseline["accuracy"] - reps.candidate["accuracy"], confidence=confidence)
    boot = float(hi) - float(lo)
    honest = float(tango["high"]) - float(tango["low"])
    if boot <= 0.0:
        return math.inf if honest > 0.0 else 1.0
    return max(1.0, honest / boot)


def calibrate(replicates: np.ndarray, estimate: float, scale: float) -> np.ndarray:
    """Replicates widened about `estimate` by `scale`; all NaN (undecidable) when the scale is infinite."""
    if math.isinf(scale):
        return np.full_like(replicates, np.nan, dtype=np.float64)
    return estimate + scale * (np.asarray(replicates, dtype=np.float64) - estimate)


def f1_sensitivity(metric: str, point: dict[str, np.ndarray]) -> float:
    # `point`: one model's point metrics (support, f1) and its predictions per class under "_predicted".
    """At most how much one flipped sample moves `metric`, in units of 1/n (what it moves accuracy by).

    A sample of class k going from right to wrong (predicted as j instead) changes F1_k = 2TP / (n_k + P_k) by
    (2 - F1_k) / (n_k + P_k) and F1_j by F1_j / (n_j + P_j), to first order: macro F1 by their sum over K, weighted
    F1 by their sum weighted n_k / n and n_j / n. Taken at the worst k and j of the baseline's own figures.
    """
    support, predicted, f1 = point["support"], point["_predicted"], point["f1"]
    present = support > 0
    den = np.where(support + predicted > 0, support + predicted, np.inf)
    lose, gain = (2.0 - f1) / den, f1 / den
    n = float(support.sum())
    if metric == "macro_f1":
        k = max(int(present.sum()), 1)
        return n / k * float(np.max(np.where(present, lose, 0.0)) + np.max(gain))
    return float(np.max(support * lose) + np.max(support * gain))


def f1_evidence_without_spread(negative: int, positive: int, n: int, *, f1_drop: float, threshold: float,
                               sensitivity: float, confidence: float) -> Evidence:
    """An F1 drop judged through Tango when the bootstrap saw no spread at all (no discordant sample).

    The F1 drop lies within `sensitivity` times the accuracy drop's own uncertainty, so "F1 drop <= threshold"
    is tested as "accuracy drop <= acc + (threshold - f1_drop) / sensitivity" with Tango's test.
    """
    acc = (negative - positive) / n
    mapped = acc + (threshold - f1_drop) / sensitivity
    beyond, within = stats.paired_difference_p_values(negative, positive, n, bound=mapped)
    low, high = stats.paired_difference_interval(negative, positive, n, confidence=confidence)
    interval = (f1_drop + sensitivity * (float(low) - acc), f1_drop + sensitivity * (float(high) - acc))
    worse = float(sps.binom.sf(negative - 1, negative + positive, 0.5)) if negative + positive else 1.0
    return Evidence(p_beyond=float(beyond), p_within=float(within), p_worse=worse, interval=interval,
                    method="Tango score (no bootstrap spread)")


class _PairedCheck(Check):
    """Shared plumbing: settings and point estimates."""

    sharding = "merge"      # no state of its own: the run's paired counts, which the runner merges

    def _settings(self) -> tuple[DecisionSettings, dict[str, dict[str, np.ndarray]]]:
        return decision_settings(self.ctx.config, self.options), point_metrics(self.ctx.counts)


# ------------------------------------------------------------------------------------------------ accuracy


def power_note(*, n: int, negative: int, positive: int, max_drop: float, confidence: float) -> PowerNote | None:
    """A PowerNote when n samples at this discordance cannot resolve `max_drop`; None when they can."""
    if n == 0:
        return None
    discordance = max((negative + positive) / n, 1.0 / n)
    mdd = stats.min_detectable_drop(n, discordance=discordance, confidence=confidence)
    if mdd <= max_drop:
        return None
    # A drop of max_drop needs at least that share of discordant samples; size the data for that case.
    need = stats.required_samples(max_drop, discordance=max(discordance, max_drop), confidence=confidence)
    if need <= n:
        return None
    smallest = (f"the smallest accuracy drop it can detect is {mdd:.4f}" if math.isfinite(mdd) else
                "no drop up to that discordance is detectable")
    return PowerNote(
        check="accuracy", metric="accuracy", threshold=max_drop, min_detectable=mdd if math.isfinite(mdd) else None,
        samples=n, samples_needed=need,
        note=(f"the data cannot decide accuracy max_drop {max_drop:g}: with {n} samples, {discordance:.1%} of "
              f"them discordant, {smallest} (80% power); about {need} samples ({need / n:.1f}x the data) would "
              f"decide a drop of {max_drop:g}"),
    )


class AccuracyCheck(_PairedCheck):
    name = "accuracy"

    def replicate_settings(self) -> DecisionSettings | None:
        settings = decision_settings(self.ctx.config, self.options)
        return settings if settings.statistical else None      # macro / weighted F1 are always shown with a CI

    def compute(self) -> CheckResult:
        settings, point = self._settings()
        n = self.ctx.counts.total
        comp = point["comparison"]
        neg, pos = int(round(comp["negative_flips"])), int(round(comp["positive_flips"]))
        tango = paired_drop_evidence(np.array(neg), np.array(pos), np.array(n), threshold=0.0,
                                     confidence=settings.confidence)
        findings: list[Finding] = []
        rows = []
        reps = None
        calibration: float | None = None     # tango_calibration of the run's replicates, the same for every F1 rule
        cells = self.ctx.counts.cells()
        baseline_figures = {**point["baseline"],
                            "_predicted": np.bincount(cells.pb, weights=cells.counts, minlength=cells.num_classes)}
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            base = float(point["baseline"][metric])
            cand = float(point["candidate"][metric])
            thresholds = self.options.get(metric) or {}
            needs_reps = metric != "accuracy" or thresholds.get("max_relative_drop") is not None
            if settings.statistical and needs_reps and reps is None:
                reps = run_replicates(self.ctx, settings)
            for rule in HIGHER_RULES:
                threshold = thresholds.get(rule)
                if threshold is None:
                    continue
                threshold = float(threshold)
                value = cand if rule == "min" else _drop_value(rule, base, cand)
                evidence = None
                if settings.statistical:
                    if metric == "accuracy" and rule == "min":
                        evidence = rate_evidence(int(round(cand * n)), n, threshold=threshold, rule="min",
                                                 confidence=settings.confidence)
                    elif metric == "accuracy" and rule == "max_drop":
                        # Tango's interval and the worse-at-all test do not depend on the threshold: `tango`'s
                        beyond, within = stats.paired_difference_p_values(neg, pos, n, bound=threshold)
                        evidence = Evidence(p_beyond=float(beyond), p_within=float(within),
                                            p_worse=float(tango["worse"]),
                                            interval=(float(tango["low"]), float(tango["high"])), method="Tango score")
                    else:
                        col = reps.candidate[metric] if rule == "min" else _drop_reps(  # type: ignore[union-attr]
                            rule, reps.baseline[metric], reps.candidate[metric])       # type: ignore[union-attr]
                        if calibration is None:
                            calibration = tango_calibration(reps, tango,  # type: ignore[arg-type]
                                                            confidence=settings.confidence)
                        scale = calibration
                        spread = float(np.nanmax(col) - np.nanmin(col)) if np.any(np.isfinite(col)) else 0.0
                        if math.isinf(scale) and spread > 0.0:
                            scale = 1.0      # F1 moved without any accuracy discordance: the plain bootstrap
                        if math.isinf(scale) and rule == "max_drop":
                            evidence = f1_evidence_without_spread(
                                neg, pos, n, f1_drop=float(value), threshold=threshold,
                                sensitivity=f1_sensitivity(metric, baseline_figures),
                                confidence=settings.confidence)
                        else:
                            col = calibrate(col, float(value) if rule != "min" else cand, scale)
                            evidence = bootstrap_evidence(col, threshold=threshold, rule=rule,
                                                          confidence=settings.confidence)
                findings.append(judge(metric=metric, rule=rule, threshold=threshold, value=float(value),
                                      baseline=base, candidate=cand, settings=settings, evidence=evidence))
            ci = ""
            if settings.statistical:
                if metric == "accuracy":
                    ci = f"[{-float(tango['high']):+.4f}, {-float(tango['low']):+.4f}]"
                elif reps is not None:
                    if calibration is None:
                        calibration = tango_calibration(reps, tango, confidence=settings.confidence)
                    scale = calibration
                    delta = calibrate(reps.candidate[metric] - reps.baseline[metric], cand - base, scale)
                    lo, hi = stats.percentile_interval(delta, confidence=settings.confidence)
                    ci = f"[{float(lo):+.4f}, {float(hi):+.4f}]"
            rows.append((metric, round(base, 4), round(cand, 4), f"{cand - base:+.4f}", ci))
        power: list[PowerNote] = []
        max_drop = (self.options.get("accuracy") or {}).get("max_drop")
        decisive_fail = any(f.metric == "accuracy" and f.status == "fail" and not f.inconclusive for f in findings)
        if max_drop is not None and not decisive_fail:
            note = power_note(n=n, negative=neg, positive=pos, max_drop=float(max_drop), confidence=settings.confidence)
            power += [note] if note is not None else []
        status, summary = check_summary(self.name, findings, passed=(
            f"accuracy {point['candidate']['accuracy']:.4f} vs baseline {point['baseline']['accuracy']:.4f} "
            f"({point['candidate']['accuracy'] - point['baseline']['accuracy']:+.4f}) is within every threshold"
        ))
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Overall metrics",
                headers=("metric", "baseline", "candidate", "delta",
                         f"{settings.confidence:.0%} CI of delta" if settings.statistical else ""),
                rows=tuple(rows),
            ),),
            details={
                "decision": settings.mode,
                "confidence": settings.confidence,
                "mcnemar_two_sided_p": stats.mcnemar_exact(neg, pos),
                "mcnemar_two_sided_p_means": "two-sided exact McNemar test of 'no difference at all' between the "
                                             "models (not the p of any threshold)",
                "worse_at_all_p": float(tango["worse"]),
                "negative_flips": neg,
                "positive_flips": pos,
                "num_samples": n,
                "bootstrap_resamples": reps.resamples if reps is not None else 0,
            },
            power=tuple(power),
        )


# ----------------------------------------------------------------------------------------------- per class


def _class_selection(spec: Any, class_names: tuple[str, ...], *, where: str) -> list[int]:
    if spec in (None, "all"):
        return list(range(len(class_names)))
    out = []
    for item in spec:
        if isinstance(item, int) and 0 <= item < len(class_names):
            out.append(item)
        elif str(item) in class_names:
            out.append(class_names.index(str(item)))
        else:
            from gate.errors import ConfigError

            raise ConfigError(
                f"{where}: unknown class {item!r} (classes: {', '.join(class_names[:20])})"
            )
    return out


def _class_evidence(metric: str, rule: str, threshold: float, ks: np.ndarray, cc: ClassCounts, cc_cells: Cells,
                    prec_se: np.ndarray, point: dict[str, dict[str, np.ndarray]], reps: Replicates | None,
                    confidence: float, score_intervals: ScoreIntervals | None = None) -> dict[str, np.ndarray]:
    """Raw p-values (beyond, within, worse) and intervals for classes `ks` of one (metric, rule); vectorised."""
    z = float(sps.norm.isf(stats.one_sided_alpha(confidence)))
    nan = np.full(ks.size, np.nan)
    if metric == "recall" and rule == "max_drop":
        ev = paired_drop_evidence(cc.negative[ks], cc.positive[ks], cc.support[ks], threshold=threshold,
                                  confidence=confidence)
        return {**ev, "method": "Tango score"}  # type: ignore[dict-item]
    if metric == "precision" and rule == "max_drop":
        est = point["baseline"]["precision"][ks] - point["candidate"]["precision"][ks]
        se = prec_se[ks]                                        # at the observed precisions: the interval
        corr = precision_correction(cc)[ks]
        beyond, within = stats.ratio_difference_p_values(
            est, precision_drop_se(cc_cells, cc, bound=threshold)[ks], bound=threshold, correction=corr)
        worse, _ = stats.ratio_difference_p_values(
            est, precision_drop_se(cc_cells, cc, bound=0.0)[ks], bound=0.0, correction=corr)
        ok = np.isfinite(se)
        return {"beyond": np.where(ok, beyond, np.nan), "within": np.where(ok, within, np.nan),
                "worse": np.where(ok, worse, np.nan), "low": est - z * se, "high": est + z * se,
                "method": "delta method"}  # type: ignore[dict-item]
    if rule == "min" and metric in ("recall", "precision"):
        tp = cc.tp_candidate[ks]
        den = cc.support[ks] if metric == "recall" else cc.predicted_candidate[ks]
        greater, less = stats.binomial_p_values(tp, den, bound=threshold)
        bounds = [stats.clopper_pearson_interval(int(t), int(d), confidence=confidence) for t, d in zip(tp, den)]
        return {"beyond": less, "within": greater, "worse": nan, "low": np.array([b[0] for b in bounds]),
                "high": np.array([b[1] for b in bounds]), "method": "exact binomial"}  # type: ignore[dict-item]
    assert reps is not None and reps.per_class
    col = reps.candidate[metric][:, ks] if rule == "min" else _drop_reps(
        rule, reps.baseline[metric][:, ks], reps.candidate[metric][:, ks])
    return class_bootstrap_evidence(metric, rule, threshold, col, class_patterns(cc_cells)[:, ks],
                                    reps.patterns[:, :, ks], confidence=confidence,  # type: ignore[index]
                                    score_intervals=score_intervals, members=ks)


def is_class_bootstrap_rule(metric: str, rule: str) -> bool:
    """Whether a per-class (or per-label) rule is decided by `class_bootstrap_evidence`: F1's, and every
    `max_relative_drop` (recall / precision `max_drop` and `min` are analytic)."""
    return metric == "f1" or rule == "max_relative_drop"


@dataclass
class ScoreIntervals:
    """`metrics.class_score_interval` of each (metric, rule), computed once for every class (or label) of
    `members[(metric, rule)]` and looked up by each threshold group of a check's family: it does not depend on
    the threshold, and costs about half a second per (metric, rule) at 1,000 classes, so an override section with
    another threshold would otherwise recompute it. A mutable cache that lives for one `compute`."""

    members: dict[tuple[str, str], np.ndarray]    # the classes the family judges by each (metric, rule), sorted
    patterns: dict[tuple[str, str], np.ndarray]   # (7, members) their pattern counts (metrics.class_patterns)
    confidence: float
    computed: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def interval(self, metric: str, rule: str, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) (K',) of classes `ks` (among the members): what class_score_interval gives on their own
        patterns, since it treats every class apart."""
        key = (metric, rule)
        if key not in self.computed:
            self.computed[key] = class_score_interval(metric, rule, self.patterns[key],
                                                      alpha=_claim_level(self.confidence))
        pos = np.searchsorted(self.members[key], ks)
        low, high = self.computed[key]
        return low[pos], high[pos]


def score_intervals_for(groups: dict[tuple[str, str, float], list[int]], patterns_of: Any, *,
                        confidence: float) -> ScoreIntervals:
    """The score-interval cache of a family's threshold groups (metric, rule, threshold) -> classes: each bootstrap
    rule's members are the union of its groups' classes; `patterns_of(classes)` gives their (7, K') pattern
    counts, called once (not at all when no group is a bootstrap rule)."""
    sets: dict[tuple[str, str], set[int]] = {}
    for (metric, rule, _), ks in groups.items():
        if is_class_bootstrap_rule(metric, rule):
            sets.setdefault((metric, rule), set()).update(ks)
    members = {key: np.array(sorted(v), dtype=np.int64) for key, v in sets.items()}
    patterns: dict[tuple[str, str], np.ndarray] = {}
    if members:
        union = np.array(sorted(set().union(*sets.values())), dtype=np.int64)
        every = patterns_of(union)
        patterns = {key: every[:, np.searchsorted(union, ks)] for key, ks in members.items()}
    return ScoreIntervals(members=members, patterns=patterns, confidence=confidence)


def class_bootstrap_evidence(metric: str, rule: str, threshold: float, col: np.ndarray, patterns: np.ndarray,
                             replicate_patterns: np.ndarray, *, confidence: float,
                             score_intervals: ScoreIntervals | None = None, members: np.ndarray | None = None
                             ) -> dict[str, Any]:
    """Raw (beyond, within, worse, low, high) (K',) of a per-class (or per-label) bootstrap rule: the percentile
    bootstrap of its replicates `col` (R, K'), the bootstrap-t from the data's (7, K') and each resample's
    (7, R, K') pattern counts, and the score-type test (`class_score_p_values`), each claim only when all of them
    make it (the largest p-value), as STUDENTIZED and SCORE say. The interval is the hull of the three intervals
    that invert those same tests (`stats.bootstrap_p_interval`, `metrics.class_score_interval`), clipped to the
    rule's range (`RULE_RANGE`): "within" is claimed when its bad end is inside the threshold, "beyond" (before the
    family's adjustment) when its good end is past it, up to `stats.tolerance` of the threshold (a bootstrap end is a
    replicate's value: a threshold within about 1e-9 of it above does not make the claim the interval seems to).
    With `score_intervals` (and `members`, the classes' indices in it) the score interval is looked up there
    rather than recomputed: the same numbers, once per (metric, rule) for every threshold group."""
    if STUDENTIZED == "off":
        out = studentized_tails(col, None, threshold=threshold, rule=rule, confidence=confidence)
    else:
        pseudo = studentized_replicates(metric, rule, patterns, replicate_patterns)
        out = studentized_tails(col, pseudo, threshold=threshold, rule=rule, confidence=confidence)
    low, high = out["low"], out["high"]
    if SCORE and STUDENTIZED != "off":
        # the score test only ever withholds a claim: where the bootstrap has none (NaN), neither is there one
        score = class_score_p_values(metric, rule, patterns, threshold=threshold)
        if score_intervals is not None and members is not None and (metric, rule) in score_intervals.members:
            s_low, s_high = score_intervals.interval(metric, rule, members)
        else:
            s_low, s_high = class_score_interval(metric, rule, patterns, alpha=_claim_level(confidence))
        low = np.where(np.isnan(low), np.nan, np.fmin(low, s_low))
        high = np.where(np.isnan(high), np.nan, np.fmax(high, s_high))
        out = {**{key: np.where(np.isnan(out[key]), np.nan, np.fmax(out[key], score[key])) for key in score},
               "method": out["method"] + " and score test"}
    bottom, top = RULE_RANGE[rule]
    return {**out, "low": np.clip(low, bottom, top), "high": np.clip(high, bottom, top)}


#: The range of each per-class rule's compared value, that its interval is clipped to: a rate, a drop of rates,
#: and a relative drop (b - c) / b <= 1.
RULE_RANGE = {"min": (0.0, 1.0), "max_drop": (-1.0, 1.0), "max_relative_drop": (-math.inf, 1.0)}


def _claim_level(confidence: float) -> float:
    """The p-value a claim must fall below (`stats.significant`: alpha, less float rounding)."""
    alpha = stats.one_sided_alpha(confidence)
    return alpha - stats.tolerance(alpha)


def class_score_p_values(metric: str, rule: str, patterns: np.ndarray, *, threshold: float) -> dict[str, np.ndarray]:
    """(beyond, within, worse) p-values (K',) of a per-class rule by the score-type z of gate.metrics.class_score_test
    (the variance where the null puts the counts)."""
    z = class_score_test(metric, rule, patterns, bound=threshold)
    if rule == "min":
        return {"beyond": sps.norm.cdf(z), "within": sps.norm.sf(z), "worse": np.full(z.shape, np.nan)}
    z0 = class_score_test(metric, rule, patterns, bound=0.0)
    return {"beyond": sps.norm.sf(z), "within": sps.norm.cdf(z), "worse": sps.norm.sf(z0)}


#: Resamples x classes whose pattern counts the bootstrap-t turns into standard errors at once (a few (7, R, K')
#: float64 temporaries of 16 MB each): classes are taken in blocks of this many cells.
STUDENTIZED_BLOCK = 1 << 18


def studentized_replicates(metric: str, rule: str, patterns: np.ndarray, replicate_patterns: np.ndarray
                           ) -> np.ndarray:
    """Bootstrap-t pseudo-replicates est - t* se (R, K') of a per-class rule's compared value: t* = (theta* - est)
    / se*, each resample's se* the delta method's from its own pattern counts (gate.metrics.class_rule_se), se the
    data's. NaN where either is undefined (the class absent from the resample, or never predicted). Classes in
    blocks of `STUDENTIZED_BLOCK` resamples x classes, so memory stays flat in K'."""
    est, se = class_rule_se(metric, rule, patterns)                    # (K',)
    resamples, width = replicate_patterns.shape[1], replicate_patterns.shape[2]
    step = max(1, STUDENTIZED_BLOCK // max(resamples, 1))
    out = np.empty((resamples, width))
    for start in range(0, width, step):
        cols = slice(start, start + step)
        theta, se_star = class_rule_se(metric, rule, replicate_patterns[:, :, cols])   # (R, block)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, cols] = est[cols] - (theta - est[cols]) / se_star * se[cols]
    return out


def studentized_tails(col: np.ndarray, pseudo: np.ndarray | None, *, threshold: float, rule: str,
                      confidence: float) -> dict[str, Any]:
    """The percentile bootstrap's (beyond, within, worse, low, high) of the replicates `col` (R, K'), combined with
    the bootstrap-t's (the same of its pseudo-replicates) as STUDENTIZED says: by default each claim only when both
    make it (the larger p-value, the hull of the intervals), the percentile's alone where the bootstrap-t is
    undefined. Each interval the one its p-values invert (`stats.bootstrap_p_interval`: order statistics, not
    interpolated quantiles), so that a claim is made exactly when the threshold lies outside it."""
    beyond, within, worse, _, _ = _bootstrap_tails(col, threshold=threshold, rule=rule, confidence=confidence)
    lo, hi = stats.bootstrap_p_interval(col, alpha=_claim_level(confidence))
    nan = np.full(np.shape(beyond), np.nan)
    out = {"beyond": beyond, "within": within, "worse": nan if worse is None else worse, "low": lo, "high": hi,
           "method": "paired bootstrap"}
    if pseudo is None:
        return out
    pseudo = np.where(np.isfinite(pseudo), pseudo, np.nan)
    defined = np.any(np.isfinite(pseudo), axis=0)
    safe = np.where(defined[None, :], pseudo, 0.0)
    t_beyond, t_within, t_worse, _, _ = _bootstrap_tails(safe, threshold=threshold, rule=rule,
                                                         confidence=confidence)
    t_lo, t_hi = stats.bootstrap_p_interval(safe, alpha=_claim_level(confidence))
    t = {"beyond": t_beyond, "within": t_within, "worse": nan if t_worse is None else t_worse, "low": t_lo,
         "high": t_hi}
    t = {key: np.where(defined, val, np.nan) for key, val in t.items()}
    if STUDENTIZED == "bootstrap-t":
        merged = {key: np.where(defined, t[key], out[key]) for key in t}
        return {**merged, "method": "paired bootstrap-t (studentized)"}
    merged = {key: np.fmax(out[key], t[key]) for key in ("beyond", "within", "worse", "high")}
    merged["low"] = np.fmin(out["low"], t["low"])
    return {**merged, "method": "paired bootstrap, percentile and bootstrap-t"}


class PerClassCheck(_PairedCheck):
    name = "per_class"
    METRICS = ("recall", "precision", "f1")

    def _rules_by_class(self) -> dict[int, dict[str, dict[str, Any]]]:
        names = self.ctx.class_names
        rules: dict[int, dict[str, dict[str, Any]]] = {}
        where = self.ctx.config.where("checks.per_class.classes")
        for k in _class_selection(self.options.get("classes"), names, where=where):
            rules[k] = {m: dict(self.options.get(m) or {}) for m in self.METRICS}
        for override in self.options.get("overrides") or []:
            for k in _class_selection(override["classes"], names, where=where.replace(".classes", ".overrides")):
                entry = rules.setdefault(k, {m: {} for m in self.METRICS})
                for m in self.METRICS:
                    entry[m].update(override.get(m) or {})
        return rules

    def replicate_settings(self) -> DecisionSettings | None:
        settings = decision_settings(self.ctx.config, self.options)
        return settings if settings.statistical and _per_class_needs_bootstrap(self.ctx.config) else None

    def compute(self) -> CheckResult:
        rules = self._rules_by_class()
        settings, point = self._settings()
        names = self.ctx.class_names
        cells = self.ctx.counts.cells()
        cc = class_counts(cells)
        pb, pc = point["baseline"], point["candidate"]
        # One family: every (class, metric, rule) comparison of a class with samples.
        family: list[tuple[int, str, str, float]] = [
            (k, m, rule, float(th[rule]))
            for k, by_metric in rules.items() if cc.support[k] > 0
            for m, th in by_metric.items() for rule in HIGHER_RULES if th.get(rule) is not None
        ]
        evidence: dict[tuple[int, str, str], Evidence] = {}
        notes: list[str] = []
        if settings.statistical and family:
            reps = run_replicates(self.ctx, settings) if _per_class_needs_bootstrap(self.ctx.config) else None
            prec_se = precision_drop_se(cells, cc)
            raw: dict[tuple[int, str, str], dict[str, Any]] = {}
            groups: dict[tuple[str, str, float], list[int]] = {}
            for k, m, rule, thr in family:
                groups.setdefault((m, rule, thr), []).append(k)
            intervals = score_intervals_for(groups, lambda ks: class_patterns(cells)[:, ks],
                                            confidence=settings.confidence)
            for (m, rule, thr), ks in groups.items():
                ev = _class_evidence(m, rule, thr, np.asarray(ks), cc, cells, prec_se, point, reps,
                                     settings.confidence, intervals)
                for i, k in enumerate(ks):
                    raw[(k, m, rule)] = {key: (val if key == "method" else float(val[i])) for key, val in ev.items()}
            keys = [(k, m, rule) for k, m, rule, _ in family]
            adj_beyond = stats.adjust(np.array([raw[key]["beyond"] for key in keys]), settings.multiple_comparisons)
            adj_worse = stats.adjust(np.array([raw[key]["worse"] for key in keys]), settings.multiple_comparisons)
            for i, key in enumerate(keys):
                r = raw[key]
                evidence[key] = Evidence(
                    p_beyond=float(adj_beyond[i]), p_within=r["within"],
                    p_worse=None if math.isnan(r["worse"]) else float(adj_worse[i]),
                    interval=(r["low"], r["high"]), method=r["method"])
            boot = sum(1 for key in keys if raw[key]["method"].startswith("paired bootstrap"))
            if reps is not None and boot:
                needed = stats.min_resamples(len(keys), confidence=settings.confidence) + 1
                if reps.resamples < needed:
                    notes.append(
                        f"resolution cap: {boot} of {len(keys)} per-class comparisons are decided by the bootstrap, "
                        f"whose smallest p-value 1/({reps.resamples}+1) cannot reach the "
                        f"{settings.multiple_comparisons} level for a family of {len(keys)}; they can never fail. "
                        f"Set decision.bootstrap_resamples to at least {needed}.")
        findings: list[Finding] = []
        for k, by_metric in rules.items():
            if cc.support[k] <= 0:
                continue
            for m, th in by_metric.items():
                base, cand = float(pb[m][k]), float(pc[m][k])
                for rule in HIGHER_RULES:
                    if th.get(rule) is None:
                        continue
                    value = cand if rule == "min" else _drop_value(rule, base, cand)
                    findings.append(judge(
                        metric=f"{m}[{names[k]}]", rule=rule, threshold=float(th[rule]), value=float(value),
                        baseline=base, candidate=cand, settings=settings, where=names[k],
                        evidence=evidence.get((k, m, rule)),
                    ))
        rows = tuple(
            (
                names[k],
                int(cc.support[k]),
                round(float(pb["precision"][k]), 4), round(float(pc["precision"][k]), 4),
                round(float(pb["recall"][k]), 4), round(float(pc["recall"][k]), 4),
                f"{pc['recall'][k] - pb['recall'][k]:+.4f}",
                round(float(pb["f1"][k]), 4), round(float(pc["f1"][k]), 4),
                f"{pc['f1'][k] - pb['f1'][k]:+.4f}",
            )
            for k in range(len(names))
        )
        status, summary = check_summary(self.name, findings, passed=f"all {len(rules)} classes are within their thresholds")
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Per-class metrics (baseline -> candidate)",
                headers=("class", "support", "precision b", "precision c", "recall b", "recall c", "recall delta",
                         "f1 b", "f1 c", "f1 delta"),
                rows=rows,
            ),),
            details={
                "decision": settings.mode,
                "multiple_comparisons": settings.multiple_comparisons if settings.statistical else "none",
                "comparisons": len(family),
            },
            notes=tuple(notes),
        )


# --------------------------------------------------------------------------------------------------- flips


class FlipsCheck(_PairedCheck):
    name = "flips"

    def compute(self) -> CheckResult:
        settings, point = self._settings()
        names = self.ctx.class_names
        comp = point["comparison"]
        n = self.ctx.counts.total
        neg = int(round(comp["negative_flips"]))
        agree = int(round(comp["agreement"] * n))
        conf = settings.confidence
        findings: list[Finding] = []
        th = (self.options.get("negative_flip_rate") or {}).get("max")
        if th is not None:
            findings.append(judge(
                metric="negative_flip_rate", rule="max", threshold=float(th), value=neg / n, settings=settings,
                evidence=rate_evidence(neg, n, threshold=float(th), rule="max", confidence=conf)
                if settings.statistical else None,
            ))
        th = (self.options.get("agreement") or {}).get("min")
        if th is not None:
            findings.append(judge(
                metric="agreement", rule="min", threshold=float(th), value=agree / n, settings=settings,
                evidence=rate_evidence(agree, n, threshold=float(th), rule="min", confidence=conf)
                if settings.statistical else None,
            ))
        th = (self.options.get("per_class_negative_flip_rate") or {}).get("max")
        support = point["baseline"]["support"]
        if th is not None:
            ks = [k for k in range(len(names)) if support[k] > 0]
            negs = np.array([int(round(comp["per_class_negative_flips"][k])) for k in ks], dtype=np.int64)
            sups = np.array([int(round(support[k])) for k in ks], dtype=np.int64)
            greater, less = stats.binomial_p_values(negs, sups, bound=float(th)) if ks else (np.array([]),) * 2
            adjusted = stats.adjust(greater, settings.multiple_comparisons) if ks else greater
            for i, k in enumerate(ks):
                evidence = None
                if settings.statistical:
                    evidence = Evidence(p_beyond=float(adjusted[i]), p_within=float(less[i]),
                                        interval=stats.clopper_pearson_interval(int(negs[i]), int(sups[i]),
                                                                                confidence=conf),
                                        method="exact binomial")
                findings.append(judge(
                    metric=f"negative_flip_rate[{names[k]}]", rule="max", threshold=float(th),
                    value=float(negs[i] / sups[i]), settings=settings, where=names[k], evidence=evidence,
                ))
        rows = tuple(
            (names[k], int(round(support[k])), int(round(comp["per_class_negative_flips"][k])),
             int(round(comp["per_class_positive_flips"][k])), round(float(comp["per_class_negative_flip_rate"][k]), 4))
            for k in range(len(names))
        )
        status, summary = check_summary(self.name, findings, passed=(
            f"negative flip rate {neg / n:.4f} ({neg} of {n} samples the baseline got right), "
            f"agreement {agree / n:.4f}"
        ))
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Flips by true class (negative: baseline right, candidate wrong)",
                headers=("class", "support", "negative flips", "positive flips", "negative flip rate"),
                rows=rows,
            ),),
            details={
                "negative_flips": neg,
                "positive_flips": int(round(comp["positive_flips"])),
                "negative_flip_rate": neg / n,
                "positive_flip_rate": float(comp["positive_flip_rate"]),
                "agreement": agree / n,
            },
        )
