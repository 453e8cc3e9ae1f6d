"""Each model's dtype: the one its checkpoint was shipped in, unless `model.dtype` (per role) casts it on load.

The loaders keep a checkpoint's dtypes (a float16 state_dict is loaded into a float16 module: see
gate.models.factory.take_checkpoint_dtypes); here the requested dtype is applied, floating inputs are registered to
be cast to it (gate.forward.call_model), and what the report says about it is recorded on the LoadedModel.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Any

import torch

from gate.errors import CheckpointError
from gate.forward import set_input_dtype
from gate.models.base import brief

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def floating_dtypes(module: Any) -> Counter[torch.dtype]:
    """Floating-point elements per dtype over the module's parameters and buffers."""
    counts: Counter[torch.dtype] = Counter()
    params = getattr(module, "parameters", None)
    buffers = getattr(module, "buffers", None)
    if not (callable(params) and callable(buffers)):
        return counts
    try:
        for tensor in itertools.chain(params(), buffers()):
            if tensor.is_floating_point():
                counts[tensor.dtype] += tensor.numel()
    except Exception:  # noqa: BLE001 - a foreign module type: its dtype is then unknown, not an error
        return Counter()
    return counts


def main_dtype(counts: Counter[torch.dtype]) -> torch.dtype | None:
    """The dtype most floating-point elements have (ties broken by name, so the answer is stable)."""
    if not counts:
        return None
    return max(sorted(counts, key=dtype_name), key=lambda d: counts[d])


def apply_dtype(model: Any, requested: str) -> Any:
    """The LoadedModel in the dtype it runs in: as shipped for "auto", else cast on load; inputs cast to match."""
    counts = floating_dtypes(model.module)
    shipped = main_dtype(counts)
    if shipped is None:
        return replace(model, dtype=None, checkpoint_dtype=None, cast=None)
    target = shipped if requested == "auto" else DTYPES[requested]
    notes = []
    if len(counts) > 1:
        mixed = ", ".join(f"{dtype_name(d)} x{n}" for d, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        notes.append(f"shipped with mixed dtypes ({mixed} elements)")
    if target != shipped or (requested != "auto" and len(counts) > 1):
        try:
            model.module.to(target)
        except Exception as err:  # noqa: BLE001 - whatever the module type raises, the user needs one line
            raise CheckpointError(
                f"{model.role} checkpoint {model.path}: cannot cast it to {requested} (model.dtype): {brief(err)}"
            ) from err
        notes.append(f"cast on load from {dtype_name(shipped)} to {dtype_name(target)} (dtype: {requested})")
    set_input_dtype(model.module, target)
    return replace(model, dtype=dtype_name(target), checkpoint_dtype=dtype_name(shipped),
                   cast="; ".join(notes) or None)
