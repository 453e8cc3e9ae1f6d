"""The classification checks on hand-built paired counts: each rule's evidence against an independent
computation on the raw samples, the p column's meaning, the power note, and per-class decisions at scale."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gate import stats
from gate.checks.base import RunContext
from gate.checks.classification import AccuracyCheck, FlipsCheck, PerClassCheck, run_replicates
from gate.config import build_config
from gate.metrics import PairedCounts, model_metrics
from gate.verdict import decision_settings


def counts_of(y: np.ndarray, pb: np.ndarray, pc: np.ndarray, k: int) -> PairedCounts:
    counts = PairedCounts(k)
    counts.update(y, pb, pc)
    return counts


def run(check, y, pb, pc, k, config=None):
    config = config or build_config({})
    ctx = RunContext(config=config, models={}, class_names=tuple(f"c{i}" for i in range(k)), device=None,
                     counts=counts_of(y, pb, pc, k))
    return check(config.check(check.name), ctx).compute(), ctx


def paired_world(n: int, k: int, *, accuracy: float, p10: float, p01: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    kind = rng.choice(4, size=n, p=[accuracy - p10, p10, p01, 1 - accuracy - p01])
    base_ok, cand_ok = kind <= 1, (kind == 0) | (kind == 2)
    pb = np.where(base_ok, y, (y + 1 + rng.integers(0, k - 1, n)) % k)
    pc = np.where(cand_ok, y, (y + 1 + rng.integers(0, k - 1, n)) % k)
    return y, pb, pc


def holm_by_hand(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p, kind="stable")
    m = p.size
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_accuracy_max_drop_uses_tango_on_the_raw_discordant_pairs():
    y, pb, pc = paired_world(800, 5, accuracy=0.85, p10=0.04, p01=0.015, seed=1)
    result, _ = run(AccuracyCheck, y, pb, pc, 5)
    f = next(f for f in result.findings if f.metric == "accuracy" and f.rule == "max_drop")
    b = int(np.sum((pb == y) & (pc != y)))
    c = int(np.sum((pb != y) & (pc == y)))
    beyond, within = stats.paired_difference_p_values(b, c, len(y), bound=0.01)
    assert f.value == pytest.approx((b - c) / len(y))
    assert f.p_value == pytest.approx(float(beyond))           # the p column: one-sided, beyond the threshold
    assert result.details["mcnemar_two_sided_p"] == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue)
    assert result.details["worse_at_all_p"] == pytest.approx(
        sps.binomtest(b, b + c, 0.5, alternative="greater").pvalue)


def test_a_much_better_candidate_shows_no_tiny_p_beside_its_pass():
    # Regression: the p column showed McNemar's two-sided 1.7e-18 next to "pass" for a candidate 6 points better.
    y, pb, pc = paired_world(2000, 4, accuracy=0.8, p10=0.01, p01=0.07, seed=2)
    result, _ = run(AccuracyCheck, y, pb, pc, 4)
    f = next(f for f in result.findings if f.metric == "accuracy" and f.rule == "max_drop")
    assert f.status == "pass" and f.p_value > 0.999
    assert result.details["mcnemar_two_sided_p"] < 1e-10      # still there, labelled, in the details


def test_identical_models_on_few_samples_are_not_proven_within():
    # Regression: with no discordant pair the bootstrap interval was [0, 0], a pass for any max_drop.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 100)
    pred = np.where(rng.random(100) < 0.9, y, (y + 1) % 3)
    result, _ = run(AccuracyCheck, y, pred, pred, 3)
    f = next(f for f in result.findings if f.metric == "accuracy" and f.rule == "max_drop")
    assert f.status == "warn" and f.inconclusive and f.interval[1] > 0.01
    f1 = next(f for f in result.findings if f.metric == "macro_f1")
    assert f1.status == "warn" and f1.inconclusive             # the bootstrap saw no spread: nothing is proven
    assert result.power and result.power[0].samples == 100 and result.power[0].samples_needed > 100


def test_f1_replicates_are_widened_to_tangos_width():
    from gate.checks.classification import calibrate, tango_calibration

    y, pb, pc = paired_world(300, 4, accuracy=0.85, p10=0.02, p01=0.01, seed=11)
    result, ctx = run(AccuracyCheck, y, pb, pc, 4)
    reps = ctx.replicates
    b = int(np.sum((pb == y) & (pc != y)))
    c = int(np.sum((pb != y) & (pc == y)))
    low, high = stats.paired_difference_interval(b, c, 300, confidence=0.95)
    boot_lo, boot_hi = stats.percentile_interval(reps.baseline["accuracy"] - reps.candidate["accuracy"],
                                                 confidence=0.95)
    scale = tango_calibration(reps, {"low": low, "high": high}, confidence=0.95)
    assert scale == pytest.approx(max(1.0, float(high - low) / float(boot_hi - boot_lo)))
    widened = calibrate(np.array([0.0, 0.01, 0.03]), 0.01, 2.0)
    np.testing.assert_allclose(widened, [-0.01, 0.01, 0.05])
    assert np.isnan(calibrate(np.array([0.0, 0.01]), 0.01, math.inf)).all()


def test_no_power_note_on_a_decisive_failure():
    y, pb, pc = paired_world(300, 3, accuracy=0.9, p10=0.15, p01=0.0, seed=4)
    result, _ = run(AccuracyCheck, y, pb, pc, 3)
    acc = next(f for f in result.findings if f.metric == "accuracy" and f.rule == "max_drop")
    assert acc.status == "fail" and not acc.inconclusive
    assert result.power == ()


def test_per_class_family_adjustment_matches_holm_by_hand():
    k = 5
    y, pb, pc = paired_world(1500, k, accuracy=0.8, p10=0.08, p01=0.01, seed=6)
    config = build_config({"checks": {"per_class": {"precision": {"max_drop": None}}}})
    result, _ = run(PerClassCheck, y, pb, pc, k, config)
    raw = []
    for cls in range(k):
        m = y == cls
        b = int(np.sum(m & (pb == y) & (pc != y)))
        c = int(np.sum(m & (pb != y) & (pc == y)))
        raw.append(float(stats.paired_difference_p_values(b, c, int(m.sum()), bound=0.1)[0]))
    expected = holm_by_hand(np.array(raw))
    got = [next(f for f in result.findings if f.where == f"c{cls}").p_value for cls in range(k)]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize("k", [300, 1000])
def test_a_wholly_broken_class_fails_per_class_itself(k):
    # Regression: with a bootstrap Holm family, more than ~250 classes could never fail.
    y, pb, pc = paired_world(40 * k, k, accuracy=0.9, p10=0.02, p01=0.02, seed=7)
    pc = np.where(y == 3, (y + 1) % k, pc)                    # class c3: the candidate never gets it right
    result, ctx = run(PerClassCheck, y, pb, pc, k)
    assert result.status == "fail"
    failed = {f.metric for f in result.findings if f.status == "fail"}
    # c3's recall fails; c4's precision may too (the candidate predicts every c3 sample as c4, a real drop);
    # nothing else, though 2K comparisons are made.
    assert "recall[c3]" in failed and failed <= {"recall[c3]", "precision[c4]"}
    assert ctx.replicates is None                              # the default per-class rules need no resampling


def test_rates_use_exact_binomial_tests():
    y, pb, pc = paired_world(400, 4, accuracy=0.9, p10=0.06, p01=0.01, seed=8)
    result, _ = run(FlipsCheck, y, pb, pc, 4)
    neg = int(np.sum((pb == y) & (pc != y)))
    f = next(f for f in result.findings if f.metric == "negative_flip_rate")
    assert f.p_value == pytest.approx(sps.binomtest(neg, 400, 0.05, alternative="greater").pvalue)
    ci = sps.binomtest(neg, 400).proportion_ci(confidence_level=0.95, method="exact")
    assert f.interval == pytest.approx((ci.low, ci.high))


def test_replicates_belong_to_the_run_and_use_the_configured_count():
    y, pb, pc = paired_world(500, 3, accuracy=0.85, p10=0.03, p01=0.02, seed=9)
    config = build_config({"decision": {"bootstrap_resamples": 300}})
    result, ctx = run(AccuracyCheck, y, pb, pc, 3, config)
    reps = ctx.replicates
    assert reps is not None and reps.resamples == 300 and reps.baseline["macro_f1"].shape == (300,)
    again = run_replicates(ctx, decision_settings(config, {}))
    assert again is reps                                       # drawn once, shared
    assert result.details["bootstrap_resamples"] == 300


def test_precision_replicates_are_nan_when_a_class_is_never_predicted():
    counts = counts_of(np.array([0, 1, 1, 2]), np.array([0, 1, 1, 1]), np.array([0, 1, 1, 1]), 3)
    cells = counts.cells()
    m = model_metrics(cells, cells.pb, cells.counts[None, :], empty=np.nan)
    assert math.isnan(m["precision"][0, 2])                    # class 2 is never predicted
    assert model_metrics(cells, cells.pb, cells.counts[None, :])["precision"][0, 2] == 0.0   # sklearn's point value


def test_precision_test_uses_the_null_variance_and_a_continuity_correction():
    from gate.metrics import class_counts, precision_correction, precision_drop_se

    y, pb, pc = paired_world(600, 3, accuracy=0.85, p10=0.06, p01=0.02, seed=12)
    result, _ = run(PerClassCheck, y, pb, pc, 3, build_config({"decision": {"multiple_comparisons": "none"}}))
    cells = counts_of(y, pb, pc, 3).cells()
    cc = class_counts(cells)
    for k in range(3):
        prec_b = np.sum((pb == k) & (y == k)) / np.sum(pb == k)      # by hand from the raw samples
        prec_c = np.sum((pc == k) & (y == k)) / np.sum(pc == k)
        se0 = precision_drop_se(cells, cc, bound=0.1)[k]
        corr = precision_correction(cc)[k]
        assert corr == pytest.approx(1 / (min(np.sum(pb == k), np.sum(pc == k)) + 2))
        f = next(f for f in result.findings if f.metric == f"precision[c{k}]")
        assert f.value == pytest.approx(prec_b - prec_c)
        assert f.p_value == pytest.approx(sps.norm.sf((prec_b - prec_c - 0.1 - corr) / se0))


def test_precision_drop_se_matches_the_bootstrap_and_the_point_values_match_sklearn():
    from sklearn.metrics import precision_score

    from gate.metrics import class_counts, precision_drop_se

    y, pb, pc = paired_world(3000, 4, accuracy=0.8, p10=0.05, p01=0.03, seed=13)
    cells = counts_of(y, pb, pc, 4).cells()
    se = precision_drop_se(cells, class_counts(cells))
    rng = np.random.default_rng(0)
    drops = []

    def precision(yy: np.ndarray, pp: np.ndarray) -> np.ndarray:
        return np.bincount(pp[yy == pp], minlength=4) / np.bincount(pp, minlength=4)

    for _ in range(2000):                                     # the sample bootstrap, by hand
        i = rng.integers(0, y.size, y.size)
        drops.append(precision(y[i], pb[i]) - precision(y[i], pc[i]))
    np.testing.assert_allclose(se, np.std(drops, axis=0), rtol=0.12)
    result, _ = run(PerClassCheck, y, pb, pc, 4)
    want = precision_score(y, pb, average=None, zero_division=0) - precision_score(y, pc, average=None, zero_division=0)
    got = [next(f for f in result.findings if f.metric == f"precision[c{k}]").value for k in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_identical_models_prove_macro_f1_within_only_when_tango_would():
    # No discordant sample at all: the bootstrap has no spread; the F1 rule is judged through Tango instead.
    from gate.checks.classification import f1_sensitivity

    rng = np.random.default_rng(14)
    for n, want in ((900, "pass"), (60, "warn")):
        y = np.repeat(np.arange(3), n // 3)
        pred = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
        result, _ = run(AccuracyCheck, y, pred, pred, 3)
        f = next(f for f in result.findings if f.metric == "macro_f1")
        figures = {"support": np.bincount(y, minlength=3).astype(float), "_predicted": np.bincount(pred, minlength=3),
                   "f1": np.array([2 * np.sum((y == k) & (pred == k)) / (np.sum(y == k) + np.sum(pred == k))
                                   for k in range(3)])}
        s = f1_sensitivity("macro_f1", figures)
        _, within = stats.paired_difference_p_values(0, 0, n, bound=0.02 / s)
        assert f.status == want and (float(within) < 0.025) == (want == "pass")
        assert f.interval[0] < 0 < f.interval[1]


def test_f1_sensitivity_by_finite_differences():
    from gate.checks.classification import f1_sensitivity
    from gate.metrics import model_metrics

    y, pb, pc = paired_world(2000, 5, accuracy=0.85, p10=0.0, p01=0.0, seed=15)
    counts = counts_of(y, pb, pb, 5)
    cells = counts.cells()
    m = model_metrics(cells, cells.pb, cells.counts[None, :])
    figures = {key: val[0] for key, val in m.items()}
    figures["_predicted"] = np.bincount(pb, minlength=5)
    worst = {"macro_f1": 0.0, "weighted_f1": 0.0}
    for i in np.flatnonzero(pb == y)[:300]:                    # flip one right sample to each wrong class
        for j in range(5):
            if j == y[i]:
                continue
            flipped = pb.copy()
            flipped[i] = j
            c2 = counts_of(y, flipped, flipped, 5).cells()
            m2 = model_metrics(c2, c2.pb, c2.counts[None, :])
            for key in worst:
                worst[key] = max(worst[key], abs(float(m2[key][0] - m[key][0])) * len(y))
    for key, moved in worst.items():
        assert moved <= f1_sensitivity(key, figures) * 1.02, (key, moved)      # first order, 2% slack
        assert moved >= 0.5 * f1_sensitivity(key, figures)                     # and not absurdly loose


def test_a_bootstrap_family_too_large_for_its_resamples_says_so():
    k = 300
    y, pb, pc = paired_world(20 * k, k, accuracy=0.9, p10=0.02, p01=0.02, seed=16)
    config = build_config({"checks": {"per_class": {"f1": {"max_drop": 0.2}}},
                           "decision": {"bootstrap_resamples": 500}})
    result, ctx = run(PerClassCheck, y, pb, pc, k, config)
    family = 3 * k
    assert ctx.replicates is not None and ctx.replicates.per_class
    note = next(n for n in result.notes if n.startswith("resolution cap"))
    assert f"{k} of {family}" in note
    assert str(stats.min_resamples(family, confidence=0.95) + 1) in note


def test_chunked_sparse_bootstrap_equals_the_dense_metrics_on_the_same_weights():
    from gate.metrics import bootstrap_replicates

    y, pb, pc = paired_world(700, 6, accuracy=0.8, p10=0.05, p01=0.03, seed=17)
    cells = counts_of(y, pb, pc, 6).cells()
    reps = bootstrap_replicates(cells, resamples=130, seed=3, per_class=True, chunk=17)
    w = stats.bootstrap_weights(cells.counts, resamples=130, seed=3)
    for role, pred in (("baseline", cells.pb), ("candidate", cells.pc)):
        dense = model_metrics(cells, pred, w, empty=np.nan)
        for key in ("accuracy", "macro_f1", "weighted_f1", "precision", "recall", "f1"):
            np.testing.assert_allclose(reps[role][key], dense[key], rtol=1e-12, equal_nan=True)


# ------------------------------------------------------------------ per-class bootstrap rules: bootstrap-t, score


def _one_lost_sample_world():
    """4 classes of 20 samples; class 0: the candidate loses one sample (to class 1), both right on the rest."""
    y = np.repeat(np.arange(4), 20)
    pb = y.copy()
    pc = y.copy()
    pc[0] = 1
    return y, pb, pc


def test_percentile_bootstrap_proves_within_from_one_lost_sample_but_the_per_class_rule_does_not(monkeypatch):
    # F1 of class 0 drops by 1/39 on one sample: the percentile bootstrap never resamples more than a few copies
    # of it, so it "proves" the drop within 0.1; the score test's null puts about 4 lost samples there.
    import gate.checks.classification as cl

    y, pb, pc = _one_lost_sample_world()
    config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, "f1": {"max_drop": 0.1}}}})
    monkeypatch.setattr(cl, "STUDENTIZED", "off")
    old, _ = run(PerClassCheck, y, pb, pc, 4, config)
    monkeypatch.undo()
    new, ctx = run(PerClassCheck, y, pb, pc, 4, config)
    f_old = next(f for f in old.findings if f.metric == "f1[c0]")
    f_new = next(f for f in new.findings if f.metric == "f1[c0]")
    assert f_old.value == pytest.approx(1 / 39) == f_new.value
    assert f_old.status == "pass"
    assert f_new.status == "warn"                                # inconclusive: neither within nor beyond
    # the evidence: each p-value the largest of the percentile's, the bootstrap-t's and the score test's
    reps = ctx.replicates
    col = reps.baseline["f1"][:, :1] - reps.candidate["f1"][:, :1]
    patterns = cl.class_patterns(ctx.counts.cells())[:, :1]
    ev = cl.class_bootstrap_evidence("f1", "max_drop", 0.1, col, patterns, reps.patterns[:, :, :1], confidence=0.95)
    assert ev["method"] == "paired bootstrap, percentile and bootstrap-t and score test"
    percentile = stats.bootstrap_p_value(col, bound=0.1, alternative="less")
    assert float(percentile[0]) < 0.025                              # what the old rule claimed from
    z = float(cl.class_score_test("f1", "max_drop", patterns, bound=0.1)[0])
    assert float(ev["within"][0]) == pytest.approx(float(sps.norm.cdf(z)))  # the score test binds here
    assert float(ev["within"][0]) > 0.025


def test_bootstrap_t_pseudo_replicates_are_the_studentized_resamples_by_hand():
    import gate.checks.classification as cl
    from gate.metrics import bootstrap_replicates, class_patterns, class_rule_se

    y, pb, pc = paired_world(600, 4, accuracy=0.85, p10=0.06, p01=0.02, seed=31)
    cells = counts_of(y, pb, pc, 4).cells()
    reps = bootstrap_replicates(cells, resamples=50, seed=9, per_class=True)
    pseudo = cl.studentized_replicates("f1", "max_drop", class_patterns(cells), reps["patterns"]["counts"])
    w = stats.bootstrap_weights(cells.counts, resamples=50, seed=9)
    b, c = model_metrics(cells, cells.pb, cells.counts[None, :]), model_metrics(cells, cells.pc, cells.counts[None, :])
    est = b["f1"][0] - c["f1"][0]
    _, se = class_rule_se("f1", "max_drop", class_patterns(cells))
    for r in (0, 17, 49):
        rows = np.repeat(np.arange(cells.counts.size), w[r])
        sample = counts_of(cells.y[rows], cells.pb[rows], cells.pc[rows], 4).cells()
        theta = (model_metrics(sample, sample.pb, sample.counts[None, :])["f1"][0]
                 - model_metrics(sample, sample.pc, sample.counts[None, :])["f1"][0])
        _, se_r = class_rule_se("f1", "max_drop", class_patterns(sample))
        np.testing.assert_allclose(pseudo[r], est - (theta - est) / se_r * se, rtol=1e-10)


def test_large_classes_keep_their_power_and_a_broken_class_still_fails():
    # 400 samples a class, the candidate as good as the baseline except class 2, which loses 40% of its samples
    # to class 3 (whose F1 then drops too: 160 false positives)
    y, pb, pc = paired_world(2000, 5, accuracy=0.9, p10=0.03, p01=0.03, seed=32)
    lose = (y == 2) & (pc == y) & (np.random.default_rng(3).random(y.size) < 0.4)
    pc = np.where(lose, 3, pc)
    config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, "f1": {"max_drop": 0.1}}}})
    result, _ = run(PerClassCheck, y, pb, pc, 5, config)
    status = {f.where: f.status for f in result.findings if f.metric.startswith("f1[")}
    assert status == {"c0": "pass", "c1": "pass", "c2": "fail", "c3": "fail", "c4": "pass"}


@pytest.mark.parametrize("metric, rule, threshold", [
    ("f1", "max_drop", 0.1), ("f1", "max_relative_drop", 0.2), ("f1", "min", 0.5),
    ("precision", "max_relative_drop", 0.2), ("recall", "max_relative_drop", 0.2)])
def test_every_per_class_bootstrap_rule_on_tiny_and_absent_classes_gives_finite_or_no_evidence(metric, rule,
                                                                                               threshold):
    # class 3 has 2 samples (often absent from a resample), class 4 none: no warning (pytest -W error), p-values
    # in [0, 1] or the class skipped, intervals ordered, in the rule's range, and saying what the status says:
    # a pass exactly when the bad end is inside the threshold, a proven "beyond" only with the good end past it
    rng = np.random.default_rng(33)
    y = np.concatenate([rng.integers(0, 3, 120), [3, 3]])
    pb = np.where(rng.random(y.size) < 0.85, y, (y + 1) % 4)
    pc = np.where(rng.random(y.size) < 0.8, y, (y + 1) % 4)
    config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, metric: {rule: threshold}}}})
    result, _ = run(PerClassCheck, y, pb, pc, 5, config)
    found = [f for f in result.findings if f.metric.startswith(f"{metric}[")]
    assert {f.where for f in found} == {"c0", "c1", "c2", "c3"}
    for f in found:
        assert f.p_value is None or 0.0 <= f.p_value <= 1.0
        if f.interval is not None and all(map(math.isfinite, f.interval)):
            assert f.interval[0] <= f.interval[1]
        if f.interval is None or not np.isfinite(f.value) or f.rule != rule:
            continue
        low, high = f.interval
        bottom, top = {"min": (0.0, 1.0), "max_drop": (-1.0, 1.0), "max_relative_drop": (-math.inf, 1.0)}[rule]
        assert bottom <= low <= high <= top, f
        proven_beyond = f.status == "fail" and " is beyond " in f.reason
        assert _interval_agrees(rule, threshold, low, high, within=f.status == "pass",
                                beyond=proven_beyond) or (not proven_beyond and f.status != "pass"
                                                          and _interval_agrees(rule, threshold, low, high,
                                                                               within=False, beyond=True)), f


# ------------------------------------------------- per-class bootstrap rules: the interval inverts the claims


def _interval_agrees(rule: str, threshold: float, low: float, high: float, *, within: bool, beyond: bool) -> bool:
    """Whether raw claims at `threshold` are exactly "the threshold lies outside the interval": "within" iff the
    bad end is inside, "beyond" iff the good end is past it (the tests' float tolerance at the threshold, where a
    bound equal to it up to rounding may go either way)."""
    tol = 2 * stats.tolerance(threshold)
    bad_end, good_end = (low, high) if rule == "min" else (high, low)
    sign = -1.0 if rule == "min" else 1.0                 # a drop is bad above the threshold, a value below it
    ok = True
    for claimed, end, inside in ((within, bad_end, True), (beyond, good_end, False)):
        gap = sign * (threshold - end) if inside else sign * (end - threshold)
        if abs(gap) > tol:
            ok &= claimed == (gap > 0)
    return ok


def _bootstrap_worlds():
    yield "one lost sample", (*_one_lost_sample_world(), 4)
    for seed, n, k in ((41, 240, 4), (42, 600, 6), (43, 150, 3)):
        yield f"seed {seed}", (*paired_world(n, k, accuracy=0.85, p10=0.06, p01=0.03, seed=seed), k)


@pytest.mark.parametrize("metric, rule", [("f1", "max_drop"), ("f1", "min"), ("f1", "max_relative_drop"),
                                          ("precision", "max_relative_drop"), ("recall", "max_relative_drop")])
def test_per_class_bootstrap_intervals_say_what_their_claims_say_at_every_threshold(metric, rule):
    # the interval does not depend on the threshold; every threshold on a grid is claimed within exactly when the
    # interval's bad end is inside it, beyond (unadjusted) exactly when its good end is past it
    import gate.checks.classification as cl

    alpha = stats.one_sided_alpha(0.95)
    grid = np.linspace(0.6, 1.0, 9) if rule == "min" else np.linspace(-0.2, 0.3, 11)
    checked = 0
    for name, (y, pb, pc, k) in _bootstrap_worlds():
        config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, metric: {rule: 0.1}}},
                               "decision": {"bootstrap_resamples": 400}})
        _, ctx = run(PerClassCheck, y, pb, pc, k, config)
        reps = ctx.replicates
        col = (reps.candidate[metric] if rule == "min"
               else cl._drop_reps(rule, reps.baseline[metric], reps.candidate[metric]))
        patterns = cl.class_patterns(ctx.counts.cells())
        first = None
        for thr in grid:
            ev = cl.class_bootstrap_evidence(metric, rule, float(thr), col, patterns, reps.patterns,
                                             confidence=0.95)
            if first is None:
                first = (ev["low"], ev["high"])
            np.testing.assert_array_equal(ev["low"], first[0])
            np.testing.assert_array_equal(ev["high"], first[1])
            for j in range(k):
                if not np.isfinite(ev["within"][j]):
                    continue
                lo, hi = float(ev["low"][j]), float(ev["high"][j])
                if rule == "min":
                    assert 0.0 <= lo <= hi <= 1.0, (name, j, lo, hi)
                assert _interval_agrees(rule, float(thr), lo, hi, within=stats.significant(ev["within"][j], alpha),
                                        beyond=stats.significant(ev["beyond"][j], alpha)), (name, j, thr, lo, hi, ev)
                checked += 1
    assert checked > 50


def test_the_one_lost_sample_interval_contains_the_threshold_it_cannot_decide():
    y, pb, pc = _one_lost_sample_world()
    for rule, thr in (("max_drop", 0.1), ("min", 0.9)):
        config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, "f1": {rule: thr}}}})
        result, _ = run(PerClassCheck, y, pb, pc, 4, config)
        f = next(f for f in result.findings if f.metric == "f1[c0]")
        assert f.status == "warn" and f.inconclusive
        low, high = f.interval
        assert low < thr < high                                    # was [-0.0064, 0.091] / [0.909, 1.006]
        assert -1.0 <= low and high <= 1.0
        assert f.required == (high if rule == "max_drop" else low)
        if rule == "min":
            assert 0.0 <= low and high <= 1.0


def test_the_score_interval_ends_are_where_the_score_p_is_alpha_by_brentq():
    from scipy.optimize import brentq

    import gate.checks.classification as cl
    from gate.metrics import class_rule_influence, class_score_interval

    rng = np.random.default_rng(44)
    patterns = np.concatenate([np.array([[0, 0, 0, 0, 0, 1, 19]]).T, rng.integers(3, 40, (7, 12))], axis=1)
    patterns = patterns.astype(np.float64)
    alpha = 0.025
    roots = 0
    for metric in ("f1", "recall", "precision"):
        for rule in ("max_drop", "min", "max_relative_drop"):
            low, high = class_score_interval(metric, rule, patterns, alpha=alpha)
            value = class_rule_influence(metric, rule, patterns)[0]
            top, bottom = 1.0, {"min": 0.0, "max_drop": -1.0, "max_relative_drop": -50.0}[rule]
            for j in range(patterns.shape[1]):
                one = patterns[:, j:j + 1]

                def p_upper(b, one=one, metric=metric, rule=rule):    # p of "value < b", as class_score_p_values
                    return float(sps.norm.cdf(cl.class_score_test(metric, rule, one, bound=b)[0])) - alpha

                def p_lower(b, one=one, metric=metric, rule=rule):    # p of "value > b"
                    return float(sps.norm.sf(cl.class_score_test(metric, rule, one, bound=b)[0])) - alpha

                v = float(value[j])
                if p_upper(top) < 0:
                    assert high[j] == pytest.approx(brentq(p_upper, v, top, xtol=1e-13), abs=1e-9)
                    roots += 1
                else:
                    assert high[j] == pytest.approx(top)
                if p_lower(bottom) < 0:
                    assert low[j] == pytest.approx(brentq(p_lower, bottom, v, xtol=1e-13), abs=1e-9)
                    roots += 1
                else:
                    assert low[j] <= bottom
    assert roots > 100


def test_z_of_the_score_test_falls_as_the_bound_rises():
    # the inversion's premise, on classes of a few dozen samples, wherever |z| < 4 (Fieller's form can rise again
    # far out, and for a class of a few samples: class_score_interval scans for the outermost crossing there)
    from gate.metrics import class_score_test

    rng = np.random.default_rng(45)
    patterns = rng.integers(2, 40, (7, 300)).astype(np.float64)
    for metric in ("f1", "recall", "precision"):
        for rule, grid in (("max_drop", np.linspace(-1, 1, 201)), ("min", np.linspace(0, 1, 101)),
                           ("max_relative_drop", np.linspace(-3, 0.9, 201))):
            z = np.stack([class_score_test(metric, rule, patterns, bound=np.full(300, b)) for b in grid])
            near = np.minimum(np.abs(z[1:]), np.abs(z[:-1])) < 4.0      # where a claim's level can lie
            assert np.all((np.diff(z, axis=0) <= 1e-9) | ~near), (metric, rule)


def test_min_rules_floor_their_se_at_half_a_candidate_sample_even_when_the_baseline_never_predicts_the_class():
    from gate.metrics import class_rule_influence, class_rule_se

    # codes 1..7: the candidate alone predicts the class (codes 1, 5), the baseline never (no code 2, 3, 6, 7)
    patterns = np.array([[3, 0, 0, 5, 4, 0, 0]], dtype=np.float64).T
    value, se = class_rule_se("precision", "min", patterns)
    _, _, half = class_rule_influence("precision", "min", patterns)
    assert float(half[0]) == pytest.approx(0.5 / 7)                  # 7 candidate predictions
    assert float(se[0]) >= float(half[0])
    assert float(value[0]) == pytest.approx(4 / 7)


_draw = stats.iter_bootstrap_weights        # the sampler itself, before any test wraps it


def _computed(monkeypatch, cores: int, config, y, pb, pc, k,
              kinds=(AccuracyCheck, PerClassCheck, FlipsCheck)):
    """compute_checks over accuracy, per_class, flips with `cores` cores seen; the results and the names of the
    threads that drew the bootstrap."""
    from gate.checks import classification
    from gate.runner import compute_checks

    import threading

    monkeypatch.setattr(classification, "_cores", lambda: cores)
    drawn_on: list[str] = []

    def recording(*args, **kwargs):
        for block in _draw(*args, **kwargs):
            drawn_on.append(threading.current_thread().name)
            yield block

    monkeypatch.setattr(stats, "iter_bootstrap_weights", recording)
    ctx = RunContext(config=config, models={}, class_names=tuple(f"c{i}" for i in range(k)), device=None,
                     counts=counts_of(y, pb, pc, k))
    checks = [cls(config.check(cls.name), ctx) for cls in kinds]
    return compute_checks(ctx, checks), drawn_on


@pytest.mark.parametrize("per_class_f1", [False, True])
def test_the_bootstrap_drawn_alongside_the_other_checks_gives_the_serial_results(monkeypatch, per_class_f1):
    raw = {"checks": {"accuracy": {"macro_f1": {"max_drop": 0.02}, "weighted_f1": {"max_drop": 0.02}},
                      "per_class": {"recall": {"max_drop": 0.1}, **({"f1": {"max_drop": 0.1}} if per_class_f1 else {})},
                      "flips": {"negative_flip_rate": {"max": 0.05}}}}
    config = build_config(raw)
    y, pb, pc = paired_world(700, 4, accuracy=0.8, p10=0.05, p01=0.02, seed=3)
    serial, serial_threads = _computed(monkeypatch, 1, config, y, pb, pc, 4)
    overlapped, overlapped_threads = _computed(monkeypatch, 2, config, y, pb, pc, 4)
    # one draw a run (one block here), on the caller's thread with one core, on the bootstrap's own with two
    assert len(serial_threads) == len(overlapped_threads) == 1
    assert not serial_threads[0].startswith("gate-bootstrap")
    assert overlapped_threads[0].startswith("gate-bootstrap")
    assert [r.name for r in overlapped] == ["accuracy", "per_class", "flips"]      # the checks' order, kept
    for a, b in zip(serial, overlapped):
        assert (a.status, a.summary, a.tables) == (b.status, b.summary, b.tables)
        assert repr(a.findings) == repr(b.findings)          # every value, interval, p and reason
    f1 = [f for f in overlapped[0].findings if f.metric == "macro_f1"]
    assert f1 and f1[0].interval is not None and f1[0].interval[0] < f1[0].interval[1]   # decided by a bootstrap


def test_the_checks_that_time_the_models_come_first_with_no_bootstrap_thread_beside_them(monkeypatch):
    import threading

    from gate.checks.base import Check
    from gate.checks.latency import LatencyCheck
    from gate.checks.onnx import OnnxCheck
    from gate.report.model import CheckResult

    assert LatencyCheck.times_models and OnnxCheck.times_models
    alive: list[list[str]] = []

    class Timing(Check):
        """Stands where the latency check times the models: which threads run beside it."""

        name = "latency"
        times_models = True

        def compute(self) -> CheckResult:
            alive.append([t.name for t in threading.enumerate()])
            return CheckResult(name=self.name, status="pass", summary="timed")

    config = build_config({"checks": {"accuracy": {"macro_f1": {"max_drop": 0.02}},
                                      "per_class": {"recall": {"max_drop": 0.1}}}})
    y, pb, pc = paired_world(700, 4, accuracy=0.8, p10=0.05, p01=0.02, seed=5)
    results, drawn_on = _computed(monkeypatch, 2, config, y, pb, pc, 4,
                                  kinds=(AccuracyCheck, PerClassCheck, Timing, FlipsCheck))
    assert [r.name for r in results] == ["accuracy", "per_class", "latency", "flips"]     # the checks' order, kept
    assert len(alive) == 1 and not any(name.startswith("gate-bootstrap") for name in alive[0])
    assert drawn_on and drawn_on[0].startswith("gate-bootstrap")        # still drawn on its own thread, afterwards


def test_no_bootstrap_is_started_when_no_check_draws_one(monkeypatch):
    # no accuracy check (it shows F1 intervals), per-class rules that are all analytic
    config = build_config({"checks": {"accuracy": {"enabled": False}, "per_class": {"recall": {"max_drop": 0.1}}}})
    y, pb, pc = paired_world(300, 3, accuracy=0.8, p10=0.05, p01=0.02, seed=4)
    results, threads = _computed(monkeypatch, 2, config, y, pb, pc, 3, kinds=(PerClassCheck, FlipsCheck))
    assert threads == []
    assert [r.name for r in results] == ["per_class", "flips"] and results[0].findings


def test_blocks_drawn_ahead_are_the_blocks_drawn_in_place_and_a_failure_reaches_the_reader(monkeypatch):
    from gate import metrics
    from gate.checks.classification import DrawnAhead, discard_prefetch, prefetch_replicates

    monkeypatch.setattr(metrics, "BOOTSTRAP_BLOCK", 64 * 30)       # 30-odd cells: blocks of ~64 resamples
    y, pb, pc = paired_world(500, 5, accuracy=0.7, p10=0.08, p01=0.05, seed=5)
    config = build_config({"checks": {"per_class": {"f1": {"max_drop": 0.1}}}})
    settings = decision_settings(config, {})
    ctx = RunContext(config=config, models={}, class_names=tuple("abcde"), device=None,
                     counts=counts_of(y, pb, pc, 5))
    cells = ctx.counts.cells()
    rows = metrics.bootstrap_block_rows(cells, settings.resamples)
    assert settings.resamples // rows >= 10 > DrawnAhead.DEPTH          # many more blocks than the queue holds
    in_place = metrics.bootstrap_replicates(cells, resamples=settings.resamples, seed=settings.seed, per_class=True)
    monkeypatch.setattr("gate.checks.classification._cores", lambda: 2)
    prefetch_replicates(ctx, settings)
    ahead = ctx.replicates
    assert isinstance(ahead, DrawnAhead)
    reps = run_replicates(ctx, settings)
    assert not ahead._thread.is_alive()
    for role in ("baseline", "candidate"):
        for key, value in in_place[role].items():
            np.testing.assert_array_equal(getattr(reps, role)[key], value)
    np.testing.assert_array_equal(reps.patterns, in_place["patterns"]["counts"])

    # drawn but never read: the thread stops although its queue is full
    ctx.replicates = None
    prefetch_replicates(ctx, settings)
    ahead = ctx.replicates
    discard_prefetch(ctx)
    assert ctx.replicates is None and not ahead._thread.is_alive()

    # a failure while drawing is raised where the replicates are read
    def failing(*args, **kwargs):
        raise MemoryError("no room for the resamples")
        yield                                   # a generator, as the sampler is

    monkeypatch.setattr(stats, "iter_bootstrap_weights", failing)
    prefetch_replicates(ctx, settings)
    with pytest.raises(MemoryError, match="no room"):
        run_replicates(ctx, settings)


def _counted_score_interval(monkeypatch, module):
    """Wrap `module.class_score_interval` to record the (metric, rule, classes) of every call."""
    calls: list[tuple[str, str, int]] = []
    real = module.class_score_interval

    def counted(metric, rule, patterns, *, alpha):
        calls.append((metric, rule, patterns.shape[-1]))
        return real(metric, rule, patterns, alpha=alpha)

    monkeypatch.setattr(module, "class_score_interval", counted)
    return calls


def test_per_class_score_intervals_are_computed_once_per_metric_and_rule_across_override_thresholds(monkeypatch):
    # the score interval does not depend on the threshold: override sections with other thresholds look it up
    # rather than recompute it, and the report is the same as when every threshold group computes its own
    import gate.checks.classification as cl

    y, pb, pc = paired_world(900, 9, accuracy=0.85, p10=0.06, p01=0.03, seed=7)
    config = build_config({"checks": {"per_class": {
        "recall": {}, "precision": {"max_relative_drop": 0.3}, "f1": {"max_drop": 0.1, "min": 0.5},
        "overrides": [{"classes": ["c0", "c1"], "f1": {"max_drop": 0.2, "min": 0.6}},
                      {"classes": ["c2"], "f1": {"max_drop": 0.05}, "precision": {"max_relative_drop": 0.1}}]}},
        "decision": {"bootstrap_resamples": 400}})
    calls = _counted_score_interval(monkeypatch, cl)
    cached, _ = run(PerClassCheck, y, pb, pc, 9, config)
    assert sorted(calls) == [("f1", "max_drop", 9), ("f1", "min", 9), ("precision", "max_relative_drop", 9)]
    calls.clear()
    monkeypatch.setattr(cl, "score_intervals_for", lambda groups, patterns_of, *, confidence: cl.ScoreIntervals(
        members={}, patterns={}, confidence=confidence))             # no cache: each group computes its own
    uncached, _ = run(PerClassCheck, y, pb, pc, 9, config)
    assert sorted(calls) == [("f1", "max_drop", 1), ("f1", "max_drop", 2), ("f1", "max_drop", 6),
                             ("f1", "min", 2), ("f1", "min", 7),
                             ("precision", "max_relative_drop", 1), ("precision", "max_relative_drop", 8)]
    assert repr(cached.findings) == repr(uncached.findings)
    assert len(cached.findings) == 9 * 5 and any(f.metric.startswith("f1[") and f.interval for f in cached.findings)


def test_the_score_interval_scan_finds_the_outermost_of_several_crossings_inside_one_scan_cell():
    # a path unclaimed on [0, 0.38] and [0.3975, 0.399], claimed elsewhere: three crossings inside the 33-point
    # scan's cell [0.375, 0.40625]. Bisection from that cell alone reaches 0.38 (its midpoint 0.3906 is claimed);
    # the finer scan of the cell finds the unclaimed 0.3984 and so the outermost crossing, 0.399
    from gate import metrics

    def claimed(t):
        t = np.asarray(t)
        return ~((t <= 0.38) | ((t >= 0.3975) & (t <= 0.399)))

    end, edge = metrics._outer_end(lambda t: t, claimed, (1,), grid=metrics.SCORE_INTERVAL_GRID)
    assert not edge[0]
    assert end[0] == pytest.approx(0.399, abs=1e-12)
    assert claimed(end)[0]                       # the bracket's claimed side: never claims more than the test


def test_relative_drop_score_intervals_of_tiny_classes_are_the_outermost_unclaimed_bound_of_a_dense_scan():
    # classes of a few samples, where Fieller's z is not monotone in the bound: each end of the interval is the
    # outermost bound a 513-point scan of the same path leaves unclaimed (to within the scan's step), never inside
    from gate.metrics import class_rule_influence, class_score_interval, class_score_test

    rng = np.random.default_rng(46)
    patterns = rng.poisson(rng.choice([0.2, 0.5, 1.0, 2.0, 4.0], size=(7, 400))).astype(np.float64)
    patterns[6] += rng.integers(0, 4, 400)
    patterns = np.concatenate([patterns, np.array([[0, 0, 3, 7, 1, 2, 1], [0, 0, 3, 3, 1, 0, 2]],
                                                  dtype=np.float64).T], axis=1)   # z crosses twice (searched)
    alpha = 0.025
    for metric in ("precision", "recall", "f1"):
        low, high = class_score_interval(metric, "max_relative_drop", patterns, alpha=alpha)
        value = class_rule_influence(metric, "max_relative_drop", patterns)[0]
        ok = np.isfinite(value)
        v = np.where(ok, value, 0.0)
        q_v = 1.0 / (1.0 - np.minimum(v, 1.0 - 1e-12))
        ts = np.linspace(0.0, 1.0, 513)
        highest, lowest = v.copy(), v.copy()
        for t in ts:
            up = v + t * (1.0 - v)
            down = 1.0 - 1.0 / (q_v * (1e-12 / q_v) ** t)
            z_up = class_score_test(metric, "max_relative_drop", patterns, bound=up)
            z_down = class_score_test(metric, "max_relative_drop", patterns, bound=down)
            highest = np.where(sps.norm.cdf(z_up) >= alpha, up, highest)
            lowest = np.where(sps.norm.sf(z_down) >= alpha, down, lowest)
        step_up = (1.0 - v) / 512
        assert np.all(high[ok] >= highest[ok] - 1e-12), metric
        assert np.all(high[ok] <= highest[ok] + step_up[ok] + 1e-12), metric
        edge = ok & ~np.isfinite(low)
        assert np.all(lowest[edge] <= -1e11), metric                  # -inf only where the scan's end is unclaimed
        fin = ok & np.isfinite(low)
        assert np.all(low[fin] <= lowest[fin] + 1e-9 * (1.0 + np.abs(lowest[fin]))), metric
