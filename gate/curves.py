"""ROC and precision-recall curves of both models, bounded in size, for the reports (pure numpy).

The vertices are scikit-learn's: `roc_curve` (collinear points dropped, as its `drop_intermediate=True` does) and
`precision_recall_curve` with `drop_intermediate=True` (recall decreasing, ending at recall 0, precision 1; of a run
of thresholds with one recall only its ends). A curve with
more vertices than `max_points` keeps a subset of them, spread evenly along the curve's length, the first and last
always kept: every point drawn is an exact vertex, only the straight segments between kept ones are new. The area
(ROC-AUC, average precision) is taken over every vertex before the thinning.

From the kept per-sample scores the curves are exact; from the streamed state's probability bins
(`StreamedScores.hist`) each bin is one threshold (its lower edge), so the curve is that of the binned scores:
approximate, and labelled so. Binary models: class 1's curve; more classes: one-vs-rest per class, at most
`MAX_CLASSES` of them (those whose ROC-AUC changed most), small multiples in the HTML report.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_POINTS_BINARY = 200      # points per curve of a binary model
MAX_POINTS_CLASS = 60        # points per curve of each class of a multi-class model
MAX_CLASSES = 10             # classes drawn for a multi-class model
ROLES = ("baseline", "candidate")


def clf_counts(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, threshold) at each distinct score, highest first (sklearn's
    `_binary_clf_curve`)."""
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score)[::-1]      # the order within a tie does not matter: counts are read at its end
    s, pos = score[order], np.asarray(positive, dtype=bool)[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]    # not np.diff: inf - inf would split a tie at inf
    tps = np.cumsum(pos, dtype=np.int64)[last]
    return tps, 1 + last - tps, s[last]


def binned_counts(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same from per-bin counts of equal-width probability bins: each non-empty bin, from the top, is one
    threshold (its lower edge)."""
    neg, pos = np.asarray(negatives, dtype=np.int64)[::-1], np.asarray(positives, dtype=np.int64)[::-1]
    bins = neg.size
    full = np.flatnonzero(neg + pos > 0)
    edges = (bins - 1 - np.arange(bins)) / bins
    return np.cumsum(pos)[full], np.cumsum(neg)[full], edges[full]


def roc_vertices(tps: np.ndarray, fps: np.ndarray, thresholds: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, threshold) as sklearn.metrics.roc_curve gives them (drop_intermediate=True; the first threshold
    is +inf, the (0, 0) point)."""
    if tps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def pr_vertices(tps: np.ndarray, fps: np.ndarray, thresholds: np.ndarray, *, drop_intermediate: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recall, precision, threshold) as sklearn.metrics.precision_recall_curve gives them: recall decreasing, one
    more point than thresholds (recall 0, precision 1); `drop_intermediate` keeps only the first and last threshold
    of each run of equal true positives (one recall: a vertical segment, drawn the same)."""
    if drop_intermediate and tps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True])
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros(tps.size), where=predicted != 0)
    recall = np.ones(tps.size) if tps[-1] == 0 else tps / tps[-1]
    return np.r_[recall[::-1], 0.0], np.r_[precision[::-1], 1.0], thresholds[::-1]


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


def _num(x: float, digits: int = 5) -> float | None:
    return None if not np.isfinite(x) else round(float(x), digits)


def _nums(values: np.ndarray, digits: int = 5) -> list[float | None]:
    """Rounded to `digits` decimals, non-finite as None (JSON has no NaN)."""
    return [v if math.isfinite(v) else None for v in np.round(values, digits).tolist()]


def _thresholds(t: np.ndarray, probability: bool) -> list[float | None]:
    """Thresholds as the class's probability (scores are log-odds unless `probability`), 5 significant digits;
    sklearn's +inf (nothing predicted positive) as None."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore"):
        p = t if probability else 1.0 / (1.0 + np.exp(-t))
    return [None if (math.isinf(raw) and raw > 0) else float(f"{q:.5g}") for raw, q in zip(t.tolist(), p.tolist())]


def role_curves(tps: np.ndarray, fps: np.ndarray, thresholds: np.ndarray, *, max_points: int,
                probability: bool) -> dict[str, Any]:
    """One model's ROC and PR curve of one class, thinned, with the area over every vertex."""
    fpr, tpr, roc_t = roc_vertices(tps, fps, thresholds)
    recall, precision, _ = pr_vertices(tps, fps, thresholds)
    auc = float(np.trapezoid(tpr, fpr))
    ap = float(-np.sum(np.diff(recall) * precision[:-1]))              # over every threshold, as sklearn's
    recall, precision, pr_t = pr_vertices(tps, fps, thresholds, drop_intermediate=True)
    keep_roc, keep_pr = thin(fpr, tpr, max_points), thin(recall, precision, max_points)
    pr_thresholds = np.r_[pr_t, np.inf]          # the end point (recall 0, precision 1) has none
    return {
        "roc": {"auc": _num(auc, 6), "vertices": int(fpr.size),
                "fpr": _nums(fpr[keep_roc]), "tpr": _nums(tpr[keep_roc]),
                "threshold": _thresholds(roc_t[keep_roc], probability)},
        "pr": {"average_precision": _num(ap, 6), "vertices": int(recall.size),
               "recall": _nums(recall[keep_pr]), "precision": _nums(precision[keep_pr]),
               "threshold": _thresholds(pr_thresholds[keep_pr], probability)},
    }


def _classes(support: np.ndarray, n: int) -> list[int]:
    """Class 1 of a binary model; else every class with positives and negatives."""
    if support.size == 2:
        return [1] if 0 < support[1] < n else []
    return np.flatnonzero((support > 0) & (support < n)).tolist()


def score_curves(odds: dict[str, np.ndarray], y: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Both models' curves from every kept sample's log-odds per class (exact)."""
    y = np.asarray(y, dtype=np.int64)
    k = odds["baseline"].shape[1]
    support = np.bincount(y, minlength=k)
    classes = [c for c in _classes(support, y.size)
               if not any(np.isnan(odds[role][:, c]).any() for role in ROLES)]   # NaN scores rank nothing
    total = len(_classes(support, y.size))
    if len(classes) > MAX_CLASSES:
        # ranked by the ROC-AUC change first, so that only the classes drawn keep their curves
        change = [abs(_auc(clf_counts(odds["candidate"][:, c], y == c))
                      - _auc(clf_counts(odds["baseline"][:, c], y == c))) for c in classes]
        classes = sorted(classes[i] for i in np.argsort(-np.asarray(change), kind="stable")[:MAX_CLASSES])
    max_points = MAX_POINTS_BINARY if k == 2 else MAX_POINTS_CLASS
    per_class = []
    for c in classes:
        entry: dict[str, Any] = {"class": _name(class_names, c), "index": c, "positives": int(support[c]),
                                 "negatives": int(y.size - support[c])}
        for role in ROLES:
            entry[role] = role_curves(*clf_counts(odds[role][:, c], y == c), max_points=max_points,
                                      probability=False)
        per_class.append(entry)
    return _curves(per_class, k, max_points, total=total, approximate=False, source=f"every sample ({y.size})")


def binned_curves(hist: np.ndarray, support: np.ndarray, n: int, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Both models' curves from the streamed state's bins: hist[model, class, negative/positive, bin]."""
    hist = np.asarray(hist)
    k, bins = hist.shape[1], hist.shape[3]
    classes = _classes(np.asarray(support), n)
    total = len(classes)
    if len(classes) > MAX_CLASSES:
        change = [abs(_auc(binned_counts(*hist[1, c])) - _auc(binned_counts(*hist[0, c]))) for c in classes]
        classes = sorted(classes[i] for i in np.argsort(-np.asarray(change), kind="stable")[:MAX_CLASSES])
    max_points = MAX_POINTS_BINARY if k == 2 else MAX_POINTS_CLASS
    per_class = []
    for c in classes:
        entry: dict[str, Any] = {"class": _name(class_names, c), "index": c, "positives": int(support[c]),
                                 "negatives": int(n - support[c])}
        for m, role in enumerate(ROLES):
            entry[role] = role_curves(*binned_counts(hist[m, c, 0], hist[m, c, 1]), max_points=max_points,
                                      probability=True)
        per_class.append(entry)
    return _curves(per_class, k, max_points, total=total, approximate=True,
                   source=f"{bins} probability bins per class (streamed, {n} samples): approximate")


def _auc(counts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    fpr, tpr, _ = roc_vertices(*counts)
    return float(np.trapezoid(tpr, fpr))


def _curves(per_class: list[dict[str, Any]], k: int, max_points: int, *, total: int, approximate: bool,
            source: str) -> dict[str, Any]:
    if k == 2:
        selection = "class 1 against class 0"
    elif len(per_class) < total:
        selection = f"{len(per_class)} of {total} classes one-vs-rest: those whose ROC-AUC changed most"
    else:
        selection = f"each of {total} classes one-vs-rest"
    return {"approximate": approximate, "source": source, "num_classes": k, "max_points": max_points,
            "selection": selection, "classes_total": total, "classes": per_class}


def _name(names: tuple[str, ...], c: int) -> str:
    return str(names[c]) if c < len(names) else str(c)
