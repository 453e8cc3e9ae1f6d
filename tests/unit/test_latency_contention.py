"""Latency that a shared runner cannot fool: pinned threads, contention read off CPU vs wall time, never a fail."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import partial

import pytest
import torch

from gate import timing
from gate.checks.latency import PairResult, _faster_summary, finding_for
from gate.timing import Contention, CpuAccount, Rule, SamplingPlan
from gate.verdict import DecisionSettings
from tests.unit.test_latency import Machine, feed, make_check

SETTINGS = DecisionSettings(mode="non-inferiority")


def _measured(scale: float, *, seed: int = 0) -> timing.Measurement:
    m = Machine(seed=seed, sigma=0.05)
    plan = SamplingPlan(budget_s=10.0, first_look=40, max_rounds=200, looks=2, warmup=0)
    return timing.measure(partial(m.call, "a", 1.0), partial(m.call, "b", scale), rules=(Rule("p50", "ratio", 1.1),),
                          plan=plan, confidence=0.95, resamples=200, seed=0, clock=m.clock)


def _contention(lost: float, steal: float | None = None) -> Contention:
    return Contention(lost={"baseline": lost, "candidate": lost}, switches_per_call={"baseline": 0.0, "candidate": 0.0},
                      steal=steal, limit=0.15, threads=1)


def test_a_clear_slowdown_fails_on_a_quiet_machine_and_is_inconclusive_on_a_contended_one():
    result = _measured(2.0)
    assert [o.decision for o in result.outcomes] == ["fail"]
    quiet = PairResult("cpu", 4, 4, result, {"baseline": {}, "candidate": {}}, 1, _contention(0.02))
    assert finding_for(quiet, result.outcomes[0], SETTINGS).status == "fail"
    busy = PairResult("cpu", 4, 4, result, {"baseline": {}, "candidate": {}}, 1, _contention(0.4))
    found = finding_for(busy, result.outcomes[0], SETTINGS)
    assert found.status == "warn" and found.inconclusive
    assert "inconclusive, not a fail" in found.reason and "not running for baseline 40%" in found.reason
    # under `inconclusive: fail` too: the machine, not the model, is in doubt
    strict = DecisionSettings(mode="non-inferiority", inconclusive="fail")
    assert finding_for(busy, result.outcomes[0], strict).status == "warn"
    stolen = PairResult("cpu", 4, 4, result, {"baseline": {}, "candidate": {}}, 1, _contention(0.0, steal=0.3))
    assert finding_for(stolen, result.outcomes[0], SETTINGS).status == "warn"


def test_steal_and_lost_time_are_read_from_the_counters():
    a, b = CpuAccount(wall_s=2.0, cpu_s=1.5, switches=8, calls=4), CpuAccount(wall_s=1.0, cpu_s=0.99, calls=4)
    c = timing.contention_of({"baseline": a, "candidate": b}, before=(100, 10_000), after=(400, 14_000), limit=0.15,
                             threads=1)
    assert c.lost == {"baseline": pytest.approx(0.25), "candidate": pytest.approx(0.01)}
    assert c.steal == pytest.approx(300 / 4000)
    assert c.switches_per_call == {"baseline": 2.0, "candidate": 0.0}
    assert c.detected                                    # 25% > 15%
    assert not timing.contention_of({"baseline": b}, before=None, after=None, limit=0.15, threads=1).detected


def test_a_call_that_does_not_run_on_the_cpu_counts_as_lost_time():
    """A sleeping call is what a preempted one looks like to the clock: wall time passes, the thread's CPU does not."""
    account = CpuAccount()
    wall = timing.time_accounted_call(partial(time.sleep, 0.02), account)
    assert account.calls == 1 and account.wall_s == pytest.approx(wall)
    assert account.lost_fraction > 0.9


def test_the_thread_count_is_pinned_by_default_and_recorded():
    cpus = len(os.sched_getaffinity(0))
    assert timing.default_threads() == max(1, min(4, cpus // 2))
    check = make_check(torch.nn.Linear(16, 3).eval(), torch.nn.Linear(16, 3).eval(), threads=None, batch_sizes=[2])
    feed(check, torch.randn(2, 16), rows=2)
    before = torch.get_num_threads()
    result = check.compute()
    assert torch.get_num_threads() == before
    assert result.details["threads"] == timing.default_threads()
    assert "pinned default" in result.details["threads_source"]
    contention = result.details["runs"][0]["contention"]
    assert set(contention["lost_fraction"]) == {"baseline", "candidate"}
    assert all(0.0 <= v <= 1.0 for v in contention["lost_fraction"].values())


def test_a_faster_candidate_says_so_in_the_summary_line():
    fast = PairResult("cpu", 8, 8, _measured(0.5), {"baseline": {}, "candidate": {}}, 1, _contention(0.0))
    same = PairResult("cpu", 1, 1, _measured(1.0, seed=1), {"baseline": {}, "candidate": {}}, 1, _contention(0.0))
    text = _faster_summary([fast, same])
    iv = fast.measurement.comparisons["p50"].ratio
    assert iv.estimate == pytest.approx(0.5, rel=0.05) and iv.high < 1.0      # synthetic timings: half the time
    assert text == f"the candidate is faster: p50 {iv.estimate:.2f}x (CI {iv.low:.2f}-{iv.high:.2f}) at cpu bs=8"
    assert _faster_summary([same]) == ""


BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def test_a_vs_a_beside_cpu_bound_processes_never_fails():
    """Busy loops on every core (bounded in time, killed after), then the same model timed against itself."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 4)).eval()
    twin = type(model)(*[m for m in model])     # the same weights, another module object
    cores = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=60)]) for _ in range(cores)]
    try:
        results = []
        for _ in range(3):
            check = make_check(model, twin, threads=None, batch_sizes=[1, 16], budget_s=0.4, min_rounds=20,
                               warmup=3)
            feed(check, torch.randn(16, 64), rows=16)
            results.append(check.compute())
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()
    for result in results:
        assert result.status != "fail", result.summary
        assert not [f for f in result.findings if f.status == "fail"]
        for run in result.details["runs"]:
            assert run["contention"] is not None
        for f in result.findings:
            if f.inconclusive and "contended" in f.reason:
                assert f.status == "warn"
