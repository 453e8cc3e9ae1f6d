"""Hugging Face transformers model directories (config.json + weights + tokenizer files), strictly offline.

transformers is the optional extra "text". The model is loaded with AutoModelForSequenceClassification;
class names come from config.id2label unless they are the generic LABEL_0, LABEL_1, ...
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from gate.errors import CheckpointError, require
from gate.models.base import brief
from gate.models.pickles import refusal_message, register_torchao_safe_globals
from gate.models.sniff import sniff
from gate.models.torch_formats import Built

_SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model")
_GENERIC_LABEL = re.compile(r"LABEL_(\d+)")


def import_transformers(*, purpose: str) -> Any:
    """transformers (the `text` extra), offline. torchao, which transformers imports when it is installed (the
    `quant` extra), is imported first and quietly (gate.models.pickles.register_torchao_safe_globals): else its
    import prints the CUDA kernels a CPU machine cannot load above the gate's own lines."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")      # before transformers / huggingface_hub read it
    register_torchao_safe_globals()
    return require("transformers", extra="text", purpose=purpose)


def load_huggingface(path: Path, *, where: str, options: Mapping[str, Any], role: str | None = None) -> Built:
    """Config, weights and tokenizer of a local model directory; never touches the network, never remote code."""
    confine_directory(path, where=where)
    weights = weight_files(path, where=where)
    _refuse_unsafe_bin_weights(weights, where=where, role=role,
                               trusted=bool(options.get("trust_checkpoint", False)))
    transformers = import_transformers(purpose=f"loading the Hugging Face model directory {path}")
    with _quiet_progress(transformers):
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        _refuse_before_allocating(transformers, config, weights, where=where,
                                  strict=bool(options.get("strict", True)))
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(path), config=config, local_files_only=True, output_loading_info=True, dtype="auto",
            ignore_mismatched_sizes=True,   # reported in `info` and refused below by name (strict), not raised
        )   # dtype "auto": the weights' own dtype, as they ship (gate.precision applies model.dtype)
    if options.get("strict", True):
        _refuse_new_weights(info, where=where)
    tokenizer = _load_tokenizer(transformers, path, where=where)
    return Built(model, "huggingface", tuple(weights), class_names_from_config(config, where=where), tokenizer)


def weight_files(path: Path, *, where: str) -> list[Path]:
    """The directory's weight files (shards listed by an index file), sorted; CheckpointError if there are none."""
    for name in _INDEXES:
        index = path / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(f"{where}: {name} is not a valid weight index ({brief(err)})") from err
            outside = [s for s in shards if not _inside(path / s, _confinement_root(path))]
            if outside:
                raise CheckpointError(f"{where}: {name} lists weight shards outside the model directory: "
                                      f"{', '.join(map(repr, outside[:5]))}")
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise CheckpointError(f"{where}: {name} lists weight shards that are missing: {', '.join(missing[:5])}")
            return [path / s for s in shards]
    for name in _SINGLE_WEIGHTS:
        if (path / name).is_file():
            return [path / name]
    raise CheckpointError(
        f"{where}: a Hugging Face model directory without PyTorch weights: expected model.safetensors, "
        f"pytorch_model.bin or a sharded index ({', '.join(_INDEXES)}) next to config.json"
    )


def _refuse_unsafe_bin_weights(files: list[Path], *, where: str, role: str | None, trusted: bool) -> None:
    """pytorch_model.bin is a torch.save pickle: apply the same stance as for a single-file checkpoint."""
    if trusted:
        return
    for file in files:
        if file.suffix != ".safetensors":
            found = sniff(file, where=f"{where}/{file.name}")
            if found.unsafe_globals or found.plain_pickle:
                raise CheckpointError(refusal_message(f"{where}/{file.name}", list(found.unsafe_globals), role=role))


def _confinement_root(path: Path) -> Path:
    """What a model directory's files may resolve into: the directory itself, or, for a snapshot in the Hugging Face
    cache (models--org--name/snapshots/REV, whose files link to ../../blobs), that model's cache folder."""
    real = path.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def _inside(target: Path, root: Path) -> bool:
    try:
        return target.resolve().is_relative_to(root)
    except (OSError, RuntimeError):        # a symlink loop
        return False


def confine_directory(path: Path, *, where: str) -> None:
    """Every file in the model directory must resolve inside it: a symlink committed in a pull request must not
    make the loader read (and report on) a file elsewhere on the machine."""
    root = _confinement_root(path)
    for entry in sorted(path.rglob("*")):
        if entry.is_symlink() and not _inside(entry, root):
            raise CheckpointError(
                f"{where}: {entry.relative_to(path)} is a symbolic link to a file outside the model directory; "
                "a model directory must hold its own files"
            )


@contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """transformers 5 draws a progress bar and prints a load report per load; the gate says what matters itself,
    in one line (a weight that would be newly initialised is an error under strict loading)."""
    import logging as std_logging

    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    verbosity = logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    # torch's pytree logs a deprecation for each Enum that torchao's modules, imported by the load, register
    pytree = std_logging.getLogger("torch.utils._pytree")
    pytree_level = pytree.level
    pytree.setLevel(std_logging.ERROR)
    try:
        yield
    finally:
        pytree.setLevel(pytree_level)
        logging.set_verbosity(verbosity)
        if was_enabled:
            logging.enable_progress_bar()


def _refuse_new_weights(info: Mapping[str, Any], *, where: str) -> None:
    """Missing weights are randomly initialised by transformers: a classifier head that was never trained."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(_mismatch_text(k) for k in info.get("mismatched_keys") or ())
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:5])
        hint = (", and does config.json's id2label name as many labels as its classifier has"
                if any(m.startswith("classifier.") for m in mismatched) else "")
        raise CheckpointError(
            f"{where}: the weights do not cover the sequence-classification model: {len(missing)} missing and "
            f"{len(mismatched)} mismatched tensors ({shown}) would be randomly initialised; is it a "
            f"...ForSequenceClassification checkpoint{hint}? Set model.strict: false to load it anyway"
        )


# What config.json may add to the weights: the model it describes may hold this many elements more than its weight
# files (a new classifier head, a pooler: hidden_size^2 is 16M at 4096) before a single tensor is allocated.
_NEW_ELEMENTS_ALLOWANCE = 1 << 24
_PACKED_FACTOR = 8          # a quantized checkpoint packs several weights per stored element (int4: 2, int2: 4)


def _refuse_before_allocating(transformers: Any, config: Any, weights: list[Path], *, where: str, strict: bool) -> None:
    """config.json against the safetensors headers, on a model skeleton on the meta device (nothing allocated):
    under strict loading a tensor whose shape differs from the weights' is refused here, as _refuse_new_weights
    would after loading; and whatever `strict`, a config whose model holds far more elements than the weights (a
    vocab_size of 50,000,000 next to 60 saved rows) is refused before transformers allocates and initialises it.
    pytorch_model.bin weights (pickles) are left to the post-load check."""
    import torch

    saved = _saved_shapes(weights)
    if saved is None:
        return
    try:
        with torch.device("meta"):
            skeleton = transformers.AutoModelForSequenceClassification.from_config(config)
    except Exception:  # noqa: BLE001 - a config from_config cannot build: from_pretrained words its error as before
        return
    wanted = {name: tuple(tensor.shape) for name, tensor in skeleton.state_dict(keep_vars=True).items()}
    quantized = getattr(config, "quantization_config", None) is not None    # packed shapes differ by design
    prefix = getattr(skeleton, "base_model_prefix", "") or ""
    found = {name: _saved_shape(saved, name, prefix) for name in wanted}
    mismatched = [(name, found[name], shape) for name, shape in wanted.items()
                  if found[name] is not None and found[name] != shape]
    if strict and mismatched and not quantized:
        _refuse_new_weights({"mismatched_keys": mismatched}, where=where)
    unique = {id(tensor): tensor for tensor in skeleton.state_dict(keep_vars=True).values()}
    elements = sum(tensor.numel() for tensor in unique.values())
    stored = sum(math.prod(shape) for shape in saved.values())
    bound = (_PACKED_FACTOR if quantized else 1) * stored + _NEW_ELEMENTS_ALLOWANCE
    if elements > bound:
        largest = max(wanted, key=lambda name: math.prod(wanted[name]))
        raise CheckpointError(
            f"{where}: config.json describes a model of {elements} elements but its weights hold {stored} (the "
            f"largest tensor, {largest}: {list(wanted[largest])} in the model, "
            f"{list(found[largest]) if found[largest] is not None else 'absent'} in the weights): refusing to "
            "allocate tensors the weights do not fill (is config.json the one saved with these weights?)"
        )


def _saved_shapes(weights: list[Path]) -> dict[str, tuple[int, ...]] | None:
    """name -> shape from the safetensors headers (nothing else read); None when a file is a pickle or unreadable
    (from_pretrained then reports it as before)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in weights:
        if file.suffix != ".safetensors":
            return None
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                shapes.update((name, tuple(handle.get_slice(name).get_shape())) for name in handle.keys())
        except Exception:  # noqa: BLE001 - from_pretrained words a corrupt file's error
            return None
    return shapes


def _saved_shape(saved: Mapping[str, tuple[int, ...]], name: str, prefix: str) -> tuple[int, ...] | None:
    """The weights' shape for the model's tensor `name`, saved with or without the base model's prefix ('bert.')."""
    for key in (name, name.removeprefix(f"{prefix}.") if prefix else name, f"{prefix}.{name}" if prefix else name):
        if key in saved:
            return saved[key]
    return None


def _mismatch_text(entry: Any) -> str:
    """transformers' (name, shape in the weights, shape in the model) as 'name: [2] in the weights, [3] in the model'."""
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        name, saved, wanted = entry
        return f"{name}: {list(saved)} in the weights, {list(wanted)} in the model"
    return str(entry)


def _load_tokenizer(transformers: Any, path: Path, *, where: str) -> Any | None:
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - tokenizer classes raise many types
        raise CheckpointError(f"{where}: the tokenizer files cannot be loaded: {brief(err)}") from err


def class_names_from_config(config: Any, *, where: str) -> tuple[str, ...] | None:
    """id2label in index order; None when absent or generic (LABEL_0, LABEL_1, ... carry no information)."""
    id2label = getattr(config, "id2label", None) or {}
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: config.json id2label has a non-integer index ({brief(err)})") from err
    if not by_index:
        return None
    if sorted(by_index) != list(range(len(by_index))):
        raise CheckpointError(
            f"{where}: config.json id2label indices must be 0..{len(by_index) - 1}; found {sorted(by_index)}"
        )
    names = tuple(by_index[i] for i in range(len(by_index)))
    if all(_GENERIC_LABEL.fullmatch(name) and int(name[6:]) == i for i, name in enumerate(names)):
        return None
    return names
