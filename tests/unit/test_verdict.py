"""The decision rules: point vs non-inferiority, sign conventions, NaN, inconclusive handling, overall verdict."""
from __future__ import annotations

import math

import pytest

from gate.report.model import CheckResult
from gate.verdict import DecisionSettings, check_summary, judge, summarise

POINT = DecisionSettings(mode="point")
NI = DecisionSettings(mode="non-inferiority", confidence=0.95, inconclusive="warn")
NI_STRICT = DecisionSettings(mode="non-inferiority", confidence=0.95, inconclusive="fail")


@pytest.mark.parametrize(
    "rule,threshold,value,status,margin",
    [
        ("max_drop", 0.01, 0.005, "pass", 0.005),
        ("max_drop", 0.01, 0.03, "fail", -0.02),
        ("max_drop", 0.01, 0.01, "pass", 0.0),   # at the threshold is within
        ("min", 0.9, 0.95, "pass", 0.05),
        ("min", 0.9, 0.85, "fail", -0.05),
        ("max", 0.05, 0.06, "fail", -0.01),
    ],
)
def test_point_rules(rule, threshold, value, status, margin):
    f = judge(metric="m", rule=rule, threshold=threshold, value=value, settings=POINT)
    assert f.status == status
    assert f.margin == pytest.approx(margin)
    assert f.required == value  # the threshold that would just have passed
    assert f.decision == "point"


@pytest.mark.parametrize(
    "interval,status,inconclusive",
    [((0.0, 0.008), "pass", False), ((0.012, 0.04), "fail", False), ((0.002, 0.03), "warn", True)],
)
def test_non_inferiority_uses_the_interval(interval, status, inconclusive):
    f = judge(metric="accuracy", rule="max_drop", threshold=0.01, value=sum(interval) / 2, settings=NI, interval=interval)
    assert (f.status, f.inconclusive) == (status, inconclusive)
    assert f.decision == "non-inferiority"
    assert f.interval == interval


def test_inconclusive_can_be_made_to_fail():
    f = judge(metric="a", rule="max_drop", threshold=0.01, value=0.01, settings=NI_STRICT, interval=(0.0, 0.03))
    assert f.status == "fail" and f.inconclusive


def test_floor_in_non_inferiority_mode():
    assert judge(metric="a", rule="min", threshold=0.9, value=0.95, settings=NI, interval=(0.92, 0.97)).status == "pass"
    assert judge(metric="a", rule="min", threshold=0.9, value=0.85, settings=NI, interval=(0.80, 0.89)).status == "fail"
    assert judge(metric="a", rule="min", threshold=0.9, value=0.9, settings=NI, interval=(0.85, 0.93)).inconclusive


def test_adjusted_p_value_decides_the_fail_side():
    # The interval alone says fail, but after a multiple-comparison correction the evidence is not enough.
    f = judge(metric="recall[a]", rule="max_drop", threshold=0.1, value=0.2, settings=NI, interval=(0.11, 0.3),
              p_adjusted=0.2)
    assert f.status == "warn" and f.inconclusive
    f = judge(metric="recall[a]", rule="max_drop", threshold=0.1, value=0.2, settings=NI, interval=(0.11, 0.3),
              p_adjusted=0.001)
    assert f.status == "fail"


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_never_passes(value):
    for settings in (POINT, NI):
        assert judge(metric="m", rule="max_drop", threshold=0.5, value=value, settings=settings).status == "fail"


def test_summaries_and_overall_verdict():
    ok = judge(metric="a", rule="max_drop", threshold=0.01, value=0.0, settings=POINT)
    bad = judge(metric="b", rule="max_drop", threshold=0.01, value=0.5, settings=POINT)
    worse = judge(metric="c", rule="max_drop", threshold=0.01, value=0.9, settings=POINT)
    status, line = check_summary("x", [ok, bad, worse], passed="fine")
    assert status == "fail" and line.startswith("c: drop 0.9") and line.endswith("(+1 more)")
    assert check_summary("x", [ok], passed="fine") == ("pass", "fine")
    results = [CheckResult(name="a", status="pass", summary=""), CheckResult(name="b", status="warn", summary="")]
    assert summarise(results)[:2] == ("warn", 0)
    results.append(CheckResult(name="c", status="fail", summary=""))
    verdict, code, line = summarise(results)
    assert (verdict, code) == ("fail", 1) and "c" in line
    assert summarise([CheckResult(name="s", status="skip", summary="")])[:2] == ("pass", 0)


def test_an_undefined_interval_is_inconclusive_not_a_pass():
    f = judge(metric="recall[x]", rule="max_drop", threshold=0.1, value=0.0, settings=NI, interval=(math.nan, math.nan))
    assert f.status == "warn" and f.inconclusive


def test_exactly_at_the_threshold_passes_despite_float_rounding():
    f = judge(metric="a", rule="max_drop", threshold=0.01, value=0.90 - 0.89, settings=POINT)
    assert f.status == "pass"


def test_judge_agrees_with_the_reference_rule_in_gate_stats():
    """The checks decide through verdict.judge; the statistics module documents the rule as decide_max_drop.
    Both must give the same outcome on the same replicates, or the simulation would vouch for the wrong code."""
    import numpy as np

    from gate import stats

    rng = np.random.default_rng(7)
    for case in range(400):
        reps = rng.normal(rng.uniform(-0.02, 0.05), rng.uniform(0.001, 0.03), size=300)
        estimate, max_drop = float(np.median(reps)), float(rng.choice([0.005, 0.01, 0.02]))
        p_adjusted = float(rng.uniform(0, 0.1)) if case % 3 == 0 else None
        for mode in ("point", "non-inferiority"):
            ref = stats.decide_max_drop(estimate, reps, max_drop=max_drop, confidence=0.95, mode=mode,
                                        p_adjusted=p_adjusted if mode != "point" else None)
            lo, hi = stats.percentile_interval(reps, confidence=0.95)
            f = judge(metric="m", rule="max_drop", threshold=max_drop, value=estimate,
                      settings=DecisionSettings(mode=mode), interval=(float(lo), float(hi)),
                      p_adjusted=p_adjusted if mode != "point" else None)
            got = "inconclusive" if f.inconclusive else f.status
            assert got == ref.outcome, (case, mode, estimate, (lo, hi), p_adjusted, got, ref.outcome)
