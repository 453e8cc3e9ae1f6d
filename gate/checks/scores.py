"""Metrics of the class probabilities, paired: log loss, Brier score, calibration error, ROC-AUC, PR-AUC, top-k
accuracy, and a binary decision threshold. A candidate that keeps every argmax but becomes overconfident, or whose
ranking collapses while accuracy holds, fails here.

Which statistic backs which rule (docs/checks/scores.md has the measured coverage):
- ROC-AUC: DeLong's paired test (structural components from one sort of every class, O(n log n)), stratified by true class;
- log loss and Brier score: the mean paired difference of the per-sample terms, each claim made only when the
  normal test, the log-ratio test (the normal test of log(candidate / baseline), variance-stabilised) and Hall's
  skewness-corrected test all make it: the per-sample differences are skewed by a few confident mistakes, and any
  one interval alone then misses on one side;
- ECE: the delta method on the bins' gaps, widened on each side by the other model's bin-noise bias allowance
  (a binned ECE is biased upwards by noise, more for the better calibrated model);
- top-k accuracy and accuracy / recall / specificity at a threshold: Tango's score test for the paired proportion
  (`max_drop`), exact binomial (`min`); relative rules by the delta method on the same per-sample terms;
- PR-AUC: the normal interval of the paired difference of average precision's per-sample influences (its exact
  influence function, O(n log n) from one sort per class), as DeLong's is for ROC-AUC, each claim made only when
  the same test on the logit scale (logit(candidate) - logit(baseline), variance-stabilised) makes it too.
Every rule is decided by gate.verdict.judge from that Evidence.

State: each sample's log-odds per class of both models (float32) and its label, O(N x K), stated in the report;
beyond `max_samples` (or with `bins`), streamed sums and binned ranks plus a seeded uniform sample of samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from gate import score_metrics as sm
from gate import stats
from gate.checks.base import ROLES, Check, Step
from gate.checks.classification import paired_drop_evidence, rate_evidence
from gate.errors import ConfigError, DataError, ModelError
from gate.report.model import Chart, CheckResult, Finding, Table
from gate.verdict import DecisionSettings, Evidence, check_summary, decision_settings, judge

HIGHER_RULES = ("min", "max_drop", "max_relative_drop")
LOWER_RULES = ("max", "max_increase", "max_relative_increase")
#: metric key -> (higher is better, how its rules are decided), in the report's order
METRICS: dict[str, tuple[bool, str]] = {
    "log_loss": (False, "normal, log-ratio and skew-corrected, paired mean"),
    "brier": (False, "normal, log-ratio and skew-corrected, paired mean"),
    "ece": (False, "delta, bin-noise allowance"),
    "roc_auc": (True, "DeLong"),
    "pr_auc": (True, "delta (influence), normal and logit"),
    "top_k_accuracy": (True, "Tango score"),
}
THRESHOLD_METRICS = ("accuracy", "recall", "specificity")
_ROW_SUM_TOLERANCE = 1e-3
#: Hall's skewness correction (log loss, Brier) reads the per-sample differences' sample skewness times this: a set
#: that misses the few confident mistakes in the tail understates the skewness, and those are the sets whose
#: interval misses (benchmarks/scores_coverage.py chose it; docs/checks/scores.md has the measured rates).
SKEW_INFLATION = 2.0
#: Outputs whose log-odds are computed once over every kept batch (in compute, state or the switch to streaming)
#: rather than per batch: logits in float32 or narrower, kept as float32 (exact) until then. Row by row, so the
#: result is the per-batch one; a probability output is checked (rows summing to 1) as its batch arrives.
DEFERRED_KINDS = ("logits", "binary_logit")
#: Values (rows x classes) of kept logits turned into log-odds at a time, whole rows (at least one): one float64
#: block of 32 MiB and log_odds_array's few temporaries of its size, whatever N (docs/checks/scores.md, "Memory").
SETTLE_CELLS = 1 << 22


def _host(t: torch.Tensor) -> torch.Tensor:
    """`t.detach().cpu()`, skipping the calls that would return `t` itself (each costs a few microseconds a batch,
    more right after the models' forward pass has taken the caches)."""
    if t.requires_grad:
        t = t.detach()
    return t if t.is_cpu else t.cpu()


def log_odds_of(scores: torch.Tensor, kind: str, *, role: str) -> np.ndarray:
    """(B, K) float32 log-odds log(p_k / (1 - p_k)) of each class from the runner's scores of a `kind` output.

    Log-odds, not probabilities: a confident model's probabilities (and its log-probabilities, computed as
    z - logsumexp(z)) saturate in float32 from a logit margin of about 17, which would tie samples the model ranks
    apart. z_k - logsumexp of the other logits (in float64, the top class's rest summed without it) keeps every
    sample's rank, gives p_k = sigmoid and log p_k = -softplus(-odds) to full precision, and is monotone in p_k,
    so ROC-AUC, PR-AUC and top-k read the model's own ranking.
    """
    return log_odds_array(scores.detach().cpu().double().numpy(), kind, role=role)


def log_odds_array(s: np.ndarray, kind: str, *, role: str) -> np.ndarray:
    """`log_odds_of` a float64 (B, K) array of scores (row by row: a batch or all of them at once alike)."""
    if kind in DEFERRED_KINDS:
        rows = np.arange(s.shape[0])
        top = s.argmax(axis=1)
        # +-inf logits give inf - inf (NaN, which ranks nothing and fails) or log(0): values, not warnings
        with np.errstate(divide="ignore", invalid="ignore"):
            shifted = s - s[rows, top][:, None]
            e = np.exp(shifted)
            rest = e.sum(axis=1, keepdims=True) - e
            e[rows, top] = 0.0
            rest[rows, top] = e.sum(axis=1)
            shifted -= np.log(rest)
            return shifted.astype(np.float32)
    p = s
    if kind == "probabilities":
        finite = np.isfinite(p).all(axis=1)
        sums = p[finite].sum(axis=1)
        if sums.size and np.abs(sums - 1.0).max() > _ROW_SUM_TOLERANCE:
            i = int(np.argmax(np.abs(sums - 1.0)))
            raise ModelError(
                f"{role}: output: probabilities, but a row sums to {float(sums[i]):.4g}, not 1: the score metrics "
                "need a distribution over the classes (are they logits, or per-class sigmoids?)"
            )
    p = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return (np.log(p) - np.log1p(-p)).astype(np.float32)


@dataclass(frozen=True)
class _Measure:
    """One metric of both models and the per-sample influences its statistics use."""

    baseline: float
    candidate: float
    psi_baseline: np.ndarray | None = None
    psi_candidate: np.ndarray | None = None
    strata: np.ndarray | None = None
    hits: tuple[np.ndarray, np.ndarray] | None = None    # proportions: per-sample successes of each model
    method: str = ""
    scale: float = 1.0                                   # streamed: sqrt(kept / N), the kept sample's se -> N's
    pairs: tuple[int, int, int, int] | None = None       # proportions: (b, c, n, candidate successes), exact
    bias: tuple[float, float] | None = None              # ECE: how far each model's estimate may sit above its truth
    transform: str = ""                                  # "log" / "logit": also the variance-stabilised test
    skew: bool = False                                   # also Hall's skewness-corrected test of the mean
    parts: dict[str, np.ndarray] | None = None           # ROC-AUC, PR-AUC: each model's per-class values (curves)
    #: spreads of the per-sample influences, computed once per measure (the rules and the table's interval share
    #: them; a drop's and an increase's influences are each other's negatives, with the same spread)
    spreads: dict[tuple[Any, ...], float] = field(default_factory=dict, init=False, repr=False, compare=False)


def _spread(m: _Measure, key: tuple[Any, ...], influence: Any) -> float:
    """m.spreads[key], from `influence()` the first time it is asked for."""
    if key not in m.spreads:
        m.spreads[key] = influence()
    return m.spreads[key]


def contrast_spread(rule: str, m: _Measure, *, stratified: bool) -> float:
    """The standard error of the mean of `contrast_influence(rule, m)` (within m.strata if `stratified`), before
    m.scale."""
    family = "difference" if rule in ("max_drop", "max_increase") else rule
    return _spread(m, ("se", family, stratified),
                   lambda: sm.contrast_se(contrast_influence(rule, m), m.strata if stratified else None))


def prime_spreads(measures: list[_Measure]) -> None:
    """The spreads every statistical run asks for, of every measure at once: the unstratified standard error of
    the paired difference (`contrast_spread`'s "difference" family), the transformed test's (`_transformed_parts`,
    the paired form) and the skewness of the increase (`_skew_parts`), each a row of one (rows, n) array whose
    row-wise reduces are numpy's pairwise sums of each row alone: the values the lazy path computes, in a few
    numpy calls for all of them. Stratified spreads (ROC-AUC's) stay lazy."""
    rows: list[tuple[_Measure, str, np.ndarray, np.ndarray | None]] = []
    for m in measures:
        if m.psi_baseline is None or m.strata is not None or m.psi_candidate.size < 2:
            continue
        pb, pc = m.psi_baseline, m.psi_candidate
        rows.append((m, "difference", pb, pc))
        if m.transform:
            b, c = m.baseline, m.candidate
            if math.isfinite(_forward(m.transform, b)) and math.isfinite(_forward(m.transform, c)):
                rows.append((m, "transformed", pb * _slope(m.transform, b), pc * _slope(m.transform, c)))
    if not rows:
        return
    n = rows[0][0].psi_candidate.size
    if any(m.psi_candidate.size != n for m, *_ in rows):
        return
    x = np.empty((len(rows), n))
    for i, (m, kind, pb, pc) in enumerate(rows):
        if kind == "difference":
            np.multiply(-1.0, np.subtract(pb, pc, out=x[i]), out=x[i])     # contrast_influence("max_increase")
        else:
            np.subtract(pc, pb, out=x[i])
    d = x - (np.add.reduce(x, axis=1) / n)[:, None]             # sample_variance's and skewness' operations
    d2 = d * d
    ss = np.add.reduce(d2, axis=1)
    se = np.sqrt(ss / (n - 1) / n).tolist()
    skewed = [i for i, (m, kind, *_) in enumerate(rows) if kind == "difference" and m.skew]
    cubes = np.add.reduce(d2[skewed] * d[skewed], axis=1).tolist() if skewed else []
    for i, (m, kind, *_) in enumerate(rows):
        m.spreads.setdefault(("se", "difference", False) if kind == "difference" else ("transformed", False), se[i])
    for i, cube in zip(skewed, cubes):
        m2 = float(ss[i] / n)
        rows[i][0].spreads.setdefault(("skew", "max_increase"), cube / n / m2 ** 1.5 if m2 > 0 else 0.0)


@lru_cache(maxsize=16)
def _z(confidence: float) -> float:
    """The normal quantile of the one-sided level (1.96 at 0.95): NormalDist, as scipy's isf costs ~1 ms a call."""
    return NormalDist().inv_cdf(1.0 - stats.one_sided_alpha(confidence))


def _normal_p(value: float, se: float, bound: float) -> tuple[float, float]:
    """(above, below): stats.ratio_difference_p_values of one estimate against `bound`, in Python floats (the same
    arithmetic, without numpy's cost per call)."""
    num = value - bound
    if se > 0:
        z = num / se
    else:
        z = math.inf if num > 0 else (-math.inf if num < 0 else 0.0)
    return float(ndtr(-z)), float(ndtr(z))


def compared_value(rule: str, base: float, cand: float) -> float:
    """The quantity a rule compares: the candidate for min/max, a drop or an increase (positive = worse)."""
    if rule in ("min", "max"):
        return cand
    worse = base - cand if rule in ("max_drop", "max_relative_drop") else cand - base
    if rule in ("max_relative_drop", "max_relative_increase"):
        return worse / base if base > 0 else (0.0 if worse <= 0 else math.inf)
    return worse


def contrast_influence(rule: str, m: _Measure) -> np.ndarray:
    """Per-sample influence of `compared_value` (the delta method on the two models' influences)."""
    b, c, pb, pc = m.baseline, m.candidate, m.psi_baseline, m.psi_candidate
    if rule in ("min", "max"):
        return pc
    sign = 1.0 if rule in ("max_drop", "max_relative_drop") else -1.0    # drop: b - c; increase: c - b
    if rule in ("max_drop", "max_increase"):
        return sign * (pb - pc)
    # (b - c) / b = 1 - c / b: d/db = c / b^2, d/dc = -1 / b (and the negatives for an increase)
    return sign * ((c / (b * b)) * pb - pc / b) if b > 0 else np.full_like(pb, np.nan)


def normal_evidence(value: float, se: float, *, rule: str, threshold: float, confidence: float,
                    method: str) -> Evidence:
    """One-sided normal p-values of `value` (standard error `se`) against the threshold, and "worse at all"."""
    if not math.isfinite(se):
        return Evidence(p_beyond=float("nan"), p_within=float("nan"), interval=(float("nan"),) * 2, method=method)
    return _evidence(_normal_claims(value, se, rule=rule, threshold=threshold, z=_z(confidence)), method)


#: A test's claims: (p_beyond, p_within, p_worse, interval low, interval high), an Evidence's numbers
Claims = tuple[float, float, "float | None", float, float]


def _evidence(claims: Claims, method: str) -> Evidence:
    beyond, within, worse, low, high = claims
    return Evidence(p_beyond=beyond, p_within=within, p_worse=worse, interval=(low, high), method=method)


def _normal_claims(value: float, se: float, *, rule: str, threshold: float, z: float) -> Claims:
    """`normal_evidence`'s numbers, for a finite se."""
    above, below = _normal_p(value, se, threshold)
    beyond, within = (below, above) if rule == "min" else (above, below)
    worse = None
    if rule not in ("min", "max"):
        worse = _normal_p(value, se, 0.0)[0]
    return beyond, within, worse, value - z * se, value + z * se


def proportion_evidence(rule: str, m: _Measure, *, threshold: float, confidence: float) -> Evidence:
    """Tango's score test for a paired proportion's drop, exact binomial for its floor, delta method for relative."""
    b, c, n, successes = proportion_counts(m)
    if rule == "min":
        return rate_evidence(successes, n, threshold=threshold, rule="min", confidence=confidence)
    if rule == "max_drop":
        ev = paired_drop_evidence(np.array(b), np.array(c), np.array(n), threshold=threshold, confidence=confidence)
        return Evidence(p_beyond=float(ev["beyond"]), p_within=float(ev["within"]), p_worse=float(ev["worse"]),
                        interval=(float(ev["low"]), float(ev["high"])), method="Tango score")
    value = compared_value(rule, m.baseline, m.candidate)
    se = contrast_spread(rule, m, stratified=False) * m.scale
    return normal_evidence(value, se, rule=rule, threshold=threshold, confidence=confidence, method="delta method")


def proportion_counts(m: _Measure) -> tuple[int, int, int, int]:
    """(baseline-only successes, candidate-only successes, samples, candidate successes) of a paired proportion."""
    if m.pairs is not None:
        return m.pairs
    assert m.hits is not None
    hb, hc = m.hits
    return int(np.count_nonzero(hb & ~hc)), int(np.count_nonzero(~hb & hc)), int(hb.size), int(np.count_nonzero(hc))


def allowance_bounds(rule: str, m: _Measure) -> tuple[float, float]:
    """The compared quantity at the two ends of the models' bias allowances: (lowest, highest) it may truly be.

    Each model's truth lies between its estimate minus its allowance and its estimate; the compared quantity is
    monotone in both (worse as the candidate grows, better as the baseline grows), so its ends are there."""
    assert m.bias is not None
    ab, ac = m.bias
    ends = (compared_value(rule, m.baseline, m.candidate - ac), compared_value(rule, m.baseline - ab, m.candidate))
    return min(ends), max(ends)


def allowance_evidence(rule: str, m: _Measure, *, threshold: float, confidence: float) -> Evidence:
    """Normal evidence whose claims are each made from the end of the allowance least favourable to them: "beyond"
    from the lowest the quantity may truly be, "within" from the highest."""
    low, high = allowance_bounds(rule, m)
    se = contrast_spread(rule, m, stratified=m.strata is not None) * m.scale
    at_low = normal_evidence(low, se, rule=rule, threshold=threshold, confidence=confidence, method=m.method)
    at_high = normal_evidence(high, se, rule=rule, threshold=threshold, confidence=confidence, method=m.method)
    z = _z(confidence)
    return Evidence(p_beyond=at_low.p_beyond, p_within=at_high.p_within, p_worse=at_low.p_worse,
                    interval=(low - z * se, high + z * se), method=m.method)


def hall_statistic(t: np.ndarray | float, a: float) -> np.ndarray | float:
    """Hall's (1992) transformation of a studentized mean, g(t) = t + a t^2 / 3 + a^2 t^3 / 27 + a / 6, a = skewness /
    sqrt(n): g(t) is standard normal to O(1/n) where t is skewed by O(1/sqrt(n)); monotone, g' = (1 + a t / 3)^2."""
    if not isinstance(t, float):
        t = np.asarray(t, dtype=np.float64)
    # a Python float (a rule's test) is computed in Python floats: the same IEEE operations in the same order,
    # without numpy's cost per operation on a scalar
    return t + a * t * t / 3.0 + a * a * (t * t * t) / 27.0 + a / 6.0


def hall_quantile(x: float, a: float) -> float:
    """The t with hall_statistic(t, a) = x: 3 / a ((1 + a (x - a / 6))^(1/3) - 1), x itself as a -> 0."""
    if abs(a) < 1e-9:
        return float(x)
    return float(3.0 / a * (np.cbrt(1.0 + a * (x - a / 6.0)) - 1.0))


def skewness(psi: np.ndarray) -> float:
    """Sample skewness m3 / m2^(3/2) of per-sample values (0 for constant ones)."""
    x = np.asarray(psi, dtype=np.float64)
    x = x - np.add.reduce(x) / x.size                    # np.mean's operations, without its per-call cost
    m2 = float(np.add.reduce(x * x) / x.size)
    return float(np.add.reduce(x * x * x) / x.size) / m2 ** 1.5 if m2 > 0 else 0.0   # not x ** 3: a slow pow


def _claims(rule: str, above: Any, below: Any) -> tuple[float, float]:
    """(p_beyond, p_within) from the p-values of "truly above the bound" and "truly below" (a min rule is beyond
    below its floor, every other rule above its threshold)."""
    return (float(below), float(above)) if rule == "min" else (float(above), float(below))


def skew_evidence(rule: str, m: _Measure, *, threshold: float, confidence: float) -> Evidence | None:
    """Hall's skewness-corrected test of the compared quantity, a mean of the rule's per-sample influences: t =
    (value - bound) / se is read through hall_statistic with a = SKEW_INFLATION x skewness / sqrt(N) (N every sample;
    in streamed mode the kept sample's skewness). None where se is 0 or undefined (the normal test decides)."""
    claims = _skew_claims(rule, m, threshold=threshold, z=_z(confidence))
    return None if claims is None else _evidence(claims, m.method)


def _skew_claims(rule: str, m: _Measure, *, threshold: float, z: float) -> Claims | None:
    """`skew_evidence`'s numbers: the claim "truly above the bound" where g(t) is large (it rejects "at or
    below"), "truly below" where it is small."""
    parts = _skew_parts(rule, m)
    if parts is None:
        return None
    value, se, a = parts
    g = hall_statistic((value - threshold) / se, a)
    beyond, within = _claims(rule, float(ndtr(-g)), float(ndtr(g)))
    worse = None if rule in ("min", "max") else float(ndtr(-hall_statistic((value - 0.0) / se, a)))
    return (beyond, within, worse, *_skew_interval(value, se, a, z))


def _skew_parts(rule: str, m: _Measure) -> tuple[float, float, float] | None:
    """(value, se, a) of `skew_evidence`, None where it has no test."""
    value = compared_value(rule, m.baseline, m.candidate)
    se = contrast_spread(rule, m, stratified=False) * m.scale
    if not (math.isfinite(se) and se > 0 and math.isfinite(value)):
        return None
    size = m.psi_candidate.size
    a = SKEW_INFLATION * _spread(m, ("skew", rule), lambda: skewness(contrast_influence(rule, m))) * m.scale / math.sqrt(size)
    return value, se, a


def _skew_interval(value: float, se: float, a: float, z: float) -> tuple[float, float]:
    return value - se * hall_quantile(z, a), value - se * hall_quantile(-z, a)


def _forward(transform: str, x: float) -> float:
    """log or logit (numpy's), -inf / +inf beyond the ends of its domain (NaN: -inf for log, +inf for logit)."""
    if transform == "log":
        return float(np.log(x)) if x > 0 else -math.inf
    if 0 < x < 1:
        return float(np.log(x)) - float(np.log1p(-x))
    return -math.inf if x <= 0 else math.inf


def _backward(transform: str, u: float) -> float:
    return float(np.exp(u)) if transform == "log" else float(1.0 / (1.0 + np.exp(-u)))


def _slope(transform: str, x: float) -> float:
    return 1.0 / x if transform == "log" else 1.0 / (x * (1.0 - x))


def candidate_at(rule: str, baseline: float, bound: float) -> float:
    """The candidate's value at which `compared_value(rule, baseline, .)` equals `bound`."""
    if rule in ("min", "max"):
        return bound
    if rule == "max_drop":
        return baseline - bound
    if rule == "max_increase":
        return baseline + bound
    if rule == "max_relative_drop":
        return baseline * (1.0 - bound)
    if rule == "max_relative_increase":
        return baseline * (1.0 + bound)
    raise KeyError(rule)


def transformed_evidence(rule: str, m: _Measure, *, threshold: float, confidence: float) -> Evidence | None:
    """The normal test on the variance-stabilised scale f = log (a loss) or logit (a share): of f(candidate) -
    f(baseline), or of f(candidate) for min/max, with the delta method's standard error from the influences times f',
    mapped back with the baseline held at its estimate. A loss or a precision whose spread grows with its level (a
    few confident mistakes, a low average precision) keeps its interval from being short exactly where the estimate
    is. None where f is undefined at an estimate (an average precision of 1): the normal test decides."""
    claims = _transformed_claims(rule, m, threshold=threshold, z=_z(confidence))
    return None if claims is None else _evidence(claims, m.method)


def _transformed_claims(rule: str, m: _Measure, *, threshold: float, z: float) -> Claims | None:
    """`transformed_evidence`'s numbers: at a bound, d = f(the candidate's value there) - anchor on the scale, and
    the compared quantity is truly above the bound where the estimate delta is beyond d in the direction the
    quantity grows (with the candidate for min/max and increases, against it for drops)."""
    parts = _transformed_parts(rule, m)
    if parts is None:
        return None
    se, anchor, delta = parts
    f, b = m.transform, m.baseline
    rising = rule in ("min", "max", "max_increase", "max_relative_increase")   # compared value grows with candidate

    def above_below(bound: float) -> tuple[float, float]:
        d = _forward(f, candidate_at(rule, b, bound)) - anchor
        up, down = float(ndtr((d - delta) / se)), float(ndtr((delta - d) / se))
        return (up, down) if rising else (down, up)

    low, high = _transformed_interval(rule, m, se, anchor, delta, z)
    beyond, within = _claims(rule, *above_below(threshold))
    return beyond, within, None if rule in ("min", "max") else above_below(0.0)[0], low, high


def _transformed_parts(rule: str, m: _Measure) -> tuple[float, float, float] | None:
    """(se, anchor, delta) of `transformed_evidence` on its scale, None where it has no test."""
    f, b, c = m.transform, m.baseline, m.candidate
    absolute = rule in ("min", "max")
    fb, fc = _forward(f, b), _forward(f, c)
    if not (math.isfinite(fb) and math.isfinite(fc)):
        return None
    se = _spread(m, ("transformed", absolute), lambda: sm.contrast_se(
        m.psi_candidate * _slope(f, c) - (0.0 if absolute else m.psi_baseline * _slope(f, b)), None)) * m.scale
    if not (math.isfinite(se) and se > 0):
        return None
    anchor = fc if absolute else fb
    return se, anchor, fc - anchor


def _transformed_interval(rule: str, m: _Measure, se: float, anchor: float, delta: float,
                          z: float) -> tuple[float, float]:
    ends = sorted(compared_value(rule, m.baseline, _backward(m.transform, anchor + delta + s * z * se))
                  for s in (-1.0, 1.0))
    return ends[0], ends[1]


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return float("nan") if math.isnan(a) or math.isnan(b) else max(a, b)


def rule_evidence(rule: str, m: _Measure, *, threshold: float, confidence: float) -> Evidence:
    if m.hits is not None:
        return proportion_evidence(rule, m, threshold=threshold, confidence=confidence)
    if m.bias is not None:
        return allowance_evidence(rule, m, threshold=threshold, confidence=confidence)
    value = compared_value(rule, m.baseline, m.candidate)
    se = contrast_spread(rule, m, stratified=m.strata is not None) * m.scale
    if not m.transform or not math.isfinite(se):
        return normal_evidence(value, se, rule=rule, threshold=threshold, confidence=confidence, method=m.method)
    # a claim every test makes: each p-value the largest of the normal, transformed and skew-corrected tests', the
    # interval the hull of theirs
    z = _z(confidence)
    beyond, within, worse, low, high = _normal_claims(value, se, rule=rule, threshold=threshold, z=z)
    for claims in (_transformed_claims(rule, m, threshold=threshold, z=z),
                   _skew_claims(rule, m, threshold=threshold, z=z) if m.skew else None):
        if claims is not None:
            beyond, within, worse = _larger(beyond, claims[0]), _larger(within, claims[1]), _larger(worse, claims[2])
            low, high = min(low, claims[3]), max(high, claims[4])
    m.spreads[("hull", rule, confidence)] = (low, high)    # = hull_interval(rule, m, ...): the table's, if asked
    return Evidence(p_beyond=beyond, p_within=within, p_worse=worse, interval=(low, high), method=m.method)


def delta_interval(m: _Measure, *, confidence: float) -> tuple[float, float] | None:
    """Interval of candidate - baseline for the table: the normal interval of the paired per-sample influences
    (DeLong's for ROC-AUC), widened by the bias allowances for ECE, the hull with the log-ratio and skew-corrected
    intervals for the log loss and with the logit one for PR-AUC. The rules' own intervals are in their findings."""
    z = _z(confidence)
    if m.psi_baseline is None:
        return None
    se = contrast_spread("max_increase", m, stratified=m.strata is not None) * m.scale    # of psi_c - psi_b
    d = m.candidate - m.baseline
    if m.bias is not None:
        return d - m.bias[1] - z * se, d + m.bias[0] + z * se
    if m.transform and math.isfinite(se):
        return hull_interval("max_increase", m, confidence=confidence)
    return d - z * se, d + z * se


def hull_interval(rule: str, m: _Measure, *, confidence: float) -> tuple[float, float]:
    """`rule_evidence(rule, m, ...).interval` of a measure with a transform and a finite spread, without the
    p-values (no interval depends on the threshold): the normal one's hull with the transformed and skew-corrected
    ones, taken in the same order."""
    known = m.spreads.get(("hull", rule, confidence))
    if known is not None:           # the rule's own evidence made it
        return known
    z = _z(confidence)
    value = compared_value(rule, m.baseline, m.candidate)
    se = contrast_spread(rule, m, stratified=m.strata is not None) * m.scale
    lo, hi = value - z * se, value + z * se
    others = []
    parts = _transformed_parts(rule, m)
    if parts is not None:
        others.append(_transformed_interval(rule, m, *parts, z))
    if m.skew:
        skew = _skew_parts(rule, m)
        if skew is not None:
            others.append(_skew_interval(*skew, z))
    for a, b in others:
        lo, hi = min(lo, a), max(hi, b)
    return lo, hi


# -------------------------------------------------------------------------------------------- thresholds


def choose_threshold(spec: Any, p1: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The decision threshold on class 1's probability (predict 1 when p1 >= t), and how it was chosen."""
    if isinstance(spec, (int, float)):
        return float(spec), "fixed"
    scores = np.unique(p1.astype(np.float64))[::-1]                  # candidate thresholds, high to low
    order = np.argsort(-p1.astype(np.float64), kind="mergesort")
    s_sorted, pos_sorted = p1.astype(np.float64)[order], (y[order] == 1)
    # predictions p1 >= t for t = each distinct score: counts up to the last sample at or above t
    last = np.searchsorted(-s_sorted, -scores, side="right") - 1
    tp = np.cumsum(pos_sorted)[last]
    fp = np.cumsum(~pos_sorted)[last]
    n1, n0 = int(pos_sorted.sum()), int((~pos_sorted).sum())
    if spec["choose"] == "best_f1":
        f1 = 2.0 * tp / np.maximum(tp + fp + n1, 1)
        i = int(np.argmax(f1))
        return float(scores[i]), f"best F1 on the baseline ({float(f1[i]):.4f})"
    target = float(spec.get("fpr", 0.05))
    ok = fp / max(n0, 1) <= target + stats.tolerance(target)
    if not ok.any():
        return math.inf, (f"false-positive rate <= {target:g} on the baseline: no score reaches it, so every sample "
                          "is predicted negative")
    i = int(np.flatnonzero(ok)[-1])                                  # the lowest threshold still within the rate
    return float(scores[i]), f"false-positive rate {fp[i] / max(n0, 1):.4f} <= {target:g} on the baseline"


def threshold_hits(pred: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample successes of each thresholded metric that is a proportion, over its own samples."""
    return {"accuracy": pred == y, "recall": pred[y == 1] == 1, "specificity": pred[y == 0] == 0}


def threshold_point(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    tn = float(np.sum((pred == 0) & (y == 0)))
    div = lambda a, b: a / b if b > 0 else 0.0  # noqa: E731 - scikit-learn's zero_division=0
    return {"accuracy": div(tp + tn, tp + tn + fp + fn), "precision": div(tp, tp + fp), "recall": div(tp, tp + fn),
            "specificity": div(tn, tn + fp), "f1": div(2 * tp, 2 * tp + fp + fn)}


# ---------------------------------------------------------------------------------------------- the check


def sample_priority(index: np.ndarray, seed: int) -> np.ndarray:
    """A seeded uniform uint64 priority per global sample index (splitmix64 of seed + index): the kept sample is
    the `max_samples` samples of lowest priority, the same whatever the batches, shards or order they came in."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) + np.uint64(seed % 2 ** 63) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


_ROW_KEYS = ("baseline", "candidate", "labels", "index")


def _global_index(parts: list[np.ndarray | tuple[int, int]]) -> np.ndarray:
    """The global sample indices of the kept batches, in order: each an int64 array, or a batch's (offset, size) for
    offset ... offset + size - 1; one arange when the batches follow each other."""
    if len(parts) == 1 and not isinstance(parts[0], tuple):
        return parts[0]
    if parts and all(isinstance(p, tuple) for p in parts):
        ends = [o + n for o, n in parts]
        if all(parts[i][0] == ends[i - 1] for i in range(1, len(parts))):
            return np.arange(parts[0][0], ends[-1], dtype=np.int64)
    return np.concatenate([np.arange(p[0], p[0] + p[1], dtype=np.int64) if isinstance(p, tuple) else p
                           for p in parts]) if parts else np.zeros(0, dtype=np.int64)


class ScoresCheck(Check):
    name = "scores"
    #: rows.* are the kept per-sample values (all samples, or the streamed mode's kept sample), concatenated across
    #: shards and ordered by rows.index; stream.* are the streamed mode's sums, which add up.
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: Any) -> None:
        super().__init__(options, ctx)
        self._odds: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
        self._logits: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}   # not yet in self._odds
        self._labels: list[np.ndarray] = []
        self._index: list[np.ndarray | tuple[int, int]] = []     # arrays, or a batch's (offset, size)
        self._n = 0
        self._max = int(options.get("max_samples") or 2_000_000)
        self._bins = options.get("bins")
        self._stream: sm.StreamedScores | None = None
        self._kept: dict[str, np.ndarray] = {}          # streamed: the kept sample's rows (a buffer, _filled used)
        self._filled = 0
        self._cutoff = np.uint64(2 ** 64 - 1)          # streamed: priorities at or above it are never kept again
        self._seed = int(getattr(ctx.config, "seed", 0) or 0)

    def setup(self) -> None:
        where = self.ctx.config.where
        spec = self.options.get("threshold")
        rules = self.options.get("at_threshold") or {}
        if spec is None and any(self._gated(m, rules) for m in THRESHOLD_METRICS):
            raise ConfigError(f"{where('checks.scores.at_threshold')}: rules at a threshold need checks.scores.threshold "
                              "(a number, {choose: best_f1} or {choose: fpr, fpr: 0.05})")
        if isinstance(spec, dict) and spec.get("choose") == "fpr" and spec.get("fpr") is None:
            raise ConfigError(f"{where('checks.scores.threshold')}: choose: fpr needs the false-positive rate to hold, "
                              "e.g. {choose: fpr, fpr: 0.05}")

    def _kind(self, role: str) -> str:
        return getattr(self.ctx.models.get(role), "output", "logits") if self.ctx.models else "logits"

    def update(self, step: Step) -> None:
        k = int(step.scores["baseline"].shape[1])
        y = _host(step.labels).numpy().astype(np.int32)
        streams = self._stream is not None or self._bins is not None or self._n + y.size > self._max
        odds: dict[str, np.ndarray] = {}
        logits: dict[str, np.ndarray] = {}
        for role in ROLES:
            scores = _host(step.scores[role])
            kind = self._kind(role)
            if not streams and kind in DEFERRED_KINDS and scores.dtype != torch.float64:
                logits[role] = (scores if scores.dtype == torch.float32 else scores.float()).numpy().copy()
            else:
                odds[role] = log_odds_of(scores, kind, role=role)
        if self._n == 0 and self.options.get("threshold") is not None and k != 2:
            raise ConfigError(
                f"{self.ctx.config.where('checks.scores.threshold')}: a decision threshold needs a binary model, but "
                f"the models output {k} classes")
        if self._stream is None and (self._bins is not None or self._n + y.size > self._max):
            self._start_stream(k)
        if self._stream is None:
            for role in ROLES:
                if role in logits:
                    self._logits[role].append(logits[role])
                else:
                    self._settle(role)
                    self._odds[role].append(odds[role])
            self._labels.append(y)
            self._index.append((int(step.offset), int(y.size)))     # the batch's global indices, made in _rows
        else:
            self._stream.update((odds["baseline"], odds["candidate"]), y)
            index = int(step.offset) + np.arange(y.size, dtype=np.int64)
            self._keep_sample({**odds, "labels": y, "index": index})
        self._n += y.size

    def _settle(self, *roles: str) -> None:
        """The deferred logits' log-odds of each role given, into the kept log-odds (in batch order): one role at a
        time, SETTLE_CELLS values at a time, into one float32 array, each batch freed once read (row by row, so each
        row's own log-odds; alive at once: the role's logits not yet read, its log-odds, one float64 block). Both
        roles' in one block when they fit one (the same rows, so the same values: half the numpy calls)."""
        pending = [role for role in roles if self._logits[role]]
        if len(pending) == 2:
            sizes = [sum(len(b) for b in self._logits[role]) for role in pending]
            k = self._logits[pending[0]][0].shape[1]
            if sum(sizes) * k <= SETTLE_CELLS and self._logits[pending[1]][0].shape[1] == k:
                block = np.concatenate(self._logits[pending[0]] + self._logits[pending[1]], dtype=np.float64)
                for role in pending:
                    self._logits[role] = []
                both = log_odds_array(block, "logits", role=pending[0])
                del block
                self._odds[pending[0]].append(both[:sizes[0]])
                self._odds[pending[1]].append(both[sizes[0]:])
                return
        for role in roles:
            batches = self._logits[role]
            if not batches:
                continue
            self._logits[role] = []
            n, k = sum(len(b) for b in batches), batches[0].shape[1]
            if n * k <= SETTLE_CELLS:           # one block: the batches joined into it at once
                block = batches[0].astype(np.float64) if len(batches) == 1 else \
                    np.concatenate(batches, dtype=np.float64)
                del batches
                self._odds[role].append(log_odds_array(block, "logits", role=role))
                continue
            out = np.empty((n, k), dtype=np.float32)
            block = np.empty((max(1, min(SETTLE_CELLS // max(k, 1), n)), k), dtype=np.float64)
            batches.reverse()                   # popped from the end: each batch freed as soon as it is read
            done = filled = 0
            while batches:
                batch = batches.pop()
                start = 0
                while start < len(batch):
                    take = min(len(block) - filled, len(batch) - start)
                    block[filled:filled + take] = batch[start:start + take]
                    filled, start = filled + take, start + take
                    if filled == len(block):
                        out[done:done + filled] = log_odds_array(block, "logits", role=role)
                        done, filled = done + filled, 0
                del batch
            if filled:
                out[done:done + filled] = log_odds_array(block[:filled], "logits", role=role)
            self._odds[role].append(out)

    def _new_stream(self, k: int) -> sm.StreamedScores:
        return sm.StreamedScores(k, bins=int(self._bins or 1000), ece_bins=int(self.options.get("ece_bins", 15)),
                                 top_k=int(self.options.get("top_k", 5)))

    def _start_stream(self, k: int) -> None:
        """From here on: exact sums and binned ranks for every sample, per-sample values for a uniform sample."""
        self._stream = self._new_stream(k)
        cap = self._max + max(self._max // 4, 1)        # room to collect candidates before a compaction
        self._kept = {role: np.empty((cap, k), dtype=np.float32) for role in ROLES}
        self._kept["labels"] = np.empty(cap, dtype=np.int32)
        self._kept["index"] = np.empty(cap, dtype=np.int64)
        self._kept["priority"] = np.empty(cap, dtype=np.uint64)
        if self._labels:
            rows = self._rows()
            self._stream.update((rows["baseline"], rows["candidate"]), rows["labels"])
            self._keep_sample(rows)
        self._odds, self._labels, self._index = {role: [] for role in ROLES}, [], []

    def _rows(self) -> dict[str, np.ndarray]:
        """Every sample kept so far (exact mode), in the order seen: the kept arrays themselves, each list joined
        into one array kept in its place (so that no second copy of the log-odds stays alive; callers copy)."""
        self._settle(*ROLES)
        self._index[:] = [_global_index(self._index)]
        for parts in (*(self._odds[role] for role in ROLES), self._labels):
            if len(parts) != 1:
                parts[:] = [np.concatenate(parts)]
        out = {role: self._odds[role][0] for role in ROLES}
        out["labels"], out["index"] = self._labels[0], self._index[0]
        return out

    def _keep_sample(self, rows: dict[str, np.ndarray]) -> None:
        """Bottom-k sampling: keep the max_samples samples of lowest seeded priority (a uniform sample without
        replacement), collected in a buffer and compacted when it fills (amortised O(1) a sample)."""
        priority = sample_priority(rows["index"], self._seed)
        take = np.flatnonzero(priority < self._cutoff)
        cap = self._kept["labels"].size
        while take.size:
            room = cap - self._filled
            if room == 0:
                self._compact()
                take = take[priority[take] < self._cutoff]
                continue
            part, take = take[:room], take[room:]
            sl = slice(self._filled, self._filled + part.size)
            for key in _ROW_KEYS:
                self._kept[key][sl] = rows[key][part]
            self._kept["priority"][sl] = priority[part]
            self._filled += part.size

    def _compact(self) -> None:
        """The buffer down to its max_samples lowest priorities; the highest kept becomes the cutoff."""
        size = self._max
        if self._filled <= size:
            return
        pr = self._kept["priority"][: self._filled]
        keep = np.argpartition(pr, size - 1)[:size]
        self._cutoff = pr[keep].max()
        for key in (*_ROW_KEYS, "priority"):
            self._kept[key][:size] = self._kept[key][keep]
        self._filled = size

    def kept_sample(self) -> dict[str, np.ndarray]:
        """Streamed mode: the kept sample's rows (log-odds of both models, labels, global indices), in index order."""
        self._compact()
        order = np.argsort(self._kept["index"][: self._filled], kind="stable")
        return {key: self._kept[key][: self._filled][order] for key in _ROW_KEYS}

    # ------------------------------------------------------------------------------------------------- shards

    def state(self) -> dict[str, np.ndarray]:
        """rows.*: the per-sample values kept (every sample, or the streamed mode's kept sample, whose union over
        shards holds the whole run's); stream.*: the streamed sums over every sample, built from the rows in exact
        mode, so that shards that did and did not stream merge alike."""
        if self._n == 0:          # a shard without batches: empty rows of the run's width, zero sums
            k = len(self.ctx.class_names)
            rows = {role: np.zeros((0, k), dtype=np.float32) for role in ROLES}
            rows["labels"], rows["index"] = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        else:
            rows = self._rows() if self._stream is None else self.kept_sample()
        out = {f"rows.{key}": rows[key] for key in _ROW_KEYS}
        stream = self._stream
        if stream is None:
            stream = self._new_stream(rows["baseline"].shape[1])
            stream.update((rows["baseline"], rows["candidate"]), rows["labels"])
        out.update({f"stream.{key}": np.asarray(value) for key, value in stream.arrays().items()})
        return {key: v.astype(np.float64 if v.dtype.kind == "f" else np.int64) for key, v in out.items()}

    def load_state(self, merged: dict[str, np.ndarray]) -> None:
        """The shards' rows (in global index order) and summed stream: exact mode when every sample is there and
        within max_samples, the streamed mode's state otherwise (the kept sample re-drawn by priority)."""
        index = np.asarray(merged["rows.index"], dtype=np.int64)
        if index.size == 0:
            return
        k = int(np.asarray(merged["rows.baseline"]).shape[1])
        rows = {role: np.asarray(merged[f"rows.{role}"], dtype=np.float32) for role in ROLES}
        rows["labels"] = np.asarray(merged["rows.labels"]).astype(np.int32)
        rows["index"] = index
        stream = self._new_stream(k)
        stream.load_arrays({key[len("stream."):]: v for key, v in merged.items() if key.startswith("stream.")})
        self._n = int(stream.n)
        if self._bins is None and self._n <= self._max:
            if index.size != self._n:
                raise ValueError(f"scores: {index.size} rows for {self._n} samples")
            self._odds = {role: [rows[role]] for role in ROLES}
            self._labels, self._index = [rows["labels"]], [index]
            return
        self._start_stream(k)
        self._stream = stream
        self._keep_sample(rows)

    # ------------------------------------------------------------------------------------------------ measures

    def _gated(self, metric: str, source: dict[str, Any] | None = None) -> dict[str, float]:
        section = (source if source is not None else self.options).get(metric) or {}
        higher = METRICS[metric][0] if metric in METRICS else True
        return {r: float(section[r]) for r in (HIGHER_RULES if higher else LOWER_RULES) if section.get(r) is not None}

    def _measures(self, p: dict[str, np.ndarray], odds: dict[str, np.ndarray], y: np.ndarray,
                  rankings: sm.Rankings, both: tuple[np.ndarray, np.ndarray]) -> dict[str, _Measure]:
        """Every metric of both models; `odds` (log-odds per class) is what the log loss and ranking metrics read,
        `rankings` both models' one sort of them (shared with the curves), `both` the (2n, K) log-odds and
        probabilities whose halves `odds` and `p` are."""
        k = p["baseline"].shape[1]
        n = y.size
        out: dict[str, _Measure] = {}
        # the per-sample terms of both models at once, over their log-odds / probabilities joined row-wise (the
        # `both` arrays compute() made; each row its own values), each model's half then averaged on its own
        y2 = np.concatenate([y, y])
        both_odds, both_p = both
        for name, terms in (("log_loss", sm.log_loss_terms(both_odds, y2)), ("brier", sm.brier_terms(both_p, y2))):
            ib, ic = sm.mean_influences(terms, len(ROLES))
            out[name] = _Measure(ib.value, ic.value, ib.psi, ic.psi, transform="log", skew=True,
                                 method="normal, log-ratio and skew-corrected (paired mean)")
        roc, pr = sm.ranking_influences(rankings)
        auc = dict(zip(ROLES, roc))
        out["roc_auc"] = _Measure(auc["baseline"].value, auc["candidate"].value, auc["baseline"].psi,
                                  auc["candidate"].psi, strata=y, method="DeLong",
                                  parts={r: auc[r].parts for r in ROLES})
        top_k = int(self.options.get("top_k", 5))
        if k > top_k:
            hit = sm.top_k_hits(both_odds, y2, top_k)
            hits = {"baseline": hit[:n], "candidate": hit[n:]}
            # a mean of 0 / 1 values is its exact count over n: one division, as np.mean's
            rate = {r: np.count_nonzero(hits[r]) / n for r in ROLES}
            out["top_k_accuracy"] = _Measure(rate["baseline"], rate["candidate"], hits["baseline"] - rate["baseline"],
                                             hits["candidate"] - rate["candidate"],
                                             hits=(hits["baseline"], hits["candidate"]), method="Tango score")
        bins = int(self.options.get("ece_bins", 15))
        diagrams, influences = sm.calibration(sm.confidence_bins(both_p, bins), y2, bins=bins, models=len(ROLES))
        rel, ece = dict(zip(ROLES, diagrams)), dict(zip(ROLES, influences))
        out["ece"] = _Measure(ece["baseline"].value, ece["candidate"].value, ece["baseline"].psi,
                              ece["candidate"].psi, bias=(ece["baseline"].bias, ece["candidate"].bias),
                              method="delta, bin-noise allowance")
        ap = dict(zip(ROLES, pr))
        out["pr_auc"] = _Measure(ap["baseline"].value, ap["candidate"].value, ap["baseline"].psi, ap["candidate"].psi,
                                 transform="logit", method="delta (influence), normal and logit",
                                 parts={r: ap[r].parts for r in ROLES})
        self._reliability = rel
        return out

    # ------------------------------------------------------------------------------------------------ compute

    def compute(self) -> CheckResult:
        if self._n == 0:
            raise DataError("scores: no samples were seen")
        settings = decision_settings(self.ctx.config, self.options)
        rows = self._rows() if self._stream is None else self.kept_sample()
        y = rows["labels"].astype(np.int64)
        # both models' float64 log-odds and probabilities each in one array (element by element: the same values)
        both = np.concatenate([rows[r] for r in ROLES], dtype=np.float64)
        both_p = sm.probabilities(both)
        odds = {r: both[i * y.size:(i + 1) * y.size] for i, r in enumerate(ROLES)}
        p = {r: both_p[i * y.size:(i + 1) * y.size] for i, r in enumerate(ROLES)}
        k = p["baseline"].shape[1]
        top_k = int(self.options.get("top_k", 5))
        if self._gated("top_k_accuracy") and k <= top_k:
            raise ConfigError(f"{self.ctx.config.where('checks.scores.top_k_accuracy')}: top-{top_k} accuracy needs "
                              f"more than {top_k} classes; the models output {k} (lower checks.scores.top_k)")
        support = self._stream.support if self._stream is not None else np.bincount(y, minlength=k)
        for metric in ("roc_auc", "pr_auc"):
            if self._gated(metric) and np.count_nonzero(support) < 2:
                raise DataError(f"scores: {metric} needs samples of at least two classes in the labels, found only "
                                f"class {int(np.argmax(support))}: the evaluation data cannot rank positives against "
                                "negatives")
        rankings = sm.Rankings([odds[r] for r in ROLES], y)
        with np.errstate(invalid="ignore"):     # NaN scores give NaN metrics, which fail; no warning on the way
            measures = self._measures(p, odds, y, rankings, (both, both_p))
            if self._stream is not None:
                measures = self._streamed(measures)
            if settings.statistical:
                prime_spreads(list(measures.values()))
        findings: list[Finding] = []
        rows = []
        for metric, (higher, _) in METRICS.items():
            m = measures.get(metric)
            if m is None:
                continue
            label = f"top_{top_k}_accuracy" if metric == "top_k_accuracy" else metric
            for rule, threshold in self._gated(metric).items():
                findings.append(self._judge(label, rule, threshold, m, settings))
            ci = delta_interval(m, confidence=settings.confidence) if settings.statistical else None
            rows.append((label, _round(m.baseline), _round(m.candidate), f"{m.candidate - m.baseline:+.4f}",
                         _interval_text(ci), ("higher" if higher else "lower") + " is better", m.method))
        tables = [Table(title="Score metrics (baseline -> candidate)",
                        headers=("metric", "baseline", "candidate", "delta",
                                 f"{settings.confidence:.0%} CI of delta" if settings.statistical else "",
                                 "better", "statistic"),
                        rows=tuple(rows))]
        details: dict[str, Any] = {
            "decision": settings.mode,
            "confidence": settings.confidence,
            "num_samples": int(y.size),
            "metrics": {("top_%d_accuracy" % top_k if k_ == "top_k_accuracy" else k_):
                        {"baseline": v.baseline, "candidate": v.candidate, "statistic": v.method}
                        for k_, v in measures.items()},
        }
        rel_table, charts, details["reliability"] = self._reliability_outputs()
        details["curves"] = self._curve_outputs(odds, y, rankings, measures)
        tables.append(rel_table)
        if self.options.get("threshold") is not None:
            t_table, t_findings, details["threshold"] = self._threshold(p, y, settings)
            tables.append(t_table)
            findings += t_findings
        kept = 2 * y.size * k * 4 + y.size * 4
        streamed = self._stream is not None
        details["kept_per_sample"] = {
            "samples": int(y.size), "of": self._n, "classes": k, "dtype": "float32", "bytes": kept,
            "streamed_bytes": self._stream.nbytes() if streamed else 0, "approximate": streamed,
            "approximate_metrics": ["roc_auc", "pr_auc"] if streamed else [],
            "bins": self._stream.bins if streamed else None,
        }
        if not streamed:
            notes = (f"kept per sample: both models' log-odds per class, {y.size} x {k} float32 each, and the labels: "
                     f"{kept / 2 ** 20:.2f} MiB (O(N)); every metric is exact",)
        else:
            notes = (f"APPROXIMATE: ROC-AUC and PR-AUC from {self._stream.bins} probability bins per class (streamed, "
                     f"{self._stream.nbytes() / 2 ** 20:.2f} MiB); log loss, Brier, ECE and top-k exact over all "
                     f"{self._n} samples; intervals and tests from a uniform sample of {y.size} samples kept per "
                     f"sample ({kept / 2 ** 20:.2f} MiB), their widths scaled to {self._n} samples"
                     + ("; the decision threshold and its metrics are on that sample"
                        if self.options.get("threshold") is not None else ""),)
        status, summary = check_summary(self.name, findings, passed=self._passed_line(measures))
        return CheckResult(name=self.name, status=status, summary=summary, findings=tuple(findings),
                           tables=tuple(tables), charts=charts, details=details, notes=notes)

    def _streamed(self, measures: dict[str, _Measure]) -> dict[str, _Measure]:
        """Point values over every sample from the streamed state; spreads from the kept sample, scaled to N."""
        st = self._stream
        assert st is not None
        scale = math.sqrt(min(self._filled, self._max) / self._n)
        full = {"log_loss": (st.loss[0] / st.n, st.loss[1] / st.n), "brier": (st.brier[0] / st.n, st.brier[1] / st.n),
                "roc_auc": (st.roc_auc(0), st.roc_auc(1)), "pr_auc": (st.pr_auc(0), st.pr_auc(1)),
                "ece": (st.reliability(0).ece, st.reliability(1).ece)}
        if "top_k_accuracy" in measures:
            full["top_k_accuracy"] = (st.hits[0] / st.n, st.hits[1] / st.n)
        out = {}
        for name, m in measures.items():
            b, c = (float(v) for v in full[name])
            pairs = ((int(st.discordant[0]), int(st.discordant[1]), st.n, int(st.hits[1]))
                     if name == "top_k_accuracy" else None)
            method = m.method + (f" (binned, {st.bins} bins: approximate)" if name in ("roc_auc", "pr_auc") else "")
            bias = (st.ece_bias(0), st.ece_bias(1)) if name == "ece" else m.bias
            out[name] = replace(m, baseline=b, candidate=c, scale=scale, pairs=pairs, method=method,
                                bias=bias)
        self._reliability = {role: st.reliability(i) for i, role in enumerate(ROLES)}
        return out

    def _judge(self, metric: str, rule: str, threshold: float, m: _Measure, settings: DecisionSettings) -> Finding:
        value = compared_value(rule, m.baseline, m.candidate)
        evidence = (rule_evidence(rule, m, threshold=threshold, confidence=settings.confidence)
                    if settings.statistical else None)
        return judge(metric=metric, rule=rule, threshold=threshold, value=float(value), baseline=m.baseline,
                     candidate=m.candidate, settings=settings, evidence=evidence)

    def _passed_line(self, measures: dict[str, _Measure]) -> str:
        parts = []
        for metric in ("roc_auc", "log_loss", "ece"):
            m = measures[metric]
            parts.append(f"{metric} {m.candidate:.4f} vs {m.baseline:.4f}")
        return "; ".join(parts) + " (candidate vs baseline): within every threshold"

    def _reliability_outputs(self) -> tuple[Table, tuple[Chart, ...], dict[str, Any]]:
        rel = self._reliability
        edges = rel["baseline"].edges.tolist()          # Python floats and ints: the values float() / int() give
        labels = _bin_labels(tuple(edges))
        lists = {role: (rel[role].count.tolist(), rel[role].confidence.tolist(), rel[role].accuracy.tolist())
                 for role in ROLES}
        rows = []
        (bn, bconf, bacc), (cn, cconf, cacc) = lists["baseline"], lists["candidate"]
        for i, label in enumerate(labels):
            if bn[i] == 0 and cn[i] == 0:
                continue
            rows.append((label, bn[i], _round(bconf[i]), _round(bacc[i]), cn[i], _round(cconf[i]), _round(cacc[i])))
        table = Table(title=f"Reliability diagram (top-label confidence; ECE baseline {rel['baseline'].ece:.4f}, "
                            f"candidate {rel['candidate'].ece:.4f})",
                      headers=("confidence bin", "samples b", "confidence b", "accuracy b", "samples c",
                               "confidence c", "accuracy c"),
                      rows=tuple(rows))
        charts = []
        for role in ROLES:
            count, _, accuracy = lists[role]
            shown = [i for i, c in enumerate(count) if c > 0]
            charts.append(Chart(title=f"Reliability, {role}: accuracy per confidence bin (calibrated: accuracy = "
                                      "confidence)", labels=tuple(labels[i] for i in shown),
                                values=tuple(round(accuracy[i], 4) for i in shown), y_label="accuracy"))
        data = {"edges": edges, "bins": len(labels)}
        for role in ROLES:
            count, confidence, accuracy = lists[role]
            data[role] = {"ece": rel[role].ece, "count": count,
                          "confidence": [None if x != x else x for x in confidence],
                          "accuracy": [None if x != x else x for x in accuracy]}
        charts = tuple(charts)
        return table, charts, data

    def _curve_outputs(self, odds: dict[str, np.ndarray], y: np.ndarray, rankings: sm.Rankings,
                       measures: dict[str, _Measure]) -> dict[str, Any]:
        """Both models' ROC and PR curves (gate.curves): from every kept sample (read off the rankings the ranking
        metrics sorted, with the areas they computed), or from the bins when streamed."""
        from gate import curves

        names = tuple(self.ctx.class_names)
        if self._stream is not None:
            st = self._stream
            return curves.binned_curves(st.hist, st.support, st.n, names,
                                        drawable=not any(st.has_nan(m) for m in range(len(ROLES))))
        areas = tuple(np.concatenate([measures[metric].parts[role] for role in ROLES]).reshape(len(ROLES), -1)
                      for metric in ("roc_auc", "pr_auc"))
        return curves.score_curves(odds, y, names, rankings=rankings, areas=areas)

    def _threshold(self, p: dict[str, np.ndarray], y: np.ndarray,
                   settings: DecisionSettings) -> tuple[Table, list[Finding], dict[str, Any]]:
        spec = self.options["threshold"]
        t, how = choose_threshold(spec, p["baseline"][:, 1], y)
        preds = {r: (p[r][:, 1] >= t).astype(np.int64) for r in ROLES}
        point = {r: threshold_point(preds[r], y) for r in ROLES}
        hits = {r: threshold_hits(preds[r], y) for r in ROLES}
        findings = []
        rules = self.options.get("at_threshold") or {}
        for metric in THRESHOLD_METRICS:
            hb, hc = hits["baseline"][metric], hits["candidate"][metric]
            m = _Measure(point["baseline"][metric], point["candidate"][metric], hb - hb.mean() if hb.size else hb,
                         hc - hc.mean() if hc.size else hc, hits=(hb, hc), method="Tango score")
            for rule, threshold in self._gated(metric, rules).items():
                if hb.size == 0:
                    raise DataError(f"scores: {metric} at the threshold needs samples of class "
                                    f"{1 if metric == 'recall' else 0}, and the labels have none")
                findings.append(self._judge(f"{metric}@{t:.4g}", rule, threshold, m, settings))
        rows = tuple((metric, _round(point["baseline"][metric]), _round(point["candidate"][metric]),
                      f"{point['candidate'][metric] - point['baseline'][metric]:+.4f}")
                     for metric in ("accuracy", "precision", "recall", "specificity", "f1"))
        table = Table(title=f"At threshold {t:.4g} on class 1's probability ({how}), both models",
                      headers=("metric", "baseline", "candidate", "delta"), rows=rows)
        return table, findings, {"value": t, "chosen_by": how, "spec": spec,
                                 "baseline": point["baseline"], "candidate": point["candidate"]}


@lru_cache(maxsize=8)
def _bin_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    """The reliability diagram's bin labels, "0.00-0.07" ..."""
    return tuple(f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(edges) - 1))


def _round(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _interval_text(ci: tuple[float, float] | None) -> str:
    if ci is None or not all(math.isfinite(v) for v in ci):
        return ""
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
