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


# ------------------------------------------------------------------------------------ exact binomial rates


def test_binomial_p_values_equal_scipy_binomtest():
    for x, n, bound in [(0, 20, 0.05), (3, 20, 0.05), (20, 20, 0.5), (17, 200, 0.05), (120, 1000, 0.1),
                        (1, 1, 0.3), (0, 1000, 0.001)]:
        greater, less = stats.binomial_p_values(x, n, bound=bound)
        assert float(greater) == pytest.approx(sps.binomtest(x, n, bound, alternative="greater").pvalue, rel=1e-9)
        assert float(less) == pytest.approx(sps.binomtest(x, n, bound, alternative="less").pvalue, rel=1e-9)
    greater, less = stats.binomial_p_values(np.array([0, 3]), np.array([0, 10]), bound=0.2)
    assert math.isnan(greater[0]) and math.isnan(less[0]) and less[1] == pytest.approx(sps.binom.cdf(3, 10, 0.2))


@pytest.mark.parametrize("x,n", [(0, 1), (1, 1), (0, 20), (3, 20), (17, 200), (199, 200), (4321, 10000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_equals_scipy_exact_interval(x, n, confidence):
    got = stats.clopper_pearson_interval(x, n, confidence=confidence)
    ci = sps.binomtest(x, n).proportion_ci(confidence_level=confidence, method="exact")
    assert got == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_clopper_pearson_edges():
    assert stats.clopper_pearson_interval(0, 0, confidence=0.95) == (0.0, 1.0)
    with pytest.raises(ValueError, match="cannot exceed"):
        stats.clopper_pearson_interval(5, 4, confidence=0.95)


@pytest.mark.parametrize("n", [50, 100, 200])
@pytest.mark.parametrize("rate", [0.01, 0.02, 0.04, 0.1, 0.25])
def test_exact_rate_decisions_hold_both_error_rates_by_enumeration(n, rate):
    """A rate truly AT its ceiling: P(claimed within) and P(claimed beyond) are <= alpha, summed over every x."""
    alpha = 0.025
    x = np.arange(n + 1)
    pmf = sps.binom.pmf(x, n, rate)
    greater, less = stats.binomial_p_values(x, np.full_like(x, n), bound=rate)
    assert pmf[less < alpha].sum() <= alpha          # "within the ceiling" claimed for a rate at it
    assert pmf[greater < alpha].sum() <= alpha       # "beyond the ceiling" claimed for a rate at it


# ------------------------------------------------------------------------------- Tango paired differences


def test_tango_constrained_mle_maximises_the_likelihood():
    from scipy.optimize import minimize_scalar

    for b, c, n, delta in [(10, 4, 100, 0.01), (0, 0, 100, 0.02), (3, 0, 50, -0.02), (30, 10, 1000, 0.03),
                           (5, 9, 200, 0.0), (40, 2, 300, 0.2)]:
        low, high = max(0.0, -delta), (1.0 - delta) / 2.0

        def nll(q: float) -> float:
            p10, p01, p_rest = q + delta, q, 1.0 - 2.0 * q - delta
            return -(b * math.log(max(p10, 1e-300)) + c * math.log(max(p01, 1e-300))
                     + (n - b - c) * math.log(max(p_rest, 1e-300)))

        best = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-12})
        got = float(stats.tango_constrained_p01(b, c, n, delta))
        assert nll(got) <= nll(best.x) + 1e-7, (b, c, n, delta, got, best.x)


def test_tango_statistic_is_the_score_statistic_with_its_correction():
    b, c, n, bound = 14, 5, 400, 0.01
    q = float(stats.tango_constrained_p01(b, c, n, bound))
    sd = math.sqrt(n * ((q + bound) + q - bound * bound))        # Var(b - c) under the restricted MLE
    beyond, within = stats.paired_difference_p_values(b, c, n, bound=bound)
    cc = stats.TANGO_CORRECTION
    assert float(beyond) == pytest.approx(sps.norm.sf((b - c - n * bound - cc) / sd), rel=1e-12)
    assert float(within) == pytest.approx(sps.norm.cdf((b - c - n * bound + cc) / sd), rel=1e-12)


def test_tango_interval_inverts_its_tests():
    rng = np.random.default_rng(4)
    alpha = 0.025
    for _ in range(300):
        n = int(rng.integers(20, 2000))
        b = int(rng.integers(0, n // 5 + 1))
        c = int(rng.integers(0, n // 5 + 1))
        bound = float(rng.uniform(-0.05, 0.08))
        low, high = stats.paired_difference_interval(b, c, n, confidence=0.95)
        beyond, within = stats.paired_difference_p_values(b, c, n, bound=bound)
        if min(abs(float(beyond) - alpha), abs(float(within) - alpha)) < 1e-6:
            continue
        assert (float(within) < alpha) == (float(high) < bound), (b, c, n, bound)
        assert (float(beyond) < alpha) == (float(low) > bound), (b, c, n, bound)
        assert float(low) <= (b - c) / n <= float(high)


def test_tango_interval_bounds_are_the_roots_scipy_finds_for_its_tests():
    """Each bound is where its one-sided p-value crosses alpha: scipy's brentq on paired_difference_p_values."""
    from scipy.optimize import brentq

    rng = np.random.default_rng(7)
    tables = [(0, 0, 50), (0, 0, 10_000), (3, 2, 540), (1, 46, 47), (0, 36, 50), (50, 0, 50), (0, 50, 50)]
    for _ in range(60):
        n = int(rng.integers(5, 20_000))
        b = int(rng.integers(0, n // 4 + 1))
        tables.append((b, int(rng.integers(0, (n - b) // 4 + 1)), n))
    for confidence in (0.95, 0.8):
        alpha = stats.one_sided_alpha(confidence)
        for b, c, n in tables:
            low, high = (float(x) for x in stats.paired_difference_interval(b, c, n, confidence=confidence))

            def beyond(d: float) -> float:
                return float(stats.paired_difference_p_values(b, c, n, bound=d)[0]) - alpha

            def within(d: float) -> float:
                return float(stats.paired_difference_p_values(b, c, n, bound=d)[1]) - alpha

            edge = 1.0 - 1e-12
            want_low = -1.0 if beyond(-edge) >= 0 else brentq(beyond, -edge, (b - c) / n, xtol=1e-15, rtol=1e-15)
            want_high = 1.0 if within(edge) >= 0 else brentq(within, (b - c) / n, edge, xtol=1e-15, rtol=1e-15)
            assert low == pytest.approx(want_low, abs=1e-9), (b, c, n, confidence)
            assert high == pytest.approx(want_high, abs=1e-9), (b, c, n, confidence)


def test_tango_interval_is_the_same_root_finder_for_one_table_few_or_many(monkeypatch):
    # Three code paths (Python floats for one table or a few, numpy arrays for many) run the same IEEE operations in
    # the same order; each must give the array path's bounds exactly, NaN where n is 0.
    rng = np.random.default_rng(4)
    n = rng.integers(0, 3000, 40)
    b = (rng.random(40) * n * rng.random(40)).astype(int)
    c = (rng.random(40) * (n - b) * rng.random(40)).astype(int)
    b[:5], c[:5] = 0, 0
    b[5:8], c[5:8] = n[5:8], 0
    for confidence in (0.95, 0.99, 0.8):
        monkeypatch.setattr(stats, "SCALAR_INTERVALS", 0)
        low, high = stats.paired_difference_interval(b, c, n, confidence=confidence)
        monkeypatch.setattr(stats, "SCALAR_INTERVALS", 10)
        i = int(rng.integers(0, 40))
        for lo, hi in ((0, 40), (0, 10), (10, 13), (i, i + 1)):
            few = stats.paired_difference_interval(b[lo:hi], c[lo:hi], n[lo:hi], confidence=confidence)
            np.testing.assert_array_equal(few[0], low[lo:hi])
            np.testing.assert_array_equal(few[1], high[lo:hi])
        for i in range(40):
            one = stats.paired_difference_interval(int(b[i]), int(c[i]), int(n[i]), confidence=confidence)
            assert one[0].shape == () and np.array_equal(one, (low[i], high[i]), equal_nan=True)


def test_zero_discordance_never_proves_a_small_drop_within():
    # The percentile bootstrap gave [0, 0] here, a "pass" for any max_drop >= 0.
    for n in (50, 100, 200):
        low, high = stats.paired_difference_interval(0, 0, n, confidence=0.95)
        assert float(high) > 0.02 and float(low) < -0.02
        _, within = stats.paired_difference_p_values(0, 0, n, bound=0.01)
        assert float(within) >= 0.025


def _tango_error_rates(n: int, *, discordance: float, drop: float, bound: float) -> tuple[float, float]:
    """Exact P(claim within), P(claim beyond) of `bound`, summed over every (b, c) with its multinomial probability."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = b + c <= n
    b, c = b[keep], c[keep]
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    pmf = sps.multinomial.pmf(np.stack([b, c, n - b - c], axis=1), n, [p10, p01, 1 - discordance])
    beyond, within = stats.paired_difference_p_values(b, c, np.full_like(b, n), bound=bound)
    return float(pmf[within < 0.025].sum()), float(pmf[beyond < 0.025].sum())


@pytest.mark.parametrize("n", [50, 100, 200])
@pytest.mark.parametrize("discordance", [0.0, 0.01, 0.02, 0.04, 0.1])
def test_tango_holds_both_error_rates_by_exact_enumeration(n, discordance):
    """True drop AT the bound: neither "within" nor "beyond" is claimed more than alpha = 2.5% of the time;
    truly beyond (within) the bound, "within" ("beyond") is claimed even less. Bounds from 0 to 5 points."""
    worst = 0.0
    for bound in (0.0, 0.005, 0.01, 0.02, 0.05):
        if bound > discordance:                      # a drop cannot exceed the discordance
            continue
        claim_within, claim_beyond = _tango_error_rates(n, discordance=discordance, drop=bound, bound=bound)
        worst = max(worst, claim_within, claim_beyond)
        assert claim_within <= 0.025 and claim_beyond <= 0.025, (bound, claim_within, claim_beyond)
        if bound + 0.005 <= discordance:             # truly beyond the bound
            claim_within, _ = _tango_error_rates(n, discordance=discordance, drop=bound + 0.005, bound=bound)
            assert claim_within <= 0.025
        if bound >= 0.005:                           # truly within the bound
            _, claim_beyond = _tango_error_rates(n, discordance=discordance, drop=bound - 0.005, bound=bound)
            assert claim_beyond <= 0.025
    assert worst <= 0.025


def test_tango_without_its_correction_is_liberal_which_is_why_it_has_one(monkeypatch):
    monkeypatch.setattr(stats, "TANGO_CORRECTION", 0.0)
    _, claim_beyond = _tango_error_rates(200, discordance=0.02, drop=0.02, bound=0.02)
    assert claim_beyond > 0.04


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


# --------------------------------------------------------------------------------------------------- power


@pytest.mark.parametrize("discordance", [0.01, 0.04, 0.2])
@pytest.mark.parametrize("confidence,power", [(0.95, 0.8), (0.9, 0.9), (0.99, 0.5)])
def test_min_detectable_drop_and_required_samples_are_inverse(discordance, confidence, power):
    kw = {"discordance": discordance, "confidence": confidence, "power": power}
    previous = math.inf
    for n in (50, 100, 200, 500, 1000, 5000, 10000, 100000):
        d = stats.min_detectable_drop(n, **kw)
        assert d < previous or d == previous == math.inf  # more samples, smaller detectable drop
        previous = d
        assert d <= discordance or d == math.inf     # a drop above the discordance is not physical
        if math.isfinite(d):
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


def test_min_detectable_drop_never_exceeds_the_discordance():
    # It returned 0.039 here, and required_samples(0.039) returned 199, not 100.
    assert stats.min_detectable_drop(100, discordance=0.02, confidence=0.95) == math.inf
    for n in range(10, 5000, 37):
        for psi in (0.005, 0.02, 0.04, 0.1):
            d = stats.min_detectable_drop(n, discordance=psi, confidence=0.95)
            assert d == math.inf or (d <= psi and stats.required_samples(d, discordance=psi, confidence=0.95) == n)
    with pytest.raises(ValueError, match="cannot happen"):
        stats.required_samples(0.05, discordance=0.02, confidence=0.95)


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


def test_linear_quantiles_are_numpys_quantiles_value_for_value():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 2500))
        shape = (n,) if rng.random() < 0.6 else (n, int(rng.integers(1, 4)))
        values = rng.random(shape) if rng.random() < 0.5 else rng.integers(0, 5, shape) / 5.0   # ties too
        alpha = float(rng.choice([0.025, 0.005, 0.05, 0.25, 0.0005]))
        want = np.quantile(values, [alpha, 1.0 - alpha], axis=0)
        got = stats.linear_quantiles(values, (alpha, 1.0 - alpha))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_tango_p_values_of_one_table_are_the_array_paths():
    # Python floats for a scalar table run the array path's IEEE operations: the same p-values, NaN at n 0
    rng = np.random.default_rng(12)
    for _ in range(2000):
        n = int(rng.integers(0, 3000))
        b = int(rng.integers(0, n + 1)) if n else 0
        c = int(rng.integers(0, n - b + 1)) if n else 0
        if rng.random() < 0.3:
            b, c = min(b, 2), min(c, 2)
        bound = float(rng.choice([0.0, 0.01, -0.02, 1.0, -1.0, float(rng.uniform(-1, 1))]))
        one = stats.paired_difference_p_values(b, c, n, bound=bound)
        many = stats.paired_difference_p_values(np.array([b]), np.array([c]), np.array([n]), bound=bound)
        for x, y in zip(one, many):
            assert np.asarray(x).shape == () and np.array_equal(x, y[0], equal_nan=True), (b, c, n, bound)
    with pytest.raises(ValueError, match="b \\+ c <= n"):
        stats.paired_difference_p_values(3, 2, 4, bound=0.0)


@pytest.mark.parametrize("resamples", [19, 40, 100, 1999, 2000])
def test_bootstrap_p_interval_is_what_bootstrap_p_value_claims_at_every_bound(resamples):
    # tied replicates (rounded to 0.1) on the bounds themselves and NaN ones: "greater than b" is claimed exactly
    # when b + tolerance < low, "less than b" exactly when high < b - tolerance; too few replicates: unbounded
    rng = np.random.default_rng(resamples)
    reps = np.round(rng.normal(size=(resamples, 30)), 1)
    reps[rng.random(reps.shape) < 0.05] = np.nan
    alpha = 0.025 - stats.tolerance(0.025)
    low, high = stats.bootstrap_p_interval(reps, alpha=alpha)
    for bound in np.round(np.arange(-4.0, 4.0, 0.05), 2):
        greater = stats.bootstrap_p_value(reps, bound=float(bound), alternative="greater") < alpha
        less = stats.bootstrap_p_value(reps, bound=float(bound), alternative="less") < alpha
        np.testing.assert_array_equal(greater, bound + stats.tolerance(bound) < low)
        np.testing.assert_array_equal(less, high < bound - stats.tolerance(bound))
    valid = np.sum(~np.isnan(reps), axis=0)
    assert np.all(np.isinf(low) == (alpha * (1 + valid) <= 1))            # not even c = 0 gives p < alpha
    assert np.all((low <= high) | np.isinf(low))
    lo_nan, hi_nan = stats.bootstrap_p_interval(np.full((50, 2), np.nan), alpha=alpha)
    assert np.isnan(lo_nan).all() and np.isnan(hi_nan).all()
