"""gate.stats against scipy, closed forms, published values and brute-force procedures."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gate import stats

# ------------------------------------------------------------------------------------------------- McNemar

MCNEMAR_GRID = [(b, c) for b in range(0, 26) for c in range(0, 26)] + [
    (0, 1000), (480, 520), (37, 71), (1, 200), (300, 300), (2500, 2400)]


def test_mcnemar_exact_equals_scipy_binomtest():
    for b, c in MCNEMAR_GRID:
        expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
        assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300), (b, c)


def test_mcnemar_one_sided_equals_scipy_binomtest_greater():
    for b, c in MCNEMAR_GRID:
        expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5, alternative="greater").pvalue
        assert stats.mcnemar_one_sided(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300), (b, c)


def test_mcnemar_one_sided_points_at_the_worse_candidate():
    # 30 negative flips vs 10 positive: clear evidence the candidate is worse, none that it is better.
    assert stats.mcnemar_one_sided(30, 10) < 0.01
    assert stats.mcnemar_one_sided(10, 30) > 0.99
    assert stats.mcnemar_exact(30, 10) == stats.mcnemar_exact(10, 30)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_mcnemar_rejects_non_counts(bad):
    with pytest.raises(ValueError, match="negative_flips"):
        stats.mcnemar_exact(bad, 3)


# -------------------------------------------------------------------------------------------------- Wilson


def wilson_by_quadratic(x: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson interval as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, solved independently."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p_hat = x / n
    a = 1 + z * z / n
    b = -(2 * p_hat + z * z / n)
    c = p_hat * p_hat
    disc = math.sqrt(b * b - 4 * a * c)
    return ((-b - disc) / (2 * a), (-b + disc) / (2 * a))


@pytest.mark.parametrize("x,n", [(0, 1), (1, 1), (0, 10), (3, 10), (5, 10), (10, 10), (17, 200), (199, 200),
                                 (4321, 10000), (1, 1_000_000)])
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_wilson_matches_closed_form(x, n, confidence):
    low, high = stats.wilson_interval(x, n, confidence=confidence)
    exp_low, exp_high = wilson_by_quadratic(x, n, confidence)
    assert low == pytest.approx(max(0.0, exp_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, exp_high), abs=1e-12)
    assert 0.0 <= low <= x / n <= high <= 1.0


@pytest.mark.parametrize("x,n,low,high", [
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score, no correction);
    # also what statsmodels' proportion_confint(..., method="wilson") returns.
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_values(x, n, low, high):
    got = stats.wilson_interval(x, n, confidence=0.95)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_empty_and_bad_input():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="cannot exceed"):
        stats.wilson_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        stats.wilson_interval(1, 4, confidence=1.0)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_proportion_p_value_inverts_wilson(alternative):
    # p < (1 - confidence) / 2 exactly when the Wilson interval lies wholly beyond the bound on that side.
    rng = np.random.default_rng(3)
    confidence = 0.95
    alpha = stats.one_sided_alpha(confidence)
    for _ in range(400):
        n = int(rng.integers(1, 500))
        x = int(rng.integers(0, n + 1))
        bound = float(rng.uniform(0.01, 0.99))
        p = stats.proportion_p_value(x, n, bound=bound, alternative=alternative)
        if abs(p - alpha) < 1e-9:
            continue
        low, high = stats.wilson_interval(x, n, confidence=confidence)
        beyond = low > bound if alternative == "greater" else high < bound
        assert (p < alpha) == beyond, (x, n, bound, p, low, high)


def test_proportion_p_value_against_normal_score_test():
    z = (30 / 200 - 0.1) / math.sqrt(0.1 * 0.9 / 200)
    assert stats.proportion_p_value(30, 200, bound=0.1, alternative="greater") == pytest.approx(sps.norm.sf(z))
    assert stats.proportion_p_value(30, 200, bound=0.1, alternative="less") == pytest.approx(sps.norm.cdf(z))
    assert math.isnan(stats.proportion_p_value(0, 0, bound=0.1, alternative="less"))


# ----------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_weights_rows_sum_to_n_and_are_reproducible():
    counts = np.array([40, 0, 7, 120, 3, 30], dtype=np.int64)
    w = stats.bootstrap_weights(counts, resamples=500, seed=11)
    assert w.shape == (500, counts.size) and w.dtype == np.int64
    assert np.all(w.sum(axis=1) == counts.sum())
    assert np.all(w[:, 1] == 0)                     # an empty cell is never drawn
    assert np.array_equal(w, stats.bootstrap_weights(counts, resamples=500, seed=11))
    assert not np.array_equal(w, stats.bootstrap_weights(counts, resamples=500, seed=12))


def test_bootstrap_weights_are_multinomial_moments():
    counts = np.array([50, 30, 15, 5], dtype=np.int64)
    n, resamples = counts.sum(), 20000
    w = stats.bootstrap_weights(counts, resamples=resamples, seed=0)
    p = counts / n
    # Law of large numbers: mean -> n p = counts, variance -> n p (1 - p).
    standard_error = np.sqrt(n * p * (1 - p) / resamples)
    assert np.all(np.abs(w.mean(axis=0) - counts) <= 6 * standard_error)
    np.testing.assert_allclose(w.var(axis=0), n * p * (1 - p), rtol=0.05)


def test_bootstrap_weight_chunks_concatenate_to_the_same_rows():
    counts = np.array([5, 9, 1, 0, 13])
    whole = stats.bootstrap_weights(counts, resamples=70, seed=5)
    chunks = list(stats.iter_bootstrap_weights(counts, resamples=70, seed=5, chunk=16))
    assert [c.shape[0] for c in chunks] == [16, 16, 16, 16, 6]
    assert np.array_equal(np.concatenate(chunks), whole)


def test_bootstrap_weights_edge_cases():
    assert stats.bootstrap_weights(np.zeros(3, dtype=np.int64), resamples=4, seed=0).tolist() == [[0, 0, 0]] * 4
    with pytest.raises(ValueError, match="non-negative"):
        stats.bootstrap_weights(np.array([3, -1]), resamples=4, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        stats.bootstrap_weights(np.ones((2, 2), dtype=np.int64), resamples=4, seed=0)


def test_cell_bootstrap_equals_sample_bootstrap_in_distribution():
    # Resampling samples with replacement and counting cells is the multinomial on the cells.
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 3, n)
    pb = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    pc = np.where(rng.random(n) < 0.75, y, rng.integers(0, 3, n))
    cells, counts = np.unique(np.stack([y, pb, pc], axis=1), axis=0, return_counts=True)
    diff_cell = (cells[:, 1] == cells[:, 0]).astype(float) - (cells[:, 2] == cells[:, 0])
    w = stats.bootstrap_weights(counts, resamples=4000, seed=2)
    by_cells = w @ diff_cell / n
    idx = rng.integers(0, n, size=(4000, n))
    diff_sample = (pb == y).astype(float) - (pc == y)
    by_samples = diff_sample[idx].mean(axis=1)
    assert by_cells.mean() == pytest.approx(by_samples.mean(), abs=0.003)
    assert by_cells.std() == pytest.approx(by_samples.std(), rel=0.06)


def test_percentile_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 6, size=200).astype(float)     # few distinct values, like cells
    values, counts = np.unique(x, return_counts=True)
    w = stats.bootstrap_weights(counts, resamples=9999, seed=3)
    means = w @ values / x.size
    low, high = stats.percentile_interval(means, confidence=0.95)
    ref = sps.bootstrap((x,), np.mean, method="percentile", confidence_level=0.95, n_resamples=9999,
                        rng=np.random.default_rng(4)).confidence_interval
    width = ref.high - ref.low
    assert float(low) == pytest.approx(ref.low, abs=0.05 * width)
    assert float(high) == pytest.approx(ref.high, abs=0.05 * width)


def test_percentile_interval_shapes_and_nans():
    reps = np.arange(101, dtype=float)
    low, high = stats.percentile_interval(reps, confidence=0.9)
    assert low.shape == () and float(low) == pytest.approx(5.0) and float(high) == pytest.approx(95.0)
    two = np.stack([reps, 2 * reps, np.full(101, np.nan)], axis=1)
    two[::2, 0] = np.nan                          # NaNs are ignored, not propagated
    low, high = stats.percentile_interval(two, confidence=0.9)
    assert low.shape == (3,)
    np.testing.assert_allclose(low[:2], [np.quantile(reps[1::2], 0.05), 10.0])
    np.testing.assert_allclose(high[:2], [np.quantile(reps[1::2], 0.95), 190.0])
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_bootstrap_p_value_by_hand():
    reps = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert float(stats.bootstrap_p_value(reps, bound=2.0, alternative="greater")) == pytest.approx(4 / 6)
    assert float(stats.bootstrap_p_value(reps, bound=2.0, alternative="less")) == pytest.approx(4 / 6)
    assert float(stats.bootstrap_p_value(reps, bound=2.5, alternative="greater")) == pytest.approx(4 / 6)
    assert float(stats.bootstrap_p_value(reps, bound=2.5, alternative="less")) == pytest.approx(3 / 6)
    assert float(stats.bootstrap_p_value(reps, bound=-1.0, alternative="greater")) == pytest.approx(1 / 6)
    two = np.array([[np.nan, np.nan], [0.0, np.nan], [1.0, np.nan]])
    p = stats.bootstrap_p_value(two, bound=0.5, alternative="greater")
    assert p[0] == pytest.approx(2 / 3) and np.isnan(p[1])


@pytest.mark.parametrize("family_size,confidence", [(1, 0.95), (10, 0.95), (100, 0.95), (7, 0.9), (3, 0.99)])
def test_min_resamples_is_the_smallest_that_can_fail_a_holm_family(family_size, confidence):
    alpha = stats.one_sided_alpha(confidence)
    r = stats.min_resamples(family_size, confidence=confidence)

    def smallest_holm_p(resamples: int) -> float:
        reps = np.full((resamples, family_size), 1.0)        # every replicate far beyond the bound 0
        return float(stats.holm(stats.bootstrap_p_value(reps, bound=0.0, alternative="greater")).min())

    assert stats.significant(smallest_holm_p(r), alpha)
    assert not stats.significant(smallest_holm_p(r - 1), alpha)
    assert stats.min_resamples(10, confidence=0.95) == 400


# ------------------------------------------------------------------------------------ multiple comparisons


def holm_rejections(p: np.ndarray, alpha: float) -> set[int]:
    """Holm's step-down procedure, as a rejection rule."""
    order = np.argsort(p)
    rejected: set[int] = set()
    for k, i in enumerate(order):
        if p[i] <= alpha / (p.size - k):
            rejected.add(int(i))
        else:
            break
    return rejected


def bh_rejections(p: np.ndarray, alpha: float) -> set[int]:
    """Benjamini-Hochberg's step-up procedure, as a rejection rule."""
    order = np.argsort(p)
    passing = [k for k in range(p.size) if p[order[k]] <= alpha * (k + 1) / p.size]
    return {int(i) for i in order[: max(passing) + 1]} if passing else set()


def test_holm_and_bh_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(stats.holm(np.array([0.5, 0.6])), [1.0, 1.0])
    np.testing.assert_allclose(stats.benjamini_hochberg(np.array([0.5, 0.6])), [0.6, 0.6])
    assert stats.holm(np.array([])).shape == (0,)


def test_holm_and_bh_match_their_procedures():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        p = np.where(rng.random(m) < 0.5, rng.random(m) * 0.05, rng.random(m))
        holm_adj, bh_adj = stats.holm(p), stats.benjamini_hochberg(p)
        assert np.all(holm_adj >= p) and np.all(holm_adj <= 1)
        assert np.all(np.diff(holm_adj[np.argsort(p)]) >= 0)      # monotone in the raw order
        for alpha in (0.01, 0.025, 0.05, 0.1):
            assert {int(i) for i in np.flatnonzero(holm_adj <= alpha)} == holm_rejections(p, alpha)
            assert {int(i) for i in np.flatnonzero(bh_adj <= alpha)} == bh_rejections(p, alpha)


def test_bh_matches_scipy_false_discovery_control():
    rng = np.random.default_rng(5)
    for m in (1, 2, 5, 10, 100):
        p = rng.random(m) ** 3
        np.testing.assert_allclose(stats.benjamini_hochberg(p), sps.false_discovery_control(p, method="bh"),
                                   rtol=1e-12)


def test_adjust_dispatch_and_nans():
    p = np.array([0.01, np.nan, 0.02])
    np.testing.assert_allclose(stats.adjust(p, "holm"), [0.02, np.nan, 0.02])     # m counts finite p only
    np.testing.assert_allclose(stats.adjust(p, "bh"), [0.02, np.nan, 0.02])
    out = stats.adjust(p, "none")
    np.testing.assert_array_equal(out, p)
    assert out is not p
    with pytest.raises(ValueError, match="method"):
        stats.adjust(p, "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm(np.array([1.2]))


# ---------------------------------------------------------------------------------------------- decisions


def normal_reps(mean: float, sd: float, size: int = 4000) -> np.ndarray:
    return np.random.default_rng(0).normal(mean, sd, size)


def test_decide_max_drop_non_inferiority_outcomes():
    within = stats.decide_max_drop(0.0, normal_reps(0.0, 0.002), max_drop=0.01, confidence=0.95,
                                   mode="non-inferiority")
    assert within.outcome == "pass" and within.interval[1] <= 0.01
    beyond = stats.decide_max_drop(0.03, normal_reps(0.03, 0.002), max_drop=0.01, confidence=0.95,
                                   mode="non-inferiority")
    assert beyond.outcome == "fail" and beyond.interval[0] > 0.01
    straddle = stats.decide_max_drop(0.012, normal_reps(0.012, 0.005), max_drop=0.01, confidence=0.95,
                                     mode="non-inferiority")
    assert straddle.outcome == "inconclusive"
    assert straddle.interval[0] < 0.01 < straddle.interval[1]
    assert "straddles" in straddle.explanation
    reps = normal_reps(0.012, 0.005)
    low, high = stats.percentile_interval(reps, confidence=0.95)
    assert straddle.interval == (float(low), float(high))
    assert straddle.p_value == pytest.approx(float(stats.bootstrap_p_value(reps, bound=0.01,
                                                                           alternative="greater")))


def test_decide_max_drop_point_uses_the_estimate_only():
    reps = normal_reps(0.012, 0.005)
    assert stats.decide_max_drop(0.011, reps, max_drop=0.01, confidence=0.95, mode="point").outcome == "fail"
    assert stats.decide_max_drop(0.01, reps, max_drop=0.01, confidence=0.95, mode="point").outcome == "pass"


def test_a_drop_equal_to_max_drop_up_to_float_rounding_is_within():
    drop = 0.90 - 0.89                          # 0.010000000000000009 in binary floating point
    assert drop > 0.01 and stats.at_most(drop, 0.01)
    assert stats.decide_max_drop(drop, np.full(50, drop), max_drop=0.01, confidence=0.95,
                                 mode="point").outcome == "pass"
    reps = np.full(50, drop)                    # every replicate on the lattice point max_drop itself
    assert stats.decide_max_drop(drop, reps, max_drop=0.01, confidence=0.95,
                                 mode="non-inferiority").outcome == "pass"
    assert float(stats.bootstrap_p_value(reps, bound=0.01, alternative="greater")) == 1.0
    assert not stats.at_most(0.0101, 0.01) and not stats.at_most(float("nan"), 0.01)


def test_decide_max_drop_nan():
    for mode in ("point", "non-inferiority"):
        d = stats.decide_max_drop(float("nan"), normal_reps(0, 0.001), max_drop=0.01, confidence=0.95, mode=mode)
        assert d.outcome == "fail" and "never a pass" in d.explanation
    undefined = stats.decide_max_drop(0.0, np.full(100, np.nan), max_drop=0.01, confidence=0.95,
                                      mode="non-inferiority")
    assert undefined.outcome == "inconclusive"


def test_decide_max_drop_with_adjusted_p():
    beyond = normal_reps(0.02, 0.004)        # lower bound ~0.012 > 0.01 unadjusted ...
    d = stats.decide_max_drop(0.02, beyond, max_drop=0.01, confidence=0.95, mode="non-inferiority",
                              p_adjusted=0.2)  # ... but not after adjusting over the family
    assert d.outcome == "inconclusive" and d.p_value == 0.2
    close = normal_reps(0.014, 0.004)        # lower bound below 0.01, yet a strong adjusted p-value fails it
    d = stats.decide_max_drop(0.014, close, max_drop=0.01, confidence=0.95, mode="non-inferiority",
                              p_adjusted=0.001)
    assert d.outcome == "fail" and "adjusted p" in d.rule


def test_decide_max_drop_p_value_rule_agrees_with_interval_rule_when_unadjusted():
    for mean in (-0.01, 0.0, 0.005, 0.02, 0.03):
        reps = normal_reps(mean, 0.004)
        by_interval = stats.decide_max_drop(mean, reps, max_drop=0.01, confidence=0.95, mode="non-inferiority")
        p = float(stats.bootstrap_p_value(reps, bound=0.01, alternative="greater"))
        by_p = stats.decide_max_drop(mean, reps, max_drop=0.01, confidence=0.95, mode="non-inferiority",
                                     p_adjusted=p)
        assert by_interval.outcome == by_p.outcome


def test_decide_floor_outcomes():
    kw = {"minimum": 0.9, "confidence": 0.95}
    assert stats.decide_floor(950, 1000, mode="non-inferiority", **kw).outcome == "pass"
    assert stats.decide_floor(850, 1000, mode="non-inferiority", **kw).outcome == "fail"
    straddle = stats.decide_floor(905, 1000, mode="non-inferiority", **kw)
    assert straddle.outcome == "inconclusive"
    assert straddle.interval == stats.wilson_interval(905, 1000, confidence=0.95)
    assert stats.decide_floor(899, 1000, mode="point", **kw).outcome == "fail"
    assert stats.decide_floor(900, 1000, mode="point", **kw).outcome == "pass"
    for mode in ("point", "non-inferiority"):
        assert stats.decide_floor(0, 0, mode=mode, **kw).outcome == "fail"


def test_decide_ceiling_outcomes():
    kw = {"maximum": 0.05, "confidence": 0.95}
    assert stats.decide_ceiling(10, 1000, mode="non-inferiority", **kw).outcome == "pass"
    assert stats.decide_ceiling(100, 1000, mode="non-inferiority", **kw).outcome == "fail"
    assert stats.decide_ceiling(52, 1000, mode="non-inferiority", **kw).outcome == "inconclusive"
    assert stats.decide_ceiling(52, 1000, mode="point", **kw).outcome == "fail"
    assert stats.decide_ceiling(50, 1000, mode="point", **kw).outcome == "pass"
    # A small set cannot prove a low rate: 0 flips in 20 samples is still inconclusive against 5%.
    assert stats.decide_ceiling(0, 20, mode="non-inferiority", **kw).outcome == "inconclusive"
    adjusted = stats.decide_ceiling(100, 1000, mode="non-inferiority", p_adjusted=0.3, **kw)
    assert adjusted.outcome == "inconclusive"


def test_decisions_reject_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        stats.decide_floor(1, 2, minimum=0.5, confidence=0.95, mode="strict")


# --------------------------------------------------------------------------------------------------- power


@pytest.mark.parametrize("discordance", [0.01, 0.04, 0.2])
@pytest.mark.parametrize("confidence,power", [(0.95, 0.8), (0.9, 0.9), (0.99, 0.5)])
def test_min_detectable_drop_and_required_samples_are_inverse(discordance, confidence, power):
    kw = {"discordance": discordance, "confidence": confidence, "power": power}
    previous = math.inf
    for n in (50, 100, 200, 500, 1000, 5000, 10000, 100000):
        d = stats.min_detectable_drop(n, **kw)
        assert d < previous                          # more samples, smaller detectable drop
        previous = d
        if d <= discordance:                         # a drop above the discordance is not physical
            assert stats.required_samples(d, **kw) == n
    for drop in (0.005, 0.01, 0.05):
        if drop <= discordance:
            n = stats.required_samples(drop, **kw)
            assert stats.min_detectable_drop(n, **kw) <= drop < stats.min_detectable_drop(n - 1, **kw)


def test_min_detectable_drop_solves_the_normal_power_equation():
    n, psi, confidence, power = 2000, 0.05, 0.95, 0.8
    d = stats.min_detectable_drop(n, discordance=psi, confidence=confidence, power=power)
    z_alpha = sps.norm.isf((1 - confidence) / 2)
    achieved = sps.norm.cdf((math.sqrt(n) * d - z_alpha * math.sqrt(psi)) / math.sqrt(psi - d * d))
    assert achieved == pytest.approx(power, abs=1e-9)


def test_min_detectable_drop_has_about_that_power_for_the_exact_mcnemar_test():
    # Exact power of the one-sided exact McNemar test at alpha = 2.5% when the true drop is the MDD.
    n, psi = 1000, 0.06
    d = stats.min_detectable_drop(n, discordance=psi, confidence=0.95, power=0.8)
    p_negative = (psi + d) / 2 / psi                     # share of discordant pairs that are negative flips
    power = 0.0
    for discordant in range(1, 200):
        b = np.arange(discordant + 1)
        reject = sps.binom.sf(b - 1, discordant, 0.5) < 0.025
        if reject.any():
            b_crit = int(b[reject][0])
            power += sps.binom.pmf(discordant, n, psi) * sps.binom.sf(b_crit - 1, discordant, p_negative)
    assert power == pytest.approx(0.8, abs=0.06)


def test_power_edge_cases():
    assert stats.min_detectable_drop(1, discordance=0.1, confidence=0.95) == math.inf
    # Zero observed discordance is floored: some drop is still undetectable.
    assert stats.min_detectable_drop(1000, discordance=0.0, confidence=0.95) > 0
    assert stats.min_detectable_drop(1000, discordance=0.1, confidence=0.99) > \
        stats.min_detectable_drop(1000, discordance=0.1, confidence=0.95)
    with pytest.raises(ValueError, match="power"):
        stats.required_samples(0.01, discordance=0.1, confidence=0.95, power=0.3)
    with pytest.raises(ValueError, match="drop"):
        stats.required_samples(0.0, discordance=0.1, confidence=0.95)
