"""Slices: accuracy, per-class recall and negative flip rate within each slice of the data, gated like the overall
figures (the same statistics and gate.verdict.judge), with Holm/BH across every slice comparison.

A slice dimension is one entry of `checks.slices.by`: a data field (a JSONL key, a CSV column, a 1-D tensor of a
tensor file, a factory's meta key), a computed feature (`label`: the true class; `text_length`: character-count
buckets), or the cross of two. The state is one PairedCounts per slice value (memory O(slices x cells)); states
merge by addition (`SliceState.merge`). Sharded, the slice values differ between shards, so state() writes each
dimension's cells as `rows.` (gate.sharding): one row per (slice value, cell) with its count and, as `rows.index`,
the first sample of that cell on the shard (unique across shards, since shards own disjoint samples); load_state()
sums the rows of each (value, cell) back into one PairedCounts per slice. Slices smaller than `min_size` are
reported, not gated. The slice config is policy; the field values are data: read, stringified, never executed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gate import stats
from gate.checks.base import Check, RunContext, Step
from gate.checks.classification import paired_drop_evidence
from gate.errors import ConfigError, DataError
from gate.metrics import PairedCounts, class_counts, point_metrics
from gate.report.escape import plain_text
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import Evidence, check_summary, decision_settings, judge

DEFAULT_BINS = (100, 400, 1000)
VALUE_CHARS = 60            # a slice value longer than this is cut in the report (it is data)
TABLE_ROWS = 25             # slices shown in the report's table (the JSON details carry every slice)


@dataclass(frozen=True)
class SliceKey:
    """One thing to slice by: a data field, the true label, or text-length buckets."""

    kind: str                       # "field" | "label" | "text_length"
    name: str
    bins: tuple[int, ...] = ()

    def bucket(self, length: int) -> str:
        """'<100', '100-399', '>=1000': the text_length bucket of `length` characters."""
        edges = self.bins
        if length < edges[0]:
            return f"<{edges[0]}"
        for low, high in zip(edges, edges[1:]):
            if length < high:
                return f"{low}-{high - 1}"
        return f">={edges[-1]}"


@dataclass(frozen=True)
class Dimension:
    keys: tuple[SliceKey, ...]      # one key, or two for a cross
    path: str                       # "checks.slices.by[1]", for messages

    @property
    def name(self) -> str:
        return " x ".join(k.name for k in self.keys)


def parse_key(spec: Any, *, path: str) -> SliceKey:
    if isinstance(spec, str):
        return SliceKey("label", "label") if spec == "label" else SliceKey("field", spec)
    if "field" in spec:
        return SliceKey("field", str(spec["field"]))
    feature = spec["feature"]
    if feature == "label":
        return SliceKey("label", "label")
    bins = tuple(int(b) for b in spec.get("bins") or DEFAULT_BINS)
    if list(bins) != sorted(set(bins)):
        raise ConfigError(f"{path}.bins: bucket edges must be increasing, found {list(bins)}")
    return SliceKey("text_length", "text_length", bins)


def parse_dimensions(specs: list[Any], *, where: Any) -> tuple[Dimension, ...]:
    """`checks.slices.by` as dimensions; ConfigError naming the key path for an empty list or a repeated entry."""
    if not specs:
        raise ConfigError(f"{where('checks.slices.by')}: no slices to check; name at least one field, e.g. "
                          "by: [source] (or disable the slices check)")
    dims = []
    for i, spec in enumerate(specs):
        path = f"checks.slices.by[{i}]"
        parts = spec if isinstance(spec, list) else [spec]
        keys = tuple(parse_key(p, path=where(f"{path}[{j}]" if isinstance(spec, list) else path))
                     for j, p in enumerate(parts))
        if len(keys) == 2 and keys[0] == keys[1]:
            raise ConfigError(f"{where(path)}: a cross of {keys[0].name!r} with itself")
        dims.append(Dimension(keys, path))
    names = [d.name for d in dims]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where('checks.slices.by')}: {name!r} is listed twice")
    return tuple(dims)


def value_text(value: Any) -> str:
    """A field value as slice text: JSON-like for booleans and null, cut and inert (plain_text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return plain_text(value, limit=VALUE_CHARS)


@dataclass
class SliceState:
    """Sufficient statistics: dimension name -> slice value -> PairedCounts. Merges by addition."""

    num_classes: int
    counts: dict[str, dict[str, PairedCounts]] = field(default_factory=dict)

    def add(self, dim: str, value: str, labels: np.ndarray, pb: np.ndarray, pc: np.ndarray) -> None:
        slot = self.counts.setdefault(dim, {})
        if value not in slot:
            slot[value] = PairedCounts(self.num_classes)
        slot[value].update(labels, pb, pc)

    def merge(self, other: SliceState) -> SliceState:
        out = SliceState(self.num_classes)
        for state in (self, other):
            for dim, slots in state.counts.items():
                mine = out.counts.setdefault(dim, {})
                for value, counts in slots.items():
                    mine[value] = mine[value].merge(counts) if value in mine else counts.merge(PairedCounts(counts.num_classes))
        return out


@dataclass(frozen=True)
class SliceFigures:
    """Point figures of one slice, from its PairedCounts."""

    dimension: str
    value: str
    n: int
    baseline_accuracy: float
    candidate_accuracy: float
    negative_flips: int
    positive_flips: int
    gated: bool

    @property
    def drop(self) -> float:
        return self.baseline_accuracy - self.candidate_accuracy


class SlicesCheck(Check):
    name = "slices"
    needs = frozenset({"scores"})
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.dims = parse_dimensions(list(options.get("by") or []), where=ctx.config.where)
        self.max_values = int(options.get("max_values") or 100)
        self.min_size = int(options.get("min_size") or 1)
        self.sliced: SliceState | None = None
        self._ids: dict[str, dict[str, int]] = {d.name: {} for d in self.dims}
        # dimension -> (slice value, cell code) -> the first sample of that cell: the cell's rows.index when sharded
        self._first: dict[str, dict[tuple[str, int], int]] = {d.name: {} for d in self.dims}

    # ------------------------------------------------------------------------------------------- the pass

    def update(self, step: Step) -> None:
        labels = step.labels.cpu().numpy()
        preds = step.preds or {r: s.argmax(dim=1).cpu().numpy() for r, s in step.scores.items()}
        if self.sliced is None:
            self.sliced = SliceState(int(step.scores["baseline"].shape[1]))
        for dim in self.dims:
            values = self.slice_values(dim, step, labels)
            ids_of = self._ids[dim.name]
            ids = np.fromiter((ids_of.setdefault(v, len(ids_of)) for v in values), dtype=np.int64, count=len(values))
            names = dict.fromkeys(values)
            k = self.sliced.num_classes
            codes = (labels.astype(np.int64) * k + preds["baseline"].astype(np.int64)) * k + preds["candidate"]
            first = self._first[dim.name]
            for value in names:
                mask = ids == ids_of[value]
                self.sliced.add(dim.name, value, labels[mask], preds["baseline"][mask], preds["candidate"][mask])
                rows = np.flatnonzero(mask)
                cells, at = np.unique(codes[rows], return_index=True)
                for code, row in zip(cells.tolist(), rows[at].tolist()):
                    first.setdefault((value, code), step.offset + row)
            if len(ids_of) > self.max_values:
                raise DataError(
                    f"{self.ctx.config.where(dim.path)}: {dim.name!r} has more than {self.max_values} distinct "
                    f"values by sample {step.offset + len(values)}; slice by a categorical field (or a text_length "
                    f"bucket), or raise checks.slices.max_values")

    # ------------------------------------------------------------------------------------------- shards

    def state(self) -> dict[str, Any]:
        """Per dimension `d<i>.`: one row per (slice value, cell) seen on this shard, its count, its first sample."""
        out: dict[str, Any] = {}
        for i, dim in enumerate(self.dims):
            slots = (self.sliced.counts if self.sliced else {}).get(dim.name, {})
            rows = [(first, value, code, slots[value]._counts[code])
                    for (value, code), first in self._first[dim.name].items()]
            rows.sort()
            out[f"d{i}.rows.index"] = np.array([r[0] for r in rows], dtype=np.int64)
            out[f"d{i}.rows.code"] = np.array([r[2] for r in rows], dtype=np.int64)
            out[f"d{i}.rows.n"] = np.array([r[3] for r in rows], dtype=np.int64)
            out[f"d{i}.rows.value"] = [r[1] for r in rows]
        return out

    def load_state(self, merged: dict[str, Any]) -> None:
        """The shards' cells summed per (dimension, slice value): the single run's PairedCounts per slice."""
        k = len(self.ctx.class_names)
        self.sliced = SliceState(k)
        for i, dim in enumerate(self.dims):
            codes, n, values = merged[f"d{i}.rows.code"], merged[f"d{i}.rows.n"], merged[f"d{i}.rows.value"]
            if not (codes.shape == n.shape == (len(values),)):
                raise ValueError(f"slices state d{i}: codes, counts and values of different lengths")
            cells: dict[str, dict[int, int]] = {}
            for value, code, count in zip(values, codes.tolist(), n.tolist()):
                if not isinstance(value, str):
                    raise ValueError(f"slices state d{i}: a slice value is not text")
                slot = cells.setdefault(value, {})
                slot[code] = slot.get(code, 0) + count
            if len(cells) > self.max_values:
                raise DataError(
                    f"{self.ctx.config.where(dim.path)}: {dim.name!r} has more than {self.max_values} distinct "
                    f"values in the merged shards ({len(cells)}); slice by a categorical field (or a text_length "
                    f"bucket), or raise checks.slices.max_values")
            slots = self.sliced.counts.setdefault(dim.name, {})
            for value, by_code in cells.items():
                ordered = sorted(by_code)
                slots[plain_text(value)] = PairedCounts.from_arrays(            # inert, as every slice value is
                    k, np.array(ordered, dtype=np.int64), np.array([by_code[c] for c in ordered], dtype=np.int64))

    def slice_values(self, dim: Dimension, step: Step, labels: np.ndarray) -> list[str]:
        """Each sample's slice name in this dimension ('source=imdb' or 'source=imdb, label=negative')."""
        columns = [self._key_values(key, dim, step, labels) for key in dim.keys]
        if len(columns) == 1:
            return [f"{dim.keys[0].name}={v}" for v in columns[0]]
        (a, b), (ka, kb) = columns, dim.keys
        return [f"{ka.name}={x}, {kb.name}={y}" for x, y in zip(a, b)]

    def _key_values(self, key: SliceKey, dim: Dimension, step: Step, labels: np.ndarray) -> list[str]:
        from gate.data import MISSING

        names = self.ctx.class_names
        if key.kind == "label":
            return [plain_text(names[k]) if k < len(names) else str(k) for k in labels.tolist()]
        meta = step.meta
        where = self.ctx.config.where(dim.path)
        if key.kind == "text_length":
            texts = getattr(meta, "texts", None)
            if texts is None:
                raise DataError(f"{where}: text_length needs text data (JSONL / CSV, or a factory's meta 'text'); "
                                "this data has no text")
            return [key.bucket(len(t)) for t in texts]
        fields = getattr(meta, "fields", None) or {}
        column = fields.get(key.name)
        if column is None:
            found = ", ".join(sorted(fields)[:20]) or "none"
            raise DataError(f"{where}: {self._place(step, 0)}: no field {key.name!r} to slice by (fields found: "
                            f"{found})")
        out = []
        for i, value in enumerate(column):
            if value is MISSING or value is None:
                raise DataError(f"{where}: {self._place(step, i)}: no field {key.name!r} to slice by (every sample "
                                "needs a value: a slice cannot be guessed)")
            if isinstance(value, (dict, list)):
                raise DataError(f"{where}: {self._place(step, i)}: field {key.name!r} is a {type(value).__name__}; "
                                "slice by a field of plain values (text, numbers, booleans)")
            out.append(value_text(value))
        return out

    @staticmethod
    def _place(step: Step, i: int) -> str:
        where = getattr(step.meta, "where", None)
        return where[i] if where else f"sample {step.offset + i}"

    # ------------------------------------------------------------------------------------------- compute

    def figures(self) -> list[SliceFigures]:
        out = []
        for dim in self.dims:
            for value, counts in sorted((self.sliced.counts if self.sliced else {}).get(dim.name, {}).items()):
                pm = point_metrics(counts)
                comp = pm["comparison"]
                out.append(SliceFigures(
                    dimension=dim.name, value=value, n=counts.total,
                    baseline_accuracy=float(pm["baseline"]["accuracy"]),
                    candidate_accuracy=float(pm["candidate"]["accuracy"]),
                    negative_flips=int(round(comp["negative_flips"])), positive_flips=int(round(comp["positive_flips"])),
                    gated=counts.total >= self.min_size,
                ))
        return out

    def _comparisons(self, figs: list[SliceFigures]) -> list[dict[str, Any]]:
        """Every gated (slice, metric, rule) with its measured value and raw one-sided p-values."""
        settings = decision_settings(self.ctx.config, self.options)
        conf = settings.confidence
        names = self.ctx.class_names
        acc = self.options.get("accuracy") or {}
        rec = self.options.get("recall") or {}
        nfr = (self.options.get("negative_flip_rate") or {}).get("max")
        rows: list[dict[str, Any]] = []
        for f in figs:
            if not f.gated:
                continue
            counts = self.sliced.counts[f.dimension][f.value]  # type: ignore[union-attr]
            if acc.get("max_drop") is not None:
                th = float(acc["max_drop"])
                ev = paired_drop_evidence(np.array(f.negative_flips), np.array(f.positive_flips), np.array(f.n),
                                          threshold=th, confidence=conf)
                rows.append(dict(slice=f.value, metric=f"accuracy[{f.value}]", rule="max_drop", threshold=th,
                                 value=f.drop, baseline=f.baseline_accuracy, candidate=f.candidate_accuracy,
                                 beyond=float(ev["beyond"]), within=float(ev["within"]), worse=float(ev["worse"]),
                                 interval=(float(ev["low"]), float(ev["high"])), method="Tango score"))
            if acc.get("min") is not None:
                th = float(acc["min"])
                right = int(round(f.candidate_accuracy * f.n))
                greater, less = stats.binomial_p_values(right, f.n, bound=th)
                rows.append(dict(slice=f.value, metric=f"accuracy[{f.value}]", rule="min", threshold=th,
                                 value=f.candidate_accuracy, baseline=f.baseline_accuracy,
                                 candidate=f.candidate_accuracy, beyond=float(less), within=float(greater),
                                 worse=math.nan, interval=stats.clopper_pearson_interval(right, f.n, confidence=conf),
                                 method="exact binomial"))
            if nfr is not None:
                th = float(nfr)
                greater, less = stats.binomial_p_values(f.negative_flips, f.n, bound=th)
                rows.append(dict(slice=f.value, metric=f"negative_flip_rate[{f.value}]", rule="max", threshold=th,
                                 value=f.negative_flips / f.n, baseline=None, candidate=None, beyond=float(greater),
                                 within=float(less), worse=math.nan,
                                 interval=stats.clopper_pearson_interval(f.negative_flips, f.n, confidence=conf),
                                 method="exact binomial"))
            if rec.get("max_drop") is not None or rec.get("min") is not None:
                rows += self._recall_rows(f, counts, rec, names, conf)
        return rows

    @staticmethod
    def _recall_rows(f: SliceFigures, counts: PairedCounts, rec: dict[str, Any], names: tuple[str, ...],
                     conf: float) -> list[dict[str, Any]]:
        cc = class_counts(counts.cells())
        rows = []
        for k in range(counts.num_classes):
            support = int(cc.support[k])
            if support == 0:
                continue
            cls = names[k] if k < len(names) else str(k)
            base, cand = cc.tp_baseline[k] / support, cc.tp_candidate[k] / support
            metric = f"recall[{cls}][{f.value}]"
            if rec.get("max_drop") is not None:
                th = float(rec["max_drop"])
                ev = paired_drop_evidence(cc.negative[k:k + 1], cc.positive[k:k + 1], cc.support[k:k + 1],
                                          threshold=th, confidence=conf)
                rows.append(dict(slice=f.value, metric=metric, rule="max_drop", threshold=th, value=float(base - cand),
                                 baseline=float(base), candidate=float(cand), beyond=float(ev["beyond"][0]),
                                 within=float(ev["within"][0]), worse=float(ev["worse"][0]),
                                 interval=(float(ev["low"][0]), float(ev["high"][0])), method="Tango score"))
            if rec.get("min") is not None:
                th = float(rec["min"])
                tp = int(cc.tp_candidate[k])
                greater, less = stats.binomial_p_values(tp, support, bound=th)
                rows.append(dict(slice=f.value, metric=metric, rule="min", threshold=th, value=float(cand),
                                 baseline=float(base), candidate=float(cand), beyond=float(less),
                                 within=float(greater), worse=math.nan,
                                 interval=stats.clopper_pearson_interval(tp, support, confidence=conf),
                                 method="exact binomial"))
        return rows

    def compute(self) -> CheckResult:
        settings = decision_settings(self.ctx.config, self.options)
        figs = self.figures()
        rows = self._comparisons(figs)
        findings: list[Finding] = []
        if rows:
            beyond = stats.adjust(np.array([r["beyond"] for r in rows]), settings.multiple_comparisons)
            worse_raw = np.array([r["worse"] for r in rows])
            worse = stats.adjust(worse_raw, settings.multiple_comparisons)
            for i, r in enumerate(rows):
                evidence = None
                if settings.statistical:
                    evidence = Evidence(p_beyond=float(beyond[i]), p_within=r["within"],
                                        p_worse=None if math.isnan(worse_raw[i]) else float(worse[i]),
                                        interval=r["interval"], method=r["method"])
                findings.append(judge(metric=r["metric"], rule=r["rule"], threshold=r["threshold"], value=r["value"],
                                      baseline=r["baseline"], candidate=r["candidate"], settings=settings,
                                      evidence=evidence, where=r["slice"]))
        by_slice: dict[str, list[Finding]] = {}
        for f in findings:
            by_slice.setdefault(f.where or "", []).append(f)
        intervals = {r["slice"]: r["interval"] for r in rows if r["metric"].startswith("accuracy[") and r["rule"] == "max_drop"}
        ranked = sorted(figs, key=lambda s: (-s.drop, s.value))
        gated = [s for s in figs if s.gated]
        small = [s for s in figs if not s.gated]
        table_rows = []
        for s in ranked[:TABLE_ROWS]:
            ci = intervals.get(s.value)
            status = ("not gated (n < %d)" % self.min_size if not s.gated else
                      _worst([f.status for f in by_slice.get(s.value, [])]))
            table_rows.append((s.value, s.n, round(s.baseline_accuracy, 4), round(s.candidate_accuracy, 4),
                               f"{s.drop:+.4f}", "" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
                               s.negative_flips, s.positive_flips, status))
        notes = []
        if small:
            notes.append(f"{len(small)} of {len(figs)} slices have fewer than min_size {self.min_size} samples: "
                         f"reported, not gated ({'; '.join(s.value for s in small[:5])}{', ...' if len(small) > 5 else ''})")
        if len(ranked) > TABLE_ROWS:
            notes.append(f"the table shows the {TABLE_ROWS} slices with the largest accuracy drop of {len(ranked)}; "
                         "the JSON report's details carry every slice")
        worst = ranked[0] if ranked else None
        status, summary = check_summary(self.name, findings, passed=(
            f"{len(gated)} slices ({', '.join(d.name for d in self.dims)}) are within every threshold"
            + (f"; the largest accuracy drop is {worst.value} ({worst.drop:+.4f}, n={worst.n})" if worst else "")))
        return CheckResult(
            name=self.name, status=status, summary=summary, findings=tuple(findings),
            tables=(Table(title=f"Slices ranked by accuracy drop (baseline - candidate){' (top %d)' % TABLE_ROWS if len(ranked) > TABLE_ROWS else ''}",
                          headers=("slice", "samples", "accuracy b", "accuracy c", "drop",
                                   f"{settings.confidence:.0%} CI of drop" if settings.statistical else "",
                                   "negative flips", "positive flips", "status"),
                          rows=tuple(table_rows)),),
            details={
                "decision": settings.mode,
                "multiple_comparisons": settings.multiple_comparisons if settings.statistical else "none",
                "comparisons": len(rows),
                "min_size": self.min_size,
                "dimensions": [d.name for d in self.dims],
                "slices": [
                    {"dimension": s.dimension, "slice": s.value, "samples": s.n, "gated": s.gated,
                     "baseline_accuracy": s.baseline_accuracy, "candidate_accuracy": s.candidate_accuracy,
                     "accuracy_drop": s.drop, "negative_flips": s.negative_flips, "positive_flips": s.positive_flips,
                     "accuracy_drop_interval": list(intervals[s.value]) if s.value in intervals else None}
                    for s in ranked
                ],
            },
            notes=tuple(notes),
        )


def _worst(statuses: list[str]) -> str:
    for s in ("fail", "warn", "pass"):
        if s in statuses:
            return s
    return "no rule"
