"""load_model: sniff the checkpoint, hand it to its format's loader, add the facts the report shows.

This is the boundary for checkpoint errors: whatever a loader or a third-party library raises leaves
here as a CheckpointError naming the role, the file and what was found.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.errors import CheckpointError, GateError
from gate.models.base import (
    FORMAT_LABELS,
    LoadedModel,
    brief,
    count_parameters,
    forward_input_names,
    is_eager_module,
    weights_digest,
)
from gate.models.sniff import Sniffed, sniff

if TYPE_CHECKING:
    import torch

    from gate.models.torch_formats import Built


def load_model(path: str | Path, *, role: str, options: Mapping[str, Any], device: torch.device) -> LoadedModel:
    """Load one checkpoint as a callable module in eval mode on `device`.

    `options` is the model section for this role: factory ("package.module:callable" or None), kwargs,
    trust_checkpoint (load programs and whole pickled modules: set by the command line only, for files the user
    built) and strict (state_dict keys must match).

    >>> load_model("cand.pt", role="candidate", options={"factory": "mypkg.nets:build"}, device=torch.device("cpu"))
    """
    path = Path(path)
    options = options or {}
    where = f"{role} checkpoint {path}"
    fmt = "checkpoint"
    try:
        sniffed = sniff(path, where=where)
        fmt = sniffed.format
        built = _load_by_format(path, sniffed, where=where, role=role, options=options, device=device)
        module = _ready(built.module, device, where=where)
        return LoadedModel(
            role=role,
            path=str(path),
            format=built.format,
            module=module,
            sha256=weights_digest(list(built.weight_files)),
            size_bytes=sum(f.stat().st_size for f in built.weight_files),
            parameters=count_parameters(module),
            class_names=built.class_names,
            tokenizer=built.tokenizer,
            input_names=forward_input_names(module),
            is_eager=is_eager_module(module),
        )
    except GateError:
        raise
    except Exception as err:  # noqa: BLE001 - the boundary: nothing raw leaves the loader
        label = FORMAT_LABELS.get(fmt, "a checkpoint")
        raise CheckpointError(f"{where}: could not load it as {label}: {brief(err)}") from err


def _load_by_format(path: Path, sniffed: Sniffed, *, where: str, role: str, options: Mapping[str, Any],
                    device: Any) -> Built:
    from gate.models import torch_formats

    if sniffed.format in ("torchscript", "export"):
        torch_formats.refuse_untrusted_program(sniffed.format, where=where, role=role, options=options)
    if sniffed.format == "torchscript":
        return torch_formats.load_torchscript(path, device=device)
    if sniffed.format == "export":
        return torch_formats.load_export(path, device=device)
    if sniffed.format == "safetensors":
        return torch_formats.load_safetensors(path, where=where, options=options)
    if sniffed.format == "huggingface":
        from gate.models.huggingface import load_huggingface

        return load_huggingface(path, where=where, role=role, options=options)
    return torch_formats.load_torch_save(path, sniffed, where=where, role=role, options=options)


def _ready(module: Any, device: Any, *, where: str) -> Any:
    """Eval mode, on the device. torch.export modules refuse .eval(): they run in the mode they were exported in."""
    if not callable(module):
        raise CheckpointError(f"{where}: the loaded object is not callable: {type(module).__name__}")
    try:
        module.eval()
    except NotImplementedError:
        pass
    to = getattr(module, "to", None)
    return to(device) if callable(to) else module
