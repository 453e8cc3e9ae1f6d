"""Statistics of paired regression errors: MAE, RMSE, R^2 and bias per target, their influence functions, a
per-sample paired bootstrap with BCa and studentized (bootstrap-t) intervals and p-values, and the Wilcoxon
signed-rank test.

Pure numpy + scipy.special (through gate.distributions); no scipy.stats (0.7 s to import). The regression check
(gate/checks/regression.py) measures with these; gate.verdict decides. docs/checks/regression.md has the formulas
and the measured coverage.

Conventions: `y`, `pred` are (n, T) float64; metric arrays are (T + 1,): column 0 is the mean over the targets
(scikit-learn's multioutput="uniform_average"), columns 1.. the targets in order.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gate import distributions as sps

METRICS = ("mae", "rmse", "r2")
#: metric -> higher is better
HIGHER_IS_BETTER = {"mae": False, "rmse": False, "r2": True}


def _with_mean(per_target: np.ndarray) -> np.ndarray:
    """(..., T) -> (..., T + 1): the mean over targets first, then each target."""
    return np.concatenate([per_target.mean(axis=-1, keepdims=True), per_target], axis=-1)


def r2_from(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    """1 - SSE / SST, with scikit-learn's force_finite rule for a constant target: 1 if SSE = 0, else 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - sse / np.where(sst > 0, sst, 1.0)
    return np.where(sst > 0, r2, np.where(sse == 0, 1.0, 0.0))


@dataclass(frozen=True)
class ModelFigures:
    """One model's point metrics, (T + 1,) each (mean over targets, then per target)."""

    mae: np.ndarray
    rmse: np.ndarray
    r2: np.ndarray
    bias: np.ndarray          # mean of prediction - target

    def get(self, metric: str) -> np.ndarray:
        return getattr(self, metric)


def figures(y: np.ndarray, pred: np.ndarray) -> ModelFigures:
    """MAE, RMSE, R^2 and bias of one model, per target and averaged over targets (scikit-learn's definitions)."""
    e = pred - y
    sse = np.sum(e * e, axis=0)
    yc = y - y.mean(axis=0)
    sst = np.sum(yc * yc, axis=0)
    n = y.shape[0]
    return ModelFigures(mae=_with_mean(np.mean(np.abs(e), axis=0)), rmse=_with_mean(np.sqrt(sse / n)),
                        r2=_with_mean(r2_from(sse, sst)), bias=_with_mean(np.mean(e, axis=0)))


def influences(y: np.ndarray, pred: np.ndarray, fig: ModelFigures) -> dict[str, np.ndarray]:
    """Per-sample empirical influence of each metric, (n, T + 1): the first-order change of the metric when a
    sample's weight moves, scaled so that mean(U^2) / n is the metric's delta-method variance.

    MAE: |e| - MAE; RMSE: (e^2 - MSE) / (2 RMSE); R^2 = 1 - A/B with A = mean e^2, B = mean (y - ybar)^2:
    -(e^2 - A) / B + A ((y - ybar)^2 - B) / B^2 (the mean's own influence on B vanishes to first order).
    """
    e = pred - y
    e2 = e * e
    mse = e2.mean(axis=0)
    yc = y - y.mean(axis=0)
    v = yc * yc
    b = v.mean(axis=0)
    u_mae = np.abs(e) - fig.mae[1:]
    rmse = fig.rmse[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        u_rmse = np.where(rmse > 0, (e2 - mse) / (2.0 * np.where(rmse > 0, rmse, 1.0)), 0.0)
        bb = np.where(b > 0, b, 1.0)
        u_r2 = np.where(b > 0, -(e2 - mse) / bb + mse * (v - b) / (bb * bb), 0.0)
    return {"mae": _with_mean(u_mae), "rmse": _with_mean(u_rmse), "r2": _with_mean(u_r2)}


# ------------------------------------------------------------------------------------------- the bootstrap


def sample_weights(n: int, *, resamples: int, seed: int, chunk_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Blocks of (rows, n) float64 multiplicities: each row n draws with replacement from the n samples (both models
    read the same rows: a paired bootstrap), seeded, at most `chunk_cells` cells per block."""
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_cells // max(n, 1))
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        draws = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=r * n).reshape(r, n).astype(np.float64)


#: The per-sample functions every metric's influence is a linear combination of (per target): both models' |e|
#: and e^2, the centred target yc and yc^2.
BASIS = ("abs_b", "abs_c", "sq_b", "sq_c", "yc", "yc2")


def influence_basis(y: np.ndarray, preds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n, T, 6): the BASIS functions of each sample and target (yc centred on the full-data mean)."""
    yc = y - y.mean(axis=0)
    eb, ec = preds[0] - y, preds[1] - y
    return np.stack([np.abs(eb), np.abs(ec), eb * eb, ec * ec, yc, yc * yc], axis=-1)


def bootstrap_sums(y: np.ndarray, preds: tuple[np.ndarray, np.ndarray], *, resamples: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Per resample (R, T): the weighted means of |e| and e^2 per model, of yc, and yc's weighted variance sst.

    Every replicate of MAE, RMSE and R^2 is a function of weighted sums, so one matrix product per block of
    resamples gives them all (the target centred so that R^2's denominator does not cancel catastrophically).
    """
    n, t = y.shape
    basis = influence_basis(y, preds)                                         # (n, T, 6)
    x = basis.transpose(0, 2, 1).reshape(n, 6 * t)                            # (n, 6T): basis-major
    # and the products of each target's basis functions, for each resample's covariance of them (`moment_se`)
    x = np.concatenate([x, (basis[:, :, :, None] * basis[:, :, None, :]).reshape(n, 36 * t)], axis=1)
    sums = np.concatenate([w @ x for w in sample_weights(n, resamples=resamples, seed=seed)], axis=0) / n
    abs_b, abs_c, sq_b, sq_c, m1, m2 = (sums[:, i * t:(i + 1) * t] for i in range(6))
    means = np.stack([sums[:, i * t:(i + 1) * t] for i in range(6)], axis=-1)            # (R, T, 6)
    second = sums[:, 6 * t:].reshape(-1, t, 6, 6)                                       # (R, T, 6, 6)
    return {"abs_b": abs_b, "abs_c": abs_c, "sq_b": sq_b, "sq_c": sq_c, "m1": m1, "sst": m2 - m1 * m1,
            "cov": second - means[..., :, None] * means[..., None, :], "n": np.asarray(n)}


def point_sums(y: np.ndarray, preds: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """`bootstrap_sums` of the data itself (every weight 1), (1, T) each."""
    x = influence_basis(y, preds).mean(axis=0)                                 # (T, 6)
    m1 = x[:, 4]
    return {"abs_b": x[None, :, 0], "abs_c": x[None, :, 1], "sq_b": x[None, :, 2], "sq_c": x[None, :, 3],
            "m1": m1[None], "sst": (x[:, 5] - m1 * m1)[None]}


def figures_from_sums(sums: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """MAE, RMSE and R^2 (R, T + 1) of both models from `bootstrap_sums`."""
    out = []
    for ab, sq in ((sums["abs_b"], sums["sq_b"]), (sums["abs_c"], sums["sq_c"])):
        out.append({"mae": _with_mean(ab), "rmse": _with_mean(np.sqrt(sq)),
                    "r2": _with_mean(r2_from(sq, sums["sst"]))})
    return out[0], out[1]


def bootstrap_figures(y: np.ndarray, preds: tuple[np.ndarray, np.ndarray], *, resamples: int,
                      seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Replicates (R, T + 1) of MAE, RMSE and R^2 for both models on the same resamples."""
    return figures_from_sums(bootstrap_sums(y, preds, resamples=resamples, seed=seed))


def influence_coefficients(metric: str, model: int, sums: dict[str, np.ndarray]) -> np.ndarray:
    """(R, T, 6): each metric's influence (`influences`, up to a constant) as a combination of the BASIS functions,
    at each resample's own estimates (`bootstrap_sums`; `point_sums` for the data), model 0 the baseline.

    MAE: |e|; RMSE: e^2 / (2 RMSE); R^2: -e^2 / B + A (y - ybar*)^2 / B^2, with ybar* the resample's mean, so
    (y - ybar*)^2 = yc^2 - 2 m1 yc + const."""
    tag = "b" if model == 0 else "c"
    sq = sums[f"sq_{tag}"]
    coef = np.zeros(sq.shape + (6,))
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "mae":
            coef[..., model] = 1.0
        elif metric == "rmse":
            coef[..., 2 + model] = np.where(sq > 0, 0.5 / np.sqrt(np.where(sq > 0, sq, 1.0)), 0.0)
        elif metric == "r2":
            b = sums["sst"]
            ok = b > 0
            bb = np.where(ok, b, 1.0)
            coef[..., 2 + model] = np.where(ok, -1.0 / bb, 0.0)
            coef[..., 5] = np.where(ok, sq / (bb * bb), 0.0)
            coef[..., 4] = np.where(ok, -2.0 * sums["m1"] * sq / (bb * bb), 0.0)
        else:
            raise ValueError(f"unknown metric {metric!r}")
    return coef


def moment_se(sums: dict[str, np.ndarray], coef: np.ndarray, target: int) -> np.ndarray:
    """(R,): `replicate_se` of one target's statistic from the resamples' weighted covariances of its basis
    functions (`bootstrap_sums`): sqrt(coef' Cov_w coef / n), no second pass over the weights. `coef` (R, 6)."""
    cov = sums["cov"][:, target]                                              # (R, 6, 6)
    var = np.einsum("rk,rkl,rl->r", coef, cov, coef)
    return np.sqrt(np.maximum(var, 0.0) / float(sums["n"]))


def replicate_se(basis: np.ndarray, coef: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """(R,): the delta-method standard error of a statistic on each resample, sqrt(var_w(U) / n), where
    U = basis @ coef[r] is its influence under that resample's estimates and var_w the variance under its weights.

    `basis` (n, K), `coef` (R, K); the resamples are `sample_weights(n, resamples, seed)` again (the same seed gives
    the same weights as the replicates), block by block, so memory stays O(block)."""
    n = basis.shape[0]
    out = []
    start = 0
    for w in sample_weights(n, resamples=resamples, seed=seed):
        r = w.shape[0]
        u = coef[start:start + r] @ basis.T                                   # (r, n)
        start += r
        wu = w * u
        s1 = wu.sum(axis=1) / n
        wu *= u
        s2 = wu.sum(axis=1) / n
        out.append(np.sqrt(np.maximum(s2 - s1 * s1, 0.0) / n))
    return np.concatenate(out)


@dataclass(frozen=True)
class FiellerParts:
    """One target's pieces of R^2's Fieller log-ratio statistic (`fieller_pseudo`): the full data's means of
    e_b^2, e_c^2 and (y - ybar)^2 and their 3 x 3 covariance (the delta-method se), the resampled data's rows of
    those three (its influence values give the expansion's kurtosis; the full data's up to BOOTSTRAP_SAMPLES) and
    means, and the resamples' own (R,) means A_b*, A_c*, B* and mean target m1* with their weighted covariances
    (`bootstrap_sums`)."""

    means: np.ndarray          # (3,) A_b, A_c, B over every sample
    cov: np.ndarray            # (3, 3) their per-sample covariance (ddof 0)
    n: int                     # every sample
    rows: np.ndarray           # (m, 3) the resampled data's e_b^2, e_c^2, yc^2
    sub: np.ndarray            # (3,) the resampled data's A_b, A_c, B
    sums: dict[str, np.ndarray]
    target: int


def fieller_parts(y: np.ndarray, preds: tuple[np.ndarray, np.ndarray], sub_y: np.ndarray,
                  sub_preds: tuple[np.ndarray, np.ndarray], sums: dict[str, np.ndarray], target: int) -> FiellerParts:
    """`FiellerParts` of target `target` from the full data (y, preds), the resampled data and its resamples'
    `bootstrap_sums`."""
    def rows_of(yy: np.ndarray, pp: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        yc = yy[:, target] - yy[:, target].mean()
        eb, ec = pp[0][:, target] - yy[:, target], pp[1][:, target] - yy[:, target]
        return np.stack([eb * eb, ec * ec, yc * yc], axis=1)

    full = rows_of(y, preds)
    sub = full if sub_y is y else rows_of(sub_y, sub_preds)
    means = full.mean(axis=0)
    centred = full - means
    return FiellerParts(means=means, cov=centred.T @ centred / full.shape[0], n=full.shape[0], rows=sub,
                        sub=sub.mean(axis=0), sums=sums, target=target)


def fieller_pseudo(parts: FiellerParts, weight_b: float, weight_t: float, *,
                   confidence: float | None) -> tuple[float, np.ndarray] | None:
    """(g, pseudo-replicates (R,)) of g = log(A_c / M), M = weight_b A_b + weight_t B: the bootstrap-t of the
    log-ratio to which Fieller's argument turns an R^2 claim (the claim "R^2 rule within its threshold" is exactly
    "A_c < M", i.e. g < 0, for the threshold's weights; `regression.fieller_form`). t* = (g* - g_sub) / se* with
    se* the delta-method se of each resample at its own A_c*, M* (`moment_se`), the pseudo-replicates
    g - k t* se, se from the full data, k the `small_sample_expansion` at `confidence` of g's influence values
    (e_c^2 - A_c) / A_c - (weight_b (e_b^2 - A_b) + weight_t (yc^2 - B)) / M (1 with confidence None: not
    widened). None where g is undefined (A_c = 0, M <= 0, or no spread): the claim is then left to the other
    statistics."""
    a_b, a_c, b = (float(v) for v in parts.means)
    m = weight_b * a_b + weight_t * b
    if not (a_c > 0 and m > 0):
        return None
    grad = np.array([-weight_b / m, 1.0 / a_c, -weight_t / m])
    se = math.sqrt(max(float(grad @ parts.cov @ grad), 0.0) / parts.n)
    s_b, s_c, s_t = (float(v) for v in parts.sub)
    m_sub = weight_b * s_b + weight_t * s_t
    if not (se > 0 and s_c > 0 and m_sub > 0):
        return None
    g = math.log(a_c / m)
    rows = parts.rows
    u = (rows[:, 1] - s_c) / s_c - (weight_b * (rows[:, 0] - s_b) + weight_t * (rows[:, 2] - s_t)) / m_sub
    k = 1.0 if confidence is None else small_sample_expansion(u, confidence=confidence)
    j = parts.target
    sums = parts.sums
    ab, ac, bb, m1 = sums["sq_b"][:, j], sums["sq_c"][:, j], sums["sst"][:, j], sums["m1"][:, j]
    ms = weight_b * ab + weight_t * bb
    ok = (ac > 0) & (ms > 0)
    ms_safe, ac_safe = np.where(ok, ms, 1.0), np.where(ok, ac, 1.0)
    coef = np.zeros((ab.size, 6))
    # the BASIS: (y - ybar*)^2 = yc^2 - 2 m1 yc + const, as in `influence_coefficients`
    coef[:, 2] = -weight_b / ms_safe
    coef[:, 3] = 1.0 / ac_safe
    coef[:, 4] = 2.0 * weight_t * m1 / ms_safe
    coef[:, 5] = -weight_t / ms_safe
    se_star = moment_se(sums, coef, j)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.log(ac_safe / ms_safe) - math.log(s_c / m_sub)) / se_star
    t = np.where(ok & np.isfinite(t), t, np.nan)
    if not np.any(np.isfinite(t)):
        return None
    return g, g - k * t * se


def acceleration(influence: np.ndarray) -> np.ndarray:
    """BCa's acceleration from the empirical influence values along axis 0: sum U^3 / (6 (sum U^2)^1.5)."""
    u = np.asarray(influence, dtype=np.float64)
    ok = np.isfinite(u)
    count = ok.sum(axis=0)
    u = np.where(ok, u, 0.0)
    u = np.where(ok, u - u.sum(axis=0) / np.maximum(count, 1), 0.0)
    s2 = np.sum(u * u, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.sum(u ** 3, axis=0) / (6.0 * s2 ** 1.5)
    return np.where(s2 > 0, a, 0.0)     # no finite influence (a NaN metric): no correction; the rule fails anyway


def effective_df(influence: np.ndarray) -> float:
    """Degrees of freedom of the variance estimate mean(U^2) of n influence values, from their kurtosis
    kappa = mean(U^4) / mean(U^2)^2 (Satterthwaite's match of var(s^2) / sigma^4 = (kappa - 1) / n to a scaled
    chi-square's 2 / nu): nu = 2n / (kappa - 1); n - 1 for normal values (kappa = 3 gives n), fewer for heavy tails.
    inf when the values do not vary (no spread: nothing to expand)."""
    u = np.asarray(influence, dtype=np.float64).ravel()
    u = u[np.isfinite(u)]
    n = u.size
    if n < 2:
        return math.inf
    uc = u - u.mean()
    m2 = float(np.mean(uc * uc))
    if not m2 > 0:
        return math.inf
    kappa = float(np.mean(uc ** 4)) / (m2 * m2)
    # kappa >= 1 always; a two-point sample reaches 1 (its variance estimate hardly varies): at most n - 1
    return min(2.0 * n / max(kappa - 1.0, 1e-12), n - 1.0)


def small_sample_expansion(influence: np.ndarray, *, confidence: float) -> float:
    """Factor >= 1 by which the bootstrap's spread about the estimate is widened at small n: Hesterberg's expanded
    bootstrap, sqrt(n / (n - 1)) t_nu(1 - alpha) / z(1 - alpha) with alpha = (1 - confidence) / 2, but with nu
    the `effective_df` of the influence values instead of n - 1 (heavy-tailed errors estimate their own spread
    from fewer effective samples, which the resamples of those same samples cannot show).

    1 + O(1/n): 1.0017 at n = 1,000 for normal influence values, 1.01-1.04 for the heavy-tailed ones of
    docs/checks/regression.md's simulation there (1.1-1.2 at n = 50)."""
    from scipy import special       # t quantile: scipy.special's stdtrit is what scipy.stats.t.ppf evaluates

    u = np.asarray(influence, dtype=np.float64).ravel()
    n = int(np.sum(np.isfinite(u)))
    nu = effective_df(u)
    if n < 2 or not math.isfinite(nu):
        return 1.0
    q = 1.0 - (1.0 - confidence) / 2.0
    k = math.sqrt(n / (n - 1.0)) * float(special.stdtrit(max(nu, 1.0), q)) / float(sps.norm.ppf(q))
    return max(k, 1.0)


def bias_correction(reps: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """BCa's z0: the normal quantile of the share of replicates below the estimate (ties count half)."""
    reps = np.asarray(reps, dtype=np.float64)
    valid = ~np.isnan(reps)
    total = valid.sum(axis=0)
    below = np.sum((reps < estimate) & valid, axis=0) + 0.5 * np.sum((reps == estimate) & valid, axis=0)
    share = np.clip(below / np.maximum(total, 1), 1.0 / (total + 1.0), total / (total + 1.0))
    return np.where(total > 0, sps.norm.ppf(share), np.nan)


def _adjusted_level(beta: float, z0: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Phi(z0 + (z0 + z_beta) / (1 - a (z0 + z_beta))): the percentile BCa reads for nominal level beta."""
    zb = float(sps.norm.ppf(beta))
    u = z0 + zb
    den = 1.0 - a * u
    with np.errstate(divide="ignore", invalid="ignore"):
        level = sps.norm.cdf(z0 + u / den)
    # Past the pole the mapping folds back: the level is then at its extreme on the side of beta.
    return np.where(den > 0, level, 1.0 if beta > 0.5 else 0.0)


def bca_interval(reps: np.ndarray, estimate: np.ndarray, a: np.ndarray, *,
                 confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided BCa interval along axis 0 (Efron 1987), each side at (1 - confidence) / 2."""
    alpha = (1.0 - confidence) / 2.0
    z0 = bias_correction(reps, estimate)
    reps = np.asarray(reps, dtype=np.float64)
    lo_q, hi_q = _adjusted_level(alpha, z0, a), _adjusted_level(1.0 - alpha, z0, a)
    cols = reps.reshape(reps.shape[0], -1)
    lo_q, hi_q = np.broadcast_to(lo_q, cols.shape[1:]).ravel(), np.broadcast_to(hi_q, cols.shape[1:]).ravel()
    lo = np.empty(cols.shape[1])
    hi = np.empty(cols.shape[1])
    for j in range(cols.shape[1]):
        col = cols[:, j][~np.isnan(cols[:, j])]
        if col.size == 0 or np.isnan(lo_q[j]) or np.isnan(hi_q[j]):
            lo[j] = hi[j] = np.nan
            continue
        lo[j], hi[j] = np.quantile(col, lo_q[j]), np.quantile(col, hi_q[j])
    shape = reps.shape[1:]
    return lo.reshape(shape), hi.reshape(shape)


def bca_p_value(reps: np.ndarray, estimate: np.ndarray, a: np.ndarray, *, bound: float,
                alternative: str) -> np.ndarray:
    """One-sided BCa p-value (achieved significance level) of H1 "statistic > bound" ("greater") or "< bound".

    The level at which the BCa interval's lower (upper) end is exactly `bound`: with w = Phi^-1(G(bound)), G the
    replicates' distribution (with the +1 of `gate.stats.bootstrap_p_value`), the BCa map inverted gives
    z = (w - z0) / (1 + a (w - z0)) - z0, and p = Phi(z) for "greater", Phi(-z) for "less". With z0 = a = 0 this
    is exactly the percentile bootstrap's p-value. Never below 1 / (R + 1).
    """
    from gate.stats import at_least, at_most

    reps = np.asarray(reps, dtype=np.float64)
    valid = ~np.isnan(reps)
    total = valid.sum(axis=0).astype(np.float64)
    if alternative == "greater":
        g = (1.0 + np.sum(at_most(reps, bound) & valid, axis=0)) / (total + 1.0)
    elif alternative == "less":
        g = 1.0 - (1.0 + np.sum(at_least(reps, bound) & valid, axis=0)) / (total + 1.0)
    else:
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    g = np.clip(g, 1.0 / (total + 1.0), total / (total + 1.0))
    z0 = bias_correction(reps, estimate)
    x = sps.norm.ppf(g) - z0
    den = 1.0 + a * x
    with np.errstate(divide="ignore", invalid="ignore"):
        z = x / den - z0
    far = np.where(x > 0, np.inf, -np.inf)                # past the pole: the bound is beyond every replicate
    z = np.where(den > 0, z, far)
    p = sps.norm.cdf(z) if alternative == "greater" else sps.norm.cdf(-z)
    p = np.maximum(p, 1.0 / (total + 1.0))
    return np.where(total > 0, np.minimum(p, 1.0), np.nan)


# ------------------------------------------------------------------------------------------------ Wilcoxon


def midranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n of x with ties given their average rank, and the size of each tie group."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.concatenate([[True], xs[1:] != xs[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    sizes = np.diff(np.concatenate([starts, [x.size]]))
    avg = starts + (sizes + 1) / 2.0
    ranks = np.empty(x.size)
    ranks[order] = avg[group]
    return ranks, sizes


def _signed_rank_exact_sf(r_plus: float, n: int) -> float:
    """P(T+ >= r_plus) under H0 for n untied, non-zero differences: the exact null of the signed-rank statistic
    (counts of subsets of {1..n} by their sum, by dynamic programming)."""
    top = n * (n + 1) // 2
    counts = np.zeros(top + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    pmf = counts / 2.0 ** n
    k = int(math.ceil(r_plus - 1e-9))
    return float(pmf[max(k, 0):].sum())


@dataclass(frozen=True)
class SignedRank:
    """The Wilcoxon signed-rank test of paired differences d (here |e_c| - |e_b|)."""

    statistic: float           # T+: the sum of the ranks of the positive differences
    n: int                     # differences used (non-zero ones under zero_method "wilcox")
    z: float | None            # the normal statistic (None when the exact null was used)
    p_greater: float           # one-sided: H1 "d tends to be positive" (the candidate's errors are larger)
    p_less: float
    p_two_sided: float
    method: str


def wilcoxon_signed_rank(d: np.ndarray, *, zero_method: str = "wilcox", correction: bool = False,
                         exact_max: int = 50) -> SignedRank:
    """Wilcoxon's signed-rank test, as scipy.stats.wilcoxon computes it.

    zero_method "wilcox" drops zero differences before ranking; "pratt" ranks them and then drops their ranks
    (with Pratt's correction of the null mean and variance). Ties get midranks, and the variance loses
    sum(t^3 - t) / 48 over the tie groups. With at most `exact_max` differences, no ties and no zeros, the exact
    null distribution is used; otherwise the normal approximation (with an optional continuity correction of 1/2).
    """
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[~np.isnan(d)]
    if zero_method not in ("wilcox", "pratt"):
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', got {zero_method!r}")
    zeros = int(np.sum(d == 0))
    if zero_method == "wilcox":
        d = d[d != 0]
    n = int(d.size)
    if n == 0 or (zero_method == "pratt" and n == zeros):
        return SignedRank(0.0, 0, None, 1.0, 1.0, 1.0, "no non-zero difference")
    ranks, sizes = midranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    ties = bool(np.any(sizes > 1))
    if n <= exact_max and not ties and zeros == 0:
        greater = _signed_rank_exact_sf(r_plus, n)
        total = n * (n + 1) / 2.0
        less = _signed_rank_exact_sf(total - r_plus, n)          # P(T+ <= r) = P(T- >= total - r), by symmetry
        return SignedRank(r_plus, n, None, min(greater, 1.0), min(less, 1.0), min(1.0, 2.0 * min(greater, less)),
                          "exact")
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0
    if zero_method == "pratt":
        # The zeros' ranks (1..zeros, tied at |d| = 0) are dropped: remove them from the null mean and variance.
        mean -= zeros * (zeros + 1) / 4.0
        var -= zeros * (zeros + 1) * (2 * zeros + 1) / 24.0
        nz_sizes = midranks(np.abs(d[d != 0]))[1] if n > zeros else np.array([])
        var -= float(np.sum(nz_sizes ** 3 - nz_sizes)) / 48.0
    else:
        var -= float(np.sum(sizes.astype(np.float64) ** 3 - sizes)) / 48.0
    se = math.sqrt(var) if var > 0 else 0.0
    if se == 0:
        return SignedRank(r_plus, n, None, 1.0, 1.0, 1.0, "no spread")
    shift = 0.5 if correction else 0.0
    z_g = (r_plus - mean - shift) / se
    z_l = (r_plus - mean + shift) / se
    greater = float(sps.norm.sf(z_g))
    less = float(sps.norm.cdf(z_l))
    zt = (r_plus - mean - (shift * np.sign(r_plus - mean))) / se
    two = float(min(1.0, 2.0 * sps.norm.sf(abs(zt))))
    return SignedRank(r_plus, n, float((r_plus - mean) / se), greater, less, two, "normal approximation")
