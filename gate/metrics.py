"""Classification metrics of two models on the same samples, from one streamed state.

The state is a sparse joint count table over cells (label y, baseline prediction pb, candidate prediction pc). It merges
by addition (sharded evaluation can sum it), stays at most min(n, K^3) cells, and a paired bootstrap over samples is
exactly a multinomial resample of its counts, so every metric below is computed for a whole matrix of weights at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class PairedCounts:
    """Joint counts of (label, baseline prediction, candidate prediction)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._counts: dict[int, int] = {}

    def update(self, labels: np.ndarray, pred_baseline: np.ndarray, pred_candidate: np.ndarray) -> None:
        k = self.num_classes
        codes = (np.asarray(labels, dtype=np.int64) * k + np.asarray(pred_baseline, dtype=np.int64)) * k + np.asarray(
            pred_candidate, dtype=np.int64
        )
        uniq, cnt = np.unique(codes, return_counts=True)
        for code, c in zip(uniq.tolist(), cnt.tolist()):
            self._counts[code] = self._counts.get(code, 0) + c

    def merge(self, other: PairedCounts) -> PairedCounts:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge counts of different class counts")
        out = PairedCounts(self.num_classes)
        out._counts = dict(self._counts)
        for code, c in other._counts.items():
            out._counts[code] = out._counts.get(code, 0) + c
        return out

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def cells(self) -> Cells:
        k = self.num_classes
        codes = np.array(sorted(self._counts), dtype=np.int64)
        counts = np.array([self._counts[c] for c in codes.tolist()], dtype=np.int64)
        return Cells(y=codes // (k * k), pb=(codes // k) % k, pc=codes % k, counts=counts, num_classes=k)


@dataclass(frozen=True)
class Cells:
    y: np.ndarray
    pb: np.ndarray
    pc: np.ndarray
    counts: np.ndarray
    num_classes: int


def _onehot(idx: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((idx.size, k), dtype=np.float64)
    out[np.arange(idx.size), idx] = 1.0
    return out


def _div(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """num/den with `empty` where den is 0 (0.0 is scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def model_metrics(cells: Cells, pred: np.ndarray, weights: np.ndarray, *, empty: float = 0.0) -> dict[str, np.ndarray]:
    """Metrics of one model for each row of weights (R, m): accuracy (R,), per-class arrays (R, K), macro/weighted F1.

    `empty` is the recall and F1 of a class with no samples in that row: 0 for point estimates (scikit-learn's
    convention), NaN for bootstrap replicates, where a class absent from a resample says nothing about its recall.
    """
    k = cells.num_classes
    w = np.atleast_2d(weights).astype(np.float64)
    y1 = _onehot(cells.y, k)
    p1 = _onehot(pred, k)
    n = w.sum(axis=1)
    support = w @ y1
    predicted = w @ p1
    tp = w @ (y1 * p1)
    precision = _div(tp, predicted)
    recall = _div(tp, support, empty)
    f1 = _div(2.0 * tp, support + predicted, empty)
    present = support > 0
    n_present = present.sum(axis=1)
    macro_f1 = _div(np.where(present, f1, 0.0).sum(axis=1), n_present)
    weighted_f1 = _div(np.where(present, f1 * support, 0.0).sum(axis=1), support.sum(axis=1))
    return {
        "accuracy": _div(tp.sum(axis=1), n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "macro_f1": macro_f1,
        "weighted_f1": weighted_f1,
    }


def comparison_metrics(cells: Cells, weights: np.ndarray, *, empty: float = 0.0) -> dict[str, np.ndarray]:
    """Flip figures for each row of weights: negative flips = baseline right and candidate wrong."""
    k = cells.num_classes
    w = np.atleast_2d(weights).astype(np.float64)
    y1 = _onehot(cells.y, k)
    base_ok = cells.pb == cells.y
    cand_ok = cells.pc == cells.y
    neg = (base_ok & ~cand_ok).astype(np.float64)
    pos = (~base_ok & cand_ok).astype(np.float64)
    n = w.sum(axis=1)
    support = w @ y1
    return {
        "negative_flips": w @ neg,
        "positive_flips": w @ pos,
        "negative_flip_rate": _div(w @ neg, n),
        "positive_flip_rate": _div(w @ pos, n),
        "agreement": _div(w @ (cells.pb == cells.pc).astype(np.float64), n),
        "per_class_negative_flips": w @ (y1 * neg[:, None]),
        "per_class_positive_flips": w @ (y1 * pos[:, None]),
        "per_class_negative_flip_rate": _div(w @ (y1 * neg[:, None]), support, empty),
    }


def confusion_matrix(cells: Cells, pred: np.ndarray) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class (scikit-learn's layout)."""
    k = cells.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (cells.y, pred), cells.counts)
    return cm


def point_metrics(counts: PairedCounts) -> dict[str, dict[str, np.ndarray]]:
    """Point estimates (weights = the observed counts) for both models and between them; rows squeezed."""
    cells = counts.cells()
    w = cells.counts[None, :]
    squeeze = lambda d: {key: val[0] for key, val in d.items()}  # noqa: E731
    return {
        "baseline": squeeze(model_metrics(cells, cells.pb, w)),
        "candidate": squeeze(model_metrics(cells, cells.pc, w)),
        "comparison": squeeze(comparison_metrics(cells, w)),
    }


def metrics_report(counts: PairedCounts, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The report's `metrics` section: plain floats and lists, per-class tables and confusion matrices."""
    cells = counts.cells()
    pm = point_metrics(counts)
    out: dict[str, Any] = {"num_samples": counts.total}
    for role, pred in (("baseline", cells.pb), ("candidate", cells.pc)):
        m = pm[role]
        out[role] = {
            "accuracy": float(m["accuracy"]),
            "macro_f1": float(m["macro_f1"]),
            "weighted_f1": float(m["weighted_f1"]),
            "per_class": [
                {
                    "class": name,
                    "precision": float(m["precision"][i]),
                    "recall": float(m["recall"][i]),
                    "f1": float(m["f1"][i]),
                    "support": int(round(m["support"][i])),
                }
                for i, name in enumerate(class_names)
            ],
            "confusion_matrix": confusion_matrix(cells, pred).tolist(),
        }
    c = pm["comparison"]
    out["comparison"] = {
        "agreement": float(c["agreement"]),
        "negative_flip_rate": float(c["negative_flip_rate"]),
        "positive_flip_rate": float(c["positive_flip_rate"]),
        "negative_flips": int(round(c["negative_flips"])),
        "positive_flips": int(round(c["positive_flips"])),
        "per_class": [
            {
                "class": name,
                "negative_flips": int(round(c["per_class_negative_flips"][i])),
                "positive_flips": int(round(c["per_class_positive_flips"][i])),
                "negative_flip_rate": float(c["per_class_negative_flip_rate"][i]),
            }
            for i, name in enumerate(class_names)
        ],
    }
    return out
