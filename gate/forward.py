"""Calling a model the same way everywhere, and turning whatever it returns into (B, K) class scores."""
from __future__ import annotations

from typing import Any

import torch

from gate.errors import ModelError


def call_model(module: Any, inputs: Any, *, input_names: tuple[str, ...] | None = None) -> Any:
    """module(**inputs) for a dict (keeping only the arguments forward() takes), module(*inputs) for a tuple."""
    if isinstance(inputs, dict):
        if input_names:
            inputs = {k: v for k, v in inputs.items() if k in input_names}
        return module(**inputs)
    if isinstance(inputs, (tuple, list)):
        return module(*inputs)
    return module(inputs)


def to_scores(output: Any, *, role: str = "model") -> torch.Tensor:
    """Normalise a model output to float (B, K) logits.

    Hugging Face outputs -> `.logits`; tuples/lists -> their first element; dicts -> "logits" or their first tensor;
    a single-logit binary model ((B,) or (B, 1)) -> stack([0, z]) so softmax gives [1 - sigmoid(z), sigmoid(z)].
    """
    out = output
    for _ in range(8):
        if isinstance(out, torch.Tensor):
            break
        if hasattr(out, "logits") and isinstance(getattr(out, "logits"), torch.Tensor):
            out = out.logits
        elif isinstance(out, dict):
            if "logits" in out:
                out = out["logits"]
            else:
                tensors = [v for v in out.values() if isinstance(v, torch.Tensor)]
                if not tensors:
                    raise ModelError(f"{role}: model returned a dict without tensors (keys: {', '.join(map(str, out))})")
                out = tensors[0]
        elif isinstance(out, (tuple, list)) and out:
            out = out[0]
        else:
            raise ModelError(f"{role}: model returned {type(out).__name__}, expected a tensor of class scores")
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{role}: could not find class scores in the model's output")
    if not (out.is_floating_point() or out.is_complex()):
        raise ModelError(
            f"{role}: the model returned {out.dtype} values (class indices?); gate needs class scores (logits or "
            "probabilities) of shape (batch, classes)"
        )
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
        z = out.reshape(-1).float()
        return torch.stack([torch.zeros_like(z), z], dim=1)
    if out.ndim != 2:
        raise ModelError(
            f"{role}: expected class scores of shape (batch, classes), got shape {tuple(out.shape)}"
        )
    return out.float()


def move_to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: move_to(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move_to(v, device) for v in inputs)
    return inputs


def batch_len(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, dict):
        return batch_len(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)):
        return batch_len(inputs[0])
    raise ModelError(f"cannot tell the batch size of inputs of type {type(inputs).__name__}")


def slice_batch(inputs: Any, index: slice | int) -> Any:
    """Rows `index` of every tensor in the inputs (an int keeps a batch dimension of 1)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    if isinstance(inputs, torch.Tensor):
        return inputs[index]
    if isinstance(inputs, dict):
        return {k: slice_batch(v, index) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(slice_batch(v, index) for v in inputs)
    return inputs


def run_model(model: Any, inputs: Any) -> torch.Tensor:
    """One LoadedModel's scores for one batch, under inference mode, with errors that name the role."""
    try:
        with torch.inference_mode():
            output = call_model(model.module, inputs, input_names=model.input_names)
    except Exception as err:  # a model's forward can raise anything; the user needs the role and the message
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{model.role} ({model.path}): forward pass failed on the evaluation data: {msg}") from err
    return to_scores(output, role=model.role)
