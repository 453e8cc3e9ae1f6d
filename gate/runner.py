"""The single pass: both models on the same batch, every enabled check fed from it, then the report."""
from __future__ import annotations

import contextlib
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

import gate
from gate.checks import check_class
from gate.checks.base import ROLES, Check, RunContext, Step
from gate.classes import ClassAlignment, RoleNames, align_classes, refuse_unprintable_names, role_names
from gate.config import GateConfig
from gate.data._common import Skipped
from gate.errors import ConfigError, DataError, GateError, ModelError
from gate.flipped import FlipCollector
from gate.forward import (
    batch_len,
    check_output_kind,
    detect_task_kind,
    forward_output,
    found_scores,
    move_to,
    predictions,
    scores_of,
)
from gate.metrics import PairedCounts, metrics_report
from gate.progress import Progress
from gate.precision import apply_dtype
from gate.report.model import CheckResult, DataInfo, ModelInfo, Report
from gate.tasks import TASKS, target_names


@dataclass(frozen=True)
class Sources:
    """Checkpoint paths or the caller's in-memory nn.Modules; a data path or spec, or a Dataset/DataLoader/iterable."""

    candidate: Any
    baseline: Any
    data: Any
    extras: dict[str, Any]


def resolve_device(name: str, where: Any = None) -> torch.device:
    """The run's torch device; `where(key)` names the setting ('gate.yaml: device', or the command line's)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        at = where("device") if where is not None else "device"
        raise ConfigError(f"{at}: cuda was requested but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def align_models(config: GateConfig, models: dict[str, Any], task: str = "classification"
                 ) -> tuple[dict[str, Any], ClassAlignment]:
    """Match the candidate's classes (or labels) to the baseline's by name and set each model's declared output kind.

    Regression targets are not matched by name: they are the columns the models output, named by class_names."""
    if task == "regression":
        refuse_unprintable_names(config.class_names, where=config.where("class_names"))
        alignment = ClassAlignment(names=config.class_names, columns=None, baseline=RoleNames(None, None),
                                   candidate=RoleNames(None, None))
    else:
        alignment = align_classes(
            *(role_names(config, models)[role] for role in ROLES),
            class_map=config.class_map, top_level=config.class_names, where=config.where,
        )
    ready = {}
    for role in ROLES:
        columns = alignment.columns if role == "candidate" else None
        kind = config.model_options(role).get("output", "auto")
        if kind == "auto":
            kind = {"multi_label": "multi_label", "regression": "regression"}.get(task, "auto")
        ready[role] = replace(models[role], columns=columns, output=kind)
    return ready, alignment


def run_tokenizer(models: dict[str, Any]) -> Any | None:
    """The model tokenizer a run's text data is encoded with (unless data.tokenizer names one): the baseline's,
    else the candidate's; both models read the same token ids. The candidate's serves only to open the data: for
    text, `refuse_candidate_tokenizer` (which needs the data's format) then refuses it with its own reason."""
    return models["baseline"].tokenizer if models["baseline"].tokenizer is not None else models["candidate"].tokenizer


def refuse_candidate_tokenizer(config: GateConfig, models: dict[str, Any], data_format: str) -> None:
    """ConfigError when text data would be encoded by the candidate's tokenizer for the baseline too: the candidate
    ships one the baseline does not (and the config names none), or one that differs from the baseline's. A
    candidate's tokenizer is part of the change under test: if it decided the baseline's inputs, a pull request
    could make the production model look worse than it is."""
    if data_format not in ("jsonl", "csv") or config.data.get("tokenizer"):
        return
    base, cand = models["baseline"].tokenizer, models["candidate"].tokenizer
    if cand is None:
        return
    where = config.where("data.tokenizer")
    if base is None:
        raise ConfigError(
            f"{where}: only the candidate ({models['candidate'].path}) ships a tokenizer, and the text data would be "
            "encoded by it for the baseline too; name the tokenizer both models read with data.tokenizer (a "
            "directory or package.module:callable) in the policy")
    from gate.data.tokenize import tokenizer_fingerprint

    if tokenizer_fingerprint(base) != tokenizer_fingerprint(cand):
        raise ConfigError(
            f"{where}: the candidate's tokenizer ({models['candidate'].path}) differs from the baseline's "
            f"({models['baseline'].path}); both models read one encoding of the text data, so name the tokenizer "
            "to use with data.tokenizer in the policy")


class _Capture:
    """Forward hooks on the modules checks asked for; records raw outputs only while `active`.

    An output that a later in-place op overwrites (a `ReLU(inplace=True)` after a Linear, torchvision ResNet's
    `bn1` then `relu`) would reach the checks already modified. So on the first batch every hooked output is
    cloned and its tensors' version counters noted; `settle()` after the forward keeps cloning, from then on, only
    the modules whose outputs were modified (`cloned`); one found modified later is cloned from the next batch on
    and its batches listed (`overwritten`).
    """

    def __init__(self, models: dict[str, Any], layers: dict[str, list[str]]) -> None:
        self.active = False
        self.outputs: dict[str, dict[str, Any]] = {role: {} for role in ROLES}
        self.cloned: dict[str, list[str]] = {role: [] for role in ROLES}
        self.overwritten: dict[str, dict[str, list[int]]] = {role: {} for role in ROLES}
        self._probed = False
        self._versions: list[tuple[str, str, Any, tuple[int, ...]]] = []
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
                self._versions.append((role, name, output, _tensor_versions(output)))
                clone = not self._probed or name in self.cloned[role]
                self.outputs[role][name] = _clone_tensors(output) if clone else output

        return record

    def settle(self, batch: int) -> None:
        """After a forward: which hooked outputs were modified in place since their hook ran."""
        for role, name, output, versions in self._versions:
            if _tensor_versions(output) == versions:
                continue
            if name not in self.cloned[role]:
                self.cloned[role].append(name)
                if self._probed:
                    self.overwritten[role].setdefault(name, []).append(batch)
        self._versions = []
        self._probed = True

    def take(self) -> dict[str, dict[str, Any]]:
        out, self.outputs = self.outputs, {role: {} for role in ROLES}
        return out

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _tensors(output: Any, depth: int = 0) -> list[Any]:
    if isinstance(output, torch.Tensor):
        return [output]
    if depth >= 4:
        return []
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return [t for item in items for t in _tensors(item, depth + 1)]


def _tensor_versions(output: Any) -> tuple[int, ...]:
    return tuple(t._version for t in _tensors(output) if not t.is_inference())


def _clone_tensors(output: Any, depth: int = 0) -> Any:
    """The output with every tensor cloned (dicts, tuples, lists and ModelOutputs rebuilt as plain containers)."""
    if isinstance(output, torch.Tensor):
        return output.clone()
    if depth >= 4:
        return output
    if isinstance(output, dict):
        return {k: _clone_tensors(v, depth + 1) for k, v in output.items()}
    if isinstance(output, (tuple, list)):
        items = [_clone_tensors(v, depth + 1) for v in output]
        if hasattr(output, "_make"):            # a namedtuple (PackedSequence, torch.return_types) keeps its type
            return type(output)._make(items)
        return type(output)(items) if type(output) in (tuple, list) else tuple(items)
    return output


def build_checks(config: GateConfig, ctx: RunContext) -> list[Check]:
    """The checks enabled for the run's task (gate.tasks.DEFAULT_CHECKS, or by name), in forward order."""
    classes = [(name, check_class(name)) for name in config.enabled_checks(ctx.task)]
    return [cls(config.check(name), ctx) for name, cls in classes if ctx.task in getattr(cls, "tasks", ())]


def _batches_with_meta(data: Any, shard: Any = None) -> Any:
    """(inputs, labels, meta) from gate.data.EvalData (which seeks to `shard`'s batches where its reader can: the
    others' come as gate.data.Skipped), or (inputs, labels, None) from any object with batches()."""
    from gate.data import EvalData

    if shard is not None and isinstance(data, EvalData):
        return data.batches_with_meta(owns=shard.owns)
    if hasattr(data, "batches_with_meta"):
        return data.batches_with_meta()
    return ((inputs, labels, None) for inputs, labels in data.batches())


def evaluate(ctx: RunContext, data: Any, checks: list[Check], *, shard: Any = None,
             cache: _Cache | None = None) -> tuple[PairedCounts | None, int, int]:
    """The one pass over the data. Returns the paired counts (None unless the task is classification), the number
    of samples and of batches; the flipped examples are left in ctx.extras["flipped"] (a gate.flipped.FlipCollector).

    With a `shard` (gate.sharding.Shard), only the batches it owns are scored; indices and offsets stay global.
    With a baseline cache hit, the baseline is not run: its scores are read back (gate.baseline_cache)."""
    models = ctx.models
    task = ctx.task
    classify = task == "classification"
    layers: dict[str, list[str]] = {role: [] for role in ROLES}
    for check in checks:
        if "activations" in check.needs:
            for role, names in check.activation_layers().items():
                layers[role].extend(names)
    capture = _Capture(models, layers) if any(layers.values()) else None
    counts: PairedCounts | None = None
    width: int | None = None                    # classes, labels or targets, fixed by the first batch
    seen = 0
    index = -1
    scored = 0
    samples = 0                                 # of the scored batches
    replay = cache.replay if cache is not None else None
    recorder = cache.recorder if cache is not None else None
    live = ("candidate",) if replay is not None else ROLES
    progress = Progress(getattr(data, "num_samples", None), mode=ctx.extras.get("progress", "auto"))
    try:
        if shard is not None:
            _prime(ctx, data, checks, capture)
        for index, (inputs, labels, meta) in enumerate(_batches_with_meta(data, shard)):
            if isinstance(inputs, Skipped):
                seen += inputs.size             # another shard's batch, skipped unread by a reader that seeks
                continue
            if shard is not None and not shard.owns(index):
                seen += batch_len(inputs)       # another shard's batch: counted for offsets, never scored
                continue
            scored += 1
            inputs = move_to(inputs, ctx.device)
            if classify:
                labels = torch.as_tensor(labels).reshape(-1).to(torch.int64)
                rows = labels.numel()
            else:
                rows = len(labels)
            size = batch_len(inputs)
            if rows != size:
                raise DataError(f"{data.path}: batch {index} has {size} inputs but {rows} labels")
            if capture is not None:
                capture.active = True
            try:
                outputs = {role: forward_output(models[role], inputs, track_versions=capture is not None)
                           for role in live}
            finally:
                if capture is not None:
                    capture.active = False
            if capture is not None:
                capture.settle(index)
            if width is None:
                _read_first_outputs(ctx, outputs)
            scores = {role: scores_of(models[role], outputs[role]) if role in outputs
                      else replay.next(size, device=ctx.device) for role in ROLES}
            if recorder is not None:
                recorder.add(scores["baseline"])
            k_b, k_c = scores["baseline"].shape[1], scores["candidate"].shape[1]
            what = _WIDTH_NAMES[task]
            if k_b != k_c:
                raise ModelError(
                    f"the baseline outputs {k_b} {what} but the candidate outputs {k_c}: "
                    f"a gate compares two models of the same {what}"
                )
            if width is None:
                width = k_b
                if ctx.class_names and len(ctx.class_names) != k_b:
                    raise ConfigError(
                        f"{ctx.config.where('class_names')}: {len(ctx.class_names)} names but the models output "
                        f"{k_b} {what}"
                    )
                if not ctx.class_names:
                    ctx.class_names = (target_names(k_b) if task == "regression"
                                       else tuple(str(i) for i in range(k_b)))
                if classify:
                    counts = PairedCounts(k_b)
                    flipped = ctx.extras["flipped"] = FlipCollector(tuple(ctx.class_names))
            elif k_b != width:
                raise ModelError(
                    f"{data.path}: batch {index}: the models output {k_b} {what}, but {width} on the "
                    f"first batch; a model's {what} count cannot change from batch to batch"
                )
            if classify:
                assert counts is not None
                label_values = labels.cpu().numpy()
                if label_values.size and (label_values.min() < 0 or label_values.max() >= k_b):
                    i = int(np.flatnonzero((label_values < 0) | (label_values >= k_b))[0])
                    single = [r for r in ROLES if models[r].output in ("sigmoid", "binary_logit")]
                    hint = (f" (the {' and the '.join(single)} output{'s' if len(single) == 1 else ''} one column, "
                            f"read as a binary classifier: for a regression model, set task: regression or --task regression)"
                            if single else "")
                    raise DataError(
                        f"{data.path}: label {int(labels[i])} of sample {seen + i} is out of range for models with "
                        f"{k_b} classes (expected 0..{k_b - 1}){hint}"
                    )
                preds = {role: s.argmax(dim=1).cpu().numpy() for role, s in scores.items()}
                counts.update(label_values, preds["baseline"], preds["candidate"])
                flipped.update(offset=seen, labels=label_values, preds=preds, scores=scores, meta=meta,
                               kinds={role: models[role].output for role in ROLES})
            else:
                try:
                    labels = _task_labels(labels, task=task, width=k_b, offset=seen, meta=meta,
                                          where=f"{data.path}: batch {index}")
                except DataError as err:
                    given = getattr(ctx.config, "task_source", None)
                    if given is None:
                        raise
                    raise DataError(f"{err} (the task {task} was set by {given}; --task auto reads it from the "
                                    "models)") from err
                preds = {role: predictions(s, task) for role, s in scores.items()}
            step = Step(
                index=index,
                offset=seen,
                inputs=inputs,
                labels=labels.to(ctx.device),
                scores=scores,
                activations=capture.take() if capture is not None else {},
                meta=meta,
                preds=preds,
                task=task,
            )
            for check in checks:
                check.update(step)
            seen += size
            samples += size
            progress.update(seen)
    finally:
        progress.close()
        if capture is not None:
            capture.close()
            ctx.extras["activation_clones"] = {"cloned": capture.cloned, "overwritten": capture.overwritten}
    if width is None or seen == 0:
        if shard is not None and seen:
            raise DataError(f"{data.path}: shard {shard.label} has no batch to evaluate (the data has {index + 1} "
                            f"batches for {shard.count} shards)")
        raise DataError(f"{data.path}: no samples to evaluate")
    if shard is not None:
        return counts, (counts.total if counts is not None else samples), scored
    return counts, seen, index + 1


_WIDTH_NAMES = {"classification": "classes", "multi_label": "labels", "regression": "targets"}


def _task_labels(labels: Any, *, task: str, width: int, offset: int, meta: Any, where: str) -> torch.Tensor:
    """A multi_label / regression batch's labels as the Step holds them, checked against the models' width."""
    from gate.data import task_batch_labels

    places = getattr(meta, "where", None)
    return task_batch_labels(labels, task=task, width=width, where=where, offset=offset, places=places)


def _prime(ctx: RunContext, data: Any, checks: list[Check], capture: _Capture | None) -> None:
    """Sharded: the data's first batches, both models on them, to the checks that must see the first samples before
    their pass (`Check.prime_samples`); nothing here is counted or scored, the shard's own pass follows."""
    wanted = [c for c in checks if c.prime_samples > 0]
    if not wanted:
        return
    need = max(c.prime_samples for c in wanted)
    seen = 0
    for index, (inputs, labels, meta) in enumerate(_batches_with_meta(data)):
        if seen >= need:
            break
        inputs = move_to(inputs, ctx.device)
        size = batch_len(inputs)
        if capture is not None:
            capture.active = True
        try:
            for role in ROLES:             # the hooks record what the checks prime on
                forward_output(ctx.models[role], inputs, track_versions=capture is not None)
        finally:
            if capture is not None:
                capture.active = False
        if capture is not None:
            capture.settle(index)
        # Only the batch's size is read from the labels here (drift's primer); other tasks' labels are checked
        # in the pass itself, so a placeholder of the right length stands in for them.
        step = Step(index=index, offset=seen, inputs=inputs,
                    labels=(torch.as_tensor(labels).reshape(-1).to(torch.int64) if ctx.task == "classification"
                            else torch.zeros(size, dtype=torch.int64)).to(ctx.device),
                    scores={}, activations=capture.take() if capture is not None else {}, meta=meta, task=ctx.task)
        for check in wanted:
            if seen < check.prime_samples:
                check.prime(step)
        seen += size


def _read_first_outputs(ctx: RunContext, outputs: dict[str, Any]) -> None:
    """On the first batch: each model's output kind (declared, else detected for the run's task) and its class names
    against it (the models that ran: a cached baseline's kind comes with its scores)."""
    for role in outputs:
        model = ctx.models[role]
        out, named = found_scores(outputs[role], role=role)
        kind = model.output
        if kind in ("auto", "multi_label"):
            kind = detect_task_kind(out, task=ctx.task, role=role, named_logits=named)
        check_output_kind(out, kind, role=role)
        width = 2 if kind in ("sigmoid", "binary_logit") else (1 if out.ndim == 1 else int(out.shape[1]))
        given = getattr(ctx.classes, role, None) if ctx.classes is not None else None
        if given is not None and given.names is not None and len(given.names) != width:
            where = (ctx.config.where(given.source) if (given.source or "").startswith("model.")
                     else f"{role} {model.path}: {given.source}")
            what = "labels" if ctx.task == "multi_label" else "classes"
            raise ConfigError(
                f"{where}: the {role} names {len(given.names)} {what} ({', '.join(given.names[:5])}"
                f"{', ...' if len(given.names) > 5 else ''}) but outputs {width}"
            )
        ctx.models[role] = replace(model, output=kind)


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


def model_info(model: Any, num_classes: int, names: Any = None) -> ModelInfo:
    return ModelInfo(
        role=model.role,
        path=model.path,
        format=model.format,
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        parameters=model.parameters,
        num_classes=num_classes,
        class_names=tuple(names.names) if names is not None and names.names is not None else None,
        columns=model.columns,
        output=model.output,
        dtype=model.dtype,
        checkpoint_dtype=model.checkpoint_dtype,
        cast=model.cast,
    )


def run_notes(ctx: RunContext) -> tuple[str, ...]:
    """What the run did so that the models are compared as they ship: reordered classes, casts on load."""
    notes = []
    classes = ctx.classes
    if classes is not None:
        named = [n for n in (classes.baseline, classes.candidate) if n.names is not None and not n.generic]
        if classes.columns is not None or classes.renamed or classes.warnings or len(named) == 1:
            notes.append(classes.describe())
    for role in ROLES:
        if ctx.models[role].cast:
            notes.append(f"{role}: {ctx.models[role].cast}")
    return tuple(notes)


@dataclass
class _Run:
    """What a run holds between loading and the report: the context, the data, the checks."""

    config: GateConfig
    ctx: RunContext
    data: Any
    checks: list[Check]
    alignment: ClassAlignment
    notes: list[str] = field(default_factory=list)      # what this run did beyond the plain pass (the cache)


@dataclass
class _Cache:
    """The baseline cache for this pass: a replay (hit) or a recorder (miss), and what the report says of it."""

    note: str
    replay: Any = None
    recorder: Any = None
    entry_rows: int = 0
    folder: Any = None              # the entry's folder, key and facts, and what a rebuild puts back
    key: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    baseline: Any = None
    class_names: Any = None
    timed: str = ""


def run_gate(config: GateConfig, sources: Sources) -> Report | None:
    """Load, evaluate once, compute every check, decide. Raises GateError when the gate cannot run.

    Sharded under torch.distributed (`extras["distributed"]`): every rank scores its batches, the states are
    gathered and merged, rank 0 computes and gets the Report, the other ranks get None."""
    started = time.perf_counter()
    if not sources.extras.get("distributed"):
        with _loaded(config, sources, device=resolve_device(config.device, config.where)) as run:
            counts, num_samples, num_batches = _evaluate(run)
            return _decide(run, counts, _data_info(run, num_samples, num_batches), started=started)
    from gate.sharding import distributed_shard, gather_states, init_distributed

    shard = distributed_shard()
    device = resolve_device(config.device, config.where)
    if device.type == "cuda":
        import os

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    init_distributed(device)
    state: Any
    with contextlib.ExitStack() as stack:
        try:
            run = stack.enter_context(_loaded(config, sources, device=device))
            refuse_unshardable(run.checks, files=False)
            counts, num_samples, num_batches = _evaluate(run, shard=shard)
            state = shard_state(run, counts, _data_info(run, num_samples, num_batches), shard=shard)
        except GateError as err:
            state = err
        except Exception as err:  # noqa: BLE001 - every rank must reach the gather, or the others wait forever
            state = GateError(f"internal error: {type(err).__name__}: {err}")
        merged = gather_states(state, device=device)     # raises on every rank if any rank failed
        if shard is not None and shard.index != 0:
            return None
        _load_merged(run, merged)
        return _decide(run, run.ctx.counts, DataInfo(**merged.meta["data"]), started=started,
                       notes=(f"sharded over {shard.count if shard else 1} torch.distributed ranks (strided by "
                              "batch); their states were merged by addition",))


def run_shard(config: GateConfig, sources: Sources, shard: Any) -> Any:
    """One `--shard I/N` job: its batches scored, its state (gate.sharding.RunState) for `gate merge`."""
    with _loaded(config, sources, device=resolve_device(config.device, config.where)) as run:
        refuse_unshardable(run.checks, files=True)
        counts, num_samples, num_batches = _evaluate(run, shard=shard)
        state = shard_state(run, counts, _data_info(run, num_samples, num_batches), shard=shard)
        if shard.index == 0:        # the job that reads batch 0 measures latency after its pass, as rank 0 would
            state.measured = {c.name: c.measured_state() for c in run.checks if c.sharding == "rank0"}
        return state


def refuse_unshardable(checks: list[Check], *, files: bool) -> None:
    """Checks whose state does not merge stop a sharded run before the pass, by name (exit 2)."""
    for check in checks:
        if check.sharding in ("merge", "rank0"):
            continue
        raise ConfigError(f"checks.{check.name}: cannot run sharded: {check.sharding}; disable it "
                          f"(--disable {check.name}) or run unsharded")


@contextlib.contextmanager
def _loaded(config: GateConfig, sources: Sources, *, device: torch.device) -> Iterator[_Run]:
    """Models loaded and aligned, the task resolved, data opened, checks built and set up; teardown always."""
    from gate.data import open_data
    from gate.tasks import refuse_conflicts, refuse_unsupported_checks, resolve_task

    if not any(config.enabled_checks(task) for task in TASKS):
        raise ConfigError(f"{config.where('checks')}: every check is disabled; a gate with nothing to check cannot pass")
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    refuse_conflicts(config)
    models = {
        "candidate": _model(sources.candidate, role="candidate", config=config, device=device),
        "baseline": _model(sources.baseline, role="baseline", config=config, device=device),
    }
    task = resolve_task(config, models)
    names = config.enabled_checks(task)
    refuse_unsupported_checks(config, task, names)
    if not names:
        raise ConfigError(f"{config.where('checks')}: no enabled check supports the task {task}; a gate with nothing "
                          "to check cannot pass")
    models = {role: apply_dtype(models[role], config.model_options(role).get("dtype", "auto")) for role in ROLES}
    models, alignment = align_models(config, models, task)
    class_names = alignment.names
    data = open_data(sources.data, options=config.data, class_names=class_names, tokenizer=run_tokenizer(models),
                     task=task)
    refuse_candidate_tokenizer(config, models, data.format)
    ctx = RunContext(
        config=config, models=models, class_names=class_names or (), device=device, extras=dict(sources.extras),
        classes=alignment, task=task,
    )
    # The text encoder the data is tokenized with: behavioural cases are scored through it after the pass.
    ctx.extras.setdefault("encoder", getattr(data.source, "encoder", None))
    checks = build_checks(config, ctx)
    try:
        for check in checks:
            check.setup()
        yield _Run(config=config, ctx=ctx, data=data, checks=checks, alignment=alignment)
    finally:
        for check in checks:
            check.teardown()


def _evaluate(run: _Run, *, shard: Any = None) -> tuple[PairedCounts, int, int]:
    """evaluate() with the baseline cache when one is asked for; what the cache did goes into the notes.

    A cache hit whose pass ends in an error (its scores of another width than the candidate's, more or fewer rows
    than the data) may owe it to the entry: the entry is then distrusted and the pass rerun with the live baseline,
    whose outcome (an error of the run's own, or none) is the run's."""
    from gate.baseline_cache import CorruptEntry

    cache = _plan_cache(run, shard)
    try:
        result = _cached_pass(run, cache, shard=shard)
    except (GateError, CorruptEntry) as err:
        if cache is None or cache.replay is None:
            raise
        cache = _rebuild(run, cache, reason=f"the entry was corrupt (it did not fit the pass: {err})", shard=shard)
        result = _cached_pass(run, cache, shard=shard)
    if cache is not None:
        run.notes.append(cache.note)
    return result


def _cached_pass(run: _Run, cache: _Cache | None, *, shard: Any) -> tuple[PairedCounts, int, int]:
    from gate.baseline_cache import CorruptEntry

    try:
        result = evaluate(run.ctx, run.data, run.checks, shard=shard, cache=cache)
        if cache is not None and cache.replay is not None and cache.replay.rows != cache.entry_rows:
            raise CorruptEntry(f"the data has {cache.replay.rows} samples, the entry {cache.entry_rows}")
        if cache is not None and cache.recorder is not None:
            unkept = cache.recorder.commit(output=run.ctx.models["baseline"].output,
                                           records={c.name: c.baseline_record() for c in run.checks})
            if unkept:      # the run goes on without the entry: its verdict never depends on the cache
                cache.note = cache.note.replace(_KEPT, f"the baseline's scores could not be kept ({unkept})")
    finally:
        if cache is not None and cache.replay is not None:
            cache.replay.close()
        if cache is not None and cache.recorder is not None:
            cache.recorder.discard()
    return result


def _plan_cache(run: _Run, shard: Any) -> _Cache | None:
    """Hit, miss, corrupt (rebuilt) or bypassed, for the baseline cache folder of `--baseline-cache`."""
    from pathlib import Path

    from gate.baseline_cache import CorruptEntry, Replay, entry_facts, entry_key, open_entry

    folder = run.ctx.extras.get("baseline_cache")
    if not folder:
        return None
    live = [c.live_baseline for c in run.checks if c.live_baseline]
    if live:
        return _Cache(note=f"baseline cache bypassed: {'; '.join(live)}, so the baseline runs on every batch")
    ctx, folder = run.ctx, Path(folder)
    baseline = ctx.models["baseline"]
    encoder = ctx.extras.get("encoder")         # what encodes the text for both models (None: tensor data)
    if encoder is not None and not hasattr(encoder, "tokenizer"):
        return _Cache(note="baseline cache not used: the text is encoded by a callable (data.tokenizer) whose "
                           "behaviour the key cannot pin")
    facts = entry_facts(config=run.config, baseline=baseline, data=run.data,
                        tokenizer=getattr(encoder, "tokenizer", None), device=ctx.device,
                        class_names=ctx.class_names, shard=shard)
    if facts is None:
        return _Cache(note="baseline cache not used: the baseline or the data has no file hash to key it on")
    if ctx.task != "classification":
        facts["task"] = ctx.task            # the kept scores are the task's (probabilities, predictions)
    key = entry_key(facts)
    planned = _Cache(note="", folder=folder, key=key, facts=facts, baseline=baseline, class_names=ctx.class_names,
                     timed=(" latency times the live baseline after the pass: timings are never cached."
                            if any(c.name == "latency" for c in run.checks) else ""))
    try:
        entry = open_entry(folder, key, facts, task=ctx.task, output=run.config.model_options("baseline").get("output"),
                           expected_rows=_expected_rows(run.data, shard, batch=int(run.config.data["batch_size"])))
        if entry is not None:
            for check in run.checks:
                check.baseline_replay(entry.records.get(check.name) or {})
    except (CorruptEntry, ValueError, TypeError, KeyError, AttributeError) as err:
        return _rebuild(run, planned, reason=f"the entry was corrupt ({err})", shard=shard)
    if entry is None:
        return _rebuild(run, planned, reason="", shard=shard)
    ctx.models["baseline"] = replace(baseline, output=entry.output)
    return replace(planned, note=f"baseline cache hit ({key[:12]}): the baseline's scores were read back, its "
                                 f"forward passes skipped.{planned.timed}", replay=Replay(entry),
                   entry_rows=entry.num_samples)


def _rebuild(run: _Run, planned: _Cache, *, reason: str, shard: Any) -> _Cache:
    """A miss: the live baseline runs and its scores are recorded. With a `reason` (a corrupt entry, or one that
    did not fit the pass) the entry is removed and the checks rebuilt, so nothing replayed from it stays."""
    from gate.baseline_cache import Recorder

    ctx = run.ctx
    if reason:      # the Recorder removes the entry's files (safely: gate.baseline_cache._clear)
        for check in run.checks:
            check.teardown()
        ctx.models["baseline"], ctx.class_names = planned.baseline, planned.class_names
        ctx.extras.pop("flipped", None)
        run.checks[:] = build_checks(run.config, ctx)
        for check in run.checks:
            check.setup()
    try:
        recorder = Recorder(planned.folder, planned.key, planned.facts)
    except OSError as err:
        raise ConfigError(f"--baseline-cache {planned.folder}: cannot write there: {err.strerror or err}") from err
    said = f"{reason} and is rebuilt; " if reason else ""
    return replace(planned, note=f"baseline cache miss ({planned.key[:12]}): {said}{_KEPT}.{planned.timed}",
                   recorder=recorder, replay=None)


_KEPT = "the baseline's scores are kept for the next run"


def _expected_rows(data: Any, shard: Any, *, batch: int) -> int | None:
    """The samples the pass scores, where the data says up front how many it has (a shard: its batches')."""
    total = getattr(data, "num_samples", None)
    if not isinstance(total, int) or isinstance(total, bool):
        return None
    if shard is None:
        return total
    starts = range(0, total, batch)
    return sum(min(batch, total - start) for i, start in enumerate(starts) if shard.owns(i))


def _data_info(run: _Run, num_samples: int, num_batches: int) -> DataInfo:
    data = run.data
    return DataInfo(path=str(data.path), format=data.format, sha256=data.sha256, num_samples=num_samples,
                    num_batches=num_batches, batch_size=int(run.config.data["batch_size"]))


def compute_checks(ctx: RunContext, checks: list[Check]) -> list[CheckResult]:
    """Every check's compute(), results in the checks' order. The pass's idle OpenMP workers are put to sleep first
    (gate.cpu_threads), so that they do not spin on a core the checks need. The checks that time the models
    (`times_models`: latency, ONNX) come first, with nothing else of the gate's running; then the run's paired
    bootstrap is started on a thread of its own (gate.checks.classification.prefetch_replicates) when a check will
    draw it, and the checks that do not are computed while it is drawn, then the ones that read it."""
    from gate.checks.classification import discard_prefetch, prefetch_replicates
    from gate.cpu_threads import release_idle_workers

    def computed(check: Check) -> CheckResult:
        t0 = time.perf_counter()
        result = check.compute()
        return _with_duration(result, time.perf_counter() - t0)

    release_idle_workers()
    results = {id(check): computed(check) for check in checks if check.times_models}
    if results:
        release_idle_workers()          # the timed calls' workers, spinning again
    rest = [check for check in checks if id(check) not in results]
    wanting = {id(c): c.replicate_settings() for c in rest} if ctx.counts is not None else {}
    settings = next((s for s in wanting.values() if s is not None), None)
    if settings is not None:
        prefetch_replicates(ctx, settings)
    try:
        for check in sorted(rest, key=lambda c: wanting.get(id(c)) is not None):   # stable: the order otherwise
            results[id(check)] = computed(check)
    finally:
        discard_prefetch(ctx)           # drawn but never read (a check raised, or none asked for it)
    return [results[id(c)] for c in checks]


def _decide(run: _Run, counts: PairedCounts | None, data: DataInfo, *, started: float, notes: tuple[str, ...] = (),
            models: tuple[ModelInfo, ...] | None = None, env: dict[str, Any] | None = None) -> Report:
    """Every check computed from its (merged) state, the verdict, the report.

    Classification: the metrics block from the paired counts; other tasks: from the task check's metrics()."""
    from gate.verdict import summarise

    ctx = run.ctx
    ctx.counts = counts
    results = compute_checks(ctx, run.checks)
    metrics: dict[str, Any] | None = None
    if counts is None:
        metrics = next((check.metrics() for check in run.checks if callable(getattr(check, "metrics", None))), None)
    if counts is not None:
        metrics = metrics_report(counts, tuple(ctx.class_names))
    verdict, exit_code, summary = summarise(results)
    width = counts.num_classes if counts is not None else len(ctx.class_names)
    if models is None:
        models = tuple(model_info(ctx.models[r], width, getattr(run.alignment, r)) for r in ROLES)
    return Report(
        verdict=verdict,
        exit_code=exit_code,
        summary=summary,
        checks=tuple(results),
        models=models,
        data=data,
        class_names=tuple(ctx.class_names),
        metrics=metrics if metrics is not None else {},
        config=run.config.to_dict(),
        environment=env if env is not None else environment(ctx.device),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - started, 3),
        gate_version=gate.__version__,
        power=tuple(note for r in results for note in r.power),
        schema_version=gate.REPORT_SCHEMA_VERSION,
        notes=(run_notes(ctx) if ctx.models else ()) + tuple(run.notes) + notes,
        examples=ctx.extras["flipped"].result() if "flipped" in ctx.extras else None,
        task=ctx.task,
    )


# ------------------------------------------------------------------------------------ shard states


def shard_state(run: _Run, counts: PairedCounts, data: DataInfo, *, shard: Any) -> Any:
    """This shard's RunState: the paired counts, every check's state(), the facts the merged report shows."""
    from dataclasses import asdict

    from gate.sharding import STATE_FORMAT, STATE_VERSION, RunState, digest

    # Other tasks have no paired counts: empty ones keep the state file's layout (the merge sums nothing).
    codes, n = counts.arrays() if counts is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    arrays: dict[str, np.ndarray] = {"counts.codes": codes, "counts.n": n}
    width = counts.num_classes if counts is not None else len(run.ctx.class_names)
    texts: dict[str, list[str | None]] = {}
    ctx = run.ctx
    parts = [(f"{check.name}.", check.state()) for check in run.checks if check.sharding == "merge"]
    if "flipped" in ctx.extras:                 # classification: the flipped examples
        parts.append((_EXAMPLES, ctx.extras["flipped"].state()))
    for prefix, values in parts:
        for key, value in values.items():
            if isinstance(value, list):         # text rows (a flipped sample's text): kept in the header
                texts[f"{prefix}{key}"] = [None if t is None else str(t) for t in value]
                continue
            value = np.asarray(value)
            arrays[f"{prefix}{key}"] = value.astype(np.float64 if value.dtype.kind == "f" else np.int64)
    meta = {
        "format": STATE_FORMAT, "version": STATE_VERSION, "gate_version": gate.__version__,
        "config_digest": digest(run.config.to_dict()),
        "data_digest": data.sha256 or digest({"unhashed": data.path, "format": data.format}),
        "shard": [shard.index, shard.count], "num_classes": width, "class_names": list(ctx.class_names),
        "num_samples": data.num_samples, "num_batches": data.num_batches, "task": ctx.task,
        "models": [asdict(model_info(ctx.models[r], width, getattr(run.alignment, r))) for r in ROLES],
        "data": asdict(data), "config": run.config.to_dict(), "source": run.config.source,
        "classes": asdict(run.alignment), "notes": list(run_notes(ctx)) + run.notes,
        "checks": [c.name for c in run.checks if c.sharding in ("merge", "rank0")],
        "environment": environment(ctx.device),
    }
    return RunState(meta=meta, arrays=arrays, texts=texts)


_EXAMPLES = "examples."       # the flipped examples' state (gate.flipped.FlipCollector), beside the checks'


def _load_merged(run: _Run, merged: Any) -> None:
    """The merged state into the run's checks and context (rank 0 of a torchrun, or `gate merge`)."""
    from gate.errors import DataError

    arrays = merged.values()
    run.ctx.class_names = tuple(str(n) for n in merged.meta["class_names"])

    def part(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    try:
        run.ctx.counts = (PairedCounts.from_arrays(int(merged.meta["num_classes"]), arrays["counts.codes"],
                                                   arrays["counts.n"])
                          if run.ctx.task == "classification" else None)
        for check in run.checks:
            if check.sharding != "merge":
                continue
            check.load_state(part(f"{check.name}."))
        if run.ctx.task == "classification":
            flipped = run.ctx.extras["flipped"] = FlipCollector(run.ctx.class_names)
            flipped.load_state(part(_EXAMPLES))
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
        raise DataError(f"the merged state does not fit this gate's checks: {err}") from err


def merge_report(paths: list[str], *, policy: GateConfig | None = None) -> Report:
    """`gate merge`: the shards' state files merged, every check computed, decided; no model is loaded.

    `policy` (`gate merge --config gate.yaml`, from a trusted source such as the base branch) is what every state's
    config must agree with on each setting that decides (policy_differences); without it the states' own config
    decides, checked as gate.yaml is and against its digest, which only catches an edit, not a forgery."""
    from gate.errors import DataError
    from gate.sharding import merge_states, read_state

    started = time.perf_counter()
    names = [str(p) for p in paths]
    states = [read_state(p) for p in paths]
    configs = [_config_from_state(state.meta, where=name) for state, name in zip(states, names)]
    if policy is not None:
        for config, name in zip(configs, names):
            differs = policy_differences(policy, config)
            if differs:
                raise DataError(f"{name}: its config differs from {policy.source or 'the --config policy'} at "
                                f"{differs}: the shard jobs must run with the policy the merge is given")
    merged = merge_states(states, names=names)
    meta = merged.meta
    config = next(c for c, state in zip(configs, states) if state.meta["shard"][0] == 0)
    try:
        alignment = _alignment_from_state(meta["classes"])
        models = tuple(_model_info_from_state(m) for m in meta["models"])
        data = DataInfo(**meta["data"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{names[0]}: its run facts cannot be read: {err}") from err
    task = meta["task"]
    if config.task not in ("auto", task):
        raise DataError(f"{names[0]}: its task is {task}, its config's {config.task}")
    if [name for name in config.enabled_checks(task)] != list(meta["checks"]):
        raise DataError(f"{names[0]}: its checks ({', '.join(meta['checks'])}) are not its config's")
    ctx = RunContext(config=config, models={}, class_names=tuple(meta["class_names"]), device=torch.device("cpu"),
                     classes=alignment, task=task)
    run = _Run(config=config, ctx=ctx, data=None, checks=build_checks(config, ctx), alignment=alignment)
    _load_merged(run, merged)
    _load_measured(run, merged, states, names)
    where = (f"its policy checked against {policy.source}" if policy is not None
             else "the policy read from the state files (no --config)")
    return _decide(run, run.ctx.counts, data, started=started, models=models, env=dict(meta["environment"]),
                   notes=tuple(str(n) for n in meta["notes"]) + (
                       f"merged from {len(paths)} shard state files (strided by batch) by gate merge, {where}",))


#: The settings that decide a verdict: every check's section (thresholds, on/off), the decision rule, the task,
#: the classes and how they are matched, the seed of the resampling, what the data is (every `data` option but
#: the batch size: which column is the label, the inputs, the tokenizer, max_length, the format, a data factory,
#: how much is read) and how a model's outputs are read and its classes named (model.output, dtype, strict, and
#: per role model.<role>.output, dtype, class_names). The rest of a config (device, threads, the model factories
#: and their kwargs, the batch size) says how a job measured.
POLICY_KEYS = ("task", "seed", "class_names", "class_map", "decision", "checks", "explicit_checks", "data",
               "model.output", "model.dtype", "model.strict",
               *(f"model.{role}.{key}" for role in ROLES for key in ("output", "dtype", "class_names")))
#: Under a POLICY_KEYS section, how a job measured.
MEASUREMENT_KEYS = frozenset({"data.batch_size"})


def policy_differences(policy: GateConfig, config: GateConfig) -> str | None:
    """The first decisive setting (POLICY_KEYS) on which `config` differs from `policy`, as 'key.path (a vs b)'."""
    theirs, ours = config.to_dict(), policy.to_dict()
    for key in POLICY_KEYS:
        found = _first_difference(_at(ours, key), _at(theirs, key), key)
        if found:
            return found
    return None


def _at(tree: dict[str, Any], path: str) -> Any:
    """The value at a dotted key path of a config's dict, None where a section is absent."""
    value: Any = tree
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _first_difference(ours: Any, theirs: Any, path: str) -> str | None:
    if path in MEASUREMENT_KEYS:
        return None
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            found = _first_difference(ours.get(key), theirs.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if _as_json(ours) == _as_json(theirs):
        return None
    return f"{path} ({_shown(theirs)} there, {_shown(ours)} in the policy)"


def _as_json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _shown(value: Any) -> str:
    text = _as_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_measured(run: _Run, merged: Any, states: list[Any], names: list[str]) -> None:
    """`gate merge`: each "rank0" check (latency) takes the timings the shard 1/N job measured after its pass."""
    from gate.errors import DataError

    first = next(name for state, name in zip(states, names) if int(state.meta["shard"][0]) == 0)
    for check in run.checks:
        if check.sharding != "rank0":
            continue
        if check.name not in merged.measured:
            raise DataError(f"checks.{check.name} is enabled but none of the state files ({', '.join(names)}) "
                            f"carries its timings, which the shard 1/{len(states)} job ({first}) measures after its "
                            "pass: the shards are not of one run")
        try:
            check.load_measured(merged.measured[check.name])
        except (KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
            raise DataError(f"{first}: its {check.name} timings cannot be read: {err}") from err


def _config_from_state(meta: dict[str, Any], *, where: str) -> GateConfig:
    """The header's config, validated exactly as a gate.yaml is (build_config), with the two facts gate.yaml cannot
    hold (the roles trusted on the command line, the checks enabled by name); its digest must be config_digest."""
    from gate.config import CHECK_NAMES, build_config
    from gate.sharding import digest

    raw = dict(meta["config"])
    trusted, explicit = raw.pop("trusted_roles", None), raw.pop("explicit_checks", None)
    if not isinstance(trusted, list) or not all(isinstance(r, str) and r in ROLES for r in trusted):
        raise DataError(f"{where}: gate state field config.trusted_roles: expected a list of "
                        f"{' and '.join(ROLES)}, found {trusted!r:.60}")
    if not isinstance(explicit, list) or not all(isinstance(c, str) and c in CHECK_NAMES for c in explicit):
        raise DataError(f"{where}: gate state field config.explicit_checks: expected a list of check names, "
                        f"found {explicit!r:.60}")
    try:
        built = build_config({k: v for k, v in raw.items() if v is not None}, source=f"{where}: config")
    except ConfigError as err:
        raise DataError(str(err)) from err
    config = replace(built, trusted=frozenset(trusted), explicit_checks=frozenset(explicit), source=meta["source"])
    if digest(config.to_dict()) != meta["config_digest"]:
        raise DataError(f"{where}: gate state field config: not the complete config its config_digest names (a "
                        "setting is missing or was edited)")
    return config


def _alignment_from_state(raw: dict[str, Any]) -> ClassAlignment:
    from gate.classes import RoleNames

    def tup(value: Any) -> Any:
        return tuple(value) if value is not None else None

    def role(value: dict[str, Any]) -> RoleNames:
        return RoleNames(names=tup(value["names"]), source=value["source"], generic=bool(value["generic"]))

    return ClassAlignment(
        names=tup(raw["names"]), columns=tup(raw["columns"]), baseline=role(raw["baseline"]),
        candidate=role(raw["candidate"]), renamed=tuple(tuple(p) for p in raw["renamed"]),
        by_name=bool(raw["by_name"]), warnings=tuple(raw["warnings"]),
    )


def _model_info_from_state(raw: dict[str, Any]) -> ModelInfo:
    fields = dict(raw)
    for key in ("class_names", "columns"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    return ModelInfo(**fields)


def _model(source: Any, *, role: str, config: GateConfig, device: torch.device) -> Any:
    """A checkpoint path through its loader; the caller's in-memory nn.Module (the Python API) wrapped as it is."""
    import os

    if isinstance(source, (str, os.PathLike)):
        from gate.models import load_model

        return load_model(source, role=role, options=config.model_options(role), device=device)
    from gate.models.memory import in_memory_model

    return in_memory_model(source, role=role, device=device)


def _with_duration(result: CheckResult, seconds: float) -> CheckResult:
    return replace(result, duration_s=round(result.duration_s or seconds, 4))
