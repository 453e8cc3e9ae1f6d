"""Helpers shared by the data readers: option defaults, labels, callable specs, hashing, batch slicing.

torch is imported inside the functions that need it, so importing gate.data stays cheap.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gate.errors import DataError

if TYPE_CHECKING:
    import torch

FORMATS = ("jsonl", "csv", "pt", "safetensors", "npz", "factory")

# Mirrors the defaults of the `data` section in gate/schemas/config.schema.json, so that a direct API caller
# who passes a partial options dict gets the same behaviour as the CLI.
DEFAULT_OPTIONS: dict[str, Any] = {
    "format": "auto",
    "batch_size": 64,
    "limit": None,
    "text_column": "text",
    "label_column": "label",
    "label_separator": "|",
    "inputs": None,
    "labels": "labels",
    "tokenizer": None,
    "max_length": 256,
    "factory": None,
    "kwargs": {},
}

# Tried in this order when the default label name "labels" is absent from a tensor file or a dict sample.
LABEL_FALLBACKS = ("label", "y", "targets")

_CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_MAX_NAMES_SHOWN = 20


class _Missing:
    """The value of a field a row does not have (None is a value: JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Skipped:
    """Another shard's batch, yielded in its place by a reader that seeks (`batches_with_meta(owns=...)`): only its
    size, so sample offsets stay global; it was neither tokenized nor decoded nor sliced."""

    size: int


@dataclass(frozen=True)
class BatchMeta:
    """What a batch carries besides inputs and labels, for slices and flipped examples; data, never executed.

    `texts`: each sample's raw text (text files; a factory's meta field 'text'), None when the data has none;
    `fields`: field name -> one value per sample (MISSING where a row lacks the field): the other JSONL keys or CSV
    columns, the other 1-D tensors of a tensor file, the 'meta' a factory yields; `where`: each sample's place
    in the data for messages ("eval.jsonl: line 12"), None when only its index is known.
    """

    texts: tuple[str, ...] | None = None
    fields: dict[str, list[Any]] = field(default_factory=dict)
    where: tuple[str, ...] | None = None


class BatchSource(Protocol):
    """What a format reader provides: the sample count when known up front, and a fresh pass over the batches."""

    num_samples: int | None

    def batches(self) -> Iterator[tuple[Any, torch.Tensor]]: ...

    def batches_with_meta(self) -> Iterator[tuple[Any, torch.Tensor, BatchMeta]]: ...


def meta_values(value: Any, *, rows: int, where: str) -> list[Any]:
    """One meta field of a batch as a list of plain values (tensors and arrays via tolist), one per sample."""
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise DataError(f"{where}: expected one value per sample, found a {type(value).__name__}")
    values = list(value)
    if len(values) != rows:
        raise DataError(f"{where}: {len(values)} values for {rows} samples; a meta field needs one value per sample")
    return values


def is_callable_spec(text: str) -> bool:
    """True for 'package.module:callable' (and not for a path like C:/data.csv)."""
    return bool(_CALLABLE_SPEC.match(text)) and not os.path.exists(text)


def import_callable(spec: str, *, what: str) -> Any:
    """Import 'package.module:attr.path' with the current directory on sys.path; DataError naming `what` if not."""
    if not _CALLABLE_SPEC.match(spec):
        raise DataError(f"{what} {spec!r}: expected package.module:callable")
    module_name, _, attr_path = spec.partition(":")
    cwd = os.getcwd()
    # Like `python -m`: a factory module next to gate.yaml is importable. Left on sys.path because the
    # factory's own code may import sibling modules lazily while the data is read.
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:
        raise DataError(
            f"{what} {spec!r}: cannot import module {module_name!r} "
            f"(searched the current directory {cwd} and sys.path): {type(err).__name__}: {err}"
        ) from err
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise DataError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr_path!r}") from err
    if not callable(obj):
        raise DataError(f"{what} {spec!r}: {attr_path!r} is a {type(obj).__name__}, expected a callable")
    return obj


def names_list(names: Sequence[str]) -> str:
    """'a, b, c' for an error message, shortened when there are many."""
    shown = [str(n) for n in names[:_MAX_NAMES_SHOWN]]
    more = f", ... ({len(names)} in all)" if len(names) > _MAX_NAMES_SHOWN else ""
    return ", ".join(shown) + more if shown else "(none)"


def label_index(value: Any, *, class_names: tuple[str, ...] | None, where: str) -> int:
    """One label as a class index: an int, an integral float, a class name, or an integer written as text.

    A string that is one of `class_names` maps to its position first; otherwise a string of digits is an index.
    """
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: label {value!r} is not a class index or class name")
    if isinstance(value, int):
        index = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{where}: label {value!r} is not an integer class index")
        index = int(value)
    elif isinstance(value, str):
        index = _label_from_text(value, class_names=class_names, where=where)
    elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalar
        return label_index(value.item(), class_names=class_names, where=where)
    else:
        raise DataError(f"{where}: label {value!r} ({type(value).__name__}) is not a class index or class name")
    if index < 0:
        raise DataError(f"{where}: label {index} is negative; labels are class indices 0..K-1")
    return index


def _label_from_text(text: str, *, class_names: tuple[str, ...] | None, where: str) -> int:
    name = text.strip()
    if class_names and name in class_names:
        return class_names.index(name)
    if _INT_TEXT.match(name):
        return int(name)
    if class_names:
        raise DataError(
            f"{where}: label {text!r} is neither an integer nor a known class name "
            f"(known: {names_list(class_names)})"
        )
    raise DataError(
        f"{where}: label {text!r} is not an integer, and no class names are known to map it: "
        "set class_names in gate.yaml (or model.baseline.class_names, or a baseline whose config has id2label), "
        "or write labels as 0..K-1"
    )


def labels_tensor(value: Any, *, class_names: tuple[str, ...] | None, where: str) -> torch.Tensor:
    """A batch or file of labels as a (N,) int64 tensor: 1-D integers >= 0, or a sequence of ints / class names."""
    import numpy as np
    import torch

    if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        value = torch.from_numpy(value.copy())
    elif isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = [str(v) for v in value.reshape(-1)] if value.ndim == 1 else value
    if isinstance(value, (list, tuple)):
        indices = [label_index(v, class_names=class_names, where=f"{where}[{i}]") for i, v in enumerate(value)]
        return torch.tensor(indices, dtype=torch.int64)
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{where}: labels must be a 1-D tensor of class indices, found {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise DataError(
            f"{where}: labels must be integer class indices, found dtype {str(value.dtype).replace('torch.', '')}"
        )
    if value.ndim != 1:
        raise DataError(
            f"{where}: labels must be 1-D (one class index per sample), found shape {tuple(value.shape)}"
        )
    if value.dtype == getattr(torch, "uint64", None):        # beyond int64's range it would wrap to negative
        big = np.flatnonzero(value.numpy() > np.iinfo(np.int64).max)
        if big.size:
            raise DataError(f"{where}: label {int(value.numpy()[big[0]])} at sample {int(big[0])} is beyond any "
                            "class index; labels are 0..K-1")
    labels = value.to(torch.int64)
    negative = (labels < 0).nonzero()
    if len(negative):
        first = int(negative[0, 0])
        raise DataError(f"{where}: label {int(labels[first])} at sample {first} is negative; labels are 0..K-1")
    return labels


def take_first(inputs: Any, count: int) -> Any:
    """The first `count` samples of a batch's inputs (a tensor, a tuple/list of them, or a dict of them)."""
    if isinstance(inputs, Mapping):
        return {key: take_first(val, count) for key, val in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(take_first(val, count) for val in inputs)
    return inputs[:count]


def batch_rows(inputs: Any) -> set[int]:
    """The first-dimension sizes of the tensors in a batch's inputs (to check them against the labels)."""
    import torch

    if isinstance(inputs, torch.Tensor):
        return {int(inputs.shape[0])} if inputs.ndim else set()
    if isinstance(inputs, Mapping):
        values: Any = inputs.values()
    elif isinstance(inputs, (tuple, list)):
        values = inputs
    else:
        return set()
    rows: set[int] = set()
    for val in values:
        rows |= batch_rows(val)
    return rows


# ------------------------------------------------------------------------------------ labels per task


@dataclass(frozen=True)
class LabelSets:
    """multi_label labels of a text file: each sample's label indices, made (B, L) multi-hot once the models' label
    count L is known (the first batch's outputs), with each sample's place for messages."""

    indices: tuple[tuple[int, ...], ...]
    where: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.indices),)

    def multi_hot(self, width: int) -> torch.Tensor:
        import torch

        out = torch.zeros((len(self.indices), width), dtype=torch.int64)
        for row, (found, where) in enumerate(zip(self.indices, self.where)):
            for index in found:
                if index >= width:
                    raise DataError(f"{where}: label index {index} is out of range for models with {width} labels "
                                    f"(expected 0..{width - 1})")
                out[row, index] = 1
        return out


def multi_label_indices(value: Any, *, class_names: tuple[str, ...] | None, where: str,
                        separator: str | None = None) -> tuple[int, ...]:
    """One sample's labels (a list of label names or indices; in CSV text separated by `separator`) as indices."""
    if separator is not None and isinstance(value, str):
        parts = [p for p in (part.strip() for part in value.split(separator)) if p]
        return tuple(label_index(p, class_names=class_names, where=where) for p in parts)
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: label {value!r} is a {type(value).__name__}; task multi_label expects a list of "
                        "label names or indices (e.g. [\"sports\", \"politics\"], [0, 3] or [])")
    return tuple(label_index(v, class_names=class_names, where=where) for v in value)


def regression_targets(value: Any, *, where: str) -> tuple[float, ...]:
    """One sample's regression target: a number, a list of numbers, or (CSV) a number written as text; finite."""
    import math

    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise DataError(f"{where}: an empty list of targets; task regression expects a number or a list of numbers")
    out = []
    for v in values:
        if isinstance(v, str):
            try:
                number = float(v.strip())
            except ValueError:
                raise DataError(f"{where}: target {v!r} is not a number (task regression)") from None
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            number = float(v)
        else:
            raise DataError(f"{where}: target {v!r} ({type(v).__name__}) is not a number (task regression)")
        if not math.isfinite(number):
            raise DataError(f"{where}: target {v!r} is not finite (task regression needs finite targets)")
        out.append(number)
    return tuple(out)


def task_labels_tensor(value: Any, *, task: str, class_names: tuple[str, ...] | None, where: str) -> Any:
    """A file's or batch's labels for `task`: classification (N,) int64 (labels_tensor); multi_label (N, L) int64
    0/1 from a 2-D 0/1 tensor or array (bool, integer or float); regression (N, T) float32 from a numeric (N,) or
    (N, T) tensor, every target finite. DataError naming `where` and the first bad sample otherwise."""
    if task == "classification":
        return labels_tensor(value, class_names=class_names, where=where)
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DataError(f"{where}: labels of dtype {value.dtype}; task {task} expects numbers")
        value = torch.from_numpy(value.copy())
    elif isinstance(value, (list, tuple)):
        try:
            value = torch.tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise DataError(f"{where}: labels cannot be read as a numeric tensor for task {task}: {err}") from err
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{where}: labels must be a tensor for task {task}, found {type(value).__name__}")
    if value.dtype.is_complex:
        raise DataError(f"{where}: labels of dtype {str(value.dtype).replace('torch.', '')}; task {task} expects "
                        "real numbers")
    if task == "multi_label":
        if value.ndim != 2:
            raise DataError(f"{where}: labels of shape {tuple(value.shape)}; task multi_label expects an (N, L) 0/1 "
                            "multi-hot tensor, one column per label")
        bad = ~((value == 0) | (value == 1))
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise DataError(f"{where}: label {value[row, col].item()!r} at sample {row}, column {col}; task multi_label "
                            "expects 0/1 (multi-hot) labels")
        return value.to(torch.int64)
    if value.dtype == torch.bool:
        raise DataError(f"{where}: labels of dtype bool; task regression expects numeric targets")
    if value.ndim not in (1, 2):
        raise DataError(f"{where}: targets of shape {tuple(value.shape)}; task regression expects (N,) or (N, T)")
    targets = (value.reshape(-1, 1) if value.ndim == 1 else value).to(torch.float32)
    bad = ~torch.isfinite(targets)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        raise DataError(f"{where}: target {targets[row].tolist()} of sample {row} is not finite (task regression "
                        "needs finite targets)")
    return targets


def task_batch_labels(labels: Any, *, task: str, width: int, where: str, offset: int = 0,
                      places: tuple[str, ...] | None = None) -> torch.Tensor:
    """One batch's labels as the checks see them, checked against the models' width (labels L / targets T)."""
    if isinstance(labels, LabelSets):
        return labels.multi_hot(width)
    labels = task_labels_tensor(labels, task=task, class_names=None, where=where)
    if task == "classification":
        return labels
    columns = int(labels.shape[1])
    if columns != width:
        what = "a multi-hot" if task == "multi_label" else "targets"
        unit = "labels" if task == "multi_label" else "targets"
        place = places[0] if places else f"{where} (sample {offset})"
        raise DataError(f"{place}: {what} of width {columns}, but the models output {width} {unit}")
    return labels
