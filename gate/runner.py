"""The single pass: both models on the same batch, every enabled check fed from it, then the report."""
from __future__ import annotations

import platform
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import gate
from gate.checks import check_class
from gate.checks.base import ROLES, Check, RunContext, Step
from gate.config import GateConfig
from gate.errors import ConfigError, DataError, ModelError
from gate.forward import batch_len, move_to, run_model
from gate.metrics import PairedCounts, metrics_report
from gate.report.model import CheckResult, DataInfo, ModelInfo, Report


@dataclass(frozen=True)
class Sources:
    """Checkpoint paths or the caller's in-memory nn.Modules; a data path or spec, or a Dataset/DataLoader/iterable."""

    candidate: Any
    baseline: Any
    data: Any
    extras: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_class_names(config: GateConfig, models: dict[str, Any], num_classes: int | None) -> tuple[str, ...] | None:
    """config.class_names, else the baseline's id2label, else the candidate's; None when nobody names them."""
    names = config.class_names or models["baseline"].class_names or models["candidate"].class_names
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise ConfigError(
            f"{config.where('class_names')}: {len(names)} names given ({', '.join(names[:5])}...) but the models output {num_classes} classes"
        )
    return tuple(names) if names is not None else None


class _Capture:
    """Forward hooks on the modules checks asked for; records raw outputs only while `active`."""

    def __init__(self, models: dict[str, Any], layers: dict[str, list[str]]) -> None:
        self.active = False
        self.outputs: dict[str, dict[str, Any]] = {role: {} for role in ROLES}
        self._handles = []
        for role, names in layers.items():
            module = models[role].module
            for name in dict.fromkeys(names):
                try:
                    sub = module.get_submodule(name)
                except AttributeError as err:
                    raise ConfigError(f"{role}: no module named {name!r} to hook") from err
                self._handles.append(sub.register_forward_hook(self._hook(role, name)))

    def _hook(self, role: str, name: str):
        def record(_module: Any, _inputs: Any, output: Any) -> None:
            if self.active:
                self.outputs[role][name] = output

        return record

    def take(self) -> dict[str, dict[str, Any]]:
        out, self.outputs = self.outputs, {role: {} for role in ROLES}
        return out

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class _Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int | None) -> None:
        self.enabled = sys.stderr.isatty()
        self.total = total
        self.last = 0.0

    def update(self, samples: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last > 0.2:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\rgate: evaluated {samples}{of} samples")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def build_checks(config: GateConfig, ctx: RunContext) -> list[Check]:
    return [check_class(name)(config.check(name), ctx) for name in config.enabled_checks()]


def evaluate(ctx: RunContext, data: Any, checks: list[Check]) -> tuple[PairedCounts, int, int]:
    """The one pass over the data. Returns the paired counts, the number of samples and of batches."""
    models = ctx.models
    layers: dict[str, list[str]] = {role: [] for role in ROLES}
    for check in checks:
        if "activations" in check.needs:
            for role, names in check.activation_layers().items():
                layers[role].extend(names)
    capture = _Capture(models, layers) if any(layers.values()) else None
    counts: PairedCounts | None = None
    seen = 0
    index = -1
    progress = _Progress(getattr(data, "num_samples", None))
    try:
        for index, (inputs, labels) in enumerate(data.batches()):
            inputs = move_to(inputs, ctx.device)
            labels = torch.as_tensor(labels).reshape(-1).to(torch.int64)
            size = batch_len(inputs)
            if labels.numel() != size:
                raise DataError(f"{data.path}: batch {index} has {size} inputs but {labels.numel()} labels")
            if capture is not None:
                capture.active = True
            try:
                scores = {role: run_model(models[role], inputs) for role in ROLES}
            finally:
                if capture is not None:
                    capture.active = False
            k_b, k_c = scores["baseline"].shape[1], scores["candidate"].shape[1]
            if k_b != k_c:
                raise ModelError(
                    f"the baseline outputs {k_b} classes but the candidate outputs {k_c}: "
                    "a gate compares two models of the same classes"
                )
            if counts is None:
                counts = PairedCounts(k_b)
                if ctx.class_names and len(ctx.class_names) != k_b:
                    raise ConfigError(
                        f"{ctx.config.where('class_names')}: {len(ctx.class_names)} names but the models output "
                        f"{k_b} classes"
                    )
                if not ctx.class_names:
                    ctx.class_names = tuple(str(i) for i in range(k_b))
            elif k_b != counts.num_classes:
                raise ModelError(
                    f"{data.path}: batch {index}: the models output {k_b} classes, but {counts.num_classes} on the "
                    "first batch; a model's class count cannot change from batch to batch"
                )
            bad = (labels < 0) | (labels >= k_b)
            if bool(bad.any()):
                i = int(torch.nonzero(bad)[0])
                raise DataError(
                    f"{data.path}: label {int(labels[i])} of sample {seen + i} is out of range for models with "
                    f"{k_b} classes (expected 0..{k_b - 1})"
                )
            preds = {role: s.argmax(dim=1).cpu().numpy() for role, s in scores.items()}
            counts.update(labels.cpu().numpy(), preds["baseline"], preds["candidate"])
            step = Step(
                index=index,
                offset=seen,
                inputs=inputs,
                labels=labels.to(ctx.device),
                scores=scores,
                activations=capture.take() if capture is not None else {},
            )
            for check in checks:
                check.update(step)
            seen += size
            progress.update(seen)
    finally:
        progress.close()
        if capture is not None:
            capture.close()
    if counts is None or seen == 0:
        raise DataError(f"{data.path}: no samples to evaluate")
    return counts, seen, index + 1


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
    for mod in ("onnxruntime", "transformers"):
        found = sys.modules.get(mod)
        if found is not None:
            env[mod] = getattr(found, "__version__", "unknown")
    return env


def model_info(model: Any, num_classes: int) -> ModelInfo:
    return ModelInfo(
        role=model.role,
        path=model.path,
        format=model.format,
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        parameters=model.parameters,
        num_classes=num_classes,
    )


def run_gate(config: GateConfig, sources: Sources) -> Report:
    """Load, evaluate once, compute every check, decide. Raises GateError when the gate cannot run."""
    from gate.data import open_data
    from gate.verdict import summarise

    started = time.perf_counter()
    if not config.enabled_checks():
        raise ConfigError(f"{config.where('checks')}: every check is disabled; a gate with nothing to check cannot pass")
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    models = {
        "candidate": _model(sources.candidate, role="candidate", config=config, device=device),
        "baseline": _model(sources.baseline, role="baseline", config=config, device=device),
    }
    models = {role: models[role] for role in ROLES}
    class_names = resolve_class_names(config, models, None)
    tokenizer = models["candidate"].tokenizer or models["baseline"].tokenizer
    data = open_data(sources.data, options=config.data, class_names=class_names, tokenizer=tokenizer)
    ctx = RunContext(
        config=config, models=models, class_names=class_names or (), device=device, extras=dict(sources.extras)
    )
    checks = build_checks(config, ctx)
    results: list[CheckResult] = []
    try:
        for check in checks:
            check.setup()
        counts, num_samples, num_batches = evaluate(ctx, data, checks)
        ctx.counts = counts
        for check in checks:
            t0 = time.perf_counter()
            result = check.compute()
            results.append(_with_duration(result, time.perf_counter() - t0))
    finally:
        for check in checks:
            check.teardown()
    verdict, exit_code, summary = summarise(results)
    return Report(
        verdict=verdict,
        exit_code=exit_code,
        summary=summary,
        checks=tuple(results),
        models=tuple(model_info(models[r], counts.num_classes) for r in ROLES),
        data=DataInfo(
            path=str(data.path),
            format=data.format,
            sha256=data.sha256,
            num_samples=num_samples,
            num_batches=num_batches,
            batch_size=int(config.data["batch_size"]),
        ),
        class_names=tuple(ctx.class_names),
        metrics=metrics_report(counts, tuple(ctx.class_names)),
        config=config.to_dict(),
        environment=environment(device),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - started, 3),
        gate_version=gate.__version__,
        schema_version=gate.REPORT_SCHEMA_VERSION,
    )


def _model(source: Any, *, role: str, config: GateConfig, device: torch.device) -> Any:
    """A checkpoint path through its loader; the caller's in-memory nn.Module (the Python API) wrapped as it is."""
    import os

    if isinstance(source, (str, os.PathLike)):
        from gate.models import load_model

        return load_model(source, role=role, options=config.model_options(role), device=device)
    from gate.models.memory import in_memory_model

    return in_memory_model(source, role=role, device=device)


def _with_duration(result: CheckResult, seconds: float) -> CheckResult:
    from dataclasses import replace

    return replace(result, duration_s=round(result.duration_s or seconds, 4))
