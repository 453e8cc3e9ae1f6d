"""ROC and precision-recall curves (gate/curves.py, the scores check's details.curves): the vertices are
scikit-learn's roc_curve / precision_recall_curve, thinned curves keep exact vertices only, the binned (streamed)
curves are those of the binned scores, and sharded states merge to the same curves."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from gate import curves as cv
from gate.checks.base import RunContext, Step
from gate.checks.scores import ScoresCheck
from gate.config import build_config
from gate.report.json_report import report_dict, validate_report


def world(n: int, k: int, *, seed: int, noise: float = 0.8):
    """Labels and two models' float32 logits that share most of their signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    common = rng.standard_normal((n, k))
    zb = common + 0.4 * rng.standard_normal((n, k))
    zc = common + noise * rng.standard_normal((n, k))
    zb[np.arange(n), y] += 1.0
    zc[np.arange(n), y] += 1.0
    return y, zb.astype(np.float32), zc.astype(np.float32)


def checks(options: dict, k: int, count: int = 1) -> list[ScoresCheck]:
    config = build_config({"checks": {"scores": {"enabled": True, **options}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    return [ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=tuple(f"c{i}" for i in range(k)), device=None))
            for _ in range(count)]


def feed(check: ScoresCheck, y, zb, zc, *, batch: int, shard: int = 0, shards: int = 1) -> None:
    for i, start in enumerate(range(0, len(y), batch)):
        if i % shards != shard:
            continue
        sl = slice(start, start + batch)
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                          scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])}))


def curves_of(y, zb, zc, *, options: dict | None = None, batch: int = 128) -> dict:
    (check,) = checks(options or {}, zb.shape[1])
    feed(check, y, zb, zc, batch=batch)
    return check.compute().details["curves"]


def softmax(z: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(z).double(), dim=1).numpy()


def near_vertex(xs, ys, ref_x, ref_y, tol: float = 6e-6) -> bool:
    """Every (x, y) drawn is one of the reference vertices (to the report's 5 decimals), in the reference's order."""
    j = 0
    for x, y in zip(xs, ys):
        while j < len(ref_x) and not (abs(ref_x[j] - x) <= tol and abs(ref_y[j] - y) <= tol):
            j += 1
        if j == len(ref_x):
            return False
    return True


# ------------------------------------------------------------------------------------------- the vertices


@pytest.mark.parametrize("n,decimals", [(40, 1), (500, 2), (3000, 6)])
def test_roc_and_pr_vertices_are_scikit_learns_with_and_without_ties(n, decimals):
    rng = np.random.default_rng(n)
    positive = rng.random(n) < 0.3
    score = np.round(rng.standard_normal(n) + positive, decimals)       # 1 decimal: many ties
    counts = cv.clf_counts(score, positive)
    roc = cv.roc_vertices(counts)
    sk_fpr, sk_tpr, sk_t = roc_curve(positive, score)
    assert np.array_equal(roc.x, sk_fpr) and np.array_equal(roc.y, sk_tpr) and np.array_equal(roc.thresholds, sk_t)
    for drop in (False, True):
        pr = cv.pr_vertices(counts, drop_intermediate=drop)
        sk_p, sk_r, sk_tp = precision_recall_curve(positive, score, drop_intermediate=drop)
        assert np.array_equal(pr.x, sk_r) and np.array_equal(pr.y, sk_p)
        assert np.array_equal(pr.thresholds[:-1], sk_tp) and pr.thresholds[-1] == np.inf   # the end point's
    (out,) = cv.role_curves(counts, max_points=10_000, probability=True)
    assert out["roc"]["auc"] == pytest.approx(roc_auc_score(positive, score), abs=1e-6)
    assert out["pr"]["average_precision"] == pytest.approx(average_precision_score(positive, score), abs=1e-6)
    assert out["roc"]["vertices"] == sk_fpr.size and len(out["roc"]["fpr"]) == sk_fpr.size


def test_every_class_of_both_models_at_once_gives_scikit_learns_vertices_and_areas():
    """The curves lie end to end in flat arrays, computed all at once: each one is sklearn's alone, ties included."""
    from gate import score_metrics as sm

    rng = np.random.default_rng(21)
    n, k = 700, 5
    y = rng.integers(0, k, n)
    scores = [np.round(rng.standard_normal((n, k)) + 1.5 * (y[:, None] == np.arange(k)), decimals)
              for decimals in (1, 3)]                        # many ties, few ties
    ranking = next(iter(sm.Rankings(scores, y)))
    assert ranking.classes.size == 2 * k and ranking.model.tolist() == [0] * k + [1] * k
    counts = cv.ranking_counts(ranking)
    curves = {"roc": cv.roc_vertices(counts), "pr": cv.pr_vertices(counts),
              "pr_drop": cv.pr_vertices(counts, drop_intermediate=True)}
    areas, aps = cv.roc_areas(curves["roc"]), cv.average_precisions(counts)
    at = {key: np.r_[0, np.cumsum(v.sizes)] for key, v in curves.items()}

    def curve(key: str, row: int):
        v, a, b = curves[key], at[key][row], at[key][row + 1]
        return v.x[a:b], v.y[a:b], v.thresholds[a:b]

    for row, (m, c) in enumerate(zip(ranking.model.tolist(), ranking.classes.tolist())):
        score, positive = scores[m][:, c], y == c
        fpr, tpr, t = curve("roc", row)
        sk_fpr, sk_tpr, sk_t = roc_curve(positive, score)
        assert np.array_equal(fpr, sk_fpr) and np.array_equal(tpr, sk_tpr) and np.array_equal(t, sk_t)
        for key, drop in (("pr", False), ("pr_drop", True)):
            recall, precision, t = curve(key, row)
            sk_p, sk_r, sk_t = precision_recall_curve(positive, score, drop_intermediate=drop)
            assert np.array_equal(recall, sk_r) and np.array_equal(precision, sk_p)
            assert np.array_equal(t[:-1], sk_t) and t[-1] == np.inf
        assert areas[row] == pytest.approx(roc_auc_score(positive, score), rel=1e-12)
        assert aps[row] == pytest.approx(average_precision_score(positive, score), rel=1e-12)


def test_rankings_without_ties_step_one_sample_at_a_time_and_give_scikit_learns_vertices():
    """Continuous scores (no two equal in a row): the counts step one sample at a time (`Counts.unit`), the
    vertices are kept from the samples' classes, and every curve is still sklearn's alone, thinned or not."""
    from gate import score_metrics as sm

    rng = np.random.default_rng(23)
    n, k = 400, 4
    y = rng.integers(0, k, n)
    scores = [rng.standard_normal((n, k)) + s * (y[:, None] == np.arange(k)) for s in (1.0, 3.0)]
    ranking = next(iter(sm.Rankings(scores, y)))
    assert not ranking.tied.any()
    counts = cv.ranking_counts(ranking)
    assert counts.unit is not None
    roc, pr = cv.roc_vertices(counts), cv.pr_vertices(counts, drop_intermediate=True)
    assert np.array_equal(counts.ids_at(np.arange(counts.tps.size)), counts.ids)
    start_roc, start_pr = np.r_[0, np.cumsum(roc.sizes)], np.r_[0, np.cumsum(pr.sizes)]
    for row, (m, c) in enumerate(zip(ranking.model.tolist(), ranking.classes.tolist())):
        score, positive = scores[m][:, c], y == c
        a, b = start_roc[row], start_roc[row + 1]
        sk_fpr, sk_tpr, sk_t = roc_curve(positive, score)
        assert np.array_equal(roc.x[a:b], sk_fpr) and np.array_equal(roc.y[a:b], sk_tpr)
        assert np.array_equal(roc.thresholds[a:b], sk_t)
        a, b = start_pr[row], start_pr[row + 1]
        sk_p, sk_r, sk_tp = precision_recall_curve(positive, score, drop_intermediate=True)
        assert np.array_equal(pr.x[a:b], sk_r) and np.array_equal(pr.y[a:b], sk_p)
        assert np.array_equal(pr.thresholds[a:b - 1], sk_tp)
    drawn = cv.role_curves(counts, max_points=30, probability=False)        # thinned: exact vertices only
    for row, entry in enumerate(drawn):
        a, b = start_roc[row], start_roc[row + 1]
        assert set(zip(entry["roc"]["fpr"], entry["roc"]["tpr"])) <= set(
            zip(cv._nums(roc.x[a:b]), cv._nums(roc.y[a:b])))


def test_binned_counts_of_several_curves_are_each_curves_own():
    rng = np.random.default_rng(22)
    hist = rng.integers(0, 4, (3, 2, 30)) * (rng.random((3, 2, 30)) < 0.6)    # empty bins in every curve
    counts = cv.binned_counts(hist)
    at = np.r_[0, np.cumsum(counts.sizes)]
    for i in range(3):
        neg, pos = hist[i, 0][::-1], hist[i, 1][::-1]
        full = neg + pos > 0
        a, b = at[i], at[i + 1]
        assert np.array_equal(counts.tps[a:b], np.cumsum(pos)[full])
        assert np.array_equal(counts.fps[a:b], np.cumsum(neg)[full])
        assert np.array_equal(counts.thresholds[a:b], ((29 - np.arange(30)) / 30)[full])


def test_thinning_every_curve_at_once_keeps_what_thin_keeps_of_each():
    rng = np.random.default_rng(23)
    sizes = np.array([5, 60, 61, 250, 3, 1000, 2])
    xs = [np.sort(rng.random(m))[::-1] for m in sizes]
    ys = [np.sort(rng.random(m)) for m in sizes]
    xs[4], ys[4] = np.zeros(3), np.zeros(3)                 # a curve of no length: thin's fallback
    xs.append(np.zeros(70))
    ys.append(np.zeros(70))
    sizes = np.append(sizes, 70)
    v = cv.Vertices(x=np.concatenate(xs), y=np.concatenate(ys), thresholds=np.zeros(int(sizes.sum())), sizes=sizes)
    kept, counts = cv._thinned(v, 60)
    start = np.r_[0, np.cumsum(sizes)]
    expected = [cv.thin(x, yy, 60) + a for x, yy, a in zip(xs, ys, start[:-1])]
    assert np.array_equal(kept, np.concatenate(expected))
    assert counts.tolist() == [e.size for e in expected]


def test_five_significant_digits_are_pythons_formatting_exactly():
    """The thresholds' float(f"{p:.5g}"), vectorised: the same double for every value, ties and near-ties too."""
    rng = np.random.default_rng(24)
    mantissa = rng.integers(10_000, 100_000, 50_000)
    scale = 10.0 ** rng.integers(4, 20, 50_000)
    half = (mantissa + 0.5) / scale                           # next to a rounding tie of the 5th digit
    values = np.concatenate([
        rng.random(100_000), 10.0 ** rng.uniform(-19, 0, 100_000), 1.0 / (1.0 + np.exp(-20 * rng.standard_normal(50_000))),
        half, np.nextafter(half, 0.0), np.nextafter(half, 1.0), mantissa / scale, np.nextafter(mantissa / scale, 0.0),
        [0.0, 1.0, 0.1, 1e-5, 0.99999, 0.999995, 0.9999949999, 0.34375, 5e-324, 1e-300, 1e-17, 123456.0, np.inf,
         -0.5, np.nan]])
    got = cv.five_significant(values)
    want = np.array([float(f"{v:.5g}") for v in values.tolist()])
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all(), values[~same][:5]


def test_the_order_within_a_tie_changes_nothing():
    """The rankings sort without a stable order: every tie shuffled anew gives the same values, influences and
    curves, bit for bit."""
    import dataclasses

    from gate import score_metrics as sm

    rng = np.random.default_rng(25)
    n, k = 400, 3
    y = rng.integers(0, k, n)
    scores = [np.round(rng.standard_normal((n, k)) + (y[:, None] == np.arange(k)), 0) for _ in range(2)]  # ~7 values
    ranking = next(iter(sm.Rankings(scores, y)))
    shuffled = np.stack([np.lexsort((rng.random(n), first)) for first in ranking.first])   # within each run only
    assert not np.array_equal(shuffled, np.tile(np.arange(n), (ranking.classes.size, 1)))
    other = dataclasses.replace(ranking, **{name: np.take_along_axis(getattr(ranking, name), shuffled, axis=1)
                                            for name in ("order", "score", "positive")})
    for parts in (sm.auc_parts, sm.ap_parts):
        (value, psi), (value2, psi2) = parts(ranking), parts(other)
        assert np.array_equal(value, value2) and np.array_equal(psi, psi2)
    assert cv.role_curves(cv.ranking_counts(ranking), max_points=60, probability=False) == cv.role_curves(
        cv.ranking_counts(other), max_points=60, probability=False)


def test_saturated_scores_tie_at_infinity_as_at_any_value():
    """Log-odds of probabilities 0 and 1 are -inf and +inf; the samples there tie (sklearn's np.diff would split
    them: inf - inf is NaN), so the curve is sklearn's on the same ranking with finite stand-ins."""
    positive = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    score = np.array([np.inf, np.inf, 0.5, -1.0, -1.0, -np.inf, -np.inf, 2.0])
    finite = np.where(np.isposinf(score), 1e300, np.where(np.isneginf(score), -1e300, score))
    roc = cv.roc_vertices(cv.clf_counts(score, positive))
    sk_fpr, sk_tpr, _ = roc_curve(positive, finite)
    assert np.array_equal(roc.x, sk_fpr) and np.array_equal(roc.y, sk_tpr)
    pr = cv.pr_vertices(cv.clf_counts(score, positive), drop_intermediate=True)
    sk_p, sk_r, _ = precision_recall_curve(positive, finite, drop_intermediate=True)
    assert np.array_equal(pr.x, sk_r) and np.array_equal(pr.y, sk_p)


def test_a_thinned_curve_keeps_exact_vertices_its_ends_and_its_shape():
    rng = np.random.default_rng(7)
    positive = rng.random(20_000) < 0.4
    score = rng.standard_normal(20_000) + 0.8 * positive
    sk_fpr, sk_tpr, _ = roc_curve(positive, score)
    assert sk_fpr.size > 2000
    keep = cv.thin(sk_fpr, sk_tpr, 300)
    assert keep.size <= 300 and keep[0] == 0 and keep[-1] == sk_fpr.size - 1
    assert np.all(np.diff(keep) > 0)
    # between two kept vertices the dropped ones stay close to the chord: the drawn curve is the curve
    for a, b in zip(keep[:-1], keep[1:]):
        seg = slice(a, b + 1)
        assert np.hypot(np.diff(sk_fpr[seg]), np.diff(sk_tpr[seg])).sum() < 0.02
    (out,) = cv.role_curves(cv.clf_counts(score, positive), max_points=300, probability=True)
    roc = out["roc"]
    assert len(roc["fpr"]) == keep.size and roc["vertices"] == sk_fpr.size
    assert np.allclose(roc["fpr"], sk_fpr[keep], atol=5e-6) and np.allclose(roc["tpr"], sk_tpr[keep], atol=5e-6)
    assert roc["auc"] == pytest.approx(roc_auc_score(positive, score), abs=1e-6)     # over every vertex
    sk_p, sk_r, _ = precision_recall_curve(positive, score, drop_intermediate=True)
    pr = out["pr"]
    assert len(pr["recall"]) <= 300 and (pr["recall"][0], pr["recall"][-1]) == (1.0, 0.0)
    assert near_vertex(pr["recall"], pr["precision"], sk_r, sk_p)


# ------------------------------------------------------------------------------------------- the scores check


def test_binary_curves_of_the_check_are_scikit_learns_at_the_kept_vertices():
    y, zb, zc = world(4000, 2, seed=11)
    curves = curves_of(y, zb, zc)
    assert curves["approximate"] is False and curves["num_classes"] == 2 and len(curves["classes"]) == 1
    entry = curves["classes"][0]
    assert entry["class"] == "c1" and entry["positives"] == int(np.sum(y == 1))
    for role, z in (("baseline", zb), ("candidate", zc)):
        p1 = softmax(z)[:, 1]
        roc, pr = entry[role]["roc"], entry[role]["pr"]
        sk_fpr, sk_tpr, sk_t = roc_curve(y == 1, p1)
        assert roc["vertices"] == sk_fpr.size > cv.MAX_POINTS_BINARY        # thinned
        assert len(roc["fpr"]) <= cv.MAX_POINTS_BINARY
        assert near_vertex(roc["fpr"], roc["tpr"], sk_fpr, sk_tpr)
        assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
        # each kept vertex's threshold is the probability sklearn's vertex sits at
        for x, yy, t in zip(roc["fpr"][1:], roc["tpr"][1:], roc["threshold"][1:]):
            j = np.flatnonzero((np.abs(sk_fpr - x) <= 6e-6) & (np.abs(sk_tpr - yy) <= 6e-6))
            assert np.any(np.abs(sk_t[j] - t) <= 1e-4 * max(t, 1e-3))
        sk_p, sk_r, _ = precision_recall_curve(y == 1, p1, drop_intermediate=True)
        assert near_vertex(pr["recall"], pr["precision"], sk_r, sk_p)
        assert roc["auc"] == pytest.approx(roc_auc_score(y == 1, p1), abs=2e-6)
        assert pr["average_precision"] == pytest.approx(average_precision_score(y == 1, p1), abs=2e-6)


def test_multiclass_curves_are_one_vs_rest_per_class_at_most_ten():
    y, zb, zc = world(1500, 4, seed=12)
    curves = curves_of(y, zb, zc)
    assert [c["class"] for c in curves["classes"]] == ["c0", "c1", "c2", "c3"]
    for entry in curves["classes"]:
        c = entry["index"]
        for role, z in (("baseline", zb), ("candidate", zc)):
            pc = softmax(z)[:, c]
            roc = entry[role]["roc"]
            sk_fpr, sk_tpr, _ = roc_curve(y == c, pc)
            assert len(roc["fpr"]) <= cv.MAX_POINTS_CLASS and near_vertex(roc["fpr"], roc["tpr"], sk_fpr, sk_tpr)
            assert roc["auc"] == pytest.approx(roc_auc_score(y == c, pc), abs=2e-6)
            sk_p, sk_r, _ = precision_recall_curve(y == c, pc, drop_intermediate=True)
            assert near_vertex(entry[role]["pr"]["recall"], entry[role]["pr"]["precision"], sk_r, sk_p)
    # 14 classes: the 10 whose ROC-AUC changed most, in class order
    y, zb, zc = world(1400, 14, seed=13, noise=1.5)
    curves = curves_of(y, zb, zc, options={"top_k": 3})
    pb, pc = softmax(zb), softmax(zc)
    change = [abs(roc_auc_score(y == c, pc[:, c]) - roc_auc_score(y == c, pb[:, c])) for c in range(14)]
    assert curves["classes_total"] == 14 and len(curves["classes"]) == cv.MAX_CLASSES
    assert [e["index"] for e in curves["classes"]] == sorted(np.argsort(change)[::-1][:10].tolist())


def binned(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum(np.floor(p * bins), bins - 1)


@pytest.mark.parametrize("k", [2, 3])
def test_streamed_curves_are_the_binned_scores_curves_and_say_approximate(k):
    y, zb, zc = world(3000, k, seed=14)
    curves = curves_of(y, zb, zc, options={"bins": 40}, batch=100)
    assert curves["approximate"] is True and "40 probability bins" in curves["source"]
    for entry in curves["classes"]:
        c = entry["index"]
        for role, z in (("baseline", zb), ("candidate", zc)):
            score = binned(softmax(z)[:, c], 40)
            sk_fpr, sk_tpr, sk_t = roc_curve(y == c, score)
            roc = entry[role]["roc"]
            assert np.allclose(roc["fpr"], sk_fpr, atol=5e-6) and np.allclose(roc["tpr"], sk_tpr, atol=5e-6)
            assert roc["threshold"][1:] == pytest.approx(list(sk_t[1:] / 40))      # a bin's lower edge
            sk_p, sk_r, _ = precision_recall_curve(y == c, score, drop_intermediate=True)
            pr = entry[role]["pr"]
            assert np.allclose(pr["recall"], sk_r, atol=5e-6) and np.allclose(pr["precision"], sk_p, atol=5e-6)
            assert pr["average_precision"] == pytest.approx(average_precision_score(y == c, score), abs=2e-6)


def test_nan_scores_draw_no_curve():
    y, zb, zc = world(300, 2, seed=15)
    zc[5, 1] = np.nan
    curves = curves_of(y, zb, zc)
    assert curves["classes"] == [] and curves["classes_total"] == 1
    assert curves["selection"] == "class 1 against class 0; not drawn: a NaN score ranks nothing"
    y, zb, zc = world(300, 4, seed=15)
    zb[7, 2] = np.nan                 # one logit NaN: every class's log-odds of that row (softmax reads them all)
    curves = curves_of(y, zb, zc)
    assert curves["classes"] == [] and curves["classes_total"] == 4
    assert curves["selection"] == "0 of 4 classes one-vs-rest; 4 with a NaN score left out (NaN ranks nothing)"


@pytest.mark.parametrize("options", [{}, {"max_samples": 400}], ids=["exact", "streamed"])
def test_two_shards_merged_give_the_single_runs_curves(options):
    from gate.sharding import merge_arrays  # what `gate merge` does to the checks' states

    y, zb, zc = world(1200, 3, seed=16)
    *shards, whole, fresh = checks(options, 3, count=4)
    for s, shard in enumerate(shards):
        feed(shard, y, zb, zc, batch=64, shard=s, shards=2)
    feed(whole, y, zb, zc, batch=64)
    fresh.load_state(merge_arrays([shard.state() for shard in shards]))
    got, want = fresh.compute().details["curves"], whole.compute().details["curves"]
    assert got == want and len(got["classes"]) == 3


def test_curves_are_valid_in_the_json_report_schema():
    from tests.unit.report_fixtures import html_report
    import dataclasses

    y, zb, zc = world(800, 3, seed=17)
    (check,) = checks({}, 3)
    feed(check, y, zb, zc, batch=100)
    report = html_report()
    report = dataclasses.replace(report, checks=(*report.checks, check.compute()), schema_version="1.4")
    validate_report(report_dict(report))


@pytest.mark.parametrize("options", [{"bins": 30}, {"max_samples": 100}, {"sharded": True}],
                         ids=["binned", "switched-to-streaming", "streamed-shards-merged"])
def test_a_nan_score_in_streamed_mode_fails_as_in_exact_mode_without_a_traceback(options):
    """A NaN score used to crash the streamed state's bin count ("'list' argument must have no negative
    elements"); it now gives the exact mode's outcome: that model's score metrics NaN, which fail; no curves."""
    from gate.sharding import merge_arrays

    rules = {"roc_auc": {"max_drop": 0.05}, "pr_auc": {"max_drop": 0.05}, "log_loss": {"max_increase": 0.5}}
    y, zb, zc = world(600, 3, seed=18)
    zc[5, 1] = np.nan
    (exact,) = checks(dict(rules), 3)
    feed(exact, y, zb, zc, batch=64)
    want = exact.compute()
    if options.get("sharded"):
        *shards, check = checks(dict(rules, max_samples=100), 3, count=3)
        for s, shard in enumerate(shards):
            feed(shard, y, zb, zc, batch=64, shard=s, shards=2)
        check.load_state(merge_arrays([shard.state() for shard in shards]))
    else:
        (check,) = checks(dict(rules, **options), 3)
        feed(check, y, zb, zc, batch=64)
    got = check.compute()
    assert got.status == want.status == "fail"
    assert [(f.metric, f.status) for f in got.findings] == [(f.metric, f.status) for f in want.findings]
    assert all(np.isnan(f.candidate) and np.isfinite(f.baseline) for f in got.findings)
    assert got.details["curves"]["classes"] == [] and got.details["curves"]["approximate"] is True
    # the baseline's streamed figures are still its own: scikit-learn's log loss on its probabilities
    from sklearn.metrics import log_loss
    base = next(f for f in got.findings if f.metric == "log_loss").baseline
    assert base == pytest.approx(log_loss(y, softmax(zb)), rel=1e-7)     # float32 logits


def test_a_curve_without_positives_beside_others_gets_scikit_learns_precision_recall():
    """Precision and recall take a fast path when every count is non-zero; a curve with no positives (recall 1
    throughout, as scikit-learn sets it) among others must still be scikit-learn's, and leave the others' alone."""
    import warnings

    rng = np.random.default_rng(77)
    n = 120
    scores = [np.round(rng.standard_normal(n), 1) for _ in range(3)]
    positives = [rng.random(n) < 0.4, np.zeros(n, dtype=bool), rng.random(n) < 0.2]
    parts = [cv.clf_counts(s, p) for s, p in zip(scores, positives)]
    counts = cv.Counts(tps=np.concatenate([c.tps for c in parts]), fps=np.concatenate([c.fps for c in parts]),
                       thresholds=np.concatenate([c.thresholds for c in parts]),
                       sizes=np.array([c.sizes[0] for c in parts]))
    pr = cv.pr_vertices(counts, drop_intermediate=False)
    stop = np.cumsum(pr.sizes)
    for i, (s, p) in enumerate(zip(scores, positives)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")               # scikit-learn warns that recall is undefined, set to 1
            sk_p, sk_r, _ = precision_recall_curve(p, s, drop_intermediate=False)
        sl = slice(stop[i] - pr.sizes[i], stop[i])
        assert np.array_equal(pr.x[sl], sk_r) and np.array_equal(pr.y[sl], sk_p)
