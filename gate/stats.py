"""Paired statistics for verdicts that hold up: Tango score tests, exact binomial, McNemar, bootstrap, Holm/BH, power.

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
from typing import Any, Literal

import numpy as np
from gate import distributions as _sps


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


def binomial_p_values(successes: np.ndarray | int, n: np.ndarray | int, *,
                      bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-sided binomial p-values (greater, less) that a rate is above / below `bound`; vectorised.

    ``greater = P(X >= successes)``, ``less = P(X <= successes)`` for X ~ Binomial(n, bound): the tests that
    `clopper_pearson_interval` inverts, so each is at most alpha under its null at every n (no normal
    approximation that can dip below its nominal level at small n). NaN where n == 0.
    """
    s = np.asarray(successes, dtype=np.int64)
    m = np.asarray(n, dtype=np.int64)
    if np.any(s < 0) or np.any(s > m):
        raise ValueError("successes must lie in [0, n]")
    bound = float(min(max(bound, 0.0), 1.0))
    greater = np.where(m > 0, _sps.binom.sf(s - 1, m, bound), np.nan)
    less = np.where(m > 0, _sps.binom.cdf(s, m, bound), np.nan)
    return greater, less


def clopper_pearson_interval(successes: int, n: int, *, confidence: float) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) interval for a proportion, each side at (1 - confidence) / 2; (0, 1) at n 0."""
    s = _check_count("successes", successes)
    n = _check_count("n", n)
    if s > n:
        raise ValueError(f"successes ({s}) cannot exceed n ({n})")
    alpha = one_sided_alpha(confidence)
    if n == 0:
        return (0.0, 1.0)
    low = 0.0 if s == 0 else float(_sps.beta.ppf(alpha, s, n - s + 1))
    high = 1.0 if s == n else float(_sps.beta.ppf(1.0 - alpha, s + 1, n - s))
    return (low, high)


#: Continuity correction of Tango's statistic, in samples. Exact enumeration (tests/unit/test_stats.py,
#: `python benchmarks/stats_simulation.py --exact`) shows the uncorrected score test exceeding its nominal 2.5% by
#: up to 2.4 points when the discordant samples are few (n = 200, 2% discordant, true drop at the bound: 4.9%);
#: with one sample of correction both one-sided error rates stay <= alpha over the whole grid.
TANGO_CORRECTION = 1.0


def tango_constrained_p01(b: np.ndarray, c: np.ndarray, n: np.ndarray, delta: float | np.ndarray) -> np.ndarray:
    """Restricted MLE of p01 (share: baseline wrong, candidate right) given p10 - p01 = delta (Tango 1998, eq. 4).

    `b` = baseline right / candidate wrong, `c` = the reverse, out of `n` paired samples.
    """
    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    d = np.asarray(delta, dtype=np.float64)
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * d
    c_ = -c * d * (1.0 - d)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.sqrt(np.maximum(b_ * b_ - 4.0 * a_ * c_, 0.0)) - b_) / (2.0 * a_)
    return np.where(n > 0, np.clip(q, np.maximum(0.0, -d), None), np.nan)


def _tango_z(b: np.ndarray, c: np.ndarray, n: np.ndarray, delta: float | np.ndarray, shift: float) -> np.ndarray:
    """(b - c - n delta + shift) / sd under the null p10 - p01 = delta; +-inf when that sd is 0."""
    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    d = np.asarray(delta, dtype=np.float64)
    q = tango_constrained_p01(b, c, n, d)
    var = n * (2.0 * q + d * (1.0 - d))
    num = b - c - n * d + shift
    with np.errstate(divide="ignore", invalid="ignore"):
        z = num / np.sqrt(np.where(var > 0, var, 1.0))
    return np.where(var > 1e-300, z, np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0)))


def paired_difference_p_values(b: np.ndarray | int, c: np.ndarray | int, n: np.ndarray | int, *,
                               bound: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values (beyond, within) for the paired difference p10 - p01 against `bound`; vectorised.

    Tango's score test with `TANGO_CORRECTION`: ``beyond`` tests H1 "p10 - p01 > bound" (e.g. the accuracy drop
    exceeds max_drop), ``within`` tests H1 "p10 - p01 < bound". With no discordant samples (b = c = 0) the data
    prove a difference below `bound` only when n is large enough for that bound to be implausible, never by a
    zero-width interval. NaN where n == 0.
    """
    if all(np.ndim(x) == 0 for x in (b, c, n, bound)):
        return _scalar_p_values(float(b), float(c), float(n), float(bound))
    b = np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(b < 0) or np.any(c < 0) or np.any(b + c > n):
        raise ValueError("need 0 <= b, c and b + c <= n")
    beyond = _sps.norm.sf(_tango_z(b, c, n, bound, -TANGO_CORRECTION))
    within = _sps.norm.cdf(_tango_z(b, c, n, bound, +TANGO_CORRECTION))
    return np.where(n > 0, beyond, np.nan), np.where(n > 0, within, np.nan)


def _scalar_p_values(b: float, c: float, n: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    """paired_difference_p_values for one table, in Python floats: tango_constrained_p01's and _tango_z's IEEE
    operations in their order, so the same z and p-values, without numpy's per-call cost (0-d arrays out)."""
    if b < 0 or c < 0 or b + c > n:
        raise ValueError("need 0 <= b, c and b + c <= n")
    if not n > 0:
        return np.asarray(math.nan), np.asarray(math.nan)
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * d
    c_ = -c * d * (1.0 - d)
    q = max((math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0)) - b_) / (2.0 * a_), max(0.0, -d))
    var = n * (2.0 * q + d * (1.0 - d))
    tails = []
    for shift in (-TANGO_CORRECTION, TANGO_CORRECTION):
        num = b - c - n * d + shift
        z = num / math.sqrt(var) if var > 1e-300 else (math.inf if num > 0 else -math.inf if num < 0 else 0.0)
        tails.append(z)
    return np.asarray(_sps.norm.sf(tails[0])), np.asarray(_sps.norm.cdf(tails[1]))


def paired_difference_interval(b: np.ndarray | int, c: np.ndarray | int, n: np.ndarray | int, *,
                               confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided interval for p10 - p01 inverting `paired_difference_p_values` (each side at (1 - confidence) / 2).

    The lower bound is the smallest difference the "beyond" test does not reject, the upper bound the largest the
    "within" test does not reject, so ``upper <= bound`` exactly when ``within < alpha`` (up to `INTERVAL_TOLERANCE`).
    Vectorised: every bound of every table is one root of `_tango_excess`, all found together (`_tango_roots`).
    """
    zeta = float(_sps.norm.ppf(one_sided_alpha(confidence)))
    b = np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    shape = np.broadcast(b, c, n).shape
    if shape == () and n > 0:
        low, high = _scalar_interval(float(b), float(c), float(n), zeta)
        return np.asarray(low), np.asarray(high)
    if 0 < np.prod(shape) <= SCALAR_INTERVALS:
        pairs = [_scalar_interval(float(bi), float(ci), float(ni), zeta) if ni > 0 else (math.nan, math.nan)
                 for bi, ci, ni in zip(*(np.broadcast_to(x, shape).ravel() for x in (b, c, n)))]
        return (np.array([p[0] for p in pairs], dtype=np.float64).reshape(shape),
                np.array([p[1] for p in pairs], dtype=np.float64).reshape(shape))
    b, c, n = (np.broadcast_to(x, shape).ravel() for x in (b, c, n))
    positive = n > 0
    # axis 0 is the side: lower bound (the "beyond" test, shift -TANGO_CORRECTION), upper (the "within" test, +)
    side = np.array([[-1.0], [1.0]])
    terms = _tango_terms(b[positive], c[positive], n[positive], side * TANGO_CORRECTION, side * zeta)
    roots = _tango_roots(terms)
    low, high = np.full(b.size, np.nan), np.full(b.size, np.nan)
    low[positive], high[positive] = roots[0], roots[1]
    return low.reshape(shape), high.reshape(shape)


#: Up to this many tables, paired_difference_interval solves each in Python floats (about 15 us per bound); beyond,
#: all at once in numpy arrays (about 0.7 ms for 10 tables, 1.2 ms for 1,000). Both run the same IEEE operations
#: on each bound, so they give the same bounds to the bit.
SCALAR_INTERVALS = 10

#: The root finder stops when a Tango bound's bracket is this narrow (absolute, in the difference p10 - p01); float64
#: noise in the statistic itself moves a bound by up to about 2e-12 (docs/statistics.md). Reports print 4 decimals.
INTERVAL_TOLERANCE = 1e-14

#: A bound's root finder gives up after this many steps (Illinois converges in about 10; the cap only bounds a
#: pathological table, whose bound is then still bracketed to the width reached).
INTERVAL_STEPS = 200


def _tango_terms(b: Any, c: Any, n: Any, shift: Any, k: Any) -> tuple[Any, ...]:
    """The terms of `_tango_excess` that do not depend on the difference d (floats or broadcastable arrays)."""
    two_n = 2.0 * n
    return (n, b - c + shift, -b - c, two_n - b + c, -c, 4.0 * two_n, 2.0 * two_n, k)


def _tango_excess(d: Any, n: Any, num0: Any, minus_b_minus_c: Any, slope: Any, minus_c: Any, four_a: Any,
                  two_a: Any, k: Any, sqrt: Any, maximum: Any) -> Any:
    """``num - k sd`` at difference d: Tango's numerator (b - c - n d + shift) less `k` standard deviations under the
    null p10 - p01 = d (tango_constrained_p01's MLE). Its sign is that of z - k, and it is finite where sd is 0."""
    spread = 1.0 - d
    b_ = minus_b_minus_c + slope * d
    c_ = minus_c * d * spread
    q = (sqrt(maximum(b_ * b_ - four_a * c_, 0.0)) - b_) / two_a
    q = maximum(q, maximum(0.0, -d))
    var = n * (2.0 * q + d * spread)
    return num0 - n * d - k * sqrt(maximum(var, 0.0))


def _tango_roots(terms: tuple[np.ndarray, ...]) -> np.ndarray:
    """The root in [-1, 1] of `_tango_excess` for each element of the (2, N) terms: row 0 the lower bounds, row 1
    the upper ones. The Illinois method (regula falsi that halves a stale end's value) on the bracket [-1, 1], each
    element exactly as `_scalar_root` steps it (finished elements are frozen), so both give the same bits."""
    args = np.broadcast_arrays(*terms)
    shape = args[0].shape
    lower = np.broadcast_to(np.array([[True], [False]]), shape)
    lo, hi = np.full(shape, -1.0), np.full(shape, 1.0)
    f_lo = _tango_excess(lo, *args, sqrt=np.sqrt, maximum=np.maximum)
    f_hi = _tango_excess(hi, *args, sqrt=np.sqrt, maximum=np.maximum)
    at_low = f_lo <= 0.0                     # not rejected at -1: the bound is -1
    at_high = ~at_low & (f_hi >= 0.0)        # not rejected at 1: the bound is 1
    lo, hi = np.where(at_high, 1.0, lo), np.where(at_low, -1.0, hi)
    done = at_low | at_high
    last = np.zeros(shape)                   # +1: lo moved last, -1: hi moved last
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(INTERVAL_STEPS):
            done |= hi - lo <= INTERVAL_TOLERANCE
            if done.all():
                break
            x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
            outside = ~((lo < x) & (x < hi))
            x = np.where(outside, 0.5 * (lo + hi), x)
            stuck = outside & ~((lo < x) & (x < hi))          # lo and hi adjacent floats
            done |= stuck
            fx = _tango_excess(x, *args, sqrt=np.sqrt, maximum=np.maximum)
            live = ~done
            up, down = live & (fx > 0.0), live & (fx < 0.0)
            hit = live & ~(fx > 0.0) & ~(fx < 0.0)
            f_hi = np.where(up & (last > 0), f_hi * 0.5, f_hi)
            f_lo = np.where(down & (last < 0), f_lo * 0.5, f_lo)
            lo, f_lo = np.where(up | hit, x, lo), np.where(up, fx, f_lo)
            hi, f_hi = np.where(down | hit, x, hi), np.where(down, fx, f_hi)
            last = np.where(up, 1.0, np.where(down, -1.0, last))
            done |= hit
    return np.where(lower, hi, lo)


def _scalar_root(terms: tuple[float, ...], lower: bool) -> float:
    """`_tango_roots` for one bound in Python floats: the same IEEE operations, without numpy's per-call cost."""
    lo, hi = -1.0, 1.0
    f_lo = _tango_excess(lo, *terms, sqrt=math.sqrt, maximum=max)
    f_hi = _tango_excess(hi, *terms, sqrt=math.sqrt, maximum=max)
    if f_lo <= 0.0:
        return -1.0
    if f_hi >= 0.0:
        return 1.0
    last = 0.0
    for _ in range(INTERVAL_STEPS):
        if hi - lo <= INTERVAL_TOLERANCE:
            break
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not lo < x < hi:
            x = 0.5 * (lo + hi)
            if not lo < x < hi:
                break
        fx = _tango_excess(x, *terms, sqrt=math.sqrt, maximum=max)
        if fx > 0.0:
            if last > 0:
                f_hi = f_hi * 0.5
            lo, f_lo, last = x, fx, 1.0
        elif fx < 0.0:
            if last < 0:
                f_lo = f_lo * 0.5
            hi, f_hi, last = x, fx, -1.0
        else:
            lo = hi = x
            break
    return hi if lower else lo


def _scalar_interval(b: float, c: float, n: float, zeta: float) -> tuple[float, float]:
    """paired_difference_interval for one table with n > 0 (zeta = the normal quantile at alpha), in Python floats."""
    return (_scalar_root(_tango_terms(b, c, n, -TANGO_CORRECTION, -zeta), True),
            _scalar_root(_tango_terms(b, c, n, TANGO_CORRECTION, zeta), False))


def ratio_difference_p_values(estimate: np.ndarray, se: np.ndarray, *, bound: float,
                              correction: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One-sided normal p-values (beyond, within) of a difference with standard error `se` against `bound`.

    `correction` moves the estimate towards the null on each side (a continuity correction, in the estimate's
    units), so neither claim is made on a lattice step alone.
    """
    est = np.asarray(estimate, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    cc = np.asarray(correction, dtype=np.float64)

    def z(shift: np.ndarray) -> np.ndarray:
        num = est - bound + shift
        with np.errstate(divide="ignore", invalid="ignore"):
            out = num / s
        return np.where(s > 0, out, np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0)))

    return _sps.norm.sf(z(-cc)), _sps.norm.cdf(z(cc))


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
    if not np.isnan(reps).any():
        # np.nanquantile on NaN-free replicates is np.quantile; one partition for both tails
        low, high = linear_quantiles(reps, (alpha, 1.0 - alpha))
        return np.asarray(low), np.asarray(high)
    return _nanquantile(reps, alpha), _nanquantile(reps, 1.0 - alpha)


def linear_quantiles(values: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """np.quantile(values, quantiles, axis=0) of NaN-free values (its default "linear" method), value for value:
    numpy's own index, partition and interpolation arithmetic, without its per-call overhead (about 60 us)."""
    n = values.shape[0]
    virtual = (n - 1) * np.asarray(quantiles, dtype=np.float64)
    previous = np.floor(virtual)
    following = previous + 1
    at_end = virtual >= n - 1
    previous[at_end], following[at_end] = -1, -1
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    part = np.partition(values, np.unique(np.concatenate([previous, following])), axis=0)
    out = []
    for i, gamma in enumerate((virtual - previous).tolist()):
        a, b = part[previous[i]], part[following[i]]
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return out


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


def bootstrap_p_interval(replicates: np.ndarray, *, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) along axis 0 that `bootstrap_p_value` inverts at one-sided level `alpha`: "greater than b" has
    p < alpha exactly when b + tolerance < low, "less than b" exactly when high < b - tolerance (`at_most`).
    low is the (c + 1)-th smallest non-NaN replicate and high the (c + 1)-th largest, c the most replicates on the
    null side that still give p = (1 + c) / (1 + N) < alpha; (-inf, inf) where no c does (too few replicates),
    NaN where a column has none. The percentile interval's order statistic, not its interpolated quantile."""
    reps = np.sort(np.asarray(replicates, dtype=np.float64), axis=0)       # NaN last
    total = np.sum(~np.isnan(reps), axis=0)
    c = np.ceil(alpha * (1.0 + total) - 1.0) - 1.0
    c = np.where((2.0 + c) / (1.0 + total) < alpha, c + 1.0, c)            # float rounding, either way
    c = np.where((1.0 + c) / (1.0 + total) < alpha, c, c - 1.0).astype(np.int64)
    reachable = (c >= 0) & (total > 0)
    i_low = np.where(reachable, c, 0)
    i_high = np.where(reachable, total - 1 - c, 0)
    low = np.take_along_axis(reps, i_low[None, ...], axis=0)[0]
    high = np.take_along_axis(reps, i_high[None, ...], axis=0)[0]
    low = np.where(reachable, low, np.where(total > 0, -np.inf, np.nan))
    high = np.where(reachable, high, np.where(total > 0, np.inf, np.nan))
    return low, high


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
    A drop can never exceed the discordance (d = p10 - p01 <= p10 + p01), so when the root is above psi no
    possible drop is detectable at this discordance and the answer is inf. `required_samples` is its inverse.
    """
    n = _check_count("n", n)
    psi = _discordance(discordance)
    z_a, z_b = _power_z(confidence, power)
    under_root = n + z_b * z_b - z_a * z_a
    if n == 0 or under_root < 0:
        return math.inf
    d = math.sqrt(psi) * (z_a * math.sqrt(n) + z_b * math.sqrt(under_root)) / (n + z_b * z_b)
    return d if d <= psi else math.inf


def required_samples(drop: float, *, discordance: float, confidence: float, power: float = 0.8) -> int:
    """Evaluation-set size at which a true accuracy drop `drop` becomes detectable (inverse of the above).

    ``n = ceil((z_alpha sqrt(psi) + z_beta sqrt(psi - drop^2))^2 / drop^2)``, the same equation solved for n at
    the same psi, so ``required_samples(min_detectable_drop(n, ...), ...) == n``. A drop larger than the
    discordance is impossible at that discordance: ValueError.
    """
    if not 0.0 < drop <= 1.0:
        raise ValueError(f"drop must be in (0, 1], got {drop!r}")
    psi = _discordance(discordance)
    if drop > psi * (1.0 + 1e-12):
        raise ValueError(f"a drop of {drop!r} cannot happen with only {psi!r} of the samples discordant")
    z_a, z_b = _power_z(confidence, power)
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - drop * drop))) ** 2 / (drop * drop)
    # Absorb float noise so that required_samples(min_detectable_drop(n)) == n.
    return max(1, math.ceil(n * (1.0 - 1e-9)))
