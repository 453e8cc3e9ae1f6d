"""The Python API: `gate.check(candidate, baseline, data) -> Report`, the same gate `gate check` runs.

    import gate

    report = gate.check(model, "prod.safetensors", val_loader, config="gate.yaml", enable=["drift"])
    print(report)                                   # the console report
    report.write(html="report.html", json="report.json")
    assert report.passed, report.summary

candidate and baseline are checkpoint paths or in-memory nn.Modules; data is a path (or 'pkg.mod:callable'), a
torch Dataset, a DataLoader or an iterable of (inputs, labels) batches. Setup problems raise GateError subclasses
with the message the CLI prints after `error: `; a failing verdict is a Report, not an exception.
The CLI is a thin layer over `configure` and `run` below, so both give the same report for the same inputs.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Union

from gate.config import (CHECK_NAMES, TRUST_CHOICES, GateConfig, build_config, deep_merge, load_config, short_repr,
                         trusted_roles)
from gate.errors import ConfigError
from gate.report.model import CheckResult, Finding
from gate.report.model import Report as ReportModel
from gate.tasks import TASK_CHOICES

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader, Dataset

    ModelSource = Union[str, os.PathLike[str], torch.nn.Module]
    DataSource = Union[str, os.PathLike[str], Dataset[Any], DataLoader[Any], Iterable[Any]]

__all__ = ["Failure", "OPTIONS", "Report", "check", "configure", "merge", "render", "run"]

#: The keyword options of gate.check, named as the CLI's options are (--model-factory -> model_factory).
OPTIONS: tuple[str, ...] = (
    "model_factory", "trust_checkpoint", "device", "batch_size", "limit", "seed", "threads", "decision",
    "enable", "disable", "onnx", "task",
)
_CHOICES = {"device": ("cpu", "cuda", "auto"), "decision": ("point", "non-inferiority"), "task": TASK_CHOICES}
REPORT_KINDS = ("json", "markdown", "junit", "html")


@dataclass(frozen=True)
class Failure:
    """One thing that failed: the check, the metric (None when the check failed as a whole) and why."""

    check: str
    metric: str | None
    reason: str
    finding: Finding | None = None

    @property
    def label(self) -> str:
        """The metric with where it happened when its name does not say it ("rel_l2 @ fc.1"), as reports show it."""
        if self.finding is None:
            return self.metric or self.check
        from gate.report.console import finding_label

        return finding_label(self.finding)


@dataclass(frozen=True)
class Report:
    """The outcome of one gate run: the verdict, every check's result, and the reports it renders to."""

    model: ReportModel          # the report model every renderer reads (gate.report.model.Report)

    @property
    def verdict(self) -> Literal["pass", "warn", "fail"]:
        return self.model.verdict  # type: ignore[return-value]

    @property
    def exit_code(self) -> int:
        """What `gate check` exits with: 0 pass (warnings included), 1 the gate failed."""
        return self.model.exit_code

    @property
    def passed(self) -> bool:
        return self.model.exit_code == 0

    @property
    def summary(self) -> str:
        return self.model.summary

    @property
    def checks(self) -> Mapping[str, CheckResult]:
        """Each check's result by name, in the order they ran."""
        return MappingProxyType({c.name: c for c in self.model.checks})

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Every failing finding (and every failing check without one), in the order of the checks."""
        out: list[Failure] = []
        for c in self.model.checks:
            if c.status != "fail":
                continue
            failed = [f for f in c.findings if f.status == "fail"]
            out += [Failure(c.name, f.metric, f.reason, f) for f in failed] or [Failure(c.name, None, c.summary)]
        return tuple(out)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.model.metrics

    def to_dict(self) -> dict[str, Any]:
        from gate.report.json_report import report_dict

        return report_dict(self.model)

    def to_json(self) -> str:
        return render(self.model, ("json",))["json"]

    def to_markdown(self) -> str:
        return render(self.model, ("markdown",))["markdown"]

    def to_html(self) -> str:
        return render(self.model, ("html",))["html"]

    def to_junit(self) -> str:
        return render(self.model, ("junit",))["junit"]

    def to_console(self, *, verbose: bool = False) -> str:
        from gate.report.console import render_console

        return render_console(self.model, verbose=verbose)

    def write(self, *, json: str | os.PathLike[str] | None = None, markdown: str | os.PathLike[str] | None = None,
              junit: str | os.PathLike[str] | None = None, html: str | os.PathLike[str] | None = None) -> None:
        """Write the named reports, all rendered first and then renamed into place together (or none)."""
        from gate.report.write import write_reports

        paths = {k: os.fspath(v) for k, v in (("json", json), ("markdown", markdown), ("junit", junit),
                                                ("html", html)) if v is not None}
        _refuse_empty(paths)
        texts = render(self.model, tuple(paths))
        write_reports({paths[k]: texts[k] for k in paths})

    def __str__(self) -> str:
        return self.to_console()

    def _repr_html_(self) -> str:
        """Jupyter shows the HTML report inline, in an iframe, so its styles stay out of the notebook's."""
        import html

        return (f'<iframe srcdoc="{html.escape(self.to_html(), quote=True)}" title="gate report" '
                'style="width:100%;height:720px;border:1px solid #d0d7de"></iframe>')

    def __repr__(self) -> str:
        return f"<gate.Report {self.model.summary}>"


def render(report: ReportModel, kinds: Iterable[str]) -> dict[str, str]:
    """{kind: text} for json / markdown / junit / html; the JSON is validated against its schema first."""
    out: dict[str, str] = {}
    for kind in kinds:
        if kind == "json":
            from gate.report.json_report import render_json, report_dict, validate_report

            validate_report(report_dict(report))
            out[kind] = render_json(report)
        elif kind == "markdown":
            from gate.report.markdown import render_markdown

            out[kind] = render_markdown(report)
        elif kind == "junit":
            from gate.report.junit import render_junit

            out[kind] = render_junit(report)
        elif kind == "html":
            from gate.report.html import render_html

            out[kind] = render_html(report)
        else:
            raise ValueError(f"unknown report kind {kind!r}; expected one of {', '.join(REPORT_KINDS)}")
    return out


def _names(value: Any, *, option: str) -> list[str]:
    """A name or a list of names (enable="drift" or enable=["drift", "latency"])."""
    if value is None or value is False:
        return []
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{option}: expected a name or a list of names, found {short_repr(value, kind=True)}")
    return items


def _choose(value: str, choices: Iterable[str], *, option: str) -> str:
    choices = tuple(choices)
    if not isinstance(value, str):
        raise ConfigError(f"{option}: expected one of {', '.join(choices)}, found {short_repr(value, kind=True)}")
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{option}: expected one of {', '.join(choices)}, found {short_repr(value)}{hint}")
    return value


def _refuse_empty(values: Mapping[str, Any]) -> None:
    """An empty path or name is a mistake (an unset variable), never "not given": ConfigError naming the option."""
    for name, value in values.items():
        if isinstance(value, str) and value == "":
            what = "value" if name in ("model_factory", "device", "decision", "task") else "path"
            raise ConfigError(f"{name}: an empty {what}")


def config_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """CLI-style options as a config dict laid over gate.yaml (the options win). Unset options are None/empty."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], OPTIONS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else f" (options: {', '.join(OPTIONS)})"
        raise ConfigError(f"{unknown[0]}: unknown option{hint}")
    opts = {k: options.get(k) for k in OPTIONS}
    _refuse_empty(opts)
    if opts["onnx"] is not None and not isinstance(opts["onnx"], (str, os.PathLike)):
        raise ConfigError(f"onnx: expected a path to the .onnx file, found {short_repr(opts['onnx'], kind=True)}")
    out: dict[str, Any] = {}
    if opts["model_factory"]:
        out.setdefault("model", {})["factory"] = opts["model_factory"]
    if opts["device"]:
        out["device"] = _choose(opts["device"], _CHOICES["device"], option="device")
    for key in ("seed", "threads"):
        if opts[key] is not None:
            out[key] = opts[key]
    for key in ("batch_size", "limit"):
        if opts[key] is not None:
            out.setdefault("data", {})[key] = opts[key]
    if opts["task"]:
        out["task"] = _choose(opts["task"], _CHOICES["task"], option="task")
    if opts["decision"]:
        out.setdefault("decision", {})["mode"] = _choose(opts["decision"], _CHOICES["decision"], option="decision")
    checks: dict[str, Any] = {}
    for name in _names(opts["enable"], option="enable"):
        checks.setdefault(_choose(name, CHECK_NAMES, option="enable"), {})["enabled"] = True
    if opts["onnx"]:
        checks.setdefault("onnx", {})["enabled"] = True
    for name in _names(opts["disable"], option="disable"):
        checks.setdefault(_choose(name, CHECK_NAMES, option="disable"), {})["enabled"] = False
    if checks:
        out["checks"] = checks
    return out


def configure(config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **options: Any) -> GateConfig:
    """The effective GateConfig: gate.yaml (a path), or the same settings as a dict, with the options on top.

    Trust (`trust_checkpoint="baseline"`, `"candidate"`, `"all"` or a list of them) comes only from the options,
    as it comes only from the command line: a config file or dict cannot give it. `task` (auto, classification,
    multi_label, regression) wins over the config's `task:`, as `--task` does; errors about it then name --task.
    """
    _refuse_empty({"config": config})
    overrides = config_overrides(options)
    trusted = trusted_roles([_choose(role, TRUST_CHOICES, option="trust_checkpoint")
                             for role in _names(options.get("trust_checkpoint"), option="trust_checkpoint")])
    if config is None or isinstance(config, (str, os.PathLike)):
        built = load_config(os.fspath(config) if config is not None else None, overrides=overrides, trusted=trusted)
    elif not isinstance(config, Mapping):
        raise ConfigError(f"config: expected a path to gate.yaml, a dict of settings or None, found "
                          f"{type(config).__name__}")
    else:
        built = build_config(deep_merge(dict(config), overrides), source="config", trusted=trusted)
    return replace(built, task_source="--task") if "task" in overrides else built


def run(config: GateConfig, candidate: ModelSource, baseline: ModelSource, data: DataSource | None, *,
        onnx: str | os.PathLike[str] | None = None, progress: str = "off", distributed: bool = False,
        shard: Any = None, baseline_cache: str | os.PathLike[str] | None = None) -> Any:
    """One gate run on a built config; the report model. `data` None means data.factory from the config.

    `progress` is gate.progress's mode: "off" from Python (a library prints nothing unasked), "auto" from the CLI.
    `distributed`: this process is a torchrun rank (gate.sharding); ranks other than 0 get None.
    `shard` (gate.sharding.Shard): score only that shard and return its RunState (for `merge`), not a report.
    `baseline_cache`: a folder keeping the baseline's outputs between runs (gate.baseline_cache)."""
    from gate.runner import Sources, run_gate, run_shard

    if data is None:
        data = config.data.get("factory")
    if data is None:
        raise ConfigError("no evaluation data given: pass data (a path, package.module:callable, a Dataset, a "
                          "DataLoader or an iterable of (inputs, labels) batches) or set data.factory in the config")
    _refuse_empty({"candidate": candidate, "baseline": baseline, "data": data, "onnx": onnx,
                   "baseline_cache": baseline_cache})
    for role, source in (("candidate", candidate), ("baseline", baseline)):
        _check_model_source(source, role=role)
    extras: dict[str, Any] = {"onnx_path": os.fspath(onnx)} if onnx else {}
    extras["progress"] = progress
    extras["distributed"] = distributed
    if baseline_cache is not None:
        extras["baseline_cache"] = os.fspath(baseline_cache)
    sources = Sources(candidate=_path_or_object(candidate), baseline=_path_or_object(baseline),
                      data=_path_or_object(data), extras=extras)
    with _caller_modules_restored(candidate, baseline):
        if shard is not None:
            return run_shard(config, sources, shard)
        return run_gate(config, sources)


def merge(states: Iterable[str | os.PathLike[str]], *,
          config: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> ReportModel:
    """The report of a run sharded into `--shard I/N` state files: merged, computed, decided (no model loaded).

    `config` (gate.yaml from a trusted source, as `gate merge --config` takes it) is the policy: a state whose
    config differs from it on a setting that decides is refused. Without it the states' own config decides."""
    from gate.runner import merge_report

    states = list(states)
    _refuse_empty({"states": next((s for s in states if s == ""), None), "config": config})
    policy = configure(config) if config is not None else None
    return merge_report([os.fspath(p) for p in states], policy=policy)


def check(candidate: ModelSource, baseline: ModelSource, data: DataSource | None = None, *,
          config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any) -> Report:
    """Compare `candidate` with `baseline` on `data` in one pass and decide; see the module docstring.

    >>> report = gate.check("cand.safetensors", "prod.safetensors", "eval.npz", config="gate.yaml",
    ...                     model_factory="mypkg.nets:build", enable=["drift"])
    >>> report.verdict, [f.metric for f in report.failures]
    ('fail', ['recall[3]'])
    """
    built = configure(config, **overrides)
    return Report(run(built, candidate, baseline, data, onnx=overrides.get("onnx")))


def _path_or_object(source: Any) -> Any:
    return os.fspath(source) if isinstance(source, os.PathLike) else source


def _check_model_source(source: Any, *, role: str) -> None:
    if isinstance(source, (str, os.PathLike)):
        return
    import torch

    if not isinstance(source, torch.nn.Module):
        raise ConfigError(f"{role}: expected a checkpoint path or a torch.nn.Module, found {type(source).__name__}")


@contextmanager
def _caller_modules_restored(*sources: Any) -> Iterator[None]:
    """The gate puts a module in eval mode on the run's device; the caller gets it back as it was."""
    import torch

    saved = []
    for module in sources:
        if isinstance(module, torch.nn.Module):
            devices = {t.device for t in (*module.parameters(), *module.buffers())}
            flags = [(m, m.training) for m in module.modules()]
            saved.append((module, flags, devices.pop() if len(devices) == 1 else None))
    try:
        yield
    finally:
        for module, flags, device in saved:
            for m, training in flags:
                m.training = training
            if device is not None:
                module.to(device)
