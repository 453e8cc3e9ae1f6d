"""A model the caller built in memory (the Python API): no file, no loader, no trust needed.

The module is the caller's own object: nothing is read from a pull request, so there is nothing to refuse. Its
identity in the report is a digest of its weights, so two runs on the same weights say so.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from gate.errors import ConfigError
from gate.models.base import LoadedModel, count_parameters, forward_input_names, is_eager_module

if TYPE_CHECKING:
    import torch

FORMAT = "module"


def module_label(module: Any) -> str:
    """How an in-memory model is named where a checkpoint would show its path."""
    return f"<in-memory {type(module).__name__}>"


def state_digest(module: Any) -> str | None:
    """SHA-256 over the names, dtypes, shapes and bytes of the state_dict, in key order; None without one."""
    import torch

    state = getattr(module, "state_dict", None)
    if not callable(state):
        return None
    digest = hashlib.sha256()
    for name, tensor in state().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def state_bytes(module: Any) -> int | None:
    import torch

    state = getattr(module, "state_dict", None)
    if not callable(state):
        return None
    return sum(t.numel() * t.element_size() for t in state().values() if isinstance(t, torch.Tensor))


def in_memory_model(module: Any, *, role: str, device: torch.device) -> LoadedModel:
    """The caller's nn.Module (or any callable module-like object) as a LoadedModel, in eval mode on `device`."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ConfigError(
            f"{role}: expected a checkpoint path or a torch.nn.Module, found {type(module).__name__}"
        )
    module.eval()
    module.to(device)
    config = getattr(module, "config", None)
    class_names = None
    if config is not None and getattr(config, "id2label", None):
        from gate.models.huggingface import class_names_from_config

        class_names = class_names_from_config(config, where=f"{role} {module_label(module)}")
    return LoadedModel(
        role=role,
        path=module_label(module),
        format=FORMAT,
        module=module,
        sha256=state_digest(module),
        size_bytes=state_bytes(module),
        parameters=count_parameters(module),
        class_names=class_names,
        tokenizer=None,
        input_names=forward_input_names(module),
        is_eager=is_eager_module(module),
    )
