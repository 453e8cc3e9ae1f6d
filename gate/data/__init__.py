"""Evaluation data: one reader per format, each giving (inputs, labels) batches in a fixed order.

    data = open_data("eval.jsonl", options=config.data, class_names=("neg", "pos"), tokenizer=model.tokenizer)
    for inputs, labels in data.batches(): ...      # inputs: Tensor | tuple of Tensors | dict of Tensors

Formats: JSON Lines / CSV text (tokenized per batch), .pt / .safetensors / .npz tensor files, and a Python
factory 'package.module:callable'. torch is only imported when data is opened.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gate.data._common import (
    DEFAULT_OPTIONS,
    FORMATS,
    MISSING,
    BatchMeta,
    BatchSource,
    LabelSets,
    Skipped,
    is_callable_spec,
    task_batch_labels,
)
from gate.files import file_sha256
from gate.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = ["BatchMeta", "EvalData", "FORMATS", "LabelSets", "MISSING", "Skipped", "open_data", "sniff_data_format",
           "task_batch_labels"]

_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonlines": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".pt": "pt", ".pth": "pt",
    ".safetensors": "safetensors",
    ".npz": "npz",
}
_SNIFF_BYTES = 4096


@dataclass
class EvalData:
    """Opened evaluation data. `batches()` starts a fresh pass each call, always in the same order."""

    path: str                                   # the file, or the 'pkg.mod:callable' of a factory
    format: str                                 # one of FORMATS, or "memory" for the caller's own data object
    sha256: str | None                          # of the file; None for a factory
    class_names: tuple[str, ...] | None         # the names string labels were mapped with (as passed in)
    num_samples: int | None                     # known up front for tensor files and Datasets; else counted as read
    source: BatchSource = field(repr=False, compare=False)

    def batches(self) -> Iterator[tuple[Any, torch.Tensor]]:
        """(inputs, labels) with labels as the task has them (classification (B,) int64; multi_label (B, L) int64 0/1,
        or LabelSets from a text file; regression (B, T) float32); updates num_samples as it goes."""
        for inputs, labels, _ in self.batches_with_meta():
            yield inputs, labels

    def batches_with_meta(self, *, owns: Callable[[int], bool] | None = None) -> Iterator[Any]:
        """(inputs, labels, meta): the same batches with each sample's text and fields (gate.data.BatchMeta).

        `owns` (a shard's batch test, gate.sharding.Shard.owns): a reader that seeks (text and tensor files; a
        factory's or the caller's map-style Dataset, list of batches or plain sequential DataLoader) yields
        `Skipped(size)` in place of another shard's batch, without reading it into samples; the others (an
        IterableDataset, a generator, a shuffled DataLoader) yield every batch, and the runner skips the ones it
        does not own."""
        counting = self.source.num_samples is None
        if counting:
            self.num_samples = 0
        seeks = owns is not None and getattr(self.source, "seeks", False)
        batches = self.source.batches_with_meta(owns=owns) if seeks else self.source.batches_with_meta()
        for inputs, labels, meta in batches:
            if counting:
                size = inputs.size if isinstance(inputs, Skipped) else int(labels.shape[0])
                self.num_samples = (self.num_samples or 0) + size
            yield inputs, labels, meta


def sniff_data_format(path: str) -> str:
    """The data format of `path`: 'factory' for 'pkg.mod:callable', else by extension, else by content."""
    path = os.fspath(path)
    if is_callable_spec(path):
        return "factory"
    _check_file(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    fmt = _format_from_content(path)
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the data format from its name or content; use one of the extensions "
            f"{', '.join(sorted(_EXTENSIONS))} or set data.format in gate.yaml to one of {', '.join(FORMATS)}"
        )
    return fmt


def _check_file(path: str) -> None:
    from gate.files import LINK_OUT, link_escape

    if link_escape(path) is not None:
        raise DataError(f"{path}: {LINK_OUT}")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such data file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a data file")
    if not os.path.isfile(path):            # reading a FIFO or a device would block or never end
        raise DataError(f"{path}: not a regular file (a pipe, socket or device), expected a data file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the data file is empty (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file: {err.strerror or err}") from err


def _format_from_content(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(path)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path):
        return "safetensors"  # 8-byte little-endian header length, then the JSON header
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"{":
        return "jsonl"
    if b"," in head.split(b"\n", 1)[0]:
        return "csv"
    return None


def _zip_format(path: str) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return None
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if any(name.endswith("data.pkl") for name in names):
        return "pt"
    return None


def open_data(
    path: Any,
    *,
    options: dict[str, Any],
    class_names: tuple[str, ...] | None,
    tokenizer: Any | None,
    task: str = "classification",
) -> EvalData:
    """Open evaluation data and check what can be checked up front (file, format, columns, tensors).

    `options` is the `data` section of gate.yaml; `tokenizer` is the model's own (Hugging Face directories),
    used for text data unless data.tokenizer names another. A factory is given as path='pkg.mod:callable'
    or as data.factory. `path` may also be the caller's own Dataset, DataLoader or iterable of batches (the Python
    API), read like a factory's result. `task` says what the labels are (gate.tasks; docs/tasks.md).
    """
    opts = {**DEFAULT_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    batch_size, limit = _batching(opts)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        from gate.data.factory import ObjectReader

        reader = ObjectReader(path, labels=opts["labels"], class_names=class_names, batch_size=batch_size, limit=limit,
                              task=task)
        return EvalData(reader.spec, "memory", None, class_names, reader.num_samples, reader)
    fmt, path = _resolve_format(path, opts)
    if fmt == "factory":
        from gate.data.factory import FactoryReader

        reader: BatchSource = FactoryReader(
            path, kwargs=dict(opts["kwargs"] or {}), labels=opts["labels"], class_names=class_names,
            batch_size=batch_size, limit=limit, task=task,
        )
        return EvalData(path, fmt, None, class_names, reader.num_samples, reader)
    if fmt in ("jsonl", "csv"):
        reader = _open_text(path, fmt, opts, class_names=class_names, tokenizer=tokenizer,
                            batch_size=batch_size, limit=limit, task=task)
    else:
        from gate.data.tensors import open_tensor_file

        reader = open_tensor_file(
            path, fmt, inputs=opts["inputs"], labels=opts["labels"], class_names=class_names,
            batch_size=batch_size, limit=limit, task=task,
        )
    return EvalData(path, fmt, file_sha256(path), class_names, reader.num_samples, reader)


def _batching(opts: dict[str, Any]) -> tuple[int, int | None]:
    batch_size, limit = opts["batch_size"], opts["limit"]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"data.batch_size: expected an integer >= 1, found {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"data.limit: expected an integer >= 1 or null, found {limit!r}")
    return batch_size, limit


def _resolve_format(path: str | None, opts: dict[str, Any]) -> tuple[str, str]:
    """(format, path): for a factory the path becomes the 'pkg.mod:callable' to call."""
    fmt = opts["format"]
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"data.format: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    path = os.fspath(path) if path is not None else None
    factory = opts["factory"]
    named_spec = bool(path) and is_callable_spec(path)
    # --data FILE wins over a data.factory in gate.yaml; --data pkg.mod:callable is a factory.
    if fmt == "factory" or (fmt == "auto" and (named_spec or (not path and factory))):
        spec = path if named_spec else factory
        if not spec:
            raise ConfigError(
                "data.format is 'factory' but no factory is given: pass --data package.module:callable "
                "or set data.factory in gate.yaml"
            )
        return "factory", spec
    if not path:
        raise ConfigError("no evaluation data given: pass --data FILE (or package.module:callable)")
    _check_file(path)
    return (sniff_data_format(path) if fmt == "auto" else fmt), path


def _open_text(
    path: str,
    fmt: str,
    opts: dict[str, Any],
    *,
    class_names: tuple[str, ...] | None,
    tokenizer: Any | None,
    batch_size: int,
    limit: int | None,
    task: str = "classification",
) -> BatchSource:
    from gate.data.text import TextLayout, TextReader, check_text_file
    from gate.data.tokenize import resolve_encoder

    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    layout = TextLayout(path, fmt, opts["text_column"], opts["label_column"], delimiter, task=task,
                        label_separator=opts["label_separator"])
    check_text_file(layout, class_names=class_names)
    try:
        encoder = resolve_encoder(option=opts["tokenizer"], tokenizer=tokenizer, max_length=opts["max_length"])
    except DataError as err:
        raise DataError(f"{path}: {err}") from err
    return TextReader(layout, encoder=encoder, class_names=class_names, batch_size=batch_size, limit=limit)
