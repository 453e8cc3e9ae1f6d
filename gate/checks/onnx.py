"""ONNX cross-check: does the ONNX model that will ship behave like the PyTorch candidate that was tested?

The ONNX model is either the file the team ships (`--onnx model.onnx`, or `checks.onnx.model`) or an export of the
candidate made here at the first batch (gate.onnx_export: the torch.export-based exporter, else the TorchScript one).
ONNX Runtime then runs it on every evaluation batch of the same single pass, and three things are compared:

- numeric parity of the logits, with Polygraphy's element-wise rule made explicit: an element passes when
  |onnx - torch| <= atol OR |onnx - torch| <= rtol * |torch| (torch is the reference; a torch value of 0 is
  replaced by 2.22e-16 in the relative error, as Polygraphy does); NaN never passes. The report gives the smallest
  atol (at the configured rtol) and the smallest rtol (at the configured atol) that would have passed;
- task parity: top-1 agreement, ONNX accuracy next to PyTorch's, per-class precision/recall/F1, and the flips
  (negative: PyTorch right, ONNX wrong); for multi_label the numeric rule is on the probabilities and the
  agreement is of the predictions thresholded at 0.5 (every label of a sample), for regression the numeric rule
  on the predictions is the comparison;
- latency of ONNX Runtime next to PyTorch on the first batch, measured after the pass with gate.timing's
  interleaved sampler (informational unless `max_slowdown` is set).

State is streamed: sums, maxima, two confusion matrices and two bounded heaps of the worst samples.

Sharded (gate.sharding), counts, sums and confusions add up; each shard's maxima and what it knows of the ONNX model
(details, notes, a stop and its batch) are one `shard.rows.` row keyed by its first sample; the heaps' samples are
`worst.rows.` / `flips.rows.`, whose union's top-N is the single run's. The merged report shows the facts of the
shard that read batch 0 (it exported from batch 0, as the single run does) and the stop of the earliest batch. The
ONNX latency is the shard-0 figure: measured on rank 0 after the merge under torchrun, and in `--shard 1/N`'s
state after its pass (a `gate merge` job runs no model).
"""
from __future__ import annotations

import heapq
import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gate.checks.base import Check, RunContext, Step
from gate.errors import CheckpointError, ConfigError, MissingExtraError, require
from gate.report.model import CheckResult, Finding, Status, Table
from gate.verdict import DecisionSettings, check_summary, decision_settings, disturbed, judge

if TYPE_CHECKING:
    from gate.onnx_export import ExportResult

# Polygraphy adds this to zero reference values before dividing, so a relative error is always defined.
REL_EPSILON = 2.220446049250313e-16
_PURPOSE = "The ONNX check"
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


# ---------------------------------------------------------------------------------------------------------------
# Element-wise comparison (pure numpy)
# ---------------------------------------------------------------------------------------------------------------


def abs_rel_errors(got: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|got - ref| and |got - ref| / |ref| (ref zeros replaced by REL_EPSILON), in float64; NaN stays NaN."""
    got64 = np.asarray(got, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        absdiff = np.abs(got64 - ref64)
        denom = np.where(ref64 == 0, REL_EPSILON, np.abs(ref64))
        rel = absdiff / denom
    return absdiff, rel


def outside_tolerance(got: np.ndarray, ref: np.ndarray, *, atol: float, rtol: float) -> np.ndarray:
    """Elements that fail Polygraphy's rule: (|d| > atol or NaN) AND (|d|/|ref| > rtol or NaN)."""
    absdiff, rel = abs_rel_errors(got, ref)
    return _outside(absdiff, rel, atol=atol, rtol=rtol)


def _outside(absdiff: np.ndarray, rel: np.ndarray, *, atol: float, rtol: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ((absdiff > atol) | np.isnan(absdiff)) & ((rel > rtol) | np.isnan(rel))


def required_atol(absdiff: np.ndarray, rel: np.ndarray, *, rtol: float) -> float:
    """The smallest atol that passes every element at this rtol: the largest |d| among elements rtol fails (inf: NaN)."""
    with np.errstate(invalid="ignore"):
        failing = (rel > rtol) | np.isnan(rel)
    return _max_or_zero(absdiff[failing])


def required_rtol(absdiff: np.ndarray, rel: np.ndarray, *, atol: float) -> float:
    """The smallest rtol that passes every element at this atol: the largest |d|/|ref| among elements atol fails."""
    with np.errstate(invalid="ignore"):
        failing = (absdiff > atol) | np.isnan(absdiff)
    return _max_or_zero(rel[failing])


def _max_or_zero(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return math.inf
    return float(values.max())


def normalise_logits(output: np.ndarray, model: Any = None) -> np.ndarray:
    """ONNX output -> (B, K) as the runner reads the PyTorch `model`'s (gate.forward.scores_of): its output kind,
    its columns in the baseline's class order. Without a model: a single logit (B,) or (B, 1) becomes [0, z]."""
    import torch

    from gate.errors import ModelError
    from gate.forward import scores_of, to_scores

    arr = np.asarray(output)
    tensor = torch.from_numpy(np.ascontiguousarray(arr))
    try:
        if model is not None:
            return scores_of(model, tensor).numpy()
        single = arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)
        return to_scores(tensor, kind="binary_logit" if single else "logits").numpy()
    except ModelError as err:
        raise ValueError(f"ONNX class scores: {err}") from err


# ---------------------------------------------------------------------------------------------------------------
# Streamed statistics
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRow:
    """One sample in the report's worst-sample lists."""

    index: int
    label: int
    torch_pred: int
    onnx_pred: int
    max_abs_error: float
    max_rel_error: float

    @property
    def kind(self) -> str:
        if self.torch_pred == self.onnx_pred:
            return "same"
        if self.torch_pred == self.label:
            return "negative"
        return "positive" if self.onnx_pred == self.label else "neutral"



def _fold_numeric(stats: Any, ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The element-wise rule's counts, sums and maxima of one batch into `stats` (ParityStats or OutputParity);
    the batch's absolute and relative errors back."""
    absdiff, rel = abs_rel_errors(got, ref)
    stats.samples += absdiff.shape[0]
    stats.elements += absdiff.size
    stats.outside += int(_outside(absdiff, rel, atol=stats.atol, rtol=stats.rtol).sum())
    stats.non_finite += int((~np.isfinite(np.asarray(got, dtype=np.float64))).sum())
    stats.sum_abs += float(absdiff.sum())
    stats.sum_rel += float(rel.sum())
    stats.max_abs = _nanmax(stats.max_abs, absdiff)
    stats.max_rel = _nanmax(stats.max_rel, rel)
    stats.required_atol = max(stats.required_atol, required_atol(absdiff, rel, rtol=stats.rtol))
    stats.required_rtol = max(stats.required_rtol, required_rtol(absdiff, rel, atol=stats.atol))
    return absdiff, rel


class ParityStats:
    """Sufficient statistics of ONNX vs PyTorch over the pass; memory does not grow with the number of samples."""

    def __init__(self, num_classes: int, *, atol: float, rtol: float, top_n: int) -> None:
        self.num_classes = num_classes
        self.atol, self.rtol, self.top_n = atol, rtol, top_n
        self.samples = 0
        self.elements = 0
        self.outside = 0                   # elements failing the tolerance rule
        self.non_finite = 0                # elements where the ONNX output is NaN/Inf
        self.sum_abs = 0.0
        self.sum_rel = 0.0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.required_atol = 0.0
        self.required_rtol = 0.0
        self.agree = 0
        self.negative_flips = 0
        self.positive_flips = 0
        self.confusion_torch = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.confusion_onnx = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._worst: list[tuple[tuple[float, int], SampleRow]] = []
        self._flips: list[tuple[tuple[int, float, int], SampleRow]] = []

    def update(self, ref: np.ndarray, got: np.ndarray, labels: np.ndarray, *, offset: int) -> None:
        """Add one batch: ref = PyTorch (B, K), got = ONNX (B, K), labels (B,), offset = first sample's index."""
        absdiff, rel = _fold_numeric(self, ref, got)
        n, k = absdiff.shape
        torch_pred = np.argmax(np.asarray(ref, dtype=np.float64), axis=1)
        onnx_pred = np.argmax(np.nan_to_num(np.asarray(got, dtype=np.float64), nan=-np.inf), axis=1)
        labels = np.asarray(labels, dtype=np.int64)
        self.agree += int((torch_pred == onnx_pred).sum())
        self.negative_flips += int(((torch_pred == labels) & (onnx_pred != labels)).sum())
        self.positive_flips += int(((torch_pred != labels) & (onnx_pred == labels)).sum())
        np.add.at(self.confusion_torch, (labels, torch_pred), 1)
        np.add.at(self.confusion_onnx, (labels, onnx_pred), 1)
        sample_abs = _rowmax(absdiff)
        sample_rel = _rowmax(rel)
        order = np.lexsort((np.arange(n), -sample_abs))          # largest error first, ties by sample index
        worst = [i for i in order[: self.top_n] if sample_abs[i] > 0]
        flipped = [i for i in order if torch_pred[i] != onnx_pred[i]]
        flipped.sort(key=lambda i: bool(torch_pred[i] != labels[i]))  # negative flips first; stable keeps the rest
        for i in dict.fromkeys([*worst, *flipped[: self.top_n]]):
            row = SampleRow(
                index=offset + int(i), label=int(labels[i]), torch_pred=int(torch_pred[i]),
                onnx_pred=int(onnx_pred[i]), max_abs_error=float(sample_abs[i]), max_rel_error=float(sample_rel[i]),
            )
            if sample_abs[i] > 0:
                _push(self._worst, ((row.max_abs_error, -row.index), row), self.top_n)
            if row.kind != "same":
                _push(self._flips, ((int(row.kind == "negative"), row.max_abs_error, -row.index), row), self.top_n)

    @property
    def worst(self) -> list[SampleRow]:
        """Samples with the largest logit error, worst first."""
        return [row for _, row in sorted(self._worst, key=lambda item: item[0], reverse=True)]

    @property
    def flips(self) -> list[SampleRow]:
        """Samples whose top-1 prediction differs, negative flips first, then by error."""
        return [row for _, row in sorted(self._flips, key=lambda item: item[0], reverse=True)]

    def accuracy(self, confusion: np.ndarray) -> float:
        return float(np.trace(confusion) / self.samples) if self.samples else math.nan

    _COUNTS = ("samples", "elements", "outside", "non_finite", "agree", "negative_flips", "positive_flips")
    _MAXIMA = ("max_abs", "max_rel", "required_atol", "required_rtol")

    def state(self) -> dict[str, np.ndarray]:
        """Sums and confusions (added up), maxima (`maxima`, the caller makes them a row), the heaps' samples."""
        out: dict[str, np.ndarray] = {
            "counts": np.array([getattr(self, k) for k in self._COUNTS], dtype=np.int64),
            "sums": np.array([self.sum_abs, self.sum_rel], dtype=np.float64),
            "confusion_torch": self.confusion_torch, "confusion_onnx": self.confusion_onnx,
            "maxima": np.array([getattr(self, k) for k in self._MAXIMA], dtype=np.float64),
        }
        for name, rows in (("worst", [r for _, r in self._worst]), ("flips", [r for _, r in self._flips])):
            rows = sorted(rows, key=lambda r: r.index)
            out[f"{name}.rows.index"] = np.array([r.index for r in rows], dtype=np.int64)
            out[f"{name}.rows.classes"] = np.array([[r.label, r.torch_pred, r.onnx_pred] for r in rows],
                                                   dtype=np.int64).reshape(-1, 3)
            out[f"{name}.rows.errors"] = np.array([[r.max_abs_error, r.max_rel_error] for r in rows],
                                                  dtype=np.float64).reshape(-1, 2)
        return out

    def load_state(self, merged: dict[str, np.ndarray], maxima: np.ndarray) -> None:
        """The shards' merged state(); `maxima` (shards, 4): each shard's, of which the largest is the run's."""
        counts, sums = merged["counts"], merged["sums"]
        k = self.num_classes
        if (counts.shape != (len(self._COUNTS),) or sums.shape != (2,) or merged["confusion_torch"].shape != (k, k)
                or merged["confusion_onnx"].shape != (k, k) or maxima.ndim != 2 or maxima.shape[1] != 4):
            raise ValueError("onnx state: counts, sums, confusions or maxima of the wrong shape")
        for key, value in zip(self._COUNTS, counts.tolist()):
            setattr(self, key, int(value))
        self.sum_abs, self.sum_rel = (float(v) for v in sums)
        self.confusion_torch = merged["confusion_torch"].astype(np.int64)
        self.confusion_onnx = merged["confusion_onnx"].astype(np.int64)
        top = maxima.max(axis=0) if maxima.shape[0] else np.zeros(4)
        for key, value in zip(self._MAXIMA, top.tolist()):
            setattr(self, key, float(value))
        self._worst, self._flips = [], []
        for name in ("worst", "flips"):
            index, classes, errors = (merged[f"{name}.rows.{k}"] for k in ("index", "classes", "errors"))
            if classes.shape != (index.size, 3) or errors.shape != (index.size, 2):
                raise ValueError(f"onnx state: {name} rows of the wrong shape")
            for i, (label, tp, op), (ea, er) in zip(index.tolist(), classes.tolist(), errors.tolist()):
                if not all(0 <= c < k for c in (label, tp, op)):
                    raise ValueError(f"onnx state: a class index outside 0..{k - 1}")
                row = SampleRow(index=i, label=label, torch_pred=tp, onnx_pred=op, max_abs_error=ea,
                                max_rel_error=er)
                if name == "worst":
                    _push(self._worst, ((row.max_abs_error, -row.index), row), self.top_n)
                else:
                    _push(self._flips, ((int(row.kind == "negative"), row.max_abs_error, -row.index), row),
                          self.top_n)


class OutputParity:
    """ONNX vs PyTorch for multi_label (probabilities) and regression (predictions): the element-wise rule's
    sums and maxima, and for multi_label the agreement of the predictions thresholded at 0.5 (per label and per
    sample: every label the same); memory does not grow with the number of samples."""

    def __init__(self, width: int, *, task: str, atol: float, rtol: float) -> None:
        self.num_classes = width
        self.task, self.atol, self.rtol = task, atol, rtol
        self.samples = self.elements = self.outside = self.non_finite = 0
        self.sum_abs = self.sum_rel = self.max_abs = self.max_rel = 0.0
        self.required_atol = self.required_rtol = 0.0
        self.labels_agree = 0              # (sample, label) pairs where both predict the same (multi_label)
        self.samples_agree = 0             # samples where every label is predicted the same (multi_label)

    def update(self, ref: np.ndarray, got: np.ndarray) -> None:
        _fold_numeric(self, ref, got)
        if self.task == "multi_label":
            same = (np.asarray(ref) >= 0.5) == (np.nan_to_num(np.asarray(got, dtype=np.float64), nan=-1.0) >= 0.5)
            self.labels_agree += int(same.sum())
            self.samples_agree += int(same.all(axis=1).sum())

    _COUNTS = ("samples", "elements", "outside", "non_finite", "labels_agree", "samples_agree")
    _MAXIMA = ("max_abs", "max_rel", "required_atol", "required_rtol")

    def state(self) -> dict[str, np.ndarray]:
        """Counts and sums (added up) and the maxima (`maxima`: the caller makes them a row per shard)."""
        return {"counts": np.array([getattr(self, k) for k in self._COUNTS], dtype=np.int64),
                "sums": np.array([self.sum_abs, self.sum_rel], dtype=np.float64),
                "maxima": np.array([getattr(self, k) for k in self._MAXIMA], dtype=np.float64)}

    def load_state(self, merged: dict[str, np.ndarray], maxima: np.ndarray) -> None:
        counts, sums = merged["counts"], merged["sums"]
        if counts.shape != (len(self._COUNTS),) or sums.shape != (2,) or maxima.ndim != 2 or maxima.shape[1] != 4:
            raise ValueError("onnx state: counts, sums or maxima of the wrong shape")
        for key, value in zip(self._COUNTS, counts.tolist()):
            setattr(self, key, int(value))
        self.sum_abs, self.sum_rel = (float(v) for v in sums)
        top = maxima.max(axis=0) if maxima.shape[0] else np.zeros(4)
        for key, value in zip(self._MAXIMA, top.tolist()):
            setattr(self, key, float(value))


def _rowmax(values: np.ndarray) -> np.ndarray:
    """Per-row maximum where NaN counts as +inf (a NaN sample is the worst sample)."""
    return np.nan_to_num(values, nan=np.inf).max(axis=1)


def _nanmax(current: float, values: np.ndarray) -> float:
    if values.size == 0:
        return current
    if np.isnan(values).any():
        return math.inf
    return max(current, float(values.max()))


def _push(heap: list[Any], item: tuple[Any, SampleRow], size: int) -> None:
    if size <= 0:
        return
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item[0] > heap[0][0]:
        heapq.heapreplace(heap, item)


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a (true, predicted) confusion matrix (0 where undefined)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------------------------


class OnnxRunError(Exception):
    """ONNX Runtime could not load or run the model; the message is one line."""


class OrtModel:
    """An ONNX Runtime session fed from the same named tensors the PyTorch model gets.

    A graph with a fixed batch size (a static export, a ship file made with batch 1) is run in chunks of that size,
    the last chunk padded by repeating its last sample, so every batch of the pass can still be compared.
    """

    def __init__(self, path: Path, *, providers: list[str], threads: int | None) -> None:
        ort = require("onnxruntime", extra="onnx", purpose=_PURPOSE)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # errors come back as exceptions and are reported once, by the check
        # Idle ORT threads spin by default, stealing the CPU from PyTorch when the two are timed in turns.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise OnnxRunError(f"ONNX Runtime cannot load {path}: {_first_line(err)}") from err
        self.inputs = [(i.name, i.type, list(i.shape)) for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        first_dims = [shape[0] for _, _, shape in self.inputs if shape]
        self.fixed_batch = first_dims[0] if first_dims and isinstance(first_dims[0], int) else None

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def feed(self, named: Mapping[str, Any], *, by_name: bool) -> dict[str, np.ndarray]:
        """The session's inputs from the model's named tensors: by name for dict inputs, else by name or position."""
        arrays = {name: _to_numpy(t) for name, t in named.items()}
        wanted = [name for name, _, _ in self.inputs]
        if all(name in arrays for name in wanted):
            picked = [arrays[name] for name in wanted]
        elif not by_name and len(arrays) == len(wanted):
            picked = list(arrays.values())
        else:
            missing = [name for name in wanted if name not in arrays]
            raise OnnxRunError(
                f"the ONNX model takes inputs {', '.join(wanted)} but the data provides {', '.join(arrays)} "
                f"(missing: {', '.join(missing)})"
            )
        return {
            name: np.ascontiguousarray(arr.astype(_ORT_DTYPES.get(kind, arr.dtype), copy=False))
            for (name, kind, _), arr in zip(self.inputs, picked)
        }

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for the whole batch (chunked when the graph's batch size is fixed)."""
        size = next(iter(feed.values())).shape[0]
        step = self.fixed_batch if self.fixed_batch and self.fixed_batch != size else None
        if step is None:
            return self._run_once(feed)
        parts = []
        for start in range(0, size, step):
            chunk = {name: _pad_rows(arr[start : start + step], step) for name, arr in feed.items()}
            parts.append(self._run_once(chunk)[: min(step, size - start)])
        return np.concatenate(parts)

    def _run_once(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return np.asarray(self.session.run([self.output_name], feed)[0])
        except Exception as err:  # noqa: BLE001 - onnxruntime's pybind exception types are not importable stably
            raise OnnxRunError(_first_line(err)) from err


def _pad_rows(arr: np.ndarray, rows: int) -> np.ndarray:
    if arr.shape[0] == rows:
        return arr
    pad = np.repeat(arr[-1:], rows - arr.shape[0], axis=0)
    return np.concatenate([arr, pad])


def _to_numpy(tensor: Any) -> np.ndarray:
    if hasattr(tensor, "detach"):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:400] if lines else type(err).__name__


def ort_providers(option: str, device_type: str) -> list[str]:
    """CPU always; CUDA first when asked for (`cuda`) or when the run is on CUDA and ONNX Runtime has it (`auto`)."""
    ort = require("onnxruntime", extra="onnx", purpose=_PURPOSE)
    available = ort.get_available_providers()
    if option == "cuda" and "CUDAExecutionProvider" not in available:
        raise OnnxRunError(
            "checks.onnx.provider is cuda but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu"
        )
    use_cuda = option == "cuda" or (
        option == "auto" and device_type == "cuda" and "CUDAExecutionProvider" in available
    )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]


# ---------------------------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stopped:
    """Why the comparison could not go on: the check's status and its one-sentence summary."""

    status: Status
    summary: str
    stage: str                      # "dependencies" | "export" | "load" | "run"


class OnnxCheck(Check):
    name = "onnx"
    tasks = frozenset({"classification", "multi_label", "regression"})
    sharding = "merge"
    needs = frozenset({"scores", "inputs"})
    times_models = True      # ONNX Runtime against PyTorch on the first batch, after the pass

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self._tmpdir: Path | None = None
        self._ship: Path | None = None
        self._model: OrtModel | None = None
        self._export: ExportResult | None = None     # set when the candidate was exported here
        self._stopped: _Stopped | None = None
        self._stats: ParityStats | None = None
        self._outputs: OutputParity | None = None    # multi_label / regression instead of _stats
        self._timing_batch: Any = None               # CPU copy of the first batch, timed after the pass
        self._latency: dict[str, Any] | None = None
        self._first_sample: int | None = None        # sharded: this shard's first sample (its state row's index)
        self._reads_batch_0 = False
        self._stop_batch = -1                        # the batch the comparison stopped at (-1: before any)
        self._facts: dict[str, Any] | None = None    # merged: details, notes, source of the shard that read batch 0

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file being compared: the ship file, or the export (which lives until teardown)."""
        if self._ship is not None:
            return self._ship
        return self._export.path if self._export is not None else None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Find the ship file (a missing one is a usage error), check the extras, open the ship file."""
        self._ship = self._ship_path()
        needed = ["onnxruntime"] if self._ship else ["onnxruntime", "onnx", "onnxscript"]
        try:
            for module in needed:
                require(module, extra="onnx", purpose=_PURPOSE)
        except MissingExtraError as err:
            if not self.options.get("optional"):
                raise  # the setup is broken, not the model: exit 2, naming the extra to install
            self._stopped = self._unavailable(str(err), stage="dependencies")
            return
        if self._ship:
            try:
                self._model = OrtModel(
                    self._ship, providers=ort_providers(self.options["provider"], self.ctx.device.type),
                    threads=self._threads(),
                )
            except OnnxRunError as err:  # the user's own file is unreadable: the gate cannot run, exit 2
                raise CheckpointError(f"--onnx {self._ship}: {err}") from err

    def update(self, step: Step) -> None:
        if self._first_sample is None:
            self._first_sample = step.offset
            self._reads_batch_0 = step.index == 0
        if self._stopped is not None:
            return
        self._stop_batch = step.index          # where a stop found below happened
        if self._model is None:
            self._model = self._export_and_open(step)
            if self._model is None:
                return
        named = self._named(step.inputs)
        try:
            got = normalise_logits(self._model.run(self._model.feed(named, by_name=isinstance(step.inputs, Mapping))),
                                   self.ctx.models["candidate"])
        except (OnnxRunError, ValueError) as err:
            self._stopped = _Stopped("fail", f"ONNX Runtime failed on {_samples(step)}: {err}", "run")
            return
        ref = step.scores["candidate"].detach().float().cpu().numpy()
        if got.shape != ref.shape:
            self._stopped = _Stopped(
                "fail",
                f"the ONNX model's scores have shape {got.shape} but PyTorch's have {ref.shape} on {_samples(step)}",
                "run",
            )
            return
        if step.task != "classification":
            if self._outputs is None:
                self._outputs = OutputParity(ref.shape[1], task=step.task, atol=float(self.options["atol"]),
                                             rtol=float(self.options["rtol"]))
            self._outputs.update(ref, got)
        else:
            if self._stats is None:
                self._stats = ParityStats(
                    ref.shape[1], atol=float(self.options["atol"]), rtol=float(self.options["rtol"]),
                    top_n=int(self.options["worst_samples"]),
                )
            self._stats.update(ref, got, step.labels.detach().cpu().numpy(), offset=step.offset)
        if self._timing_batch is None and self.options["latency"]["enabled"]:
            self._timing_batch = _cpu_copy(step.inputs)

    def compute(self) -> CheckResult:
        """Findings from the streamed state; the latency sample is taken here, once, after the pass."""
        details = dict(self._facts["details"]) if self._facts else self._details()
        notes = tuple(self._facts["notes"]) if self._facts else self._notes()
        if self._stopped is not None:
            return CheckResult(self.name, self._stopped.status, self._stopped.summary, details=details, notes=notes)
        if self._outputs is not None:
            return self._output_result(self._outputs, details, notes)
        stats = self._stats
        if stats is None or stats.samples == 0:
            return CheckResult(self.name, "fail", "no samples were compared with ONNX Runtime", details=details)
        if self._latency is None and self._timing_batch is not None and self._model is not None:
            self._latency = self._measure_latency()
        findings = self._findings(stats)
        status, summary = check_summary(self.name, findings, passed=self._passed_summary(stats))
        details.update(_stats_details(stats, self._class_names(stats)))
        details["latency"] = self._latency
        return CheckResult(
            self.name, status, summary, findings=tuple(findings), tables=self._tables(stats), details=details,
            notes=notes,
        )

    # -- shards ---------------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Parity sums (added up), this shard's maxima and facts as one `shard.rows.` row, the heaps as rows."""
        k = len(self.ctx.class_names)
        stats: ParityStats | OutputParity
        if self.ctx.task != "classification":
            stats = self._outputs or OutputParity(k, task=self.ctx.task, atol=float(self.options["atol"]),
                                                  rtol=float(self.options["rtol"]))
        else:
            stats = self._stats or ParityStats(k, atol=float(self.options["atol"]), rtol=float(self.options["rtol"]),
                                               top_n=int(self.options["worst_samples"]))
        out: dict[str, Any] = stats.state()
        maxima = out.pop("maxima")
        if (self._reads_batch_0 and self._latency is None and self._timing_batch is not None
                and self._model is not None and self._stopped is None and not self.ctx.extras.get("distributed")):
            self._latency = self._measure_latency()     # a `--shard 1/N` job: `gate merge` has no model to time
        stopped = self._stopped
        facts = {
            "details": self._details(), "notes": list(self._notes()), "source": self._source(),
            "latency": self._latency if self._reads_batch_0 else None,
            "stopped": None if stopped is None else {"status": stopped.status, "summary": stopped.summary,
                                                     "stage": stopped.stage},
        }
        out["shard.rows.index"] = np.array([self._first_sample or 0], dtype=np.int64)
        out["shard.rows.maxima"] = maxima.reshape(1, -1)
        out["shard.rows.stop_batch"] = np.array([self._stop_batch if stopped is not None else -1], dtype=np.int64)
        out["shard.rows.facts"] = [json.dumps(facts, sort_keys=True)]
        return out

    def load_state(self, merged: dict[str, Any]) -> None:
        """The merged parity; the facts of the shard that read batch 0, the stop of the earliest batch."""
        facts = [json.loads(f) for f in merged["shard.rows.facts"]]
        stop_batch = merged["shard.rows.stop_batch"]
        if not facts or len(facts) != stop_batch.size or not all(isinstance(f, dict) for f in facts):
            raise ValueError("onnx state: one facts row per shard expected")
        first = facts[0]                      # rows are in sample order: the first is the shard of batch 0
        if self.ctx.task != "classification":
            outputs = OutputParity(len(self.ctx.class_names), task=self.ctx.task, atol=float(self.options["atol"]),
                                   rtol=float(self.options["rtol"]))
            outputs.load_state(merged, merged["shard.rows.maxima"])
            self._outputs = outputs if outputs.samples else None
        else:
            stats = ParityStats(len(self.ctx.class_names), atol=float(self.options["atol"]),
                                rtol=float(self.options["rtol"]), top_n=int(self.options["worst_samples"]))
            stats.load_state(merged, merged["shard.rows.maxima"])
            self._stats = stats
        stops = [(int(b), i) for i, (b, f) in enumerate(zip(stop_batch.tolist(), facts)) if f.get("stopped")]
        self._stopped = _Stopped(**facts[min(stops)[1]]["stopped"]) if stops else None
        self._facts = {"details": dict(first["details"]), "notes": list(first["notes"]), "source": first["source"]}
        if self._latency is None:             # rank 0 of a torchrun still has its model: it times after the merge
            self._latency = first.get("latency")

    def _source(self) -> str:
        if self._facts:
            return str(self._facts["source"])
        if self._ship:
            return f"shipped file {self._ship.name}"
        return f"export ({self._export.exporter} exporter)" if self._export is not None else "export"

    def teardown(self) -> None:
        self._model = None
        self._timing_batch = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- getting an ONNX model -------------------------------------------------------------------------------------

    def _ship_path(self) -> Path | None:
        raw = self.ctx.extras.get("onnx_path") or self.options.get("model")
        if not raw:
            return None
        path = Path(raw)
        key = "--onnx" if self.ctx.extras.get("onnx_path") else "checks.onnx.model"
        if not path.is_file():
            raise ConfigError(f"{key}: ONNX file not found: {path}")
        return path

    def _unavailable(self, reason: str, *, stage: str) -> _Stopped:
        """No ONNX model could be produced: a skip when the config marks ONNX optional, else a failure."""
        if self.options.get("optional"):
            return _Stopped("skip", f"{reason} (skipped: checks.onnx.optional is true)", stage)
        return _Stopped("fail", reason, stage)

    def _open(self, path: Path, *, stage: str) -> OrtModel | None:
        try:
            providers = ort_providers(self.options["provider"], self.ctx.device.type)
            return OrtModel(path, providers=providers, threads=self._threads())
        except OnnxRunError as err:
            self._stopped = _Stopped("fail", str(err), stage)
            return None

    def _export_and_open(self, step: Step) -> OrtModel | None:
        from gate.onnx_export import OnnxExportError, export_onnx, resolve_dynamic_axes, widen_batch

        candidate = self.ctx.models["candidate"]
        named = widen_batch(self._named(step.inputs))
        axes = resolve_dynamic_axes(self.options["dynamic_axes"], named)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="gate-onnx-"))
        try:
            self._export = export_onnx(
                candidate.module, named, self._tmpdir / "candidate.onnx",
                dict_inputs=isinstance(step.inputs, Mapping), opset=self.options["opset"], dynamic_axes=axes,
                exporter=self.options["exporter"],
            )
        except OnnxExportError as err:
            self._stopped = self._unavailable(str(err), stage="export")
            return None
        return self._open(self._export.path, stage="load")

    def _named(self, inputs: Any) -> dict[str, Any]:
        """The candidate's tensor inputs by name; dict inputs keep only what forward() takes, like the runner."""
        from gate.onnx_export import named_inputs

        from gate.forward import cast_floating
        from gate.precision import DTYPES

        candidate = self.ctx.models["candidate"]
        declared = getattr(candidate, "input_names", None)
        if isinstance(inputs, Mapping) and declared:
            inputs = {k: v for k, v in inputs.items() if k in declared}
        if getattr(candidate, "dtype", None) in DTYPES and candidate.dtype != "float32":   # as it runs in torch
            inputs = cast_floating(inputs, DTYPES[candidate.dtype])
        return named_inputs(inputs, declared=declared, module=candidate.module)

    # -- latency ---------------------------------------------------------------------------------------------------

    def _threads(self) -> int:
        """ONNX Runtime's intra-op threads, and torch's while the two are timed: the run's `threads`, else pinned
        like the latency check's (gate.timing.default_threads), so neither runtime picks its own count."""
        from gate.timing import default_threads

        return int(self.ctx.config.threads or default_threads())

    def _measure_latency(self) -> dict[str, Any] | None:
        """PyTorch (a) and ONNX Runtime (b) on the first batch, interleaved round by round (gate.timing)."""
        from gate.checks.latency import torch_threads
        from gate.forward import batch_len, move_to
        from gate.timing import (
            MAX_CPU_LOSS, CpuAccount, Rule, SamplingPlan, contention_of, cpu_times, interval_confidence, measure,
        )

        opts = self.options["latency"]
        model = self._model
        if model is None:
            return None
        candidate = self.ctx.models["candidate"]
        inputs = move_to(self._timing_batch, self.ctx.device)
        feed = model.feed(self._named(self._timing_batch), by_name=isinstance(inputs, Mapping))
        accounts = {"pytorch": CpuAccount(), "onnxruntime": CpuAccount()}
        time_torch = partial(
            _time_torch_call, candidate.module, inputs, getattr(candidate, "input_names", None),
            cuda=self.ctx.device.type == "cuda", account=accounts["pytorch"],
        )
        time_onnx = partial(_time_onnx_call, model, feed, account=accounts["onnxruntime"])
        slowdown = self.options.get("max_slowdown")
        rules = [Rule("p50", "ratio", 1.0 + float(slowdown))] if slowdown is not None else []
        settings = decision_settings(self.ctx.config, self.options)
        plan = SamplingPlan(
            budget_s=float(opts["budget_s"]), first_look=20, max_rounds=int(opts["max_rounds"]), looks=3,
            warmup=int(opts["warmup"]),
        )
        confidence = interval_confidence(settings.confidence, comparisons=max(1, len(rules)), looks=plan.looks)
        threads = self._threads()
        before = cpu_times()
        with torch_threads(threads):
            result = measure(
                time_torch, time_onnx, rules=rules, plan=plan, confidence=confidence, resamples=settings.resamples,
                seed=settings.seed,
            )
        contention = None if self.ctx.device.type == "cuda" else contention_of(
            accounts, before=before, after=cpu_times(), limit=MAX_CPU_LOSS, threads=threads,
        )
        p50 = result.comparisons["p50"]
        outcome = result.outcomes[0] if result.outcomes else None
        return {
            "batch_size": batch_len(inputs),
            "rounds": result.sampled.rounds,
            "pytorch_ms": p50.baseline * 1e3,
            "onnx_ms": p50.candidate * 1e3,
            "ratio": p50.ratio.estimate,
            "ratio_interval": [p50.ratio.low, p50.ratio.high],
            "confidence": confidence,
            "decision": outcome.decision if outcome else None,
            "max_slowdown": slowdown,
            "threads": threads,
            "contention": contention.as_dict() if contention is not None else None,
            "contention_reason": contention.reason() if contention is not None and contention.detected else None,
            "method": "interleaved rounds on the first batch, p50 per call, paired bootstrap interval (gate.timing)",
        }

    # -- findings and report ---------------------------------------------------------------------------------------

    def _output_result(self, stats: OutputParity, details: dict[str, Any], notes: tuple[str, ...]) -> CheckResult:
        """multi_label / regression: the element-wise rule on probabilities / predictions, for multi_label the
        share of samples whose thresholded labels all agree (min_top1_agreement), and the latency."""
        if self._latency is None and self._timing_batch is not None and self._model is not None:
            self._latency = self._measure_latency()
        what = "probabilities" if stats.task == "multi_label" else "predictions"
        numeric = _numeric_finding(stats)  # type: ignore[arg-type]  # the same numeric fields as ParityStats
        findings = [replace(numeric, metric=what, reason=what + numeric.reason[len("logits"):])]
        rows: list[tuple[Any, ...]] = [("samples", stats.samples)]
        figures: dict[str, Any] = {}
        if stats.task == "multi_label":
            figures = {"sample_agreement": stats.samples_agree / stats.samples,
                       "label_agreement": stats.labels_agree / stats.elements}
            rows += [("samples with every label the same (threshold 0.5)", figures["sample_agreement"]),
                     ("labels the same (threshold 0.5)", figures["label_agreement"])]
            if self.options.get("min_top1_agreement") is not None:
                findings.append(judge(
                    metric="sample_agreement", rule="min", threshold=float(self.options["min_top1_agreement"]),
                    value=figures["sample_agreement"], settings=DecisionSettings(mode="point"),
                ))
        latency = self._latency_finding()
        if latency is not None:
            findings.append(latency)
        rows += [("max abs error", stats.max_abs), ("mean abs error", stats.sum_abs / stats.elements),
                 ("max rel error", stats.max_rel), ("mean rel error", stats.sum_rel / stats.elements),
                 (f"values outside atol {stats.atol:g} / rtol {stats.rtol:g}", stats.outside),
                 (f"atol needed at rtol {stats.rtol:g}", stats.required_atol),
                 (f"rtol needed at atol {stats.atol:g}", stats.required_rtol)]
        source = self._source()
        agreed = (f", every label the same on {figures['sample_agreement']:.2%} of samples"
                  if stats.task == "multi_label" else "")
        status, summary = check_summary(self.name, findings, passed=(
            f"ONNX {source} matches PyTorch on {stats.samples} samples: every {what.replace('ies', 'y').rstrip('s')} within atol "
            f"{stats.atol:g} or rtol {stats.rtol:g}{agreed}"))
        details.update({
            "samples": stats.samples,
            "numeric": {"elements": stats.elements, "outside_tolerance": stats.outside,
                        "non_finite": stats.non_finite, "max_abs_error": stats.max_abs,
                        "mean_abs_error": stats.sum_abs / stats.elements, "max_rel_error": stats.max_rel,
                        "mean_rel_error": stats.sum_rel / stats.elements, "required_atol": stats.required_atol,
                        "required_rtol": stats.required_rtol},
            "task": {"task": stats.task, "compared": what, **figures},
            "latency": self._latency,
        })
        tables = [Table(title="ONNX vs PyTorch", headers=("metric", "value"), rows=tuple(rows))]
        return CheckResult(self.name, status, summary, findings=tuple(findings), tables=tuple(tables),
                           details=details, notes=notes)

    def _findings(self, stats: ParityStats) -> list[Finding]:
        point = DecisionSettings(mode="point")
        findings = [_numeric_finding(stats)]
        agreement = stats.agree / stats.samples
        if self.options.get("min_top1_agreement") is not None:
            findings.append(judge(
                metric="top1_agreement", rule="min", threshold=float(self.options["min_top1_agreement"]),
                value=agreement, settings=point,
            ))
        acc_torch, acc_onnx = stats.accuracy(stats.confusion_torch), stats.accuracy(stats.confusion_onnx)
        if self.options.get("max_accuracy_drop") is not None:
            findings.append(judge(
                metric="accuracy", rule="max_drop", threshold=float(self.options["max_accuracy_drop"]),
                value=acc_torch - acc_onnx, baseline=acc_torch, candidate=acc_onnx, settings=point,
            ))
        if self.options.get("max_negative_flips") is not None:
            findings.append(judge(
                metric="negative_flips", rule="max", threshold=float(self.options["max_negative_flips"]),
                value=float(stats.negative_flips), settings=point,
            ))
        latency = self._latency_finding()
        if latency is not None:
            findings.append(latency)
        return findings

    def _latency_finding(self) -> Finding | None:
        lat = self._latency
        if not lat or lat["max_slowdown"] is None:
            return None
        limit = 1.0 + float(lat["max_slowdown"])
        low, high = lat["ratio_interval"]
        decision = lat["decision"]
        # Decided by gate.verdict's interval rule, the one the sampler stopped on; too few rounds decide nothing.
        settings = replace(decision_settings(self.ctx.config, self.options), mode="non-inferiority")
        decided = (low, high) if decision != "inconclusive" else (math.nan, math.nan)
        ratio = lat["ratio"]
        finding = judge(metric="latency_ratio", rule="max", threshold=limit, value=ratio, baseline=lat["pytorch_ms"],
                        candidate=lat["onnx_ms"], settings=settings, interval=decided)
        reason = (
            f"latency_ratio: ONNX Runtime takes {ratio:.3g}x PyTorch's p50 on a batch of {lat['batch_size']} "
            f"({lat['confidence']:.1%} CI [{low:.3g}, {high:.3g}]); the limit is {limit:.3g}x (max_slowdown "
            f"{lat['max_slowdown']:.3g})"
        )
        if finding.inconclusive:
            reason += ": the timings cannot decide"
        finding = replace(finding, reason=reason, interval=(low, high), decision="interval", required=ratio)
        if lat.get("contention_reason"):
            finding = disturbed(finding, why=lat["contention_reason"])
        return finding

    def _passed_summary(self, stats: ParityStats) -> str:
        source = self._source()
        text = (
            f"ONNX {source} matches PyTorch on {stats.samples} samples: every logit within atol "
            f"{stats.atol:g} or rtol {stats.rtol:g}, top-1 agreement {stats.agree / stats.samples:.2%}"
        )
        if self._latency:
            lat = self._latency
            text += f", ONNX Runtime at {lat['ratio']:.2f}x PyTorch's latency ({lat['threads']} thread"
            text += f"{'s' if lat['threads'] != 1 else ''} each)"
            if lat.get("contention_reason"):
                text += "; timed on a contended machine: " + lat["contention_reason"]
        return text

    def _class_names(self, stats: ParityStats) -> tuple[str, ...]:
        names = tuple(self.ctx.class_names or ())
        return names if len(names) == stats.num_classes else tuple(str(i) for i in range(stats.num_classes))

    def _tables(self, stats: ParityStats) -> tuple[Table, ...]:
        names = self._class_names(stats)
        tables = [_parity_table(stats), _per_class_table(stats, names)]
        if stats.worst:
            tables.append(_samples_table("Largest logit differences (ONNX vs PyTorch)", stats.worst, names))
        if stats.flips:
            tables.append(_samples_table("Top-1 flips (ONNX vs PyTorch)", stats.flips, names))
        if self._latency:
            lat = self._latency
            tables.append(Table(
                title="Latency per batch, p50 (informational unless max_slowdown is set)",
                headers=("batch size", "PyTorch ms", "ONNX Runtime ms", "ratio", "rounds"),
                rows=((lat["batch_size"], lat["pytorch_ms"], lat["onnx_ms"], lat["ratio"], lat["rounds"]),),
            ))
        return tuple(tables)

    def _notes(self) -> tuple[str, ...]:
        """What changes no status but a reader should know: exporter fallbacks and warnings, chunked runs."""
        notes = []
        export = self._export
        if export is not None and export.fallback_reason:
            notes.append(
                f"exported with the {export.exporter} exporter because the preferred one could not: "
                f"{export.fallback_reason}"
            )
        if export is not None:
            tracer = [w for w in export.warnings if w.startswith("TracerWarning")]
            if tracer:
                notes.append(
                    "the TorchScript exporter traced Python control flow or values as constants "
                    f"({tracer[0]}); the comparison shows what the exported graph does on this data only"
                )
        model = self._model
        if model is not None and model.fixed_batch:
            notes.append(f"the ONNX graph has a fixed batch size of {model.fixed_batch}: batches ran in chunks of it")
        if model is not None and self.ctx.device.type == "cuda" and "CUDAExecutionProvider" not in model.providers:
            notes.append("ONNX Runtime ran on CPU: this onnxruntime has no working CUDAExecutionProvider")
        dtype = getattr(self.ctx.models["candidate"], "dtype", None)
        if dtype in ("float16", "bfloat16"):
            import torch

            step = float(torch.finfo(getattr(torch, dtype)).eps)
            atol = float(self.options["atol"])
            if atol < step:
                notes.append(
                    f"the candidate runs in {dtype}, whose rounding step near 1.0 is {step:.3g}: atol {atol:g} is "
                    "below one step, so two correct runtimes that round differently can fail the parity rules on "
                    "logits of that size (checks.onnx.atol)"
                )
        return tuple(notes)

    def _details(self) -> dict[str, Any]:
        export = self._export
        details: dict[str, Any] = {
            "source": "file" if self._ship else "export",
            "path": str(self._ship) if self._ship else None,
            "stage": self._stopped.stage if self._stopped else None,
            "atol": float(self.options["atol"]),
            "rtol": float(self.options["rtol"]),
            "tolerance_rule": "|onnx-torch| <= atol OR |onnx-torch| <= rtol*|torch|; NaN never passes",
        }
        if export is not None:
            details["export"] = {
                "exporter": export.exporter,
                "opset": export.opset,
                "input_names": list(export.input_names),
                "dynamic_axes": {k: list(v) for k, v in export.dynamic_axes.items()},
                "fallback_reason": export.fallback_reason,
                "warnings": list(export.warnings),
            }
        if self._model is not None:
            details["providers"] = self._model.providers
            details["onnx_inputs"] = [{"name": n, "type": t, "shape": s} for n, t, s in self._model.inputs]
        return details


def _time_torch_call(
    module: Any, inputs: Any, input_names: tuple[str, ...] | None, *, cuda: bool, account: Any
) -> float:
    """Seconds of one PyTorch forward, called as the runner calls it (CUDA work waited for)."""
    from gate.timing import time_accounted_call

    return time_accounted_call(partial(_torch_forward, module, inputs, input_names, cuda=cuda), account)


def _torch_forward(module: Any, inputs: Any, input_names: tuple[str, ...] | None, *, cuda: bool) -> None:
    import torch

    from gate.forward import call_model

    with torch.inference_mode():
        call_model(module, inputs, input_names=input_names)
    if cuda:
        torch.cuda.synchronize()


def _time_onnx_call(model: OrtModel, feed: dict[str, np.ndarray], *, account: Any) -> float:
    """Seconds of one ONNX Runtime run of the same batch."""
    from gate.timing import time_accounted_call

    return time_accounted_call(partial(model.run, feed), account)


def _samples(step: Step) -> str:
    size = int(step.labels.shape[0])
    return f"batch {step.index} (samples {step.offset}..{step.offset + size - 1})"


def _cpu_copy(inputs: Any) -> Any:
    """A CPU copy of a batch's inputs that outlives the Step (kept for the latency sample)."""
    if isinstance(inputs, Mapping):
        return {k: _cpu_copy(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_cpu_copy(v) for v in inputs)
    if hasattr(inputs, "detach"):
        return inputs.detach().to("cpu", copy=True)
    return inputs


def _numeric_finding(stats: ParityStats) -> Finding:
    """One finding for the element-wise rule: value = the atol it needed at the configured rtol."""
    status: Status = "pass" if stats.outside == 0 else "fail"
    atol, rtol = stats.atol, stats.rtol
    margin = atol - stats.required_atol if math.isfinite(stats.required_atol) else None
    if status == "pass":
        reason = (
            f"logits: all {stats.elements} values within atol {atol:g} or rtol {rtol:g} of PyTorch "
            f"(max abs error {stats.max_abs:.3g}, max rel error {stats.max_rel:.3g})"
        )
    else:
        share = stats.outside / stats.elements
        nan = f", {stats.non_finite} non-finite" if stats.non_finite else ""
        reason = (
            f"logits: {stats.outside} of {stats.elements} values ({share:.2%}{nan}) differ from PyTorch by more than "
            f"atol {atol:g} and rtol {rtol:g} (max abs error {stats.max_abs:.3g}); passing needs atol >= "
            f"{stats.required_atol:.3g} at rtol {rtol:g}, or rtol >= {stats.required_rtol:.3g} at atol {atol:g}"
        )
    return Finding(
        metric="logits", rule="allclose", status=status, reason=reason, threshold=atol,
        value=stats.required_atol, margin=margin, required=stats.required_atol, decision="point",
    )


def _parity_table(stats: ParityStats) -> Table:
    n = stats.samples
    acc_t, acc_o = stats.accuracy(stats.confusion_torch), stats.accuracy(stats.confusion_onnx)
    return Table(
        title="ONNX vs PyTorch",
        headers=("metric", "value"),
        rows=(
            ("samples", n),
            ("PyTorch accuracy", acc_t),
            ("ONNX accuracy", acc_o),
            ("top-1 agreement", stats.agree / n),
            ("negative flips (PyTorch right, ONNX wrong)", stats.negative_flips),
            ("positive flips (PyTorch wrong, ONNX right)", stats.positive_flips),
            ("max abs error", stats.max_abs),
            ("mean abs error", stats.sum_abs / stats.elements),
            ("max rel error", stats.max_rel),
            ("mean rel error", stats.sum_rel / stats.elements),
            (f"values outside atol {stats.atol:g} / rtol {stats.rtol:g}", stats.outside),
            (f"atol needed at rtol {stats.rtol:g}", stats.required_atol),
            (f"rtol needed at atol {stats.atol:g}", stats.required_rtol),
        ),
    )


def _per_class_table(stats: ParityStats, names: tuple[str, ...]) -> Table:
    t, o = per_class(stats.confusion_torch), per_class(stats.confusion_onnx)
    rows = tuple(
        (names[k], int(t["support"][k]), *(float(d[m][k]) for m in ("recall", "precision", "f1") for d in (t, o)))
        for k in range(stats.num_classes)
    )
    return Table(
        title="Per class: PyTorch vs ONNX",
        headers=("class", "support", "recall PyTorch", "recall ONNX", "precision PyTorch", "precision ONNX",
                 "F1 PyTorch", "F1 ONNX"),
        rows=rows,
    )


def _samples_table(title: str, rows: list[SampleRow], names: tuple[str, ...]) -> Table:
    return Table(
        title=title,
        headers=("sample", "label", "PyTorch", "ONNX", "flip", "max abs error", "max rel error"),
        rows=tuple(
            (r.index, names[r.label], names[r.torch_pred], names[r.onnx_pred], r.kind, r.max_abs_error,
             r.max_rel_error)
            for r in rows
        ),
    )


def _stats_details(stats: ParityStats, names: tuple[str, ...]) -> dict[str, Any]:
    t, o = per_class(stats.confusion_torch), per_class(stats.confusion_onnx)
    return {
        "samples": stats.samples,
        "numeric": {
            "elements": stats.elements,
            "outside_tolerance": stats.outside,
            "non_finite": stats.non_finite,
            "max_abs_error": stats.max_abs,
            "mean_abs_error": stats.sum_abs / stats.elements,
            "max_rel_error": stats.max_rel,
            "mean_rel_error": stats.sum_rel / stats.elements,
            "required_atol": stats.required_atol,
            "required_rtol": stats.required_rtol,
        },
        "task": {
            "top1_agreement": stats.agree / stats.samples,
            "pytorch_accuracy": stats.accuracy(stats.confusion_torch),
            "onnx_accuracy": stats.accuracy(stats.confusion_onnx),
            "negative_flips": stats.negative_flips,
            "positive_flips": stats.positive_flips,
            "per_class": {
                names[k]: {
                    "support": int(t["support"][k]),
                    "pytorch": {m: float(t[m][k]) for m in ("precision", "recall", "f1")},
                    "onnx": {m: float(o[m][k]) for m in ("precision", "recall", "f1")},
                }
                for k in range(stats.num_classes)
            },
        },
        "worst_samples": [_row_dict(r, names) for r in stats.worst],
        "flipped_samples": [_row_dict(r, names) for r in stats.flips],
    }


def _row_dict(row: SampleRow, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "index": row.index,
        "label": names[row.label],
        "pytorch": names[row.torch_pred],
        "onnx": names[row.onnx_pred],
        "flip": row.kind,
        "max_abs_error": row.max_abs_error,
        "max_rel_error": row.max_rel_error,
    }
