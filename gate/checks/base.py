"""The check interface. A check accumulates sufficient statistics per batch and computes one CheckResult.

Lifecycle, driven by gate.runner (one pass over the data, both models on the same batch):

    check = CheckClass(options, ctx)     # options: this check's section of gate.yaml, defaults applied
    check.setup()                        # once, before the pass (export a model, pick layers, ...)
    for step in batches: check.update(step)
    result = check.compute()             # pure function of the accumulated state
    check.teardown()                     # always called, also after an error

Sharded (gate.sharding: torchrun ranks, or `--shard I/N` jobs merged by `gate merge`), every shard runs update()
on its own batches, then `state()`; the shards' states are merged key by key (summed, except keys starting with
`rows.`: per-sample rows, concatenated in global sample order by the int64 `rows.index` the check includes) and
`load_state(merged)` sets the state compute() reads. `sharding` says whether a check can run so; a check that does not declare it is refused.
A "rank0" check (latency) measures after the pass in one process only; in `--shard` files, the `--shard 1/N` job's
`measured_state()` travels in its state file and `gate merge` gives it back with `load_measured()`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gate.classes import ClassAlignment
    from gate.checks.classification import DrawnAhead, Replicates
    from gate.config import GateConfig
    from gate.metrics import PairedCounts
    from gate.models import LoadedModel
    from gate.report.model import CheckResult

ROLES = ("baseline", "candidate")


@dataclass
class Step:
    """One batch, seen by every check. Tensors live on the run's device; nothing here may be kept past update()."""

    index: int                                  # batch number, from 0
    offset: int                                 # index of the batch's first sample in the data
    inputs: Any                                 # what the models take: a Tensor, a tuple of Tensors, or a dict of Tensors
    labels: torch.Tensor                        # classification: (B,) int64 class indices; multi_label: (B, L)
                                                # int64 0/1; regression: (B, T) float32 targets
    scores: dict[str, torch.Tensor]             # role -> classification: (B, K) float class scores (logits or
                                                # probabilities); multi_label: (B, L) float32 probabilities;
                                                # regression: (B, T) float32 predictions; the candidate's columns
                                                # in the baseline's class / label order
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> module name -> raw output
    meta: Any = None                            # gate.data.BatchMeta: each sample's text and fields (slices), or None
    preds: dict[str, Any] = field(default_factory=dict)   # role -> numpy predictions: (B,) int64 argmax
                                                # (classification), (B, L) bool probability >= 0.5 (multi_label),
                                                # (B, T) float32 = scores (regression)
    task: str = "classification"                # the run's task (gate.tasks.TASKS)


@dataclass
class RunContext:
    """What every check may read: the loaded models, the effective config, the class names, the device."""

    config: GateConfig
    models: dict[str, LoadedModel]              # role -> model
    class_names: tuple[str, ...]                # classes, labels (multi_label) or target names (regression)
    device: torch.device
    counts: PairedCounts | None = None          # the run's joint (label, baseline pred, candidate pred) counts;
                                                # filled by the runner before compute(); None unless classification
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. data info, onnx path from the CLI
    classes: ClassAlignment | None = None       # how the candidate's classes were matched to the baseline's
    replicates: Replicates | DrawnAhead | None = None   # the run's paired bootstrap, drawn once on first use
                                                # (gate.checks.classification.run_replicates), or being drawn
    task: str = "classification"                # the run's task, resolved before the pass (gate.tasks)


class Check(abc.ABC):
    name: ClassVar[str]                         # key under `checks:` in gate.yaml and in the report
    needs: ClassVar[frozenset[str]] = frozenset({"scores"})   # "scores", "activations", "inputs"
    #: The tasks (gate.tasks.TASKS) the check can judge; enabling it explicitly for another task is refused.
    #: A task check of multi_label / regression also gives the report's `metrics` block: a method
    #: `metrics(self) -> dict` ({"baseline": ..., "candidate": ..., "comparison": ...}) the runner calls after compute().
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    #: "merge": state() adds up across shards; "rank0": it measures after the pass (timings) on one process only:
    #: rank 0 of a torchrun (after the merge), or the `--shard 1/N` job, whose state file carries measured_state()
    #: for `gate merge` (load_measured); any other text: why it cannot be sharded yet (the run stops with exit 2).
    sharding: ClassVar[str] = "its state is not declared mergeable yet"
    #: compute() times the models (latency; ONNX Runtime against PyTorch): the runner computes such checks first,
    #: before it starts the bootstrap's thread, so that no work of the gate's own shares the cores with the timings.
    times_models: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.options = options
        self.ctx = ctx

    #: Why the check needs the live baseline during the pass (its activations): the baseline cache is bypassed
    #: then. None: the baseline's cached scores (and baseline_record()) serve it.
    live_baseline: ClassVar[str | None] = None

    def baseline_record(self) -> dict[str, Any]:
        """What this check measured on the baseline itself beyond its scores (JSON-able), for the baseline cache."""
        return {}

    def baseline_replay(self, recorded: dict[str, Any]) -> None:
        """Take baseline_record() from the cache: the baseline is not run, so do not call it (raise ValueError
        if `recorded` is not what baseline_record() gives)."""

    #: Sharded only: how many of the data's first samples the check must see before its pass (the drift check's
    #: PSI bin edges come from the baseline's first samples, which most shards do not own). The runner then
    #: feeds prime(step) those samples' batches first, on every shard; 0: no priming.
    prime_samples: ClassVar[int] = 0

    def prime(self, step: Step) -> None:
        """One of the data's first batches, seen before a sharded pass (see `prime_samples`); not its state."""

    def state(self) -> dict[str, np.ndarray]:
        """The sufficient statistics as int64 / float64 arrays whose sum over shards is the whole run's state;
        per-sample arrays under `rows.` keys (first axis = samples) with `rows.index` (int64, step.offset + row)."""
        return {}

    def load_state(self, merged: dict[str, np.ndarray]) -> None:
        """Take the shards' summed state() (raise ValueError if it cannot be one)."""

    def measured_state(self) -> dict[str, Any]:
        """sharding "rank0", in the `--shard 1/N` job after its pass: measure now and return what compute() decides
        on, as int64 / float64 arrays and JSON-able values (the state file keeps them; no other shard has any)."""
        raise NotImplementedError(f"{self.name} declares sharding 'rank0' but has no measured_state()")

    def load_measured(self, values: dict[str, Any]) -> None:
        """measured_state() read back from a state file by `gate merge` (raise ValueError if it cannot be one);
        compute() then decides on it without the models."""
        raise NotImplementedError(f"{self.name} declares sharding 'rank0' but has no load_measured()")

    def replicate_settings(self) -> Any:
        """The DecisionSettings with which compute() will draw the run's paired bootstrap
        (gate.checks.classification.run_replicates), or None when it draws none: the runner starts the draw
        before computing and computes the checks that return None first."""
        return None

    def setup(self) -> None:
        """Once before the pass. Raise GateError for bad setup; return normally otherwise."""

    def activation_layers(self) -> dict[str, list[str]]:
        """Module names to hook per role, when `activations` is in `needs`."""
        return {}

    def update(self, step: Step) -> None:
        """Accumulate sufficient statistics from one batch."""

    @abc.abstractmethod
    def compute(self) -> CheckResult:
        """Turn the accumulated state into a result (statuses decided through gate.verdict)."""

    def teardown(self) -> None:
        """Release hooks, sessions, temp files. Always called."""
