"""Paired statistics for verdicts that hold up: McNemar, Wilson, paired bootstrap, Holm/BH, power.

Pure functions over numpy arrays (no torch), so a small evaluation set neither hides a regression nor fails a
good model by chance. The conventions every function here shares (see docs/statistics.md):

* `confidence` is the level of a TWO-SIDED interval. Each one-sided decision made from it ("clearly within",
  "clearly beyond") is therefore a one-sided test at level ``(1 - confidence) / 2``; with the default 0.95 a
  candidate that is exactly at the threshold is failed at most 2.5% of the time, and one that truly meets it is
  passed as soon as the 97.5% upper bound is inside the threshold. `one_sided_alpha()` returns that level, and
  p-values are compared with it, so the interval rule and the p-value rule agree.
* A paired bootstrap over samples is a multinomial resample of the joint (label, baseline, candidate) cell
  counts: `bootstrap_weights()` returns the resampled counts, and any metric that is a function of the counts
  is evaluated on each row.
* NaN is never a pass: a NaN estimate fails, a NaN interval makes a statistical decision inconclusive.
* A value within float rounding of a threshold counts as equal to it (`at_most()`): metrics live on a lattice of
  k/n, and 0.90 - 0.89 is 0.010000000000000009 in binary floating point, which must not exceed max_drop 0.01.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _sps

Mode = Literal["point", "non-inferiority"]
Outcome = Literal["pass", "fail", "inconclusive"]

#: Floor for the discordant-pair rate in the power formulas: two models that never disagree on the evaluation
#: set still differ somewhere, and a zero rate would claim that any drop, however small, is detectable.
MIN_DISCORDANCE = 1e-4


# --------------------------------------------------------------------------------------------- conventions


def one_sided_alpha(confidence: float) -> float:
    """Level of each one-sided decision taken from a two-sided interval at `confidence`: (1 - confidence) / 2."""
    _check_confidence(confidence)
    return (1.0 - confidence) / 2.0


def tolerance(bound: float) -> float:
    """How far a value may exceed `bound` by float rounding alone and still count as equal to it."""
    return 1e-12 + 1e-9 * abs(bound)


def at_most(value: float | np.ndarray, bound: float) -> bool | np.ndarray:
    """value <= bound, forgiving float rounding (NaN is never at most anything)."""
    return np.asarray(value) <= bound + tolerance(bound) if np.ndim(value) else bool(value <= bound + tolerance(bound))


def at_least(value: float | np.ndarray, bound: float) -> bool | np.ndarray:
    """value >= bound, forgiving float rounding (NaN is never at least anything)."""
    return np.asarray(value) >= bound - tolerance(bound) if np.ndim(value) else bool(value >= bound - tolerance(bound))


def significant(p_value: float | None, alpha: float) -> bool:
    """p_value < alpha, where a p-value equal to alpha up to float rounding is not below it (NaN never is)."""
    return p_value is not None and bool(p_value < alpha - tolerance(alpha))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------------- McNemar


def mcnemar_exact(negative_flips: int, positive_flips: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against p = 0.5.

    `negative_flips` are samples the baseline got right and the candidate wrong, `positive_flips` the reverse.
    With p = 0.5 the binomial is symmetric, so the two-sided p-value is twice the smaller tail, capped at 1.
    Returns 1.0 when there are no discordant pairs.
    """
    b = _check_count("negative_flips", negative_flips)
    c = _check_count("positive_flips", positive_flips)
    n = b + c
    if n == 0 or b == c:
        return 1.0
    return float(min(1.0, 2.0 * _sps.binom.cdf(min(b, c), n, 0.5)))


def mcnemar_one_sided(negative_flips: int, positive_flips: int) -> float:
    """One-sided exact McNemar p-value for H1 "the candidate is worse" (more negative than positive flips).

    P(X >= negative_flips) for X ~ Binomial(negative_flips + positive_flips, 0.5); 1.0 with no discordant pairs.
    """
    b = _check_count("negative_flips", negative_flips)
    c = _check_count("positive_flips", positive_flips)
    n = b + c
    if n == 0:
        return 1.0
    return float(_sps.binom.sf(b - 1, n, 0.5))


# --------------------------------------------------------------------------------------------- proportions


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for a proportion; (0, 1) when n == 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and 1, where the
    rates a gate watches (error rates, flip rates) usually live.
    """
    s = _check_count("successes", successes)
    n = _check_count("n", n)
    if s > n:
        raise ValueError(f"successes ({s}) cannot exceed n ({n})")
    _check_confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    z = float(_sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    p = s / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if s == 0 else max(0.0, centre - half)
    high = 1.0 if s == n else min(1.0, centre + half)
    return (low, high)


def proportion_p_value(successes: int, n: int, *, bound: float,
                       alternative: Literal["greater", "less"]) -> float:
    """One-sided score-test p-value that the true rate is greater / less than `bound`.

    This is the test the Wilson interval inverts, so ``p < one_sided_alpha(confidence)`` exactly when the
    Wilson interval at `confidence` lies entirely above (greater) / below (less) `bound`. Use it to build the
    family of p-values for a multiple-comparison adjustment of per-class rates. NaN when n == 0.
    """
    s = _check_count("successes", successes)
    n = _check_count("n", n)
    if s > n:
        raise ValueError(f"successes ({s}) cannot exceed n ({n})")
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    if n == 0:
        return math.nan
    p_hat = s / n
    if bound <= 0.0 or bound >= 1.0:
        # Degenerate null: the rate cannot lie beyond [0, 1]; the evidence is all or nothing.
        if alternative == "greater":
            return 0.0 if (bound < 0.0 or (bound == 0.0 and s > 0)) else 1.0
        return 0.0 if (bound > 1.0 or (bound == 1.0 and s < n)) else 1.0
    z = (p_hat - bound) / math.sqrt(bound * (1.0 - bound) / n)
    return float(_sps.norm.sf(z) if alternative == "greater" else _sps.norm.cdf(z))


# ----------------------------------------------------------------------------------------------- bootstrap


def _as_counts(counts: np.ndarray) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"counts must be a 1-D array of cell counts, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("counts must be whole numbers")
    arr = arr.astype(np.int64, copy=False)
    if np.any(arr < 0):
        raise ValueError(f"counts must be non-negative; found {int(arr.min())} at cell {int(arr.argmin())}")
    return arr


def iter_bootstrap_weights(counts: np.ndarray, *, resamples: int, seed: int,
                           chunk: int = 256) -> Iterator[np.ndarray]:
    """Yield the rows of `bootstrap_weights(counts, resamples=..., seed=...)` in blocks of at most `chunk`.

    The blocks concatenate to exactly the same array (one generator draws the rows in order), so memory stays
    at chunk x m when the cell table is large.
    """
    arr = _as_counts(counts)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk!r}")
    n = int(arr.sum())
    rng = np.random.default_rng(seed)
    pvals = arr / n if n else None
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        if n == 0 or arr.size == 0:
            yield np.zeros((rows, arr.size), dtype=np.int64)
        else:
            yield rng.multinomial(n, pvals, size=rows).astype(np.int64, copy=False)


def bootstrap_weights(counts: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """(resamples, m) int64 multinomial(n, counts / n) draws: a paired bootstrap of the samples behind the cells.

    Row r holds how many copies of each cell resample r drew; every row sums to n. Seeded with
    ``np.random.default_rng(seed)`` so a rerun gives identical rows. Example::

        w = bootstrap_weights(counts, resamples=2000, seed=0)
        acc = (w * correct).sum(axis=1) / n          # bootstrap replicates of the accuracy
    """
    blocks = list(iter_bootstrap_weights(counts, resamples=resamples, seed=seed, chunk=max(1, resamples)))
    return blocks[0]


def _nanquantile(replicates: np.ndarray, q: float) -> np.ndarray:
    with warnings.catch_warnings():
        # An all-NaN column (a metric undefined in every resample) gives NaN, which callers treat as undecided.
        warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
        return np.asarray(np.nanquantile(replicates, q, axis=0))


def percentile_interval(replicates: np.ndarray, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile bootstrap interval along axis 0, ignoring NaN replicates.

    Works for (R,) replicates (0-d arrays out) and (R, K) replicates (one interval per column).
    """
    _check_confidence(confidence)
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 0 or reps.shape[0] == 0:
        raise ValueError(f"replicates must have at least one row along axis 0, got shape {reps.shape}")
    alpha = (1.0 - confidence) / 2.0
    return _nanquantile(reps, alpha), _nanquantile(reps, 1.0 - alpha)


def bootstrap_p_value(replicates: np.ndarray, *, bound: float,
                      alternative: Literal["greater", "less"]) -> np.ndarray:
    """One-sided bootstrap p-value that the statistic is greater / less than `bound`, along axis 0.

    ``(1 + #{replicates on the null side}) / (1 + #{non-NaN replicates})``: for "greater" the null side is
    ``replicate <= bound``, for "less" it is ``replicate >= bound`` (both forgiving float rounding, see
    `at_most`). The +1 keeps the p-value away from an impossible 0. NaN replicates are ignored; a column with
    none left gives NaN.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 0:
        raise ValueError("replicates must have at least one axis")
    valid = ~np.isnan(reps)
    null_side = at_most(reps, bound) if alternative == "greater" else at_least(reps, bound)
    on_null = np.sum(null_side & valid, axis=0)
    total = np.sum(valid, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (1.0 + on_null) / (1.0 + total)
    return np.where(total > 0, p, np.nan)


def min_resamples(family_size: int, *, confidence: float) -> int:
    """Fewest bootstrap resamples whose smallest p-value, 1 / (R + 1), can still fail a member of a Holm family.

    Holm compares the smallest of K p-values with alpha / K (alpha = (1 - confidence) / 2), so R must satisfy
    1 / (R + 1) < alpha / K; below that, every per-class fail turns into "inconclusive". Example: 10 classes at
    0.95 need 400 resamples, 100 classes need 4000.
    """
    k = _check_count("family_size", family_size)
    return max(1, math.floor(max(k, 1) / one_sided_alpha(confidence) * (1.0 + 1e-12)))


# ------------------------------------------------------------------------------------ multiple comparisons


def _as_p_values(p_values: np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a 1-D array, got shape {p.shape}")
    finite = p[~np.isnan(p)]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError("p_values must lie in [0, 1]")
    return p


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), monotone in the raw order, capped at 1.

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``. NaN entries stay NaN
    and do not count towards m.
    """
    p = _as_p_values(p_values)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false-discovery-rate control), capped at 1.

    The i-th smallest of m p-values becomes ``min_{j >= i} min(1, m p_(j) / j)``. NaN entries stay NaN and do
    not count towards m.
    """
    p = _as_p_values(p_values)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def adjust(p_values: np.ndarray, method: Literal["holm", "bh", "none"]) -> np.ndarray:
    """Adjust a family of p-values: "holm" (family-wise), "bh" (false discovery rate) or "none" (a copy)."""
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "none":
        return _as_p_values(p_values).copy()
    raise ValueError(f"method must be 'holm', 'bh' or 'none', got {method!r}")


# ---------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """How one threshold was judged: outcome, the estimate and its interval, and a sentence saying why."""

    outcome: Outcome
    estimate: float
    interval: tuple[float, float]
    p_value: float | None
    rule: str
    explanation: str


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


def _pct(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def _check_mode(mode: str) -> None:
    if mode not in ("point", "non-inferiority"):
        raise ValueError(f"mode must be 'point' or 'non-inferiority', got {mode!r}")


def decide_max_drop(estimate_drop: float, replicates_drop: np.ndarray, *, max_drop: float, confidence: float,
                    mode: Mode, p_adjusted: float | None = None) -> Decision:
    """Judge ``drop = baseline - candidate <= max_drop`` (positive drop = the candidate is worse).

    point: fail iff the estimate exceeds max_drop. non-inferiority, with the two-sided percentile interval of
    the bootstrap replicates at `confidence`: pass when its upper bound is <= max_drop (clearly within), fail
    when its lower bound is > max_drop (clearly beyond), otherwise inconclusive. Each side is a one-sided test at
    ``(1 - confidence) / 2``. When `p_adjusted` is given (the `bootstrap_p_value(..., bound=max_drop,
    alternative="greater")` of this threshold after `adjust()` over its family), the fail side instead is
    ``p_adjusted < (1 - confidence) / 2``, which keeps the family-wise false-fail rate at that level.
    A NaN estimate fails; a NaN interval leaves a non-inferiority decision inconclusive.
    """
    _check_mode(mode)
    alpha = one_sided_alpha(confidence)
    estimate = float(estimate_drop)
    reps = np.asarray(replicates_drop, dtype=np.float64)
    if not math.isfinite(estimate):
        return Decision("fail", estimate, (math.nan, math.nan), p_adjusted, f"{mode}: estimate must be finite",
                        f"the drop could not be measured (it is {_fmt(estimate)}); NaN or Inf is never a pass")
    low_a, high_a = percentile_interval(reps, confidence=confidence)
    low, high = float(low_a), float(high_a)
    p_raw = float(bootstrap_p_value(reps, bound=max_drop, alternative="greater"))
    p_value = p_raw if p_adjusted is None else float(p_adjusted)
    ci = f"{_pct(confidence)} interval {_fmt(low)} to {_fmt(high)}"
    head = f"drop {_fmt(estimate)} ({ci}) vs max_drop {_fmt(max_drop)}"

    if mode == "point":
        if not at_most(estimate, max_drop):
            return Decision("fail", estimate, (low, high), p_value, "point: drop > max_drop",
                            f"{head}: the measured drop exceeds max_drop by {_fmt(estimate - max_drop)}")
        return Decision("pass", estimate, (low, high), p_value, "point: drop <= max_drop",
                        f"{head}: the measured drop is within max_drop")

    if math.isnan(low) or math.isnan(high):
        return Decision("inconclusive", estimate, (low, high), p_value, "non-inferiority: no interval",
                        f"{head}: the bootstrap could not estimate an interval (the metric is undefined in "
                        f"every resample)")
    if at_most(high, max_drop):
        return Decision("pass", estimate, (low, high), p_value,
                        f"non-inferiority: upper {_pct(confidence)} bound <= max_drop",
                        f"{head}: the whole interval is within max_drop")
    if p_adjusted is not None:
        if significant(float(p_adjusted), alpha):
            return Decision("fail", estimate, (low, high), p_value,
                            f"non-inferiority: adjusted p < {alpha:g}",
                            f"{head}: the drop is beyond max_drop with adjusted p = {float(p_adjusted):.3g} "
                            f"< {alpha:g}")
    elif not at_most(low, max_drop):
        return Decision("fail", estimate, (low, high), p_value,
                        f"non-inferiority: lower {_pct(confidence)} bound > max_drop",
                        f"{head}: the whole interval is beyond max_drop")
    return Decision("inconclusive", estimate, (low, high), p_value, "non-inferiority: interval straddles max_drop",
                    f"{head}: the interval straddles max_drop, so this evaluation set cannot tell; "
                    f"more samples would decide it")


def _decide_rate(successes: int, n: int, *, threshold: float, confidence: float, mode: Mode,
                 higher_is_better: bool, p_adjusted: float | None) -> Decision:
    _check_mode(mode)
    alpha = one_sided_alpha(confidence)
    s = _check_count("successes", successes)
    n = _check_count("n", n)
    name, cmp_ok = ("minimum", ">=") if higher_is_better else ("maximum", "<=")
    if n == 0:
        return Decision("fail", math.nan, (0.0, 1.0), None, f"{mode}: no samples",
                        f"no samples to measure the rate against {name} {_fmt(threshold)}; an unmeasured rate "
                        f"is never a pass")
    estimate = s / n
    low, high = wilson_interval(s, n, confidence=confidence)
    p_raw = proportion_p_value(s, n, bound=threshold, alternative="less" if higher_is_better else "greater")
    p_value = p_raw if p_adjusted is None else float(p_adjusted)
    head = (f"rate {_fmt(estimate)} ({s}/{n}, {_pct(confidence)} Wilson interval {_fmt(low)} to {_fmt(high)}) "
            f"vs {name} {_fmt(threshold)}")
    violated = not at_least(estimate, threshold) if higher_is_better else not at_most(estimate, threshold)
    if mode == "point":
        if violated:
            return Decision("fail", estimate, (low, high), p_value, f"point: rate {cmp_ok} {name} violated",
                            f"{head}: the measured rate is beyond {name} by {_fmt(abs(estimate - threshold))}")
        return Decision("pass", estimate, (low, high), p_value, f"point: rate {cmp_ok} {name}",
                        f"{head}: the measured rate is within {name}")

    clearly_within = at_least(low, threshold) if higher_is_better else at_most(high, threshold)
    clearly_beyond = not at_least(high, threshold) if higher_is_better else not at_most(low, threshold)
    side = "lower" if higher_is_better else "upper"
    other = "upper" if higher_is_better else "lower"
    if clearly_within:
        return Decision("pass", estimate, (low, high), p_value,
                        f"non-inferiority: {side} {_pct(confidence)} bound {cmp_ok} {name}",
                        f"{head}: the whole interval is within {name}")
    if p_adjusted is not None:
        if significant(float(p_adjusted), alpha):
            return Decision("fail", estimate, (low, high), p_value, f"non-inferiority: adjusted p < {alpha:g}",
                            f"{head}: the rate is beyond {name} with adjusted p = {float(p_adjusted):.3g} "
                            f"< {alpha:g}")
    elif clearly_beyond:
        return Decision("fail", estimate, (low, high), p_value,
                        f"non-inferiority: {other} {_pct(confidence)} bound beyond {name}",
                        f"{head}: the whole interval is beyond {name}")
    return Decision("inconclusive", estimate, (low, high), p_value,
                    f"non-inferiority: interval straddles {name}",
                    f"{head}: the interval straddles {name}, so this evaluation set cannot tell; "
                    f"more samples would decide it")


def decide_floor(successes: int, n: int, *, minimum: float, confidence: float, mode: Mode,
                 p_adjusted: float | None = None) -> Decision:
    """Judge ``rate = successes / n >= minimum`` (a `min` threshold) with the Wilson interval.

    point: fail iff the rate is below minimum. non-inferiority: pass when the lower Wilson bound is >= minimum,
    fail when the upper bound is < minimum (or, with `p_adjusted` from `proportion_p_value(..., alternative=
    "less")` after `adjust()`, when p_adjusted < (1 - confidence) / 2), otherwise inconclusive. n == 0 fails.
    """
    return _decide_rate(successes, n, threshold=minimum, confidence=confidence, mode=mode,
                        higher_is_better=True, p_adjusted=p_adjusted)


def decide_ceiling(successes: int, n: int, *, maximum: float, confidence: float, mode: Mode,
                   p_adjusted: float | None = None) -> Decision:
    """Judge ``rate = successes / n <= maximum`` (a `max` threshold, e.g. the negative flip rate) with Wilson.

    point: fail iff the rate is above maximum. non-inferiority: pass when the upper Wilson bound is <= maximum,
    fail when the lower bound is > maximum (or, with `p_adjusted` from `proportion_p_value(..., alternative=
    "greater")` after `adjust()`, when p_adjusted < (1 - confidence) / 2), otherwise inconclusive. n == 0 fails.
    """
    return _decide_rate(successes, n, threshold=maximum, confidence=confidence, mode=mode,
                        higher_is_better=False, p_adjusted=p_adjusted)


# --------------------------------------------------------------------------------------------------- power


def _power_z(confidence: float, power: float) -> tuple[float, float]:
    if not 0.5 <= power < 1.0:
        raise ValueError(f"power must be in [0.5, 1), got {power!r}")
    z_alpha = float(_sps.norm.isf(one_sided_alpha(confidence)))
    z_beta = float(_sps.norm.ppf(power))
    return z_alpha, z_beta


def _discordance(discordance: float) -> float:
    if not 0.0 <= discordance <= 1.0:
        raise ValueError(f"discordance must be a share in [0, 1], got {discordance!r}")
    return max(float(discordance), MIN_DISCORDANCE)


def min_detectable_drop(n: int, *, discordance: float, confidence: float, power: float = 0.8) -> float:
    """Smallest true accuracy drop a paired (McNemar) test on n samples detects with probability `power`.

    Normal approximation to McNemar's test (Connor 1987): with discordant-pair rate psi (share of samples where
    exactly one model is right, floored at MIN_DISCORDANCE) and drop d = p10 - p01, the one-sided test at
    alpha = (1 - confidence) / 2 has power 1 - beta when
    ``sqrt(n) d = z_alpha sqrt(psi) + z_beta sqrt(psi - d^2)``, whose positive root is
    ``d = sqrt(psi) (z_alpha sqrt(n) + z_beta sqrt(n + z_beta^2 - z_alpha^2)) / (n + z_beta^2)``.
    The same width governs the non-inferiority rule: a true drop of max_drop + d is failed, and one of
    max_drop - d is passed, with probability about `power`. Returns inf when n is too small for any drop.
    """
    n = _check_count("n", n)
    psi = _discordance(discordance)
    z_a, z_b = _power_z(confidence, power)
    under_root = n + z_b * z_b - z_a * z_a
    if n == 0 or under_root < 0:
        return math.inf
    return math.sqrt(psi) * (z_a * math.sqrt(n) + z_b * math.sqrt(under_root)) / (n + z_b * z_b)


def required_samples(drop: float, *, discordance: float, confidence: float, power: float = 0.8) -> int:
    """Evaluation-set size at which a true accuracy drop `drop` becomes detectable (inverse of the above).

    ``n = ceil((z_alpha sqrt(psi) + z_beta sqrt(psi - drop^2))^2 / drop^2)`` with psi floored at
    max(MIN_DISCORDANCE, drop), since a drop of d needs at least a share d of discordant samples.
    """
    if not 0.0 < drop <= 1.0:
        raise ValueError(f"drop must be in (0, 1], got {drop!r}")
    psi = max(_discordance(discordance), drop)
    z_a, z_b = _power_z(confidence, power)
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - drop * drop))) ** 2 / (drop * drop)
    # Absorb float noise so that required_samples(min_detectable_drop(n)) == n.
    return max(1, math.ceil(n * (1.0 - 1e-12)))
