"""The decision rules: point vs non-inferiority, sign conventions, NaN, inconclusive handling, overall verdict."""
from __future__ import annotations

import math

import pytest

from gate.report.model import CheckResult
from gate.verdict import DecisionSettings, Evidence, check_summary, judge, summarise

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


SB = DecisionSettings(mode="significant-and-beyond", confidence=0.95, inconclusive="warn")


@pytest.mark.parametrize(
    "value,p_beyond,p_within,p_worse,outcome",
    [
        (0.002, 0.9, 0.001, 0.3, "pass"),          # proven within
        (0.030, 0.001, 0.99, 1e-6, "fail"),        # proven beyond
        (0.015, 0.2, 0.6, 0.01, "fail"),           # significantly worse AND measured beyond
        (0.015, 0.2, 0.6, 0.03, "inconclusive"),   # measured beyond, but not significantly worse
        (0.008, 0.4, 0.3, 0.001, "inconclusive"),  # significantly worse, but measured within
        (0.015, 0.2, 0.6, 0.025, "inconclusive"),  # p exactly at alpha is not below it
        (0.015, math.nan, math.nan, math.nan, "inconclusive"),
    ],
)
def test_significant_and_beyond_rule(value, p_beyond, p_within, p_worse, outcome):
    ev = Evidence(p_beyond=p_beyond, p_within=p_within, p_worse=p_worse, interval=(value - 0.01, value + 0.01))
    f = judge(metric="accuracy", rule="max_drop", threshold=0.01, value=value, settings=SB, evidence=ev)
    assert ("inconclusive" if f.inconclusive else f.status) == outcome
    assert f.p_value == p_beyond or (math.isnan(p_beyond) and f.p_value is None)  # one p column, one meaning
    assert f.decision == "significant-and-beyond"
    ni = judge(metric="accuracy", rule="max_drop", threshold=0.01, value=value, settings=NI, evidence=ev)
    want_ni = "pass" if p_within < 0.025 else ("fail" if p_beyond < 0.025 else "inconclusive")
    assert ("inconclusive" if ni.inconclusive else ni.status) == want_ni


def test_absolute_rules_fail_only_when_proven_beyond_in_significant_and_beyond():
    # No baseline to be "worse than": p_worse is None and the fail side is the threshold's own test.
    ev = Evidence(p_beyond=0.2, p_within=0.9)
    f = judge(metric="negative_flip_rate", rule="max", threshold=0.05, value=0.07, settings=SB, evidence=ev)
    assert f.inconclusive and f.status == "warn"
    ev = Evidence(p_beyond=0.001, p_within=1.0)
    assert judge(metric="negative_flip_rate", rule="max", threshold=0.05, value=0.09, settings=SB,
                 evidence=ev).status == "fail"


def test_default_mode_is_significant_and_beyond():
    assert DecisionSettings().mode == "significant-and-beyond"
    from gate.config import build_config

    assert build_config({}).decision["mode"] == "significant-and-beyond"


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


@pytest.mark.parametrize("rule,interval,want", [
    ("max_relative_drop", (-math.inf, 0.8865), 0.8865),   # Fieller's interval unbounded below: the bad end counts
    ("max_drop", (-math.inf, 0.03), 0.03),
    ("min", (0.42, math.inf), 0.42),
    ("max_drop", (0.01, math.inf), -1.0),                 # no finite bad end: the point value
])
def test_required_is_the_bad_end_of_the_interval_even_when_the_other_end_is_infinite(rule, interval, want):
    ev = Evidence(p_beyond=0.5, p_within=0.5, interval=interval)
    value = -1.0 if want == -1.0 else 0.2
    f = judge(metric="precision[c3]", rule=rule, threshold=0.1, value=value, settings=NI, evidence=ev)
    assert f.inconclusive and f.required == want
