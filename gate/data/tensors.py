"""Tensor files (.pt, .safetensors, .npz): named input tensors and a label tensor, sliced into batches in order.

One input tensor -> the batch inputs are that Tensor (called as model(x)); several -> a tuple in the order of
data.inputs (called as model(*inputs)), so list them in the order of the model's forward arguments.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gate.data._common import LABEL_FALLBACKS, BatchMeta, Skipped, names_list, task_labels_tensor
from gate.errors import DataError

if TYPE_CHECKING:
    import torch


def load_tensor_file(path: str, fmt: str) -> dict[str, Any]:
    """name -> tensor (numpy string arrays are kept as arrays, for labels written as class names)."""
    loaders = {"pt": _load_pt, "safetensors": _load_safetensors, "npz": _load_npz}
    tensors = loaders[fmt](path)
    if not tensors:
        raise DataError(f"{path}: contains no tensors, expected input tensors and a label tensor")
    return tensors


def _load_pt(path: str) -> dict[str, Any]:
    import pickle

    import torch

    _check_crc(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only" in str(err):
            raise DataError(
                f"{path}: needs unsafe unpickling (it holds Python objects, not just tensors); gate loads data "
                f"with torch.load(weights_only=True) and never unpickles arbitrary objects: save a dict of "
                f"tensors instead, e.g. torch.save({{'inputs': x, 'labels': y}}, path)"
            ) from err
        raise DataError(f"{path}: not a readable PyTorch file (corrupt or truncated?): {err}") from err
    except Exception as err:
        raise DataError(
            f"{path}: not a readable PyTorch file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(obj, Mapping) or not all(isinstance(key, str) for key in obj):
        raise DataError(
            f"{path}: expected a dict of named tensors (e.g. {{'inputs': x, 'labels': y}}), "
            f"found {type(obj).__name__}"
        )
    return dict(obj)


def _check_crc(path: str) -> None:
    """A torch.save zip's members against their CRC-32s (torch.load checks none: a flipped byte in a tensor's
    member would load as other data); a legacy (non-zip) file has none to check."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable PyTorch file (corrupt or truncated?): {type(err).__name__}: {err}") \
            from err
    if bad is not None:
        raise DataError(f"{path}: corrupt: the archive's member {bad} does not match its CRC-32 checksum (a damaged "
                        "copy or download); write or download the file again")


def _load_safetensors(path: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as err:
        raise DataError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err


def _load_npz(path: str) -> dict[str, Any]:
    import zipfile

    import numpy as np

    name = None
    try:
        # Our own file handle: numpy leaks the one it opens when the zip turns out to be corrupt.
        with open(path, "rb") as fh:
            archive = np.load(fh, allow_pickle=False)
            if not isinstance(archive, Mapping):
                raise DataError(f"{path}: a single .npy array, expected an .npz archive of named arrays")
            with archive:
                arrays = {}
                for name in archive.files:
                    value = archive[name]
                    if not isinstance(value, np.ndarray):     # numpy hands back other members as raw bytes
                        raise DataError(f"{path}: member {name!r} is not a .npy array; an .npz archive holds only "
                                        "named arrays (np.savez)")
                    arrays[name] = value
    except DataError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):
            where = f"array {name!r}" if name else "an array"
            raise DataError(
                f"{path}: {where} holds Python objects, which would need unsafe unpickling; "
                f"save numeric arrays (and labels as integers or strings)"
            ) from err
        raise DataError(f"{path}: not a readable .npz file (corrupt or truncated?): {err}") from err
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
        raise DataError(
            f"{path}: not a readable .npz file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err
    return {key: _from_numpy(val, path=path, name=key) for key, val in arrays.items()}


def _from_numpy(array: Any, *, path: str, name: str) -> Any:
    import torch

    if array.dtype.kind in "US":
        return array
    try:
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    except TypeError as err:
        raise DataError(f"{path}: array {name!r} has dtype {array.dtype}, which torch cannot hold") from err


def choose_labels_name(tensors: Mapping[str, Any], *, path: str, requested: str) -> str:
    """The label tensor's name: data.labels, or for the default 'labels' the first of label / y / targets."""
    if requested in tensors:
        return requested
    if requested == "labels":
        for name in LABEL_FALLBACKS:
            if name in tensors:
                return name
        tried = ", ".join(repr(n) for n in ("labels", *LABEL_FALLBACKS))
        raise DataError(
            f"{path}: no label tensor (tried {tried}; found: {names_list(list(tensors))}); "
            f"set data.labels in gate.yaml"
        )
    raise DataError(f"{path}: no tensor {requested!r} (data.labels); found: {names_list(list(tensors))}")


def choose_input_names(
    tensors: Mapping[str, Any], *, path: str, requested: list[str] | None, labels_name: str
) -> tuple[str, ...]:
    """The input tensors' names: data.inputs as given, or the one tensor that is not the labels."""
    if requested:
        for name in requested:
            if name not in tensors:
                raise DataError(f"{path}: no tensor {name!r} (data.inputs); found: {names_list(list(tensors))}")
            if name == labels_name:
                raise DataError(f"{path}: tensor {name!r} is both an input (data.inputs) and the labels")
        return tuple(requested)
    import torch

    others = [key for key, val in tensors.items() if key != labels_name and isinstance(val, torch.Tensor)]
    if len(others) != 1:
        found = names_list(others) if others else "none"
        raise DataError(
            f"{path}: expected exactly one input tensor besides the labels {labels_name!r}, found {found}; "
            f"set data.inputs in gate.yaml to the input tensor names, in the order the model takes them"
        )
    return (others[0],)


def checked_input(value: Any, *, path: str, name: str, rows: int) -> torch.Tensor:
    """One input tensor, float64 narrowed to float32, with one row per label."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: {name!r} is a {type(value).__name__}, expected a tensor")
    if value.ndim == 0:
        raise DataError(f"{path}: tensor {name!r} is a scalar, expected one row per sample")
    if value.shape[0] != rows:
        raise DataError(
            f"{path}: tensor {name!r} has {value.shape[0]} rows but the labels have {rows}; "
            f"inputs and labels must have one row per sample"
        )
    if value.dtype == torch.float64:
        value = value.to(torch.float32)
    return value


def meta_tensors(tensors: Mapping[str, Any], *, used: tuple[str, ...], rows: int) -> dict[str, Any]:
    """The file's other 1-D tensors (or string arrays) with one value per sample: fields to slice by."""
    return {name: value for name, value in tensors.items()
            if name not in used and getattr(value, "ndim", None) == 1 and int(value.shape[0]) == rows}


class TensorReader:
    """Fixed-order batches sliced from in-memory tensors; the inputs are a Tensor or a tuple of Tensors."""

    seeks = True                    # batches_with_meta(owns=...) skips other shards' batches unsliced

    def __init__(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, *, batch_size: int,
                 meta: dict[str, Any] | None = None, path: str = "") -> None:
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size
        self.num_samples: int | None = int(labels.shape[0])
        self.meta = meta or {}
        self.path = path

    def batches(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for inputs, labels, _ in self.batches_with_meta():
            yield inputs, labels

    def batches_with_meta(self, *, owns: Callable[[int], bool] | None = None) -> Iterator[Any]:
        """(inputs, labels, meta) per batch; with `owns` (a shard's batch test), another shard's batch is a
        `Skipped(size)` in its place, never sliced."""
        total = int(self.labels.shape[0])
        for batch, start in enumerate(range(0, total, self.batch_size)):
            stop = start + self.batch_size
            if owns is not None and not owns(batch):
                yield Skipped(min(stop, total) - start), None, None
                continue
            parts = tuple(t[start:stop] for t in self.inputs)
            fields = {name: value[start:stop].tolist() for name, value in self.meta.items()}
            text = fields.get("text")
            texts = tuple(text) if text is not None and all(isinstance(t, str) for t in text) else None
            yield (parts[0] if len(parts) == 1 else parts), self.labels[start:stop], BatchMeta(texts=texts, fields=fields)


def open_tensor_file(
    path: str,
    fmt: str,
    *,
    inputs: list[str] | None,
    labels: str,
    class_names: tuple[str, ...] | None,
    batch_size: int,
    limit: int | None,
    task: str = "classification",
) -> TensorReader:
    """Load a tensor file and check it: labels as the task has them (1-D class indices, an (N, L) 0/1 multi-hot, or
    (N,) / (N, T) regression targets), every input with one row per label."""
    tensors = load_tensor_file(path, fmt)
    labels_name = choose_labels_name(tensors, path=path, requested=labels)
    input_names = choose_input_names(tensors, path=path, requested=inputs, labels_name=labels_name)
    label_values = task_labels_tensor(tensors[labels_name], task=task, class_names=class_names,
                                      where=f"{path}: tensor {labels_name!r}")
    rows = int(label_values.shape[0])
    if rows == 0:
        raise DataError(f"{path}: no samples (tensor {labels_name!r} is empty)")
    checked = tuple(checked_input(tensors[name], path=path, name=name, rows=rows) for name in input_names)
    meta = meta_tensors(tensors, used=(labels_name, *input_names), rows=rows)
    if limit is not None:
        label_values = label_values[:limit]
        checked = tuple(t[:limit] for t in checked)
        meta = {name: value[:limit] for name, value in meta.items()}
    return TensorReader(checked, label_values, batch_size=batch_size, meta=meta, path=path)
