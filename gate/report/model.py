"""The report model: plain frozen dataclasses that every renderer (console, JSON, Markdown, JUnit) reads."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip"]
STATUS_ORDER: dict[str, int] = {"fail": 0, "warn": 1, "pass": 2, "skip": 3}


@dataclass(frozen=True)
class Finding:
    """One thresholded comparison: what was measured, against which rule, and by how much it passed or failed.

    `margin` is positive inside the threshold and negative outside it, in the metric's own units.
    `required` is the threshold that would just have passed (Polygraphy's "minimum required tolerance").
    """

    metric: str                      # e.g. "accuracy", "recall[cat]", "p50_ms[bs=8]"
    rule: str                        # e.g. "min", "max_drop", "max_relative_drop", "max", "max_increase"
    status: Status
    reason: str                      # one sentence a user can act on
    threshold: float | None = None
    value: float | None = None       # the quantity compared with the threshold (e.g. the drop)
    baseline: float | None = None
    candidate: float | None = None
    margin: float | None = None
    required: float | None = None
    interval: tuple[float, float] | None = None   # confidence interval of `value`, when a statistical rule applied
    p_value: float | None = None
    decision: str = "point"          # "point", "non-inferiority", "interval", ...
    inconclusive: bool = False       # the data could not decide; status is then warn or fail per config
    where: str | None = None         # a layer, a class, a batch size: where it happened


@dataclass(frozen=True)
class Table:
    """A small table a check wants shown (per-class rows, drift per layer, latency percentiles)."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Chart:
    """A bar chart, rendered as Mermaid `xychart-beta` in Markdown (GitHub renders it without image hosting)."""

    title: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    y_label: str = ""


@dataclass(frozen=True)
class PowerNote:
    """The data cannot decide a threshold: the smallest effect it can detect and the samples that would.

    Rendered first in every report and carried as the JSON report's top-level `power` list.
    `min_detectable` is None when no effect up to the observed discordance is detectable at all.
    """

    check: str
    metric: str
    threshold: float
    min_detectable: float | None
    samples: int
    samples_needed: int
    note: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    summary: str                                   # one sentence: why this status
    findings: tuple[Finding, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)   # check-specific figures for the JSON report
    notes: tuple[str, ...] = ()                    # advice that changes no status (e.g. "the data is too small to ...")
    duration_s: float = 0.0
    power: tuple[PowerNote, ...] = ()              # thresholds this data cannot decide (also in `notes`)


@dataclass(frozen=True)
class ModelInfo:
    role: str                 # "baseline" | "candidate"
    path: str
    format: str
    sha256: str | None
    size_bytes: int | None
    parameters: int | None
    num_classes: int | None
    class_names: tuple[str, ...] | None = None   # as the model names them, in its own column order
    columns: tuple[int, ...] | None = None       # its column of each of the run's classes; None: same positions
    output: str | None = None                    # what its output was read as: logits, probabilities, sigmoid, ...
    dtype: str | None = None                     # the floating dtype it ran in
    checkpoint_dtype: str | None = None          # the dtype its weights were shipped in
    cast: str | None = None                      # what was cast on load, in words; None: it ran as shipped


@dataclass(frozen=True)
class DataInfo:
    path: str
    format: str
    sha256: str | None
    num_samples: int
    num_batches: int
    batch_size: int


@dataclass(frozen=True)
class FlipExample:
    """One sample on which the two models disagree about being right: what a reviewer reads first.

    `kind` negative: the baseline was right and the candidate is wrong; positive: the reverse. Confidences are the
    softmax probability of each model's own prediction. `text` is the sample's input text when the data has text,
    cut to the report's limit and with control characters removed (data, never markup: renderers escape it).
    """

    kind: Literal["negative", "positive"]
    index: int                       # 0-based position of the sample in the evaluation data
    label: str
    baseline: str
    baseline_confidence: float
    candidate: str
    candidate_confidence: float
    text: str | None = None
    where: str | None = None         # "eval.jsonl: line 12" when the reader knows it


@dataclass(frozen=True)
class FlipExamples:
    """The most confident flips of each kind (at most `cap` each, most confident wrong prediction first)."""

    negative: tuple[FlipExample, ...]
    positive: tuple[FlipExample, ...]
    negative_total: int              # every negative flip in the data, kept or not
    positive_total: int
    cap: int
    text_chars: int


@dataclass(frozen=True)
class Report:
    verdict: Status
    exit_code: int
    summary: str
    checks: tuple[CheckResult, ...]
    models: tuple[ModelInfo, ...]
    data: DataInfo
    class_names: tuple[str, ...]
    metrics: dict[str, Any]                 # baseline / candidate / comparison figures
    config: dict[str, Any]                  # the effective config (after defaults)
    environment: dict[str, Any]
    created_at: str
    duration_s: float
    gate_version: str
    schema_version: str
    notes: tuple[str, ...] = ()             # what the run did to compare the models as they ship (reordered
                                            # classes, casts on load), and warnings about it
    power: tuple[PowerNote, ...] = ()       # every check's PowerNotes, shown first by every renderer
    examples: FlipExamples | None = None    # the top flipped samples (gate.flipped), None when none were collected
    task: str = "classification"            # what the models do (gate.tasks): classification, multi_label, regression


def overall_status(statuses: list[str]) -> Status:
    """fail if anything failed, else warn if anything warned, else pass (skips do not count)."""
    if "fail" in statuses:
        return "fail"
    if "warn" in statuses:
        return "warn"
    return "pass"


def to_jsonable(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, non-finite floats -> strings JSON can carry ("nan", "inf", "-inf")."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_jsonable(obj.item())
    return obj


#: How each task counts the columns of class_names in report headers.
WIDTH_WORDS = {"classification": "classes", "multi_label": "labels", "regression": "targets"}


def width_phrase(task: str, count: int) -> str:
    """'3 classes', '4 labels', '1 target': how many columns class_names names, in the task's word."""
    word = WIDTH_WORDS.get(task, "classes")
    return f"{count} {word[:-1] if count == 1 and task != 'classification' else word}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(figure, baseline, candidate, candidate - baseline) for each number the baseline and candidate blocks both
    hold (a task check's metrics(): regression, multi_label), in the baseline block's order; nested lists and
    objects (per label, per target) are left to the check's own tables."""
    base, cand = metrics.get("baseline") or {}, metrics.get("candidate") or {}
    rows = []
    for key, b in base.items():
        c = cand.get(key)
        if _is_number(b) and _is_number(c):
            rows.append((str(key), b, c, c - b))
    return rows


def comparison_items(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """(figure, value) for each number in the comparison block, in its order."""
    return [(str(k), v) for k, v in (metrics.get("comparison") or {}).items() if _is_number(v)]
