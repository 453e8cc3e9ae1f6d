"""Timing statistics for the latency check: pure functions over per-call timings, and the interleaved sampler.

Everything here works on plain seconds in numpy arrays and imports no torch. The sampler takes the two timed
calls and the clock as arguments, so tests drive it with synthetic timings from known distributions and a fake
clock, and the latency check drives it with real model calls.

The method (docs/checks/latency.md has the long version):

* Baseline (a) and candidate (b) run in rounds, one call each, alternating which goes first, so drift in machine
  speed and any first/second position effect hit both alike. Round i gives the pair (a_i, b_i).
* A statistic (p50, p90, p95, p99, mean) is compared as the ratio candidate / baseline. Its interval comes from a
  paired bootstrap over rounds (resampling whole rounds keeps the pairing): the bootstrap standard error of
  log(ratio), then ``ratio * exp(+-z * se)``. The log scale makes a ratio's interval symmetric, and the normal
  form works at the small tail levels the corrections below need, where percentile intervals would need
  hundreds of thousands of resamples.
* Each interval is at ``interval_confidence()``: the configured confidence, Bonferroni-split over the gated
  comparisons and over the looks the adaptive sampler may take, so stopping early does not inflate the error rate.
* A rule fails when the interval's lower bound is beyond the limit, passes when its upper bound is within, and is
  otherwise inconclusive. A percentile is only decided once it has MIN_TAIL_SAMPLES rounds beyond it.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import numpy as np
from gate import distributions as _sps

from gate import stats
from gate.verdict import interval_outcome

Decision = Literal["pass", "fail", "inconclusive"]

#: The quantile behind each percentile name (numpy's default linear interpolation).
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
#: Every statistic the check reports, in report order. "mean" is mean latency, i.e. 1 / throughput.
STATISTICS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "mean")
#: A percentile q is decided only with at least this many rounds above it: n * (1 - q) >= MIN_TAIL_SAMPLES.
#: Bootstrap intervals of a tail quantile estimated from a handful of points are too optimistic to gate on.
MIN_TAIL_SAMPLES = 10
#: Rounds needed before a mean is decided.
MIN_MEAN_ROUNDS = 20
#: Bound on resamples x rounds held in memory at once while bootstrapping.
_CHUNK_ELEMENTS = 2_000_000


# ------------------------------------------------------------------------------------------- statistics


def rounds_needed(statistic: str) -> int:
    """Rounds before `statistic` can be decided: 20 for p50 and mean, 100 for p90, 200 for p95, 1000 for p99."""
    if statistic == "mean":
        return MIN_MEAN_ROUNDS
    return max(MIN_MEAN_ROUNDS, math.ceil(MIN_TAIL_SAMPLES / (1.0 - QUANTILES[statistic]) - 1e-9))


def statistics_of(samples: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Each named statistic along the last axis: shape (..., len(names)).

    >>> statistics_of(np.array([1.0, 2.0, 3.0, 10.0]), ["p50", "mean"])
    array([2.5, 4. ])
    """
    x = np.asarray(samples, dtype=np.float64)
    out = np.empty(x.shape[:-1] + (len(names),))
    pcts = [i for i, name in enumerate(names) if name != "mean"]
    if pcts:
        qs = [QUANTILES[names[i]] for i in pcts]
        out[..., pcts] = np.moveaxis(np.quantile(x, qs, axis=-1), 0, -1)
    for i, name in enumerate(names):
        if name == "mean":
            out[..., i] = x.mean(axis=-1)
    return out


def paired_log_ratio_sd(a: np.ndarray, b: np.ndarray) -> float:
    """The per-round noise: standard deviation of log(b_i / a_i) over rounds (about the CV of a paired ratio)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.std(np.log(b / a), ddof=1))


def bootstrap_statistics(
    a: np.ndarray, b: np.ndarray, names: Sequence[str], *, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap replicates of each statistic: two (resamples, len(names)) arrays, for a and for b.

    Each replicate draws n rounds with replacement and takes a and b from the same rounds, which keeps what the
    interleaving bought: a slow moment of the machine lands in both models' resample.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two 1-D timing arrays of the same non-zero length, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n = a.size
    out_a = np.empty((resamples, len(names)))
    out_b = np.empty((resamples, len(names)))
    chunk = max(1, min(resamples, _CHUNK_ELEMENTS // n))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out_a[start:stop] = statistics_of(a[idx], names)
        out_b[start:stop] = statistics_of(b[idx], names)
    return out_a, out_b


# -------------------------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval; `se_log` is the bootstrap standard error of log(estimate)."""

    estimate: float
    low: float
    high: float
    confidence: float
    se_log: float

    @property
    def resolution(self) -> float:
        """Relative half-width, high / estimate - 1: the smallest change this interval can tell from none."""
        return self.high / self.estimate - 1.0 if self.estimate > 0 else math.nan


def z_value(confidence: float) -> float:
    """The normal quantile of a two-sided interval at `confidence` (1.96 at 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return float(_sps.norm.ppf(0.5 + confidence / 2.0))


def normal_log_interval(estimate: float, log_replicates: np.ndarray, *, confidence: float) -> Interval:
    """estimate * exp(+-z * sd(log replicates)): a normal interval on the log scale with a bootstrap SE."""
    reps = np.asarray(log_replicates, dtype=np.float64)
    finite = reps[np.isfinite(reps)]
    if not (estimate > 0 and math.isfinite(estimate)) or finite.size < 2 or finite.size < 0.99 * reps.size:
        return Interval(estimate, math.nan, math.nan, confidence, math.nan)
    se = float(np.std(finite, ddof=1))
    half = z_value(confidence) * se
    return Interval(estimate, estimate * math.exp(-half), estimate * math.exp(half), confidence, se)


def ratio_interval(
    a: np.ndarray,
    b: np.ndarray,
    statistic: str,
    *,
    confidence: float,
    resamples: int,
    seed: int,
    method: Literal["normal-log", "percentile"] = "normal-log",
) -> Interval:
    """Interval of statistic(b) / statistic(a) from a paired bootstrap over rounds.

    >>> a = np.full(50, 1.0); ratio_interval(a, 1.2 * a, "p50", confidence=0.95, resamples=200, seed=0).estimate
    1.2
    """
    est = statistics_of(np.asarray(b), [statistic])[0] / statistics_of(np.asarray(a), [statistic])[0]
    reps_a, reps_b = bootstrap_statistics(a, b, [statistic], resamples=resamples, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = reps_b[:, 0] / reps_a[:, 0]
        if method == "percentile":
            low, high = stats.percentile_interval(ratios, confidence=confidence)
            return Interval(float(est), float(low), float(high), confidence, float(np.std(np.log(ratios), ddof=1)))
        return normal_log_interval(float(est), np.log(ratios), confidence=confidence)


def interval_confidence(confidence: float, *, comparisons: int, looks: int) -> float:
    """Confidence of each interval so that all comparisons at all looks hold jointly at `confidence` (Bonferroni).

    >>> round(interval_confidence(0.95, comparisons=6, looks=5), 5)
    0.99833
    """
    if comparisons < 1 or looks < 1:
        raise ValueError(f"comparisons and looks must be >= 1, got {comparisons} and {looks}")
    return 1.0 - (1.0 - confidence) / (comparisons * looks)


# -------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Rule:
    """One limit: `ratio` bounds statistic(candidate) / statistic(baseline), `absolute` bounds statistic(candidate).

    `limit` is 1 + max_slowdown for a ratio rule, and seconds for an absolute rule.
    """

    statistic: str
    kind: Literal["ratio", "absolute"]
    limit: float


@dataclass(frozen=True)
class Comparison:
    """Both models' value of one statistic (seconds), the ratio's interval and the candidate's own interval."""

    statistic: str
    baseline: float
    candidate: float
    ratio: Interval
    candidate_interval: Interval
    rounds: int

    @property
    def enough_rounds(self) -> bool:
        return self.rounds >= rounds_needed(self.statistic)


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    decision: Decision
    interval: Interval          # the interval the decision was taken on (ratio, or candidate seconds)
    enough_rounds: bool


def compare(
    a: np.ndarray, b: np.ndarray, names: Sequence[str], *, confidence: float, resamples: int, seed: int
) -> dict[str, Comparison]:
    """Point values, ratio intervals and candidate intervals of each named statistic, from one bootstrap."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    names = list(names)
    point_a, point_b = statistics_of(a, names), statistics_of(b, names)
    reps_a, reps_b = bootstrap_statistics(a, b, names, resamples=resamples, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(reps_b) - np.log(reps_a)
        log_b = np.log(reps_b)
        ratio = point_b / point_a
    out = {}
    for i, name in enumerate(names):
        out[name] = Comparison(
            statistic=name,
            baseline=float(point_a[i]),
            candidate=float(point_b[i]),
            ratio=normal_log_interval(float(ratio[i]), log_ratio[:, i], confidence=confidence),
            candidate_interval=normal_log_interval(float(point_b[i]), log_b[:, i], confidence=confidence),
            rounds=int(a.size),
        )
    return out


def judge_rule(rule: Rule, comparison: Comparison) -> Outcome:
    """Decide one rule on one comparison; too few rounds for the statistic leave it inconclusive."""
    interval = comparison.ratio if rule.kind == "ratio" else comparison.candidate_interval
    decision = (interval_outcome(interval.low, interval.high, threshold=rule.limit) if comparison.enough_rounds
                else "inconclusive")
    return Outcome(rule=rule, decision=decision, interval=interval, enough_rounds=comparison.enough_rounds)


def judge_rules(
    a: np.ndarray, b: np.ndarray, rules: Sequence[Rule], *, confidence: float, resamples: int, seed: int
) -> tuple[Outcome, ...]:
    names = sorted({rule.statistic for rule in rules}, key=STATISTICS.index)
    comparisons = compare(a, b, names, confidence=confidence, resamples=resamples, seed=seed)
    return tuple(judge_rule(rule, comparisons[rule.statistic]) for rule in rules)


def settled(outcomes: Sequence[Outcome]) -> bool:
    """Nothing more to learn: some rule failed (the result is fail whatever the rest say), or every rule passed."""
    decisions = [o.decision for o in outcomes]
    return bool(decisions) and ("fail" in decisions or all(d == "pass" for d in decisions))


# ---------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SamplingPlan:
    """How long to sample. Looks (interim analyses) happen at first_look * 2**k rounds, k < looks - 1; the last
    look is when the budget or max_rounds runs out, so there are never more than `looks` of them."""

    budget_s: float = 3.0
    first_look: int = 20
    max_rounds: int = 5000
    looks: int = 5
    warmup: int = 5


def look_points(plan: SamplingPlan) -> tuple[int, ...]:
    """The round counts of the interim looks.

    >>> look_points(SamplingPlan(first_look=20, looks=5, max_rounds=5000))
    (20, 40, 80, 160)
    """
    points = []
    n = plan.first_look
    while len(points) < plan.looks - 1 and n < plan.max_rounds:
        points.append(n)
        n *= 2
    return tuple(points)


@dataclass(frozen=True, eq=False)
class Sampled:
    """Per-call seconds of a (baseline) and b (candidate), round by round, and how sampling ended."""

    a: np.ndarray
    b: np.ndarray
    first: tuple[str, ...]      # "a" or "b": which model ran first in each round
    looks: int                  # interim looks taken (the final analysis, if different, is one more)
    stop: Literal["decided", "budget", "max_rounds"]
    elapsed_s: float            # sampling time, warm-up excluded

    @property
    def rounds(self) -> int:
        return int(self.a.size)


# ---------------------------------------------------------------------------------------- a shared machine

#: Default for the largest fraction of the timed calls' wall time lost to other processes (see `Contention`).
MAX_CPU_LOSS = 0.15


def cpus_available() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The intra-op thread count timing pins when none is configured: half the CPUs available, 1 to 4.

    Both models then run on the same count whatever torch or ONNX Runtime would pick, and a 2-core runner times on
    one thread, leaving the other core to the runner's own work (more threads than free cores is what made an int8
    model read 26x slower there).
    """
    return max(1, min(4, cpus_available() // 2))


@dataclass
class CpuAccount:
    """Wall time and the calling thread's CPU time of one model's timed calls, and involuntary context switches."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    switches: int = 0
    calls: int = 0

    @property
    def lost_fraction(self) -> float:
        """1 - CPU / wall: the share of the calls' wall time the calling thread was not running (NaN: no calls)."""
        if self.wall_s <= 0:
            return math.nan
        return min(1.0, max(0.0, 1.0 - self.cpu_s / self.wall_s))


def _involuntary_switches() -> int:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)
    except (ImportError, OSError):
        return 0


def time_accounted_call(fn: Callable[[], object], account: CpuAccount) -> float:
    """Seconds one call takes (perf_counter), adding its wall and calling-thread CPU time to `account`."""
    switches = _involuntary_switches()
    cpu = time.thread_time_ns()
    start = time.perf_counter_ns()
    fn()
    wall = time.perf_counter_ns() - start
    account.cpu_s += (time.thread_time_ns() - cpu) * 1e-9
    account.wall_s += wall * 1e-9
    account.switches += _involuntary_switches() - switches
    account.calls += 1
    return wall * 1e-9


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat; None where there is none (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    values = [int(v) for v in fields[1:]]
    return values[7], sum(values[:8])       # user nice system idle iowait irq softirq steal (guest is in user)


@dataclass(frozen=True)
class Contention:
    """Whether other work on the machine disturbed the timed calls, from figures the timing itself collected.

    `lost`: per model, the fraction of its calls' wall time its calling thread was not running (1 - CPU / wall);
    a busy neighbour on the same cores shows up there. `steal`: the share of all CPUs' time the hypervisor gave to
    other guests meanwhile (/proc/stat; None off Linux).
    """

    lost: dict[str, float]
    switches_per_call: dict[str, float]
    steal: float | None
    limit: float
    threads: int
    cpus: int = field(default_factory=cpus_available)      # where it was measured (a merge may run elsewhere)

    @property
    def detected(self) -> bool:
        worst = max((v for v in self.lost.values() if math.isfinite(v)), default=0.0)
        return worst > self.limit or (self.steal is not None and self.steal > self.limit)

    def reason(self) -> str:
        lost = ", ".join(f"{role} {v:.0%}" for role, v in self.lost.items() if math.isfinite(v))
        steal = f"; hypervisor steal {self.steal:.0%} of CPU time" if self.steal is not None else ""
        return (
            f"the machine was contended while timing: the timing thread was not running for {lost} of the calls' "
            f"wall time{steal} (limit max_cpu_loss {self.limit:.0%}, {self.threads} thread"
            f"{'s' if self.threads != 1 else ''}, {self.cpus} CPUs available)"
        )

    def as_dict(self) -> dict[str, object]:
        return {"detected": self.detected, "lost_fraction": dict(self.lost), "steal_fraction": self.steal,
                "involuntary_switches_per_call": dict(self.switches_per_call), "max_cpu_loss": self.limit,
                "threads": self.threads, "cpus_available": self.cpus}


def contention_of(
    accounts: dict[str, CpuAccount], *, before: tuple[int, int] | None, after: tuple[int, int] | None,
    limit: float, threads: int,
) -> Contention:
    steal = None
    if before is not None and after is not None and after[1] > before[1]:
        steal = (after[0] - before[0]) / (after[1] - before[1])
    return Contention(
        lost={role: a.lost_fraction for role, a in accounts.items()},
        switches_per_call={role: a.switches / a.calls if a.calls else 0.0 for role, a in accounts.items()},
        steal=steal, limit=limit, threads=threads,
    )


def time_host_call(fn: Callable[[], object]) -> float:
    """Seconds one synchronous call takes by the host's monotonic high-resolution clock."""
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) * 1e-9


def sample_interleaved(
    time_a: Callable[[], float],
    time_b: Callable[[], float],
    *,
    plan: SamplingPlan,
    stop_when: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Sampled:
    """Time a and b in rounds (a b, b a, a b, ...) until `stop_when` says so at a look, or the budget runs out.

    `time_a()` / `time_b()` run one call and return its duration in seconds; `clock()` only measures the budget.
    Warm-up rounds, interleaved the same way, come first and are discarded.
    """
    for i in range(plan.warmup):
        pair = (time_a, time_b) if i % 2 == 0 else (time_b, time_a)
        pair[0]()
        pair[1]()
    points = set(look_points(plan))
    a: list[float] = []
    b: list[float] = []
    first: list[str] = []
    looks = 0
    stop: Literal["decided", "budget", "max_rounds"] = "budget"
    start = clock()
    while True:
        if len(a) % 2 == 0:
            first.append("a")
            a.append(time_a())
            b.append(time_b())
        else:
            first.append("b")
            b.append(time_b())
            a.append(time_a())
        n = len(a)
        if n in points and stop_when is not None:
            looks += 1
            if stop_when(np.asarray(a), np.asarray(b)):
                stop = "decided"
                break
        if n >= plan.max_rounds:
            stop = "max_rounds"
            break
        if clock() - start >= plan.budget_s:
            stop = "budget"
            break
    return Sampled(np.asarray(a), np.asarray(b), tuple(first), looks, stop, clock() - start)


@dataclass(frozen=True, eq=False)
class Measurement:
    """One sampled pair with every statistic compared and every rule decided at the final analysis."""

    sampled: Sampled
    comparisons: dict[str, Comparison]
    outcomes: tuple[Outcome, ...]
    noise: float                # paired_log_ratio_sd
    confidence: float           # of each interval


def _rules_settled(
    a: np.ndarray, b: np.ndarray, *, rules: tuple[Rule, ...], confidence: float, resamples: int, seed: int
) -> bool:
    return settled(judge_rules(a, b, rules, confidence=confidence, resamples=resamples, seed=seed))


def measure(
    time_a: Callable[[], float],
    time_b: Callable[[], float],
    *,
    rules: Sequence[Rule],
    plan: SamplingPlan,
    confidence: float,
    resamples: int,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Sample a and b adaptively, then compare every statistic and decide `rules`, all at `confidence`.

    `confidence` is the level of each interval (already corrected with interval_confidence()). Without rules,
    nothing can settle early and the whole budget is used for the report's figures. The final analysis uses the
    same seed as the looks, so when a look stopped sampling, the final decisions are that look's.
    """
    rules = tuple(rules)
    stop_when = (
        partial(_rules_settled, rules=rules, confidence=confidence, resamples=resamples, seed=seed) if rules else None
    )
    sampled = sample_interleaved(time_a, time_b, plan=plan, stop_when=stop_when, clock=clock)
    return analyse(sampled, rules=rules, confidence=confidence, resamples=resamples, seed=seed)


def analyse(sampled: Sampled, *, rules: Sequence[Rule], confidence: float, resamples: int, seed: int) -> Measurement:
    """The final analysis of sampled rounds: every statistic compared, every rule decided. A pure function of the
    timings, so timings kept elsewhere (a `--shard 1/N` state file) give the sampling run's figures exactly."""
    rules = tuple(rules)
    comparisons = compare(sampled.a, sampled.b, STATISTICS, confidence=confidence, resamples=resamples, seed=seed)
    outcomes = tuple(judge_rule(rule, comparisons[rule.statistic]) for rule in rules)
    return Measurement(
        sampled=sampled,
        comparisons=comparisons,
        outcomes=outcomes,
        noise=paired_log_ratio_sd(sampled.a, sampled.b),
        confidence=confidence,
    )
