"""Latency, throughput and memory of the candidate against the baseline, decided with statistics.

Both models are timed on the same machine, in the same run, on the same real batches taken from the evaluation
data, one call each per round with the order alternating, so a slow moment of a shared CI runner hits both. A
limit fails only when the slowdown is statistically clear; an interval that straddles the limit is reported as
inconclusive with the noise that made it so. The statistics live in gate.timing; docs/checks/latency.md has the
method and the figures of benchmarks/latency_study.py.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from gate.checks.base import ROLES, Check, RunContext, Step
from gate.errors import ConfigError, ModelError
from gate.forward import batch_len, call_model, move_to
from gate.report.model import Chart, CheckResult, Finding, Table
from gate.timing import (
    MAX_CPU_LOSS,
    STATISTICS,
    Contention,
    CpuAccount,
    Measurement,
    Outcome,
    Rule,
    Sampled,
    SamplingPlan,
    analyse,
    contention_of,
    cpu_times,
    cpus_available,
    default_threads,
    interval_confidence,
    measure,
    rounds_needed,
    time_accounted_call,
)
from gate.verdict import DecisionSettings, check_summary, decision_settings, disturbed, inconclusive_status, judge

#: Calls per model when measuring peak memory (after timing, so caches and thread pools already exist).
MEMORY_CALLS = 3
_MB = 1024.0 * 1024.0


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class LatencySettings:
    """`checks.latency` with its defaults applied and its cross-key rules checked."""

    batch_sizes: tuple[int, ...]
    devices: tuple[str, ...] | None         # None: the run's device
    threads: int | None                     # None: the run's `threads`, else gate.timing.default_threads()
    warmup: int
    budget_s: float
    min_rounds: int
    max_rounds: int
    looks: int
    max_slowdown: dict[str, float]          # statistic -> allowed relative slowdown (gated ones only)
    max_ms: dict[str, dict[int, float]]     # statistic -> batch size -> ceiling in ms for the candidate
    max_cpu_loss: float = MAX_CPU_LOSS      # contention beyond this makes a slowdown inconclusive


def _ms_ceilings(value: Any, *, key: str, batch_sizes: tuple[int, ...]) -> dict[int, float]:
    """`max_p99_ms: 20` applies to every batch size; `{1: 5, 32: 40}` to the batch sizes it names."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return {bs: float(value) for bs in batch_sizes}
    out: dict[int, float] = {}
    for raw_bs, ms in value.items():
        try:
            bs = int(str(raw_bs))
        except ValueError:
            bs = -1
        if bs not in batch_sizes:
            raise ConfigError(
                f"checks.latency.{key}.{raw_bs}: expected one of the configured batch_sizes "
                f"({', '.join(map(str, batch_sizes))}), found {raw_bs!r}"
            )
        out[bs] = float(ms)
    return out


def latency_settings(options: dict[str, Any]) -> LatencySettings:
    """Read the check's options (schema-validated, defaults merged); ConfigError for rules the schema cannot say."""
    batch_sizes = tuple(int(bs) for bs in options["batch_sizes"])
    min_rounds, max_rounds = int(options["min_rounds"]), int(options["max_rounds"])
    if max_rounds < min_rounds:
        raise ConfigError(
            f"checks.latency.max_rounds: expected at least min_rounds ({min_rounds}), found {max_rounds}"
        )
    devices = options.get("devices")
    return LatencySettings(
        batch_sizes=batch_sizes,
        devices=tuple(devices) if devices else None,
        threads=options.get("threads"),
        warmup=int(options["warmup"]),
        budget_s=float(options["budget_s"]),
        min_rounds=min_rounds,
        max_rounds=max_rounds,
        looks=int(options["looks"]),
        max_slowdown={
            stat: float(v) for stat, v in (options.get("max_slowdown") or {}).items() if v is not None
        },
        max_ms={
            stat: _ms_ceilings(options.get(f"max_{stat}_ms"), key=f"max_{stat}_ms", batch_sizes=batch_sizes)
            for stat in STATISTICS
            if stat != "mean"
        },
        max_cpu_loss=float(options.get("max_cpu_loss", MAX_CPU_LOSS)),
    )


def rules_for(settings: LatencySettings, batch_size: int) -> tuple[Rule, ...]:
    """The limits that apply at one batch size, in report order: ratio limits first, then absolute ceilings."""
    ratio = [Rule(s, "ratio", 1.0 + settings.max_slowdown[s]) for s in STATISTICS if s in settings.max_slowdown]
    absolute = [
        Rule(s, "absolute", settings.max_ms[s][batch_size] / 1000.0)
        for s in STATISTICS
        if batch_size in settings.max_ms.get(s, {})
    ]
    return tuple(ratio + absolute)


def sampling_plan(settings: LatencySettings, rules: tuple[Rule, ...]) -> SamplingPlan:
    """The first look waits for enough rounds to decide every gated statistic (100 for p90, 1000 for p99)."""
    first = max([settings.min_rounds] + [rounds_needed(r.statistic) for r in rules])
    return SamplingPlan(
        budget_s=settings.budget_s,
        first_look=min(first, settings.max_rounds),
        max_rounds=settings.max_rounds,
        looks=settings.looks,
        warmup=settings.warmup,
    )


# ----------------------------------------------------------------------------------------- captured inputs


@dataclass(frozen=True)
class _Whole:
    """An input leaf that is not per-sample (a scalar, a shared tensor): kept as is, never sliced or stacked."""

    value: Any


def capture_rows(inputs: Any, count: int, *, rows: int) -> Any:
    """The first `count` samples of a batch as CPU clones; leaves whose dim 0 is not the batch are kept whole."""
    if isinstance(inputs, _Whole):
        return inputs
    if isinstance(inputs, dict):
        return {k: capture_rows(v, count, rows=rows) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(capture_rows(v, count, rows=rows) for v in inputs)
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim >= 1 and inputs.shape[0] == rows:
            return inputs[:count].detach().to("cpu").clone()
        return _Whole(inputs.detach().to("cpu").clone())
    return _Whole(inputs)


def _pad_right(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad every dimension after the first up to `shape` (padding for text: masked out by attention_mask=0)."""
    pad: list[int] = []
    for have, want in zip(reversed(tensor.shape[1:]), reversed(shape)):
        pad += [0, want - have]
    return torch.nn.functional.pad(tensor, pad) if any(pad) else tensor


def _stack_chunks(parts: list[Any]) -> tuple[Any, bool]:
    """Concatenate captured chunks of the same structure along dim 0; returns (batch, whether padding was added)."""
    head = parts[0]
    if isinstance(head, dict):
        merged = {k: _stack_chunks([p[k] for p in parts]) for k in head}
        return {k: v[0] for k, v in merged.items()}, any(v[1] for v in merged.values())
    if isinstance(head, (tuple, list)):
        merged_seq = [_stack_chunks([p[i] for p in parts]) for i in range(len(head))]
        return type(head)(v[0] for v in merged_seq), any(v[1] for v in merged_seq)
    if isinstance(head, _Whole):
        return head.value, False
    if len(parts) == 1:
        return head, False
    shape = tuple(max(p.shape[d] for p in parts) for d in range(1, head.ndim))
    padded = any(tuple(p.shape[1:]) != shape for p in parts)
    return torch.cat([_pad_right(p, shape) for p in parts], dim=0), padded


def build_batch(chunks: list[tuple[Any, int]], size: int) -> tuple[Any, int, bool]:
    """The first `size` captured samples as one batch: (inputs, samples in it, whether padding was added).

    Chunks come from different data batches; text padded to each batch's longest sample is right-padded with
    zeros to the longest of them, as a batch of those samples would be.
    """
    parts: list[Any] = []
    got = 0
    for inputs, rows in chunks:
        take = min(rows, size - got)
        parts.append(capture_rows(inputs, take, rows=rows) if take < rows else inputs)
        got += take
        if got >= size:
            break
    batch, padded = _stack_chunks(parts)
    return batch, got, padded


def repeat_rows(inputs: Any, rows: int, size: int) -> Any:
    """Repeat the `rows` samples of a batch cyclically until it holds `size`, so a small data set still times the
    configured batch size (latency depends on the batch's shape, not on which samples fill it)."""
    if isinstance(inputs, dict):
        return {k: repeat_rows(v, rows, size) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(repeat_rows(v, rows, size) for v in inputs)
    if isinstance(inputs, torch.Tensor) and inputs.ndim >= 1 and inputs.shape[0] == rows and rows > 0:
        reps = -(-size // rows)
        return inputs.repeat(reps, *([1] * (inputs.ndim - 1)))[:size]
    return inputs


# ------------------------------------------------------------------------------------------ timing a model


def _forward(module: Any, inputs: Any, input_names: tuple[str, ...] | None, *, where: str) -> None:
    try:
        call_model(module, inputs, input_names=input_names)
    except Exception as err:  # a forward can raise anything; the user needs the model and the batch
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"latency: {where}: forward pass failed: {msg}") from err


def time_cuda_call(fn: Callable[[], object], *, start: Any, end: Any) -> float:
    """Seconds of GPU time one call takes, by CUDA events around its launches (host clocks would time the launch).

    The synchronize before makes sure the other model's work is not counted; the one after waits for the end event.
    """
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3


def _timer(fn: Callable[[], object], device: str, account: CpuAccount) -> Callable[[], float]:
    if device == "cuda":
        return partial(
            time_cuda_call,
            fn,
            start=torch.cuda.Event(enable_timing=True),
            end=torch.cuda.Event(enable_timing=True),
        )
    return partial(time_accounted_call, fn, account)


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS, so the next model's allocations show up as new resident memory.

    No gc.collect() here: in a process that has imported transformers it can take a second, and cyclic garbage
    that is still resident only raises the starting point, not the increase measured from it.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_peak_increase(fn: Callable[[], object], *, calls: int = MEMORY_CALLS) -> int | None:
    """Peak growth of the process's resident memory (bytes) while `fn` runs `calls` times; None off Linux.

    Linux keeps the peak resident set (VmHWM) and lets a process reset it to the current size by writing 5 to
    /proc/self/clear_refs. After returning freed heap pages (malloc_trim) the increase of that peak over the
    resident size before the calls is the working memory one forward pass needs at this batch size:
    activations, outputs, scratch buffers; not the weights, which are resident already.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        _release_free_memory()
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        before = _proc_status_kb("VmRSS")
        for _ in range(calls):
            fn()
        peak = _proc_status_kb("VmHWM")
    except OSError:
        return None
    return max(0, peak - before) * 1024


def cuda_peak_increase(fn: Callable[[], object], *, calls: int = MEMORY_CALLS) -> tuple[int, int]:
    """(peak allocated minus allocated before, peak allocated) in bytes over `calls` calls, by torch's allocator."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return peak - before, peak


def peak_memory(fn: Callable[[], object], device: str) -> dict[str, int | None]:
    if device == "cuda":
        increase, peak = cuda_peak_increase(fn)
        return {"peak_increase_bytes": increase, "max_memory_allocated_bytes": peak}
    return {"peak_increase_bytes": resident_peak_increase(fn)}


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[int]:
    """Run with `count` intra-op threads (None: keep the current count); restore the previous count after."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage-collector pauses inside timed calls (timeit does the same)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -------------------------------------------------------------------------------------------- one pairing


@dataclass(frozen=True)
class PairResult:
    """Both models timed on one device at one batch size."""

    device: str
    batch_size: int                      # as configured
    samples: int                         # in the batch actually timed (fewer when the data had fewer)
    measurement: Measurement
    memory: dict[str, dict[str, int | None]]   # role -> peak memory figures
    threads: int
    contention: Contention | None = None       # CPU timing only: whether other work disturbed the calls


def measure_pair(
    modules: dict[str, Any],
    inputs: Any,
    *,
    device: str,
    rules: tuple[Rule, ...],
    plan: SamplingPlan,
    confidence: float,
    resamples: int,
    seed: int,
    input_names: dict[str, tuple[str, ...] | None] | None = None,
    max_cpu_loss: float = MAX_CPU_LOSS,
) -> tuple[Measurement, dict[str, dict[str, int | None]], Contention | None]:
    """Time baseline and candidate on `inputs` (already on `device`), then measure each one's peak memory.

    On the CPU each call's wall time is set against the calling thread's CPU time (and /proc/stat's steal), so
    the result says whether another process took the cores meanwhile (`Contention`).

    `modules` maps role -> callable module. Runs under torch.inference_mode() with the garbage collector paused.
    """
    names = input_names or {}
    rows = batch_len(inputs)
    calls = {
        role: partial(_forward, modules[role], inputs, names.get(role), where=f"{role} on {device}, batch of {rows}")
        for role in ROLES
    }
    accounts = {role: CpuAccount() for role in ROLES}
    before = cpu_times()
    with torch.inference_mode():
        with gc_paused():
            result = measure(
                _timer(calls["baseline"], device, accounts["baseline"]),
                _timer(calls["candidate"], device, accounts["candidate"]),
                rules=rules,
                plan=plan,
                confidence=confidence,
                resamples=resamples,
                seed=seed,
            )
        after = cpu_times()
        memory = {role: peak_memory(calls[role], device) for role in ROLES}
    contention = None if device == "cuda" else contention_of(
        accounts, before=before, after=after, limit=max_cpu_loss, threads=torch.get_num_threads()
    )
    return result, memory, contention


@dataclass(frozen=True)
class Timed:
    """What the check measured, before anything is decided: every pairing's timings and facts, or why it skipped.
    Made by timing (compute(), measured_state()) or read from a `--shard 1/N` state file (timed_from_state)."""

    runs: tuple[PairResult, ...] = ()
    notes: tuple[str, ...] = ()
    threads: int = 0
    thread_source: str = ""
    devices: tuple[str, ...] = ()
    models: dict[str, dict[str, int | None]] | None = None      # role -> parameters, size_bytes
    skip: str | None = None


def _field(raw: Any, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = raw.get(key) if isinstance(raw, dict) else None
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"latency timings: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _number_map(raw: Any, what: str, *, ints: bool = False) -> dict[str, Any]:
    kinds: tuple[type, ...] = (int,) if ints else (int, float)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and (v is None and ints or isinstance(v, kinds)
                                                                     and not isinstance(v, bool))
                                            for k, v in raw.items()):
        raise ValueError(f"latency timings: {what} must map names to numbers")
    return {k: (v if v is None or ints else float(v)) for k, v in raw.items()}


def _timings(values: dict[str, Any], key: str, rounds: int | None) -> np.ndarray:
    a = values.get(key)
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.size == 0 or (rounds is not None and a.size != rounds):
        raise ValueError(f"latency timings: {key!r} must be a 1-D array of one value per round")
    return a


NO_SAMPLES = "no input samples reached the latency check"
NO_CUDA = "latency on cuda skipped: torch sees no CUDA device on this machine"


def _check_devices(devices: tuple[str, ...], settings: LatencySettings) -> None:
    """A state's timed devices must be what this config times: its `devices` in order, less cuda where the timing
    job had none (said in a note), or one device (the run's) when the config names none."""
    if settings.devices is None:
        if len(devices) != 1 or devices[0] not in ("cpu", "cuda"):
            raise ValueError(f"latency timings: devices {list(devices)}; the config times the run's device only")
        return
    left = [d for d in settings.devices if d in devices]
    dropped = [d for d in settings.devices if d not in devices]
    if list(devices) != left or any(d != "cuda" for d in dropped):
        raise ValueError(f"latency timings: devices {list(devices)}; the config times {list(settings.devices)}")


def timed_from_state(values: dict[str, Any], settings: LatencySettings,
                     decision: Callable[[int], tuple[DecisionSettings, float, int]]) -> Timed:
    """LatencyCheck.measured_state() back from a state file, checked as data: the pairings must be this config's
    (devices x batch sizes, in order), the timings finite seconds >= 0, one per round. Each pairing's Measurement
    is gate.timing.analyse() of its timings at the config's confidence and seed: the sampling run's, exactly."""
    facts = values.get("facts")
    if not isinstance(facts, dict):
        raise ValueError("latency timings: no facts")
    models = {}
    for role in ROLES:
        m = _field(facts.get("models"), role, dict)
        models[role] = {"parameters": _field(m, "parameters", int, optional=True),
                        "size_bytes": _field(m, "size_bytes", int, optional=True)}
    notes = tuple(_field(facts, "notes", list))
    if not all(isinstance(n, str) for n in notes):
        raise ValueError("latency timings: notes must be text")
    skip = _field(facts, "skip", str, optional=True)
    if skip is not None:
        if skip not in (NO_SAMPLES, NO_CUDA) or (skip == NO_CUDA and tuple(settings.devices or ()) != ("cuda",)):
            raise ValueError(f"latency timings: skipped for {skip!r}, not a reason this config can skip for")
        return Timed(notes=notes, models=models, skip=skip)
    devices = tuple(_field(facts, "devices", list))
    if not all(isinstance(d, str) for d in devices):
        raise ValueError("latency timings: devices must be names")
    _check_devices(devices, settings)
    raw_runs = _field(facts, "runs", list)
    wanted = [(d, bs) for d in devices for bs in settings.batch_sizes]
    if not devices or not all(isinstance(d, str) for d in devices) or len(raw_runs) != len(wanted):
        raise ValueError(f"latency timings: {len(raw_runs)} pairings, the config times {len(wanted) or 'some'}")
    dec, confidence, _ = decision(len(devices))
    runs = []
    for i, (raw, (device, bs)) in enumerate(zip(raw_runs, wanted)):
        if _field(raw, "device", str) != device or _field(raw, "batch_size", int) != bs:
            raise ValueError(f"latency timings: pairing {i} is not {device} bs={bs}, as the config times it")
        a = _timings(values, f"runs.{i}.baseline_s", None)
        b = _timings(values, f"runs.{i}.candidate_s", a.size)
        order = _timings(values, f"runs.{i}.candidate_first", a.size)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and a.min() >= 0 and b.min() >= 0):
            raise ValueError(f"latency timings: pairing {i} has timings that are not finite seconds >= 0")
        if a.dtype != np.float64 or b.dtype != np.float64 or not np.isin(order, (0, 1)).all():
            raise ValueError(f"latency timings: pairing {i}'s arrays are not float64 seconds and 0/1 orders")
        stop = _field(raw, "stop", str)
        if stop not in ("decided", "budget", "max_rounds"):
            raise ValueError(f"latency timings: pairing {i} stopped by {stop!r}")
        sampled = Sampled(a, b, tuple("b" if f else "a" for f in order.tolist()), _field(raw, "looks", int), stop,
                          float(_field(raw, "elapsed_s", (int, float))))
        memory = {role: _number_map(_field(raw.get("memory"), role, dict), "memory", ints=True) for role in ROLES}
        c = raw.get("contention")
        contention = None if c is None else Contention(
            lost=_number_map(_field(c, "lost", dict), "lost"),
            switches_per_call=_number_map(_field(c, "switches_per_call", dict), "switches_per_call"),
            steal=(None if c.get("steal") is None else float(_field(c, "steal", (int, float)))),
            limit=float(_field(c, "limit", (int, float))), threads=_field(c, "threads", int),
            cpus=_field(c, "cpus", int))
        rules = rules_for(settings, bs)
        measurement = analyse(sampled, rules=rules, confidence=confidence, resamples=dec.resamples, seed=dec.seed)
        runs.append(PairResult(device, bs, _field(raw, "samples", int), measurement, memory,
                               _field(raw, "threads", int), contention))
    return Timed(runs=tuple(runs), notes=notes, threads=_field(facts, "threads", int),
                 thread_source=_field(facts, "thread_source", str), devices=devices, models=models)


# --------------------------------------------------------------------------------------------- reporting


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _inverse(x: float) -> float:
    """1 / x, NaN where x is 0 or not finite (throughput from a mean latency that could not be measured)."""
    return 1.0 / x if x and math.isfinite(x) else math.nan


def _sig(x: float | None, digits: int = 4) -> float | None:
    """Round to significant digits for tables: 0.0001234 stays readable where round(x, 4) would print 0."""
    if x is None or not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")


def _pct(confidence: float) -> str:
    return f"{100 * confidence:.4g}%"


def _where(run: PairResult) -> str:
    short = f" ({run.samples} samples)" if run.samples < run.batch_size else ""
    return f"{run.device} bs={run.batch_size}{short}"


def _undecidable_finding(run: PairResult, outcome: Outcome, settings: DecisionSettings) -> Finding:
    """Too few rounds, or timings too short to form a ratio: inconclusive, warn or fail per config."""
    rule = outcome.rule
    needed = rounds_needed(rule.statistic)
    comparison = run.measurement.comparisons[rule.statistic]
    if outcome.enough_rounds:
        reason = (
            f"{rule.statistic} at {_where(run)}: no interval could be formed (baseline {_ms(comparison.baseline):.4g} "
            f"ms, candidate {_ms(comparison.candidate):.4g} ms): calls too short for the clock to resolve"
        )
    else:
        reason = (
            f"{rule.statistic} at {_where(run)}: only {comparison.rounds} rounds fitted in the budget, and a "
            f"{rule.statistic} needs {needed} to be decided; raise checks.latency.budget_s"
        )
    return Finding(
        metric=f"{rule.statistic}_ratio" if rule.kind == "ratio" else f"{rule.statistic}_ms",
        rule="max_ratio" if rule.kind == "ratio" else "max",
        status=inconclusive_status(settings),
        reason=reason,
        threshold=rule.limit if rule.kind == "ratio" else _ms(rule.limit),
        value=comparison.ratio.estimate if rule.kind == "ratio" else _ms(comparison.candidate),
        baseline=_ms(comparison.baseline),
        candidate=_ms(comparison.candidate),
        decision="interval",
        inconclusive=True,
        where=_where(run),
    )


def _reason(run: PairResult, outcome: Outcome, finding: Finding) -> str:
    rule, iv = outcome.rule, outcome.interval
    comparison = run.measurement.comparisons[rule.statistic]
    head = (
        f"{rule.statistic} at {_where(run)}: candidate {_ms(comparison.candidate):.4g} ms vs baseline "
        f"{_ms(comparison.baseline):.4g} ms"
    )
    ci = f"{_pct(iv.confidence)} CI"
    if rule.kind == "ratio":
        what = f"ratio {iv.estimate:.3f}x ({ci} {iv.low:.3f}-{iv.high:.3f})"
        limit = f"the {rule.limit:.3f}x limit (max_slowdown {rule.limit - 1:g})"
    else:
        what = f"candidate {ci} {_ms(iv.low):.4g}-{_ms(iv.high):.4g} ms"
        limit = f"max_{rule.statistic}_ms {_ms(rule.limit):g}"
    if outcome.decision == "pass":
        return f"{head}: {what} is within {limit}"
    if outcome.decision == "fail":
        return f"{head}: {what} is above {limit}: a clear slowdown, not noise"
    noise = run.measurement.noise
    return (
        f"{head}: {what} straddles {limit}; with per-round noise {noise:.1%} (SD of paired log-ratios) "
        f"{comparison.rounds} rounds resolve only +-{iv.resolution:.1%}: raise budget_s or use a quieter runner"
        + (" (status per checks.latency.inconclusive)" if finding.inconclusive else "")
    )


def finding_for(run: PairResult, outcome: Outcome, settings: DecisionSettings) -> Finding:
    """One limit's Finding. The status comes from gate.verdict.judge on the same interval the sampler used.

    A ratio limit is reported as rule `max_ratio`: value = candidate / baseline, threshold = 1 + max_slowdown,
    so judge applies the same rule (gate.verdict.interval_outcome) to the numbers the sampler stopped on.
    """
    rule, iv = outcome.rule, outcome.interval
    if not outcome.enough_rounds or not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        found = _undecidable_finding(run, outcome, settings)
        if run.contention is not None and run.contention.detected:
            found = disturbed(found, why=run.contention.reason())
        return found
    comparison = run.measurement.comparisons[rule.statistic]
    if rule.kind == "ratio":
        finding = judge(
            metric=f"{rule.statistic}_ratio", rule="max_ratio", threshold=rule.limit, value=iv.estimate,
            baseline=_ms(comparison.baseline), candidate=_ms(comparison.candidate), settings=settings,
            interval=(iv.low, iv.high), where=_where(run),
        )
    else:
        finding = judge(
            metric=f"{rule.statistic}_ms", rule="max", threshold=_ms(rule.limit), value=_ms(iv.estimate),
            baseline=_ms(comparison.baseline), candidate=_ms(comparison.candidate), settings=settings,
            interval=(_ms(iv.low), _ms(iv.high)), where=_where(run), unit=" ms",
        )
    finding = replace(finding, reason=_reason(run, outcome, finding))
    if run.contention is not None and run.contention.detected:
        finding = disturbed(finding, why=run.contention.reason())
    return finding


def _faster_summary(runs: list[PairResult]) -> str:
    """"the candidate is faster: p50 0.55x (CI 0.52-0.58) at cpu bs=8", where the whole p50 interval is below 1."""
    faster = []
    for run in runs:
        comparison = run.measurement.comparisons["p50"]
        iv = comparison.ratio
        if comparison.enough_rounds and math.isfinite(iv.high) and iv.high < 1.0:
            faster.append(f"p50 {iv.estimate:.2f}x (CI {iv.low:.2f}-{iv.high:.2f}) at {_where(run)}")
    return f"the candidate is faster: {', '.join(faster)}" if faster else ""


def _detectable(outcome: Outcome) -> float | None:
    """The slowdown a ratio rule would have flagged about half the time: limit * (1 + resolution) - 1."""
    if outcome.rule.kind != "ratio" or not math.isfinite(outcome.interval.resolution):
        return None
    return outcome.rule.limit * (1.0 + outcome.interval.resolution) - 1.0


def _stat_row(run: PairResult, role: str) -> tuple[Any, ...]:
    comps = run.measurement.comparisons
    pick = "baseline" if role == "baseline" else "candidate"
    values = {s: getattr(comps[s], pick) for s in STATISTICS}
    mem = run.memory[role].get("peak_increase_bytes")
    return (
        run.device, run.batch_size, role,
        *(_sig(_ms(values[s])) for s in STATISTICS),
        _sig(run.samples * _inverse(values["mean"])),
        _sig(mem / _MB, 3) if mem is not None else None,
    )


def _ratio_rows(run: PairResult, decided: dict[str, Outcome]) -> list[tuple[Any, ...]]:
    rows = []
    for stat in STATISTICS:
        comparison = run.measurement.comparisons[stat]
        iv = comparison.ratio
        outcome = decided.get(stat)
        # An interval of a tail percentile from a handful of tail samples is noise; show it only when decidable.
        low, high = (_sig(iv.low), _sig(iv.high)) if comparison.enough_rounds else (None, None)
        decision = outcome.decision if outcome else "-"
        if not comparison.enough_rounds:
            decision = f"needs {rounds_needed(stat)} rounds" if outcome else "-"
        rows.append((
            run.device, run.batch_size, stat, _sig(iv.estimate), low, high,
            _sig(outcome.rule.limit) if outcome else None, decision,
        ))
    mean = run.measurement.comparisons["mean"].ratio
    rows.append((
        run.device, run.batch_size, "throughput", _sig(_inverse(mean.estimate)),
        _sig(_inverse(mean.high)), _sig(_inverse(mean.low)), None, "-",
    ))
    return rows


def _sampling_row(run: PairResult, decided: dict[str, Outcome]) -> tuple[Any, ...]:
    m = run.measurement
    detectable = _detectable(decided["p50"]) if "p50" in decided else None
    return (
        run.device, run.batch_size, m.sampled.rounds, m.sampled.looks, m.sampled.stop,
        round(m.sampled.elapsed_s, 3), f"{m.noise:.1%}", f"+-{m.comparisons['p50'].ratio.resolution:.1%}",
        f"{detectable:.1%}" if detectable is not None else "-",
    )


def _run_details(run: PairResult) -> dict[str, Any]:
    m = run.measurement
    comps = m.comparisons
    return {
        "device": run.device,
        "batch_size": run.batch_size,
        "samples": run.samples,
        "threads": run.threads,
        "rounds": m.sampled.rounds,
        "looks": m.sampled.looks,
        "stop": m.sampled.stop,
        "sampling_s": round(m.sampled.elapsed_s, 4),
        "noise_log_ratio_sd": m.noise,
        "baseline_ms": {s: _ms(comps[s].baseline) for s in STATISTICS},
        "candidate_ms": {s: _ms(comps[s].candidate) for s in STATISTICS},
        "throughput": {
            "baseline": run.samples * _inverse(comps["mean"].baseline),
            "candidate": run.samples * _inverse(comps["mean"].candidate),
        },
        "ratios": {
            s: {
                "ratio": comps[s].ratio.estimate,
                "low": comps[s].ratio.low,
                "high": comps[s].ratio.high,
                "resolution": comps[s].ratio.resolution,
                "enough_rounds": comps[s].enough_rounds,
            }
            for s in STATISTICS
        },
        "decisions": [
            {
                "statistic": o.rule.statistic,
                "kind": o.rule.kind,
                "limit": o.rule.limit if o.rule.kind == "ratio" else _ms(o.rule.limit),
                "decision": o.decision,
                "detectable_slowdown": _detectable(o),
            }
            for o in m.outcomes
        ],
        "memory": run.memory,
        "contention": run.contention.as_dict() if run.contention is not None else None,
    }


# ------------------------------------------------------------------------------------------------- check


class LatencyCheck(Check):
    """Per-call latency, throughput and peak memory of both models at each batch size; see the module docstring."""

    name = "latency"
    tasks = frozenset({"classification", "multi_label", "regression"})
    needs = frozenset({"inputs"})
    #: Timings are not sums: rank 0 (torchrun) or the `--shard 1/N` job times its kept samples after its pass; the
    #: job's timings travel in its state file (measured_state), from which `gate merge` decides.
    sharding = "rank0"
    times_models = True

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.settings = latency_settings(options)
        self._chunks: list[tuple[Any, int]] = []
        self._captured = 0
        self._timed: Timed | None = None        # measured, or loaded from a state file

    def update(self, step: Step) -> None:
        """Keep CPU copies of the first max(batch_sizes) samples; nothing after that."""
        wanted = max(self.settings.batch_sizes) - self._captured
        if wanted <= 0:
            return
        rows = int(step.labels.shape[0])
        take = min(wanted, rows)
        if take <= 0:
            return
        self._chunks.append((capture_rows(step.inputs, take, rows=rows), take))
        self._captured += take

    def compute(self) -> CheckResult:
        """Time both models (unless a `--shard 1/N` state file brought the timings: load_measured), then decide."""
        if self._timed is None:
            self._timed = self._measure()
        return self._decide(self._timed)

    def _measure(self) -> Timed:
        """Every configured (device, batch size) pairing timed on the kept samples, with its facts."""
        models = {role: {"parameters": self.ctx.models[role].parameters, "size_bytes": self.ctx.models[role].size_bytes}
                  for role in ROLES}
        if not self._chunks:
            return Timed(skip=NO_SAMPLES, models=models)
        devices, notes = self._devices()
        if not devices:
            return Timed(skip=notes[-1], notes=tuple(notes), models=models)
        decision, confidence, _ = self._decision(len(devices))
        threads_wanted = self.settings.threads or self.ctx.config.threads or default_threads()
        thread_source = ("checks.latency.threads" if self.settings.threads else "threads" if self.ctx.config.threads
                         else f"pinned default: half of the {cpus_available()} CPUs available, 1 to 4")
        runs: list[PairResult] = []
        with torch_threads(threads_wanted) as threads:
            for device in devices:
                runs += self._measure_device(device, threads=threads, confidence=confidence,
                                             resamples=decision.resamples, seed=decision.seed, notes=notes)
        return Timed(runs=tuple(runs), notes=tuple(notes), threads=threads, thread_source=thread_source,
                     devices=tuple(devices), models=models)

    def _decision(self, devices: int) -> tuple[DecisionSettings, float, int]:
        """The run's decision settings, each interval's confidence (Bonferroni over the gated comparisons and the
        looks) and the number of comparisons: from the config alone, so `gate merge` finds the sampling run's."""
        decision = decision_settings(self.ctx.config, self.options)
        if self.options.get("confidence") is not None:
            decision = replace(decision, confidence=float(self.options["confidence"]))
        gated = sum(len(rules_for(self.settings, bs)) for bs in self.settings.batch_sizes) * devices
        family = max(1, gated if decision.multiple_comparisons != "none" else 1)
        return decision, interval_confidence(decision.confidence, comparisons=family, looks=self.settings.looks), family

    def _decide(self, timed: Timed) -> CheckResult:
        if timed.skip is not None:
            return CheckResult(name=self.name, status="skip", summary=timed.skip, notes=timed.notes)
        decision, confidence, family = self._decision(len(timed.devices))
        judged = replace(decision, mode="non-inferiority", confidence=confidence)
        findings = [finding_for(run, o, judged) for run in timed.runs for o in run.measurement.outcomes]
        return self._result(list(timed.runs), findings, notes=list(timed.notes), confidence=confidence,
                            family=family, nominal=decision.confidence, threads=timed.threads,
                            thread_source=timed.thread_source, models=timed.models)

    # ------------------------------------------------------------------ sharded: the timings in a state file

    def measured_state(self) -> dict[str, Any]:
        """A `--shard 1/N` job, after its pass: time now, as compute() would, and return the timings (arrays: each
        pairing's per-round seconds of both models and which went first) and the facts compute() decides with
        (JSON: rounds, looks, stop, memory, contention, notes, threads), for `gate merge`, which has no models."""
        if self._timed is None:
            self._timed = self._measure()
        timed = self._timed
        runs = []
        out: dict[str, Any] = {}
        for i, run in enumerate(timed.runs):
            sampled = run.measurement.sampled
            out[f"runs.{i}.baseline_s"] = np.asarray(sampled.a, dtype=np.float64)
            out[f"runs.{i}.candidate_s"] = np.asarray(sampled.b, dtype=np.float64)
            out[f"runs.{i}.candidate_first"] = np.array([f == "b" for f in sampled.first], dtype=np.int64)
            c = run.contention
            runs.append({
                "device": run.device, "batch_size": run.batch_size, "samples": run.samples, "threads": run.threads,
                "looks": sampled.looks, "stop": sampled.stop, "elapsed_s": sampled.elapsed_s, "memory": run.memory,
                "contention": None if c is None else {
                    "lost": c.lost, "switches_per_call": c.switches_per_call, "steal": c.steal, "limit": c.limit,
                    "threads": c.threads, "cpus": c.cpus},
            })
        out["facts"] = {"skip": timed.skip, "notes": list(timed.notes), "threads": timed.threads,
                        "thread_source": timed.thread_source, "devices": list(timed.devices), "models": timed.models,
                        "runs": runs}
        return out

    def load_measured(self, values: dict[str, Any]) -> None:
        """measured_state() from a state file (data: every field checked, ValueError if it is not what
        measured_state() gives for this config); compute() then decides on these timings without timing."""
        timed = timed_from_state(values, self.settings, self._decision)
        self._timed = replace(timed, notes=(*timed.notes, "timed by the shard 1/N job after its pass, on its first "
                                            "samples (as a torchrun's rank 0 times its own); gate merge decided on "
                                            "those timings"))

    # ------------------------------------------------------------------ helpers of compute()

    def _devices(self) -> tuple[list[str], list[str]]:
        """The devices to time on, and notes for configured devices that cannot be used here."""
        run_device = torch.device(self.ctx.device).type
        wanted = list(self.settings.devices or (run_device,))
        notes: list[str] = []
        devices = []
        for device in wanted:
            if device == "cuda" and not torch.cuda.is_available():
                notes.append(NO_CUDA)
            else:
                devices.append(device)
        return devices, notes

    def _modules_on(self, device: str) -> dict[str, Any]:
        """Each role's module on `device`: the loaded one on the run's device, a deep copy elsewhere."""
        if device == torch.device(self.ctx.device).type:
            return {role: self.ctx.models[role].module for role in ROLES}
        out = {}
        for role in ROLES:
            try:
                out[role] = copy.deepcopy(self.ctx.models[role].module).to(device)
            except Exception as err:  # not every module format can be copied or moved: say which and why
                raise ModelError(
                    f"latency: cannot copy the {role} model to {device} for timing ({type(err).__name__}: {err}); "
                    f"time it on the run's device instead (checks.latency.devices)"
                ) from err
        return out

    def _measure_device(
        self, device: str, *, threads: int, confidence: float, resamples: int, seed: int, notes: list[str]
    ) -> list[PairResult]:
        modules = self._modules_on(device)
        if device != torch.device(self.ctx.device).type:
            notes.append(f"{device}: timed deep copies of both models (the run's device is {self.ctx.device})")
        names = {role: getattr(self.ctx.models[role], "input_names", None) for role in ROLES}
        runs = []
        for bs in self.settings.batch_sizes:
            batch, samples, padded = build_batch(self._chunks, bs)
            if samples < bs:
                batch = repeat_rows(batch, samples, bs)
                notes.append(
                    f"batch size {bs}: the data has only {samples} samples; they were repeated to fill the batch"
                )
                samples = bs
            if padded:
                notes.append(f"batch size {bs}: samples from data batches of different padded lengths were "
                             "right-padded with zeros to the longest")
            rules = rules_for(self.settings, bs)
            measurement, memory, contention = measure_pair(
                modules, move_to(batch, torch.device(device)), device=device, rules=rules,
                plan=sampling_plan(self.settings, rules), confidence=confidence, resamples=resamples,
                seed=seed, input_names=names, max_cpu_loss=self.settings.max_cpu_loss,
            )
            runs.append(PairResult(device, bs, samples, measurement, memory, threads, contention))
        return runs

    def _result(
        self,
        runs: list[PairResult],
        findings: list[Finding],
        *,
        notes: list[str],
        confidence: float,
        family: int,
        nominal: float,
        threads: int,
        thread_source: str = "",
        models: dict[str, dict[str, int | None]],
    ) -> CheckResult:
        p50 = [run.measurement.comparisons["p50"].ratio.estimate for run in runs]
        where = ", ".join(_where(run) for run in runs)
        if findings:
            status, summary = check_summary(self.name, findings, passed=(
                f"no slowdown beyond the limits at {where} (p50 ratio {min(p50):.3f}x-{max(p50):.3f}x)"
            ))
        else:
            status = "pass"
            summary = f"measured only, no limits configured: p50 ratio {min(p50):.3f}x-{max(p50):.3f}x at {where}"
        faster = _faster_summary(runs)
        if faster:
            summary += f"; {faster}"
        contended = [run for run in runs if run.contention is not None and run.contention.detected]
        if contended:
            summary += f"; contended at {', '.join(_where(run) for run in contended)}: no slowdown can fail there"
            notes = [*notes, *(f"{_where(run)}: {run.contention.reason()}" for run in contended)]
        decided = [{o.rule.statistic: o for o in run.measurement.outcomes if o.rule.kind == "ratio"} for run in runs]
        tables = (
            Table(
                title=f"Latency per call (ms); torch threads: {threads}",
                headers=("device", "batch", "model", *STATISTICS, "samples/s", "peak working mem MB"),
                rows=tuple(_stat_row(run, role) for run in runs for role in ROLES),
            ),
            Table(
                title=f"Candidate / baseline, intervals at {_pct(confidence)} (paired bootstrap)",
                headers=("device", "batch", "statistic", "ratio", "low", "high", "limit", "decision"),
                rows=tuple(row for run, d in zip(runs, decided) for row in _ratio_rows(run, d)),
            ),
            Table(
                title="Sampling and noise",
                headers=("device", "batch", "rounds", "looks", "stopped by", "seconds", "noise (SD log-ratio)",
                         "p50 resolution", "p50 detectable slowdown"),
                rows=tuple(_sampling_row(run, d) for run, d in zip(runs, decided)),
            ),
            Table(
                title="Model size",
                headers=("model", "parameters", "checkpoint MB"),
                rows=tuple(
                    (role, m["parameters"], round(m["size_bytes"] / _MB, 3) if m["size_bytes"] is not None else None)
                    for role, m in models.items()
                ),
            ),
        )
        chart = Chart(
            title="p50 latency, candidate / baseline",
            labels=tuple(_where(run) for run in runs),
            values=tuple(round(v, 4) for v in p50),
            y_label="ratio",
        )
        details = {
            "threads": threads,
            "threads_source": thread_source,
            "devices": sorted({run.device for run in runs}),
            "batch_sizes": list(self.settings.batch_sizes),
            "confidence": nominal,
            "interval_confidence": confidence,
            "comparisons": family,
            "looks": self.settings.looks,
            "method": "interleaved rounds; paired bootstrap over rounds; normal interval on log(ratio); "
                      "Bonferroni over comparisons and looks",
            "models": {role: dict(m) for role, m in models.items()},
            "runs": [_run_details(run) for run in runs],
        }
        return CheckResult(
            name=self.name, status=status, summary=summary, findings=tuple(findings), tables=tables,
            charts=(chart,), details=details, notes=tuple(notes),
        )
