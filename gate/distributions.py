"""The few distribution functions the gate's statistics use, from scipy.special.

`scipy.stats` costs about 0.7 s to import, most of a short gate run's fixed cost; these are the same functions
(`scipy.stats` itself evaluates them with scipy.special), behind the `scipy.stats`-shaped names the code reads.
tests/unit/test_distributions.py checks each against scipy.stats.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special


class _Norm:
    """The standard normal."""

    @staticmethod
    def cdf(x: Any) -> Any:
        return special.ndtr(x)

    @staticmethod
    def sf(x: Any) -> Any:
        return special.ndtr(np.negative(x))

    @staticmethod
    def ppf(q: Any) -> Any:
        return special.ndtri(q)

    @staticmethod
    def isf(q: Any) -> Any:
        return np.negative(special.ndtri(q))


def _scalars(*args: Any) -> bool:
    return all(isinstance(a, (int, float, np.integer, np.floating)) for a in args)


class _Binom:
    """Binomial(n, p) tails at integer k, with scipy.stats' values outside 0..n (cdf 0 below 0, 1 from n on).

    Python or numpy scalars take a short path to the same scipy.special call (about 3 us instead of 30)."""

    @staticmethod
    def cdf(k: Any, n: Any, p: Any) -> Any:
        if _scalars(k, n, p) and float(n).is_integer() and math.isfinite(float(k)):
            kf, m = math.floor(float(k)), int(n)
            return np.float64(0.0 if kf < 0 else 1.0 if kf >= m else special.bdtr(int(kf), m, float(p)))
        k, n, p = np.broadcast_arrays(np.floor(np.asarray(k, dtype=np.float64)), np.asarray(n, dtype=np.float64),
                                      np.asarray(p, dtype=np.float64))
        inside = special.bdtr(np.clip(k, 0, n).astype(np.int64), n.astype(np.int64), p)
        out = np.where(k < 0, 0.0, np.where(k >= n, 1.0, inside))
        return out[()] if out.ndim == 0 else out

    @staticmethod
    def sf(k: Any, n: Any, p: Any) -> Any:
        if _scalars(k, n, p) and float(n).is_integer() and math.isfinite(float(k)):
            kf, m = math.floor(float(k)), int(n)
            return np.float64(1.0 if kf < 0 else 0.0 if kf >= m else special.bdtrc(int(kf), m, float(p)))
        k, n, p = np.broadcast_arrays(np.floor(np.asarray(k, dtype=np.float64)), np.asarray(n, dtype=np.float64),
                                      np.asarray(p, dtype=np.float64))
        inside = special.bdtrc(np.clip(k, 0, n).astype(np.int64), n.astype(np.int64), p)
        out = np.where(k < 0, 1.0, np.where(k >= n, 0.0, inside))
        return out[()] if out.ndim == 0 else out


class _Beta:
    @staticmethod
    def ppf(q: Any, a: Any, b: Any) -> Any:
        return special.betaincinv(a, b, q)


norm = _Norm()
binom = _Binom()
beta = _Beta()
