"""The one place where measured values meet thresholds: statuses for findings, checks and the whole gate.

Sign conventions that nobody can misread:
- higher-is-better metrics: `min` (floor on the candidate), `max_drop` (baseline - candidate <= max_drop), and
  `max_relative_drop` ((baseline - candidate) / baseline <= max_relative_drop); a drop is positive when worse;
- lower-is-better rates: `max` (ceiling on the candidate's rate).
Decision modes (see docs/statistics.md): `point` compares the point estimate; `non-inferiority` fails only when the
interval's bound is beyond the threshold, passes when the whole interval is within, else reports inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


from gate.report.model import CheckResult, Finding, Status, overall_status
from gate.stats import at_least, at_most, one_sided_alpha, significant


@dataclass(frozen=True)
class DecisionSettings:
    mode: str = "non-inferiority"
    confidence: float = 0.95
    inconclusive: str = "warn"
    resamples: int = 2000
    multiple_comparisons: str = "holm"
    seed: int = 0


def decision_settings(config: Any, options: dict[str, Any]) -> DecisionSettings:
    """Global `decision:` settings with the check's own `decision` / `inconclusive` overrides."""
    glob = config.decision
    return DecisionSettings(
        mode=options.get("decision") or glob["mode"],
        confidence=float(glob["confidence"]),
        inconclusive=options.get("inconclusive") or glob["inconclusive"],
        resamples=int(glob["bootstrap_resamples"]),
        multiple_comparisons=glob["multiple_comparisons"],
        seed=int(config.seed),
    )


def _finite(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    return f"{x:.4g}"


def _status(outcome: str, settings: DecisionSettings) -> tuple[Status, bool]:
    if outcome == "inconclusive":
        return ("fail" if settings.inconclusive == "fail" else "warn"), True
    return ("pass" if outcome == "pass" else "fail"), False


def _interval_outcome(lo: float, hi: float, *, threshold: float, worse_above: bool) -> str:
    """pass when the whole interval is on the good side, fail when it is wholly beyond, else inconclusive."""
    if worse_above:
        return "pass" if at_most(hi, threshold) else ("fail" if not at_most(lo, threshold) else "inconclusive")
    return "pass" if at_least(lo, threshold) else ("fail" if not at_least(hi, threshold) else "inconclusive")


def judge(
    *,
    metric: str,
    rule: str,
    threshold: float,
    value: float,
    baseline: float | None = None,
    candidate: float | None = None,
    settings: DecisionSettings,
    interval: tuple[float, float] | None = None,
    p_value: float | None = None,
    p_adjusted: float | None = None,
    where: str | None = None,
    unit: str = "",
) -> Finding:
    """Decide one rule. `value` is the compared quantity (a drop for max_drop rules, the metric itself otherwise).

    `max_*` rules fail when value > threshold; `min` fails when value < threshold. In non-inferiority mode an
    interval decides; for a family of comparisons `p_adjusted` (the multiplicity-adjusted p-value of "beyond the
    threshold") replaces the interval's fail side, so the family's false-fail rate stays at the nominal level.
    """
    worse_above = rule != "min"
    margin = (threshold - value) if worse_above else (value - threshold)
    what = {"max_drop": "drop", "max_relative_drop": "relative drop", "max": "value", "min": "value"}.get(rule, rule)
    if not _finite(value):
        return Finding(
            metric=metric, rule=rule, status="fail", threshold=threshold, value=value, baseline=baseline,
            candidate=candidate, margin=None, required=None, where=where, decision=settings.mode,
            reason=f"{metric}: the {what} is {_fmt(value)}; a non-finite measurement never passes",
        )
    use_interval = settings.mode == "non-inferiority" and interval is not None
    if use_interval:
        lo, hi = interval
        if _finite(lo) and _finite(hi):
            outcome = _interval_outcome(lo, hi, threshold=threshold, worse_above=worse_above)
        else:  # an undefined interval (too few samples of a class, say) decides nothing
            outcome = "inconclusive"
        if p_adjusted is not None and outcome != "pass":
            outcome = "fail" if significant(p_adjusted, one_sided_alpha(settings.confidence)) else "inconclusive"
        status, inconclusive = _status(outcome, settings)
        ci = f"{settings.confidence:.0%} CI [{_fmt(lo)}, {_fmt(hi)}]"
        if outcome == "pass":
            reason = f"{metric}: {what} {_fmt(value)}{unit} ({ci}) is within {rule} {_fmt(threshold)}{unit}"
        elif outcome == "fail":
            reason = f"{metric}: {what} {_fmt(value)}{unit} ({ci}) is beyond {rule} {_fmt(threshold)}{unit} with {settings.confidence:.0%} confidence"
        else:
            reason = (
                f"{metric}: {what} {_fmt(value)}{unit} ({ci}) straddles {rule} {_fmt(threshold)}{unit}: "
                "the evaluation data cannot decide"
            )
        decision = "non-inferiority"
    else:
        bad = not at_most(value, threshold) if worse_above else not at_least(value, threshold)
        status, inconclusive = ("fail" if bad else "pass"), False
        rel = "exceeds" if worse_above else "is below"
        ok = "within" if worse_above else "at or above"
        reason = (
            f"{metric}: {what} {_fmt(value)}{unit} {rel} {rule} {_fmt(threshold)}{unit} by {_fmt(abs(margin))}{unit}"
            if bad
            else f"{metric}: {what} {_fmt(value)}{unit} is {ok} {rule} {_fmt(threshold)}{unit}"
        )
        decision = "point"
    return Finding(
        metric=metric, rule=rule, status=status, reason=reason, threshold=threshold, value=value,
        baseline=baseline, candidate=candidate, margin=margin, interval=interval,
        required=_required(value, interval if decision == "non-inferiority" else None, worse_above=worse_above),
        p_value=p_adjusted if p_adjusted is not None else p_value, decision=decision,
        inconclusive=inconclusive, where=where,
    )


def _required(value: float, interval: tuple[float, float] | None, *, worse_above: bool) -> float:
    """The threshold that would just have passed: the point value, or the interval's far bound in non-inferiority."""
    if interval is None or not all(map(_finite, interval)):
        return value
    return float(interval[1]) if worse_above else float(interval[0])


def check_status(findings: list[Finding] | tuple[Finding, ...]) -> Status:
    return overall_status([f.status for f in findings]) if findings else "pass"


def check_summary(name: str, findings: list[Finding] | tuple[Finding, ...], *, passed: str) -> tuple[Status, str]:
    """The check's status and one sentence: the worst finding's reason, or `passed` when all passed."""
    status = check_status(findings)
    if status == "pass":
        return status, passed
    bad = [f for f in findings if f.status == status]
    worst = min(bad, key=lambda f: f.margin if _finite(f.margin) else -math.inf)
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    return status, worst.reason + more


def summarise(results: list[CheckResult]) -> tuple[Status, int, str]:
    """Overall verdict, exit code (0 pass/warn, 1 fail) and a one-line summary."""
    verdict = overall_status([r.status for r in results])
    failed = [r.name for r in results if r.status == "fail"]
    warned = [r.name for r in results if r.status == "warn"]
    if verdict == "fail":
        line = f"FAIL: {len(failed)} of {len(results)} checks failed ({', '.join(failed)})"
    elif verdict == "warn":
        line = f"PASS with warnings: {', '.join(warned)}"
    else:
        ran = [r.name for r in results if r.status != "skip"]
        line = f"PASS: all {len(ran)} checks passed"
    return verdict, (1 if verdict == "fail" else 0), line
