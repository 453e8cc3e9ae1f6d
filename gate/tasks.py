"""The task a run compares (classification, multi_label, regression), resolved before the pass in one place.

Resolution: the declared task (`--task`, which wins over gate.yaml's `task`; config.task_source says which), else
the models' declared `output` (multi_label -> multi_label, regression -> regression, a classifier's kind ->
classification), else a Hugging Face config's problem_type
(multi_label_classification, regression; num_labels == 1 with problem_type unset -> regression), else
classification. What the two roles or the declarations say must agree (ConfigError, exit 2, otherwise).

No torch here: the config module reads DEFAULT_CHECKS.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gate.errors import ConfigError

TASKS = ("classification", "multi_label", "regression")
TASK_CHOICES = ("auto", *TASKS)

#: Output kinds per task (model.output in gate.yaml). `multi_label` is detected on the first batch as
#: multi_label_logits (a value outside [0, 1]) or asked for; `regression` is raw values, (B,) or (B, T).
KINDS: dict[str, tuple[str, ...]] = {
    "classification": ("logits", "probabilities", "sigmoid", "binary_logit"),
    "multi_label": ("multi_label", "multi_label_logits", "multi_label_probabilities"),
    "regression": ("regression",),
}
KIND_TASK = {kind: task for task, kinds in KINDS.items() for kind in kinds}

#: The checks a task runs when gate.yaml does not enable them explicitly, each subject to its fragment's
#: `default.enabled`. A check enabled explicitly runs when it supports the task (its `tasks`), and is refused
#: (exit 2) when it does not; a name here that is not registered (yet) is simply skipped.
DEFAULT_CHECKS: dict[str, tuple[str, ...]] = {
    "classification": ("sanity", "accuracy", "per_class", "flips", "scores", "slices", "cases", "drift", "onnx",
                       "latency"),
    "multi_label": ("sanity", "multilabel"),
    "regression": ("sanity", "regression"),
}

_PROBLEM_TYPES = {"multi_label_classification": "multi_label", "regression": "regression",
                  "single_label_classification": "classification"}


def kind_task(kind: str) -> str | None:
    """The task an output kind belongs to; None for auto."""
    return KIND_TASK.get(kind)


def declared_outputs(config: Any) -> dict[str, tuple[str, str]]:
    """role -> (output kind, the gate.yaml key that declares it), for the roles whose output is not auto."""
    out = {}
    for role in ("baseline", "candidate"):
        kind = config.model_options(role).get("output", "auto")
        if kind != "auto":
            key = f"model.{role}.output" if "output" in (config.model.get(role) or {}) else "model.output"
            out[role] = (kind, key)
    return out


def hf_task(model: Any) -> tuple[str, str] | None:
    """What a Hugging Face model's config.json says its head is for: (task, why), or None when it says nothing."""
    if getattr(model, "format", None) != "huggingface":
        return None
    config = getattr(model.module, "config", None)
    problem = getattr(config, "problem_type", None)
    if problem in _PROBLEM_TYPES:
        return _PROBLEM_TYPES[problem], f"config.json problem_type {problem}"
    if problem is None and getattr(config, "num_labels", 2) == 1:
        return "regression", "config.json num_labels 1 (problem_type unset: regression in transformers)"
    return None


def refuse_conflicts(config: Any) -> None:
    """Before anything is loaded: the declared task against the declared outputs, and the roles against each other."""
    declared = declared_outputs(config)
    task = getattr(config, "task", "auto")
    for role, (kind, key) in declared.items():
        if task != "auto" and kind_task(kind) != task:
            given = f" (by {config.task_source})" if getattr(config, "task_source", None) else ""
            raise ConfigError(
                f"{config.where(key)}: {kind} is a {kind_task(kind)} output, but task is {task}{given} "
                f"(for {task} use output {' or '.join(KINDS[task])}, or auto)")
    tasks = {role: kind_task(kind) for role, (kind, _) in declared.items()}
    if len(set(tasks.values())) > 1:
        raise ConfigError(
            f"{config.where('model')}: the baseline's output {declared['baseline'][0]} ({tasks['baseline']}) and the "
            f"candidate's {declared['candidate'][0]} ({tasks['candidate']}) are different tasks; a gate compares "
            "two models of the same task")


def resolve_task(config: Any, models: Mapping[str, Any]) -> str:
    """The run's task: declared, else from the declared outputs, else from Hugging Face configs, else classification.

    Every role that says something (its declared output, else its config.json) must agree with the task and with
    the other role; ConfigError naming both otherwise."""
    refuse_conflicts(config)
    declared = declared_outputs(config)
    said: dict[str, tuple[str, str]] = {}
    for role in ("baseline", "candidate"):
        if role in declared:
            kind, key = declared[role]
            said[role] = (str(kind_task(kind)), f"{config.where(key)} {kind}")
        elif role in models:
            found = hf_task(models[role])
            if found is not None:
                said[role] = (found[0], f"{role} {models[role].path}: {found[1]}")
    task = getattr(config, "task", "auto")
    if task != "auto":
        for role, (what, why) in said.items():
            if what != task:
                raise ConfigError(f"{_task_where(config)}: {task}, but {why} means {what}; set "
                                  f"model.{role}.output to say what the model returns")
        return task
    found_tasks = {what for what, _ in said.values()}
    if len(found_tasks) > 1:
        b, c = said["baseline"], said["candidate"]
        raise ConfigError(f"the baseline is a {b[0]} model ({b[1]}) and the candidate a {c[0]} model ({c[1]}); "
                          "a gate compares two models of the same task (set task or model.<role>.output)")
    return found_tasks.pop() if found_tasks else "classification"


def _task_where(config: Any) -> str:
    """'--task' when the option set the task, else 'gate.yaml: task'."""
    source = getattr(config, "task_source", None)
    return source if source else config.where("task")


def target_names(count: int) -> tuple[str, ...]:
    """Default names of regression targets: "target" for one, "target[0]".."target[T-1]" for several."""
    return ("target",) if count == 1 else tuple(f"target[{i}]" for i in range(count))


def check_tasks(name: str) -> frozenset[str]:
    """The tasks a registered check supports (its `tasks` ClassVar); imports the check's module."""
    from gate.checks import check_class

    return frozenset(getattr(check_class(name), "tasks", frozenset({"classification"})))


def refuse_unsupported_checks(config: Any, task: str, names: list[str]) -> None:
    """A check enabled explicitly (gate.yaml, --enable) that cannot judge `task`: ConfigError naming both."""
    for name in names:
        if name not in config.explicit_checks:
            continue
        tasks = check_tasks(name)
        if task not in tasks:
            raise ConfigError(
                f"{config.where(f'checks.{name}')}: enabled (in the config or by --enable), but the {name} check "
                f"does not support the task {task} (it supports {', '.join(sorted(tasks))}); leave it off for this "
                "model")
