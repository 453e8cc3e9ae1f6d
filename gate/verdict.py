"""The one place where measured values meet thresholds: statuses for findings, checks and the whole gate.

Sign conventions that nobody can misread:
- higher-is-better metrics: `min` (floor on the candidate), `max_drop` (baseline - candidate <= max_drop), and
  `max_relative_drop` ((baseline - candidate) / baseline <= max_relative_drop); a drop is positive when worse;
- lower-is-better metrics (flip rates, log loss, Brier score, calibration error): `max` (ceiling on the candidate),
  `max_increase` (candidate - baseline <= max_increase) and `max_relative_increase` ((candidate - baseline) /
  baseline <= max_relative_increase); an increase is positive when worse.

Decision modes (`decision.mode`, see docs/statistics.md); alpha = (1 - confidence) / 2 for every one-sided test:
- `significant-and-beyond` (default): fail when the candidate is significantly worse than the baseline (one-sided
  p of "drop > 0" below alpha, multiplicity-adjusted in a family) AND its measured drop is beyond the threshold;
  pass cleanly when the data prove it within the threshold; otherwise inconclusive (a warning by default). For
  absolute rules (`min`, `max`) "worse" means beyond the threshold itself, i.e. proven beyond.
- `non-inferiority`: pass only when proven within, fail only when proven beyond, otherwise inconclusive.
- `point`: compare the measured value with the threshold, no statistics.
The statistics behind each rule arrive as `Evidence` (one-sided p-values from gate.stats); the `p` a finding
carries is always the one-sided p-value of "beyond the threshold", adjusted over its family when there is one.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gate.report.model import CheckResult, Finding, Status, overall_status
from gate.stats import at_least, at_most, one_sided_alpha, significant

MODES = ("significant-and-beyond", "non-inferiority", "point")
DEFAULT_MODE = "significant-and-beyond"


@dataclass(frozen=True)
class DecisionSettings:
    mode: str = DEFAULT_MODE
    confidence: float = 0.95
    inconclusive: str = "warn"
    resamples: int = 2000
    multiple_comparisons: str = "holm"
    seed: int = 0

    @property
    def statistical(self) -> bool:
        return self.mode != "point"


@dataclass(frozen=True)
class Evidence:
    """What the statistics say about one rule: one-sided p-values, each to be compared with alpha.

    `p_beyond`: H1 "the value is beyond the threshold" (adjusted over the family when there is one);
    `p_within`: H1 "the value is within the threshold" (never adjusted: a pass is claimed class by class);
    `p_worse`: H1 "the candidate is worse than the baseline at all" (drop > 0; adjusted like p_beyond), only for
    rules that compare with the baseline. `interval` is the two-sided interval at `confidence` that inverts the
    same tests (for the report); `method` names the statistic ("Tango score", "exact binomial", "bootstrap").
    """

    p_beyond: float | None
    p_within: float | None
    p_worse: float | None = None
    interval: tuple[float, float] | None = None
    method: str = ""


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


def inconclusive_status(settings: DecisionSettings) -> Status:
    """What an undecided rule becomes: warn by default, fail under `inconclusive: fail`."""
    return "fail" if settings.inconclusive == "fail" else "warn"


def _status(outcome: str, settings: DecisionSettings) -> tuple[Status, bool]:
    if outcome == "inconclusive":
        return inconclusive_status(settings), True
    return ("pass" if outcome == "pass" else "fail"), False


def disturbed(finding: Finding, *, why: str) -> Finding:
    """A decision taken on timings another process disturbed: never a fail. A fail becomes inconclusive (warn, whatever
    `inconclusive:` says: the machine, not the model, is in doubt); every status carries the reason."""
    if finding.status == "fail":
        return dataclasses.replace(finding, status="warn", inconclusive=True,
                                   reason=f"{finding.reason}; inconclusive, not a fail: {why}")
    return dataclasses.replace(finding, reason=f"{finding.reason} ({why})")


def interval_outcome(low: float, high: float, *, threshold: float, worse_above: bool = True) -> str:
    """pass when the whole interval is on the good side, fail when it is wholly beyond, else inconclusive.

    The one interval rule: the checks' findings and the latency sampler's stopping rule (gate.timing) both use it,
    so sampling stops exactly when the finding will be decided. A NaN bound is never a pass.
    """
    if not (_finite(low) or low == -math.inf) or not (_finite(high) or high == math.inf):
        return "inconclusive"
    if worse_above:
        return "pass" if at_most(high, threshold) else ("fail" if not at_most(low, threshold) else "inconclusive")
    return "pass" if at_least(low, threshold) else ("fail" if not at_least(high, threshold) else "inconclusive")


def _statistical_outcome(evidence: Evidence, *, mode: str, beyond_measured: bool, alpha: float) -> str:
    if significant(evidence.p_within, alpha):
        return "pass"
    if significant(evidence.p_beyond, alpha):
        return "fail"
    if mode == "significant-and-beyond" and beyond_measured and significant(evidence.p_worse, alpha):
        return "fail"
    return "inconclusive"


def _p(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def judge(
    *,
    metric: str,
    rule: str,
    threshold: float,
    value: float,
    baseline: float | None = None,
    candidate: float | None = None,
    settings: DecisionSettings,
    evidence: Evidence | None = None,
    interval: tuple[float, float] | None = None,
    where: str | None = None,
    unit: str = "",
) -> Finding:
    """Decide one rule. `value` is the compared quantity (a drop for max_drop rules, an increase for max_increase
    rules, the metric itself for `min` / `max`).

    `max_*` rules fail when value > threshold; `min` fails when value < threshold. Statistical modes decide from
    `evidence` (p-values); a rule that only has an `interval` (latency, ONNX latency) is decided by it: pass when
    the whole interval is within, fail when it is wholly beyond, otherwise inconclusive.
    """
    worse_above = rule != "min"
    margin = (threshold - value) if worse_above else (value - threshold)
    what = {"max_drop": "drop", "max_relative_drop": "relative drop", "max": "value", "min": "value",
            "max_increase": "increase", "max_relative_increase": "relative increase"}.get(rule, rule)
    shown_interval = evidence.interval if evidence is not None and evidence.interval is not None else interval
    p_value = evidence.p_beyond if evidence is not None else None
    p_value = None if p_value is None or math.isnan(p_value) else float(p_value)   # undefined: no p to show
    if not _finite(value):
        return Finding(
            metric=metric, rule=rule, status="fail", threshold=threshold, value=value, baseline=baseline,
            candidate=candidate, margin=None, required=None, where=where, decision=settings.mode,
            interval=shown_interval, p_value=p_value,
            reason=f"{metric}: the {what} is {_fmt(value)}; a non-finite measurement never passes",
        )
    bad = not at_most(value, threshold) if worse_above else not at_least(value, threshold)
    alpha = one_sided_alpha(settings.confidence)
    if settings.statistical and (evidence is not None or interval is not None):
        if evidence is not None:
            outcome = _statistical_outcome(evidence, mode=settings.mode, beyond_measured=bad, alpha=alpha)
        else:
            lo, hi = interval  # type: ignore[misc]
            outcome = interval_outcome(lo, hi, threshold=threshold, worse_above=worse_above)
        status, inconclusive = _status(outcome, settings)
        ci = ""
        if shown_interval is not None:
            ci = f" ({settings.confidence:.0%} CI [{_fmt(shown_interval[0])}, {_fmt(shown_interval[1])}])"
        head = f"{metric}: {what} {_fmt(value)}{unit}{ci}"
        limit = f"{rule} {_fmt(threshold)}{unit}"
        if outcome == "pass":
            proof = f" (p {_p(evidence.p_within)} < {alpha:g})" if evidence is not None else ""
            reason = f"{head} is within {limit} with {1 - alpha:.1%} confidence{proof}"
        elif outcome == "fail" and (evidence is None or significant(evidence.p_beyond, alpha)):
            proof = f" (p {_p(evidence.p_beyond)} < {alpha:g})" if evidence is not None else ""
            reason = f"{head} is beyond {limit} with {1 - alpha:.1%} confidence{proof}"
        elif outcome == "fail":
            reason = (f"{head} exceeds {limit}, and the candidate is significantly worse than the baseline "
                      f"(p {_p(evidence.p_worse if evidence else None)} < {alpha:g} that it is worse at all)")
        else:
            reason = f"{head} straddles {limit}: the evaluation data cannot decide"
            if evidence is not None and evidence.p_worse is not None and bad:
                reason += f" (measured beyond it, but not significantly worse than the baseline: p {_p(evidence.p_worse)})"
        decision = settings.mode
        required = _required(value, shown_interval, worse_above=worse_above)
    else:
        status, inconclusive = ("fail" if bad else "pass"), False
        rel = "exceeds" if worse_above else "is below"
        ok = "within" if worse_above else "at or above"
        reason = (
            f"{metric}: {what} {_fmt(value)}{unit} {rel} {rule} {_fmt(threshold)}{unit} by {_fmt(abs(margin))}{unit}"
            if bad
            else f"{metric}: {what} {_fmt(value)}{unit} is {ok} {rule} {_fmt(threshold)}{unit}"
        )
        decision = "point"
        required = value
    return Finding(
        metric=metric, rule=rule, status=status, reason=reason, threshold=threshold, value=value,
        baseline=baseline, candidate=candidate, margin=margin, interval=shown_interval,
        required=required, p_value=p_value, decision=decision, inconclusive=inconclusive, where=where,
    )


def _required(value: float, interval: tuple[float, float] | None, *, worse_above: bool) -> float:
    """The threshold that would just have passed: the interval's far (bad) bound, or the point value without a
    finite one (the good bound may be infinite: a relative drop's Fieller interval unbounded below)."""
    if interval is None:
        return value
    bad = interval[1] if worse_above else interval[0]
    return float(bad) if _finite(bad) else value


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
