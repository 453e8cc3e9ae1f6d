"""The scores check: every metric against scikit-learn on the same probabilities (one batch vs many), DeLong
against an O(n^2) Mann-Whitney implementation and a large paired bootstrap, each rule's evidence against an
independent computation, thresholds against scikit-learn's curves, and bad input refused."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats as sps
from scipy.optimize import brentq
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss, precision_recall_curve,
                             roc_auc_score, roc_curve, top_k_accuracy_score)

from gate import score_metrics as sm
from gate import stats
from gate.checks.base import RunContext, Step
from gate.checks.scores import ScoresCheck, choose_threshold
from gate.config import build_config
from gate.errors import ConfigError, DataError, ModelError
from gate.verdict import DecisionSettings, Evidence, judge


def world(n: int, k: int, *, seed: int, signal: float = 1.0, temperature: float = 1.0):
    """Labels and two models' logits that share most of their noise (a paired design), as float32."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    common = rng.standard_normal((n, k))
    zb = common + 0.4 * rng.standard_normal((n, k))
    zc = common + 0.4 * rng.standard_normal((n, k))
    zb[np.arange(n), y] += signal
    zc[np.arange(n), y] += signal
    return y, zb.astype(np.float32), (zc * temperature).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def run_check(y, zb, zc, *, options=None, batch=None, output="logits", decision=None):
    return fed_check(y, zb, zc, options=options, batch=batch, output=output, decision=decision).compute()


def fed_check(y, zb, zc, *, options=None, batch=None, output="logits", decision=None) -> ScoresCheck:
    """A scores check fed labels `y` and both models' scores in batches of `batch` (all at once by default)."""
    raw = {"checks": {"scores": {"enabled": True, **(options or {})}}}
    if decision:
        raw["decision"] = decision
    config = build_config(raw)
    k = zb.shape[1] if zb.ndim == 2 else 2
    models = {r: SimpleNamespace(output=output) for r in ("baseline", "candidate")}
    ctx = RunContext(config=config, models=models, class_names=tuple(str(i) for i in range(k)), device=None)
    check = ScoresCheck(config.check("scores"), ctx)
    batch = batch or len(y)
    for i, start in enumerate(range(0, len(y), batch)):
        sl = slice(start, start + batch)
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                          scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])}))
    return check


def metrics_of(result) -> dict[str, tuple[float, float]]:
    return {name: (v["baseline"], v["candidate"]) for name, v in result.details["metrics"].items()}


# ------------------------------------------------------------------------------------------ against sklearn


@pytest.mark.parametrize("k", [2, 7])
@pytest.mark.parametrize("batch", [None, 37])
def test_every_metric_matches_scikit_learn_one_batch_or_many(k, batch):
    y, zb, zc = world(500, k, seed=k, temperature=1.7)
    result = run_check(y, zb, zc, batch=batch, options={"top_k": 3})
    got = metrics_of(result)
    for role, z in (("baseline", zb), ("candidate", zc)):
        i = 0 if role == "baseline" else 1
        p = softmax(z)
        assert got["log_loss"][i] == pytest.approx(log_loss(y, p, labels=list(range(k))), rel=1e-5)
        if k == 2:
            assert got["roc_auc"][i] == pytest.approx(roc_auc_score(y, p[:, 1]), rel=1e-9)
            assert got["pr_auc"][i] == pytest.approx(average_precision_score(y, p[:, 1]), rel=1e-9)
            assert got["brier"][i] == pytest.approx(brier_score_loss(y, p[:, 1]), rel=1e-5)
            assert "top_3_accuracy" not in got
        else:
            assert got["roc_auc"][i] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"),
                                                      rel=1e-9)
            assert got["pr_auc"][i] == pytest.approx(average_precision_score(np.eye(k)[y], p, average="macro"),
                                                     rel=1e-9)
            assert got["brier"][i] == pytest.approx(brier_score_loss(y, p, labels=list(range(k))), rel=1e-5)
            assert got["top_3_accuracy"][i] == pytest.approx(top_k_accuracy_score(y, p, k=3, labels=list(range(k))))


def test_one_batch_and_many_batches_give_the_same_report():
    y, zb, zc = world(400, 5, seed=3)
    options = {"roc_auc": {"max_drop": 0.01}, "ece": {"max_increase": 0.02}, "log_loss": {"max_relative_increase": 0.1}}
    one = run_check(y, zb, zc, options=options)
    many = run_check(y, zb, zc, options=options, batch=23)
    assert one.details == many.details
    assert [(f.status, f.value, f.p_value, f.interval) for f in one.findings] == \
           [(f.status, f.value, f.p_value, f.interval) for f in many.findings]


def test_sigmoid_and_probability_outputs_are_read_as_probabilities():
    y, zb, zc = world(300, 2, seed=5)
    pb, pc = softmax(zb), softmax(zc)
    as_probs = metrics_of(run_check(y, pb, pc, output="probabilities"))
    as_sigmoid = metrics_of(run_check(y, np.stack([1 - pb[:, 1], pb[:, 1]], 1), np.stack([1 - pc[:, 1], pc[:, 1]], 1),
                                      output="sigmoid"))
    for got in (as_probs, as_sigmoid):
        assert got["log_loss"][0] == pytest.approx(log_loss(y, pb), rel=1e-5)
        assert got["roc_auc"][1] == pytest.approx(roc_auc_score(y, pc[:, 1]))


def test_expected_calibration_error_and_its_reliability_diagram_by_hand():
    y, zb, zc = world(600, 4, seed=8, temperature=3.0)
    result = run_check(y, zb, zc, options={"ece_bins": 10})
    rel = result.details["reliability"]
    for role, z in (("baseline", zb), ("candidate", zc)):
        p = softmax(z).astype(np.float64)
        conf, pred = p.max(axis=1), p.argmax(axis=1)
        ece, counts, accs = 0.0, [], []
        for b in range(10):
            lo, hi = b / 10, (b + 1) / 10
            inside = (conf > lo) & (conf <= hi) if b else (conf >= 0) & (conf <= hi)
            counts.append(int(inside.sum()))
            accs.append(float((pred[inside] == y[inside]).mean()) if inside.any() else None)
            if inside.any():
                ece += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
        assert rel[role]["ece"] == pytest.approx(ece, abs=1e-6)
        assert rel[role]["count"] == counts
        assert rel[role]["accuracy"] == pytest.approx(accs, abs=1e-6) if all(a is not None for a in accs) else True
    assert rel["candidate"]["ece"] > rel["baseline"]["ece"]      # temperature 3: overconfident
    assert any(t.title.startswith("Reliability diagram") for t in result.tables)
    assert {c.y_label for c in result.charts} == {"accuracy"}


# ------------------------------------------------------------------------------------------------- DeLong


def delong_by_pairs(score_b: np.ndarray, score_c: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """DeLong 1988 with the O(n^2) Mann-Whitney kernel psi(x, z) = 1[x > z] + 1/2 1[x = z]."""
    pos, neg = y == 1, y == 0
    comps = []
    for s in (score_b, score_c):
        kernel = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        comps.append((kernel.mean(), kernel.mean(axis=1), kernel.mean(axis=0)))
    (ab, v10b, v01b), (ac, v10c, v01c) = comps
    s10 = np.cov(np.vstack([v10b, v10c]))
    s01 = np.cov(np.vstack([v01b, v01c]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    return float(ab), float(ac), float(math.sqrt(var))


def test_fast_delong_equals_the_quadratic_mann_whitney_form_with_ties():
    y, zb, zc = world(700, 2, seed=11)
    pb, pc = softmax(np.round(zb, 1)), softmax(np.round(zc, 1))     # rounding makes ties
    ab, ac, se = sm.delong_paired(pb, pc, y)
    ob, oc, ose = delong_by_pairs(pb[:, 1].astype(np.float64), pc[:, 1].astype(np.float64), y)
    assert (ab, ac) == pytest.approx((ob, oc), rel=1e-12)
    assert se == pytest.approx(ose, rel=1e-9)


@pytest.mark.parametrize("k", [2, 4])
def test_delong_standard_error_agrees_with_a_large_paired_bootstrap(k):
    y, zb, zc = world(3000, k, seed=13, signal=0.8)
    pb, pc = softmax(zb), softmax(zc)
    _, _, se = sm.delong_paired(pb, pc, y)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(600):
        i = rng.integers(0, len(y), len(y))
        diffs.append(sm.roc_auc(pc[i], y[i]).value - sm.roc_auc(pb[i], y[i]).value)
    boot = float(np.std(diffs, ddof=1))
    assert se == pytest.approx(boot, rel=0.12)   # 600 resamples: the bootstrap sd itself is within ~6%


def test_roc_auc_rule_is_decided_by_delong_p_values():
    y, zb, zc = world(800, 2, seed=17)
    zc = zc + np.random.default_rng(1).standard_normal(zc.shape).astype(np.float32)   # noisier ranking
    result = run_check(y, zb, zc, options={"roc_auc": {"max_drop": 0.01}})
    f = next(f for f in result.findings if f.metric == "roc_auc")
    ab, ac, se = delong_by_pairs(softmax(zb)[:, 1].astype(np.float64), softmax(zc)[:, 1].astype(np.float64), y)
    assert f.value == pytest.approx(ab - ac)
    assert f.p_value == pytest.approx(sps.norm.sf((ab - ac - 0.01) / se), rel=1e-6)
    assert f.interval == pytest.approx((ab - ac - 1.959964 * se, ab - ac + 1.959964 * se), rel=1e-5)
    assert f.status == ("fail" if sps.norm.sf((ab - ac - 0.01) / se) < 0.025 else f.status)


# -------------------------------------------------------------------------------------- the other evidence


def hall_g(t, a):
    """Hall's (1992) transformation of a studentized mean, written out: t + a t^2/3 + a^2 t^3/27 + a/6."""
    return t + a * t ** 2 / 3 + a ** 2 * t ** 3 / 27 + a / 6


def test_log_loss_increase_is_claimed_when_the_normal_the_log_ratio_and_the_skew_corrected_tests_all_claim_it():
    y, zb, zc = world(500, 3, seed=21, temperature=2.5)
    result = run_check(y, zb, zc, options={"log_loss": {"max_increase": 0.05}})
    f = result.findings[0]
    lb = -np.log(np.clip(softmax(zb)[np.arange(500), y].astype(np.float64), sm.EPS, 1))
    lc = -np.log(np.clip(softmax(zc)[np.arange(500), y].astype(np.float64), sm.EPS, 1))
    pb64 = softmax(zb).astype(np.float64)
    assert lb.mean() == pytest.approx(log_loss(y, pb64 / pb64.sum(axis=1, keepdims=True), labels=range(3)), rel=1e-5)
    d = lc - lb
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert f.value == pytest.approx(d.mean(), rel=1e-5)
    z = sps.norm.ppf(0.975)
    # the log ratio log(mean lc / mean lb), its delta-method se, mapped back with the baseline at its mean
    mb, mc = lb.mean(), lc.mean()
    ratio_se = ((lc - mc) / mc - (lb - mb) / mb).std(ddof=1) / math.sqrt(d.size)
    delta = math.log(mc / mb)
    log_iv = (mb * math.expm1(delta - z * ratio_se), mb * math.expm1(delta + z * ratio_se))
    p_log = sps.norm.sf((delta - math.log((mb + 0.05) / mb)) / ratio_se)
    # Hall's skew-corrected test, the sample skewness doubled (SKEW_INFLATION)
    a = 2 * sps.skew(d) / math.sqrt(d.size)
    assert sps.skew(d) > 1                                           # skewed: not the normal interval
    lo_t = brentq(lambda t: hall_g(t, a) - z, -10, 10)
    hi_t = brentq(lambda t: hall_g(t, a) + z, -10, 10)
    hall_iv = (d.mean() - lo_t * se, d.mean() - hi_t * se)
    p_hall = sps.norm.sf(hall_g((d.mean() - 0.05) / se, a))
    p_normal = sps.norm.sf((d.mean() - 0.05) / se)
    lo, hi = f.interval                                              # the hull of the three intervals
    assert lo == pytest.approx(min(d.mean() - z * se, log_iv[0], hall_iv[0]), rel=1e-4)
    assert hi == pytest.approx(max(d.mean() + z * se, log_iv[1], hall_iv[1]), rel=1e-4)
    assert hi > d.mean() + z * se * 1.01                             # the skew moves the upper end out
    assert f.p_value == pytest.approx(max(p_normal, p_log, p_hall), rel=1e-4)   # a claim all three make
    assert result.details["metrics"]["log_loss"]["statistic"] == "normal, log-ratio and skew-corrected (paired mean)"


def test_hall_corrected_upper_bound_of_a_skewed_mean_misses_less_often_than_the_normal_one():
    from gate.checks.scores import hall_quantile

    rng = np.random.default_rng(5)
    x = rng.lognormal(0.0, 1.0, size=(4000, 60))                     # right-skewed, true mean e^0.5
    m, sd = x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(60)
    g = sps.skew(x, axis=1)
    z = sps.norm.ppf(0.975)
    upper_hall = np.array([mi - si * hall_quantile(-z, gi / math.sqrt(60)) for mi, si, gi in zip(m, sd, g)])
    truth = math.exp(0.5)
    below_normal, below_hall = np.mean(m + z * sd < truth), np.mean(upper_hall < truth)
    assert below_hall < below_normal - 0.02                          # the normal bound is short on the tail side
    for gi in (-3.0, 0.0, 0.5, 4.0):                                 # the quantile inverts the transformation
        a = gi / math.sqrt(60)
        assert hall_g(hall_quantile(1.3, a), a) == pytest.approx(1.3, abs=1e-9)


def test_pr_auc_drop_is_claimed_when_the_normal_and_the_logit_tests_both_claim_it():
    y, zb, zc = world(800, 2, seed=24, signal=0.7, temperature=1.0)
    zc[:, 1] -= 0.5 * np.abs(np.random.default_rng(3).standard_normal(800)).astype(np.float32) * (y == 1)
    result = run_check(y, zb, zc, options={"pr_auc": {"max_drop": 0.01}})
    f = result.findings[0]
    pb, pc = softmax(zb).astype(np.float64), softmax(zc).astype(np.float64)
    ab, ac = average_precision_score(y, pb[:, 1]), average_precision_score(y, pc[:, 1])
    assert f.value == pytest.approx(ab - ac, rel=1e-6)
    ib, ic = sm.pr_auc_influence(pb, y), sm.pr_auc_influence(pc, y)
    n = y.size
    se = (ib.psi - ic.psi).std(ddof=1) / math.sqrt(n)
    logit = lambda v: math.log(v / (1 - v))  # noqa: E731
    lse = (ic.psi / (ac * (1 - ac)) - ib.psi / (ab * (1 - ab))).std(ddof=1) / math.sqrt(n)
    delta = logit(ac) - logit(ab)
    z = sps.norm.ppf(0.975)
    expit = lambda u: 1 / (1 + math.exp(-u))  # noqa: E731
    logit_iv = sorted(ab - expit(logit(ab) + delta + s * z * lse) for s in (-1, 1))
    lo, hi = f.interval
    assert lo == pytest.approx(min(ab - ac - z * se, logit_iv[0]), rel=1e-4)
    assert hi == pytest.approx(max(ab - ac + z * se, logit_iv[1]), rel=1e-4)
    p_normal = sps.norm.sf((ab - ac - 0.01) / se)                    # beyond: the drop above 0.01
    p_logit = sps.norm.sf((logit(ab - 0.01) - logit(ac)) / lse)
    assert f.p_value == pytest.approx(max(p_normal, p_logit), rel=1e-4)
    assert result.details["metrics"]["pr_auc"]["statistic"] == "delta (influence), normal and logit"


def test_relative_increase_uses_the_delta_method_with_the_log_ratio_and_the_skew_correction():
    y, zb, zc = world(500, 3, seed=22, temperature=1.5)
    result = run_check(y, zb, zc, options={"brier": {"max_relative_increase": 0.1}})
    f = result.findings[0]
    tb = sm.brier_terms(softmax(zb), y)
    tc = sm.brier_terms(softmax(zc), y)
    b, c = tb.mean(), tc.mean()
    infl = (tc - c) / b - c / b ** 2 * (tb - b)
    se = infl.std(ddof=1) / math.sqrt(infl.size)
    assert f.value == pytest.approx((c - b) / b)
    p_normal = sps.norm.sf(((c - b) / b - 0.1) / se)
    ratio_se = ((tc - c) / c - (tb - b) / b).std(ddof=1) / math.sqrt(tb.size)
    p_log = sps.norm.sf((math.log(c / b) - math.log(1.1)) / ratio_se)         # log(c / b) against log(1 + 0.1)
    p_hall = sps.norm.sf(hall_g(((c - b) / b - 0.1) / se, 2 * sps.skew(infl) / math.sqrt(tb.size)))
    assert f.p_value == pytest.approx(max(p_normal, p_log, p_hall), rel=1e-6)


def test_top_k_drop_is_tangos_test_on_the_discordant_samples():
    y, zb, zc = world(600, 8, seed=23, signal=0.6)
    result = run_check(y, zb, zc, options={"top_k": 2, "top_k_accuracy": {"max_drop": 0.02}})
    f = result.findings[0]
    hb = top_k_accuracy_score(y, softmax(zb), k=2, normalize=False, labels=list(range(8)))
    rank_b = (softmax(zb) > softmax(zb)[np.arange(600), y][:, None]).sum(1) < 2
    rank_c = (softmax(zc) > softmax(zc)[np.arange(600), y][:, None]).sum(1) < 2
    assert rank_b.sum() == hb
    b, c = int(np.sum(rank_b & ~rank_c)), int(np.sum(~rank_b & rank_c))
    beyond, _ = stats.paired_difference_p_values(b, c, 600, bound=0.02)
    assert f.metric == "top_2_accuracy" and f.p_value == pytest.approx(float(beyond))


def ece_by_loop(p: np.ndarray, y: np.ndarray, bins: int = 15):
    """ECE, its per-sample influence and bias allowance, one bin at a time (the oracle of sm.ece_influence)."""
    conf, pred = p.max(axis=1).astype(np.float64), p.argmax(axis=1)
    gap = (pred == y) - conf
    n, ece, psi, allowance = len(y), 0.0, np.zeros(len(y)), 0.0
    for b in range(bins):
        inside = (conf > b / bins) & (conf <= (b + 1) / bins) if b else conf <= 1 / bins
        term = np.where(inside, gap, 0.0)                      # the bin's gap as a mean over all samples
        mean = term.mean()
        ece += abs(mean)
        psi += np.sign(mean) * term
        se = term.std(ddof=1) / math.sqrt(n)
        if se > 0:
            t = max(abs(mean) / se - 0.5, 0.0)
            allowance += se * (sps.foldnorm(t).mean() - t)     # E|t + Z| - t: the bias of |mean| at a gap of t se
    return ece, psi - ece, allowance


def test_ece_interval_is_the_delta_method_widened_by_each_models_bias_allowance():
    y, zb, zc = world(400, 3, seed=24, temperature=3.0)
    result = run_check(y, zb, zc, options={"ece": {"max_increase": 0.02}})
    f = result.findings[0]
    eb, psib, ab = ece_by_loop(softmax(zb), y)
    ec, psic, ac = ece_by_loop(softmax(zc), y)
    assert ab > 0 and ac > 0
    d = ec - eb
    se = (psic - psib).std(ddof=1) / math.sqrt(400)
    z = sps.norm.ppf(0.975)
    assert f.value == pytest.approx(d, abs=1e-6)
    assert f.interval[0] == pytest.approx(d - ac - z * se, abs=1e-5)      # the candidate's estimate may be high
    assert f.interval[1] == pytest.approx(d + ab + z * se, abs=1e-5)      # ... and the baseline's
    assert f.p_value == pytest.approx(sps.norm.sf((d - ac - 0.02) / se), rel=1e-4)
    assert result.details["metrics"]["ece"]["statistic"] == "delta, bin-noise allowance"


def test_ece_bin_bias_is_the_folded_normal_mean_minus_the_gap():
    t = np.array([0.0, 0.3, 1.0, 2.0, 4.0])
    assert sm.bin_bias(t) == pytest.approx([sps.foldnorm(v).mean() - v for v in t], abs=1e-9)


def test_lower_is_better_rules_in_the_verdict():
    point = DecisionSettings(mode="point")
    assert judge(metric="log_loss", rule="max_increase", threshold=0.05, value=0.06, settings=point).status == "fail"
    assert judge(metric="log_loss", rule="max_increase", threshold=0.05, value=0.05, settings=point).status == "pass"
    f = judge(metric="ece", rule="max_relative_increase", threshold=0.1, value=0.2, settings=point)
    assert f.status == "fail" and "relative increase 0.2" in f.reason and f.margin == pytest.approx(-0.1)
    stat = DecisionSettings()
    within = judge(metric="brier", rule="max_increase", threshold=0.05, value=0.01, settings=stat,
                   evidence=Evidence(p_beyond=0.9, p_within=0.001, p_worse=0.3, interval=(-0.01, 0.03)))
    assert within.status == "pass" and "increase 0.01" in within.reason


# --------------------------------------------------------------------------------------------- thresholds


def test_fixed_threshold_applies_to_both_models():
    y, zb, zc = world(400, 2, seed=31)
    result = run_check(y, zb, zc, options={"threshold": 0.3, "at_threshold": {"recall": {"max_drop": 0.05}}})
    th = result.details["threshold"]
    for role, z in (("baseline", zb), ("candidate", zc)):
        pred = softmax(z)[:, 1] >= 0.3
        assert th[role]["recall"] == pytest.approx(float(pred[y == 1].mean()))
        assert th[role]["specificity"] == pytest.approx(float((~pred[y == 0]).mean()))
    assert th["value"] == 0.3 and th["chosen_by"] == "fixed"
    assert result.findings[0].metric == "recall@0.3"


def test_best_f1_threshold_matches_scikit_learns_precision_recall_curve():
    y, zb, _ = world(500, 2, seed=32)
    p1 = softmax(zb)[:, 1]
    t, how = choose_threshold({"choose": "best_f1"}, p1, y)
    precision, recall, thresholds = precision_recall_curve(y, p1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)[:-1]
    assert t == pytest.approx(float(thresholds[np.argmax(f1)]))
    assert "best F1" in how


def test_fpr_threshold_matches_scikit_learns_roc_curve():
    y, zb, _ = world(500, 2, seed=33)
    p1 = softmax(zb)[:, 1]
    t, _ = choose_threshold({"choose": "fpr", "fpr": 0.1}, p1, y)
    fpr, tpr, thresholds = roc_curve(y, p1, drop_intermediate=False)
    best = thresholds[np.flatnonzero(fpr <= 0.1)[-1]]
    assert t == pytest.approx(float(best))
    assert np.mean(p1[y == 0] >= t) <= 0.1


# ------------------------------------------------------------------------------------------------ bad input


def test_probabilities_that_do_not_sum_to_one_are_refused():
    y, zb, zc = world(50, 3, seed=41)
    with pytest.raises(ModelError, match="sums to"):
        run_check(y, softmax(zb) * 0.5, softmax(zc), output="probabilities")


def test_threshold_on_a_multiclass_model_is_a_config_error():
    y, zb, zc = world(50, 3, seed=42)
    with pytest.raises(ConfigError, match="binary model"):
        run_check(y, zb, zc, options={"threshold": 0.5})


def test_top_k_with_too_few_classes_is_a_config_error():
    y, zb, zc = world(50, 3, seed=43)
    with pytest.raises(ConfigError, match="more than 5 classes"):
        run_check(y, zb, zc, options={"top_k_accuracy": {"min": 0.5}})


def test_auc_with_one_class_in_the_labels_cannot_run():
    y, zb, zc = world(50, 2, seed=44)
    with pytest.raises(DataError, match="two classes"):
        run_check(np.zeros_like(y), zb, zc, options={"roc_auc": {"min": 0.5}})


def test_non_finite_scores_never_pass():
    y, zb, zc = world(60, 2, seed=45)
    zc[3, 0] = np.nan
    result = run_check(y, zb, zc, options={"log_loss": {"max_increase": 1.0}})
    assert result.findings[0].status == "fail"


def test_confident_models_keep_their_ranking_where_float32_probabilities_saturate():
    y, zb, zc = world(400, 2, seed=46)
    zc = zc * 40.0            # margins far beyond 17: softmax in float32 is exactly 1.0 for most samples
    assert np.mean(softmax(zc).max(axis=1) == 1.0) > 0.5
    got = metrics_of(run_check(y, zb, zc))
    assert got["roc_auc"][1] == pytest.approx(roc_auc_score(y, zc[:, 1].astype(np.float64) - zc[:, 0]), rel=1e-12)
    assert got["pr_auc"][1] == pytest.approx(average_precision_score(y, zc[:, 1].astype(np.float64) - zc[:, 0]))
    # the log loss of confident mistakes is the margin itself, not a clipped 15.9
    margin = zc[:, 1].astype(np.float64) - zc[:, 0]
    exact = np.logaddexp(0.0, np.where(y == 1, -margin, margin))
    assert got["log_loss"][1] == pytest.approx(np.clip(exact, -np.log1p(-sm.EPS), -np.log(sm.EPS)).mean(), rel=1e-6)


def test_log_odds_of_multiclass_logits_are_exact_for_the_top_class():
    from gate.checks.scores import log_odds_of

    z = torch.tensor([[30.0, 0.0, -1.0], [0.5, 0.4, 0.3]])
    odds = log_odds_of(z, "logits", role="baseline").astype(np.float64)
    zd = z.double().numpy()
    for i in range(2):
        for c in range(3):
            rest = np.log(np.sum(np.exp(np.delete(zd[i], c))))
            assert odds[i, c] == pytest.approx(zd[i, c] - rest, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_logits_kept_until_compute_are_the_per_batch_log_odds(dtype):
    """Logits are kept as they come (float32 and narrower) and turned into log-odds once, over every batch: the
    kept rows are exactly those of log_odds_of batch by batch."""
    from gate.checks.scores import log_odds_of

    y, zb, zc = world(300, 4, seed=81)
    config = build_config({"checks": {"scores": {"enabled": True}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    check = ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=("a", "b", "c", "d"), device=None))
    want = {"baseline": [], "candidate": []}
    for i, start in enumerate(range(0, 300, 64)):
        sl = slice(start, start + 64)
        scores = {"baseline": torch.from_numpy(zb[sl]).to(dtype), "candidate": torch.from_numpy(zc[sl]).to(dtype)}
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]), scores=scores))
        for role in want:
            want[role].append(log_odds_of(scores[role], "logits", role=role))
    state = check.state()
    for role in want:
        assert np.array_equal(state[f"rows.{role}"], np.concatenate(want[role]).astype(np.float64))


@pytest.mark.parametrize("cells", [1, 12, 21, 4 * 64, 1 << 22])
def test_kept_logits_settled_in_blocks_are_the_per_batch_log_odds_bit_for_bit(monkeypatch, cells):
    """The kept logits are turned into log-odds SETTLE_CELLS values at a time, one role at a time, in blocks that
    cross batches of uneven sizes (1 row, 3, 5 or 64 rows a block, or all at once): every kept float32 is the one
    log_odds_of gives its batch, non-finite logits and a float64 batch (computed as it arrives) in between included."""
    from gate.checks.scores import log_odds_of

    monkeypatch.setattr("gate.checks.scores.SETTLE_CELLS", cells)
    y, zb, zc = world(290, 4, seed=83)
    zb[5, 1], zb[70, 0], zc[71, 2], zc[200, :] = np.inf, -np.inf, np.nan, -np.inf
    config = build_config({"checks": {"scores": {"enabled": True}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    check = ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=("a", "b", "c", "d"), device=None))
    want = {"baseline": [], "candidate": []}
    edges = [0, 37, 38, 100, 163, 170, 290]
    with np.errstate(invalid="ignore"):           # inf - inf in the log-odds of the non-finite rows
        for i, (start, stop) in enumerate(itertools.pairwise(edges)):
            dtype = torch.float64 if i == 3 else (torch.float16, torch.bfloat16, torch.float32)[i % 3]
            scores = {"baseline": torch.from_numpy(zb[start:stop]).to(dtype),
                      "candidate": torch.from_numpy(zc[start:stop]).to(dtype)}
            check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[start:stop]),
                              scores=scores))
            for role, parts in want.items():
                parts.append(log_odds_of(scores[role], "logits", role=role))
        rows = check._rows()
    for role, parts in want.items():
        expected = np.concatenate(parts)
        assert rows[role].dtype == np.float32 and rows[role].shape == expected.shape
        assert rows[role].tobytes() == expected.tobytes()
        assert not check._logits[role] and len(check._odds[role]) == 1


def _ranking_of(scores, y):
    return next(iter(sm.Rankings(scores, y)))


def test_delong_components_of_every_class_of_both_models_at_once_are_the_quadratic_ones():
    """auc_parts over all (model, class) rows: each row's AUC and V10 / V01 against the O(n^2) Mann-Whitney kernel
    with ties, and each row computed alone gives the same bits."""
    rng = np.random.default_rng(82)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    scores = [np.round(rng.standard_normal((n, k)) + (y[:, None] == np.arange(k)), 1) for _ in range(2)]
    ranking = _ranking_of(scores, y)
    auc, psi = sm.auc_parts(ranking)
    for row, (m, c) in enumerate(zip(ranking.model.tolist(), ranking.classes.tolist())):
        s, pos = scores[m][:, c], y == c
        kernel = (s[pos][:, None] > s[~pos][None, :]) + 0.5 * (s[pos][:, None] == s[~pos][None, :])
        assert auc[row] == pytest.approx(roc_auc_score(pos, s), rel=1e-12)
        v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
        assert psi[row][pos] == pytest.approx(n / pos.sum() * (v10 - kernel.mean()), rel=1e-12, abs=1e-12)
        assert psi[row][~pos] == pytest.approx(n / (~pos).sum() * (v01 - kernel.mean()), rel=1e-12, abs=1e-12)
        alone = sm.rank_rows(s[None, :], pos[None, :], np.array([c]))
        one_auc, one_psi = sm.auc_parts(alone)
        assert one_auc[0] == auc[row] and np.array_equal(one_psi[0], psi[row])
        ap, ap_psi = sm.ap_parts(alone)
        ap_all, ap_psi_all = sm.ap_parts(ranking)
        assert ap[0] == ap_all[row] == pytest.approx(average_precision_score(pos, s), rel=1e-12)
        assert np.array_equal(ap_psi[0], ap_psi_all[row])


@pytest.mark.parametrize("k", [3, 13])
def test_rankings_in_chunks_of_classes_give_what_one_sort_of_every_class_gives(k):
    """Beyond RANK_CELLS the classes are ranked a chunk at a time (bounded memory): the same bits as one sort."""
    from gate import curves as cv

    y, zb, zc = world(500, k, seed=83)
    odds = [zb.astype(np.float64), np.round(zc, 1).astype(np.float64)]
    whole, chunked = sm.Rankings(odds, y), sm.Rankings(odds, y, cells=2 * 500 * 2, keep=0)    # two classes a chunk
    assert whole._kept is not None and chunked._kept is None
    for metric in (sm.roc_aucs, sm.pr_aucs):
        for a, b in zip(metric(whole), metric(chunked)):
            assert a.value == b.value and np.array_equal(a.psi, b.psi)
    names = tuple(str(i) for i in range(k))
    pair = dict(zip(cv.ROLES, odds))
    assert cv.score_curves(pair, y, names, rankings=whole) == cv.score_curves(pair, y, names, rankings=chunked)


def test_weighted_average_precision_is_scikit_learns_with_sample_weights():
    y, zb, _ = world(300, 4, seed=47)
    scores = np.round(softmax(zb).astype(np.float64), 2)           # ties
    w = np.random.default_rng(3).integers(0, 4, size=(5, 300)).astype(np.float32)
    got = sm.pr_auc(scores, y, w)
    for r in range(5):
        keep = w[r] > 0
        want = np.mean([average_precision_score(y[keep] == c, scores[keep, c], sample_weight=w[r][keep])
                        for c in range(4)])
        assert got[r] == pytest.approx(want, rel=1e-9)
    binary = sm.pr_auc(np.stack([1 - scores[:, 1], scores[:, 1]], 1), (y == 1).astype(np.int64), w[:1])
    keep = w[0] > 0
    assert binary[0] == pytest.approx(average_precision_score(y[keep] == 1, scores[keep, 1], sample_weight=w[0][keep]))


# ------------------------------------------------------------------------------------------------ streamed


def binned(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum(np.floor(p * bins), bins - 1)


@pytest.mark.parametrize("k", [2, 4])
def test_binned_auc_is_the_auc_of_the_binned_scores_and_the_rest_stays_exact(k):
    y, zb, zc = world(600, k, seed=51, temperature=1.3)
    exact = metrics_of(run_check(y, zb, zc, options={"top_k": 2}))
    result = run_check(y, zb, zc, options={"bins": 20, "top_k": 2, "roc_auc": {"max_drop": 0.01}}, batch=50)
    got = metrics_of(result)
    for i, z in enumerate((zb, zc)):
        o = torch.from_numpy(z).double()
        p = torch.softmax(o, dim=1).numpy()
        if k == 2:
            assert got["roc_auc"][i] == pytest.approx(roc_auc_score(y, binned(p[:, 1], 20)), rel=1e-12)
            assert got["pr_auc"][i] == pytest.approx(average_precision_score(y, binned(p[:, 1], 20)), rel=1e-12)
        else:
            assert got["roc_auc"][i] == pytest.approx(np.mean([roc_auc_score(y == c, binned(p[:, c], 20))
                                                               for c in range(k)]), rel=1e-12)
            assert got["pr_auc"][i] == pytest.approx(np.mean([average_precision_score(y == c, binned(p[:, c], 20))
                                                              for c in range(k)]), rel=1e-12)
        for metric in ("log_loss", "brier", "ece") + (("top_2_accuracy",) if k > 2 else ()):
            assert got[metric][i] == pytest.approx(exact[metric][i], rel=1e-9)
    kept = result.details["kept_per_sample"]
    assert kept["approximate"] is True and kept["approximate_metrics"] == ["roc_auc", "pr_auc"]
    assert result.notes[0].startswith("APPROXIMATE: ROC-AUC and PR-AUC from 20 probability bins")
    assert "approximate" in next(r for r in result.tables[0].rows if r[0] == "roc_auc")[-1]


def test_beyond_max_samples_the_check_streams_and_keeps_a_uniform_sample():
    y, zb, zc = world(3000, 3, seed=52, temperature=1.4)
    options = {"log_loss": {"max_increase": 0.01}, "roc_auc": {"max_drop": 0.01}}
    exact = run_check(y, zb, zc, options=options)
    streamed = run_check(y, zb, zc, options={**options, "max_samples": 500}, batch=128)
    kept = streamed.details["kept_per_sample"]
    assert kept["samples"] == 500 and kept["of"] == 3000 and kept["bins"] == 1000
    for fe, fs in zip(exact.findings, streamed.findings):
        assert fs.metric == fe.metric
        if fe.metric == "log_loss":
            assert fs.value == pytest.approx(fe.value, rel=1e-9)          # exact sums over every sample
        else:
            assert fs.value == pytest.approx(fe.value, abs=2e-3)          # 1,000 bins
        width_e, width_s = fe.interval[1] - fe.interval[0], fs.interval[1] - fs.interval[0]
        assert 0.7 < width_s / width_e < 1.4                              # the kept sample's spread, scaled to N


def test_the_reservoir_keeps_every_sample_with_the_same_probability():
    n, size, runs = 50, 10, 400
    counts = np.zeros(n)
    y = np.arange(n) % 2
    z = np.stack([np.zeros(n), np.arange(n, dtype=np.float64)], axis=1).astype(np.float32)
    for seed in range(runs):
        config = build_config({"seed": seed, "checks": {"scores": {"enabled": True, "max_samples": 100}}})
        ctx = RunContext(config=config, models={}, class_names=("0", "1"), device=None)
        check = ScoresCheck({**config.check("scores"), "max_samples": size}, ctx)
        for i, start in enumerate(range(0, n, 7)):
            sl = slice(start, start + 7)
            check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                              scores={"baseline": torch.from_numpy(z[sl]), "candidate": torch.from_numpy(z[sl])}))
        kept = np.round(check.kept_sample()["baseline"][:, 1].astype(np.float64)).astype(int)   # log-odds = index
        assert len(set(kept.tolist())) == size
        counts[kept] += 1
    share = counts / runs
    assert np.abs(share - size / n).max() < 0.1          # sd 0.02 per sample at 400 runs
    assert sps.chisquare(counts).pvalue > 0.001


def test_point_decisions_compare_the_measured_values_without_resampling():
    y, zb, zc = world(300, 3, seed=53, temperature=2.0)
    result = run_check(y, zb, zc, options={"log_loss": {"max_increase": 0.0}, "ece": {"max": 1.0}},
                       decision={"mode": "point"})
    by_metric = {f.metric: f for f in result.findings}
    increase = log_loss(y, softmax(zc), labels=[0, 1, 2]) - log_loss(y, softmax(zb), labels=[0, 1, 2])
    assert by_metric["log_loss"].value == pytest.approx(increase, rel=1e-4)
    assert by_metric["log_loss"].status == ("fail" if increase > 0 else "pass")
    assert by_metric["log_loss"].decision == "point" and by_metric["log_loss"].interval is None
    assert by_metric["ece"].status == "pass"


def test_an_unreachable_false_positive_rate_predicts_every_sample_negative():
    y = np.array([0, 1, 0, 1])
    p1 = np.array([0.9, 0.8, 0.2, 0.1])
    t, how = choose_threshold({"choose": "fpr", "fpr": 0.1}, p1, y)
    assert t == math.inf and "every sample is predicted negative" in how


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_influence_is_the_derivative_of_weighted_average_precision(ties):
    rng = np.random.default_rng(71)
    n = 240
    y = rng.random(n) < 0.3
    s = rng.standard_normal(n) + y
    if ties:
        s = np.round(s, 1)
    ap, psi = sm.average_precision_influence(s, y)
    assert ap == pytest.approx(average_precision_score(y, s), rel=1e-12)
    assert abs(psi.mean()) < 1e-12
    eps = 1e-6
    for k in range(0, n, 23):                  # a mass eps moved onto sample k, through scikit-learn's weights
        w = np.ones(n)
        w[k] += eps * n
        moved = average_precision_score(y, s, sample_weight=w)
        assert (moved - ap) / eps == pytest.approx(psi[k], rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("k", [2, 4])
def test_pr_auc_standard_error_agrees_with_a_large_paired_bootstrap(k):
    y, zb, zc = world(1500, k, seed=72, signal=0.8, temperature=1.3)
    pb, pc = softmax(zb).astype(np.float64), softmax(zc).astype(np.float64)
    ib, ic = sm.pr_auc_influence(pb, y), sm.pr_auc_influence(pc, y)
    se = sm.contrast_se(ic.psi - ib.psi, None)
    rng = np.random.default_rng(9)
    diffs = []
    for _ in range(600):
        i = rng.integers(0, y.size, y.size)
        cols = [1] if k == 2 else range(k)
        ap = [np.mean([average_precision_score(y[i] == c, p[i, c]) for c in cols]) for p in (pb, pc)]
        diffs.append(ap[1] - ap[0])
    assert se == pytest.approx(np.std(diffs, ddof=1), rel=0.15)


# ------------------------------------------------------------------------------------------------ sharding


def shard_checks(y, zb, zc, *, options, batch, shards=2):
    """One ScoresCheck per shard, each fed the batches it owns (strided by batch, as gate.sharding does)."""
    config = build_config({"checks": {"scores": {"enabled": True, **options}}})
    k = zb.shape[1]
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    checks = []
    for shard in range(shards + 1):                       # the last one sees everything
        ctx = RunContext(config=config, models=models, class_names=tuple(str(i) for i in range(k)), device=None)
        checks.append(ScoresCheck(config.check("scores"), ctx))
    for i, start in enumerate(range(0, len(y), batch)):
        sl = slice(start, start + batch)
        step = Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                    scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])})
        checks[i % shards].update(step)
        checks[-1].update(step)
    return checks[:-1], checks[-1], config


def merged(states):
    """The contract of gate.sharding: rows.* concatenated and ordered by rows.index, every other key summed."""
    order = np.argsort(np.concatenate([s["rows.index"] for s in states]), kind="stable")
    out = {}
    for key in states[0]:
        parts = [np.asarray(s[key]) for s in states]
        out[key] = np.concatenate(parts)[order] if key.startswith("rows.") else np.sum(parts, axis=0)
    return out


@pytest.mark.parametrize("options", [
    {"log_loss": {"max_increase": 0.02}, "ece": {"max_increase": 0.02}, "roc_auc": {"max_drop": 0.01},
     "pr_auc": {"max_drop": 0.02}, "brier": {"max_relative_increase": 0.1}},
    {"log_loss": {"max_increase": 0.02}, "ece": {"max": 0.2}, "roc_auc": {"max_drop": 0.01}, "max_samples": 300},
], ids=["exact", "streamed"])
def test_two_shards_states_merged_compute_what_one_check_fed_everything_computes(options):
    y, zb, zc = world(900, 4, seed=61, temperature=1.7)
    shards, whole, config = shard_checks(y, zb, zc, options=options, batch=64)
    states = [c.state() for c in shards]
    for st in states:
        assert all(np.asarray(v).dtype in (np.int64, np.float64) for v in st.values())
        assert st["rows.index"].dtype == np.int64
    ctx = RunContext(config=config, models={}, class_names=whole.ctx.class_names, device=None)
    fresh = ScoresCheck(config.check("scores"), ctx)      # as `gate merge` builds it: no model, no update()
    fresh.load_state(merged(states))
    got, want = fresh.compute(), whole.compute()
    found = [(f.metric, f.value, f.interval, f.p_value, f.status) for f in got.findings]
    expected = [(f.metric, f.value, f.interval, f.p_value, f.status) for f in want.findings]
    if "max_samples" not in options:          # every sample's values, in the same order: exactly equal
        assert got.details == want.details and found == expected
        assert got.tables == want.tables and got.notes == want.notes
    else:                                     # the streamed sums add up in another order: equal to float rounding
        assert want.details["kept_per_sample"]["approximate"] and want.details["kept_per_sample"]["samples"] == 300
        assert close(got.details, want.details) and close(found, expected)
        assert got.notes == want.notes


def close(a, b) -> bool:
    """Equal, floats to 1e-9 relative, through dicts, lists and tuples."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True)
    return a == b


def test_a_merged_state_with_rows_missing_is_refused():
    y, zb, zc = world(300, 3, seed=62)
    shards, whole, config = shard_checks(y, zb, zc, options={}, batch=50)
    state = merged([c.state() for c in shards])
    state = {k: (v[:-1] if k.startswith("rows.") else v) for k, v in state.items()}
    ctx = RunContext(config=config, models={}, class_names=whole.ctx.class_names, device=None)
    with pytest.raises(ValueError, match="rows for 300 samples"):
        ScoresCheck(config.check("scores"), ctx).load_state(state)


def test_a_shard_without_batches_adds_nothing():
    y, zb, zc = world(100, 3, seed=63, temperature=1.5)
    shards, whole, config = shard_checks(y, zb, zc, options={"roc_auc": {"max_drop": 0.01}}, batch=64, shards=3)
    states = [c.state() for c in shards]
    assert states[2]["rows.index"].size == 0 and states[2].keys() == states[0].keys()
    ctx = RunContext(config=config, models={}, class_names=whole.ctx.class_names, device=None)
    fresh = ScoresCheck(config.check("scores"), ctx)
    fresh.load_state(merged(states))
    assert fresh.compute().details == whole.compute().details


@pytest.mark.parametrize("metric,rule", [("log_loss", "max_increase"), ("log_loss", "max_relative_increase"),
                                         ("log_loss", "max"), ("pr_auc", "max_drop"), ("pr_auc", "min"),
                                         ("pr_auc", "max_relative_drop")])
def test_each_hull_claims_exactly_where_its_interval_excludes_the_threshold(metric, rule):
    from gate.checks.scores import _Measure, compared_value, rule_evidence

    y, zb, zc = world(400, 2, seed=31, signal=0.8, temperature=1.8)
    pb, pc = softmax(zb).astype(np.float64), softmax(zc).astype(np.float64)
    if metric == "log_loss":
        ib, ic = (sm.mean_influence(-np.log(np.clip(p[np.arange(400), y], sm.EPS, 1))) for p in (pb, pc))
        m = _Measure(ib.value, ic.value, ib.psi, ic.psi, transform="log", skew=True)
    else:
        ib, ic = sm.pr_auc_influence(pb, y), sm.pr_auc_influence(pc, y)
        m = _Measure(ib.value, ic.value, ib.psi, ic.psi, transform="logit")
    value = compared_value(rule, m.baseline, m.candidate)
    lo, hi = rule_evidence(rule, m, threshold=value, confidence=0.95).interval
    assert lo < value < hi
    for threshold in np.linspace(lo - (hi - lo), hi + (hi - lo), 41):
        ev = rule_evidence(rule, m, threshold=float(threshold), confidence=0.95)
        assert ev.interval == pytest.approx((lo, hi))
        above, below = (ev.p_within, ev.p_beyond) if rule == "min" else (ev.p_beyond, ev.p_within)
        if abs(threshold - lo) > 1e-9 * (hi - lo) and abs(threshold - hi) > 1e-9 * (hi - lo):
            assert (above < 0.025) == (threshold < lo)              # "truly above the threshold" claimed
            assert (below < 0.025) == (threshold > hi)              # "truly below" claimed


@pytest.mark.parametrize("metric,rule", [("log_loss", "max_increase"), ("log_loss", "max_relative_increase"),
                                         ("log_loss", "max"), ("pr_auc", "max_drop"), ("pr_auc", "min"),
                                         ("brier", "max_increase")])
def test_the_tables_hull_interval_is_the_rules_interval_bit_for_bit(metric, rule):
    """The table's interval is computed without the p-values (hull_interval); it must be the interval the rule's
    evidence carries, whatever the threshold (which no interval depends on), exactly."""
    from gate.checks.scores import _Measure, hull_interval, rule_evidence

    y, zb, zc = world(300, 2, seed=32, signal=0.6, temperature=2.2)
    pb, pc = softmax(zb).astype(np.float64), softmax(zc).astype(np.float64)
    if metric == "pr_auc":
        ib, ic = sm.pr_auc_influence(pb, y), sm.pr_auc_influence(pc, y)
        m = _Measure(ib.value, ic.value, ib.psi, ic.psi, transform="logit")
    else:
        terms = sm.brier_terms if metric == "brier" else (lambda p, y: -np.log(p[np.arange(y.size), y]))
        ib, ic = sm.mean_influence(terms(pb, y)), sm.mean_influence(terms(pc, y))
        m = _Measure(ib.value, ic.value, ib.psi, ic.psi, transform="log", skew=True)
    for confidence in (0.9, 0.95, 0.99):
        fresh = _Measure(m.baseline, m.candidate, m.psi_baseline, m.psi_candidate, transform=m.transform,
                         skew=m.skew)                    # no spreads cached from the evidence below
        interval = hull_interval(rule, fresh, confidence=confidence)
        for threshold in (-0.05, 0.0, 0.01, 0.3):
            assert rule_evidence(rule, m, threshold=threshold, confidence=confidence).interval == interval


def test_stratum_groups_are_numpys_unique_inverse():
    rng = np.random.default_rng(40)
    for labels in (rng.integers(0, 7, 500), rng.choice([0, 3, 9, 40], 300), np.array([5]), np.zeros(10, np.int32),
                   rng.integers(-3, 3, 200), rng.standard_normal(50).round(1)):
        want = np.unique(labels, return_inverse=True)[1]
        got = sm.stratum_groups(labels)
        assert np.array_equal(got, want) and got.shape == labels.shape
        psi = rng.standard_normal(labels.size)
        if labels.size < 2:
            assert math.isnan(sm.contrast_se(psi, labels))
            continue
        assert sm.contrast_se(psi, labels) == pytest.approx(
            np.sqrt(sum(np.var(psi[labels == v], ddof=1) * (labels == v).sum() for v in np.unique(labels)
                        if (labels == v).sum() > 1)) / labels.size, rel=1e-12)


def test_spreads_primed_at_once_are_each_measures_own_standard_errors_and_skewness():
    """prime_spreads computes every measure's spreads in one (rows, n) array: each measure gets its own paired
    difference's standard error and skewness and its log-ratio test's standard error (scipy / numpy's ddof=1 as the
    oracle), exactly the values the rules would compute one by one."""
    from gate.checks import scores as sc

    rng = np.random.default_rng(71)
    n = 333

    def measures():
        out = []
        for scale, skew in ((1.0, 2.0), (0.3, -1.0), (2.0, 0.0)):
            base = rng.standard_normal(n) * scale
            pb, pc = base + 0.1 * rng.standard_normal(n), base + 0.2 * rng.gamma(1.0 + abs(skew), size=n) * np.sign(skew or 1)
            out.append(sc._Measure(0.4 * scale, 0.5 * scale, pb - pb.mean(), pc - pc.mean(), transform="log", skew=True))
        out.append(sc._Measure(0.7, 0.6, rng.standard_normal(n), rng.standard_normal(n), transform="logit"))
        return out

    state = rng.bit_generator.state
    primed = measures()
    rng.bit_generator.state = state
    lazy = measures()
    sc.prime_spreads(primed)
    for m, other in zip(primed, lazy):
        d = m.psi_candidate - m.psi_baseline
        assert m.spreads[("se", "difference", False)] == pytest.approx(np.std(d, ddof=1) / math.sqrt(n), rel=1e-12)
        f = 1.0 / np.array([m.baseline, m.candidate]) if m.transform == "log" else \
            1.0 / (np.array([m.baseline, m.candidate]) * (1.0 - np.array([m.baseline, m.candidate])))
        t = m.psi_candidate * f[1] - m.psi_baseline * f[0]
        assert m.spreads[("transformed", False)] == pytest.approx(np.std(t, ddof=1) / math.sqrt(n), rel=1e-12)
        if m.skew:
            assert m.spreads[("skew", "max_increase")] == pytest.approx(sps.skew(d), rel=1e-10)
        else:
            assert ("skew", "max_increase") not in m.spreads
        # the rules' own one-by-one computations give the same numbers
        assert sc.contrast_spread("max_increase", other, stratified=False) == m.spreads[("se", "difference", False)]
        assert sc._transformed_parts("max_increase", other)[0] == m.spreads[("transformed", False)] * m.scale
        if m.skew:
            assert sc._skew_parts("max_increase", other)[2] == sc._skew_parts("max_increase", m)[2]
