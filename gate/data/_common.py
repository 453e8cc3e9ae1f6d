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
        f"set class_names in gate.yaml (or use a model whose config has id2label), or write labels as 0..K-1"
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
