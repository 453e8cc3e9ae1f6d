"""gate.metrics against scikit-learn on the same predictions; one batch vs many; merge by addition."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

import gate.metrics as gm
from gate import stats
from gate.metrics import PairedCounts, metrics_report, point_metrics


def _preds(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pb = np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n))
    pc = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    return y, pb, pc


def _counts(y, pb, pc, k, batch):
    counts = PairedCounts(k)
    for i in range(0, len(y), batch):
        counts.update(y[i : i + batch], pb[i : i + batch], pc[i : i + batch])
    return counts


@pytest.mark.parametrize("k,n,seed", [(2, 50, 0), (5, 400, 1), (10, 1000, 2)])
def test_model_metrics_match_sklearn(k, n, seed):
    y, pb, pc = _preds(n, k, seed)
    m = point_metrics(_counts(y, pb, pc, k, batch=n))
    for role, pred in (("baseline", pb), ("candidate", pc)):
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
        np.testing.assert_allclose(m[role]["precision"], p, atol=1e-12)
        np.testing.assert_allclose(m[role]["recall"], r, atol=1e-12)
        np.testing.assert_allclose(m[role]["f1"], f, atol=1e-12)
        np.testing.assert_allclose(m[role]["support"], s)
        assert m[role]["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        present = np.unique(y)
        assert m[role]["macro_f1"] == pytest.approx(
            f1_score(y, pred, labels=present, average="macro", zero_division=0), abs=1e-12
        )
        assert m[role]["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0), abs=1e-12)


def test_class_missing_from_data_and_never_predicted():
    # class 2 never occurs and is never predicted: it must not drag macro F1 down (scikit-learn over present labels)
    y = np.array([0, 0, 1, 1, 1])
    pb = np.array([0, 1, 1, 1, 0])
    m = point_metrics(_counts(y, pb, pb, 3, batch=5))
    assert m["baseline"]["macro_f1"] == pytest.approx(f1_score(y, pb, average="macro"))
    assert m["baseline"]["recall"][2] == 0.0


def test_flips_and_agreement_against_direct_counts():
    y, pb, pc = _preds(700, 4, 3)
    c = point_metrics(_counts(y, pb, pc, 4, batch=64))["comparison"]
    neg = (pb == y) & (pc != y)
    pos = (pb != y) & (pc == y)
    assert c["negative_flips"] == neg.sum()
    assert c["positive_flips"] == pos.sum()
    assert c["negative_flip_rate"] == pytest.approx(neg.mean())
    assert c["agreement"] == pytest.approx((pb == pc).mean())
    for k in range(4):
        assert c["per_class_negative_flips"][k] == neg[y == k].sum()
        assert c["per_class_negative_flip_rate"][k] == pytest.approx(neg[y == k].mean())


def test_one_batch_equals_many_batches_and_merge_adds():
    y, pb, pc = _preds(500, 6, 4)
    one = metrics_report(_counts(y, pb, pc, 6, batch=500), tuple("abcdef"))
    many = metrics_report(_counts(y, pb, pc, 6, batch=7), tuple("abcdef"))
    assert one == many
    left, right = _counts(y[:200], pb[:200], pc[:200], 6, 50), _counts(y[200:], pb[200:], pc[200:], 6, 50)
    assert metrics_report(left.merge(right), tuple("abcdef")) == one


def test_counts_folded_in_any_batches_are_the_same(monkeypatch):
    # update() keeps the codes of recent batches and counts them when read, or every PENDING_CODES codes
    y, pb, pc = _preds(700, 5, 9)
    want = np.unique((y * 5 + pb) * 5 + pc, return_counts=True)
    for pending in (1, 13, 64, 10**6):
        monkeypatch.setattr(gm, "PENDING_CODES", pending)
        counts = _counts(y, pb, pc, 5, batch=32)
        assert counts.total == 700
        np.testing.assert_array_equal(counts.arrays()[0], want[0])
        np.testing.assert_array_equal(counts.arrays()[1], want[1])
        counts.update(y[:3], pb[:3], pc[:3])            # an update after a read is counted too
        assert counts.total == 703 and int(counts.cells().counts.sum()) == 703


def test_confusion_matrix_matches_sklearn():
    y, pb, pc = _preds(300, 5, 5)
    rep = metrics_report(_counts(y, pb, pc, 5, batch=32), tuple("vwxyz"))
    np.testing.assert_array_equal(rep["baseline"]["confusion_matrix"], confusion_matrix(y, pb, labels=range(5)))
    np.testing.assert_array_equal(rep["candidate"]["confusion_matrix"], confusion_matrix(y, pc, labels=range(5)))


def test_state_stays_small():
    y, pb, pc = _preds(20000, 3, 6)
    counts = _counts(y, pb, pc, 3, batch=1000)
    assert counts.total == 20000
    assert len(counts.cells().counts) <= 27


def test_dense_and_sparse_one_hots_give_the_same_metrics(monkeypatch):
    """Small tables use dense one-hots (no scipy.sparse import); large ones sparse: the figures are the same."""
    import gate.metrics as gm

    rng = np.random.default_rng(3)
    counts = PairedCounts(7)
    y = rng.integers(0, 7, 2000)
    counts.update(y, np.where(rng.random(2000) < 0.8, y, rng.integers(0, 7, 2000)),
                  np.where(rng.random(2000) < 0.7, y, rng.integers(0, 7, 2000)))
    cells = counts.cells()
    weights = rng.multinomial(int(cells.counts.sum()), cells.counts / cells.counts.sum(), size=50).astype(float)

    def figures():
        out = {}
        for name, d in (("b", gm.model_metrics(cells, cells.pb, weights, empty=np.nan)),
                        ("c", gm.comparison_metrics(cells, weights, empty=np.nan))):
            out.update({f"{name}.{k}": np.asarray(v) for k, v in d.items()})
        return out

    dense = figures()
    monkeypatch.setattr(gm, "DENSE_ONEHOT_MAX", 0)
    sparse = figures()
    assert dense.keys() == sparse.keys()
    for key in dense:
        np.testing.assert_allclose(dense[key], sparse[key], rtol=1e-12, atol=0, equal_nan=True, err_msg=key)


@pytest.mark.parametrize("sums_by", ["bincount", "reduce"])
@pytest.mark.parametrize("chunk", [None, 1, 7, 500])
def test_bootstrap_replicates_are_the_metrics_of_the_bootstrap_weights_exactly(chunk, sums_by, monkeypatch):
    # Sums of whole counts are exact in float64 in any order, so class sums by bincount or by row reductions give
    # the one-hot products' figures bit for bit, in blocks of any size.
    monkeypatch.setattr(gm, "LOOP_SUM_ROWS", 10**9 if sums_by == "bincount" else 1)
    rng = np.random.default_rng(8)
    counts = PairedCounts(6)
    y = rng.integers(0, 6, 900)
    counts.update(y, np.where(rng.random(900) < 0.8, y, rng.integers(0, 6, 900)),
                  np.where(rng.random(900) < 0.6, y, rng.integers(0, 6, 900)))
    cells = counts.cells()
    reps = gm.bootstrap_replicates(cells, resamples=300, seed=2, per_class=True, chunk=chunk)
    w = stats.bootstrap_weights(cells.counts, resamples=300, seed=2)
    for role, pred in (("baseline", cells.pb), ("candidate", cells.pc)):
        dense = gm.model_metrics(cells, pred, w, empty=np.nan)
        for key in ("accuracy", "macro_f1", "weighted_f1", "precision", "recall", "f1"):
            np.testing.assert_array_equal(reps[role][key], dense[key], err_msg=f"{role} {key}")


# ------------------------------------------------------------------- per-class delta-method standard errors


def _codes_by_hand(y, pb, pc, k):
    """(7, K) counts of the codes 4[y == k] + 2[pb == k] + [pc == k], codes 1..7, sample by sample."""
    out = np.zeros((7, k))
    for cls in range(k):
        code = 4 * (y == cls) + 2 * (pb == cls) + (pc == cls)
        out[:, cls] = np.bincount(code, minlength=8)[1:]
    return out


def test_class_patterns_are_each_class_joint_codes_counted_sample_by_sample():
    y, pb, pc = _preds(700, 6, seed=21)
    counts = _counts(y, pb, pc, 6, batch=700)
    np.testing.assert_array_equal(gm.class_patterns(counts.cells()), _codes_by_hand(y, pb, pc, 6))


@pytest.mark.parametrize("chunk", [None, 1, 13])
def test_bootstrap_pattern_counts_are_the_codes_of_each_resample(chunk):
    y, pb, pc = _preds(400, 5, seed=22)
    cells = _counts(y, pb, pc, 5, batch=400).cells()
    reps = gm.bootstrap_replicates(cells, resamples=40, seed=4, per_class=True, chunk=chunk)
    w = stats.bootstrap_weights(cells.counts, resamples=40, seed=4)
    got = reps["patterns"]["counts"]
    assert got.shape == (7, 40, 5) and got.dtype == np.int32
    for r in range(40):
        rows = np.repeat(np.arange(cells.counts.size), w[r])          # the resample's samples, one per row
        np.testing.assert_array_equal(got[:, r, :], _codes_by_hand(cells.y[rows], cells.pb[rows], cells.pc[rows], 5))


def _metric_of_counts(metric, counts):
    """Each model's metric from (..., 8) code counts, straight from its definition (TP, FP, FN)."""
    code = np.arange(8)
    y, b, c = (code >> 2) & 1, (code >> 1) & 1, code & 1
    out = []
    for p in (b, c):
        tp = (counts * (y & p)).sum(-1)
        fp = (counts * ((1 - y) & p)).sum(-1)
        fn = (counts * (y & (1 - p))).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append({"recall": tp / (tp + fn), "precision": tp / (tp + fp), "f1": 2 * tp / (2 * tp + fp + fn)}
                       [metric])
    return out


def _compared(rule, b, c):
    return {"max_drop": b - c, "max_relative_drop": (b - c) / b, "min": c}[rule]


#: One class's code probabilities (codes 0..7): a class of 20%, both models good, the candidate a little worse.
CODE_PROBS = np.array([0.70, 0.02, 0.012, 0.008, 0.012, 0.018, 0.04, 0.19])


@pytest.mark.parametrize("metric", ["recall", "precision", "f1"])
@pytest.mark.parametrize("rule", ["max_drop", "max_relative_drop", "min"])
def test_class_rule_se_is_the_multinomial_spread_of_the_rule_by_monte_carlo(metric, rule):
    # Oracle: 200,000 multinomial draws of n samples from the code probabilities, the rule's value computed from
    # TP / FP / FN of each; the delta method at the expected counts must give their standard deviation.
    n = 4000
    draws = np.random.default_rng(5).multinomial(n, CODE_PROBS, size=200_000).astype(np.float64)
    b, c = _metric_of_counts(metric, draws)
    spread = float(np.std(_compared(rule, b, c)))
    value, se = gm.class_rule_se(metric, rule, (n * CODE_PROBS[1:])[:, None])
    b0, c0 = _metric_of_counts(metric, n * CODE_PROBS)
    assert float(value[0]) == pytest.approx(float(_compared(rule, b0, c0)), rel=1e-12)
    assert float(se[0]) == pytest.approx(spread, rel=0.02)


@pytest.mark.parametrize("metric", ["recall", "precision", "f1"])
@pytest.mark.parametrize("rule", ["max_drop", "max_relative_drop", "min"])
def test_class_rule_influences_are_the_derivatives_of_the_value_in_each_count(metric, rule):
    counts = np.array([3.0, 5.0, 2.0, 4.0, 1.0, 6.0, 30.0])[:, None]
    value, u, _ = gm.class_rule_influence(metric, rule, counts)
    h = 1e-6
    for j in range(7):
        up, down = counts.copy(), counts.copy()
        up[j] += h
        down[j] -= h
        full_up = np.concatenate([[0.0], up[:, 0]])
        full_down = np.concatenate([[0.0], down[:, 0]])
        numeric = (_compared(rule, *_metric_of_counts(metric, full_up))
                   - _compared(rule, *_metric_of_counts(metric, full_down))) / (2 * h)
        assert float(u[j, 0]) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9), j
    # the influences sum to zero over the samples: the variance needs no centring term
    assert float((counts * u).sum()) == pytest.approx(0.0, abs=1e-12)


def test_class_rule_se_is_nan_where_the_metric_is_undefined_and_floored_where_the_models_agree():
    absent = np.zeros((7, 1))
    absent[0] = 3                      # the class has no sample and the baseline never predicts it
    value, se = gm.class_rule_se("f1", "max_drop", absent)
    assert np.isnan(value[0]) and np.isnan(se[0])
    agree = np.zeros((7, 1))
    agree[6], agree[3] = 18, 2         # both right on 18, both wrong on 2: no discordant sample
    value, se = gm.class_rule_se("f1", "max_drop", agree)
    assert value[0] == 0.0
    assert se[0] == pytest.approx(0.5 / (20 + 18))                # half a sample's move, not 0


def test_null_variance_is_the_poisson_restricted_mle_by_scipy():
    # Oracle: scipy's SLSQP maximising sum(n log mu - mu) under sum((mu - n) u) = gap, over the seen codes, and
    # over every code where the seen ones cannot carry the gap (an unseen code with the largest move).
    from scipy.optimize import minimize

    u = np.array([0.02, -0.015, 0.0, 0.0, -0.03, 0.03, 0.001])
    for n, gap in ((np.array([3.0, 2.0, 1.0, 4.0, 1.0, 2.0, 20.0]), 0.1),
                   (np.array([3.0, 2.0, 1.0, 4.0, 1.0, 0.0, 20.0]), 0.1),
                   (np.array([3.0, 2.0, 1.0, 4.0, 1.0, 2.0, 20.0]), -0.05)):
        seen = n > 0

        def nll(mu):
            return -np.sum(np.where(seen, n * np.log(np.maximum(mu, 1e-300)), 0.0) - mu)

        cons = {"type": "eq", "fun": lambda mu: np.sum((mu - n) * u) - gap}
        res = minimize(nll, np.maximum(n, 0.5), method="SLSQP", constraints=[cons],
                       bounds=[(1e-9, None)] * 7, options={"ftol": 1e-14, "maxiter": 500})
        assert res.success
        oracle = float(np.sum(res.x * u * u))
        got = float(gm.null_variance(n[:, None], u[:, None], np.array([gap]))[0])
        assert got == pytest.approx(oracle, rel=1e-4)


def test_the_score_test_asks_more_of_a_class_with_one_discordant_sample_than_wald_does():
    counts = np.zeros((7, 1))
    counts[5], counts[6] = 1, 19       # one sample the candidate loses, 19 both get right
    value, se = gm.class_rule_se("f1", "max_drop", counts)
    assert float(value[0]) == pytest.approx(1 / 39)
    wald = (value - 0.1) / se
    score = gm.class_score_test("f1", "max_drop", counts, bound=0.1)
    assert float(wald[0]) < -2.8                                   # Wald claims "within 0.1" at 2.5%
    assert -1.7 < float(score[0]) < -1.3                          # the score test does not
    # far from the bound it agrees with Wald's sign and claims what the data show
    many = counts * 50
    assert float(gm.class_score_test("f1", "max_drop", many, bound=0.1)[0]) < -10


def test_the_relative_drop_score_test_is_fiellers_form_and_agrees_with_the_ratio_on_large_counts(monkeypatch):
    # (1 - B) b - c = b (r - B): the same side of B as the relative drop r, and asymptotically the same z
    counts = np.array([3.0, 5.0, 2.0, 4.0, 2.0, 6.0, 30.0])[:, None] * np.array([[1.0, 400.0]])
    value, _ = gm.class_rule_se("recall", "max_relative_drop", counts)
    fieller = gm.class_score_test("recall", "max_relative_drop", counts, bound=0.05)
    assert np.all(np.sign(fieller) == np.sign(value - 0.05))
    monkeypatch.setattr(gm, "RELATIVE_FIELLER", False)
    ratio = gm.class_score_test("recall", "max_relative_drop", counts, bound=0.05)
    assert float(fieller[1]) == pytest.approx(float(ratio[1]), rel=0.03)      # 400x the counts: z about 16
    assert abs(float(fieller[1])) > 3
