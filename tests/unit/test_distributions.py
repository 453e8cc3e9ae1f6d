"""gate.distributions (scipy.special, fast to import) equals scipy.stats wherever the gate calls it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gate import distributions as d

X = np.linspace(-8, 8, 161)
Q = np.array([1e-12, 1e-6, 0.001, 0.025, 0.05, 0.2, 0.5, 0.8, 0.975, 0.999, 1 - 1e-9])


def test_normal():
    np.testing.assert_allclose(d.norm.cdf(X), stats.norm.cdf(X), rtol=1e-12, atol=0)
    np.testing.assert_allclose(d.norm.sf(X), stats.norm.sf(X), rtol=1e-12, atol=0)
    np.testing.assert_allclose(d.norm.ppf(Q), stats.norm.ppf(Q), rtol=1e-12)
    np.testing.assert_allclose(d.norm.isf(Q), stats.norm.isf(Q), rtol=1e-12)
    assert isinstance(float(d.norm.sf(1.96)), float)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 50, 1000])
@pytest.mark.parametrize("p", [0.0, 1e-4, 0.05, 0.5, 0.9, 1.0])
def test_binomial_tails_on_and_off_the_support(n, p):
    k = np.arange(-3, n + 4)
    np.testing.assert_allclose(d.binom.cdf(k, n, p), stats.binom.cdf(k, n, p), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(d.binom.sf(k, n, p), stats.binom.sf(k, n, p), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(d.binom.sf(k - 1, n, p), stats.binom.sf(k - 1, n, p), rtol=1e-10, atol=1e-300)
    for one in (-3, 0, n // 2, n, n + 2):          # a scalar takes a short path: scipy's values all the same
        for k1 in (one, np.int64(one), float(one) + 0.5):
            assert d.binom.cdf(k1, n, p) == pytest.approx(stats.binom.cdf(k1, n, p), rel=1e-10, abs=1e-300)
            assert d.binom.sf(k1, n, p) == pytest.approx(stats.binom.sf(k1, n, p), rel=1e-10, abs=1e-300)


def test_binomial_broadcasts_like_scipy():
    k, n = np.array([0, 3, 10, 12]), np.array([10, 10, 10, 20])
    np.testing.assert_allclose(d.binom.sf(k - 1, n, 0.3), stats.binom.sf(k - 1, n, 0.3), rtol=1e-12)
    assert np.ndim(d.binom.cdf(3, 10, 0.5)) == 0


@pytest.mark.parametrize(("a", "b"), [(1, 1), (1, 50), (5, 96), (49, 2), (1000, 3)])
def test_beta_quantiles_for_clopper_pearson(a, b):
    np.testing.assert_allclose(d.beta.ppf(Q, a, b), stats.beta.ppf(Q, a, b), rtol=1e-9)


def test_the_gates_statistics_never_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys, gate.stats, gate.timing, gate.checks.classification, gate.runner; "
            "assert 'scipy.stats' not in sys.modules, 'scipy.stats was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
