"""Classification metrics of two models on the same samples, from one streamed state.

The state is a sparse joint count table over cells (label y, baseline prediction pb, candidate prediction pc). It merges
by addition (sharded evaluation can sum it), stays at most min(n, K^3) cells, and a paired bootstrap over samples is
exactly a multinomial resample of its counts, so every metric below is computed for a whole matrix of weights at once.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gate import stats
from gate.distributions import norm


#: Codes PairedCounts.update keeps before counting them (512 KB): a batch costs one array append, not a np.unique
#: and a loop over its cells, and memory stays bounded whatever the data's size.
PENDING_CODES = 1 << 16


class PairedCounts:
    """Joint counts of (label, baseline prediction, candidate prediction)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._table: dict[int, int] = {}
        # codes of the batches since the last fold: counted once, when read (or every PENDING_CODES codes)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        # cells() and point_metrics() of the counts as they are: several checks read them after the pass
        self._memo: dict[str, Any] = {}

    def update(self, labels: np.ndarray, pred_baseline: np.ndarray, pred_candidate: np.ndarray) -> None:
        self._memo = {}
        k = self.num_classes
        codes = (np.asarray(labels, dtype=np.int64) * k + np.asarray(pred_baseline, dtype=np.int64)) * k + np.asarray(
            pred_candidate, dtype=np.int64
        )
        self._pending.append(codes.reshape(-1))
        self._pending_size += codes.size
        if self._pending_size >= PENDING_CODES:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        codes = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._pending_size = [], 0
        uniq, cnt = np.unique(codes, return_counts=True)
        table = self._table
        for code, c in zip(uniq.tolist(), cnt.tolist()):
            table[code] = table.get(code, 0) + c

    @property
    def _counts(self) -> dict[int, int]:
        """code -> count, every update counted."""
        self._fold()
        return self._table

    @_counts.setter
    def _counts(self, table: dict[int, int]) -> None:
        self._pending, self._pending_size, self._table = [], 0, table

    def merge(self, other: PairedCounts) -> PairedCounts:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge counts of different class counts")
        out = PairedCounts(self.num_classes)
        table = dict(self._counts)
        for code, c in other._counts.items():
            table[code] = table.get(code, 0) + c
        out._counts = table
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, counts), both int64 and sorted by code: the state a shard writes (gate.sharding)."""
        table = self._counts
        codes = np.array(sorted(table), dtype=np.int64)
        return codes, np.array([table[c] for c in codes.tolist()], dtype=np.int64)

    @classmethod
    def from_arrays(cls, num_classes: int, codes: np.ndarray, counts: np.ndarray) -> PairedCounts:
        """The counts `arrays()` gave, checked: codes within K^3 cells, counts positive, one per code."""
        codes, counts = np.asarray(codes), np.asarray(counts)
        k3 = num_classes ** 3
        if (codes.shape != counts.shape or codes.ndim != 1 or np.unique(codes).size != codes.size
                or (codes.size and (codes.min() < 0 or codes.max() >= k3 or counts.min() < 1))):
            raise ValueError(f"paired counts: expected distinct codes in 0..{k3 - 1} with positive counts")
        out = cls(num_classes)
        out._counts = dict(zip(codes.tolist(), counts.tolist()))
        return out

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def cells(self) -> Cells:
        """The cells, sorted by code; shared by every reader until the next update, so read-only."""
        if "cells" not in self._memo:
            k = self.num_classes
            table = self._counts
            codes = np.array(sorted(table), dtype=np.int64)
            counts = np.array([table[c] for c in codes.tolist()], dtype=np.int64)
            self._memo["cells"] = Cells(y=_read_only(codes // (k * k)), pb=_read_only((codes // k) % k),
                                        pc=_read_only(codes % k), counts=_read_only(counts), num_classes=k)
        return self._memo["cells"]


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Cells:
    y: np.ndarray
    pb: np.ndarray
    pc: np.ndarray
    counts: np.ndarray
    num_classes: int


def _div(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """num/den with `empty` where den is 0 (0.0 is scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def model_metrics(cells: Cells, pred: np.ndarray, weights: np.ndarray, *, empty: float = 0.0) -> dict[str, np.ndarray]:
    """Metrics of one model for each row of weights (R, m): accuracy (R,), per-class arrays (R, K), macro/weighted F1.

    `empty` is the recall and F1 of a class with no samples in that row, and the precision of a class the model
    never predicts in that row: 0 for point estimates (scikit-learn's zero_division=0), NaN for bootstrap
    replicates, where a class absent from a resample says nothing about its recall or precision.
    One-hots are sparse (cells x classes would be 400 MB at 50,000 cells x 1,000 classes).
    """
    k = cells.num_classes
    w = np.atleast_2d(weights).astype(np.float64)
    y1 = _sparse_onehot(cells.y, k)
    n = w.sum(axis=1)
    support = _rowsum(w, y1)
    predicted = _rowsum(w, _sparse_onehot(pred, k))
    tp = _rowsum(w, _sparse_onehot(cells.y, k, pred == cells.y))
    precision = _div(tp, predicted, empty)
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
    base_ok = cells.pb == cells.y
    cand_ok = cells.pc == cells.y
    neg = (base_ok & ~cand_ok).astype(np.float64)
    pos = (~base_ok & cand_ok).astype(np.float64)
    n = w.sum(axis=1)
    support = _rowsum(w, _sparse_onehot(cells.y, k))
    neg_k = _rowsum(w, _sparse_onehot(cells.y, k, neg))
    return {
        "negative_flips": w @ neg,
        "positive_flips": w @ pos,
        "negative_flip_rate": _div(w @ neg, n),
        "positive_flip_rate": _div(w @ pos, n),
        "agreement": _div(w @ (cells.pb == cells.pc).astype(np.float64), n),
        "per_class_negative_flips": neg_k,
        "per_class_positive_flips": _rowsum(w, _sparse_onehot(cells.y, k, pos)),
        "per_class_negative_flip_rate": _div(neg_k, support, empty),
    }


def _rowsum(w: np.ndarray, onehot: Any) -> np.ndarray:
    """w @ onehot for dense (R, m) weights and an (m, K) one-hot, dense or sparse: (R, K) dense."""
    if isinstance(onehot, np.ndarray):
        return w @ onehot
    return np.asarray(onehot.T.dot(w.T).T)


def confusion_matrix(cells: Cells, pred: np.ndarray) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class (scikit-learn's layout)."""
    k = cells.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (cells.y, pred), cells.counts)
    return cm


def point_metrics(counts: PairedCounts) -> dict[str, dict[str, np.ndarray]]:
    """Point estimates (weights = the observed counts) for both models and between them; rows squeezed.

    Computed once per state of the counts and shared (accuracy, per_class, flips and the report read them): the
    arrays are read-only, so a reader that wanted to change one must copy it."""
    if "point" not in counts._memo:
        cells = counts.cells()
        w = cells.counts[None, :]
        squeeze = lambda d: {key: _read_only(val[0]) if val.ndim > 1 else val[0] for key, val in d.items()}  # noqa: E731
        counts._memo["point"] = {
            "baseline": squeeze(model_metrics(cells, cells.pb, w)),
            "candidate": squeeze(model_metrics(cells, cells.pc, w)),
            "comparison": squeeze(comparison_metrics(cells, w)),
        }
    return counts._memo["point"]


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


@dataclass(frozen=True)
class ClassCounts:
    """Per-class paired counts, each (K,): what the analytic per-class tests need (no resampling).

    `negative` / `positive`: samples of the class the baseline gets right and the candidate wrong / the reverse
    (the discordant pairs of the class's recall); `tp_*` true positives and `predicted_*` predictions per model.
    """

    support: np.ndarray
    negative: np.ndarray
    positive: np.ndarray
    tp_baseline: np.ndarray
    tp_candidate: np.ndarray
    predicted_baseline: np.ndarray
    predicted_candidate: np.ndarray


def class_counts(cells: Cells) -> ClassCounts:
    k, w = cells.num_classes, cells.counts
    ok_b, ok_c = cells.pb == cells.y, cells.pc == cells.y

    def per_class(index: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        weights = w if mask is None else np.where(mask, w, 0)
        return np.bincount(index, weights=weights, minlength=k).astype(np.int64)

    return ClassCounts(
        support=per_class(cells.y), negative=per_class(cells.y, ok_b & ~ok_c), positive=per_class(cells.y, ~ok_b & ok_c),
        tp_baseline=per_class(cells.y, ok_b), tp_candidate=per_class(cells.y, ok_c),
        predicted_baseline=per_class(cells.pb), predicted_candidate=per_class(cells.pc),
    )


def precision_drop_se(cells: Cells, cc: ClassCounts, *, bound: float | None = None) -> np.ndarray:
    """Standard error of each class's precision drop (baseline - candidate), by the delta method; NaN if unpredicted.

    Each model's precision is a ratio T / P over its own predictions of the class; the two share the samples both
    predict as k, which makes them paired. Var = v_b + v_c - 2 cov, evaluated at Agresti-Caffo smoothed
    precisions ((T + 1) / (P + 2): a class predicted perfectly by both models still has a non-zero variance). With
    `bound`, the variance is taken where the null "drop = bound" puts the two precisions (their mean -+ bound / 2),
    as a score test does: at the observed precisions (Wald) the test that claims "within" was measured liberal
    (2.8% at nominal 2.5%, `benchmarks/stats_simulation.py --precision`), because a low estimate comes with a low
    variance. The covariance runs over the cells both models predict as k.
    """
    k, w = cells.num_classes, cells.counts.astype(np.float64)
    pb_s, pc_s = cc.predicted_baseline + 2.0, cc.predicted_candidate + 2.0
    pi_b, pi_c = (cc.tp_baseline + 1.0) / pb_s, (cc.tp_candidate + 1.0) / pc_s
    if bound is not None:
        mid = (pi_b + pi_c) / 2.0
        pi_b = np.clip(mid + bound / 2.0, 0.5 / pb_s, 1.0 - 0.5 / pb_s)
        pi_c = np.clip(mid - bound / 2.0, 0.5 / pc_s, 1.0 - 0.5 / pc_s)
    v_b, v_c = pi_b * (1 - pi_b) / pb_s, pi_c * (1 - pi_c) / pc_s
    both = cells.pb == cells.pc
    kk = cells.pb[both]
    t = (cells.y[both] == kk).astype(np.float64)
    prod = w[both] * (t - pi_b[kk]) * (t - pi_c[kk])
    cov = np.bincount(kk, weights=prod, minlength=k) / (pb_s * pc_s)
    var = np.maximum(v_b + v_c - 2.0 * cov, 0.0)
    floor = 0.5 / np.maximum(pb_s, pc_s)       # never finer than half a prediction
    se = np.maximum(np.sqrt(var), floor)
    return np.where((cc.predicted_baseline > 0) & (cc.predicted_candidate > 0), se, np.nan)


def precision_correction(cc: ClassCounts) -> np.ndarray:
    """Continuity correction of the precision-drop test: one prediction of the less-predicting model."""
    return 1.0 / (np.minimum(cc.predicted_baseline, cc.predicted_candidate) + 2.0)


#: Up to this many cells x classes a one-hot is a dense array (a few MB); beyond it, a scipy.sparse matrix, imported
#: only then (it costs 0.14 s to import, a tenth of a small run).
DENSE_ONEHOT_MAX = 1 << 20


def _sparse_onehot(idx: np.ndarray, k: int, values: np.ndarray | None = None) -> Any:
    data = np.ones(idx.size) if values is None else values.astype(np.float64)
    if idx.size * k <= DENSE_ONEHOT_MAX:
        out = np.zeros((idx.size, k), dtype=np.float64)
        out[np.arange(idx.size), idx] = data
        return out
    from scipy import sparse

    return sparse.csr_matrix((data, (np.arange(idx.size), idx)), shape=(idx.size, k))


#: Resamples x cells drawn at once by the bootstrap (8 MB of int64 weights): the rows per block follow from it.
BOOTSTRAP_BLOCK = 1 << 20


def _class_sum_plan(cells: Cells, *, joint: bool = False) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """The class sums every bootstrap row needs, each as (the cells it adds, None for all; their classes):
    support (label), predictions of the baseline and of the candidate, true positives of each (label, over the
    cells that model gets right); with `joint` also the predictions both models share (the cells where they
    predict the same class) and the true positives both share, which with the five give each class's joint
    (label, baseline, candidate) pattern counts (`pattern_counts`)."""
    right_b, right_c = np.flatnonzero(cells.pb == cells.y), np.flatnonzero(cells.pc == cells.y)
    plan = [(None, cells.y), (None, cells.pb), (None, cells.pc), (right_b, cells.y[right_b]),
            (right_c, cells.y[right_c])]
    if joint:
        same = np.flatnonzero(cells.pb == cells.pc)
        right = np.flatnonzero((cells.pb == cells.y) & (cells.pc == cells.y))
        plan += [(same, cells.pb[same]), (right, cells.y[right])]
    return plan


#: From this many resamples per block, a block's class sums are one numpy add per (cell, sum) of the transposed
#: weights (about 2 us each, over contiguous rows); below, one weighted bincount per sum (scattered adds, no loop).
LOOP_SUM_ROWS = 256


def _class_sums(w: np.ndarray, plan: list[tuple[np.ndarray | None, np.ndarray]], k: int) -> np.ndarray:
    """(R, len(plan) K) float64 sums of each row's weights over the plan's cells by class: whole counts, so exact and
    the same in any order (the one-hot products' values, bit for bit)."""
    rows, m = w.shape
    if rows < LOOP_SUM_ROWS:
        wf = w.astype(np.float64)
        offsets = np.arange(rows)[:, None] * k
        return np.concatenate([
            np.bincount((offsets + cls[None, :]).ravel(), weights=(wf if idx is None else wf[:, idx]).ravel(),
                        minlength=rows * k).reshape(rows, k)
            for idx, cls in plan], axis=1)
    by_cell = np.ascontiguousarray(w.T, dtype=np.float64)                 # (cells, R): rows contiguous
    sums = np.zeros((len(plan) * k, rows))
    for g, (idx, cls) in enumerate(plan):
        for cell, column in zip(range(m) if idx is None else idx.tolist(), (g * k + cls).tolist()):
            row = sums[column]
            np.add(row, by_cell[cell], out=row)
    return np.ascontiguousarray(sums.T)       # row-major, as the summaries sum each row in the same order


def _summaries(n: np.ndarray, support: np.ndarray, predicted: np.ndarray, tp: np.ndarray,
               *, per_class: bool) -> dict[str, dict[str, np.ndarray]]:
    """Both models' replicates from one block's sums: `support` (R, K), `predicted` and `tp` (R, 2, K), axis 1 the
    baseline and the candidate. A class absent from a resample adds 0 to macro / weighted F1's sums (2 tp / den
    is 0 there, as tp is) and is not counted; its per-class figures are NaN."""
    s = support[:, None, :]
    den = s + predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        nan_f1 = den == 0 if per_class else None
        # in place, to keep a block's temporaries few: den becomes max(den, 1), then f1 * support
        f1 = np.multiply(tp, 2.0)
        np.divide(f1, np.maximum(den, 1.0, out=den), out=f1)
        present = (support > 0).sum(axis=1)[:, None]
        total = support.sum(axis=1)[:, None]
        both = {
            "accuracy": np.where(n[:, None] > 0, tp.sum(axis=2) / np.where(n > 0, n, 1.0)[:, None], 0.0),
            "macro_f1": np.where(present > 0, f1.sum(axis=2) / np.where(present > 0, present, 1), 0.0),
            "weighted_f1": np.where(total > 0, np.multiply(f1, s, out=den).sum(axis=2) / np.where(total > 0, total, 1.0),
                                    0.0),
        }
        if per_class:
            both.update(precision=np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1.0), np.nan),
                        recall=np.where(s > 0, tp / np.where(s > 0, s, 1.0), np.nan),
                        f1=np.where(nan_f1, np.nan, f1))
    return {role: {key: np.ascontiguousarray(val[:, i]) for key, val in both.items()}
            for i, role in enumerate(("baseline", "candidate"))}


def bootstrap_block_rows(cells: Cells, resamples: int) -> int:
    """Resamples per block of the bootstrap: as many as keep a block at `BOOTSTRAP_BLOCK` weights."""
    return max(1, min(resamples, BOOTSTRAP_BLOCK // max(cells.counts.size, 1)))


def bootstrap_replicates(cells: Cells, *, resamples: int, seed: int, per_class: bool,
                         chunk: int | None = None,
                         blocks: Iterable[np.ndarray] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Paired-bootstrap replicates of both models' accuracy, macro F1 and weighted F1 (R,) (and, if `per_class`,
    per-class precision / recall / F1 (R, K), and under "patterns" / "counts" each resample's (7, R, K) int32
    pattern counts (`pattern_counts`) for the bootstrap-t's standard errors), drawn in blocks of `chunk` resamples
    (by default as many as keep a block at `BOOTSTRAP_BLOCK` weights), so memory is a block plus the outputs,
    never resamples x cells or cells x classes. The blocks draw the same rows as one draw of all of them
    (gate.stats.iter_bootstrap_weights); `blocks`, when given, are those blocks already being drawn (on another
    thread: gate.checks.classification.prefetch_replicates).

    A block's class sums (`_class_sums`) are row adds or weighted bincounts of whole counts: exact, without a
    one-hot, BLAS or its thread pool; both models' figures then come from one pass over (R, 2, K) arrays.
    """
    k = cells.num_classes
    plan = _class_sum_plan(cells, joint=per_class)
    rows = chunk or bootstrap_block_rows(cells, resamples)
    if blocks is None:
        blocks = stats.iter_bootstrap_weights(cells.counts, resamples=resamples, seed=seed, chunk=rows)
    parts: dict[str, list[dict[str, np.ndarray]]] = {"baseline": [], "candidate": []}
    patterns: list[np.ndarray] = []
    for w in blocks:
        sums = _class_sums(w, plan, k)
        n = w.sum(axis=1).astype(np.float64)
        rows_k = (w.shape[0], 2, k)
        for role, out in _summaries(n, sums[:, :k], sums[:, k:3 * k].reshape(rows_k),
                                    sums[:, 3 * k:5 * k].reshape(rows_k), per_class=per_class).items():
            parts[role].append(out)
        if per_class:
            patterns.append(pattern_counts(*(sums[:, g * k:(g + 1) * k] for g in range(7))).astype(np.int32))
    out = {role: {key: np.concatenate([b[key] for b in got]) if len(got) > 1 else got[0][key]
                  for key in got[0]} for role, got in parts.items()}
    if per_class:
        out["patterns"] = {"counts": np.concatenate(patterns, axis=1) if len(patterns) > 1 else patterns[0]}
    return out


# ------------------------------------------------------------------- delta-method standard errors per class

#: The joint codes 4y + 2b + c of a class's samples (y: of the class; b, c: predicted as it by the baseline /
#: the candidate) that carry weight in its metrics: every code but 0 (a sample that touches the class not at all).
PATTERN_CODES = np.arange(1, 8)


def class_patterns(cells: Cells) -> np.ndarray:
    """(7, K) float64 counts of each class's codes 1..7 in the data itself (`pattern_counts`)."""
    k = cells.num_classes
    sums = _class_sums(cells.counts[None, :], _class_sum_plan(cells, joint=True), k)[0]
    return pattern_counts(*(sums[g * k:(g + 1) * k] for g in range(7)))


def pattern_counts(support: np.ndarray, predicted_b: np.ndarray, predicted_c: np.ndarray, tp_b: np.ndarray,
                   tp_c: np.ndarray, predicted_both: np.ndarray, tp_both: np.ndarray) -> np.ndarray:
    """(7, ...) counts of the codes 1..7 (`PATTERN_CODES`) from a class's seven sums, any shape, by inclusion and
    exclusion: e.g. code 6 (of the class, predicted as it by the baseline only) = tp_b - tp_both."""
    n111 = tp_both
    n110, n101, n011 = tp_b - tp_both, tp_c - tp_both, predicted_both - tp_both
    n100 = support - tp_b - tp_c + tp_both
    n010 = predicted_b - tp_b - predicted_both + tp_both
    n001 = predicted_c - tp_c - predicted_both + tp_both
    return np.stack([n001, n010, n011, n100, n101, n110, n111])


#: Which of the codes 1..7 (indices 0..6 of a (7, ...) pattern array) are of the class (y), predicted as it by the
#: baseline (b), by the candidate (c): code = 4y + 2b + c.
_CODE_Y, _CODE_B, _CODE_C = (3, 4, 5, 6), (1, 2, 5, 6), (0, 2, 4, 6)


def _code_sum(n: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    return n[idx[0]] + n[idx[1]] + n[idx[2]] + n[idx[3]]


def _influence_parts(metric: str, n: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per model (baseline, candidate): (value, its denominator D, its numerator's weight) from (7, ...) counts."""
    support = _code_sum(n, _CODE_Y)
    out = []
    for bits, both in ((_CODE_B, (5, 6)), (_CODE_C, (4, 6))):
        predicted, tp = _code_sum(n, bits), n[both[0]] + n[both[1]]
        if metric == "recall":
            den, num = support, tp
        elif metric == "precision":
            den, num = predicted, tp
        elif metric == "f1":
            den, num = support + predicted, 2.0 * tp
        else:
            raise ValueError(f"no per-class influence for {metric!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        out.append((value, den, num))
    return out


def _code_influence(metric: str, value: np.ndarray, den: np.ndarray, y: int, p: int) -> np.ndarray:
    """A code's influence on one model's metric, in count units (the derivative of the value in that count)."""
    t = y * p
    scale, load = {"recall": (1.0, y), "precision": (1.0, p), "f1": (2.0, y + p)}[metric]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (scale * t - value * load) / np.where(den > 0, den, np.nan)


def class_metric_influence(metric: str, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Both models' `metric` (precision, recall, F1) and each code's influence on it, from (7, ...) pattern counts:
    (value_b, value_c, a_b, a_c), values (...) and influences (7, ...) in count units (the derivative of the value
    in each count), so that by the delta method Var(value) = sum over codes of count * a^2 (the multinomial
    covariance of the counts; the influences sum to 0 over the samples).

    recall T / S: a = (t - R y) / S; precision T / P: a = (t - Pr p) / P; F1 2T / (S + P): a = (2t - F (y + p)) /
    (S + P), with y, p, t = y p the code's bits (of the class, predicted as it, both). NaN where the metric is
    undefined (its denominator 0)."""
    n = np.asarray(patterns, dtype=np.float64)
    (vb, db, _), (vc, dc, _) = _influence_parts(metric, n)
    codes = PATTERN_CODES.tolist()
    ab = np.stack([_code_influence(metric, vb, db, (j >> 2) & 1, (j >> 1) & 1) for j in codes])
    ac = np.stack([_code_influence(metric, vc, dc, (j >> 2) & 1, j & 1) for j in codes])
    return vb, vc, ab, ac


def _rule_gradient(rule: str, vb: np.ndarray, vc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the compared value, its derivative in the baseline's value, in the candidate's)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "max_drop":
            return vb - vc, np.ones_like(vb), -np.ones_like(vc)
        if rule == "max_relative_drop":
            return np.where(vb > 0, (vb - vc) / vb, np.nan), vc / (vb * vb), -1.0 / vb
        if rule == "min":
            return vc, np.zeros_like(vb), np.ones_like(vc)
    raise ValueError(f"no per-class standard error for rule {rule!r}")


def _half_move(rule: str, db: np.ndarray, db_den: np.ndarray, dc: np.ndarray, dc_den: np.ndarray) -> np.ndarray:
    """Half a sample's move of the compared value, 0.5 max(|d_b| / D_b, |d_c| / D_c); the candidate's term alone
    for `min` (d_b = 0 there, and D_b may be 0: 0 / 0 would void the floor)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = np.abs(dc) / dc_den
        return 0.5 * (cand if rule == "min" else np.maximum(np.abs(db) / db_den, cand))


def class_rule_influence(metric: str, rule: str, patterns: np.ndarray, *, fieller: float | np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compared value (...), each code's influence on it u (7, ...), half the rule's sample move (...)) of a
    per-class rule from (7, ...) pattern counts: the drop b - c (`max_drop`), the relative drop (b - c) / b
    (`max_relative_drop`), the candidate's value (`min`); u = d_b a_b + d_c a_c, the rule's gradient times the
    codes' influences (`class_metric_influence`), and half a sample's move 0.5 max(|d_b| / D_b, |d_c| / D_c) with
    D the metric's denominators. NaN where the value is undefined. With `fieller` = B for `max_relative_drop`,
    the linear (1 - B) b - c instead, whose sign is the relative drop's side of B (b > 0), as Fieller's test of a
    ratio takes it: no ratio to linearise."""
    n = np.asarray(patterns, dtype=np.float64)
    (vb, db_den, _), (vc, dc_den, _) = _influence_parts(metric, n)
    value, db, dc = _rule_gradient(rule, vb, vc)
    if fieller is not None and rule == "max_relative_drop":
        value = np.where(np.isfinite(value), (1.0 - fieller) * vb - vc, np.nan)
        db, dc = np.full_like(vb, 1.0 - fieller), -np.ones_like(vc)
    codes = PATTERN_CODES.tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.stack([(0.0 if rule == "min" else db * _code_influence(metric, vb, db_den, (j >> 2) & 1, (j >> 1) & 1))
                      + dc * _code_influence(metric, vc, dc_den, (j >> 2) & 1, j & 1) for j in codes])
        half = _half_move(rule, db, db_den, dc, dc_den)
    return value, u, np.where(np.isfinite(half), half, 0.0)


def class_rule_se(metric: str, rule: str, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(compared value, its delta-method standard error), each (...), of a per-class rule (`class_rule_influence`)
    from (7, ...) pattern counts: Var = sum over codes of count * u^2 (the multinomial covariance of the counts
    through the gradient; the influences sum to 0 over the samples, so no centring term). Never below half a
    sample's move, so a resample whose models agree on the class still gets a finite t; NaN where the value is
    undefined. One code at a time: no (7, ...) temporaries beyond the counts' own."""
    n = np.asarray(patterns, dtype=np.float64)
    (vb, db_den, _), (vc, dc_den, _) = _influence_parts(metric, n)
    value, db, dc = _rule_gradient(rule, vb, vc)
    var = np.zeros(value.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, j in enumerate(PATTERN_CODES.tolist()):
            u = dc * _code_influence(metric, vc, dc_den, (j >> 2) & 1, j & 1)
            if rule != "min":
                u = u + db * _code_influence(metric, vb, db_den, (j >> 2) & 1, (j >> 1) & 1)
            var += n[i] * u * u
        half = _half_move(rule, db, db_den, dc, dc_den)
        se = np.maximum(np.sqrt(var), np.where(np.isfinite(half), half, 0.0))
    ok = np.isfinite(value) & np.isfinite(se)
    return np.where(ok, value, np.nan), np.where(ok, se, np.nan)


#: Bisection steps for the score test's restricted MLE (`null_variance`): its multiplier's range halves each step.
SCORE_STEPS = 60


def class_score_test(metric: str, rule: str, patterns: np.ndarray, *, bound: float | np.ndarray) -> np.ndarray:
    """z (...) of a per-class rule's compared value against `bound`, with the variance where the null "value =
    bound" puts the counts, as a score test takes it (Tango's for a paired proportion does the same): the pattern
    counts as Poisson means at their restricted maximum-likelihood estimate (`null_variance`), the value linear
    in them through the codes' influences u (`class_rule_influence`). At the observed counts alone (Wald, or
    the bootstrap-t's se) a class with one or two discordant samples looks precise, because its estimate and its
    variance are small together; under the null they are not. Never finer than half a sample's move; NaN where
    the value is undefined.

    Example: one sample of the class that the candidate loses (code 6) and 19 both get right (code 7) give an F1
    drop of 0.026 with a Wald se of 0.026 (claims "within 0.1", z = -2.9); the null puts about 4 lost samples
    there, z = -1.5."""
    n = np.asarray(patterns, dtype=np.float64)
    if rule == "max_relative_drop" and RELATIVE_FIELLER:
        value, u, half = class_rule_influence(metric, rule, n, fieller=bound)
        gap = -value                                   # (1 - B) b - c against 0
    else:
        value, u, half = class_rule_influence(metric, rule, n)
        gap = bound - value
    with np.errstate(invalid="ignore"):
        z = -gap / np.maximum(np.sqrt(null_variance(n, u, gap)), half)
    return np.where(np.isfinite(value), z, np.nan)


#: Bisection steps for each bound of the score test's inverted interval (`class_score_interval`): a bracket of
#: 2 / 2^50 on a drop's [-1, 1]; and the grid a relative drop's ends are first scanned on (Fieller's z is not
#: monotone in the bound far out, near 1 and far below 0, for a class of a few samples).
SCORE_INTERVAL_STEPS = 50
SCORE_INTERVAL_GRID = 33
#: Points of the finer scan of the scan cell where the sign pattern changes (its two ends included), before the
#: bisection: several crossings inside that cell (z can cross the level twice there, for a relative drop of a
#: class of a few samples) then give the outermost one, not whichever the bisection happens to reach.
SCORE_INTERVAL_SUBGRID = 9


def class_score_interval(metric: str, rule: str, patterns: np.ndarray, *, alpha: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (...) of a per-class rule's compared value that inverts `class_score_test` at one-sided level
    `alpha`: the bounds it claims nothing against. z falls as the bound rises (measured for drops and `min`; for a
    relative drop in Fieller's form too, except far out), so `high` is the outermost bound where "value < bound" is
    not claimed (p = Phi(z) >= alpha) and `low` the outermost where "value > bound" is not (Phi(-z) >= alpha).
    Each end by bisection from the value (z = 0) toward the end of the rule's range, every class at once: [-1, 1]
    for a drop, [0, 1] for `min`, (-inf, 1] for a relative drop (there after a scan of `SCORE_INTERVAL_GRID`
    points for the outermost crossing, and a finer one of `SCORE_INTERVAL_SUBGRID` points in its cell; the low end in q = 1 / (1 - bound), down to q = 1e-12, and -inf where even
    that claims nothing: Fieller's unbounded set). Each end is its bracket's claimed side, so the interval never
    claims more than the test. NaN where the value is undefined.

    Example: one lost sample of 20 (code 6: 1, code 7: 19), F1 drop 1/39: [-0.075, 0.142] at alpha 0.025, so
    "within 0.1" is not claimed."""
    n = np.asarray(patterns, dtype=np.float64)
    value, _, _ = class_rule_influence(metric, rule, n)
    ok = np.isfinite(value)
    v = np.where(ok, value, 0.0)

    def p_at(bound: np.ndarray, *, upper: bool) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = class_score_test(metric, rule, n, bound=bound)
        return np.where(ok, norm.cdf(z) if upper else norm.sf(z), 1.0)

    relative = rule == "max_relative_drop"
    grid = SCORE_INTERVAL_GRID if relative else 2
    high, _ = _outer_end(lambda t: v + t * (1.0 - v), lambda b: p_at(b, upper=True) < alpha, v.shape, grid=grid)
    if relative:
        q_v = 1.0 / (1.0 - np.minimum(v, 1.0 - 1e-12))
        low, edge = _outer_end(lambda t: 1.0 - 1.0 / (q_v * (1e-12 / q_v) ** t),
                               lambda b: p_at(b, upper=False) < alpha, v.shape, grid=grid)
        low = np.where(edge, -np.inf, low)
    else:
        bottom = 0.0 if rule == "min" else -1.0
        low, _ = _outer_end(lambda t: v + t * (bottom - v), lambda b: p_at(b, upper=False) < alpha, v.shape,
                            grid=grid)
    return np.where(ok, low, np.nan), np.where(ok, high, np.nan)


def _outer_end(bound_at: Any, claimed: Any, shape: tuple[int, ...], *, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(the outermost bound not claimed against, up to the claimed side of a bisection bracket; whether it is the
    range's end) along the path t -> bound_at(t), t in [0, 1] from the value (t = 0, never claimed) outward: the
    last unclaimed point of a `grid`-point scan; with grid > 2, the last unclaimed point of a finer
    `SCORE_INTERVAL_SUBGRID`-point scan of the cell after it (where the sign pattern changes); then
    `SCORE_INTERVAL_STEPS` bisection steps toward the next point."""
    ts = np.linspace(0.0, 1.0, grid)
    unclaimed = np.stack([~claimed(bound_at(np.full(shape, t))) for t in ts])
    unclaimed[0] = True
    last = grid - 1 - np.argmax(unclaimed[::-1], axis=0)
    edge = last == grid - 1
    lo, hi = ts[last], ts[np.minimum(last + 1, grid - 1)]
    if grid > 2:
        fractions = np.linspace(0.0, 1.0, SCORE_INTERVAL_SUBGRID)
        width = hi - lo
        inner = np.stack([~claimed(bound_at(lo + f * width)) for f in fractions[1:-1]])   # (SUBGRID - 2, ...)
        found = inner.any(axis=0)
        j = inner.shape[0] - 1 - np.argmax(inner[::-1], axis=0)                          # last unclaimed inside
        lo, hi = (np.where(found, lo + fractions[1:-1][j] * width, lo),
                  np.where(found, lo + fractions[1:][j + 1] * width, hi))
    for _ in range(SCORE_INTERVAL_STEPS):
        mid = (lo + hi) / 2.0
        cl = claimed(bound_at(mid))
        lo, hi = np.where(cl, lo, mid), np.where(cl, mid, hi)
    return np.where(edge, bound_at(np.ones(shape)), bound_at(hi)), edge


#: Whether the score test of a relative drop tests (1 - B) b - c against 0 (Fieller's form) rather than the
#: linearised ratio against B.
RELATIVE_FIELLER = True


def null_variance(n: np.ndarray, u: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Var of sum(count * u) at the Poisson restricted MLE of the code means mu under "sum (mu - n) u = gap", all
    (7, ...) / (...): maximising sum(n log mu - mu) gives mu_j = n_j / (1 + lam u_j), lam of the sign opposite to
    the gap and |lam| < 1 / u*, u* the largest move toward the bound over every code, seen or not. When the seen
    codes cannot carry the gap by |lam| = 1 / u* (the code of u* unseen), the likelihood is flat in that code's
    mean there, and it carries the rest: Var = sum(mu u^2) + rest u*. lam by bisection, every class at once."""
    sign = np.where(gap >= 0, 1.0, -1.0)
    v = np.where(np.isfinite(u), sign * u, 0.0)                          # the moves toward the bound
    top = np.max(v, axis=0)
    target = np.abs(np.where(np.isfinite(gap), gap, 0.0))
    limit = np.where(top > 0, 1.0 / np.where(top > 0, top, 1.0), 0.0)    # |lam| < 1 / u*

    def means(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the gap carried, mu) at |lam| = t."""
        with np.errstate(divide="ignore", invalid="ignore"):
            den = 1.0 - t * v
            mu = np.where(n > 0, n / np.where(den > 0, den, np.inf), 0.0)
        return ((mu - n) * v).sum(axis=0), mu

    lo, hi = np.zeros_like(top), limit
    for _ in range(SCORE_STEPS):
        mid = (lo + hi) / 2.0
        carried, _ = means(mid)
        over = carried >= target
        hi, lo = np.where(over, mid, hi), np.where(over, lo, mid)
    carried, mu = means(lo)
    rest = np.maximum(target - carried, 0.0)
    return (mu * v * v).sum(axis=0) + rest * np.maximum(top, 0.0)
