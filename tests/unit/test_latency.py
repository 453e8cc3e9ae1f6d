"""The latency check: timing statistics on synthetic timings with known answers, and the check on tiny models.

The statistical tests never time anything: a simulated machine draws per-call durations from known distributions
(lognormal noise, a known slowdown, heavy-tailed outliers, slow drift) and advances a fake clock, so each answer
is known. The real-model tests assert structure only (both models measured, ratios present), never timings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pytest
import torch
from scipy import stats as sps

from gate import timing
from gate.checks.base import RunContext, Step
from gate.checks.latency import (
    LatencyCheck,
    build_batch,
    capture_rows,
    latency_settings,
    resident_peak_increase,
    rules_for,
    sampling_plan,
)
from gate.config import build_config
from gate.errors import ConfigError, ModelError
from gate.models.base import LoadedModel
from gate.report.model import to_jsonable
from gate.timing import Rule, SamplingPlan
from gate.verdict import DecisionSettings, judge

# ------------------------------------------------------------------------------------ a simulated machine


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Machine:
    """Per-call durations: base * scale * drift(t) * lognormal(sigma), times `outlier_factor` with `outlier_rate`.

    Every call advances the fake clock by its duration and is logged, so tests see the order of calls too.
    """

    seed: int
    sigma: float = 0.1
    base: float = 1e-3
    outlier_rate: float = 0.0
    outlier_factor: float = 10.0
    drift_per_s: float = 0.0          # the machine gets this much slower per simulated second
    clock: FakeClock = field(default_factory=FakeClock)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def call(self, role: str, scale: float) -> float:
        speed = 1.0 + self.drift_per_s * self.clock.now
        d = self.base * scale * speed * math.exp(self.sigma * self.rng.standard_normal())
        if self.rng.random() < self.outlier_rate:
            d *= self.outlier_factor
        self.clock.now += d
        self.log.append(role)
        return d


P50_P90 = (Rule("p50", "ratio", 1.10), Rule("p90", "ratio", 1.15))


def run_sim(
    *,
    seed: int,
    slowdown: float = 0.0,
    rules: tuple[Rule, ...] = P50_P90,
    budget_s: float = 1.0,
    looks: int = 5,
    resamples: int = 300,
    **machine: float,
) -> tuple[timing.Measurement, Machine]:
    m = Machine(seed=seed, **machine)
    first = max([20] + [timing.rounds_needed(r.statistic) for r in rules])
    plan = SamplingPlan(budget_s=budget_s, first_look=first, max_rounds=5000, looks=looks, warmup=3)
    confidence = timing.interval_confidence(0.95, comparisons=max(1, len(rules)), looks=looks)
    result = timing.measure(
        partial(m.call, "a", 1.0), partial(m.call, "b", 1.0 + slowdown), rules=rules, plan=plan,
        confidence=confidence, resamples=resamples, seed=seed, clock=m.clock,
    )
    return result, m


def decisions(result: timing.Measurement) -> list[str]:
    return [o.decision for o in result.outcomes]


def verdict_of(result: timing.Measurement) -> str:
    d = decisions(result)
    return "fail" if "fail" in d else ("pass" if all(x == "pass" for x in d) else "inconclusive")


# -------------------------------------------------------------------------------------- pure statistics


def test_statistics_match_numpy_percentiles_and_mean():
    x = np.random.default_rng(0).lognormal(0, 0.5, size=(3, 257))
    got = timing.statistics_of(x, ["p50", "p90", "p95", "p99", "mean"])
    want = np.stack([np.percentile(x, q, axis=1) for q in (50, 90, 95, 99)] + [x.mean(axis=1)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_rounds_needed_keeps_ten_samples_beyond_each_percentile():
    assert {s: timing.rounds_needed(s) for s in timing.STATISTICS} == {
        "p50": 20, "p90": 100, "p95": 200, "p99": 1000, "mean": 20,
    }


def test_interval_confidence_splits_the_error_over_comparisons_and_looks():
    assert timing.interval_confidence(0.95, comparisons=6, looks=5) == pytest.approx(1 - 0.05 / 30)
    assert timing.interval_confidence(0.9, comparisons=1, looks=1) == pytest.approx(0.9)
    assert timing.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize(
    ("low", "high", "want"),
    [(1.2, 1.3, "fail"), (0.9, 1.1, "pass"), (1.05, 1.15, "inconclusive"), (1.1, 1.1, "pass"),
     (math.nan, 1.0, "inconclusive"), (1.0, 1.1 + 1e-15, "pass")],   # float rounding at the limit is within
)
def test_the_sampler_stops_on_the_verdict_interval_rule(low, high, want):
    rule = timing.Rule("p50", "ratio", 1.1)
    iv = timing.Interval((low + high) / 2, low, high, 0.95, 0.1)
    comparison = timing.Comparison("p50", 1.0, 1.1, iv, iv, rounds=1000)
    assert timing.judge_rule(rule, comparison).decision == want


def test_latency_findings_agree_with_the_sampler():
    settings = DecisionSettings(mode="non-inferiority", confidence=0.95)
    status_of = {"pass": "pass", "fail": "fail", "inconclusive": "warn"}
    for low in np.linspace(0.9, 1.3, 9):
        for high in np.linspace(low, 1.4, 5):
            f = judge(metric="p50_ratio", rule="max_ratio", threshold=1.1, value=(low + high) / 2,
                      settings=settings, interval=(low, high))
            iv = timing.Interval((low + high) / 2, low, high, 0.95, 0.1)
            outcome = timing.judge_rule(timing.Rule("p50", "ratio", 1.1),
                                        timing.Comparison("p50", 1.0, 1.1, iv, iv, rounds=1000))
            assert f.status == status_of[outcome.decision]


def test_look_points_double_from_the_first_look_and_leave_room_for_the_final_analysis():
    assert timing.look_points(SamplingPlan(first_look=100, looks=5, max_rounds=5000)) == (100, 200, 400, 800)
    assert timing.look_points(SamplingPlan(first_look=100, looks=5, max_rounds=300)) == (100, 200)
    assert timing.look_points(SamplingPlan(first_look=20, looks=1)) == ()


def paired_lognormal(n: int, seed: int, slowdown: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    machine = rng.lognormal(0.0, 0.3, n)               # shared per-round machine speed: makes the pairs correlated
    a = 1e-3 * machine * rng.lognormal(0.0, 0.15, n)
    b = 1.1e-3 * machine * rng.lognormal(0.0, 0.15, n)
    return a, b


@pytest.mark.parametrize("statistic", ["p50", "p90", "mean"])
def test_percentile_interval_of_a_ratio_matches_scipy_bootstrap(statistic):
    a, b = paired_lognormal(400, seed=3)

    def ratio(x, y, axis=-1):
        return timing.statistics_of(np.moveaxis(y, axis, -1), [statistic])[..., 0] / timing.statistics_of(
            np.moveaxis(x, axis, -1), [statistic])[..., 0]

    ref = sps.bootstrap((a, b), ratio, paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        confidence_level=0.95, rng=np.random.default_rng(1))
    mine = timing.ratio_interval(a, b, statistic, confidence=0.95, resamples=4000, seed=2, method="percentile")
    half = (ref.confidence_interval.high - ref.confidence_interval.low) / 2
    assert mine.estimate == pytest.approx(ratio(a, b))
    assert mine.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * half)
    assert mine.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * half)


@pytest.mark.parametrize("statistic", ["p50", "p90"])
def test_log_scale_standard_error_matches_scipy_bootstrap(statistic):
    a, b = paired_lognormal(400, seed=4)

    def log_ratio(x, y, axis=-1):
        sx = timing.statistics_of(np.moveaxis(x, axis, -1), [statistic])[..., 0]
        sy = timing.statistics_of(np.moveaxis(y, axis, -1), [statistic])[..., 0]
        return np.log(sy / sx)

    ref = sps.bootstrap((a, b), log_ratio, paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        rng=np.random.default_rng(5))
    mine = timing.ratio_interval(a, b, statistic, confidence=0.95, resamples=4000, seed=6)
    assert mine.se_log == pytest.approx(ref.standard_error, rel=0.1)
    # normal interval on the log scale: estimate * exp(+-1.96 se)
    assert mine.high == pytest.approx(mine.estimate * math.exp(1.959964 * mine.se_log), rel=1e-9)
    assert mine.low * mine.high == pytest.approx(mine.estimate ** 2, rel=1e-9)


def test_bootstrap_resamples_rounds_in_pairs():
    """b = 1.2 a round by round: paired resampling sees a ratio of exactly 1.2; unpaired would scatter widely."""
    a = np.random.default_rng(0).lognormal(0, 0.5, 300)
    iv = timing.ratio_interval(a, 1.2 * a, "p50", confidence=0.99, resamples=500, seed=0)
    assert iv.low == pytest.approx(1.2) and iv.high == pytest.approx(1.2)


def test_paired_log_ratio_sd_is_the_sd_of_log_ratios():
    a, b = paired_lognormal(100, seed=8)
    assert timing.paired_log_ratio_sd(a, b) == pytest.approx(np.std(np.log(b / a), ddof=1))


# -------------------------------------------------------------------------- decisions on known answers


def test_identical_models_are_not_failed_in_99_percent_of_repetitions():
    verdicts = [verdict_of(run_sim(seed=s, sigma=0.2, outlier_rate=0.02, budget_s=2.0, resamples=200)[0])
                for s in range(200)]
    assert verdicts.count("fail") <= 2
    assert verdicts.count("pass") >= 190      # and decided, not left inconclusive


def test_a_25_percent_slowdown_fails_against_a_10_percent_limit():
    verdicts = [verdict_of(run_sim(seed=s, slowdown=0.25, sigma=0.25)[0]) for s in range(40)]
    assert verdicts.count("fail") >= 39


def test_a_5_percent_slowdown_passes_a_10_percent_limit_when_noise_is_small():
    verdicts = [verdict_of(run_sim(seed=s, slowdown=0.05, sigma=0.05)[0]) for s in range(40)]
    assert verdicts.count("pass") == 40


def test_huge_noise_is_inconclusive_and_spends_the_budget():
    result, _ = run_sim(seed=0, slowdown=0.10, sigma=2.0, budget_s=0.5)
    assert verdict_of(result) == "inconclusive"
    assert result.sampled.stop == "budget"
    assert result.noise > 2.0          # the report can say why: per-round noise far above the limit


def test_heavy_tailed_outliers_neither_fake_nor_hide_a_slowdown():
    same = [verdict_of(run_sim(seed=s, sigma=0.1, outlier_rate=0.05, outlier_factor=30)[0]) for s in range(30)]
    slower = [verdict_of(run_sim(seed=s, slowdown=0.25, sigma=0.1, outlier_rate=0.05, outlier_factor=30)[0])
              for s in range(30)]
    assert same.count("fail") == 0
    assert slower.count("fail") == 30


def test_slow_drift_hits_both_models_alike():
    """The machine gets 3x slower over the run; interleaving keeps A vs A from failing and a slowdown visible."""
    same = [verdict_of(run_sim(seed=s, sigma=0.1, drift_per_s=4.0, budget_s=0.5)[0]) for s in range(30)]
    slower = [verdict_of(run_sim(seed=s, slowdown=0.25, sigma=0.1, drift_per_s=4.0, budget_s=0.5)[0])
              for s in range(30)]
    assert same.count("fail") == 0
    assert slower.count("fail") == 30


def test_absolute_ceiling_is_decided_on_the_candidates_interval():
    rules = (Rule("p50", "absolute", 2e-3),)
    ok, _ = run_sim(seed=0, rules=rules, sigma=0.1)              # p50 ~ 1 ms against 2 ms
    too_slow, _ = run_sim(seed=0, rules=rules, slowdown=2.0, sigma=0.1)   # ~3 ms
    assert decisions(ok) == ["pass"] and decisions(too_slow) == ["fail"]


def test_p99_is_not_decided_before_a_thousand_rounds():
    result, _ = run_sim(seed=0, rules=(Rule("p99", "ratio", 1.1),), budget_s=0.3, sigma=0.05)
    assert result.sampled.rounds < 1000
    assert decisions(result) == ["inconclusive"]
    assert not result.outcomes[0].enough_rounds


# ------------------------------------------------------------------------------------- adaptive sampling


def test_clear_cases_stop_at_the_first_look():
    for slowdown in (0.0, 0.5):
        result, m = run_sim(seed=1, slowdown=slowdown, sigma=0.1, budget_s=10.0)
        assert result.sampled.stop == "decided"
        assert result.sampled.rounds == 100 and result.sampled.looks == 1
        assert m.clock.now < 1.0          # a fraction of the 10 s budget


def test_unclear_cases_use_the_whole_budget():
    result, m = run_sim(seed=1, slowdown=0.10, sigma=0.3, budget_s=2.0)   # truly at the p50 limit
    assert result.sampled.stop == "budget"
    assert result.sampled.elapsed_s >= 2.0
    assert result.sampled.looks == 4          # every interim look was taken, none could stop it


def test_without_limits_sampling_runs_to_the_budget_or_max_rounds():
    m = Machine(seed=0)
    plan = SamplingPlan(budget_s=100.0, first_look=20, max_rounds=150, looks=5, warmup=0)
    result = timing.measure(partial(m.call, "a", 1.0), partial(m.call, "b", 1.0), rules=(), plan=plan,
                            confidence=0.95, resamples=100, seed=0, clock=m.clock)
    assert result.sampled.stop == "max_rounds" and result.sampled.rounds == 150
    assert set(result.comparisons) == set(timing.STATISTICS)


def test_rounds_interleave_and_alternate_which_model_goes_first():
    m = Machine(seed=0)
    plan = SamplingPlan(budget_s=1.0, first_look=20, max_rounds=40, looks=3, warmup=2)
    sampled = timing.sample_interleaved(partial(m.call, "a", 1.0), partial(m.call, "b", 1.0), plan=plan,
                                        clock=m.clock)
    assert m.log[:4] == ["a", "b", "b", "a"]                      # warm-up, interleaved too
    rounds = m.log[4:]
    assert [tuple(rounds[i:i + 2]) for i in range(0, 8, 2)] == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]
    assert sampled.first == tuple("ab" * 20)
    assert sampled.rounds == 40 and rounds.count("a") == rounds.count("b") == 40


# --------------------------------------------------------------------------------------- settings, schema


def options(**over):
    return build_config({"checks": {"latency": {"enabled": True, **over}}}).checks["latency"]


def test_defaults_time_three_batch_sizes_and_gate_p50_and_p90():
    s = latency_settings(build_config({}).checks["latency"])
    assert build_config({}).checks["latency"]["enabled"] is False
    assert s.batch_sizes == (1, 8, 32)
    assert s.max_slowdown == {"p50": 0.10, "p90": 0.15}
    assert rules_for(s, 8) == (Rule("p50", "ratio", 1.10), Rule("p90", "ratio", 1.15))
    assert sampling_plan(s, rules_for(s, 8)).first_look == 100


def test_ms_ceilings_apply_to_all_or_to_named_batch_sizes():
    s = latency_settings(options(max_p99_ms={1: 5, "32": 40}, max_p50_ms=2, max_slowdown={"p50": None}))
    assert rules_for(s, 1) == (Rule("p90", "ratio", 1.15), Rule("p50", "absolute", 0.002),
                               Rule("p99", "absolute", 0.005))
    assert rules_for(s, 8) == (Rule("p90", "ratio", 1.15), Rule("p50", "absolute", 0.002))


@pytest.mark.parametrize(
    ("section", "message"),
    [({"max_p99_ms": {16: 5}}, "max_p99_ms.16: expected one of the configured batch_sizes"),
     ({"min_rounds": 50, "max_rounds": 20}, "max_rounds: expected at least min_rounds")],
)
def test_settings_the_schema_cannot_check_raise_config_errors(section, message):
    with pytest.raises(ConfigError, match=message):
        latency_settings(options(**section))


@pytest.mark.parametrize(
    ("section", "message"),
    [({"max_slowdwn": {}}, "did you mean max_slowdown"), ({"max_slowdown": {"p75": 0.1}}, "p75: unknown key"),
     ({"devices": ["tpu"]}, "expected one of cpu, cuda"), ({"budget_s": 0}, "budget_s")],
)
def test_bad_latency_config_is_rejected_with_its_key_path(section, message):
    with pytest.raises(ConfigError, match=message):
        options(**section)


# ----------------------------------------------------------------------------------------- input capture


def test_capture_clones_the_first_rows_to_cpu_and_keeps_shared_leaves_whole():
    x = torch.arange(12.0).reshape(6, 2)
    shared = torch.tensor([7.0])
    got = capture_rows({"x": x, "scale": shared, "flag": True}, 4, rows=6)
    x[0, 0] = -1.0                                       # the step's tensors may be reused after update()
    batch, n, padded = build_batch([(got, 4)], 4)
    assert n == 4 and not padded
    assert torch.equal(batch["x"], torch.arange(8.0).reshape(4, 2))
    assert batch["scale"] is not shared and torch.equal(batch["scale"], shared) and batch["flag"] is True


def test_batches_merge_chunks_and_pad_text_to_the_longest():
    first = capture_rows({"input_ids": torch.ones(3, 5, dtype=torch.long),
                          "attention_mask": torch.ones(3, 5, dtype=torch.long)}, 3, rows=3)
    second = capture_rows({"input_ids": torch.full((4, 7), 2), "attention_mask": torch.ones(4, 7, dtype=torch.long)},
                          4, rows=4)
    batch, n, padded = build_batch([(first, 3), (second, 4)], 5)
    assert n == 5 and padded
    assert batch["input_ids"].shape == (5, 7)
    assert batch["attention_mask"][:3, 5:].sum() == 0 and batch["attention_mask"][3:].sum() == 14
    small, n_small, _ = build_batch([(first, 3), (second, 4)], 32)
    assert n_small == 7 and small["input_ids"].shape[0] == 7


# -------------------------------------------------------------------------------------- real tiny models


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).eval()


class KwargsNet(torch.nn.Module):
    """Takes tokenizer-style keyword inputs, like a Hugging Face classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids) * attention_mask.unsqueeze(-1)
        return self.out(h.mean(dim=1))


def loaded(role: str, module: torch.nn.Module, **extra) -> LoadedModel:
    return LoadedModel(
        role=role, path=f"{role}.pt", format="state_dict", module=module, sha256=None, size_bytes=4096,
        parameters=sum(p.numel() for p in module.parameters()), class_names=None, tokenizer=None,
        input_names=extra.get("input_names"), is_eager=True,
    )


def make_check(baseline, candidate, *, device="cpu", input_names=None, **latency) -> LatencyCheck:
    section = {"enabled": True, "batch_sizes": [1, 4], "budget_s": 0.05, "warmup": 1, "threads": 1,
               "min_rounds": 10, **latency}
    config = build_config({"checks": {"latency": section}, "decision": {"bootstrap_resamples": 200}})
    models = {"baseline": loaded("baseline", baseline, input_names=input_names),
              "candidate": loaded("candidate", candidate, input_names=input_names)}
    ctx = RunContext(config=config, models=models, class_names=("a", "b", "c"), device=torch.device(device))
    return LatencyCheck(config.checks["latency"], ctx)


def feed(check: LatencyCheck, inputs, rows: int, batches: int = 2) -> None:
    for i in range(batches):
        check.update(Step(index=i, offset=i * rows, inputs=inputs, labels=torch.zeros(rows, dtype=torch.long),
                          scores={}))


def test_real_models_are_both_measured_with_ratios_and_memory():
    check = make_check(mlp(0), mlp(0))
    feed(check, torch.randn(3, 16), rows=3)
    threads_before = torch.get_num_threads()
    result = check.compute()
    assert torch.get_num_threads() == threads_before             # restored after timing with 1 thread
    assert result.status in ("pass", "warn")
    assert result.details["threads"] == 1
    runs = result.details["runs"]
    assert [(r["batch_size"], r["samples"]) for r in runs] == [(1, 1), (4, 4)]
    for run in runs:
        assert run["rounds"] >= 10
        for role in ("baseline", "candidate"):
            assert set(run[f"{role}_ms"]) == set(timing.STATISTICS)
            assert all(v > 0 for v in run[f"{role}_ms"].values())
        assert set(run["ratios"]) == set(timing.STATISTICS)
        assert set(run["memory"]) == {"baseline", "candidate"}
    assert {f.metric for f in result.findings} == {"p50_ratio", "p90_ratio"}
    assert {f.where for f in result.findings} == {"cpu bs=1", "cpu bs=4"}
    assert [t.title.split(",")[0] for t in result.tables] == [
        "Latency per call (ms); torch threads: 1", "Candidate / baseline", "Sampling and noise", "Model size"]
    params = (16 * 32 + 32) + (32 * 3 + 3)
    assert result.tables[3].rows == (("baseline", params, 0.004), ("candidate", params, 0.004))
    to_jsonable(result)   # the JSON report can carry it


def test_keyword_inputs_reach_forward_and_short_data_is_noted():
    ids = torch.randint(0, 10, (3, 6))
    check = make_check(KwargsNet(), KwargsNet(), batch_sizes=[2, 8], input_names=("input_ids", "attention_mask"))
    feed(check, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)},
         rows=3)
    result = check.compute()
    assert [r["samples"] for r in result.details["runs"]] == [2, 8]
    assert "batch size 8: the data has only 6 samples; they were repeated to fill the batch" in result.notes


def test_update_keeps_only_the_largest_batch_size_worth_of_samples():
    check = make_check(mlp(0), mlp(0), batch_sizes=[1, 5])
    feed(check, torch.randn(3, 16), rows=3, batches=4)
    assert sum(rows for _, rows in check._chunks) == 5


def test_no_samples_skips():
    assert make_check(mlp(0), mlp(0)).compute().status == "skip"


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without a GPU")
def test_cuda_configured_without_a_gpu_is_skipped_with_a_note():
    check = make_check(mlp(0), mlp(0), devices=["cuda"])
    feed(check, torch.randn(4, 16), rows=4)
    result = check.compute()
    assert result.status == "skip" and "no CUDA device" in result.summary


@pytest.mark.skipif(not resident_peak_increase(lambda: None) is not None, reason="needs Linux /proc/self/clear_refs")
def test_resident_peak_increase_sees_a_64_mb_working_buffer():
    def work() -> None:
        buf = np.ones(8 * 1024 * 1024)          # 64 MB, touched
        buf.sum()

    grown = resident_peak_increase(work)
    assert 56 * 2**20 <= grown <= 200 * 2**20


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_timing_uses_events_and_reports_allocator_peaks():
    check = make_check(mlp(0).cuda(), mlp(0).cuda(), device="cuda")
    feed(check, torch.randn(4, 16, device="cuda"), rows=4)
    result = check.compute()
    assert result.status in ("pass", "warn")
    for run in result.details["runs"]:
        assert run["device"] == "cuda"
        assert run["memory"]["baseline"]["max_memory_allocated_bytes"] > 0


@pytest.mark.parametrize("inconclusive", ["warn", "fail"])
def test_an_undecidable_limit_warns_or_fails_as_configured(inconclusive):
    """p90 needs 100 rounds; max_rounds 40 can never give them, whatever the timings. (Contention, which turns any
    slowdown finding into a warning on a busy machine, is tested on its own: max_cpu_loss 1 keeps it out of here.)"""
    check = make_check(mlp(0), mlp(0), batch_sizes=[2], max_rounds=40, budget_s=5.0,
                       max_slowdown={"p50": None, "p90": 0.15}, inconclusive=inconclusive, max_cpu_loss=1.0)
    feed(check, torch.randn(2, 16), rows=2)
    result = check.compute()
    (finding,) = result.findings
    assert finding.inconclusive and finding.status == result.status == inconclusive
    assert "only 40 rounds" in finding.reason and "needs 100" in finding.reason
    assert result.details["interval_confidence"] == pytest.approx(1 - 0.05 / (1 * 5))


def test_timings_that_cannot_form_a_ratio_are_never_a_pass():
    from gate.checks.latency import PairResult, finding_for

    m = Machine(seed=0, base=0.0)
    plan = SamplingPlan(budget_s=1.0, first_look=20, max_rounds=60, looks=2, warmup=0)
    result = timing.measure(partial(m.call, "a", 1.0), partial(m.call, "b", 1.0), rules=(Rule("p50", "ratio", 1.1),),
                            plan=plan, confidence=0.95, resamples=50, seed=0, clock=m.clock)
    assert decisions(result) == ["inconclusive"]
    run = PairResult("cpu", 4, 4, result, {"baseline": {}, "candidate": {}}, 1)
    finding = finding_for(run, result.outcomes[0], DecisionSettings(mode="non-inferiority"))
    assert finding.status == "warn" and finding.inconclusive and "no interval" in finding.reason


def test_a_model_that_fails_while_timed_names_its_role():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch in layer 2")

    check = make_check(mlp(0), Broken())
    feed(check, torch.randn(4, 16), rows=4)
    with pytest.raises(ModelError, match="candidate on cpu, batch of 1: forward pass failed: shape mismatch"):
        check.compute()


def test_repeat_rows_fills_the_batch_cyclically():
    from gate.checks.latency import repeat_rows

    x = torch.arange(6.0).reshape(3, 2)
    batch = repeat_rows({"x": x, "mask": torch.ones(3, 4, dtype=torch.long), "scale": torch.tensor(2.0)}, 3, 8)
    assert batch["x"].shape == (8, 2) and batch["mask"].shape == (8, 4)
    torch.testing.assert_close(batch["x"][3:6], x)
    torch.testing.assert_close(batch["x"][6:8], x[:2])
    assert batch["scale"].ndim == 0


def _without_duration(result):
    from dataclasses import replace

    return replace(result, duration_s=None, notes=())


def test_timings_read_back_from_a_state_give_the_measuring_runs_result():
    """measured_state() -> a state file's bytes -> load_measured() on a check without models: the same findings,
    tables and details as the check that timed (a `--shard 1/N` job and `gate merge`)."""
    from gate.sharding import RunState

    timed = make_check(mlp(0), mlp(1), batch_sizes=[2, 4], max_rounds=30, max_cpu_loss=1.0)
    feed(timed, torch.randn(3, 16), rows=3)
    kept = timed.measured_state()
    expected = timed.compute()                      # decided on the timings just taken, not timed again
    payload = RunState(meta={"format": "gate-state", "version": 1}, arrays={}, measured={"latency": kept}).to_bytes()
    back = _read_measured(payload)
    assert back["runs.0.baseline_s"].tobytes() == kept["runs.0.baseline_s"].tobytes()
    assert [r["batch_size"] for r in back["facts"]["runs"]] == [2, 4]
    fresh = make_check(mlp(0), mlp(1), batch_sizes=[2, 4], max_rounds=30, max_cpu_loss=1.0)
    fresh.ctx.models = {}                           # gate merge has no models: nothing may be timed
    fresh.load_measured(back)
    got = fresh.compute()
    assert _without_duration(got) == _without_duration(expected)
    assert any("shard 1/N job" in n for n in got.notes) and not any("shard 1/N" in n for n in expected.notes)


def _read_measured(payload: bytes) -> dict:
    """What gate.sharding.state_from_bytes gives back for the latency check (its header checks bypassed: the test's
    meta is not a run's)."""
    import json

    from safetensors.numpy import load

    arrays = load(payload)
    facts = json.loads(json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])["__metadata__"]
                       ["gate_state"])["measured"]["latency"]
    return {**facts, **{k[len("measured.latency."):]: v for k, v in arrays.items()}}


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.update({"runs.1.candidate_s": v["runs.1.candidate_s"][:-1]}), "one value per round"),
    (lambda v: v.update({"runs.0.baseline_s": -v["runs.0.baseline_s"]}), "finite seconds"),
    (lambda v: v["facts"]["runs"].pop(), "pairings"),
    (lambda v: v["facts"]["runs"][0].update(batch_size=3), "not cpu bs=2"),
    (lambda v: v["facts"]["runs"][0].update(stop="whenever"), "stopped by"),
    (lambda v: v["facts"].update(notes="x"), "notes"),
    # a forged state cannot choose what latency is judged on, nor skip it
    (lambda v: v["facts"].update(devices=["cpu", "cuda"]), "devices"),
    (lambda v: v["facts"].update(devices=["tpu"]), "devices"),
    (lambda v: v["facts"].update(skip="the weather"), "skipped for"),
    (lambda v: v["facts"].update(skip="latency on cuda skipped: torch sees no CUDA device on this machine"),
     "skipped for"),
])
def test_timings_that_are_not_this_configs_are_refused(edit, message):
    import copy as _copy

    timed = make_check(mlp(0), mlp(0), batch_sizes=[2, 4], max_rounds=20)
    feed(timed, torch.randn(3, 16), rows=3)
    values = _copy.deepcopy(timed.measured_state())
    edit(values)
    with pytest.raises(ValueError, match=message):
        make_check(mlp(0), mlp(0), batch_sizes=[2, 4], max_rounds=20).load_measured(values)
