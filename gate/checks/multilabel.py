"""Multi-label models (independent per-label probabilities): per-label and averaged metrics, flips, paired rules.

State: one code per (sample, label), uint8 (N, L): bit 2 the true label, bit 1 the baseline's prediction, bit 0
the candidate's (`code = 4y + 2pb + pc`, the cell code of a 2-class gate.metrics.PairedCounts), so each label's
column is one 2-class paired table and each row keeps the labels of a sample together. That is N x L bytes
(stated in the details); it is needed because micro / macro F1, Hamming loss and subset accuracy move with
several labels of the same sample at once, which per-label sums cannot see.

Which statistic backs which rule (docs/checks/multilabel.md has the measured error rates):
- subset accuracy `max_drop`: Tango's score test on the samples predicted exactly by one model and not the
  other; `min`: exact binomial;
- per-label recall `max_drop`: Tango within the label's positives; precision `max_drop`: the delta method of
  gate.metrics.precision_drop_se on the label's 2-class table; `min` on either: exact binomial; per-label F1
  and every `max_relative_drop`: the paired bootstrap (as per_class); one Holm (or BH) family over every
  (label, metric, rule), another over the per-label flip-rate ceilings (exact binomial), as flips does;
- micro / macro F1 and Hamming loss: a paired bootstrap over samples (multinomial resample of the distinct
  per-sample code rows), widened to the width of Tango's interval for the Hamming-loss increase taken over the
  N x L (sample, label) pairs when that is wider (few discordant labels: the percentile bootstrap is then too
  narrow, as for accuracy's F1 in gate.checks.classification), judged through Tango over the pairs when the
  bootstrap saw no spread at all.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gate import distributions as sps
from gate import stats
from gate.checks.base import Check, Step
from gate.checks.classification import (HIGHER_RULES, _drop_reps, _drop_value, bootstrap_evidence, calibrate,
                                        ScoreIntervals, class_bootstrap_evidence, f1_evidence_without_spread,
                                        paired_drop_evidence, rate_evidence, score_intervals_for)
from gate.errors import ConfigError, DataError
from gate.metrics import (DENSE_ONEHOT_MAX, PairedCounts, class_counts, class_patterns, precision_correction,
                          precision_drop_se)
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import DecisionSettings, Evidence, check_summary, decision_settings, judge

LABEL_METRICS = ("recall", "precision", "f1")
AVERAGES = ("micro_f1", "macro_f1")
#: Bits of a (sample, label) code.
Y, B, C = 4, 2, 1


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def codes_of(labels: np.ndarray, pred_baseline: np.ndarray, pred_candidate: np.ndarray) -> np.ndarray:
    """uint8 (N, L) codes 4y + 2pb + pc from 0/1 arrays."""
    y = np.asarray(labels).astype(bool)
    return ((y.astype(np.uint8) << 2) | (np.asarray(pred_baseline, dtype=bool).astype(np.uint8) << 1)
            | np.asarray(pred_candidate, dtype=bool).astype(np.uint8))


def _div(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


# --------------------------------------------------------------------------------------------------- figures


def figures_from_code_counts(cc8: np.ndarray, exact: np.ndarray, n: np.ndarray, *,
                             empty: float = 0.0) -> dict[str, dict[str, np.ndarray]]:
    """Both models' metrics from per-label code counts (..., L, 8), exact-match counts (..., 2) and sample counts.

    Leading axes are replicates (or none for the point estimate). `empty`: the value of a per-label ratio whose
    denominator is 0 (0 = scikit-learn's zero_division=0 for the point estimate; NaN for per-label replicates).
    Macro averages take every label, as scikit-learn's average="macro" does, with 0 for an empty ratio.
    """
    cc8 = np.asarray(cc8, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    labels = cc8.shape[-2]
    c = [cc8[..., i] for i in range(8)]
    out: dict[str, dict[str, np.ndarray]] = {}
    cells = {"baseline": (c[6] + c[7], c[2] + c[3], c[4] + c[5]),       # tp, fp, fn
             "candidate": (c[5] + c[7], c[1] + c[3], c[4] + c[6])}
    for i, (role, (tp, fp, fn)) in enumerate(cells.items()):
        support, predicted = tp + fn, tp + fp
        tps, fps, fns = tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)
        out[role] = {
            "precision": _div(tp, predicted, empty), "recall": _div(tp, support, empty),
            "f1": _div(2 * tp, support + predicted, empty), "support": support, "predicted": predicted, "tp": tp,
            "micro_precision": _div(tps, tps + fps), "micro_recall": _div(tps, tps + fns),
            "micro_f1": _div(2 * tps, 2 * tps + fps + fns),
            "macro_precision": _div(tp, predicted).mean(axis=-1), "macro_recall": _div(tp, support).mean(axis=-1),
            "macro_f1": _div(2 * tp, support + predicted).mean(axis=-1),
            "hamming_loss": _div(fps + fns, n * labels),
            "subset_accuracy": _div(np.asarray(exact, dtype=np.float64)[..., i], n),
        }
    neg = c[6] + c[1]          # baseline right, candidate wrong: (y1 pb1 pc0), (y0 pb0 pc1)
    pos = c[5] + c[2]
    out["comparison"] = {"negative_flips": neg, "positive_flips": pos, "negative_flip_rate": _div(neg, n[..., None]),
                         "positive_flip_rate": _div(pos, n[..., None])}
    return out


def _exact_matches(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: does the baseline / the candidate predict every label right? (bool (N,) each)."""
    y = (codes & Y) > 0
    return np.all(((codes & B) > 0) == y, axis=1), np.all(((codes & C) > 0) == y, axis=1)


def code_counts(codes: np.ndarray) -> np.ndarray:
    """(L, 8) int64: how many samples have each code in each label's column."""
    n, labels = codes.shape
    flat = (codes.astype(np.int64) + 8 * np.arange(labels, dtype=np.int64)[None, :]).ravel()
    return np.bincount(flat, minlength=8 * labels).reshape(labels, 8)


def label_tables(cc8: np.ndarray) -> list[PairedCounts]:
    """One 2-class PairedCounts (label, baseline pred, candidate pred) per label."""
    out = []
    for row in np.asarray(cc8, dtype=np.int64):
        nz = np.flatnonzero(row)
        out.append(PairedCounts.from_arrays(2, nz.astype(np.int64), row[nz]))
    return out


@dataclass(frozen=True)
class Bootstrap:
    """Paired-bootstrap replicates (R, ...) of both models' figures, over samples (their distinct code rows)."""

    resamples: int
    figures: dict[str, dict[str, np.ndarray]]           # role -> AVERAGED figure -> (R,)
    per_label: dict[str, dict[str, np.ndarray]]         # role -> precision/recall/f1 (R, L), NaN for empty; {} if
                                                        # no per-label rule needs the bootstrap
    distinct_rows: int
    patterns: np.ndarray | None = None                  # (7, R, L) int32 counts of codes 1..7 per label (for the
                                                        # bootstrap-t: gate.metrics.pattern_counts), with per_label


#: The averaged figures a bootstrap keeps per replicate (R,) for each role.
AVERAGED = ("micro_f1", "macro_f1", "hamming_loss", "subset_accuracy")


def bootstrap(codes: np.ndarray, *, resamples: int, seed: int, per_label: bool = True,
              chunk: int = 64) -> Bootstrap:
    """Resample the samples (multinomially over the distinct rows of codes), `chunk` replicates at a time; each
    block is reduced to the figures kept (the averages (R,), and with `per_label` per-label precision / recall /
    F1 (R, L)), so memory holds chunk x L x 8 counts, not resamples x L x 8."""
    n, labels = codes.shape
    rows, counts = np.unique(codes, axis=0, return_counts=True) if n else (codes[:0], np.zeros(0, np.int64))
    m = rows.shape[0]
    eb, ec = _exact_matches(rows)
    exact = np.stack([eb, ec], axis=1).astype(np.float64)
    flat = (rows.astype(np.int64) + 8 * np.arange(labels, dtype=np.int64)[None, :])
    if m * 8 * labels <= DENSE_ONEHOT_MAX:
        onehot: Any = np.zeros((m, 8 * labels))
        onehot[np.repeat(np.arange(m), labels), flat.ravel()] = 1.0
    else:
        from scipy import sparse

        onehot = sparse.csr_matrix((np.ones(m * labels), (np.repeat(np.arange(m), labels), flat.ravel())),
                                   shape=(m, 8 * labels))
    roles = ("baseline", "candidate")
    kept: dict[str, dict[str, list[np.ndarray]]] = {r: {k: [] for k in AVERAGED} for r in roles}
    kept_labels: dict[str, dict[str, list[np.ndarray]]] = {r: {k: [] for k in LABEL_METRICS} for r in roles}
    kept_patterns: list[np.ndarray] = []
    from threadpoolctl import threadpool_limits

    # Many small products: a busy multi-threaded BLAS makes them many times slower (as in run_replicates).
    with threadpool_limits(limits=1, user_api="blas"):
        for w in stats.iter_bootstrap_weights(counts, resamples=resamples, seed=seed, chunk=chunk):
            wf = w.astype(np.float64)
            cc8 = (wf @ onehot if isinstance(onehot, np.ndarray) else np.asarray(onehot.T.dot(wf.T).T))
            cc8 = cc8.reshape(-1, labels, 8)
            nn = np.full(cc8.shape[0], float(n))
            figs = figures_from_code_counts(cc8, wf @ exact, nn)
            nan = figures_from_code_counts(cc8, wf @ exact, nn, empty=np.nan) if per_label else None
            for r in roles:
                for k in AVERAGED:
                    kept[r][k].append(figs[r][k])
                for k in LABEL_METRICS if nan is not None else ():
                    kept_labels[r][k].append(nan[r][k])
            if per_label:
                kept_patterns.append(np.moveaxis(cc8[..., 1:], -1, 0).astype(np.int32))
    empty = {k: np.zeros(0) for k in AVERAGED}
    figures = {r: ({k: np.concatenate(v) for k, v in kept[r].items()} if kept[r]["micro_f1"] else dict(empty))
               for r in roles}
    labelled = ({r: {k: np.concatenate(v) for k, v in kept_labels[r].items()} for r in roles}
                if per_label and kept_labels["baseline"]["f1"] else {})
    patterns = np.concatenate(kept_patterns, axis=1) if labelled else None
    return Bootstrap(resamples=resamples, figures=figures, per_label=labelled, distinct_rows=m, patterns=patterns)


# ------------------------------------------------------------------------------------------------ evidence


def width_scale(reps: np.ndarray, low: float, high: float, *, confidence: float) -> float:
    """How much wider the honest (Tango / Clopper-Pearson) interval is than the bootstrap's own: >= 1, inf when
    the bootstrap saw no spread but the honest interval has width (gate.checks.classification.tango_calibration)."""
    lo, hi = stats.percentile_interval(reps, confidence=confidence)
    boot = float(hi) - float(lo)
    honest = float(high) - float(low)
    if not boot > 0.0:
        return math.inf if honest > 0.0 else 1.0
    return max(1.0, honest / boot)


def average_sensitivity(metric: str, fig: dict[str, np.ndarray], n_pairs: int) -> float:
    """At most how much one (sample, label) flip moves `metric`, in units of 1 / (N L) (what it moves Hamming
    loss by): micro F1 = 2T / D moves by (2 - F1) / D (a lost true positive) or F1 / D (a new false positive);
    a label's F1 likewise over its own D, and macro F1 by that over L. Taken at the worse of the two, at the
    baseline's own figures."""
    if metric == "hamming_loss":
        return 1.0
    tp, support, predicted = fig["tp"], fig["support"], fig["predicted"]
    if metric == "micro_f1":
        den = float(support.sum() + predicted.sum())
        f1 = float(fig["micro_f1"])
        return n_pairs * max(2.0 - f1, f1) / den if den > 0 else n_pairs
    den = support + predicted
    f1 = _div(2 * tp, den)
    per = np.where(den > 0, np.maximum(2.0 - f1, f1) / np.where(den > 0, den, 1.0), 1.0)
    return n_pairs * float(per.max()) / support.size


def label_patterns(tables: list[PairedCounts]) -> np.ndarray:
    """(7, L') pattern counts of labels' 2-class paired tables: label k is class 1 of its table."""
    return np.stack([class_patterns(t.cells())[:, 1] for t in tables], axis=1)


def _label_evidence(metric: str, rule: str, threshold: float, ks: np.ndarray, tables: list[PairedCounts],
                    point: dict[str, dict[str, np.ndarray]], boot: Bootstrap | None,
                    confidence: float, score_intervals: ScoreIntervals | None = None) -> dict[str, Any]:
    """Raw (unadjusted) p-values and intervals of labels `ks` for one (metric, rule); as per_class decides."""
    z = float(sps.norm.isf(stats.one_sided_alpha(confidence)))
    nan = np.full(ks.size, np.nan)
    cells = [tables[k].cells() for k in ks]
    ccs = [class_counts(c) for c in cells]
    if metric == "recall" and rule == "max_drop":
        ev = paired_drop_evidence(np.array([c.negative[1] for c in ccs]), np.array([c.positive[1] for c in ccs]),
                                  np.array([c.support[1] for c in ccs]), threshold=threshold, confidence=confidence)
        return {**ev, "method": "Tango score"}
    if metric == "precision" and rule == "max_drop":
        est = point["baseline"]["precision"][ks] - point["candidate"]["precision"][ks]
        se = np.array([precision_drop_se(c, cc)[1] for c, cc in zip(cells, ccs)])
        se_null = np.array([precision_drop_se(c, cc, bound=threshold)[1] for c, cc in zip(cells, ccs)])
        se_zero = np.array([precision_drop_se(c, cc, bound=0.0)[1] for c, cc in zip(cells, ccs)])
        corr = np.array([precision_correction(cc)[1] for cc in ccs])
        beyond, within = stats.ratio_difference_p_values(est, se_null, bound=threshold, correction=corr)
        worse, _ = stats.ratio_difference_p_values(est, se_zero, bound=0.0, correction=corr)
        ok = np.isfinite(se)
        return {"beyond": np.where(ok, beyond, np.nan), "within": np.where(ok, within, np.nan),
                "worse": np.where(ok, worse, np.nan), "low": est - z * se, "high": est + z * se,
                "method": "delta method"}
    if rule == "min" and metric in ("recall", "precision"):
        tp = np.array([cc.tp_candidate[1] for cc in ccs])
        den = np.array([cc.support[1] if metric == "recall" else cc.predicted_candidate[1] for cc in ccs])
        greater, less = stats.binomial_p_values(tp, den, bound=threshold)
        bounds = [stats.clopper_pearson_interval(int(t), int(d), confidence=confidence) if d > 0 else (np.nan, np.nan)
                  for t, d in zip(tp, den)]
        return {"beyond": less, "within": greater, "worse": nan, "low": np.array([b[0] for b in bounds]),
                "high": np.array([b[1] for b in bounds]), "method": "exact binomial"}
    assert boot is not None and boot.per_label
    base, cand = boot.per_label["baseline"][metric][:, ks], boot.per_label["candidate"][metric][:, ks]
    col = cand if rule == "min" else _drop_reps(rule, base, cand)
    patterns = label_patterns([tables[k] for k in ks])
    return class_bootstrap_evidence(metric, rule, threshold, col, patterns, boot.patterns[:, :, ks],  # type: ignore[index]
                                    confidence=confidence, score_intervals=score_intervals, members=ks)


# --------------------------------------------------------------------------------------------------- check


class MultiLabelCheck(Check):
    name = "multilabel"
    tasks = frozenset({"multi_label"})
    needs = frozenset({"scores"})
    #: Per-sample codes under `rows.` (concatenated across shards in sample order), nothing summed.
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: Any) -> None:
        super().__init__(options, ctx)
        self._codes: list[np.ndarray] = []
        self._index: list[np.ndarray] = []
        self._thresholds: np.ndarray | None = None
        self._merged: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------- options

    def _where(self, key: str) -> str:
        return self.ctx.config.where(f"checks.multilabel.{key}")

    def thresholds(self) -> np.ndarray:
        """(L,) float: the probability at or above which each label counts as predicted."""
        names = tuple(self.ctx.class_names)
        # Cached for the names it was built for: setup() runs before the first batch, which names unnamed labels.
        if self._thresholds is None or self._thresholds.size != len(names):
            spec = self.options.get("threshold", 0.5)
            out = np.full(len(names), 0.5)
            if isinstance(spec, dict):
                for key, value in spec.items():
                    if key not in names:
                        raise ConfigError(f"{self._where('threshold')}: unknown label {key!r} "
                                          f"(labels: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
                    out[names.index(key)] = float(value)
            else:
                out[:] = float(spec)
            self._thresholds = out
        return self._thresholds

    def selected_labels(self) -> list[int]:
        names = tuple(self.ctx.class_names)
        spec = self.options.get("labels", "all")
        if spec in (None, "all"):
            return list(range(len(names)))
        out = []
        for item in spec:
            if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
                out.append(item)
            elif isinstance(item, str) and item in names:
                out.append(names.index(item))
            else:
                raise ConfigError(f"{self._where('labels')}: unknown label {item!r} "
                                  f"(labels: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
        return sorted(set(out))

    def setup(self) -> None:
        if self.ctx.class_names:  # else the first batch names the labels ("0", "1", ...) and update() checks them
            self.thresholds()
            self.selected_labels()

    # ------------------------------------------------------------------------------------------- state

    def update(self, step: Step) -> None:
        task = getattr(step, "task", "multi_label")
        if task != "multi_label":
            raise DataError(f"multilabel: batch {step.index} is a {task} batch; this check needs task multi_label")
        if self._thresholds is None:
            self.selected_labels()
        thr = self.thresholds()
        y = _numpy(step.labels)
        width = thr.size
        scores = {role: _numpy(step.scores[role]) for role in ("baseline", "candidate")}
        for what, arr in (("labels", y), *((f"{r} scores", s) for r, s in scores.items())):
            if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] != y.shape[0]:
                raise DataError(f"multilabel: batch {step.index}: {what} have shape {tuple(arr.shape)}; expected "
                                f"({y.shape[0] if y.ndim else '?'}, {width}) for {width} labels")
        if y.size and not np.all((y == 0) | (y == 1)):
            raise DataError(f"multilabel: batch {step.index}: labels must be 0/1 (multi-hot)")
        pb = scores["baseline"] >= thr[None, :]
        pc = scores["candidate"] >= thr[None, :]
        self._codes.append(codes_of(y, pb, pc))
        self._index.append(step.offset + np.arange(y.shape[0], dtype=np.int64))

    def codes(self) -> np.ndarray:
        """uint8 (N, L) codes of the whole run, in sample order."""
        if self._merged is not None:
            return self._merged
        width = len(self.ctx.class_names)
        if not self._codes:
            return np.zeros((0, width), dtype=np.uint8)
        codes, index = np.concatenate(self._codes), np.concatenate(self._index)
        if np.any(np.diff(index) <= 0):
            codes = codes[np.argsort(index, kind="stable")]
        return codes

    def state(self) -> dict[str, np.ndarray]:
        """`rows.index` (N,) and `rows.codes` (N, ceil(L / 8)) int64: each row's uint8 codes packed 8 per word;
        `samples` (summed across shards) lets load_state() tell concatenated rows from rows added up."""
        width = len(self.ctx.class_names)
        codes = np.concatenate(self._codes) if self._codes else np.zeros((0, width), dtype=np.uint8)
        index = np.concatenate(self._index) if self._index else np.zeros(0, dtype=np.int64)
        words = -(-width // 8)
        padded = np.zeros((codes.shape[0], words * 8), dtype=np.uint8)
        padded[:, :width] = codes
        return {"rows.index": index, "rows.codes": np.ascontiguousarray(padded).view("<i8").reshape(-1, words).copy(),
                "samples": np.array([index.size], dtype=np.int64)}

    def load_state(self, merged: dict[str, np.ndarray]) -> None:
        width = len(self.ctx.class_names)
        words = -(-width // 8)
        packed, index = np.asarray(merged["rows.codes"]), np.asarray(merged["rows.index"])
        if packed.ndim != 2 or packed.shape[1] != words or index.shape != (packed.shape[0],):
            raise ValueError(f"multilabel: expected rows.codes of shape (N, {words}) and rows.index (N,), found "
                             f"{packed.shape} and {index.shape}")
        codes = np.ascontiguousarray(packed.astype("<i8")).view(np.uint8).reshape(-1, words * 8)
        if "samples" in merged and int(np.asarray(merged["samples"]).sum()) != index.size:
            raise ValueError(f"multilabel: {int(np.asarray(merged['samples']).sum())} samples were evaluated but "
                             f"{index.size} rows arrived: per-sample rows must be concatenated across shards, "
                             "not summed")
        if np.any(codes[:, :width] > 7) or np.any(codes[:, width:]):
            raise ValueError("multilabel: rows.codes holds values that are no (label, baseline, candidate) code")
        if np.any(np.diff(index) <= 0):
            raise ValueError("multilabel: rows.index is not strictly increasing")
        self._merged = codes[:, :width].copy()

    # ------------------------------------------------------------------------------------------- figures

    def point(self) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], np.ndarray]:
        codes = self.codes()
        cc8 = code_counts(codes)
        eb, ec = _exact_matches(codes)
        exact = np.array([eb.sum(), ec.sum()], dtype=np.float64)
        return codes, figures_from_code_counts(cc8, exact, np.array(float(codes.shape[0]))), cc8

    def metrics(self) -> dict[str, Any]:
        """The report's `metrics` block for a multi-label run."""
        codes, fig, _ = self.point()
        names = tuple(self.ctx.class_names)
        overall = ("subset_accuracy", "hamming_loss", "micro_precision", "micro_recall", "micro_f1",
                   "macro_precision", "macro_recall", "macro_f1")
        out: dict[str, Any] = {"num_samples": int(codes.shape[0]), "num_labels": len(names)}
        for role in ("baseline", "candidate"):
            f = fig[role]
            out[role] = {**{k: float(f[k]) for k in overall}, "per_label": [
                {"label": name, "precision": float(f["precision"][i]), "recall": float(f["recall"][i]),
                 "f1": float(f["f1"][i]), "support": int(round(float(f["support"][i])))}
                for i, name in enumerate(names)]}
        c = fig["comparison"]
        eb, ec = _exact_matches(codes)
        out["comparison"] = {
            "subset_negative_flips": int(np.sum(eb & ~ec)), "subset_positive_flips": int(np.sum(~eb & ec)),
            "negative_flips": int(c["negative_flips"].sum()), "positive_flips": int(c["positive_flips"].sum()),
            "per_label": [{"label": name, "negative_flips": int(c["negative_flips"][i]),
                           "positive_flips": int(c["positive_flips"][i]),
                           "negative_flip_rate": float(c["negative_flip_rate"][i])} for i, name in enumerate(names)],
        }
        return out

    # ------------------------------------------------------------------------------------------- compute

    def _needs_label_bootstrap(self, labels: list[int]) -> bool:
        """Per-label F1 and per-label relative drops are decided by the bootstrap; the defaults are analytic."""
        if not labels:
            return False
        if any((self.options.get("f1") or {}).get(r) is not None for r in HIGHER_RULES):
            return True
        return any((self.options.get(m) or {}).get("max_relative_drop") is not None for m in LABEL_METRICS)

    def _needs_bootstrap(self, labels: list[int]) -> bool:
        for metric in AVERAGES:
            if any((self.options.get(metric) or {}).get(r) is not None for r in HIGHER_RULES):
                return True
        if any((self.options.get("hamming_loss") or {}).get(r) is not None for r in ("max", "max_increase")):
            return True
        if (self.options.get("subset_accuracy") or {}).get("max_relative_drop") is not None:
            return True
        if labels and any((self.options.get("f1") or {}).get(r) is not None for r in HIGHER_RULES):
            return True
        return bool(labels) and any((self.options.get(m) or {}).get("max_relative_drop") is not None
                                    for m in LABEL_METRICS)

    def compute(self) -> CheckResult:
        settings = decision_settings(self.ctx.config, self.options)
        names = tuple(self.ctx.class_names)
        labels = self.selected_labels()
        codes, fig, cc8 = self.point()
        n, width = codes.shape
        if n == 0:
            return CheckResult(name=self.name, status="fail", summary="multilabel: no samples were evaluated",
                               details={"num_samples": 0})
        boot = None
        if settings.statistical and self._needs_bootstrap(labels):
            boot = bootstrap(codes, resamples=settings.resamples, seed=settings.seed,
                             per_label=self._needs_label_bootstrap(labels))
        findings, avg_rows, notes = self._average_findings(codes, fig, boot, settings)
        label_findings, pvals, label_notes = self._label_findings(labels, fig, cc8, boot, settings)
        findings += label_findings
        notes += label_notes
        status, summary = check_summary(self.name, findings, passed=(
            f"subset accuracy {float(fig['candidate']['subset_accuracy']):.4f} vs baseline "
            f"{float(fig['baseline']['subset_accuracy']):.4f}, micro F1 {float(fig['candidate']['micro_f1']):.4f} vs "
            f"{float(fig['baseline']['micro_f1']):.4f}: all {len(labels)} labels within their thresholds"))
        pb, pcand, comp = fig["baseline"], fig["candidate"], fig["comparison"]
        label_rows = tuple(
            (names[k], int(pb["support"][k]),
             round(float(pb["precision"][k]), 4), round(float(pcand["precision"][k]), 4),
             round(float(pb["recall"][k]), 4), round(float(pcand["recall"][k]), 4),
             round(float(pb["f1"][k]), 4), round(float(pcand["f1"][k]), 4),
             f"{pcand['f1'][k] - pb['f1'][k]:+.4f}",
             int(comp["negative_flips"][k]), int(comp["positive_flips"][k]),
             "" if k not in pvals else f"{pvals[k]:.3g}")
            for k in range(width))
        regressed = sorted({f.where for f in findings if f.status == "fail" and f.where})
        details: dict[str, Any] = {
            "decision": settings.mode,
            "confidence": settings.confidence,
            "multiple_comparisons": settings.multiple_comparisons if settings.statistical else "none",
            "num_samples": int(n),
            "num_labels": int(width),
            "thresholds": {names[i]: float(t) for i, t in enumerate(self.thresholds())},
            "state_bytes": int(codes.nbytes),
            "state_means": f"one uint8 code per (sample, label): N x L = {n} x {width} bytes, kept for the paired "
                           f"bootstrap of micro / macro F1 and Hamming loss",
            "bootstrap_resamples": boot.resamples if boot is not None else 0,
            "regressed_labels": regressed,
        }
        if boot is not None:
            details["bootstrap_distinct_rows"] = boot.distinct_rows
        return CheckResult(
            name=self.name, status=status, summary=summary, findings=tuple(findings),
            tables=(
                Table(title="Multi-label averages",
                      headers=("metric", "baseline", "candidate", "delta",
                               f"{settings.confidence:.0%} CI of delta" if settings.statistical else ""),
                      rows=tuple(avg_rows)),
                Table(title="Per-label metrics (baseline -> candidate; flips: negative = baseline right, candidate "
                            "wrong on the label)",
                      headers=("label", "support", "precision b", "precision c", "recall b", "recall c", "f1 b",
                               "f1 c", "f1 delta", "negative flips", "positive flips", "p"),
                      rows=label_rows),
            ),
            details=details, notes=tuple(notes),
        )

    def _average_findings(self, codes: np.ndarray, fig: dict[str, dict[str, np.ndarray]], boot: Bootstrap | None,
                          settings: DecisionSettings) -> tuple[list[Finding], list[tuple[Any, ...]], list[str]]:
        n, width = codes.shape
        conf = settings.confidence
        findings: list[Finding] = []
        rows: list[tuple[Any, ...]] = []
        notes: list[str] = []
        eb, ec = _exact_matches(codes)
        s_neg, s_pos = int(np.sum(eb & ~ec)), int(np.sum(~eb & ec))
        subset_tango = paired_drop_evidence(np.array(s_neg), np.array(s_pos), np.array(n), threshold=0.0,
                                            confidence=conf)
        comp = fig["comparison"]
        l_neg, l_pos = int(comp["negative_flips"].sum()), int(comp["positive_flips"].sum())
        pairs = n * width
        ham_tango = paired_drop_evidence(np.array(l_neg), np.array(l_pos), np.array(pairs), threshold=0.0,
                                         confidence=conf)
        scale_h = math.nan
        if boot is not None:
            bf = boot.figures
            scale_h = width_scale(bf["candidate"]["hamming_loss"] - bf["baseline"]["hamming_loss"],
                                  float(ham_tango["low"]), float(ham_tango["high"]), confidence=conf)
        family: list[tuple[str, str, float, float, float, float, Evidence | None]] = []
        for metric in ("subset_accuracy", "micro_f1", "macro_f1", "hamming_loss"):
            base, cand = float(fig["baseline"][metric]), float(fig["candidate"][metric])
            lower = metric == "hamming_loss"
            rules = ("max", "max_increase") if lower else HIGHER_RULES
            th = self.options.get(metric) or {}
            for rule in rules:
                if th.get(rule) is None:
                    continue
                thr = float(th[rule])
                if rule in ("min", "max"):
                    value = cand
                elif rule == "max_increase":
                    value = cand - base
                else:
                    value = _drop_value(rule, base, cand)
                evidence = None
                if settings.statistical:
                    evidence = self._average_evidence(metric, rule, thr, value, base, cand, fig, boot, scale_h,
                                                      subset=(s_neg, s_pos, n), label=(l_neg, l_pos, pairs),
                                                      conf=conf)
                family.append((metric, rule, thr, float(value), base, cand, evidence))
            ci = ""
            if settings.statistical:
                if metric == "subset_accuracy":
                    ci = f"[{-float(subset_tango['high']):+.4f}, {-float(subset_tango['low']):+.4f}]"
                elif metric == "hamming_loss":
                    ci = f"[{float(ham_tango['low']):+.4f}, {float(ham_tango['high']):+.4f}]"
                    if boot is not None and math.isfinite(scale_h):
                        d = calibrate(boot.figures["candidate"][metric] - boot.figures["baseline"][metric],
                                      cand - base, scale_h)
                        lo, hi = stats.percentile_interval(d, confidence=conf)
                        ci = f"[{float(lo):+.4f}, {float(hi):+.4f}]"
                elif boot is not None and math.isfinite(scale_h):
                    d = calibrate(boot.figures["candidate"][metric] - boot.figures["baseline"][metric],
                                  cand - base, scale_h)
                    lo, hi = stats.percentile_interval(d, confidence=conf)
                    ci = f"[{float(lo):+.4f}, {float(hi):+.4f}]"
            rows.append((metric, round(base, 4), round(cand, 4), f"{cand - base:+.4f}", ci))
        # The averaged rules ask one question (is the candidate worse overall?) through correlated statistics:
        # one family, so that together they fail an equally good candidate at most about alpha of the time.
        if settings.statistical and family:
            def _p(x: float | None) -> float:
                return math.nan if x is None else float(x)

            adj_beyond = stats.adjust(np.array([_p(e[6].p_beyond if e[6] else None) for e in family]),
                                      settings.multiple_comparisons)
            adj_worse = stats.adjust(np.array([_p(e[6].p_worse if e[6] else None) for e in family]),
                                     settings.multiple_comparisons)
            family = [(m, r, t, v, b, c, None if e is None else dataclasses.replace(
                e, p_beyond=None if e.p_beyond is None or math.isnan(e.p_beyond) else float(adj_beyond[i]),
                p_worse=None if e.p_worse is None or math.isnan(e.p_worse) else float(adj_worse[i])))
                for i, (m, r, t, v, b, c, e) in enumerate(family)]
        for metric, rule, thr, value, base, cand, evidence in family:
            findings.append(judge(metric=metric, rule=rule, threshold=thr, value=value, baseline=base,
                                  candidate=cand, settings=settings, evidence=evidence))
        for metric in ("micro_precision", "micro_recall", "macro_precision", "macro_recall"):
            base, cand = float(fig["baseline"][metric]), float(fig["candidate"][metric])
            rows.append((metric, round(base, 4), round(cand, 4), f"{cand - base:+.4f}", ""))
        return findings, rows, notes

    def _average_evidence(self, metric: str, rule: str, thr: float, value: float, base: float, cand: float,
                          fig: dict[str, dict[str, np.ndarray]], boot: Bootstrap | None, scale_h: float, *,
                          subset: tuple[int, int, int], label: tuple[int, int, int], conf: float) -> Evidence:
        if metric == "subset_accuracy" and rule == "min":
            return rate_evidence(int(round(cand * subset[2])), subset[2], threshold=thr, rule="min", confidence=conf)
        if metric == "subset_accuracy" and rule == "max_drop":
            ev = paired_drop_evidence(np.array(subset[0]), np.array(subset[1]), np.array(subset[2]), threshold=thr,
                                      confidence=conf)
            return Evidence(p_beyond=float(ev["beyond"]), p_within=float(ev["within"]), p_worse=float(ev["worse"]),
                            interval=(float(ev["low"]), float(ev["high"])), method="Tango score")
        assert boot is not None
        bb, bc = boot.figures["baseline"][metric], boot.figures["candidate"][metric]
        if metric == "subset_accuracy":          # max_relative_drop: widened to Tango's width for the drop
            lo, hi = stats.paired_difference_interval(subset[0], subset[1], subset[2], confidence=conf)
            scale = width_scale(bb - bc, float(lo), float(hi), confidence=conf)
        elif rule in ("min", "max"):             # one model's own value: widened to Clopper-Pearson over the pairs
            if metric == "hamming_loss":
                errors = int(round(cand * label[2]))
                if not float(np.nanmax(bc) - np.nanmin(bc)) > 0.0:
                    return rate_evidence(errors, label[2], threshold=thr, rule="max", confidence=conf)
                lo, hi = stats.clopper_pearson_interval(errors, label[2], confidence=conf)
                scale = width_scale(bc, lo, hi, confidence=conf)
            else:
                scale = 1.0 if math.isinf(scale_h) else scale_h
        else:
            scale = scale_h
        if rule in ("min", "max"):
            col = calibrate(bc, cand, 1.0 if math.isinf(scale) else scale)
            ev = bootstrap_evidence(col, threshold=thr, rule="min" if rule == "min" else "max_drop",
                                    confidence=conf)
            return Evidence(p_beyond=ev.p_beyond, p_within=ev.p_within, interval=ev.interval, method=ev.method)
        if rule == "max_increase":
            col = bc - bb
        else:
            col = _drop_reps(rule, bb, bc)
        spread = float(np.nanmax(col) - np.nanmin(col)) if np.any(np.isfinite(col)) else 0.0
        if math.isinf(scale) and spread > 0.0:
            scale = 1.0
        if math.isinf(scale) and rule in ("max_drop", "max_increase"):
            baseline_fig = {k: v for k, v in fig["baseline"].items()}
            return f1_evidence_without_spread(label[0], label[1], label[2], f1_drop=float(value), threshold=thr,
                                              sensitivity=average_sensitivity(metric, baseline_fig, label[2]),
                                              confidence=conf)
        col = calibrate(col, float(value), scale)
        return bootstrap_evidence(col, threshold=thr, rule="max_drop", confidence=conf)

    def _label_findings(self, labels: list[int], fig: dict[str, dict[str, np.ndarray]], cc8: np.ndarray,
                        boot: Bootstrap | None, settings: DecisionSettings
                        ) -> tuple[list[Finding], dict[int, float], list[str]]:
        names = tuple(self.ctx.class_names)
        conf = settings.confidence
        pb, pcand, comp = fig["baseline"], fig["candidate"], fig["comparison"]
        tables = label_tables(cc8)
        support = pb["support"]
        family = [(k, m, rule, float((self.options.get(m) or {})[rule]))
                  for k in labels if support[k] > 0 for m in LABEL_METRICS for rule in HIGHER_RULES
                  if (self.options.get(m) or {}).get(rule) is not None]
        evidence: dict[tuple[int, str, str], Evidence] = {}
        notes: list[str] = []
        if settings.statistical and family:
            raw: dict[tuple[int, str, str], dict[str, Any]] = {}
            groups: dict[tuple[str, str, float], list[int]] = {}
            for k, m, rule, thr in family:
                groups.setdefault((m, rule, thr), []).append(k)
            intervals = score_intervals_for(groups, lambda ks: label_patterns([tables[k] for k in ks]),
                                            confidence=conf)
            for (m, rule, thr), ks in groups.items():
                ev = _label_evidence(m, rule, thr, np.asarray(ks), tables, fig, boot, conf, intervals)
                for i, k in enumerate(ks):
                    raw[(k, m, rule)] = {key: (val if key == "method" else float(val[i])) for key, val in ev.items()}
            keys = [(k, m, rule) for k, m, rule, _ in family]
            adj_beyond = stats.adjust(np.array([raw[key]["beyond"] for key in keys]), settings.multiple_comparisons)
            adj_worse = stats.adjust(np.array([raw[key]["worse"] for key in keys]), settings.multiple_comparisons)
            for i, key in enumerate(keys):
                r = raw[key]
                evidence[key] = Evidence(p_beyond=float(adj_beyond[i]), p_within=r["within"],
                                         p_worse=None if math.isnan(r["worse"]) else float(adj_worse[i]),
                                         interval=(r["low"], r["high"]), method=r["method"])
            n_boot = sum(1 for key in keys if raw[key]["method"].startswith("paired bootstrap"))
            needed = stats.min_resamples(len(keys), confidence=conf) + 1
            if n_boot and settings.resamples < needed:
                notes.append(f"resolution cap: {n_boot} of {len(keys)} per-label comparisons are decided by the "
                             f"bootstrap, whose smallest p-value 1/({settings.resamples}+1) cannot reach the "
                             f"{settings.multiple_comparisons} level for a family of {len(keys)}; they can never "
                             f"fail. Set decision.bootstrap_resamples to at least {needed}.")
        findings: list[Finding] = []
        for k, m, rule, thr in family:
            base, cand = float(pb[m][k]), float(pcand[m][k])
            value = cand if rule == "min" else _drop_value(rule, base, cand)
            findings.append(judge(metric=f"{m}[{names[k]}]", rule=rule, threshold=thr, value=float(value),
                                  baseline=base, candidate=cand, settings=settings, where=names[k],
                                  evidence=evidence.get((k, m, rule))))
        th = (self.options.get("per_label_negative_flip_rate") or {}).get("max")
        n = int(cc8[0].sum()) if cc8.size else 0          # every label's column counts every sample
        if th is not None and labels:
            negs = np.array([int(comp["negative_flips"][k]) for k in labels], dtype=np.int64)
            greater, less = stats.binomial_p_values(negs, np.full(len(labels), n), bound=float(th))
            adjusted = stats.adjust(greater, settings.multiple_comparisons)
            for i, k in enumerate(labels):
                ev = None
                if settings.statistical:
                    ev = Evidence(p_beyond=float(adjusted[i]), p_within=float(less[i]),
                                  interval=stats.clopper_pearson_interval(int(negs[i]), n, confidence=conf),
                                  method="exact binomial")
                findings.append(judge(metric=f"negative_flip_rate[{names[k]}]", rule="max", threshold=float(th),
                                      value=float(negs[i] / n), settings=settings, where=names[k], evidence=ev))
        pvals: dict[int, float] = {}
        for f in findings:
            if f.where is not None and f.p_value is not None:
                k = names.index(f.where)
                pvals[k] = min(pvals.get(k, 1.0), f.p_value)
        return findings, pvals, notes
