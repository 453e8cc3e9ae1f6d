"""ROC and precision-recall curves of both models, bounded in size, for the reports (pure numpy).

The vertices are scikit-learn's: `roc_curve` (collinear points dropped, as its `drop_intermediate=True` does) and
`precision_recall_curve` with `drop_intermediate=True` (recall decreasing, ending at recall 0, precision 1; of a run
of thresholds with one recall only its ends). A curve with
more vertices than `max_points` keeps a subset of them, spread evenly along the curve's length, the first and last
always kept: every point drawn is an exact vertex, only the straight segments between kept ones are new. The area
(ROC-AUC, average precision) is taken over every vertex before the thinning (from the kept scores it is the ranking
metrics' own per-class value when the caller passes it: the same area).

From the kept per-sample scores the curves are exact, read off each model's one-vs-rest rankings
(`gate.score_metrics.Rankings`: the sort ROC-AUC and PR-AUC use, both models' classes at once); from the streamed state's probability bins
(`StreamedScores.hist`) each bin is one threshold (its lower edge), so the curve is that of the binned scores:
approximate, and labelled so. Binary models: class 1's curve; more classes: one-vs-rest per class, at most
`MAX_CLASSES` of them (those whose ROC-AUC changed most), small multiples in the HTML report.

Every class's curve of one model is computed at once: the curves lie end to end in flat arrays (`Counts`,
`Vertices`, each with the `sizes` of its curves), so each step is a few numpy calls whatever the number of classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from gate import score_metrics as sm

MAX_POINTS_BINARY = 200      # points per curve of a binary model
MAX_POINTS_CLASS = 60        # points per curve of each class of a multi-class model
MAX_CLASSES = 10             # classes drawn for a multi-class model
ROLES = ("baseline", "candidate")


@dataclass(frozen=True)
class Counts:
    """Per curve, at each distinct score from the top: the true and false positives scored at or above it, and the
    score (sklearn's `_binary_clf_curve`); the curves end to end, `sizes[i]` entries for curve i."""

    tps: np.ndarray          # int64
    fps: np.ndarray          # int64
    thresholds: np.ndarray   # float64
    sizes: np.ndarray        # (curves,) int64
    #: where every threshold holds one sample (a ranking without ties): whether that sample is a positive (each
    #: step of the counts then adds one to tps or to fps), else None
    unit: np.ndarray | None = None

    @cached_property
    def ids(self) -> np.ndarray:
        return _ids(self.sizes)

    def ids_at(self, index: np.ndarray) -> np.ndarray:
        """`ids[index]`, found by a search of the curves' ends rather than from every entry's."""
        return self.sizes.cumsum().searchsorted(index, side="right")

    @cached_property
    def rates(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at each threshold, as precision_recall_curve computes them (a curve without
        positives has recall 1 throughout)."""
        return self.rates_at(None)

    def rates_at(self, index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`rates` at the entries `index` only (every entry when None): the same values, computed for those."""
        tps, fps = self.tps, self.fps
        last = tps[self.sizes.cumsum() - 1] if tps.size else tps        # each curve's positives
        if index is not None:
            tps, fps, ids = tps[index], fps[index], self.ids_at(index)
        else:
            ids = self.ids
        predicted = tps + fps
        if predicted.all():             # a ranking's counts: something is predicted at every threshold
            precision = tps / predicted
        else:
            precision = np.divide(tps, predicted, out=np.zeros(tps.size), where=predicted != 0)
        last = last[ids] if tps.size else tps
        if last.all():                  # every curve has positives
            return precision, tps / last
        return precision, np.where(last == 0, 1.0, tps / np.where(last == 0, 1, last))


@dataclass(frozen=True)
class Vertices:
    """Curves' vertices end to end: x, y and the threshold at each, `sizes[i]` for curve i."""

    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray
    sizes: np.ndarray


def _ids(sizes: np.ndarray) -> np.ndarray:
    """The curve of each entry of curves end to end."""
    return np.arange(sizes.size).repeat(sizes)


def _ends(sizes: np.ndarray) -> np.ndarray:
    """A mask of each curve's first and last entry."""
    mask = np.zeros(int(sizes.sum()), dtype=bool)
    stop = np.cumsum(sizes)
    mask[stop - sizes] = True
    mask[stop - 1] = True
    return mask


def clf_counts(score: np.ndarray, positive: np.ndarray) -> Counts:
    """The counts of one score against its positives."""
    score = np.asarray(score, dtype=np.float64)
    return ranking_counts(sm.rank_rows(score[None, :], np.asarray(positive, dtype=bool)[None, :], np.array([1])))


def ranking_counts(r: sm.ClassRanking) -> Counts:
    """The counts of every row of a ranking: read at the last position of each run of equal scores."""
    c, n = r.order.shape
    if not r.tied.any():                               # every position ends its run
        tps = r.tp_through.ravel()
        steps = np.concatenate([np.arange(1, n + 1)] * c) if c else np.zeros(0, dtype=np.int64)   # samples >= each
        return Counts(tps=tps, fps=steps - tps, thresholds=r.score.ravel(),
                      sizes=np.full(c, n, dtype=np.int64), unit=r.positive.ravel())
    end = (r.last == np.arange(n)).ravel().nonzero()[0]       # row-major: row by row, from the top
    tps = r.tp_through.ravel()[end]
    return Counts(tps=tps, fps=end % n + 1 - tps, thresholds=r.score.ravel()[end],
                  sizes=np.bincount(end // n, minlength=c) if n else np.zeros(c, dtype=np.int64))


def binned_counts(hist: np.ndarray) -> Counts:
    """The counts from per-bin counts of equal-width probability bins, hist (curves, negative/positive, bins): each
    non-empty bin, from the top, is one threshold (its lower edge)."""
    hist = np.asarray(hist, dtype=np.int64)
    neg, pos = hist[:, 0, ::-1], hist[:, 1, ::-1]
    bins = hist.shape[2]
    full = neg + pos > 0
    edges = np.broadcast_to((bins - 1 - np.arange(bins)) / bins, full.shape)
    return Counts(tps=np.cumsum(pos, axis=1)[full], fps=np.cumsum(neg, axis=1)[full], thresholds=edges[full],
                  sizes=full.sum(axis=1))


def roc_vertices(counts: Counts) -> Vertices:
    """(fpr, tpr, threshold) of each curve as sklearn.metrics.roc_curve gives them (drop_intermediate=True: a
    vertex whose neighbours are collinear with it dropped; the first threshold is +inf, the (0, 0) point)."""
    tps, fps, sizes = counts.tps, counts.fps, counts.sizes
    keep = _ends(sizes)
    if keep.size > 2 and counts.unit is not None:    # steps of one sample: the slope changes with the sample's class
        u = counts.unit
        keep[1:-1] |= u[2:] != u[1:-1]
    elif keep.size > 2:         # an inner vertex stays where the slope changes (at the ends the test is moot)
        dt, df = tps[1:] - tps[:-1], fps[1:] - fps[:-1]
        keep[1:-1] |= (dt[1:] != dt[:-1]) | (df[1:] != df[:-1])
    kept = keep.nonzero()[0]
    ids = counts.ids_at(kept)
    out_sizes = np.bincount(ids, minlength=sizes.size) + 1
    dest = np.arange(kept.size) + ids + 1                   # each curve's vertices after its (0, 0) point
    t = np.zeros(kept.size + sizes.size, dtype=np.int64)
    f = np.zeros(kept.size + sizes.size, dtype=np.int64)
    threshold = np.full(kept.size + sizes.size, np.inf)
    t[dest], f[dest], threshold[dest] = tps[kept], fps[kept], counts.thresholds[kept]
    last = out_sizes.cumsum() - 1
    out_ids = _ids(out_sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Vertices(x=f / f[last][out_ids], y=t / t[last][out_ids], thresholds=threshold, sizes=out_sizes)


def pr_vertices(counts: Counts, *, drop_intermediate: bool = False) -> Vertices:
    """(recall, precision, threshold) of each curve as sklearn.metrics.precision_recall_curve gives them: recall
    decreasing, ending at (recall 0, precision 1), whose threshold is +inf here; `drop_intermediate` keeps only the
    first and last threshold of each run of equal true positives (one recall: a vertical segment, drawn the same)."""
    tps, thresholds, sizes = counts.tps, counts.thresholds, counts.sizes
    if drop_intermediate:
        keep = _ends(sizes)
        if keep.size > 2 and counts.unit is not None:    # steps of one sample: tps changes at each positive
            u = counts.unit
            keep[1:-1] |= u[1:-1] | u[2:]
        elif keep.size > 2:     # an inner threshold stays where the true positives change on either side
            keep[1:-1] |= (tps[1:-1] != tps[:-2]) | (tps[2:] != tps[1:-1])
        kept = keep.nonzero()[0]
        precision, recall = counts.rates_at(kept)           # only where a vertex is kept
        tps, thresholds, ids = tps[kept], thresholds[kept], counts.ids_at(kept)
        sizes = np.bincount(ids, minlength=sizes.size)
    else:
        precision, recall = counts.rates
        ids = counts.ids
    stop = np.cumsum(sizes)
    # curve i (entries from a on, L of them) goes, reversed, to a + i ... a + i + L - 1, its end point after it
    curve = np.arange(sizes.size)
    dest = (2 * (stop - sizes) + curve + sizes - 1)[ids] - np.arange(tps.size)
    end = stop + curve
    x, y, threshold = (np.empty(tps.size + sizes.size) for _ in range(3))
    x[dest], y[dest], threshold[dest] = recall, precision, thresholds
    x[end], y[end], threshold[end] = 0.0, 1.0, np.inf
    return Vertices(x=x, y=y, thresholds=threshold, sizes=sizes + 1)


def _within(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Of the values between consecutive vertices of the curves end to end, those within one curve."""
    inside = np.ones(values.size, dtype=bool)
    inside[np.cumsum(sizes)[:-1] - 1] = False
    return values[inside]


def roc_areas(roc: Vertices) -> np.ndarray:
    """Each ROC curve's area by the trapezoidal rule over every vertex (np.trapezoid's terms and sum)."""
    return sm.segment_sums(_within(np.diff(roc.x) * (roc.y[1:] + roc.y[:-1]) / 2.0, roc.sizes), roc.sizes - 1)


def average_precisions(counts: Counts) -> np.ndarray:
    """Each curve's average precision over every threshold as sklearn's, -sum of diff(recall) * precision[:-1] along
    `pr_vertices(counts)` (recall decreasing to its end point 0): the same terms, in the same order, from the counts
    directly."""
    tps, sizes, ids = counts.tps, counts.sizes, counts.ids
    stop = np.cumsum(sizes)
    start = stop - sizes
    precision, recall = counts.rates
    before = np.empty(tps.size)                  # the next point along the drawn curve: recall one threshold up
    before[1:] = recall[:-1]
    before[start[sizes > 0]] = 0.0
    terms = (before - recall) * precision
    back = (start + stop - 1)[ids] - np.arange(tps.size)        # each curve from its lowest threshold up
    return -sm.segment_sums(terms[back], sizes)


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` vertices spread evenly along the curve's length, first and last kept."""
    n = x.size
    if n <= max_points:
        return np.arange(n)
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    if not np.isfinite(length[-1]) or length[-1] <= 0:
        return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    at = np.searchsorted(length, np.linspace(0.0, length[-1], max_points - 1), side="left")
    return np.unique(np.r_[0, np.minimum(at, n - 1), n - 1])


def _linspace_rows(stop: np.ndarray, num: int) -> np.ndarray:
    """np.linspace(0.0, stop[i], num) for each row i, as numpy computes each."""
    y = np.arange(num, dtype=np.float64)[None, :]
    div = num - 1
    step = stop / div
    rows = np.where((step == 0)[:, None], y / div * stop[:, None], y * step[:, None]) + 0.0
    rows[:, -1] = stop
    return rows


def _thinned(v: Vertices, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices of each curve's vertices kept by `thin`, end to end, and how many each curve keeps: the curves
    longer than `max_points` all at once (their lengths as rows, zero-padded at the end)."""
    keep = np.ones(v.x.size, dtype=bool)
    long = (v.sizes > max_points).nonzero()[0]
    if long.size:
        sizes = v.sizes[long]
        start = (np.cumsum(v.sizes) - v.sizes)[long]
        width = int(sizes.max())
        pair = np.arange(width - 1)[None, :]
        inside = pair < (sizes - 1)[:, None]
        at = np.where(inside, start[:, None] + pair, 0)
        steps = np.where(inside, np.hypot(v.x[at + 1] - v.x[at], v.y[at + 1] - v.y[at]), 0.0)
        length = np.zeros((long.size, width))
        np.cumsum(steps, axis=1, out=length[:, 1:])         # beyond a curve's end it stays at its total
        total = length[np.arange(long.size), sizes - 1]
        regular = np.isfinite(total) & (total > 0)
        targets = _linspace_rows(np.where(regular, total, 1.0), max_points - 1)
        found = np.empty((long.size, max_points - 1), dtype=np.int64)
        for i in range(long.size):
            found[i] = np.searchsorted(length[i], targets[i], side="left")
        picks = np.concatenate([np.zeros((long.size, 1), dtype=np.int64), np.minimum(found, (sizes - 1)[:, None]),
                                (sizes - 1)[:, None]], axis=1)          # sorted in each row: unique = first of each run
        first = np.ones(picks.shape, dtype=bool)
        first[:, 1:] = picks[:, 1:] != picks[:, :-1]
        for i in np.flatnonzero(~regular).tolist():
            first[i] = False
            local = thin(v.x[start[i]:start[i] + sizes[i]], v.y[start[i]:start[i] + sizes[i]], max_points)
            picks[i, :local.size], first[i, :local.size] = local, True
        for a, b in zip(start.tolist(), (start + sizes).tolist()):
            keep[a:b] = False
        keep[(picks + start[:, None])[first]] = True
    kept = keep.nonzero()[0]
    return kept, np.bincount(_ids(v.sizes)[kept], minlength=v.sizes.size)


def _num(x: float, digits: int = 5) -> float | None:
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _nums(values: np.ndarray, digits: int = 5) -> list[float | None]:
    """Rounded to `digits` decimals, non-finite as None (JSON has no NaN)."""
    rounded = np.asarray(values, dtype=np.float64).round(digits)
    out = rounded.tolist()
    if not np.isfinite(rounded).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


_POW10 = 10.0 ** np.arange(23)          # exact in float64 up to 1e22
#: A product p = fl(v * 10^k) below 1e5 is within 2^-37 of the exact one: where p's fraction is this far from a half,
#: rint(p) is the exact product's rounding (else the value goes through the string)
_HALF_MARGIN = 1e-9


def five_significant(q: np.ndarray) -> np.ndarray:
    """float(f"{v:.5g}") of each value (the double nearest the value rounded to 5 significant digits, half to even
    on its exact binary value), vectorised for values in [1e-18, 1e5): k = 4 - floor(log10(v)) so that
    v * 10^k lies in [1e4, 1e5), the mantissa m = rint(fl(v * 10^k)) (the exact product's rounding wherever the
    rounded product is not within _HALF_MARGIN of a half), then m / 10^k, correctly rounded since both are exact;
    other values (a half or near it, log10 one off next to a power of ten, outside the range) through the string."""
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 4.0 - np.floor(np.log10(q))     # NaN, +-inf, 0 and negative values give NaN or +-inf: not in range
        fast = (k >= 0.0) & (k <= 22.0)
        scale = _POW10[np.where(fast, k, 4.0).astype(np.int64)]
        p = q * scale
        m = np.rint(p)                      # half to even, as the string's rounding of the exact value
        fast &= (p >= 1e4) & (p < 1e5) & (np.abs(p - m) < 0.5 - _HALF_MARGIN)
    out = m / scale
    slow = (~fast).nonzero()[0]
    if slow.size:                       # Python floats format as numpy's do, without a numpy scalar per value
        out[slow] = [float(f"{v:.5g}") for v in q[slow].tolist()]
    return out


def _thresholds(t: np.ndarray, probability: bool) -> list[float | None]:
    """Thresholds as the class's probability (scores are log-odds unless `probability`), 5 significant digits;
    sklearn's +inf (nothing predicted positive) as None."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore"):
        p = t if probability else 1.0 / (1.0 + np.exp(-t))
    out: list[float | None] = five_significant(p).tolist()
    for i in np.isposinf(t).nonzero()[0].tolist():
        out[i] = None
    return out


def role_curves(counts: Counts, *, max_points: int, probability: bool,
                areas: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One model's ROC and PR curve of each curve in `counts`, thinned, with the areas over every vertex: computed
    here, or `areas` (each curve's ROC-AUC and average precision) where the ranking metrics have them (the same
    areas: the Mann-Whitney AUC is the trapezoids' area, sklearn's average precision a sum over the same
    thresholds)."""
    roc = roc_vertices(counts)
    if areas is None:
        aucs = roc_areas(roc).tolist()
        aps = average_precisions(counts).tolist()                      # over every threshold, as sklearn's
    else:
        aucs, aps = areas[0].tolist(), areas[1].tolist()
    pr = pr_vertices(counts, drop_intermediate=True)
    # the ROC curves and then the PR curves end to end, thinned at once (each curve on its own, as alone); every
    # list made at once, then each curve's cut out of it
    both = Vertices(x=np.concatenate([roc.x, pr.x]), y=np.concatenate([roc.y, pr.y]),
                    thresholds=np.concatenate([roc.thresholds, pr.thresholds]),
                    sizes=np.concatenate([roc.sizes, pr.sizes]))
    keep, kept = _thinned(both, max_points)
    total = keep.size
    points = _nums(np.concatenate([both.x[keep], both.y[keep]]))
    thresholds = _thresholds(both.thresholds[keep], probability)
    sizes = both.sizes.tolist()
    stops = kept.cumsum().tolist()
    curves = counts.sizes.size
    out = []
    for i in range(curves):
        r0, r1 = stops[i - 1] if i else 0, stops[i]
        p0, p1 = stops[curves + i - 1], stops[curves + i]
        out.append({"roc": {"auc": _num(aucs[i], 6), "vertices": sizes[i], "fpr": points[r0:r1],
                            "tpr": points[total + r0:total + r1], "threshold": thresholds[r0:r1]},
                    "pr": {"average_precision": _num(aps[i], 6), "vertices": sizes[curves + i],
                           "recall": points[p0:p1], "precision": points[total + p0:total + p1],
                           "threshold": thresholds[p0:p1]}})
    return out


def _classes(support: np.ndarray, n: int) -> list[int]:
    """Class 1 of a binary model; else every class with positives and negatives."""
    if support.size == 2:
        return [1] if 0 < support[1] < n else []
    return ((support > 0) & (support < n)).nonzero()[0].tolist()


def _most_changed(classes: list[int], areas: dict[str, np.ndarray]) -> list[int]:
    """The MAX_CLASSES of `classes` whose ROC-AUC changed most between the models, ascending."""
    change = np.abs(areas["candidate"] - areas["baseline"])
    return sorted(classes[i] for i in np.argsort(-change, kind="stable")[:MAX_CLASSES])


def _drawn(counts: Counts, model: np.ndarray, *, max_points: int, probability: bool,
           areas: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each model's curves (`role_curves` of its rows of `counts`, all rows at once; `model` the model of each row,
    grouped by model in order, as the rankings and the bins give them)."""
    entries = role_curves(counts, max_points=max_points, probability=probability, areas=areas)
    bounds = np.asarray(model).searchsorted(np.arange(len(ROLES) + 1)).tolist()    # rows are grouped by model, in order
    return {role: entries[bounds[i]:bounds[i + 1]] for i, role in enumerate(ROLES)}


def score_curves(odds: dict[str, np.ndarray], y: np.ndarray, class_names: tuple[str, ...], *,
                 rankings: sm.Rankings | None = None,
                 areas: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Both models' curves from every kept sample's log-odds per class (exact), read off `rankings` (both models',
    baseline first, as ROC-AUC and PR-AUC read them) or ranked here; `areas`: the rankings' ROC-AUC and average
    precision of each (model, ranked class), (models, classes) each (`Influence.parts`), when the metrics have them."""
    y = np.asarray(y, dtype=np.int64)
    k = odds["baseline"].shape[1]
    support = np.bincount(y, minlength=k)
    if rankings is None:
        rankings = sm.Rankings([odds[role] for role in ROLES], y)
    nan = np.zeros(k, dtype=bool)
    kept = rankings.kept
    if kept is not None and kept.classes.size:       # the ranked classes (the only ones drawn): a row's NaN flag
        nan[rankings.classes] = kept.nan.reshape(rankings.models, -1).any(axis=0)
    elif kept is None:
        for role in ROLES:
            nan |= np.isnan(odds[role]).any(axis=0)
    total = len(_classes(support, y.size))
    classes = [c for c in _classes(support, y.size) if not nan[c]]     # NaN scores rank nothing
    unranked = total - len(classes)
    if len(classes) > MAX_CLASSES:
        # ranked by the ROC-AUC change first, so that only the classes drawn keep their curves
        by_role: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
        for r in rankings.of(classes):
            area = roc_areas(roc_vertices(ranking_counts(r)))
            for i, role in enumerate(ROLES):
                by_role[role].append(area[r.model == i])
        classes = _most_changed(classes, {role: np.concatenate(a) for role, a in by_role.items()})
    max_points = MAX_POINTS_BINARY if k == 2 else MAX_POINTS_CLASS
    drawn: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for r in rankings.of(classes):
        known = None
        if areas is not None:
            at = rankings.classes.searchsorted(r.classes)
            known = (areas[0][r.model, at], areas[1][r.model, at])
        for role, entries in _drawn(ranking_counts(r), r.model, max_points=max_points, probability=False,
                                    areas=known).items():
            drawn[role] += entries
    counted = support.tolist()
    per_class = [{"class": _name(class_names, c), "index": c, "positives": counted[c],
                  "negatives": y.size - counted[c], "baseline": drawn["baseline"][i],
                  "candidate": drawn["candidate"][i]} for i, c in enumerate(classes)]
    return _curves(per_class, k, max_points, total=total, approximate=False, source=f"every sample ({y.size})",
                   unranked=unranked)


def binned_curves(hist: np.ndarray, support: np.ndarray, n: int, class_names: tuple[str, ...], *,
                  drawable: bool = True) -> dict[str, Any]:
    """Both models' curves from the streamed state's bins: hist[model, class, negative/positive, bin]; none when
    not `drawable` (a model scored a sample NaN, which ranks nothing: as `score_curves` draws no class with one)."""
    hist = np.asarray(hist)
    k, bins = hist.shape[1], hist.shape[3]
    total = len(_classes(np.asarray(support), n))
    classes = _classes(np.asarray(support), n) if drawable else []
    if len(classes) > MAX_CLASSES:
        area = roc_areas(roc_vertices(binned_counts(np.concatenate([hist[m, classes] for m in range(len(ROLES))]))))
        areas = {role: area[m * len(classes):(m + 1) * len(classes)] for m, role in enumerate(ROLES)}
        classes = _most_changed(classes, areas)
    max_points = MAX_POINTS_BINARY if k == 2 else MAX_POINTS_CLASS
    drawn: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    if classes:
        rows = np.concatenate([hist[m, classes] for m in range(len(ROLES))])       # both models' curves at once
        drawn = _drawn(binned_counts(rows), np.repeat(np.arange(len(ROLES)), len(classes)), max_points=max_points,
                       probability=True)
    per_class = [{"class": _name(class_names, c), "index": c, "positives": int(support[c]),
                  "negatives": int(n - support[c]), "baseline": drawn["baseline"][i],
                  "candidate": drawn["candidate"][i]} for i, c in enumerate(classes)]
    return _curves(per_class, k, max_points, total=total, approximate=True, unranked=0 if drawable else total,
                   source=f"{bins} probability bins per class (streamed, {n} samples): approximate")


def _curves(per_class: list[dict[str, Any]], k: int, max_points: int, *, total: int, approximate: bool,
            source: str, unranked: int = 0) -> dict[str, Any]:
    """The details.curves block; `unranked`: classes left out because a model scored a sample NaN there."""
    if k == 2:
        selection = "class 1 against class 0"
    elif len(per_class) < total - unranked:
        selection = f"{len(per_class)} of {total} classes one-vs-rest: those whose ROC-AUC changed most"
    elif len(per_class) < total:
        selection = f"{len(per_class)} of {total} classes one-vs-rest"
    else:
        selection = f"each of {total} classes one-vs-rest"
    if unranked:
        selection += (f"; {unranked} with a NaN score left out (NaN ranks nothing)" if k != 2
                      else "; not drawn: a NaN score ranks nothing")
    return {"approximate": approximate, "source": source, "num_classes": k, "max_points": max_points,
            "selection": selection, "classes_total": total, "classes": per_class}


def _name(names: tuple[str, ...], c: int) -> str:
    return str(names[c]) if c < len(names) else str(c)
