"""Export a PyTorch module to ONNX for the ONNX check, and turn exporter failures into messages a user can act on.

Two exporters, tried in this order (`exporter: auto`):

1. the torch.export-based exporter (`torch.onnx.export(..., dynamo=True)`, needs onnxscript), with
   `dynamic_shapes` built from the example inputs and the weights kept inside the .onnx file;
2. the older TorchScript-based exporter (`dynamo=False`, `dynamic_axes`), when the first cannot export the model
   (always for TorchScript modules, which torch.export cannot trace). Why it was needed is recorded.

Exporter chatter (warnings, logging, the C++ IR dump of the TorchScript exporter) is captured, not printed: the
warnings travel in ExportResult.warnings, the IR dump is mined for where an unsupported operator sits.
torch is imported inside functions only.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.errors import ConfigError, ModelError

EXPORTERS = ("auto", "dynamo", "torchscript")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ExportResult:
    """What was exported, how, and why the preferred exporter was not used (when it was not)."""

    path: Path
    exporter: str                                  # "dynamo" | "torchscript"
    opset: int | None
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, tuple[int, ...]]
    fallback_reason: str | None = None             # why the torch.export-based exporter was not used
    warnings: tuple[str, ...] = ()                 # distinct exporter warnings, first line each


@dataclass(frozen=True)
class ExportFailure:
    """One exporter's failure, condensed: what broke (an operator, a trace) and where in the model."""

    exporter: str
    message: str                                   # one sentence, no stack trace
    operator: str | None = None                    # e.g. "aten::special_i1"
    where: str | None = None                       # e.g. "module block.1 (Bad) at model.py:12"

    def describe(self) -> str:
        text = self.message
        if self.where:
            text += f", in {self.where}"
        return text


class OnnxExportError(ModelError):
    """No exporter could turn the model into ONNX. `failures` holds each exporter's condensed reason."""

    def __init__(self, failures: tuple[ExportFailure, ...]) -> None:
        self.failures = failures
        self.operator = next((f.operator for f in failures if f.operator), None)
        parts = [f"{f.exporter} exporter: {f.describe()}" for f in failures]
        head = f"ONNX export failed on operator {self.operator}" if self.operator else "ONNX export failed"
        super().__init__(f"{head}. " + "; ".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# Inputs: names, structure, dynamic axes
# ---------------------------------------------------------------------------------------------------------------


def named_inputs(inputs: Any, *, declared: tuple[str, ...] | None = None, module: Any = None) -> dict[str, Any]:
    """The model's tensor inputs by name, in the order the model takes them.

    Dicts keep their keys (Hugging Face: input_ids, attention_mask, ...), ordered like the forward signature where
    it names them all. Tensors and tuples take `declared` names when they fit, else input / input_0, input_1, ...
    """
    import torch

    if isinstance(inputs, Mapping):
        items = {str(k): v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        order = _forward_parameter_names(module)
        if order and all(name in order for name in items):
            items = dict(sorted(items.items(), key=lambda kv: order.index(kv[0])))
        return items
    tensors = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    if declared and len(declared) == len(tensors):
        names = list(declared)
    else:
        names = ["input"] if len(tensors) == 1 else [f"input_{i}" for i in range(len(tensors))]
    return dict(zip(names, tensors))


def _forward_parameter_names(module: Any) -> list[str]:
    forward = getattr(module, "forward", None)
    if forward is None:
        return []
    try:
        return list(inspect.signature(forward).parameters)
    except (TypeError, ValueError):  # builtins, some ScriptModules
        return []


def auto_dynamic_axes(inputs: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Batch axis of every input; also axis 1 of integer rank-2 inputs (token ids and masks: the sequence)."""
    axes: dict[str, tuple[int, ...]] = {}
    for name, tensor in inputs.items():
        if tensor.dim() == 0:
            continue
        is_text = tensor.dim() == 2 and not tensor.dtype.is_floating_point and not tensor.dtype.is_complex
        axes[name] = (0, 1) if is_text else (0,)
    return axes


def resolve_dynamic_axes(option: Any, inputs: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """`dynamic_axes` from the config ("auto", "batch", "none" or {input: [axes]}) for these inputs."""
    if option in (None, "auto"):
        return auto_dynamic_axes(inputs)
    if option == "batch":
        return {name: (0,) for name, t in inputs.items() if t.dim() > 0}
    if option == "none":
        return {}
    if isinstance(option, Mapping):
        unknown = sorted(set(option) - set(inputs))
        if unknown:
            raise ConfigError(
                f"checks.onnx.dynamic_axes: unknown input {unknown[0]!r} (the model's inputs: {', '.join(inputs)})"
            )
        out = {}
        for name, axes in option.items():
            rank = inputs[name].dim()
            bad = [a for a in axes if not 0 <= a < rank]
            if bad:
                raise ConfigError(f"checks.onnx.dynamic_axes.{name}: axis {bad[0]} is outside a rank-{rank} input")
            out[name] = tuple(sorted(set(axes)))
        return out
    raise ConfigError(f"checks.onnx.dynamic_axes: expected auto, batch, none or a mapping, found {option!r}")


def widen_batch(inputs: dict[str, Any]) -> dict[str, Any]:
    """A batch of one would make the exporters fix the batch size at 1; repeat the sample to make two."""
    import torch

    sizes = {t.shape[0] for t in inputs.values() if t.dim() > 0}
    if sizes != {1}:
        return inputs
    return {name: torch.cat([t, t]) if t.dim() > 0 else t for name, t in inputs.items()}


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------


def export_onnx(
    module: Any,
    inputs: Mapping[str, Any],
    path: str | Path,
    *,
    dict_inputs: bool,
    opset: int | None = None,
    dynamic_axes: Mapping[str, tuple[int, ...]] | None = None,
    exporter: str = "auto",
) -> ExportResult:
    """Export `module` run on `inputs` (name -> example tensor) to `path`, falling back between exporters.

    `dict_inputs`: the model takes its inputs as keyword arguments (`module(**inputs)`), not positionally.
    Raises OnnxExportError with each exporter's condensed failure when none succeeds.

    Example: export_onnx(model, {"input": x}, "m.onnx", dict_inputs=False, dynamic_axes={"input": (0,)})
    """
    import torch

    if exporter not in EXPORTERS:
        raise ConfigError(f"checks.onnx.exporter: expected one of {', '.join(EXPORTERS)}, found {exporter!r}")
    path = Path(path)
    axes = dict(dynamic_axes or {})
    # Inference tensors (made under torch.inference_mode) push torch.export off its non-strict path: copy them.
    with torch.inference_mode(False):
        example = {name: t.detach().clone() for name, t in inputs.items()}
        failures: list[ExportFailure] = []
        caught: list[str] = []
        for name in _exporter_order(module, exporter):
            if name == "dynamo" and _is_script_module(module):
                failures.append(ExportFailure("dynamo", "TorchScript modules cannot be traced by torch.export"))
                continue
            try:
                with _captured_warnings(caught):
                    if name == "dynamo":
                        _export_dynamo(module, example, path, dict_inputs=dict_inputs, opset=opset, axes=axes)
                    else:
                        _export_torchscript(module, example, path, dict_inputs=dict_inputs, opset=opset, axes=axes)
            except Exception as err:  # noqa: BLE001 - exporters raise anything; condensed into ExportFailure
                failures.append(condense_export_error(err, exporter=name))
                continue
            return ExportResult(
                path=path,
                exporter=name,
                opset=_saved_opset(path),
                input_names=tuple(example),
                dynamic_axes={k: tuple(v) for k, v in axes.items()},
                fallback_reason="; ".join(f.describe() for f in failures) or None,
                warnings=tuple(dict.fromkeys(caught))[:10],
            )
    raise OnnxExportError(tuple(failures))


def _exporter_order(module: Any, exporter: str) -> tuple[str, ...]:
    if exporter == "auto":
        return ("dynamo", "torchscript")
    return (exporter,)


def _is_script_module(module: Any) -> bool:
    import torch

    return isinstance(module, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def _export_dynamo(
    module: Any, example: dict[str, Any], path: Path, *, dict_inputs: bool, opset: int | None,
    axes: Mapping[str, tuple[int, ...]],
) -> None:
    import torch

    # Dim.AUTO: dynamic where the model allows it, fixed (not an error) where it specialises a size; the check
    # runs fixed-batch graphs in chunks, so a specialised batch still gets compared.
    spec = {name: {axis: torch.export.Dim.AUTO for axis in axes.get(name, ())} for name in example}
    is_program = isinstance(module, torch.export.ExportedProgram)
    args: tuple[Any, ...] = () if dict_inputs else tuple(example.values())
    kwargs = dict(example) if dict_inputs else None
    dynamic_shapes: Any = None
    if not is_program:  # an ExportedProgram carries its own dynamic shapes
        dynamic_shapes = spec if dict_inputs else tuple(spec[name] for name in example)
    with _quiet_output():
        program = torch.onnx.export(
            module, args, kwargs=kwargs, dynamo=True, external_data=False, dynamic_shapes=dynamic_shapes,
            opset_version=opset, output_names=["logits"], verbose=False, optimize=True,
        )
        program.save(str(path), external_data=False)


def _export_torchscript(
    module: Any, example: dict[str, Any], path: Path, *, dict_inputs: bool, opset: int | None,
    axes: Mapping[str, tuple[int, ...]],
) -> None:
    import torch

    names = list(example)
    dynamic = {name: {axis: _axis_name(name, axis, len(axes[name])) for axis in axes[name]} for name in axes}
    args: tuple[Any, ...] = () if dict_inputs else tuple(example.values())
    with _quiet_output() as dump:
        try:
            torch.onnx.export(
                module, args, str(path), kwargs=dict(example) if dict_inputs else None, dynamo=False,
                input_names=names, output_names=["logits"], dynamic_axes=dynamic or None, opset_version=opset,
            )
        except Exception as err:
            err.gate_ir_dump = dump  # type: ignore[attr-defined]  # mined later for where the operator sits
            raise


def _axis_name(name: str, axis: int, count: int) -> str:
    if axis == 0:
        return "batch"
    if axis == 1 and count == 2:
        return "sequence"
    return f"{name}_dim{axis}"


def _saved_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


@contextlib.contextmanager
def _captured_warnings(sink: list[str]) -> Iterator[None]:
    """Record exporter warnings (deprecations, tracer notes) for the report instead of printing or raising them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        sink.append(f"{item.category.__name__}: {str(item.message).splitlines()[0][:200]}")


@contextlib.contextmanager
def _quiet_output() -> Iterator[list[str]]:
    """Send fds 1 and 2 to a temp file while an exporter runs: its C++ dumps and log lines do not reach the user.

    Yields a list that holds the captured text once the block exits (also when it raises).
    """
    holder: list[str] = []
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        streams = [sys.stdout, sys.stderr]
        for s in streams:
            with contextlib.suppress(Exception):
                s.flush()
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:  # no real fds (embedded interpreters): run unquieted
            yield holder
            return
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            try:
                yield holder
            finally:
                for s in streams:
                    with contextlib.suppress(Exception):
                        s.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                tmp.seek(0)
                holder.append(tmp.read().decode("utf-8", errors="replace"))
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------------------------
# Condensing exporter errors
# ---------------------------------------------------------------------------------------------------------------


def condense_export_error(err: BaseException, *, exporter: str) -> ExportFailure:
    """The operator and place an exporter failed on, in one sentence, from the exception and what it printed."""
    if exporter == "dynamo":
        return _condense_dynamo(err)
    return _condense_torchscript(err)


def _condense_dynamo(err: BaseException) -> ExportFailure:
    text = _ANSI.sub("", str(err))
    node = _failing_fx_node(err)
    if node is not None:
        operator = _node_operator(node)
        lowered = str(node.target).removesuffix(".default")
        same = lowered.split(".")[-1] == operator.split("::")[-1]
        detail = "" if same else f" (lowered to {lowered})"
        return ExportFailure(
            "dynamo",
            f"no ONNX translation for operator {operator}{detail}",
            operator=operator,
            where=_node_where(node),
        )
    summary = _exception_summary(text)
    where = _called_from(text)
    if "step 1/3" in text:
        message = f"torch.export could not trace the model: {summary}"
    elif "step 2/3" in text:
        message = f"decomposing the traced graph failed: {summary}"
    else:
        message = summary
    return ExportFailure("dynamo", message, where=where)


def _failing_fx_node(err: BaseException) -> Any:
    """The torch.fx node being translated when the exporter gave up, found in the frames of the cause chain."""
    import torch.fx

    seen: set[int] = set()
    current: BaseException | None = err
    found = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            node = tb.tb_frame.f_locals.get("node")
            if isinstance(node, torch.fx.Node):
                found = node
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return found


def _node_operator(node: Any) -> str:
    """The user-facing name of the op: the torch function the model called, else the traced aten/prims op."""
    torch_fn = node.meta.get("torch_fn")
    if torch_fn and isinstance(torch_fn, tuple) and len(torch_fn) == 2:
        return f"aten::{torch_fn[1].rsplit('.', 1)[-1]}"
    target = str(node.target)
    parts = target.split(".")
    if len(parts) >= 2:
        return f"{parts[0]}::{parts[1]}"
    return target


def _node_where(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    module = None
    if stack:
        path, kind = list(stack.values())[-1]
        kind_name = kind.rsplit(".", 1)[-1] if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
        module = f"module {path} ({kind_name})" if path else f"the top-level module ({kind_name})"
    source = _last_frame(node.meta.get("stack_trace") or "")
    return ", ".join(p for p in (module, source) if p) or None


def _last_frame(stack_trace: str) -> str | None:
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.*)', stack_trace)
    if not frames:
        return None
    file, line, code = frames[-1]
    return f"{Path(file).name}:{line} `{code.strip()}`"


def _exception_summary(text: str) -> str:
    """The innermost exception line of the exporter's '## Exception summary', without class paths."""
    body = text.split("## Exception summary", 1)[-1]
    for line in body.splitlines():
        match = re.match(r"\s*<class '([\w.]+)'>: (.+)", line)
        if match:
            return f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2).strip()}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(text).__name__)
    return first[:300]


def _called_from(text: str) -> str | None:
    match = re.search(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), in (\w+)', text)
    if not match:
        return None
    return f"{Path(match.group(1)).name}:{match.group(2)} (in {match.group(3)})"


def _condense_torchscript(err: BaseException) -> ExportFailure:
    text = _ANSI.sub("", str(err)).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    match = re.search(r"operator '([\w:.]+)'", first)
    operator = match.group(1) if match else None
    dump = "".join(getattr(err, "gate_ir_dump", []) or [])
    where = _ir_dump_where(dump, operator) if operator else None
    if operator:
        opset = re.search(r"opset version (\d+)", first)
        message = f"operator {operator} is not supported" + (f" at opset {opset.group(1)}" if opset else "")
    else:
        message = f"{type(err).__name__}: {first[:300]}"
    return ExportFailure("torchscript", message, operator=operator, where=where)


def _ir_dump_where(dump: str, operator: str) -> str | None:
    """'module block.1 (Bad) at model.py:4' from the line of the TorchScript IR dump that calls `operator`."""
    for line in dump.splitlines():
        if f"= {operator}(" not in line:
            continue
        scope = re.search(r"scope: (\S+)", line)
        source = re.search(r"# (\S+?):(\d+):\d+", line)
        module = None
        if scope:
            last = scope.group(1).rsplit("/", 1)[-1]
            kind, _, name = last.partition("::")
            kind_name = kind.rsplit(".", 1)[-1]
            module = f"module {name} ({kind_name})" if name else f"the top-level module ({kind_name})"
        where = [module] if module else []
        if source:
            where.append(f"{Path(source.group(1)).name}:{source.group(2)}")
        return ", ".join(where) or None
    return None
