"""Tensor files (.pt, .safetensors, .npz): named input tensors and a label tensor, sliced into batches in order.

One input tensor -> the batch inputs are that Tensor (called as model(x)); several -> a tuple in the order of
data.inputs (called as model(*inputs)), so list them in the order of the model's forward arguments.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gate.archives import inflation_refusal
from gate.data._common import LABEL_FALLBACKS, BatchMeta, Skipped, names_list, task_labels_tensor
from gate.errors import DataError

if TYPE_CHECKING:
    import torch


# A data archive may inflate to MAX_INFLATION x its size plus this much. Real evaluation data compresses well
# (np.savez_compressed of sparse images or one-hot arrays: 50-100x and more), and up to this much of it loads whatever
# its ratio; beyond, a small file that would fill the runner's memory (a gigabyte of zeros in 2 MB) is refused
# from the zip directory, before anything is inflated.
DATA_INFLATION_ALLOWANCE = 512 << 20
_MAX_NPY_HEADER = 10_000                # numpy's own default bound on a .npy header (np.load's max_header_size)


@dataclass(frozen=True)
class Layout:
    """A tensor as the file describes it before its data is read: its shape, and whether it can be an input."""

    shape: tuple[int, ...]
    is_tensor: bool = True               # False for string arrays (class names, texts) and non-tensor values


def tensor_file_layout(path: str, fmt: str) -> dict[str, Layout]:
    """name -> Layout from the file's headers (safetensors header, .npy headers, a .pt's pickle with its storages
    on the meta device): nothing is inflated or read beyond them."""
    layouts = {"pt": _pt_layout, "safetensors": _safetensors_layout, "npz": _npz_layout}
    layout = layouts[fmt](path)
    if not layout:
        raise DataError(f"{path}: contains no tensors, expected input tensors and a label tensor")
    return layout


def load_tensor_file(path: str, fmt: str, *, names: Collection[str]) -> dict[str, Any]:
    """name -> tensor for `names` (numpy string arrays are kept as arrays, for labels written as class names)."""
    loaders = {"pt": _load_pt, "safetensors": _load_safetensors, "npz": _load_npz}
    return loaders[fmt](path, names)


def _pt_layout(path: str) -> dict[str, Layout]:
    import torch

    _refuse_inflation(path, what="PyTorch")
    loaded = _torch_load(path, map_location="meta")
    for name, value in loaded.items():
        if isinstance(value, torch.Tensor) and (value.layout != torch.strided or value.is_quantized):
            kind = "quantized" if value.is_quantized else f"{value.layout}".replace("torch.", "")
            raise DataError(f"{path}: tensor {name!r} is {kind}, not a dense tensor; gate reads dense tensors "
                            "(save it with .to_dense() or .dequantize())")
    return {name: Layout(tuple(value.shape)) if isinstance(value, torch.Tensor) else Layout((), is_tensor=False)
            for name, value in loaded.items()}


def _load_pt(path: str, names: Collection[str]) -> dict[str, Any]:
    _check_crc(path)
    return {name: value for name, value in _torch_load(path, map_location="cpu").items() if name in names}


def _torch_load(path: str, *, map_location: str) -> dict[str, Any]:
    """The file's dict, torch.load(weights_only=True); on the meta device its storages are not read."""
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
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


def _refuse_inflation(path: str, *, what: str) -> None:
    """A zip (a torch.save file, an .npz) whose members declare more than the data bound, refused unread; a legacy
    (non-zip) torch.save file holds its bytes as they are."""
    import os
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            refusal = inflation_refusal(archive, size=os.path.getsize(path), allowance=DATA_INFLATION_ALLOWANCE)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable {what} file (corrupt or truncated?): {type(err).__name__}: "
                        f"{err}") from err
    if refusal is not None:
        raise DataError(f"{path}: {refusal}; evaluation data that really is this compressible loads when saved "
                        "uncompressed (np.savez, torch.save)")


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


def _safetensors_layout(path: str) -> dict[str, Layout]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            return {name: Layout(tuple(handle.get_slice(name).get_shape())) for name in handle.keys()}
    except Exception as err:
        raise DataError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err


def _load_safetensors(path: str, names: Collection[str]) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys() if name in names}
    except Exception as err:
        raise DataError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err


@dataclass(frozen=True)
class _Npy:
    """One .npz member as its .npy header declares it."""

    member: str
    shape: tuple[int, ...]
    dtype: Any


def _npz_layout(path: str) -> dict[str, Layout]:
    return {name: Layout(npy.shape, is_tensor=npy.dtype.kind not in "US") for name, npy in _npz_members(path).items()}


def _npz_members(path: str) -> dict[str, _Npy]:
    """name -> the member's .npy header, each checked against the member's declared size, after the archive's
    inflation bound: only headers are inflated."""
    import zipfile

    _refuse_inflation(path, what=".npz")
    with _npz_errors(path, name=None), zipfile.ZipFile(path) as archive:
        return {_npz_name(info.filename): _npy_header(archive, info, path=path) for info in archive.infolist()}


def _npz_name(member: str) -> str:
    """numpy's key for a member: 'x.npy' -> 'x' (np.savez's names); other members keep theirs."""
    return member[:-4] if member.endswith(".npy") else member


def _npy_header(archive: Any, info: Any, *, path: str) -> _Npy:
    from numpy.lib import format as npy_format

    name = _npz_name(info.filename)
    with _npz_errors(path, name=name), archive.open(info) as member:
        if member.read(len(npy_format.MAGIC_PREFIX)) != npy_format.MAGIC_PREFIX:
            raise DataError(f"{path}: member {name!r} is not a .npy array; an .npz archive holds only named arrays "
                            "(np.savez)")
        member.seek(0)
        version = npy_format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(member, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(member, max_header_size=_MAX_NPY_HEADER)
        else:       # 3.0 (utf-8 field names) has no public reader
            shape, _, dtype = npy_format._read_array_header(member, version, max_header_size=_MAX_NPY_HEADER)
        held = info.file_size - member.tell()
    if dtype.hasobject:
        raise DataError(f"{path}: array {name!r} holds Python objects, which would need unsafe unpickling; "
                        "save numeric arrays (and labels as integers or strings)")
    declared = math.prod(shape) * dtype.itemsize
    if declared > held:
        raise DataError(f"{path}: array {name!r}: its .npy header declares shape {tuple(shape)} of {dtype} "
                        f"({declared} bytes) but the archive's member {info.filename!r} holds {held} bytes; the file is "
                        "corrupt or truncated: write it again")
    return _Npy(info.filename, tuple(int(n) for n in shape), dtype)


def _load_npz(path: str, names: Collection[str]) -> dict[str, Any]:
    import zipfile

    from numpy.lib import format as npy_format

    members = _npz_members(path)
    arrays = {}
    with _npz_errors(path, name=None), zipfile.ZipFile(path) as archive:
        for name, npy in members.items():
            if name in names:
                # zipfile stops at the member's declared size (then fails its CRC-32), and read_array fills an array
                # of the header's shape in chunks: no member yields more than the bytes checked above
                with _npz_errors(path, name=name), archive.open(npy.member) as member:
                    arrays[name] = npy_format.read_array(member, allow_pickle=False,
                                                         max_header_size=_MAX_NPY_HEADER)
    return {key: _from_numpy(val, path=path, name=key) for key, val in arrays.items()}


@contextmanager
def _npz_errors(path: str, *, name: str | None) -> Iterator[None]:
    """numpy's and zipfile's errors reading an .npz (or the member `name`) as one DataError naming the file."""
    import zipfile

    from numpy.lib import format as npy_format

    try:
        yield
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
    except zipfile.BadZipFile as err:
        if name is None and _starts_with(path, npy_format.MAGIC_PREFIX):
            raise DataError(f"{path}: a single .npy array, expected an .npz archive of named arrays") from err
        raise DataError(
            f"{path}: not a readable .npz file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err
    except (zipfile.LargeZipFile, OSError, EOFError, KeyError) as err:
        raise DataError(
            f"{path}: not a readable .npz file (corrupt or truncated?): {type(err).__name__}: {err}"
        ) from err


def _starts_with(path: str, prefix: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(prefix)) == prefix


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
    layout: Mapping[str, Layout], *, path: str, requested: list[str] | None, labels_name: str
) -> tuple[str, ...]:
    """The input tensors' names: data.inputs as given, or the one tensor that is not the labels."""
    if requested:
        for name in requested:
            if name not in layout:
                raise DataError(f"{path}: no tensor {name!r} (data.inputs); found: {names_list(list(layout))}")
            if name == labels_name:
                raise DataError(f"{path}: tensor {name!r} is both an input (data.inputs) and the labels")
        return tuple(requested)
    others = [key for key, val in layout.items() if key != labels_name and val.is_tensor]
    if len(others) != 1:
        found = names_list(others) if others else "none"
        raise DataError(
            f"{path}: expected exactly one input tensor besides the labels {labels_name!r}, found {found}; "
            f"set data.inputs in gate.yaml to the input tensor names, in the order the model takes them"
        )
    return (others[0],)


def refuse_row_mismatch(layout: Mapping[str, Layout], *, path: str, inputs: tuple[str, ...], labels_name: str) -> None:
    """An input whose declared rows differ from the labels' is refused from the headers, before either is read (a
    small file must not make the gate inflate millions of rows only to find them unmatched)."""
    labels = layout[labels_name]
    if not labels.is_tensor or not labels.shape:
        return                                  # labels as a list, or a scalar: checked once read
    for name in inputs:
        shape = layout[name].shape
        if layout[name].is_tensor and shape and shape[0] != labels.shape[0]:
            raise _row_mismatch(path, name=name, found=shape[0], rows=labels.shape[0])


def _row_mismatch(path: str, *, name: str, found: int, rows: int) -> DataError:
    return DataError(f"{path}: tensor {name!r} has {found} rows but the labels have {rows}; inputs and labels must "
                     "have one row per sample")


def checked_input(value: Any, *, path: str, name: str, rows: int) -> torch.Tensor:
    """One input tensor, float64 narrowed to float32, with one row per label."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: {name!r} is a {type(value).__name__}, expected a tensor")
    if value.ndim == 0:
        raise DataError(f"{path}: tensor {name!r} is a scalar, expected one row per sample")
    if value.shape[0] != rows:
        raise _row_mismatch(path, name=name, found=int(value.shape[0]), rows=rows)
    if value.dtype == torch.float64:
        value = value.to(torch.float32)
    return value


def _names_to_read(layout: Mapping[str, Layout], *, inputs: tuple[str, ...], labels_name: str) -> set[str]:
    """The labels, the inputs, and what may be a field to slice by (1-D, one value per label): the rest stays unread."""
    labels = layout[labels_name]
    rows = labels.shape[0] if labels.is_tensor and labels.shape else None
    fields = {name for name, value in layout.items() if len(value.shape) == 1 and rows in (None, value.shape[0])}
    return {labels_name, *inputs, *fields}


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
    layout = tensor_file_layout(path, fmt)
    labels_name = choose_labels_name(layout, path=path, requested=labels)
    input_names = choose_input_names(layout, path=path, requested=inputs, labels_name=labels_name)
    refuse_row_mismatch(layout, path=path, inputs=input_names, labels_name=labels_name)
    tensors = load_tensor_file(path, fmt, names=_names_to_read(layout, inputs=input_names, labels_name=labels_name))
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
