"""Metrics of class probabilities (log loss, Brier, ECE, ROC-AUC, PR-AUC, top-k) and their paired statistics.

Pure numpy/scipy functions over per-sample arrays: `p` is (n, K) probabilities whose rows sum to 1, `y` is (n,)
class indices. Binary (K = 2) metrics read the positive class's column (1), as scikit-learn does.

Every metric that is a mean, or asymptotically one, comes with a per-sample *influence* psi: the metric minus its
true value is about mean(psi), so the standard error of any paired contrast (candidate - baseline, a relative
change) is that of the mean of the contrast's influences. For ROC-AUC the influence is built from DeLong's
structural components (in O(n log n) from one sort of every class, Sun & Xu 2014) and its variance is taken within each
true class (`strata`), which for a binary model is exactly DeLong's variance of the paired AUC difference.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache

import numpy as np
from scipy import sparse
from scipy.special import ndtr

#: Probabilities are clipped to [EPS, 1 - EPS] in the log loss, as scikit-learn clips float64 input: a confident
#: mistake costs at most -log(EPS) = 36.0 nats.
EPS = float(np.finfo(np.float64).eps)
_LOSS_FLOOR, _LOSS_CAP = float(-np.log1p(-EPS)), float(-np.log(EPS))      # -log(1 - EPS), -log(EPS)


@dataclass(frozen=True)
class Influence:
    """A metric's value and its per-sample influence (n,); `strata` (n,) groups whose means are not random."""

    value: float
    psi: np.ndarray
    strata: np.ndarray | None = None
    bias: float = 0.0        # how far the estimate may sit above the truth from its own noise (binned ECE)
    #: a macro average's terms: each ranked class's own value (`Rankings.classes`), NaN rows included
    parts: np.ndarray | None = None


# -------------------------------------------------------------------------------------------- per-sample means


def probabilities(odds: np.ndarray) -> np.ndarray:
    """Class probabilities from per-class log-odds: p = sigmoid(odds), in float64."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(odds, dtype=np.float64)))


def log_loss_terms(odds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-log p(true class) per sample from per-class log-odds (-log p = softplus(-odds), exact where p is near 1),
    p clipped to [EPS, 1 - EPS] as scikit-learn clips float64 input (its log_loss averages these)."""
    true = np.asarray(odds, dtype=np.float64)[np.arange(len(y)), y]
    with np.errstate(invalid="ignore"):     # a NaN score stays NaN, and NaN never passes
        return np.minimum(np.maximum(np.logaddexp(0.0, -true), _LOSS_FLOOR), _LOSS_CAP)   # np.clip's values


def brier_terms(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared error of the probabilities per sample: (p1 - y)^2 for K = 2, sum_k (p_k - [y = k])^2 otherwise.

    The same scale as scikit-learn's brier_score_loss (halved to [0, 1] for binary, [0, 2] for multiclass)."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape[1] == 2:
        return (p[:, 1] - (y == 1)) ** 2
    sq = (p * p).sum(axis=1)
    return sq - 2.0 * p[np.arange(len(y)), y] + 1.0


def top_k_hits(p: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Whether the true class is among the k highest scores (fewer than k classes score strictly higher)."""
    p = np.asarray(p)
    true = p[np.arange(len(y)), y]
    return (p > true[:, None]).sum(axis=1) < k


def mean_influence(terms: np.ndarray) -> Influence:
    return mean_influences(terms)[0]


def mean_influences(terms: np.ndarray, models: int = 1) -> list[Influence]:
    """Each model's mean of its per-sample terms and their influence, the models' terms one block after the other:
    one row-wise reduce (each row numpy's pairwise sum of its own, as np.mean's operations on that block alone)."""
    rows = np.asarray(terms, dtype=np.float64).reshape(models, -1)
    if not rows.shape[1]:
        return [Influence(value=float("nan"), psi=rows[m] - math.nan) for m in range(models)]
    values = np.add.reduce(rows, axis=1) / rows.shape[1]
    psi = rows - values[:, None]
    return [Influence(value=v, psi=psi[m]) for m, v in enumerate(values.tolist())]


# ---------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability diagram: per equal-width confidence bin, samples, mean confidence, accuracy."""

    edges: np.ndarray        # (B + 1,)
    count: np.ndarray        # (B,) int
    confidence: np.ndarray   # (B,) mean top probability (NaN in an empty bin)
    accuracy: np.ndarray     # (B,) share of correct top-1 predictions (NaN in an empty bin)
    ece: float


def confidence_bins(p: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top probability, its bin (intervals (i/B, (i+1)/B], the first closed at 0) and whether top-1 is right."""
    p = np.asarray(p)
    pred = p.argmax(axis=1)
    # the top probability read at the argmax (a row-wise max over a few classes costs several times more); a row
    # with a NaN takes max's NaN, whose sign bit may differ from the one read there
    conf = np.asarray(p[np.arange(len(p)), pred], dtype=np.float64)
    nan = np.isnan(conf)
    if nan.any():
        conf[nan] = p[nan].max(axis=1)
    # fmax: NaN to 0 as nan_to_num does; a negative value lands in the first bin either way
    idx = (np.ceil(np.fmax(conf, 0.0) * bins).astype(np.int64) - 1).clip(0, bins - 1)
    return conf, idx, pred


def reliability(p: np.ndarray, y: np.ndarray, *, bins: int = 15,
                binned: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Reliability:
    """Expected calibration error (Guo et al. 2017): sum_b (n_b / n) |accuracy_b - confidence_b|, with its diagram;
    `binned`: `confidence_bins(p, bins)` when the caller has it."""
    return calibration(binned if binned is not None else confidence_bins(p, bins), y, bins=bins)[0][0]


def calibration(binned: tuple[np.ndarray, np.ndarray, np.ndarray], labels: np.ndarray, *, bins: int,
                models: int = 1) -> tuple[list[Reliability], list[Influence]]:
    """Each model's `reliability` and `ece_influence` from `confidence_bins` of its rows, the models' rows one
    after the other (`models` blocks of len(labels) / models rows, `labels` each row's): one bincount per sum for
    every model and bin at once (each (model, bin) adds the same values in the same order as the model alone)."""
    conf, idx, pred = binned
    n = len(labels) // models
    total = models * bins
    cell = idx + np.arange(0, total, bins).repeat(n) if models > 1 else idx
    correct = (pred == labels).astype(np.float64)
    g = correct - conf
    count = np.bincount(cell, minlength=total).reshape(models, bins)
    conf_sum = np.bincount(cell, weights=conf, minlength=total).reshape(models, bins)
    acc_sum = np.bincount(cell, weights=correct, minlength=total).reshape(models, bins)
    gap_sum = np.bincount(cell, weights=g, minlength=total).reshape(models, bins)
    finite = np.isfinite(conf).reshape(models, n).all(axis=1).tolist() if n else [True] * models
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, acc_sum / count
    shown = (np.add.reduce(np.abs(acc_sum - conf_sum), axis=1) / max(n, 1)).tolist()
    edges = bin_edges(bins)
    diagrams = [Reliability(edges=edges, count=count[m], confidence=mean_conf[m], accuracy=acc[m],
                            ece=shown[m] if finite[m] else float("nan")) for m in range(models)]
    if n == 0:
        return diagrams, [Influence(value=float("nan"), psi=np.full(0, np.nan), bias=float("nan"))] * models
    ece = np.add.reduce(np.abs(gap_sum), axis=1) / n
    psi = np.sign(gap_sum).ravel()[cell] * g - (ece.repeat(n) if models > 1 else ece)
    bias = ece_allowances(gap_sum, np.bincount(cell, weights=g * g, minlength=total).reshape(models, bins), n)
    values, biases = ece.tolist(), bias.tolist()
    influences = [Influence(value=values[m], psi=psi[m * n:(m + 1) * n], bias=biases[m]) if finite[m] else
                  Influence(value=float("nan"), psi=np.full(n, np.nan), bias=float("nan")) for m in range(models)]
    return diagrams, influences


@lru_cache(maxsize=8)
def bin_edges(bins: int) -> np.ndarray:
    """np.linspace(0, 1, bins + 1), read-only (shared by every Reliability of that many bins)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    edges.setflags(write=False)
    return edges


def bin_bias(t: np.ndarray) -> np.ndarray:
    """E|t + Z| - |t| for Z standard normal: the upward bias of |mean| in units of its standard error, at a true
    |mean| of t standard errors (0.80 at 0, 0.17 at 1, 0.02 at 2)."""
    t = np.abs(np.asarray(t, dtype=np.float64))
    return 2.0 * np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi) - 2.0 * t * ndtr(-t)


#: The bias allowance reads each bin's gap as this many standard errors smaller than measured: the plug-in bias at
#: the measured gap understates it for bins whose true gap is near 0 (benchmarks/scores_coverage.py chose it).
ECE_SHRINK = 0.5


def ece_allowance(gap_sum: np.ndarray, gap_sq: np.ndarray, n: int) -> float:
    """How far the binned ECE may sit above the true one from bin noise: sum_b se_b * bin_bias(|gap_b| / se_b - 0.5).

    Per bin b, gap_b = sum of (correct - confidence) over its samples / n and se_b its standard error. |gap_b| is
    biased upwards (a noisy bin whose true gap is 0 shows |gap| ~ 0.8 se on average), by 0 to 0.8 se; the ECE is
    their sum, so its bias is between 0 and about this allowance.
    """
    return float(ece_allowances(np.asarray(gap_sum)[None, :], np.asarray(gap_sq)[None, :], n)[0])


def ece_allowances(gap_sum: np.ndarray, gap_sq: np.ndarray, n: int) -> np.ndarray:
    """`ece_allowance` of each row of (models, bins) sums."""
    if n < 2:
        return np.full(len(gap_sum), np.nan)
    s = np.asarray(gap_sum, dtype=np.float64) / n
    var = np.maximum(np.asarray(gap_sq, dtype=np.float64) / n - s * s, 0.0) / (n - 1)
    se = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, np.abs(s) / np.where(se > 0, se, 1.0), 0.0)
    return (se * bin_bias(np.maximum(t - ECE_SHRINK, 0.0))).sum(axis=1)


def ece_influence(p: np.ndarray, y: np.ndarray, *, bins: int,
                  binned: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Influence:
    """ECE with its delta-method influence and its bias allowance (`bias`).

    ECE = sum_b |gap_b|, gap_b the mean over all samples of (correct - confidence) * [sample in bin b]. Where a
    bin's gap is away from 0, |.| is linear: the influence of sample i in bin b is sign(gap_b) (correct_i -
    confidence_i) - ECE. Near 0 it is not: there the estimate is biased upwards (by up to `bias` in all) and the
    linear variance overstates its spread; an interval widened by the allowance on the side of the bias covers.
    """
    return calibration(binned if binned is not None else confidence_bins(p, bins), y, bins=bins)[1][0]


# ------------------------------------------------------------------------------------ rankings: one sort per model

#: Cells (rows x samples, a row one class of one model) ranked at once when the rankings are not kept: the classes
#: are then taken a chunk at a time, so the working arrays (a few int64 / float64 copies of a chunk) stay bounded
#: whatever the number of classes.
RANK_CELLS = 500_000
#: Up to this many cells every class of both models is sorted together once and the ranking kept, shared by ROC-AUC,
#: PR-AUC and the curves (about 50 bytes a cell kept, about 90 at the peak of the sort: some 90 MB at 1,000,000,
#: e.g. 50,000 samples x 10 classes x 2 models); beyond it each reader ranks chunk by chunk again. Not higher: at
#: 100,000 x 10 one kept sort took more CPU than the chunks sorted three times (1.20 against 0.90 s in
#: benchmarks/scores_scale.py, and 190 MB more at the peak).
KEEP_CELLS = 1_000_000


def ranked_classes(y: np.ndarray, num_classes: int) -> np.ndarray:
    """The classes the one-vs-rest ranking metrics read: class 1 of a binary model when y holds both classes (else
    none), otherwise every class with positives and negatives."""
    support = np.bincount(y, minlength=num_classes)
    if num_classes == 2:
        return np.array([1] if 0 < support[1] < len(y) else [], dtype=np.int64)
    return ((support > 0) & (support < len(y))).nonzero()[0]


@dataclass(frozen=True)
class ClassRanking:
    """One-vs-rest rankings, one row per (model, class): `model[r]`'s scores of class `classes[r]`, each row sorted
    high to low by one argsort of the (rows, samples) array. The order within a run of equal scores is arbitrary:
    what is computed from it is read at a run's ends or from per-run counts (a sample's own value from its run and
    its own label; sums over a run add equal values and zeros), so it is the same whatever that order."""

    model: np.ndarray         # (R,) the model of each row (its index in the Rankings' scores)
    classes: np.ndarray       # (R,) the class of each row
    is_positive: np.ndarray   # (R, n) bool, sample order: the sample is of the row's class
    order: np.ndarray         # (R, n) the sample at each position
    score: np.ndarray         # (R, n) float64, the scores in that order
    positive: np.ndarray      # (R, n) bool, is_positive in that order
    first: np.ndarray         # (R, n) the first position of each position's run of equal scores
    last: np.ndarray          # (R, n) its last position
    tp_above: np.ndarray      # (R, n) positives scored strictly above the run
    tp_through: np.ndarray    # (R, n) positives scored at or above it
    nan: np.ndarray           # (R,) bool: the row's scores hold a NaN (it ranks nothing)
    tied: np.ndarray          # (R,) bool: two of the row's scores are equal (else every run is one position)

    @property
    def positives(self) -> np.ndarray:
        return self.tp_through[:, -1] if self.order.shape[1] else np.zeros(self.classes.size, dtype=np.int64)

    def flat(self, position: np.ndarray) -> np.ndarray:
        """Row-wise positions (R, n) as positions in the flattened (R, n) arrays."""
        return position + (np.arange(self.classes.size) * self.order.shape[1])[:, None]

    @cached_property
    def flat_order(self) -> np.ndarray:
        """flat(order): where each sorted position's value goes in the flattened sample-order arrays (`auc_parts`'
        and `ap_parts`' per-row influences scatter back through it; the macro averages bincount instead)."""
        return self.flat(self.order)

    def rows(self, index: np.ndarray) -> ClassRanking:
        """The rankings of rows `index` only."""
        return ClassRanking(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def rank_rows(score: np.ndarray, is_positive: np.ndarray, classes: np.ndarray,
              model: np.ndarray | None = None) -> ClassRanking:
    """Rank each row of `score` (R, n) against its `is_positive` (R, n): one argsort for every row, the runs of
    equal scores found once in the flattened rows (each row's first position starts a run); where no row has two
    equal scores (continuous scores, the usual case) every run is one position and nothing is looked up."""
    x = np.ascontiguousarray(score, dtype=np.float64)
    c, n = x.shape
    is_positive = np.ascontiguousarray(is_positive, dtype=bool)
    order = (-x).argsort(axis=1)            # quicksort (vectorised); no stable sort needed, see ClassRanking
    base = (np.arange(c) * n)[:, None]
    at = order + base
    s = x.take(at)
    positive = is_positive.take(at)
    new = np.empty((c, n), dtype=bool)
    new[:, :1] = True
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:])        # not np.diff: inf - inf would split a tie at inf
    tp = positive.cumsum(axis=1)                         # positives at or above each position, per row
    model = np.zeros(c, dtype=np.int64) if model is None else np.asarray(model, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    nan = np.isnan(s[:, -1]) if n else np.zeros(c, dtype=bool)   # NaN sorts last
    tied = ~new.all(axis=1)
    if not tied.any():                                       # every run one position: first = last = itself
        position = np.broadcast_to(np.arange(n), (c, n))
        return ClassRanking(model=model, classes=classes, is_positive=is_positive, order=order, score=s,
                            positive=positive, first=position, last=position, tp_above=tp - positive,
                            tp_through=tp, nan=nan, tied=tied)
    run = new.ravel().cumsum() - 1
    starts = new.ravel().nonzero()[0]
    stops = np.append(starts[1:], c * n) if starts.size else starts
    tp = tp.ravel()
    return ClassRanking(model=model, classes=classes, is_positive=is_positive, order=order, score=s,
                        positive=positive, first=starts[run].reshape(c, n) - base,
                        last=(stops - 1)[run].reshape(c, n) - base,
                        tp_above=(tp[starts] - positive.ravel()[starts])[run].reshape(c, n),
                        tp_through=tp[stops - 1][run].reshape(c, n), nan=nan, tied=tied)


def rank_classes(scores: Sequence[np.ndarray], y: np.ndarray, classes: np.ndarray) -> ClassRanking:
    """The one-vs-rest rankings of `classes` (columns of each model's `scores` (n, K), positives where y is the
    class), model by model: rows model 0's classes, then model 1's."""
    classes = np.asarray(classes, dtype=np.int64)
    every = classes.size == np.shape(scores[0])[1] and bool((classes == np.arange(classes.size)).all())
    columns = [np.asarray(s, dtype=np.float64).T if every else np.asarray(s, dtype=np.float64)[:, classes].T
               for s in scores]                 # every column: no copy before the one concatenate makes
    is_positive = np.asarray(y)[None, :] == classes[:, None]
    return rank_rows(np.concatenate(columns) if len(columns) > 1 else columns[0],
                     np.concatenate([is_positive] * len(columns)) if len(columns) > 1 else is_positive,
                     np.concatenate([classes] * len(columns)), np.repeat(np.arange(len(columns)), classes.size))


class Rankings:
    """The models' one-vs-rest rankings of the classes the ranking metrics read (`ranked_classes`), a chunk of
    classes at a time (each chunk every model's rows of its classes). When every row fits `keep` cells (KEEP_CELLS)
    it is sorted once and kept, and ROC-AUC, PR-AUC and the curves read the same sort; beyond it each reader ranks
    chunk by chunk (`cells`, RANK_CELLS) again (memory stays one chunk's)."""

    def __init__(self, scores: Sequence[np.ndarray], y: np.ndarray, *, cells: int = RANK_CELLS,
                 keep: int = KEEP_CELLS) -> None:
        self.scores = [np.asarray(s, dtype=np.float64) for s in scores]
        self.y = np.asarray(y)
        self.n = self.y.size
        self.classes = ranked_classes(self.y, self.scores[0].shape[1])
        self.step = max(1, cells // max(self.n * len(self.scores), 1))
        whole = self.classes.size * self.n * len(self.scores)
        self._kept = (rank_classes(self.scores, self.y, self.classes)
                      if self.classes.size <= self.step or whole <= keep else None)

    @property
    def models(self) -> int:
        return len(self.scores)

    @property
    def kept(self) -> ClassRanking | None:
        """The one ranking of every row, when it is kept (else None: the readers rank chunk by chunk)."""
        return self._kept

    def __iter__(self) -> Iterator[ClassRanking]:
        return self.of(self.classes)

    def of(self, classes: np.ndarray | list[int]) -> Iterator[ClassRanking]:
        """The rankings of `classes` (some of `self.classes`, ascending), a chunk of classes at a time."""
        classes = np.asarray(classes, dtype=np.int64)
        if self._kept is not None:
            if classes.size == self.classes.size:
                yield self._kept
            elif classes.size:
                pos = np.searchsorted(self.classes, classes)
                yield self._kept.rows((pos[None, :] + self.classes.size * np.arange(self.models)[:, None]).ravel())
            return
        for start in range(0, classes.size, self.step):
            yield rank_classes(self.scores, self.y, classes[start:start + self.step])


def segment_sums(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The sum of each run of `sizes` consecutive values, each numpy's pairwise sum of its own (as np.sum of that
    run alone; np.add.reduceat adds in sequence, which rounds differently)."""
    ends = np.asarray(sizes).cumsum().tolist()
    reduce = np.add.reduce
    out, start = [], 0
    for end in ends:
        out.append(reduce(values[start:end]))
        start = end
    return np.array(out, dtype=np.float64)


def _per_model(rankings: Rankings, parts: dict[str, Callable[[ClassRanking], tuple[np.ndarray, np.ndarray]]],
               strata: dict[str, np.ndarray | None]) -> dict[str, list[Influence]]:
    """Each model's macro average over the ranked classes of each of `parts` (per row: a value and its influence
    (R, n) in the sorted order), the classes' influences averaged per sample: one weighted bincount per part and
    chunk scatters the rows back to sample order and adds them, row after row (as a per-class loop adds them; a
    chunk's onto the running sums of the ones before)."""
    n, m = rankings.n, rankings.models
    if not rankings.classes.size:
        return {name: [Influence(value=float("nan"), psi=np.full(n, np.nan), strata=strata[name], parts=np.zeros(0))
                       for _ in range(m)] for name in parts}
    values: dict[str, list[list[np.ndarray]]] = {name: [[] for _ in range(m)] for name in parts}
    sums: dict[str, np.ndarray | None] = dict.fromkeys(parts)
    broken = np.zeros(m, dtype=bool)
    for r in rankings:
        broken[r.model[r.nan]] = True
        bins = (r.order + (r.model * n)[:, None]).ravel()         # the (model, sample) each sorted position is
        bounds = r.model.searchsorted(np.arange(m + 1)).tolist()      # rows are grouped by model, in order
        for name, part in parts.items():
            value, sorted_psi = part(r)
            for i in range(m):
                values[name][i].append(value[bounds[i]:bounds[i + 1]])
            before = sums[name]
            if before is None:
                sums[name] = np.bincount(bins, weights=sorted_psi.ravel(), minlength=m * n)
            else:
                sums[name] = np.bincount(np.concatenate([np.arange(m * n), bins]),
                                         weights=np.concatenate([before, sorted_psi.ravel()]), minlength=m * n)
    out: dict[str, list[Influence]] = {}
    for name in parts:
        out[name] = []
        total = sums[name]
        assert total is not None
        for i in range(m):
            v = values[name][i][0] if len(values[name][i]) == 1 else np.concatenate(values[name][i])
            if broken[i]:
                out[name].append(Influence(value=float("nan"), psi=np.full(n, np.nan), strata=strata[name], parts=v))
                continue
            out[name].append(Influence(value=float(np.add.reduce(v) / v.size),       # np.mean's operations
                                       psi=total[i * n:(i + 1) * n] / rankings.classes.size, strata=strata[name],
                                       parts=v))
    return out


def ranking_influences(rankings: Rankings) -> tuple[list[Influence], list[Influence]]:
    """(ROC-AUC, PR-AUC) of each ranked model with their influences (`roc_aucs`, `pr_aucs`), from one pass over the
    rankings."""
    out = _per_model(rankings, {"roc_auc": _auc_sorted, "pr_auc": _ap_sorted},
                     {"roc_auc": rankings.y, "pr_auc": None})
    return out["roc_auc"], out["pr_auc"]


# -------------------------------------------------------------------------------------------------- ROC-AUC


def _in_sample_order(r: ClassRanking, sorted_values: np.ndarray) -> np.ndarray:
    out = np.empty(r.order.shape)
    out.ravel()[r.flat_order] = sorted_values
    return out


def _auc_sorted(r: ClassRanking) -> tuple[np.ndarray, np.ndarray]:
    """`auc_parts` with the influences in each row's sorted order."""
    c, n = r.order.shape
    n1 = r.positives
    n0 = n - n1
    pos = r.positive
    if r.tied.any():            # twice the counts: a tie counts half
        count = np.where(pos, 2 * n0[:, None] - (r.first - r.tp_above) - (r.last + 1 - r.tp_through),
                         r.tp_above + r.tp_through)
        unit = 0.5
    else:                       # a positive: negatives below it, n0 - (p + 1 - tp); a negative: positives above, tp
        count = np.where(pos, (n0[:, None] - 1 - np.arange(n)) + r.tp_through, r.tp_through)
        unit = 1.0
    pairs = n0 * n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (np.add.reduce(np.where(pos, count, 0), axis=1) * unit) / pairs     # exact counts, one division
        scale = (unit * n) / pairs
        psi = count * scale[:, None] - np.where(pos, (n / n1 * auc)[:, None], (n / n0 * auc)[:, None])
    return auc, psi


def auc_parts(r: ClassRanking) -> tuple[np.ndarray, np.ndarray]:
    """Each row's AUC (R,) and its DeLong influence (R, n) in sample order.

    DeLong's structural components: V10 (a positive) the share of negatives scored below it, ties half; V01 (a
    negative) the share of positives scored above it, ties half; both average to the AUC (Sun & Xu 2014's midrank
    differences, counted from the run ends: whole and half counts, exact). The influence is (n / n1)(V10 - AUC) for
    a positive and (n / n0)(V01 - AUC) for a negative, computed as count * n / (n0 n1) - (n / n1 or n / n0) AUC from
    the exact counts (V10 = count / n0, V01 = count / n1); the AUC is the positives' counts summed exactly (integers),
    over n0 n1.
    """
    auc, psi = _auc_sorted(r)
    return auc, _in_sample_order(r, psi)


def present_classes(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Classes with both positives and negatives in `y`: the ones a one-vs-rest average can include."""
    support = np.bincount(y, minlength=num_classes)
    return np.flatnonzero((support > 0) & (support < len(y)))


def roc_aucs(rankings: Rankings) -> list[Influence]:
    """Each ranked model's ROC-AUC (binary: the positive class; multiclass: one-vs-rest macro over the classes
    present) with its DeLong influence, stratified by the true class."""
    return _per_model(rankings, {"roc_auc": _auc_sorted}, {"roc_auc": rankings.y})["roc_auc"]


def roc_auc(p: np.ndarray, y: np.ndarray) -> Influence:
    """One model's ROC-AUC with its DeLong influence (`roc_aucs`)."""
    return roc_aucs(Rankings([p], y))[0]


# ---------------------------------------------------------------------------------------- average precision


_AP_CELLS = 4_000_000


def _joins(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For average precision: (row, sample) entries of the matrix whose row g sums the positives that first count
    as predicted positive at the g-th distinct positive score t_g (t_0 > t_1 > ...), row G + g the negatives."""
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    thresholds = np.unique(s[pos])[::-1]
    g = np.searchsorted(-thresholds, -s, side="left")                      # first t_g <= s (G: never)
    counted = g < thresholds.size
    return np.where(pos, g, g + thresholds.size)[counted], np.flatnonzero(counted), int(thresholds.size)


def _ap_from_sums(sums: np.ndarray, size: int) -> np.ndarray:
    tp = np.cumsum(sums[:size], axis=0)
    fp = np.cumsum(sums[size:], axis=0)
    d_tp = np.diff(tp, axis=0, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        out = np.sum(d_tp * precision, axis=0) / tp[-1]
    return np.where(tp[-1] > 0, out, np.nan)


def _average_precision_t(scores: list[np.ndarray], positives: list[np.ndarray], wt: np.ndarray) -> np.ndarray:
    """Average precision of each (score, positive) pair for every weight column of `wt` (n, R): (pairs, R).

    Recall only moves at thresholds that hold a positive, so precision is needed only there. Each sample first
    counts as predicted positive at the first positive score t_g <= its own; one sparse matrix with one entry per
    sample and pair sums the weights that join at each t_g, and cumulative sums over g give TP_g and FP_g for every
    column at once: O(n R) per pair from one read of the weights (this runs inside the bootstrap). Whole-number
    weights below 2^24 add exactly in float32.
    """
    rows, cols, sizes, offset = [], [], [], 0
    for score, positive in zip(scores, positives):
        r, c, size = _joins(score, positive)
        rows.append(r + offset)
        cols.append(c)
        sizes.append(size)
        offset += 2 * size
    n = wt.shape[0]
    joins = sparse.csr_matrix((np.ones(sum(map(len, rows)), dtype=wt.dtype),
                               (np.concatenate(rows), np.concatenate(cols))), shape=(offset, n))
    sums = np.asarray(joins @ wt, dtype=np.float64)
    out, start = [], 0
    for size in sizes:
        out.append(_ap_from_sums(sums[start:start + 2 * size], size) if size else np.full(wt.shape[1], np.nan))
        start += 2 * size
    return np.vstack(out)


def average_precision(score: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's average_precision_score, sum over distinct thresholds of (R_n - R_{n-1}) P_n, for each row of
    sample weights (R, n) (one row of ones when None)."""
    w = np.ones((1, len(score)), dtype=np.float32) if weights is None else np.atleast_2d(weights)
    return _average_precision_t([score], [positive], np.ascontiguousarray(w.T))[0]


def pr_auc(p: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """PR-AUC as average precision (binary: class 1; multiclass: one-vs-rest macro over the classes present in y),
    for each row of sample weights (R, n) (one row of ones when None). `p` may be any per-class score monotone in
    the probability (log-odds): only its order matters."""
    p = np.asarray(p)
    k = p.shape[1]
    classes = [1] if k == 2 else present_classes(y, k).tolist()
    w = np.ones((1, len(y)), dtype=np.float32) if weights is None else np.atleast_2d(weights)
    if not classes or (k == 2 and len(present_classes(y, 2)) < 2):
        return np.full(w.shape[0], np.nan)
    wt = np.ascontiguousarray(w.T, dtype=np.float32)
    step = max(1, _AP_CELLS // max(len(y), 1))          # classes per sparse product: bounded index memory
    total = np.zeros(w.shape[0])
    for start in range(0, len(classes), step):
        chunk = classes[start:start + step]
        total += _average_precision_t([p[:, c] for c in chunk], [y == c for c in chunk], wt).sum(axis=0)
    return total / len(classes)


def ap_parts(r: ClassRanking) -> tuple[np.ndarray, np.ndarray]:
    """Each row's average precision (scikit-learn's, ties included) (C,) and its influence (C, n) in sample order.

    AP = sum_i y_i h(s_i) / sum_i y_i with h(t) = A(t) / B(t), the precision at threshold t: A(t) the share of all
    samples that are positive and score >= t, B(t) the share that score >= t. Moving mass onto sample k changes
    h(t) by [s_k >= t] (y_k - h(t)) / B(t), so the influence of k is
    (y_k h(s_k) - AP pi + (1/n) sum_{positive i, s_i <= s_k} (y_k - h(s_i)) / B(s_i) - AP (y_k - pi)) / pi,
    pi the share of positives; suffix sums over each row's sorted positions give every k at once.
    """
    ap, psi = _ap_sorted(r)
    return ap, _in_sample_order(r, psi)


def _ap_sorted(r: ClassRanking) -> tuple[np.ndarray, np.ndarray]:
    """`ap_parts` with the influences in each row's sorted order."""
    c, n = r.order.shape
    n1 = r.positives
    ys = r.positive
    tied = bool(r.tied.any())
    with np.errstate(invalid="ignore", divide="ignore"):
        above = (r.last + 1).astype(np.float64) if tied else np.arange(1.0, n + 1.0)   # samples scoring >= each
        h = r.tp_through / above
        ap = segment_sums(h[ys], n1) / n1
        w = np.where(ys, n / above, 0.0)                          # 1 / B(s_i) on the positives
        wh = w * h
        if tied:                                                  # in the rows reversed: sums from the bottom
            at_first = r.flat(n - 1 - r.first)
            tail_c = w[:, ::-1].cumsum(axis=1).take(at_first)  # over positives scoring <= s_k
            tail_ch = wh[:, ::-1].cumsum(axis=1).take(at_first)
        else:                                                     # each its own run: from itself down
            tail_c = w[:, ::-1].cumsum(axis=1)[:, ::-1]
            tail_ch = wh[:, ::-1].cumsum(axis=1)[:, ::-1]
        # (y_k h - AP pi + (y_k tail_c - tail_ch) / n - AP (y_k - pi)) / pi, its AP pi terms cancelled
        psi = (ys * (h + tail_c / n - ap[:, None]) - tail_ch / n) / (n1 / n)[:, None]
    return ap, psi


def average_precision_influence(score: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """Average precision of one score against its positives and its per-sample influence (`ap_parts`), O(n log n)."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    if not y.any() or np.isnan(s).any():
        return float("nan"), np.full(s.size, np.nan)
    ap, psi = ap_parts(rank_rows(s[None, :], y[None, :], np.array([1])))
    return float(ap[0]), psi[0]


def pr_aucs(rankings: Rankings) -> list[Influence]:
    """Each ranked model's PR-AUC (binary: class 1; multiclass: one-vs-rest macro over the classes present) with
    its influence, the classes' influences averaged per sample."""
    return _per_model(rankings, {"pr_auc": _ap_sorted}, {"pr_auc": None})["pr_auc"]


def pr_auc_influence(p: np.ndarray, y: np.ndarray) -> Influence:
    """One model's PR-AUC with its influence (`pr_aucs`); `p` may be any per-class score monotone in the
    probability."""
    return pr_aucs(Rankings([p], y))[0]


# ------------------------------------------------------------------------------------------------- contrasts


def sample_variance(x: np.ndarray) -> float:
    """np.var(x, ddof=1) of a 1-D float64 array, the same operations without its per-call cost: the mean (a pairwise
    sum / n), the squared deviations' pairwise sum / (n - 1)."""
    d = x - np.add.reduce(x) / x.size
    return np.add.reduce(d * d) / (x.size - 1)


def contrast_se(psi: np.ndarray, strata: np.ndarray | None) -> float:
    """Standard error of mean(psi): the sample variance within each stratum (all one stratum when None), / n."""
    psi = np.asarray(psi, dtype=np.float64)
    n = psi.size
    if n < 2:
        return float("nan")
    if strata is None:
        return float(np.sqrt(sample_variance(psi) / n))
    groups = stratum_groups(strata)
    sizes = np.bincount(groups).astype(np.float64)
    means = np.bincount(groups, weights=psi) / sizes
    ss = np.bincount(groups, weights=(psi - means[groups]) ** 2)
    scale = np.where(sizes > 1, sizes / np.maximum(sizes - 1, 1), 0.0)
    return float(np.sqrt(np.sum(scale * ss)) / n)


def stratum_groups(strata: np.ndarray) -> np.ndarray:
    """np.unique(strata, return_inverse=True)[1]: each value's place among the distinct values, ascending (for
    non-negative integers, such as labels, from a bincount: no sort)."""
    strata = np.asarray(strata)
    if strata.dtype.kind in "iu" and strata.size and strata.min() >= 0:
        present = np.bincount(strata) > 0
        return (present.cumsum() - 1)[strata]
    return np.unique(strata, return_inverse=True)[1]


def delong_paired(p_baseline: np.ndarray, p_candidate: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(AUC baseline, AUC candidate, standard error of their difference) by DeLong's paired method."""
    b, c = roc_aucs(Rankings([p_baseline, p_candidate], y))
    return b.value, c.value, contrast_se(c.psi - b.psi, y)


# --------------------------------------------------------------------------------------------- streamed state


class StreamedScores:
    """Sufficient statistics of the score metrics for very large N, merged by addition, O(K x bins) memory.

    Exact: the log loss and Brier sums, top-k hits and the paired (b, c) counts, the reliability bins (so the ECE).
    Approximate: ROC-AUC and PR-AUC from `bins` equal-width bins of each class's probability, positives and
    negatives counted apart (as torchmetrics' thresholded AUROC does): samples in one bin tie, so the result is the
    metric of the binned scores, within about one bin's share of the ranking of the exact one.
    """

    def __init__(self, num_classes: int, *, bins: int, ece_bins: int, top_k: int) -> None:
        self.k, self.bins, self.ece_bins, self.top_k = num_classes, bins, ece_bins, top_k
        self.n = 0
        self.support = np.zeros(num_classes, dtype=np.int64)
        self.loss = np.zeros(2)
        self.brier = np.zeros(2)
        self.hits = np.zeros(2, dtype=np.int64)
        self.discordant = np.zeros(2, dtype=np.int64)            # (baseline hit only, candidate hit only)
        self.hist = np.zeros((2, num_classes, 2, bins), dtype=np.int64)
        self.rel = np.zeros((2, 4, ece_bins))          # count, confidence sum, correct sum, (correct - confidence)^2 sum

    def update(self, odds: tuple[np.ndarray, np.ndarray], y: np.ndarray) -> None:
        y = np.asarray(y, dtype=np.int64)
        self.n += y.size
        self.support += np.bincount(y, minlength=self.k)
        hits = []
        for m, o in enumerate(odds):
            o = np.asarray(o, dtype=np.float64)
            p = probabilities(o)
            self.loss[m] += log_loss_terms(o, y).sum()
            self.brier[m] += brier_terms(p, y).sum()
            if self.k > self.top_k:
                hits.append(top_k_hits(o, y, self.top_k))
                self.hits[m] += int(hits[-1].sum())
            # a NaN score ranks nothing: its row goes to bin 0 here, and the model's Brier sum (NaN from that row on,
            # through every merge) makes each of its ranking metrics NaN, which fails (`has_nan`)
            with np.errstate(invalid="ignore"):
                idx = np.minimum(np.where(np.isnan(p), 0, p * self.bins).astype(np.int64), self.bins - 1)
            is_pos = (y[:, None] == np.arange(self.k)[None, :]).astype(np.int64)
            cell = ((np.arange(self.k)[None, :] * 2 + is_pos) * self.bins + idx).ravel()
            self.hist[m] += np.bincount(cell, minlength=self.k * 2 * self.bins).reshape(self.k, 2, self.bins)
            conf, b, pred = confidence_bins(p, self.ece_bins)
            self.rel[m, 0] += np.bincount(b, minlength=self.ece_bins)
            self.rel[m, 1] += np.bincount(b, weights=conf, minlength=self.ece_bins)
            correct = (pred == y).astype(np.float64)
            self.rel[m, 2] += np.bincount(b, weights=correct, minlength=self.ece_bins)
            self.rel[m, 3] += np.bincount(b, weights=(correct - conf) ** 2, minlength=self.ece_bins)
        if hits:
            self.discordant += [int(np.sum(hits[0] & ~hits[1])), int(np.sum(~hits[0] & hits[1]))]

    def has_nan(self, m: int) -> bool:
        """Whether model m scored any sample NaN (its Brier sum is NaN then: every class's probability enters it)."""
        return bool(np.isnan(self.brier[m]))

    def _classes(self) -> list[int]:
        present = np.flatnonzero((self.support > 0) & (self.support < self.n))
        return [1] if self.k == 2 else present.tolist()

    def roc_auc(self, m: int) -> float:
        """Mann-Whitney AUC of the binned scores (ties within a bin count half); macro one-vs-rest."""
        if self.has_nan(m):
            return float("nan")
        values = []
        for c in self._classes():
            neg, pos = self.hist[m, c, 0].astype(np.float64), self.hist[m, c, 1].astype(np.float64)
            if pos.sum() == 0 or neg.sum() == 0:
                return float("nan")
            below = np.cumsum(neg) - neg
            values.append(float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum())))
        return float(np.mean(values)) if values else float("nan")

    def pr_auc(self, m: int) -> float:
        """Average precision of the binned scores, thresholds at the bins from the top; macro one-vs-rest."""
        if self.has_nan(m):
            return float("nan")
        values = []
        for c in self._classes():
            neg, pos = self.hist[m, c, 0][::-1].astype(np.float64), self.hist[m, c, 1][::-1].astype(np.float64)
            if pos.sum() == 0:
                return float("nan")
            tp, fp = np.cumsum(pos), np.cumsum(neg)
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
            values.append(float(np.sum(pos * precision) / pos.sum()))
        return float(np.mean(values)) if values else float("nan")

    def reliability(self, m: int) -> Reliability:
        count, conf_sum, acc_sum, _ = self.rel[m]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf, acc = conf_sum / count, acc_sum / count
        return Reliability(edges=np.linspace(0.0, 1.0, self.ece_bins + 1), count=count.astype(np.int64),
                           confidence=mean_conf, accuracy=acc, ece=float(np.sum(np.abs(acc_sum - conf_sum)) / self.n))

    _ARRAYS = ("support", "loss", "brier", "hits", "discordant", "hist", "rel")

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as int64 / float64 arrays that add up across shards (gate.sharding)."""
        out = {key: getattr(self, key).copy() for key in self._ARRAYS}
        out["n"] = np.array([self.n], dtype=np.int64)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Take summed `arrays()` (ValueError when a shape is not this state's)."""
        for key in self._ARRAYS:
            own = getattr(self, key)
            value = np.asarray(arrays[key])
            if value.shape != own.shape:
                raise ValueError(f"scores: stream.{key} has shape {value.shape}, expected {own.shape}")
            setattr(self, key, value.astype(own.dtype))
        self.n = int(np.asarray(arrays["n"]).sum())

    def ece_bias(self, m: int) -> float:
        """The ECE's bias allowance (`ece_allowance`) over every sample streamed."""
        return ece_allowance(self.rel[m, 2] - self.rel[m, 1], self.rel[m, 3], self.n)

    def nbytes(self) -> int:
        return int(self.hist.nbytes + self.rel.nbytes + self.support.nbytes)
