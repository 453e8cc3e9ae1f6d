"""The regression check: every metric against scikit-learn on the same predictions (one batch vs many), the
Wilcoxon signed-rank test against scipy.stats.wilcoxon, the BCa bootstrap against a Monte Carlo oracle (the
estimator's true spread over many independent evaluation sets), state() / load_state() against the single run,
the worse-rate against the exact binomial test, and bad input refused."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from gate import regression_stats as rs
from gate import stats
from gate.checks.base import RunContext, Step
from gate.checks.regression import RegressionCheck
from gate.config import build_config, deep_merge
from gate.errors import ConfigError, DataError, ModelError
from gate.verdict import DecisionSettings


def world(n: int, t: int = 1, *, seed: int, noise_c: float = 1.0, shift: float = 10.0):
    """Targets and two models' predictions that share part of their error (a paired design), float32."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, t)) * 3.0 + shift
    common = rng.standard_t(5, size=(n, t))
    pb = y + 0.7 * common + 0.5 * rng.normal(size=(n, t))
    pc = y + 0.7 * common + 0.5 * noise_c * rng.normal(size=(n, t))
    return y.astype(np.float32), pb.astype(np.float32), pc.astype(np.float32)


#: The default rules switched off, so that a test sees only the rules it sets.
NO_DEFAULT_RULES = {"mae": {"max_relative_increase": None}, "rmse": {"max_relative_increase": None}}


def make_check(options=None, *, decision=None, seed=0, names=None, t=1, defaults=False):
    opts = deep_merge({} if defaults else NO_DEFAULT_RULES, options or {})
    raw = {"seed": seed, "checks": {"regression": {"enabled": True, **opts}}}
    if decision:
        raw["decision"] = decision
    config = build_config(raw)
    names = names or (("target",) if t == 1 else tuple(f"target[{i}]" for i in range(t)))
    ctx = RunContext(config=config, models={}, class_names=tuple(names), device=None)
    return RegressionCheck(config.check("regression"), ctx)


def step(i: int, start: int, y, pb, pc, *, squeeze=False) -> Step:
    tens = (lambda a: torch.from_numpy(a[:, 0] if squeeze else a))
    s = Step(index=i, offset=start, inputs=None, labels=tens(y),
             scores={"baseline": tens(pb), "candidate": tens(pc)},
             preds={"baseline": pb[:, 0] if squeeze else pb, "candidate": pc[:, 0] if squeeze else pc})
    s.task = "regression"   # set by the runner on every Step (the task contract)
    return s


def feed(check, y, pb, pc, *, batch=None, squeeze=False, batches=None):
    batch = batch or len(y)
    for i, start in enumerate(range(0, len(y), batch)):
        if batches is not None and i not in batches:
            continue
        sl = slice(start, start + batch)
        check.update(step(i, start, y[sl], pb[sl], pc[sl], squeeze=squeeze))
    return check


#: the defaults a check's compute() reads (2,000 resamples, seed 0, 95%), for calling its statistics directly
SETTINGS = DecisionSettings(mode="non-inferiority", confidence=0.95, inconclusive="warn", resamples=2000,
                            multiple_comparisons="holm", seed=0)


def run_check(y, pb, pc, *, options=None, batch=None, decision=None, t=None, names=None, seed=0):
    check = make_check(options, decision=decision, t=t or y.shape[1], names=names, seed=seed)
    return feed(check, y, pb, pc, batch=batch).compute()


def figures_of(result):
    return result.details["metrics"]


# --------------------------------------------------------------------------------------- metrics vs sklearn


@pytest.mark.parametrize("t", [1, 3])
@pytest.mark.parametrize("batch", [None, 7, 64])
def test_metrics_match_scikit_learn_one_batch_or_many(t, batch):
    y, pb, pc = world(301, t, seed=t)
    m = figures_of(run_check(y, pb, pc, batch=batch, decision={"mode": "point"}))
    y = y.astype(np.float64)        # the check computes in float64 from the float32 values; so does the oracle
    for role, pred in (("baseline", pb.astype(np.float64)), ("candidate", pc.astype(np.float64))):
        got = m[role]
        assert got["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
        rmse = np.mean(np.sqrt(mean_squared_error(y, pred, multioutput="raw_values")))
        assert got["rmse"] == pytest.approx(rmse, rel=1e-12)
        assert got["r2"] == pytest.approx(r2_score(y, pred), rel=1e-12, abs=1e-12)
        assert got["bias"] == pytest.approx(float(np.mean(pred.astype(np.float64) - y)), rel=1e-9, abs=1e-12)
        for j, name in enumerate(got["per_target"]):
            assert got["per_target"][name]["mae"] == pytest.approx(mean_absolute_error(y[:, j], pred[:, j]), rel=1e-12)
            assert got["per_target"][name]["rmse"] == pytest.approx(
                math.sqrt(mean_squared_error(y[:, j], pred[:, j])), rel=1e-12)
            assert got["per_target"][name]["r2"] == pytest.approx(r2_score(y[:, j], pred[:, j]), rel=1e-12)


def test_batching_changes_nothing_in_the_result():
    y, pb, pc = world(250, 2, seed=4)
    one = run_check(y, pb, pc, options={"mae": {"max_increase": 0.1}, "r2": {"max_drop": 0.02}})
    many = run_check(y, pb, pc, batch=9, options={"mae": {"max_increase": 0.1}, "r2": {"max_drop": 0.02}})
    assert one.findings == many.findings and one.tables == many.tables


def test_a_vector_of_predictions_is_one_target():
    y, pb, pc = world(100, 1, seed=5)
    check = feed(make_check(decision={"mode": "point"}), y, pb, pc, batch=30, squeeze=True)
    m = check.compute().details["metrics"]
    assert m["candidate"]["mae"] == pytest.approx(mean_absolute_error(y.astype(np.float64), pc.astype(np.float64)),
                                                  rel=1e-12)


def test_constant_target_r2_follows_scikit_learn():
    y = np.full((20, 1), 3.0, dtype=np.float32)
    pb = y.copy()
    pc = y + np.float32(0.5)
    result = run_check(y, pb, pc, decision={"mode": "point"})
    m = result.details["metrics"]
    assert m["baseline"]["r2"] == r2_score(y, pb) == 1.0
    assert m["candidate"]["r2"] == r2_score(y, pc) == 0.0
    assert any("constant target" in note for note in result.notes)


def test_influences_are_the_derivatives_of_the_metrics():
    """Finite differences of each metric under a small weight on one sample equal its influence value / n."""
    y, pb, _ = world(40, 2, seed=6)
    y, p = y.astype(np.float64), pb.astype(np.float64)
    fig = rs.figures(y, p)
    infl = rs.influences(y, p, fig)
    eps = 1e-6
    for i in (0, 7, 33):
        w = np.ones(len(y))
        w[i] += eps
        w = w / w.sum() * len(y)
        e = p - y
        mae = np.average(np.abs(e), axis=0, weights=w)
        rmse = np.sqrt(np.average(e * e, axis=0, weights=w))
        ybar = np.average(y, axis=0, weights=w)
        r2 = 1 - np.average(e * e, axis=0, weights=w) / np.average((y - ybar) ** 2, axis=0, weights=w)
        for name, moved in (("mae", mae), ("rmse", rmse), ("r2", r2)):
            base = fig.get(name)[1:]
            derivative = (moved - base) / eps * len(y)       # d metric / d (weight share) x n
            np.testing.assert_allclose(derivative, infl[name][i, 1:], rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------------------------- Wilcoxon


@pytest.mark.parametrize("n", [8, 20, 45])
def test_wilcoxon_exact_matches_scipy(n):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 1.0, n)
    ours = rs.wilcoxon_signed_rank(d)
    assert ours.method == "exact"
    for alt, got in (("greater", ours.p_greater), ("less", ours.p_less), ("two-sided", ours.p_two_sided)):
        ref = sps.wilcoxon(d, alternative=alt, method="exact")
        assert got == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.statistic == pytest.approx(sps.wilcoxon(d, alternative="greater", method="exact").statistic)


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize("correction", [False, True])
def test_wilcoxon_normal_with_ties_and_zeros_matches_scipy(zero_method, correction):
    rng = np.random.default_rng(3)
    d = np.round(rng.normal(0.2, 1.0, 400), 1)          # many ties and some zeros
    assert np.sum(d == 0) > 0
    ours = rs.wilcoxon_signed_rank(d, zero_method=zero_method, correction=correction)
    assert ours.method == "normal approximation"
    for alt, got in (("greater", ours.p_greater), ("less", ours.p_less), ("two-sided", ours.p_two_sided)):
        ref = sps.wilcoxon(d, alternative=alt, method="asymptotic", zero_method=zero_method, correction=correction)
        assert got == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_wilcoxon_large_untied_sample_matches_scipy_auto():
    d = np.random.default_rng(9).normal(-0.05, 1.0, 3000)
    ours = rs.wilcoxon_signed_rank(d)
    ref = sps.wilcoxon(d, alternative="greater", correction=False)
    assert ours.p_greater == pytest.approx(ref.pvalue, rel=1e-9)


def test_wilcoxon_without_differences_says_nothing():
    out = rs.wilcoxon_signed_rank(np.zeros(10))
    assert out.n == 0 and out.p_greater == 1.0 and out.p_two_sided == 1.0


def test_the_check_reports_wilcoxon_of_absolute_errors():
    y, pb, pc = world(500, 2, seed=8, noise_c=1.6)
    result = run_check(y, pb, pc)
    d = (np.abs(pc.astype(np.float64) - y).mean(axis=1) - np.abs(pb.astype(np.float64) - y).mean(axis=1))
    ref = sps.wilcoxon(d, alternative="greater", correction=False)
    assert result.details["wilcoxon"]["p_greater"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert result.details["wilcoxon"]["p_greater"] < 0.01


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bca_reduces_to_the_percentile_p_value_without_correction():
    reps = np.random.default_rng(1).normal(size=4001)
    est = np.median(reps)            # z0 = 0
    for bound in (-1.5, 0.2, 1.0):
        ours = rs.bca_p_value(reps, np.asarray(est), np.asarray(0.0), bound=bound, alternative="greater")
        ref = stats.bootstrap_p_value(reps, bound=bound, alternative="greater")
        assert float(ours) == pytest.approx(float(ref), rel=1e-9)
        ours = rs.bca_p_value(reps, np.asarray(est), np.asarray(0.0), bound=bound, alternative="less")
        ref = stats.bootstrap_p_value(reps, bound=bound, alternative="less")
        assert float(ours) == pytest.approx(float(ref), rel=1e-9)


@pytest.mark.parametrize("a", [0.0, 0.05, -0.08])
def test_bca_p_values_invert_the_bca_interval(a):
    """p of "beyond" at the interval's lower end is alpha, p of "within" at its upper end is alpha."""
    reps = np.random.default_rng(2).gamma(4.0, 1.0, size=20000)
    est = np.asarray(3.6)
    lo, hi = rs.bca_interval(reps, est, np.asarray(a), confidence=0.95)
    p_lo = rs.bca_p_value(reps, est, np.asarray(a), bound=float(lo), alternative="greater")
    p_hi = rs.bca_p_value(reps, est, np.asarray(a), bound=float(hi), alternative="less")
    assert float(p_lo) == pytest.approx(0.025, abs=0.002)
    assert float(p_hi) == pytest.approx(0.025, abs=0.002)


def test_bootstrap_spread_matches_the_true_sampling_spread():
    """Large-sample oracle: the sd of each paired difference over 400 independent evaluation sets drawn from one
    population, against the width of the BCa interval of one set / (2 x 1.96)."""
    n = 2000
    rng = np.random.default_rng(11)
    diffs = {"mae": [], "rmse": [], "r2": []}
    for _ in range(400):
        y, pb, pc = world(n, 1, seed=int(rng.integers(1 << 30)), noise_c=1.3)
        fb = rs.figures(y.astype(np.float64), pb.astype(np.float64))
        fc = rs.figures(y.astype(np.float64), pc.astype(np.float64))
        for m in diffs:
            diffs[m].append(float(fc.get(m)[0] - fb.get(m)[0]))
    y, pb, pc = world(n, 1, seed=12345, noise_c=1.3)
    result = run_check(y, pb, pc)
    table = result.tables[0]
    z = float(sps.norm.ppf(0.975))
    for col, m in ((3, "mae"), (6, "rmse"), (9, "r2")):
        cell = table.rows[0][col]
        lo, hi = (float(v) for v in cell[cell.index("[") + 1:-1].split(","))
        width_sd = (hi - lo) / (2 * z)
        assert width_sd == pytest.approx(np.std(diffs[m], ddof=1), rel=0.15), m


def test_bca_interval_of_a_mean_difference_matches_the_normal_interval_at_large_n():
    y, pb, pc = world(20000, 1, seed=13, noise_c=1.2)
    result = run_check(y, pb, pc, options={"mae": {"max_increase": 0.05}})
    finding = next(f for f in result.findings if f.rule == "max_increase")
    d = np.abs(pc.astype(np.float64) - y)[:, 0] - np.abs(pb.astype(np.float64) - y)[:, 0]
    se = d.std(ddof=1) / math.sqrt(d.size)
    z = float(sps.norm.ppf(0.975))
    lo, hi = finding.interval
    assert lo == pytest.approx(d.mean() - z * se, abs=0.1 * se)
    assert hi == pytest.approx(d.mean() + z * se, abs=0.1 * se)


def test_the_bootstrap_is_seeded_by_the_config_seed():
    y, pb, pc = world(300, 1, seed=14)
    opts = {"rmse": {"max_relative_increase": 0.05}}
    a = run_check(y, pb, pc, options=opts, seed=1)
    b = run_check(y, pb, pc, options=opts, seed=1)
    c = run_check(y, pb, pc, options=opts, seed=2)
    assert a.findings == b.findings
    assert a.findings[0].interval != c.findings[0].interval


def test_large_data_resamples_a_subsample_with_its_spread_scaled(monkeypatch):
    import gate.checks.regression as reg

    y, pb, pc = world(4000, 1, seed=15, noise_c=1.2)
    opts = {"mae": {"max_increase": 0.05}}
    full = run_check(y, pb, pc, options=opts).findings[0]
    monkeypatch.setattr(reg, "BOOTSTRAP_SAMPLES", 1000)
    result = run_check(y, pb, pc, options=opts)
    sub = result.findings[0]
    assert sub.value == full.value
    width = lambda f: f.interval[1] - f.interval[0]  # noqa: E731
    assert width(sub) == pytest.approx(width(full), rel=0.15)
    assert any("subsample of 1000" in note for note in result.notes)


# ------------------------------------------------------------------------------------------------- rules


def test_a_much_noisier_candidate_fails_on_mae_and_rmse():
    y, pb, pc = world(400, 1, seed=16, noise_c=4.0)
    result = run_check(y, pb, pc, options={"mae": {"max_relative_increase": 0.05},
                                           "rmse": {"max_relative_increase": 0.05}, "r2": {"max_drop": 0.01}})
    status = {f.metric + " " + f.rule: f.status for f in result.findings}
    assert status == {"mae max_relative_increase": "fail", "rmse max_relative_increase": "fail",
                      "r2 max_drop": "fail"}
    assert result.status == "fail"
    for f in result.findings:
        assert f.p_value < 0.025 and f.interval[0] > f.threshold


def test_an_identical_candidate_is_proven_within():
    y, pb, _ = world(400, 1, seed=17)
    result = run_check(y, pb, pb.copy(), options={"mae": {"max_increase": 0.05}, "r2": {"min": 0.5}},
                       decision={"mode": "non-inferiority"})
    assert result.status == "pass"
    assert [f.status for f in result.findings] == ["pass", "pass"]


def test_point_mode_compares_values_only():
    y, pb, pc = world(200, 1, seed=18, noise_c=1.5)
    result = run_check(y, pb, pc, options={"mae": {"max": 0.01}}, decision={"mode": "point"})
    f = result.findings[0]
    assert f.status == "fail" and f.decision == "point" and f.interval is None and f.p_value is None
    assert f.value == pytest.approx(mean_absolute_error(y.astype(np.float64), pc.astype(np.float64)), rel=1e-12)


def test_sign_conventions_and_the_p_beyond_column():
    y, pb, pc = world(1000, 1, seed=19, noise_c=0.2)     # the candidate is better
    result = run_check(y, pb, pc, options={"mae": {"max_increase": 0.0}, "rmse": {"max_relative_increase": 0.0},
                                           "r2": {"max_drop": 0.0, "min": 0.5}})
    for f in result.findings:
        if f.rule != "min":
            assert f.value < 0          # an improvement is a negative increase / drop
        assert f.p_value > 0.9          # p of "beyond the threshold": near 1 for a clearly better candidate
        assert f.status == "pass"


def test_a_nan_prediction_never_passes():
    y, pb, pc = world(100, 1, seed=20)
    pc[5, 0] = np.nan
    result = run_check(y, pb, pc, options={"mae": {"max_increase": 10.0}})
    assert result.findings[0].status == "fail"
    assert any("NaN" in note for note in result.notes)


def test_per_target_rules_are_a_holm_family():
    y, pb, pc = world(600, 3, seed=21)
    pc[:, 2] += 2.0                                      # one target broken
    result = run_check(y, pb, pc, options={"mae": {"max_increase": 0.2}, "per_target": True},
                       names=("a", "b", "c"))
    by = {f.metric: f for f in result.findings}
    assert set(by) == {"mae[mean of 3 targets]", "mae[a]", "mae[b]", "mae[c]"}
    assert by["mae[c]"].status == "fail" and by["mae[c]"].where == "c"
    assert by["mae[a]"].status != "fail" and by["mae[b]"].status != "fail"
    ctx = _ctx_of(y, pb, pc)
    raw = [RegressionCheck._evidence(  # noqa: SLF001 - the unadjusted p-values
        "max_increase", 0.2, j, "mae", ctx, SETTINGS).p_beyond for j in (1, 2, 3)]
    adjusted = stats.holm(np.array(raw))
    assert [by[f"mae[{k}]"].p_value for k in "abc"] == pytest.approx(list(adjusted))


def _ctx_of(y, pb, pc, *, settings=SETTINGS):
    y, pb, pc = (a.astype(np.float64) for a in (y, pb, pc))
    fig = {"baseline": rs.figures(y, pb), "candidate": rs.figures(y, pc)}
    infl = {r: rs.influences(y, p, fig[r]) for r, p in (("baseline", pb), ("candidate", pc))}
    boot = RegressionCheck._replicates(y, {"baseline": pb, "candidate": pc}, fig, settings)  # noqa: SLF001
    return {"fig": fig, "infl": infl, "boot": boot, "reps": boot["reps"]}


def test_worse_rate_is_decided_by_the_exact_binomial_test():
    y, pb, pc = world(300, 2, seed=22, noise_c=1.5)
    result = run_check(y, pb, pc, options={"worse_rate": {"max": 0.2}, "worse_by": 0.5})
    f = next(f for f in result.findings if f.metric == "worse_rate")
    growth = np.abs(pc.astype(np.float64) - y) - np.abs(pb.astype(np.float64) - y)
    k = int(np.any(growth > 0.5, axis=1).sum())
    assert f.value == k / 300
    ref = sps.binomtest(k, 300, 0.2, alternative="greater").pvalue
    assert f.p_value == pytest.approx(ref, rel=1e-9)
    ci = sps.binomtest(k, 300).proportion_ci(0.95, method="exact")
    assert f.interval == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_worse_by_relative_uses_each_targets_standard_deviation():
    y, pb, pc = world(300, 2, seed=23, noise_c=1.5)
    y[:, 1] *= 10
    pb[:, 1] *= 10
    pc[:, 1] *= 10
    result = run_check(y, pb, pc, options={"worse_rate": {"max": 0.5}, "worse_by_relative": 0.2})
    thresholds = result.details["worse"]["thresholds"]
    sd = y.astype(np.float64).std(axis=0)
    assert list(thresholds.values()) == pytest.approx(list(0.2 * sd))
    growth = np.abs(pc.astype(np.float64) - y) - np.abs(pb.astype(np.float64) - y)
    assert result.details["worse"]["samples"] == int(np.any(growth > 0.2 * sd, axis=1).sum())


def test_largest_growths_name_the_samples():
    y, pb, pc = world(200, 2, seed=24)
    pc[137, 1] += 50.0
    result = run_check(y, pb, pc, batch=16)
    table = result.tables[1]
    growth = np.abs(pc.astype(np.float64) - y) - np.abs(pb.astype(np.float64) - y)
    order = np.argsort(-growth.ravel(), kind="stable")[:10]
    assert [(row[1], row[2]) for row in table.rows] == [(int(p) // 2, f"target[{int(p) % 2}]") for p in order]
    assert table.rows[0][1] == 137 and table.rows[0][8] == pytest.approx(growth[137, 1], rel=1e-5)


# ----------------------------------------------------------------------------------------------- sharding


def test_state_round_trip_equals_the_single_run():
    y, pb, pc = world(333, 2, seed=25, noise_c=1.3)
    opts = {"mae": {"max_increase": 0.05}, "rmse": {"max_relative_increase": 0.05}, "r2": {"max_drop": 0.01},
            "worse_rate": {"max": 0.3}, "per_target": True}
    single = feed(make_check(opts, t=2), y, pb, pc, batch=20).compute()
    shards = [feed(make_check(opts, t=2), y, pb, pc, batch=20, batches=set(range(k, 17, 3))).state()
              for k in range(3)]
    merged = {}
    for key in shards[0]:
        if key.startswith("rows."):
            merged[key] = np.concatenate([s[key] for s in shards])
        else:
            merged[key] = sum(s[key] for s in shards)
    assert all(key.startswith("rows.") for key in merged)
    assert merged["rows.index"].dtype == np.int64
    restored = make_check(opts, t=2)
    restored.load_state(merged)
    again = restored.compute()
    assert again.findings == single.findings
    assert again.tables == single.tables
    assert again.details == single.details


def test_load_state_refuses_what_is_not_a_state():
    check = make_check()
    with pytest.raises(ValueError):
        check.load_state({"rows.index": np.arange(3)})
    with pytest.raises(ValueError, match="twice"):
        check.load_state({"rows.index": np.array([0, 0]), "rows.target": np.zeros((2, 1)),
                          "rows.baseline": np.zeros((2, 1)), "rows.candidate": np.zeros((2, 1))})
    y, pb, pc = world(40, 1, seed=27)
    shards = [feed(make_check(), y, pb, pc, batch=10, batches={k, k + 2}).state() for k in (0, 1)]
    summed = {key: shards[0][key] + shards[1][key] for key in shards[0]}     # rows added up, not concatenated
    with pytest.raises(ValueError, match="not samples 0..N-1"):
        make_check().load_state(summed)


# ------------------------------------------------------------------------------------------------ bad input


def test_predictions_of_the_wrong_shape_are_refused():
    y, pb, pc = world(10, 2, seed=26)
    check = make_check(t=2)
    with pytest.raises(ModelError, match="candidate predicts shape"):
        check.update(step(0, 0, y, pb, pc[:, :1]))


def test_no_samples_is_a_data_error():
    with pytest.raises(DataError, match="no samples"):
        make_check().compute()


@pytest.mark.parametrize("options, message", [
    ({"mae": {"max_increse": 0.1}}, "did you mean max_increase"),
    ({"rmse": {"max": -1.0}}, "checks.regression.rmse.max"),
    ({"r2": {"max_drop": -0.1}}, "checks.regression.r2.max_drop"),
    ({"worse_by": -0.5}, "checks.regression.worse_by"),
    ({"worse_rate": {"max": 1.5}}, "checks.regression.worse_rate.max"),
    ({"r2": {"min": 1.2}}, "checks.regression.r2.min"),
    ({"wrose_rate": {"max": 0.1}}, "did you mean worse_rate"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        build_config({"checks": {"regression": options}})


def test_r2_floor_may_be_negative():
    config = build_config({"checks": {"regression": {"r2": {"min": -0.5}}}})
    assert config.check("regression")["r2"]["min"] == -0.5


def test_check_declares_its_task_and_sharding():
    assert RegressionCheck.tasks == frozenset({"regression"})
    assert RegressionCheck.sharding == "merge"
    assert dataclasses.is_dataclass(step(0, 0, *world(2, seed=1)))


# ------------------------------------------------------------------------------------------------ bootstrap-t


@pytest.mark.parametrize("metric,rule", [("mae", "max_relative_increase"), ("rmse", "max_increase"),
                                         ("rmse", "max_relative_increase"), ("r2", "max_drop"), ("r2", "min")])
@pytest.mark.parametrize("col", [0, 2])
def test_replicate_se_is_the_delta_se_recomputed_on_the_resampled_data(metric, rule, col):
    """se* from the weighted basis equals the influences of the resampled data itself (rows repeated by weight),
    computed from scratch by figures() and influences(), for the first few resamples."""
    from gate.checks.regression import compared, compared_influence, compared_weights

    y, pb, pc = (a.astype(np.float64) for a in world(60, 2, seed=31, noise_c=1.4))
    resamples, seed = 5, 3
    sums = rs.bootstrap_sums(y, (pb, pc), resamples=resamples, seed=seed)
    rb, rc = rs.figures_from_sums(sums)
    wb, wc = compared_weights(rule, rb[metric][:, col], rc[metric][:, col])
    coef = (wb[:, None, None] * rs.influence_coefficients(metric, 0, sums)
            + wc[:, None, None] * rs.influence_coefficients(metric, 1, sums))
    basis = rs.influence_basis(y, (pb, pc))
    if col == 0:
        basis, coef = basis.reshape(60, -1), (coef / 2).reshape(resamples, -1)
    else:
        basis, coef = basis[:, col - 1, :], coef[:, col - 1, :]
    got = rs.replicate_se(basis, coef, resamples=resamples, seed=seed)
    if col > 0:                     # one target: the same from the resamples' covariances, without a second pass
        assert rs.moment_se(sums, coef, col - 1) == pytest.approx(got, rel=1e-8)
    weights = np.concatenate(list(rs.sample_weights(60, resamples=resamples, seed=seed)))
    for r in range(resamples):
        rows = np.repeat(np.arange(60), weights[r].astype(int))
        ys, bs, cs = y[rows], pb[rows], pc[rows]
        fb, fc = rs.figures(ys, bs), rs.figures(ys, cs)
        assert rb[metric][r, col] == pytest.approx(fb.get(metric)[col], rel=1e-10)
        u = compared_influence(rule, float(fb.get(metric)[col]), float(fc.get(metric)[col]),
                               rs.influences(ys, bs, fb)[metric][:, col], rs.influences(ys, cs, fc)[metric][:, col])
        assert np.isfinite(compared(rule, fb.get(metric)[col], fc.get(metric)[col]))
        assert got[r] == pytest.approx(math.sqrt(np.mean((u - u.mean()) ** 2) / 60), rel=1e-9)


@pytest.mark.parametrize("rule,metric", [("max_increase", "rmse"), ("min", "r2"), ("max_relative_drop", "r2"),
                                         ("max_drop", "r2")])
def test_hull_p_values_invert_its_interval(rule, metric):
    """p beyond (within) at the interval's good (bad) end is alpha (to 0.002, as BCa's own inversion), and a
    threshold 2% of the width either side of each end gives the claim on one side and not on the other."""
    y, pb, pc = world(120, 1, seed=32, noise_c=1.5)
    ctx = _ctx_of(y, pb, pc)
    ev = RegressionCheck._evidence(rule, 0.0, 1, metric, ctx, SETTINGS)          # noqa: SLF001
    assert ev.method == ("paired bootstrap, BCa, bootstrap-t and Fieller log-ratio bootstrap-t"
                         if metric == "r2" and rule != "min" else "paired bootstrap, BCa and bootstrap-t")
    lo, hi = ev.interval
    eps = 0.02 * (hi - lo)
    alpha = 0.025
    beyond_end, within_end = (hi, lo) if rule == "min" else (lo, hi)
    sign = -1.0 if rule == "min" else 1.0          # which way of the threshold "beyond" lies
    at = lambda th: RegressionCheck._evidence(rule, th, 1, metric, ctx, SETTINGS)  # noqa: E731, SLF001
    assert at(beyond_end).p_beyond == pytest.approx(alpha, abs=0.002)
    assert at(within_end).p_within == pytest.approx(alpha, abs=0.002)
    assert at(beyond_end - sign * eps).p_beyond < alpha <= at(beyond_end + sign * eps).p_beyond
    assert at(within_end + sign * eps).p_within < alpha <= at(within_end - sign * eps).p_within


def test_intervals_cover_the_true_differences_on_skewed_errors_at_n_100(monkeypatch):
    """Against a Monte Carlo oracle: the true differences are those of a 200,000-sample population (a skewed
    target, heavy-tailed shared errors, the candidate noisier); 400 sets of n = 100, 999 resamples each. Each side
    of the 95% interval may miss at most 2.5% + 2.2 Monte Carlo standard errors (0.78 points) = 4.2%: the check's
    hull for MAE, RMSE and R^2, and the bootstrap-t alone for RMSE (alone it missed R^2's drop below 5.2% of the
    time here, which is why the check takes the hull)."""
    import gate.checks.regression as regression_check

    rng = np.random.default_rng(33)
    size = 200_000
    y = rng.gamma(2.0, 2.0, size) + 5.0
    shared = 0.6 * rng.standard_t(5, size)
    pb = y + shared + 0.5 * rng.standard_normal(size)
    pc = y + shared + 0.8 * rng.standard_normal(size)
    y, pb, pc = y[:, None], pb[:, None], pc[:, None]
    fb, fc = rs.figures(y, pb), rs.figures(y, pc)
    truth = {"mae": float(fc.mae[0] - fb.mae[0]), "rmse": float(fc.rmse[0] - fb.rmse[0]),
             "r2": float(fb.r2[0] - fc.r2[0])}
    rules = {"mae": "max_increase", "rmse": "max_increase", "r2": "max_drop"}
    cases = [("hull", m) for m in rules] + [("bootstrap-t", "rmse")]
    settings = dataclasses.replace(SETTINGS, resamples=999)
    misses = {case: [0, 0] for case in cases}
    sets = 400
    for i in range(sets):
        idx = rng.integers(0, size, 100)
        s = dataclasses.replace(settings, seed=i)
        ctx = _ctx_of(y[idx], pb[idx], pc[idx], settings=s)
        for mode, m in cases:
            monkeypatch.setattr(regression_check, "STUDENTIZED", mode)
            lo, hi = RegressionCheck._evidence(rules[m], 0.0, 0, m, ctx, s).interval   # noqa: SLF001
            misses[(mode, m)][0] += hi < truth[m]
            misses[(mode, m)][1] += lo > truth[m]
    for case, (below, above) in misses.items():
        assert below / sets <= 0.042 and above / sets <= 0.042, (case, below / sets, above / sets)
        assert (below + above) / sets >= 0.02, (case, below / sets, above / sets)      # not simply too wide


# ------------------------------------------------------------------------------------ small-sample expansion


@pytest.mark.parametrize("n,tails", [(30, "normal"), (100, "t4"), (100, "exponential"), (1000, "t4")])
def test_small_sample_expansion_is_hesterbergs_with_the_kurtosis_degrees_of_freedom(n, tails):
    """Against scipy.stats: kappa from `kurtosis(fisher=False)`, nu = 2n / (kappa - 1) (at most n - 1), and the
    factor sqrt(n / (n - 1)) t.ppf(0.975, nu) / norm.ppf(0.975); heavier tails give fewer degrees of freedom."""
    rng = np.random.default_rng(n)
    u = {"normal": rng.normal(size=n), "t4": rng.standard_t(4, size=n),
         "exponential": rng.exponential(size=n)}[tails]
    kappa = float(sps.kurtosis(u, fisher=False, bias=True))
    nu = min(2.0 * n / (kappa - 1.0), n - 1.0)
    assert rs.effective_df(u) == pytest.approx(nu, rel=1e-12)
    want = math.sqrt(n / (n - 1)) * sps.t.ppf(0.975, nu) / sps.norm.ppf(0.975)
    assert rs.small_sample_expansion(u, confidence=0.95) == pytest.approx(want, rel=1e-10)
    assert rs.small_sample_expansion(u, confidence=0.95) > 1.0
    assert rs.effective_df(u) <= n - 1


def test_small_sample_expansion_shrinks_with_n_and_grows_with_the_tails():
    rng = np.random.default_rng(5)
    k = {n: rs.small_sample_expansion(rng.normal(size=n), confidence=0.95) for n in (20, 100, 1000)}
    assert k[20] > k[100] > k[1000] > 1.0
    assert k[1000] < 1.005
    heavy = rs.small_sample_expansion(rng.standard_t(3, size=100), confidence=0.95)
    assert heavy > rs.small_sample_expansion(rng.normal(size=100), confidence=0.95)
    assert rs.small_sample_expansion(np.full(50, 2.0), confidence=0.95) == 1.0       # no spread: nothing to widen
    assert rs.small_sample_expansion(np.array([1.0]), confidence=0.95) == 1.0


def _widened(monkeypatch, rule: str, metric: str, *, family: int = 1):
    """The hull's interval unexpanded and expanded (in a family of `family`), the estimate and the influences."""
    import gate.checks.regression as regression_check
    from gate.checks.regression import compared, compared_influence

    y, pb, pc = world(80, 1, seed=41, noise_c=1.4)
    ctx = _ctx_of(y, pb, pc)
    monkeypatch.setattr(regression_check, "FIELLER", False)     # the two members' widening (R^2's third: its own k)
    monkeypatch.setattr(regression_check, "EXPANDED", False)
    plain = RegressionCheck._evidence(rule, 0.3, 0, metric, ctx, SETTINGS).interval              # noqa: SLF001
    monkeypatch.setattr(regression_check, "EXPANDED", True)
    ctx.pop("student", None)
    wide = RegressionCheck._evidence(rule, 0.3, 0, metric, ctx, SETTINGS, family=family).interval  # noqa: SLF001
    fig, infl = ctx["fig"], ctx["infl"]
    b, c = float(fig["baseline"].get(metric)[0]), float(fig["candidate"].get(metric)[0])
    u = compared_influence(rule, b, c, infl["baseline"][metric][:, 0], infl["candidate"][metric][:, 0])
    return plain, wide, float(compared(rule, b, c)), u


@pytest.mark.parametrize("rule,metric", [("max_increase", "rmse"), ("min", "r2"), ("max_relative_increase", "mae")])
def test_the_expansion_widens_the_hull_about_the_estimate_by_its_factor(rule, metric, monkeypatch):
    """Both bootstraps' replicates are widened about the estimate by the factor, so the hull's ends are
    est + k (end - est) of the unexpanded hull exactly (BCa's z0 and a do not change)."""
    (lo0, hi0), (lo, hi), est, u = _widened(monkeypatch, rule, metric)
    k = rs.small_sample_expansion(u, confidence=0.95)
    assert k > 1.01
    assert lo == pytest.approx(est + k * (lo0 - est), rel=1e-9)
    assert hi == pytest.approx(est + k * (hi0 - est), rel=1e-9)


def test_in_a_family_the_expansion_is_taken_at_the_bonferroni_level(monkeypatch):
    """Per-target rules are Holm-adjusted, so some are judged at alpha / m: the widening (t_nu / z, which grows as
    the level shrinks) is taken there, and is wider than the single rule's."""
    (lo0, hi0), (lo, hi), est, u = _widened(monkeypatch, "max_increase", "rmse", family=6)
    k6 = rs.small_sample_expansion(u, confidence=1 - 0.05 / 6)
    assert k6 > rs.small_sample_expansion(u, confidence=0.95) > 1.0
    assert hi == pytest.approx(est + k6 * (hi0 - est), rel=1e-9)
    assert lo == pytest.approx(est + k6 * (lo0 - est), rel=1e-9)


# ------------------------------------------------------------------------------ R^2: the Fieller log-ratio member


@pytest.mark.parametrize("rule", ["max_drop", "max_relative_drop", "min"])
def test_fieller_form_is_the_rules_claim_exactly(rule):
    """For any means A_b, A_c, B > 0 and bound: the rule's compared value (compared(), on R^2 = 1 - A / B) is below
    the bound exactly when A_c < w_b A_b + w_t B, and above it exactly when A_c > that (the Fieller form)."""
    from gate.checks.regression import compared, fieller_form

    rng = np.random.default_rng(61)
    checked = 0
    for _ in range(4000):
        a_b, a_c, b = rng.uniform(0.05, 2.0, 3)
        r2_b, r2_c = 1.0 - a_b / b, 1.0 - a_c / b
        bound = float(rng.uniform(-0.5, 0.95))
        form = fieller_form(rule, bound, r2_b)
        if rule == "max_relative_drop" and r2_b <= 0:
            assert form is None
            continue
        value = float(compared(rule, r2_b, r2_c))
        w_b, w_t = form
        m = w_b * a_b + w_t * b
        if abs(value - bound) < 1e-9:
            continue
        # "within" for the drops is value < bound; for min (a floor) value > bound, i.e. 1 - A_c / B > r
        within = value < bound if rule != "min" else value > bound
        assert within == (a_c < m), (rule, a_b, a_c, b, bound)
        checked += 1
    assert checked > 1000


def test_fieller_pseudo_is_the_log_ratio_bootstrap_t_recomputed_on_the_resampled_rows():
    """g = log(A_c / M) of the data, and each pseudo-replicate g - t* se with t* = (g* - g) / se*, where g* and se*
    (the delta-method se of log(A_c / M) from its influence values) are recomputed from scratch on the resample's
    rows (rows repeated by weight), unexpanded (confidence None)."""
    y, pb, pc = (a.astype(np.float64) for a in world(70, 2, seed=62, noise_c=1.4))
    resamples, seed, j = 6, 4, 1
    sums = rs.bootstrap_sums(y, (pb, pc), resamples=resamples, seed=seed)
    parts = rs.fieller_parts(y, (pb, pc), y, (pb, pc), sums, j)
    w_b, w_t = 0.9, 0.05

    def g_and_se(yy, bb, cc):
        eb2, ec2 = (bb[:, j] - yy[:, j]) ** 2, (cc[:, j] - yy[:, j]) ** 2
        v = (yy[:, j] - yy[:, j].mean()) ** 2
        a_b, a_c, b = eb2.mean(), ec2.mean(), v.mean()
        m = w_b * a_b + w_t * b
        u = (ec2 - a_c) / a_c - (w_b * (eb2 - a_b) + w_t * (v - b)) / m
        return math.log(a_c / m), math.sqrt(np.mean(u * u) / yy.shape[0])

    g, pseudo = rs.fieller_pseudo(parts, w_b, w_t, confidence=None)
    g0, se0 = g_and_se(y, pb, pc)
    assert g == pytest.approx(g0, rel=1e-12)
    weights = np.concatenate(list(rs.sample_weights(70, resamples=resamples, seed=seed)))
    for r in range(resamples):
        rows = np.repeat(np.arange(70), weights[r].astype(int))
        g_r, se_r = g_and_se(y[rows], pb[rows], pc[rows])
        assert pseudo[r] == pytest.approx(g0 - (g_r - g0) / se_r * se0, rel=1e-8)
    # the expansion widens the pseudo-replicates about g by the factor of g's influence values
    _, wide = rs.fieller_pseudo(parts, w_b, w_t, confidence=0.95)
    ratio = (wide - g) / (pseudo - g)
    assert np.allclose(ratio, ratio[0]) and ratio[0] > 1.0
    # M <= 0 (the bound below what any data could be within): undefined, the claim left to the other members
    assert rs.fieller_pseudo(parts, 1.0, -10.0, confidence=0.95) is None


def _drop_evidence(monkeypatch, fieller: bool, ctx, threshold, col=0):
    import gate.checks.regression as regression_check

    monkeypatch.setattr(regression_check, "FIELLER", fieller)
    return RegressionCheck._evidence("max_drop", threshold, col, "r2", ctx, SETTINGS)          # noqa: SLF001


def test_an_r2_drop_is_claimed_only_when_the_fieller_member_claims_it_too(monkeypatch):
    """Each p-value of an R^2 drop is the larger of the two-member hull's and the Fieller log-ratio bootstrap-t's,
    and its interval the hull of both intervals: on right-skewed heavy-tailed errors (n = 60) the member's upper
    end lies above the old hull's, so a threshold just above the old upper end, which the old hull called within,
    is no longer called within."""
    import gate.checks.regression as regression_check

    found = 0
    for seed in range(12):
        y, pb, pc = world(60, 1, seed=200 + seed, noise_c=1.6)
        ctx = _ctx_of(y, pb, pc)
        old = _drop_evidence(monkeypatch, False, ctx, 0.0)
        new = _drop_evidence(monkeypatch, True, ctx, 0.0)
        assert new.interval[0] <= old.interval[0] and new.interval[1] >= old.interval[1]
        member = RegressionCheck._fieller_member("max_drop", 0, "r2", ctx, 0.95,     # noqa: SLF001
                                                 float(ctx["fig"]["baseline"].r2[0]))
        for th in (0.0, old.interval[1]):
            o, w = _drop_evidence(monkeypatch, False, ctx, th), _drop_evidence(monkeypatch, True, ctx, th)
            fb, fw = member(th)
            assert w.p_within == pytest.approx(max(o.p_within, fw), abs=1e-15)
            assert w.p_beyond == pytest.approx(max(o.p_beyond, fb), abs=1e-15)
        th = 0.5 * (old.interval[1] + new.interval[1])
        if new.interval[1] > old.interval[1] + 1e-6 and _drop_evidence(monkeypatch, False, ctx, th).p_within < 0.025:
            # (BCa's own inversion is good to about 0.002 in p: hence a threshold well inside the gap)
            assert _drop_evidence(monkeypatch, True, ctx, th).p_within >= 0.025
            found += 1
    assert found >= 3
    monkeypatch.setattr(regression_check, "FIELLER", True)


def test_the_fieller_member_reads_one_target_only(monkeypatch):
    """R^2 averaged over several targets is no one ratio: the mean column keeps the two-member hull, each
    target's column takes the member; `min` never does."""
    y, pb, pc = world(80, 2, seed=63, noise_c=1.5)
    ctx = _ctx_of(y, pb, pc)
    assert _drop_evidence(monkeypatch, True, ctx, 0.05, col=0).method == "paired bootstrap, BCa and bootstrap-t"
    assert "Fieller" in _drop_evidence(monkeypatch, True, ctx, 0.05, col=2).method
    ev = RegressionCheck._evidence("min", 0.5, 1, "r2", ctx, SETTINGS)                      # noqa: SLF001
    assert ev.method == "paired bootstrap, BCa and bootstrap-t"


@pytest.mark.parametrize("rule", ["max_drop", "max_relative_drop"])
def test_an_r2_drop_claim_is_monotone_in_the_threshold_and_agrees_with_its_interval_at_small_n(rule):
    """A looser threshold never loses a claim: at n 8-12 the Fieller member's own p-value can rise again as the
    bound loosens (seed 1017, n 10: within at 0.05, not at 0.11 before this), so its claims are closed by its
    interval. Thresholds on a grid past the interval's upper end are all claimed within; one just inside is not."""
    scanned = 0
    for n, seed in [(10, 1017)] + [(n, 900 + s) for n in (8, 10, 12) for s in range(4)]:
        y, pb, pc = world(n, seed=seed)
        ctx = _ctx_of(y, pb, pc)
        ev = RegressionCheck._evidence(rule, 0.0, 1, "r2", ctx, SETTINGS)          # noqa: SLF001
        lo, hi = ev.interval
        if not (math.isfinite(lo) and math.isfinite(hi)) or "Fieller" not in ev.method:
            continue
        scanned += 1
        grid = np.linspace(hi, hi + 4.0 * (hi - lo), 13)[1:]
        p_within = [RegressionCheck._evidence(rule, th, 1, "r2", ctx, SETTINGS).p_within  # noqa: SLF001
                    for th in grid]
        assert all(p < 0.025 for p in p_within), (n, seed, list(zip(grid, p_within)))
        inside = hi - 0.02 * (hi - lo)
        assert RegressionCheck._evidence(rule, inside, 1, "r2", ctx, SETTINGS).p_within >= 0.025  # noqa: SLF001
    assert scanned >= 8


@pytest.mark.parametrize("t", [1, 2])
def test_one_sample_claims_nothing_either_way(t):
    """The bootstrap of one sample is that sample: every resample the same, no spread. A claim "beyond" (a 95%
    interval [1.3, 1.3]) or "within" from it would hold at no confidence, so every resampled rule is inconclusive
    with no interval; the worse-sample rate (an exact binomial interval) still has its own."""
    y, pb, pc = world(1, t, seed=5, noise_c=3.0)
    options = {"mae": {"max_relative_increase": 0.05, "max_increase": 10.0}, "rmse": {"max": 100.0},
               "r2": {"max_drop": 0.05}, "worse_rate": {"max": 0.2}, "per_target": t > 1}
    result = run_check(y, pb, pc, options=options)
    resampled = [f for f in result.findings if not f.metric.startswith("worse_rate")]
    assert len(resampled) == 4 * (1 + (t if t > 1 else 0))
    for f in resampled:
        assert f.status == "warn" and f.inconclusive and f.interval is None, f
    worse = [f for f in result.findings if f.metric.startswith("worse_rate")]
    assert len(worse) == 1 and worse[0].interval is not None and worse[0].inconclusive
    two = run_check(*world(2, t, seed=5, noise_c=3.0), options=options)      # two samples: resampled as usual
    assert all(f.interval is not None for f in two.findings)
