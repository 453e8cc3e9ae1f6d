"""The multilabel check fed Steps directly: every metric against scikit-learn, batches, state round trip, the
per-label families against a direct Holm, the analytic rules against the classification check on each label's
binary problem, the bootstrap against weighted scikit-learn, and bad options."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from gate import stats
from gate.checks.base import RunContext, Step
from gate.checks.classification import PerClassCheck
from gate.checks.multilabel import MultiLabelCheck, bootstrap, codes_of
from gate.config import build_config
from gate.errors import ConfigError
from gate.metrics import PairedCounts

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")


def world(n: int, labels: int, *, seed: int, flip: float = 0.1, broken: int | None = None, broken_share: float = 0.5):
    """Labels (N, L), baseline and candidate probabilities: each model wrong on a label with probability `flip`;
    the candidate also wrong on label `broken` for `broken_share` of its positives."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.15, 0.5, labels)).astype(np.int64)

    def scores(wrong: np.ndarray) -> np.ndarray:
        right = np.where(y == 1, rng.uniform(0.5, 1.0, y.shape), rng.uniform(0.0, 0.5, y.shape))
        return np.where(wrong, 1.0 - right, right).astype(np.float32)

    sb = scores(rng.random((n, labels)) < flip)
    wrong_c = rng.random((n, labels)) < flip
    if broken is not None:
        wrong_c[:, broken] |= (y[:, broken] == 1) & (rng.random(n) < broken_share)
    return y, sb, scores(wrong_c)


def make(config=None, labels: int = 5, names=None):
    config = config or build_config({})
    ctx = RunContext(config=config, models={}, class_names=tuple(names or (f"l{i}" for i in range(labels))),
                     device=None)
    check = MultiLabelCheck(config.check("multilabel"), ctx)
    check.setup()
    return check


def feed(check, y, sb, sc, *, batch: int, batches=None):
    for i, off in enumerate(range(0, len(y), batch)):
        if batches is not None and i not in batches:
            continue
        sl = slice(off, off + batch)
        step = Step(index=i, offset=off, inputs=None, labels=y[sl], scores={"baseline": sb[sl], "candidate": sc[sl]},
                    preds={"baseline": sb[sl] >= 0.5, "candidate": sc[sl] >= 0.5})
        step.task = "multi_label"
        check.update(step)
    return check


def holm_by_hand(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p, kind="stable")
    m = p.size
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bh_by_hand(p: np.ndarray) -> np.ndarray:
    m = p.size
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, min(1.0, p[i] * m / (rank + 1)))
        out[i] = running
    return out


# ------------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("batch", [10_000, 37, 1])
def test_every_metric_matches_scikit_learn_whatever_the_batches(batch):
    y, sb, sc = world(600, 6, seed=1, broken=2)
    check = feed(make(labels=6), y, sb, sc, batch=batch)
    m = check.metrics()
    for role, s in (("baseline", sb), ("candidate", sc)):
        pred = (s >= 0.5).astype(int)
        p, r, f, sup = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
        got = m[role]["per_label"]
        np.testing.assert_allclose([e["precision"] for e in got], p, atol=1e-12)
        np.testing.assert_allclose([e["recall"] for e in got], r, atol=1e-12)
        np.testing.assert_allclose([e["f1"] for e in got], f, atol=1e-12)
        assert [e["support"] for e in got] == sup.tolist()
        for avg in ("micro", "macro"):
            p, r, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
            assert m[role][f"{avg}_precision"] == pytest.approx(p, abs=1e-12)
            assert m[role][f"{avg}_recall"] == pytest.approx(r, abs=1e-12)
            assert m[role][f"{avg}_f1"] == pytest.approx(f, abs=1e-12)
        assert m[role]["subset_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert m[role]["hamming_loss"] == pytest.approx(hamming_loss(y, pred), abs=1e-12)
    pb, pc = sb >= 0.5, sc >= 0.5
    neg = ((pb == (y == 1)) & (pc != (y == 1))).sum(axis=0)
    assert [e["negative_flips"] for e in m["comparison"]["per_label"]] == neg.tolist()
    exact_b, exact_c = np.all(pb == (y == 1), axis=1), np.all(pc == (y == 1), axis=1)
    assert m["comparison"]["subset_negative_flips"] == int(np.sum(exact_b & ~exact_c))


def test_one_batch_and_many_give_the_same_result():
    y, sb, sc = world(500, 4, seed=2, broken=1, broken_share=0.2)
    one = feed(make(labels=4), y, sb, sc, batch=500).compute()
    many = feed(make(labels=4), y, sb, sc, batch=7).compute()
    assert one.findings == many.findings and one.tables == many.tables


def test_a_label_nobody_has_or_predicts_scores_zero_as_scikit_learn_does():
    y, sb, sc = world(200, 3, seed=3)
    y[:, 1] = 0
    sb[:, 1] = 0.1
    sc[:, 1] = 0.2
    m = feed(make(labels=3), y, sb, sc, batch=50).metrics()
    pred = (sc >= 0.5).astype(int)
    assert m["candidate"]["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["candidate"]["per_label"][1]["f1"] == 0.0


def test_per_label_thresholds_by_name_decide_the_predictions():
    y, sb, sc = world(300, 3, seed=4)
    config = build_config({"checks": {"multilabel": {"threshold": {"b": 0.8, "c": 0.3}}}})
    check = feed(make(config, names=("a", "b", "c")), y, sb, sc, batch=64)
    thr = np.array([0.5, 0.8, 0.3])
    m = check.metrics()
    p, r, f, _ = precision_recall_fscore_support(y, (sc >= thr).astype(int), average=None, zero_division=0)
    np.testing.assert_allclose([e["f1"] for e in m["candidate"]["per_label"]], f, atol=1e-12)
    config = build_config({"checks": {"multilabel": {"threshold": 0.7}}})
    m = feed(make(config, labels=3), y, sb, sc, batch=64).metrics()
    assert m["baseline"]["hamming_loss"] == pytest.approx(hamming_loss(y, (sb >= 0.7).astype(int)))


# ------------------------------------------------------------------------------------------------- state


def test_state_round_trip_of_strided_shards_equals_the_single_run():
    y, sb, sc = world(700, 9, seed=5, broken=4, broken_share=0.3)     # 9 labels: two packed words per row
    single = feed(make(labels=9), y, sb, sc, batch=32)
    states = [feed(make(labels=9), y, sb, sc, batch=32, batches=set(range(i, 22, 3))).state() for i in range(3)]
    for s in states:
        assert all(v.dtype == np.int64 for v in s.values()) and set(s) == {"rows.index", "rows.codes", "samples"}
    index = np.concatenate([s["rows.index"] for s in states])
    order = np.argsort(index)
    merged = {key: np.concatenate([s[key] for s in states])[order] for key in ("rows.index", "rows.codes")}
    merged["samples"] = sum(s["samples"] for s in states)
    loaded = make(labels=9)
    loaded.load_state(merged)
    np.testing.assert_array_equal(loaded.codes(), single.codes())
    assert loaded.compute().findings == single.compute().findings
    assert loaded.metrics() == single.metrics()


def test_rows_added_up_instead_of_concatenated_are_refused():
    # Two shards of equal size summed key by key: the shapes agree, so only the sample count can tell.
    y, sb, sc = world(256, 3, seed=16)
    states = [feed(make(labels=3), y, sb, sc, batch=64, batches={i, i + 2}).state() for i in range(2)]
    summed = {key: states[0][key] + states[1][key] for key in states[0]}
    with pytest.raises(ValueError, match="256 samples were evaluated but 128 rows arrived"):
        make(labels=3).load_state(summed)


def test_a_state_that_is_no_code_table_is_refused():
    check = make(labels=3)
    with pytest.raises(ValueError, match="rows.codes"):
        check.load_state({"rows.index": np.arange(2), "rows.codes": np.zeros((2, 3), dtype=np.int64)})
    bad = np.full((2, 1), 0x0909090909, dtype=np.int64)
    with pytest.raises(ValueError, match="no \\(label"):
        check.load_state({"rows.index": np.arange(2), "rows.codes": bad})


# ------------------------------------------------------------------------------------------------- rules


def test_per_label_recall_family_is_holm_adjusted_tango_on_the_raw_samples():
    y, sb, sc = world(800, 6, seed=6, broken=3, broken_share=0.25)
    config = build_config({"checks": {"multilabel": {"precision": {"max_drop": None}}}})
    result = feed(make(config, labels=6), y, sb, sc, batch=100).compute()
    pb, pc, pos = sb >= 0.5, sc >= 0.5, y == 1
    raw = []
    for k in range(6):
        b = int(np.sum(pos[:, k] & pb[:, k] & ~pc[:, k]))
        c = int(np.sum(pos[:, k] & ~pb[:, k] & pc[:, k]))
        raw.append(float(stats.paired_difference_p_values(b, c, int(pos[:, k].sum()), bound=0.1)[0]))
    got = [next(f for f in result.findings if f.metric == f"recall[l{k}]").p_value for k in range(6)]
    np.testing.assert_allclose(got, holm_by_hand(np.array(raw)), rtol=1e-9)
    assert next(f for f in result.findings if f.metric == "recall[l3]").status == "fail"
    assert "l3" in result.details["regressed_labels"]


def test_flip_rate_family_is_exact_binomial_with_holm_or_bh():
    y, sb, sc = world(400, 5, seed=7, broken=0, broken_share=0.6)
    pb, pc, t = sb >= 0.5, sc >= 0.5, y == 1
    neg = ((pb == t) & (pc != t)).sum(axis=0)
    raw = np.array([sps.binomtest(int(k), 400, 0.1, alternative="greater").pvalue for k in neg])
    for method, oracle in (("holm", holm_by_hand), ("bh", bh_by_hand)):
        config = build_config({"decision": {"multiple_comparisons": method},
                               "checks": {"multilabel": {"per_label_negative_flip_rate": {"max": 0.1}}}})
        result = feed(make(config, labels=5), y, sb, sc, batch=64).compute()
        got = [next(f for f in result.findings if f.metric == f"negative_flip_rate[l{k}]").p_value for k in range(5)]
        np.testing.assert_allclose(got, oracle(raw), rtol=1e-9)


def test_per_label_analytic_rules_equal_per_class_on_each_labels_binary_problem():
    y, sb, sc = world(600, 3, seed=8, broken=1, broken_share=0.15)
    ml = build_config({"decision": {"multiple_comparisons": "none"},
                       "checks": {"multilabel": {"recall": {"max_drop": 0.05, "min": 0.6},
                                                 "precision": {"max_drop": 0.05}}}})
    result = feed(make(ml, labels=3), y, sb, sc, batch=100).compute()
    pc_config = build_config({"decision": {"multiple_comparisons": "none"},
                              "checks": {"per_class": {"classes": [1], "recall": {"max_drop": 0.05, "min": 0.6},
                                                       "precision": {"max_drop": 0.05}}}})
    for k in range(3):
        counts = PairedCounts(2)
        counts.update(y[:, k], (sb[:, k] >= 0.5).astype(int), (sc[:, k] >= 0.5).astype(int))
        ctx = RunContext(config=pc_config, models={}, class_names=("no", "yes"), device=None, counts=counts)
        binary = PerClassCheck(pc_config.check("per_class"), ctx).compute()
        for metric, rule in (("recall", "max_drop"), ("recall", "min"), ("precision", "max_drop")):
            mine = next(f for f in result.findings if f.metric == f"{metric}[l{k}]" and f.rule == rule)
            theirs = next(f for f in binary.findings if f.metric == f"{metric}[yes]" and f.rule == rule)
            assert (mine.status, mine.value) == (theirs.status, pytest.approx(theirs.value))
            assert mine.p_value == pytest.approx(theirs.p_value, rel=1e-12)
            assert mine.interval == pytest.approx(theirs.interval)


def test_subset_accuracy_rules_are_tango_and_exact_binomial():
    y, sb, sc = world(500, 4, seed=9, broken=2, broken_share=0.1)
    config = build_config({"checks": {"multilabel": {"subset_accuracy": {"max_drop": 0.02, "min": 0.5},
                                                     "micro_f1": {"max_drop": None}, "macro_f1": {"max_drop": None},
                                                     "hamming_loss": {"max_increase": None}}}})
    result = feed(make(config, labels=4), y, sb, sc, batch=100).compute()
    eb = np.all((sb >= 0.5) == (y == 1), axis=1)
    ec = np.all((sc >= 0.5) == (y == 1), axis=1)
    b, c = int(np.sum(eb & ~ec)), int(np.sum(~eb & ec))
    raw = np.array([float(stats.paired_difference_p_values(b, c, 500, bound=0.02)[0]),
                    sps.binomtest(int(ec.sum()), 500, 0.5, alternative="less").pvalue])
    drop = next(f for f in result.findings if f.metric == "subset_accuracy" and f.rule == "max_drop")
    floor = next(f for f in result.findings if f.metric == "subset_accuracy" and f.rule == "min")
    assert drop.value == pytest.approx((b - c) / 500)
    assert floor.candidate == pytest.approx(accuracy_score(y, (sc >= 0.5).astype(int)))
    # the averaged rules are one Holm family (here the two subset-accuracy rules)
    np.testing.assert_allclose([drop.p_value, floor.p_value], holm_by_hand(raw), rtol=1e-9)


def test_bootstrap_replicates_are_weighted_scikit_learn_on_the_resampled_samples():
    y, sb, sc = world(300, 4, seed=10, broken=0, broken_share=0.3)
    codes = codes_of(y, sb >= 0.5, sc >= 0.5)
    boot = bootstrap(codes, resamples=5, seed=3, chunk=2)
    rows, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    weights = stats.bootstrap_weights(counts, resamples=5, seed=3)
    yr, pbr, pcr = (rows & 4) > 0, (rows & 2) > 0, (rows & 1) > 0
    for r in range(5):
        w = weights[r]
        for role, pred in (("baseline", pbr), ("candidate", pcr)):
            fig = boot.figures[role]
            assert fig["micro_f1"][r] == pytest.approx(f1_score(yr, pred, average="micro", sample_weight=w))
            assert fig["macro_f1"][r] == pytest.approx(
                f1_score(yr, pred, average="macro", sample_weight=w, zero_division=0))
            assert fig["hamming_loss"][r] == pytest.approx(hamming_loss(yr, pred, sample_weight=w))
            assert fig["subset_accuracy"][r] == pytest.approx(accuracy_score(yr, pred, sample_weight=w))


def test_a_real_regression_on_one_label_fails_the_averages_and_names_the_label():
    y, sb, sc = world(2000, 5, seed=11, broken=4, broken_share=0.8)
    result = feed(make(labels=5), y, sb, sc, batch=256).compute()
    assert result.status == "fail"
    failed = {(f.metric, f.where) for f in result.findings if f.status == "fail"}
    assert ("recall[l4]", "l4") in failed and ("hamming_loss", None) in failed
    assert {f.where for f in result.findings if f.status == "fail" and f.where} == {"l4"}
    assert result.details["state_bytes"] == 2000 * 5


def test_equally_good_candidates_are_rarely_failed_by_the_default_rules():
    # Each rule fails a candidate of equal quality with probability <= alpha (2.5%); benchmarks/multilabel_coverage.py
    # measures the whole check's rate. Here: 40 worlds, independent errors (many discordant pairs).
    fails = sum(feed(make(labels=4), *world(300, 4, seed=100 + s), batch=128).compute().status == "fail"
                for s in range(40))
    assert fails <= 4


def test_identical_models_on_few_samples_are_not_proven_within():
    y, sb, _ = world(60, 4, seed=13)
    config = build_config({"checks": {"multilabel": {"micro_f1": {"max_drop": 0.01}, "hamming_loss": {
        "max_increase": 0.002}}}})
    result = feed(make(config, labels=4), y, sb, sb.copy(), batch=16).compute()
    for metric in ("micro_f1", "hamming_loss"):
        f = next(f for f in result.findings if f.metric == metric)
        assert f.status == "warn" and f.inconclusive, f.reason
        assert f.interval[1] > f.threshold


def test_few_flips_widen_the_bootstrap_to_tangos_width():
    y, sb, _ = world(400, 5, seed=17)
    sc = sb.copy()
    for i, k in ((3, 0), (50, 2), (51, 2), (200, 4)):            # 3 negative flips, 1 positive, in 4 samples
        sc[i, k] = 1.0 - sc[i, k]
    config = build_config({"checks": {"multilabel": {"hamming_loss": {"max_increase": 0.004}}}})
    result = feed(make(config, labels=5), y, sb, sc, batch=100).compute()
    f = next(f for f in result.findings if f.metric == "hamming_loss")
    t = (sb >= 0.5) == (y == 1)
    c = (sc >= 0.5) == (y == 1)
    neg, pos = int(np.sum(t & ~c)), int(np.sum(~t & c))
    assert f.value == pytest.approx((neg - pos) / 2000)
    low, high = stats.paired_difference_interval(neg, pos, 2000, confidence=0.95)
    # the bootstrap's own interval is narrower: it is widened about the estimate to Tango's width over the pairs
    boot = bootstrap(codes_of(y, sb >= 0.5, sc >= 0.5), resamples=2000, seed=0).figures
    raw_lo, raw_hi = stats.percentile_interval(boot["candidate"]["hamming_loss"] - boot["baseline"]["hamming_loss"],
                                               confidence=0.95)
    assert float(raw_hi - raw_lo) < 0.9 * float(high - low)
    assert f.interval[1] - f.interval[0] == pytest.approx(float(high - low), rel=0.02)
    assert f.status == "warn" and f.inconclusive


def test_point_mode_compares_values_without_statistics():
    y, sb, sc = world(300, 3, seed=14, broken=0, broken_share=0.5)
    config = build_config({"decision": {"mode": "point"}})
    result = feed(make(config, labels=3), y, sb, sc, batch=300).compute()
    ham = next(f for f in result.findings if f.metric == "hamming_loss")
    assert ham.decision == "point" and ham.p_value is None
    assert ham.status == ("fail" if ham.value > 0.01 else "pass")
    assert result.details["bootstrap_resamples"] == 0


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("options, message", [
    ({"threshold": {"nope": 0.3}}, "checks.multilabel.threshold: unknown label 'nope'"),
    ({"labels": ["l0", "zz"]}, "checks.multilabel.labels: unknown label 'zz'"),
    ({"labels": [7]}, "checks.multilabel.labels: unknown label 7"),
])
def test_options_naming_unknown_labels_are_config_errors(options, message):
    config = build_config({"checks": {"multilabel": options}}, source="gate.yaml")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make(config, labels=3)


@pytest.mark.parametrize("options", [{"threshold": 1.5}, {"threshold": "high"}, {"hamming_loss": {"max_drop": 0.1}},
                                     {"micro_f1": {"max_increase": 0.1}}, {"per_label_negative_flip_rate": {"min": 0}}])
def test_malformed_options_are_refused_by_the_schema(options):
    with pytest.raises(ConfigError, match="checks.multilabel"):
        build_config({"checks": {"multilabel": options}})


def test_labels_of_the_wrong_width_are_a_data_error():
    from gate.errors import DataError

    check = make(labels=3)
    y, sb, sc = world(10, 4, seed=15)
    with pytest.raises(DataError, match="expected \\(10, 3\\) for 3 labels"):
        feed(check, y, sb, sc, batch=10)


def test_no_samples_is_never_a_pass():
    result = make(labels=3).compute()
    assert result.status == "fail" and math.isfinite(result.details["num_samples"])


def test_bootstrap_pattern_counts_are_each_labels_codes_in_each_resample():
    y, sb, sc = world(300, 4, seed=40, broken=1, broken_share=0.3)
    codes = codes_of(y, sb >= 0.5, sc >= 0.5)
    boot = bootstrap(codes, resamples=6, seed=5, chunk=4)
    rows, counts = np.unique(codes, axis=0, return_counts=True)
    weights = stats.bootstrap_weights(counts, resamples=6, seed=5)
    assert boot.patterns.shape == (7, 6, 4)
    for r in range(6):
        resampled = np.repeat(rows, weights[r], axis=0)               # (N, L) codes of the resample
        for label in range(4):
            by_hand = np.bincount(resampled[:, label], minlength=8)[1:]
            np.testing.assert_array_equal(boot.patterns[:, r, label], by_hand)


def test_per_label_f1_is_not_proven_within_from_one_lost_positive(monkeypatch):
    # label 0: 20 positives, the candidate loses one, both models otherwise right everywhere; the percentile
    # bootstrap "proves" the F1 drop (1/39) within 0.1, the per-label rule (bootstrap-t and score test) does not.
    # Oracles: the label's pattern counts by hand (code 6, of the label and predicted by the baseline only: 1 sample;
    # code 7, predicted by both: 19), whose score test decides here and whose inverted interval is the report's
    # (both ends: the bootstraps' are narrower); and the same rule on the label's own 2-class table through
    # per_class, drawn by its own bootstrap, which gives the same interval and status.
    import gate.checks.classification as cl

    n, labels = 100, 3
    y = np.zeros((n, labels), dtype=np.int64)
    y[:20, 0] = 1
    y[40:80, 1] = 1
    y[::3, 2] = 1
    sb = np.where(y == 1, 0.9, 0.1).astype(np.float32)
    sc = sb.copy()
    sc[0, 0] = 0.1
    config = build_config({"checks": {"multilabel": {"f1": {"max_drop": 0.1}}}})
    monkeypatch.setattr(cl, "STUDENTIZED", "off")
    old = feed(make(config, labels=labels), y, sb, sc, batch=32).compute()
    monkeypatch.undo()
    new = feed(make(config, labels=labels), y, sb, sc, batch=32).compute()
    f_old = next(f for f in old.findings if f.metric == "f1[l0]")
    f_new = next(f for f in new.findings if f.metric == "f1[l0]")
    assert f_old.value == pytest.approx(1 / 39) == f_new.value
    assert f_old.status == "pass"
    assert f_new.status == "warn" and f_new.inconclusive
    per_class_config = build_config({"checks": {"per_class": {"recall": {}, "precision": {}, "f1": {"max_drop": 0.1}}}})
    counts = PairedCounts(2)
    counts.update(y[:, 0], (sb[:, 0] >= 0.5).astype(np.int64), (sc[:, 0] >= 0.5).astype(np.int64))
    ctx = RunContext(config=per_class_config, models={}, class_names=("no", "yes"), device=None, counts=counts)
    oracle = next(f for f in PerClassCheck(per_class_config.check("per_class"), ctx).compute().findings
                  if f.metric == "f1[yes]")
    assert oracle.status == f_new.status
    from gate.metrics import class_score_interval, class_score_test

    by_hand = np.array([[0, 0, 0, 0, 0, 1, 19]], dtype=np.float64).T
    alpha = stats.one_sided_alpha(0.95)
    low, high = class_score_interval("f1", "max_drop", by_hand, alpha=alpha - stats.tolerance(alpha))
    assert f_new.interval == pytest.approx((float(low[0]), float(high[0])), abs=1e-12)
    assert oracle.interval == pytest.approx(f_new.interval, abs=1e-12)
    assert f_new.interval[0] < 0.1 < f_new.interval[1]            # undecided: 0.1 inside
    z = float(class_score_test("f1", "max_drop", by_hand, bound=0.1)[0])
    assert sps.norm.cdf(z) > alpha                                   # the score test withholds "within"
    # "beyond": the largest of the three tests' p, then Holm-adjusted (never below the raw p): at least the score's
    assert f_new.p_value >= sps.norm.sf(z) - 1e-12 and oracle.p_value >= sps.norm.sf(z) - 1e-12


def test_per_label_score_intervals_are_computed_once_per_metric_and_rule_and_change_nothing(monkeypatch):
    import gate.checks.classification as cl

    y, sb, sc = world(600, 5, seed=3, broken=0, broken_share=0.3)
    config = build_config({"checks": {"multilabel": {"f1": {"max_drop": 0.1, "min": 0.5},
                                                     "recall": {"max_relative_drop": 0.2}}},
                           "decision": {"bootstrap_resamples": 400}})
    from tests.unit.test_classification import _counted_score_interval

    real = cl.class_score_interval
    calls = _counted_score_interval(monkeypatch, cl)
    cached = feed(make(config, labels=5), y, sb, sc, batch=64).compute()
    assert sorted(calls) == [("f1", "max_drop", 5), ("f1", "min", 5), ("recall", "max_relative_drop", 5)]
    import gate.checks.multilabel as ml

    monkeypatch.setattr(ml, "score_intervals_for", lambda groups, patterns_of, *, confidence: cl.ScoreIntervals(
        members={}, patterns={}, confidence=confidence))
    calls.clear()
    uncached = feed(make(config, labels=5), y, sb, sc, batch=64).compute()
    assert sorted(calls) == [("f1", "max_drop", 5), ("f1", "min", 5), ("recall", "max_relative_drop", 5)]
    assert repr(cached.findings) == repr(uncached.findings)
    # a label's looked-up interval is, to the bit, what class_score_interval gives on its own patterns
    tables = []
    for k in range(5):
        table = PairedCounts(2)
        table.update(y[:, k], (sb[:, k] >= 0.5).astype(np.int64), (sc[:, k] >= 0.5).astype(np.int64))
        tables.append(table)
    patterns = ml.label_patterns(tables)
    calls.clear()
    intervals = cl.score_intervals_for({("f1", "min", 0.5): [0, 2, 4], ("f1", "min", 0.6): [1, 2]},
                                       lambda ks: patterns[:, ks], confidence=0.95)
    low, high = intervals.interval("f1", "min", np.array([1, 2]))
    alone = real("f1", "min", patterns[:, [1, 2]], alpha=cl._claim_level(0.95))
    np.testing.assert_array_equal(low, alone[0])
    np.testing.assert_array_equal(high, alone[1])
    assert calls == [("f1", "min", 4)]                          # once, for the union of both groups
