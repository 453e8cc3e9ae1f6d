"""Weights-only checkpoints need code: `--model-factory package.module:callable` builds the nn.Module.

The factory is imported like `python -m` would (the current directory first on sys.path), called with the
configured kwargs, and the state_dict is loaded into what it returns, each tensor in the checkpoint's dtype. Training checkpoints often prefix every
key ("model." from Lightning, "module." from DataParallel, "_orig_mod." from torch.compile); a prefix is
stripped when the keys then match the module's exactly.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Callable

from gate.errors import CheckpointError
from gate.models.base import brief

_FEW = 5


def build_module(state_dict: Mapping[str, Any], *, where: str, options: Mapping[str, Any], what: str) -> Any:
    """Call the configured factory and load `state_dict` into its module (keys aligned, shapes checked)."""
    spec = options.get("factory")
    if not spec:
        example = next(iter(state_dict), "?")
        raise CheckpointError(
            f"{where}: {what} holds only weights ({len(state_dict)} tensors, e.g. {example!r}), not the code "
            "that builds the model: pass --model-factory package.module:callable (model.factory in gate.yaml), "
            "a callable that returns the torch.nn.Module these weights belong to"
        )
    module = call_factory(spec, dict(options.get("kwargs") or {}), where=where)
    load_into(module, state_dict, where=where, spec=spec, strict=bool(options.get("strict", True)))
    return module


def call_factory(spec: str | Callable[..., Any], kwargs: dict[str, Any], *, where: str) -> Any:
    """Resolve and call the factory; CheckpointError for every way it can go wrong, naming the checkpoint."""
    import torch

    factory = resolve_factory(spec, where=where)
    label = _label(spec)
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as err:
            raise CheckpointError(
                f"{where}: --model-factory {label} does not accept the kwargs {sorted(kwargs)}: {err} "
                f"(it takes {signature}); fix model.kwargs in gate.yaml"
            ) from err
    try:
        module = factory(**kwargs)
    except Exception as err:  # noqa: BLE001 - user code: any failure becomes one clear line
        raise CheckpointError(f"{where}: --model-factory {label} raised {brief(err)}") from err
    if not isinstance(module, torch.nn.Module):
        raise CheckpointError(
            f"{where}: --model-factory {label} returned {type(module).__module__}.{type(module).__qualname__}, "
            "expected a torch.nn.Module"
        )
    return module


def resolve_factory(spec: str | Callable[..., Any], *, where: str) -> Callable[..., Any]:
    """'package.module:attr.path' -> the callable (a callable passed from Python is used as is)."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise CheckpointError(
            f"{where}: --model-factory {spec!r} is not of the form package.module:callable"
        )
    module_name, attr_path = spec.split(":")
    _put_cwd_on_path()
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - user code: missing modules, syntax errors, import-time failures
        missing = getattr(err, "name", None) if isinstance(err, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CheckpointError(
                f"{where}: --model-factory {spec}: cannot import module {module_name!r} ({brief(err)}); "
                f"it must be importable from the current directory ({os.getcwd()}) or the installed packages"
            ) from err
        raise CheckpointError(
            f"{where}: --model-factory {spec}: importing {module_name!r} failed: {brief(err)}"
        ) from err
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise CheckpointError(f"{where}: --model-factory {spec}: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CheckpointError(
            f"{where}: --model-factory {spec} is not callable (it is a {type(target).__name__})"
        )
    return target


def _put_cwd_on_path() -> None:
    """Like `python -m`: the directory gate runs in is importable (kept, so the factory's lazy imports work)."""
    importlib.invalidate_caches()
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _label(spec: str | Callable[..., Any]) -> str:
    if isinstance(spec, str):
        return spec
    return f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"


def align_keys(state_dict: Mapping[str, Any], module_keys: set[str]) -> tuple[dict[str, Any], str]:
    """(state_dict with a common prefix stripped, the prefix) so its keys match the module's; '' if none fits.

    The prefix is chosen when it makes the keys match exactly (keys outside it, such as a Lightning
    module's loss weights, are dropped); otherwise the choice that matches the most keys, keeping the
    original keys on a tie, and load_state_dict reports what still differs.
    """
    keys = set(state_dict)
    if keys == module_keys:
        return dict(state_dict), ""
    best_prefix, best_overlap = "", len(keys & module_keys)
    for prefix in sorted(_candidate_prefixes(keys), key=len):
        stripped = {k[len(prefix):] for k in keys if k.startswith(prefix)}
        if stripped == module_keys:
            return _strip(state_dict, prefix), prefix
        overlap = len(stripped & module_keys)
        if overlap > best_overlap:
            best_prefix, best_overlap = prefix, overlap
    return (_strip(state_dict, best_prefix), best_prefix) if best_prefix else (dict(state_dict), "")


def _candidate_prefixes(keys: set[str], depth: int = 3) -> set[str]:
    prefixes = set()
    for key in keys:
        parts = key.split(".")
        for n in range(1, min(depth, len(parts) - 1) + 1):
            prefixes.add(".".join(parts[:n]) + ".")
    return prefixes


def _strip(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_into(module: Any, state_dict: Mapping[str, Any], *, where: str, spec: Any, strict: bool) -> None:
    """load_state_dict with the mismatches spelled out: missing/unexpected keys, wrong shapes (a few of each)."""
    import torch

    target = module.state_dict()
    aligned, prefix = align_keys(state_dict, set(target))
    aligned = _with_metadata(aligned, state_dict, prefix)
    label = _label(spec)
    stripped = f" (after stripping the prefix {prefix!r})" if prefix else ""
    not_tensors = sorted(k for k, v in aligned.items() if not is_weight_entry(k, v) and not k.endswith("_extra_state"))
    if not_tensors:
        raise CheckpointError(
            f"{where}: the state_dict has entries that are not tensors{stripped}: {_few(not_tensors)}"
        )
    shapes = sorted(
        f"{k}: checkpoint {tuple(aligned[k].shape)} vs module {tuple(target[k].shape)}"
        for k in aligned.keys() & target.keys()
        if isinstance(aligned[k], torch.Tensor) and isinstance(target[k], torch.Tensor)
        and aligned[k].shape != target[k].shape
    )
    if shapes:
        raise CheckpointError(
            f"{where}: the state_dict does not fit the module built by --model-factory {label}{stripped}: "
            f"{len(shapes)} tensors have other shapes ({_few(shapes)}); check the factory's kwargs"
        )
    missing = sorted(target.keys() - aligned.keys())
    unexpected = sorted(aligned.keys() - target.keys())
    if not (aligned.keys() & target.keys()) and target:
        raise CheckpointError(
            f"{where}: none of the state_dict's keys ({_few(sorted(state_dict))}) match the module built by "
            f"--model-factory {label} ({_few(sorted(target))})"
        )
    packed = [k for k in unexpected if _PACKED in k]
    if packed:
        raise CheckpointError(
            f"{where}: the state_dict holds torch.ao quantized weights ({_few(packed)}) but --model-factory "
            f"{label} builds a float module: for a quantized checkpoint the factory (per role, e.g. "
            "model.candidate.factory) must return the quantized module, e.g. "
            "torch.ao.quantization.quantize_dynamic(build(), {torch.nn.Linear}, dtype=torch.qint8); or quantize "
            "with torchao's quantize_, whose state_dict loads into the float module"
        )
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{where}: the state_dict does not match the module built by --model-factory {label}{stripped}: "
            f"{len(missing)} missing keys ({_few(missing)}), {len(unexpected)} unexpected keys "
            f"({_few(unexpected)}); check the factory and its kwargs, or set model.strict: false to load "
            "a partial match"
        )
    take_checkpoint_dtypes(module, aligned)
    # Tensor subclasses (torchao's Int8Tensor, ...) are the weights as shipped: assign them instead of copying them
    # into the factory's float parameters.
    assign = any(isinstance(v, torch.Tensor) and type(v) not in (torch.Tensor, torch.nn.Parameter)
                 for v in aligned.values())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            module.load_state_dict(aligned, strict=strict, assign=assign)
    except Exception as err:  # noqa: BLE001 - custom _load_from_state_dict hooks can raise anything
        raise CheckpointError(f"{where}: load_state_dict into --model-factory {label} failed: {brief(err)}") from err


_PACKED = "_packed_params"


def _with_metadata(aligned: dict[str, Any], original: Mapping[str, Any], prefix: str) -> Any:
    """Keep state_dict._metadata (each module's saved version, prefix stripped like the keys): modules such as
    torch.ao's quantized Linear read their layout from it, and without it take a v1 checkpoint for granted."""
    metadata = getattr(original, "_metadata", None)
    if metadata is None:
        return aligned
    from collections import OrderedDict

    out: Any = OrderedDict(aligned)
    out._metadata = OrderedDict(
        (key[len(prefix):] if key.startswith(prefix) else ("" if key + "." == prefix else key), value)
        for key, value in metadata.items()
        if not prefix or key.startswith(prefix) or key + "." == prefix
    )
    return out


def is_weight_entry(key: str, value: Any) -> bool:
    """A tensor (torchao's quantized tensors are tensor subclasses), or the parts torch.ao's quantized modules
    save: `..._packed_params.dtype` (a torch.dtype) and `..._packed_params._packed_params` (a tuple of tensors)."""
    import torch

    if isinstance(value, torch.Tensor):
        return True
    if key.endswith(f"{_PACKED}.dtype"):
        return isinstance(value, torch.dtype)
    if key.endswith(f"{_PACKED}.{_PACKED}"):
        return isinstance(value, tuple) and all(v is None or isinstance(v, torch.Tensor) for v in value)
    return False


def take_checkpoint_dtypes(module: Any, state_dict: Mapping[str, Any]) -> None:
    """Each floating parameter and buffer takes its checkpoint tensor's dtype, so that load_state_dict casts nothing.

    load_state_dict copies into the module's own tensors: a float16 checkpoint loaded into a factory's float32
    module would silently run in float32, which is not the model that ships (and a factory's `.half()` module
    would turn a float32 checkpoint into float16).
    """
    import torch

    for name, value in state_dict.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        owner_name, _, leaf = name.rpartition(".")
        try:
            owner = module.get_submodule(owner_name)
        except AttributeError:
            continue                                # load_into reports keys the module does not have
        current = getattr(owner, leaf, None)
        if not (isinstance(current, torch.Tensor) and current.is_floating_point()) or current.dtype == value.dtype:
            continue
        if isinstance(current, torch.nn.Parameter):
            current.data = current.data.to(value.dtype)     # the same Parameter object: tied weights stay tied
        elif leaf in dict(owner.named_buffers(recurse=False)):
            owner.register_buffer(leaf, current.to(value.dtype))   # in the state_dict, so persistent


def _few(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:_FEW])
    return shown + (f", ... {len(items) - _FEW} more" if len(items) > _FEW else "")
