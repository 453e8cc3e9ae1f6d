"""Calling a model the same way everywhere (floating inputs in its dtype), and turning what it returns into the
task's scores: (B, K) class scores, (B, L) multi-label probabilities or (B, T) regression predictions; its output
kind read or detected, its columns in the baseline's class order."""
from __future__ import annotations

import math
import weakref
from typing import Any

import torch

from gate.errors import ModelError


# Output kinds a model can be declared with (`output:` in gate.yaml), per task in gate.tasks.KINDS.
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid", "binary_logit", "multi_label", "multi_label_logits",
                "multi_label_probabilities", "regression")
SUPPORTED_KINDS = OUTPUT_KINDS
_SINGLE = ("sigmoid", "binary_logit")
_MULTI_LABEL = ("multi_label", "multi_label_logits", "multi_label_probabilities")
_UNIT_SLACK = 1e-3        # probabilities computed in float16 may land a rounding step outside [0, 1]

# The dtype each loaded module takes its floating inputs in (gate.precision registers every module with floating
# parameters). Every caller of call_model (the pass, sanity, latency, ONNX timing) then feeds a float16 model
# float16 inputs, and a float32 model float32 ones from a float16 data file, without knowing about dtypes.
_INPUT_DTYPES: weakref.WeakKeyDictionary[Any, torch.dtype] = weakref.WeakKeyDictionary()


def set_input_dtype(module: Any, dtype: torch.dtype | None) -> None:
    """Floating inputs of `module` are cast to `dtype` by call_model (None: passed as they come)."""
    if dtype is None:
        _INPUT_DTYPES.pop(module, None)
    else:
        _INPUT_DTYPES[module] = dtype


_HALF = frozenset({torch.float16, torch.bfloat16})


def cast_floating(inputs: Any, dtype: torch.dtype, *, only: frozenset[torch.dtype] | None = None) -> Any:
    """Floating tensors cast to `dtype` (with `only`, just those of these dtypes); integer tensors (token ids,
    masks) and everything else untouched."""
    if isinstance(inputs, torch.Tensor):
        cast = inputs.is_floating_point() and inputs.dtype != dtype and (only is None or inputs.dtype in only)
        return inputs.to(dtype) if cast else inputs
    if isinstance(inputs, dict):
        return {k: cast_floating(v, dtype, only=only) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(cast_floating(v, dtype, only=only) for v in inputs)
    return inputs


def call_model(module: Any, inputs: Any, *, input_names: tuple[str, ...] | None = None) -> Any:
    """module(**inputs) for a dict (keeping only the arguments forward() takes), module(*inputs) for a tuple.

    Floating inputs are cast to the module's dtype; for a float32 module only half-precision ones are widened (a
    float64 input is left to a module that may take it so: one float64 layer among float32 ones)."""
    dtype = _INPUT_DTYPES.get(module)
    if dtype is not None:
        inputs = cast_floating(inputs, dtype, only=_HALF if dtype == torch.float32 else None)
    if isinstance(inputs, dict):
        if input_names:
            inputs = {k: v for k, v in inputs.items() if k in input_names}
        return module(**inputs)
    if isinstance(inputs, (tuple, list)):
        return module(*inputs)
    return module(inputs)


def output_tensor(output: Any, *, role: str = "model") -> torch.Tensor:
    """The tensor of class scores in a model's output (found_scores without the label)."""
    return found_scores(output, role=role)[0]


def found_scores(output: Any, *, role: str = "model") -> tuple[torch.Tensor, bool]:
    """The tensor of class scores in a model's output, and whether the output itself calls it `logits`.

    Hugging Face outputs -> `.logits`; tuples/lists -> their first element; dicts -> "logits" or their first tensor.
    """
    out = output
    named = False
    for _ in range(8):
        if isinstance(out, torch.Tensor):
            break
        if hasattr(out, "logits") and isinstance(getattr(out, "logits"), torch.Tensor):
            out, named = out.logits, True
        elif isinstance(out, dict):
            if "logits" in out:
                out, named = out["logits"], True
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
    if out.ndim not in (1, 2):
        raise ModelError(
            f"{role}: expected class scores of shape (batch, classes), got shape {tuple(out.shape)}"
        )
    return out, named


def _is_single(out: torch.Tensor) -> bool:
    return out.ndim == 1 or out.shape[1] == 1


def _ask(role: str, found: str, choices: str) -> ModelError:
    return ModelError(
        f"{role}: cannot tell what the model outputs: {found}; say which in gate.yaml with model.output (or "
        f"model.{role}.output): {choices}"
    )


def detect_task_kind(out: torch.Tensor, *, task: str, role: str = "model", named_logits: bool = False) -> str:
    """detect_output_kind for the run's task: multi_label outputs are logits when a finite value is outside [0, 1]
    (or the output calls them logits), ambiguous otherwise; regression outputs are what they are."""
    if task == "regression":
        return "regression"
    if task != "multi_label":
        return detect_output_kind(out, role=role, named_logits=named_logits)
    if named_logits:
        return "multi_label_logits"
    finite = out[torch.isfinite(out)].float()
    if finite.numel() and not bool(((finite >= 0) & (finite <= 1)).all()):
        return "multi_label_logits"
    raise _ask(role, f"{out.shape[-1] if out.ndim == 2 else 1} label columns, every value in [0, 1] on the first "
                     "batch (probabilities, or logits that happen to lie there?)",
               "multi_label_probabilities or multi_label_logits")


def detect_output_kind(out: torch.Tensor, *, role: str = "model", named_logits: bool = False) -> str:
    """The kind of a model's output tensor when its first batch leaves no doubt; ModelError asking otherwise.

    One column: a logit when any value is outside [0, 1], else ambiguous (a probability or a logit). Several columns:
    probabilities when every row is in [0, 1] and sums to 1, ambiguous when in [0, 1] without summing to 1
    (independent per-class probabilities: multi-label), logits otherwise. Several columns that the output itself
    calls `logits` (a Hugging Face output, a {"logits": ...} dict) are logits. Non-finite values are left to the
    sanity check: they decide nothing here.
    """
    if named_logits and not _is_single(out):
        return "logits"
    finite = out[torch.isfinite(out)].float()
    in_unit = finite.numel() > 0 and bool(((finite >= 0) & (finite <= 1)).all())
    if _is_single(out):
        if in_unit:
            raise _ask(role, "one column, every value in [0, 1] on the first batch (a sigmoid probability, or a "
                             "logit that happens to lie there?)", "sigmoid or binary_logit")
        return "binary_logit"
    if not in_unit:
        return "logits"
    rows = out[torch.isfinite(out).all(dim=1)].float()
    tolerance = 1e-3 if out.dtype in (torch.float32, torch.float64) else 2e-2
    if rows.numel() and bool(((rows.sum(dim=1) - 1).abs() <= tolerance).all()):
        return "probabilities"
    raise _ask(role, f"{out.shape[1]} columns, every value in [0, 1] but rows that do not sum to 1 on the first "
                     "batch (per-class probabilities of a multi-label model, or logits?)", "logits or multi_label")


def check_output_kind(out: torch.Tensor, kind: str, *, role: str = "model") -> None:
    """ModelError when the tensor cannot be what `kind` says (shape, or probabilities outside [0, 1])."""
    if kind in _SINGLE and not _is_single(out):
        raise ModelError(f"{role}: output: {kind} expects one column, but the model returned shape {tuple(out.shape)} "
                         "(set output: logits or probabilities)")
    if kind in ("logits", "probabilities") and _is_single(out):
        raise ModelError(f"{role}: output: {kind} expects one column per class, but the model returned shape "
                         f"{tuple(out.shape)} (set output: sigmoid or binary_logit)")
    if kind in ("probabilities", "sigmoid", "multi_label_probabilities"):
        finite = out[torch.isfinite(out)]
        if finite.numel() and (float(finite.min()) < -_UNIT_SLACK or float(finite.max()) > 1 + _UNIT_SLACK):
            other = {"sigmoid": "binary_logit", "probabilities": "logits"}.get(kind, "multi_label_logits")
            raise ModelError(
                f"{role}: output: {kind}, but the model returned values outside [0, 1] (min {float(finite.min()):.4g}, "
                f"max {float(finite.max()):.4g}): are they logits? (output: {other})"
            )


def to_scores(
    output: Any, *, role: str = "model", kind: str = "auto", columns: tuple[int, ...] | None = None
) -> torch.Tensor:
    """A model output as the task's scores, columns in the baseline's order.

    Classification: float (B, K) class scores whose argmax is the prediction: logits and probabilities are kept; a
    sigmoid probability p becomes [1 - p, p]; a single logit z becomes [0, z] (softmax gives [1 - sigmoid(z),
    sigmoid(z)]). multi_label: float32 (B, L) probabilities (sigmoid of logits). regression: float32 (B, T).
    `kind` "auto" detects a classifier's kind from this output (detect_output_kind), "multi_label" a multi-label one.
    """
    out, named = found_scores(output, role=role)
    if kind == "auto":
        kind = detect_output_kind(out, role=role, named_logits=named)
    elif kind == "multi_label":
        kind = detect_task_kind(out, task="multi_label", role=role, named_logits=named)
    check_output_kind(out, kind, role=role)
    if kind == "regression":
        return (out.reshape(-1, 1) if out.ndim == 1 else out).float()
    if kind in _MULTI_LABEL:
        values = (out.reshape(-1, 1) if out.ndim == 1 else out).float()
        # An infinite logit is a defect the sanity check must see, not a probability of exactly 0 or 1.
        scores = (torch.where(torch.isfinite(values), torch.sigmoid(values), torch.full_like(values, math.nan))
                  if kind == "multi_label_logits" else values)
    elif kind == "sigmoid":
        p = out.reshape(-1).float()
        scores = torch.stack([1 - p, p], dim=1)
    elif kind == "binary_logit":
        z = out.reshape(-1).float()
        scores = torch.stack([torch.zeros_like(z), z], dim=1)
    elif kind in ("logits", "probabilities"):
        scores = out.float()
    else:
        raise ModelError(f"{role}: unknown output kind {kind!r} (expected one of {', '.join(OUTPUT_KINDS)})")
    if columns is not None:
        if len(columns) != scores.shape[1]:
            what = "labels" if kind in _MULTI_LABEL else "classes"
            raise ModelError(f"{role}: the model outputs {scores.shape[1]} {what} but names {len(columns)}")
        scores = scores[:, list(columns)]
    return scores


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


def forward_output(model: Any, inputs: Any, *, track_versions: bool = False) -> Any:
    """One LoadedModel's raw output for one batch, under inference mode, with errors that name the role.

    `track_versions`: under no_grad instead, whose tensors keep the version counter that shows an activation
    overwritten in place after a forward hook saw it (inference tensors have none).
    """
    try:
        with torch.no_grad() if track_versions else torch.inference_mode():
            return call_model(model.module, inputs, input_names=model.input_names)
    except Exception as err:  # a model's forward can raise anything; the user needs the role and the message
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{model.role} ({model.path}): forward pass failed on the evaluation data: {msg}") from err


def predictions(scores: torch.Tensor, task: str) -> Any:
    """The task's numpy predictions from its scores: argmax (B,) int64, probability >= 0.5 (B, L) bool, or the
    (B, T) float32 values themselves."""
    if task == "multi_label":
        return (scores >= 0.5).cpu().numpy()
    if task == "regression":
        return scores.cpu().numpy()
    return scores.argmax(dim=1).cpu().numpy()


def scores_of(model: Any, output: Any) -> torch.Tensor:
    """A LoadedModel's raw output as its task's scores: its output kind, its columns in the baseline's order."""
    return to_scores(output, role=model.role, kind=getattr(model, "output", "auto"),
                     columns=getattr(model, "columns", None))


def run_model(model: Any, inputs: Any) -> torch.Tensor:
    """One LoadedModel's scores for one batch (forward_output, then scores_of)."""
    return scores_of(model, forward_output(model, inputs))
