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
