"""LoadedModel (what every loader returns) and the format-independent facts computed about a module.

No torch import at module level: `gate --help` and `gate schema` import gate.models indirectly.
"""
from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.files import file_sha256

FORMATS = ("torchscript", "export", "state_dict", "safetensors", "huggingface", "pickle")

# How each format is named in messages and docs.
FORMAT_LABELS = {
    "torchscript": "a TorchScript archive",
    "export": "a torch.export program",
    "state_dict": "a torch.save state_dict",
    "safetensors": "a safetensors file",
    "huggingface": "a Hugging Face model directory",
    "pickle": "a pickled Python object",
}


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint turned into a callable module, with the facts the report shows about it."""

    role: str                               # "baseline" | "candidate"
    path: str
    format: str                             # one of FORMATS
    module: Any                             # callable, eval mode, on the run's device
    sha256: str | None                      # of the file; for a directory, of its weight file(s) (see weights_digest)
    size_bytes: int | None                  # file size; for a directory, the sum of its weight files
    parameters: int | None                  # number of parameter elements, None if unknowable
    class_names: tuple[str, ...] | None     # Hugging Face config id2label in index order; None if absent/generic
    tokenizer: Any | None                   # Hugging Face tokenizer of a model directory
    input_names: tuple[str, ...] | None     # forward() argument names without self; None for *args/unknown
    is_eager: bool                          # a plain nn.Module whose submodules run their forward hooks
    # Filled in by the runner, after loading (gate.precision) and on the first batch (gate.forward):
    output: str = "auto"                    # what forward() returns: one of gate.forward.OUTPUT_KINDS, or "auto"
    columns: tuple[int, ...] | None = None  # the candidate's column of each baseline class; None: same positions
    dtype: str | None = None                # the floating dtype it runs in ("float16"); None: no floating weights
    checkpoint_dtype: str | None = None     # the dtype its weights were shipped in
    cast: str | None = None                 # what was cast on load, in words; None when it runs as shipped


def weights_digest(files: list[Path]) -> str:
    """One file: its own SHA-256 (matches `sha256sum`). Several (sharded): SHA-256 of their sorted sha256sum lines."""
    if len(files) == 1:
        return file_sha256(files[0])
    lines = sorted(f"{file_sha256(f)}  {f.name}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def count_parameters(module: Any) -> int | None:
    """Number of parameter elements (ScriptModules too); None when the object has no .parameters().

    torch.ao's quantized modules keep their weights in packed parameters, not in .parameters(): those count too
    (through the modules' weight() / bias() accessors), so an int8 model does not report 0 parameters."""
    params = getattr(module, "parameters", None)
    if not callable(params):
        return None
    try:
        total = int(sum(p.numel() for p in params()))
        modules = getattr(module, "modules", None)
        for sub in modules() if callable(modules) else ():
            if hasattr(sub, "_packed_params"):
                for accessor in ("weight", "bias"):
                    tensor = getattr(sub, accessor, None)
                    tensor = tensor() if callable(tensor) else None
                    total += int(tensor.numel()) if tensor is not None else 0
        return total
    except Exception:  # noqa: BLE001 - a foreign module type; the count is informational only
        return None


def forward_input_names(module: Any) -> tuple[str, ...] | None:
    """forward()'s argument names (without self); None when it takes *args or cannot be introspected."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        try:
            return tuple(arg.name for arg in module.forward.schema.arguments[1:])
        except (AttributeError, RuntimeError):
            return None
    forward = getattr(module, "forward", None)
    if forward is None:
        return None
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return None
    names = []
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if param.kind is not inspect.Parameter.VAR_KEYWORD:
            names.append(param.name)
    return tuple(names)


def is_eager_module(module: Any) -> bool:
    """True for a plain nn.Module: its submodules' forward hooks fire (not TorchScript, not an fx/export graph)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        return False
    if isinstance(module, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        return False
    return True


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def brief(err: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, without terminal colours, short enough for a one-line error."""
    text = _ANSI.sub("", str(err)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
