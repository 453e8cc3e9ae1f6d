"""Loaders for single-file PyTorch checkpoints: TorchScript, torch.export, torch.save (state_dict/pickle), safetensors.

Security: a torch.save file is read with torch.load(weights_only=True), which never runs code from the file.
TorchScript archives and torch.export programs run code when they are loaded: they are programs, and like a whole
pickled nn.Module they load only when the command line trusts that role (options["trust_checkpoint"]).
"""
from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.errors import CheckpointError
from gate.models.factory import build_module, is_weight_entry
from gate.models.pickles import program_refusal, refusal_message, trust_hint
from gate.models.sniff import Sniffed

# Keys under which training checkpoints keep the model weights, tried in this order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module")


@dataclass(frozen=True)
class Built:
    """What a format loader produced, before the format-independent facts are added."""

    module: Any
    format: str
    weight_files: tuple[Path, ...]
    class_names: tuple[str, ...] | None = None
    tokenizer: Any | None = None


def refuse_untrusted_program(fmt: str, *, where: str, role: str, options: Mapping[str, Any]) -> None:
    """Programs (TorchScript, torch.export) never reach their loader without trust given for this role."""
    if not options.get("trust_checkpoint", False):
        raise CheckpointError(program_refusal(where, fmt, role=role))


def load_torchscript(path: Path, *, device: Any) -> Built:
    import torch

    with warnings.catch_warnings():
        # torch 2.10+ deprecates TorchScript; loading an existing archive is still what the user asked for.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location=device)
    return Built(module, "torchscript", (path,))


def load_export(path: Path, *, device: Any) -> Built:
    """torch.export.load(...).module(), moved with the export pass so device constants in the graph move too."""
    import torch

    program = torch.export.load(str(path))
    move = getattr(getattr(torch.export, "passes", None), "move_to_device_pass", None)
    if move is not None:
        program = move(program, device)
    return Built(program.module(), "export", (path,))


def load_safetensors(path: Path, *, where: str, options: Mapping[str, Any]) -> Built:
    from safetensors.torch import load_file

    state_dict = load_file(str(path), device="cpu")
    module = build_module(state_dict, where=where, options=options, what="the safetensors file")
    return Built(module, "safetensors", (path,))


def load_torch_save(path: Path, sniffed: Sniffed, *, where: str, role: str, options: Mapping[str, Any]) -> Built:
    """A torch.save (or pickle) file: a state_dict, a training checkpoint dict, or (trusted only) a whole module."""
    trusted = bool(options.get("trust_checkpoint", False))
    if sniffed.unsafe_globals and not trusted:
        raise CheckpointError(refusal_message(where, list(sniffed.unsafe_globals), role=role))
    if sniffed.plain_pickle:
        if not trusted:
            raise CheckpointError(
                f"{where}: a plain Python pickle (pickle.dump), not a torch.save checkpoint; it is not unpickled "
                f"without trust. Save the weights with torch.save(model.state_dict(), path) or safetensors "
                f"instead. {trust_hint(role)}"
            )
        obj = _unpickle_plain(path)
    else:
        obj = _torch_load(path, where=where, role=role, trusted=trusted)
    return _module_from_object(obj, path, where=where, options=options)


def _torch_load(path: Path, *, where: str, role: str, trusted: bool) -> Any:
    """torch.load from an open file: given a path, torch >= 2.11 picks a reader by the extension (.safetensors)."""
    try:
        return _torch_load_file(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise                                   # corrupt, not unsafe: reported as such by load_model
        if not trusted:
            # The static scan found nothing, yet the safe unpickler refused: still never fall back unsafely.
            raise CheckpointError(refusal_message(where, _globals_named_in(err), role=role)) from err
    # Trusted by the user: the file may import and run its own code.
    return _torch_load_file(path, weights_only=False)


def _torch_load_file(path: Path, *, weights_only: bool) -> Any:
    import torch

    if not weights_only:  # a trusted whole module names its classes; find them as `python -m` would
        from gate.models.factory import _put_cwd_on_path

        _put_cwd_on_path()

    with open(path, "rb") as handle, warnings.catch_warnings():
        # Quantized tensors are rebuilt through TypedStorage, which torch warns about: torch's concern, not the user's.
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        return torch.load(handle, map_location="cpu", weights_only=weights_only)


def _unpickle_plain(path: Path) -> Any:
    """Trusted only: a checkpoint written with pickle.dump, which torch.load cannot read."""
    from gate.models.factory import _put_cwd_on_path

    _put_cwd_on_path()
    with open(path, "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the user passed --trust-checkpoint for this file


def _globals_named_in(err: Exception) -> list[str]:
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))


def _module_from_object(obj: Any, path: Path, *, where: str, options: Mapping[str, Any]) -> Built:
    """Turn what torch.load returned into a module: a whole nn.Module as is, weights through the factory."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return Built(obj, "pickle", (path,))
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where}: the file holds a {type(obj).__module__}.{type(obj).__qualname__}; expected a state_dict "
            "(a dict of parameter names to tensors), a training checkpoint dict holding one, or an nn.Module"
        )
    if obj and all(isinstance(k, str) and is_weight_entry(k, v) for k, v in obj.items()):
        return Built(build_module(obj, where=where, options=options, what="the state_dict"), "state_dict", (path,))
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, torch.nn.Module):
            return Built(inner, "pickle", (path,))
        if isinstance(inner, Mapping) and any(isinstance(k, str) and is_weight_entry(k, v) for k, v in inner.items()):
            what = f"the training checkpoint's {key!r} entry"
            return Built(build_module(inner, where=where, options=options, what=what), "state_dict", (path,))
    keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
    raise CheckpointError(
        f"{where}: a dict without model weights: expected a state_dict (parameter names to tensors) or a "
        f"training checkpoint with one under {', '.join(repr(k) for k in STATE_DICT_KEYS)}; found keys: {keys}"
    )
