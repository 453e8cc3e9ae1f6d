"""Rules: the `checks.drift` options, the thresholds that apply to a layer, and each layer's findings, decided by
gate.verdict.judge."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from gate.checks.base import ROLES
from gate.checks.drift.layout import glob_match
from gate.errors import ConfigError
from gate.report.model import Finding
from gate.verdict import DecisionSettings, judge

# metric -> (threshold key, rule). Every one is judged per layer, on the point value (no interval: these are
# descriptive figures of the same samples through two models, not estimates of a population quantity).
METRICS: dict[str, tuple[str, str]] = {
    "cosine": ("min_cosine", "min"),
    "rel_l2": ("max_rel_l2", "max"),
    "sqnr_db": ("min_sqnr_db", "min"),
    "psi": ("max_psi", "max"),
    "cka": ("min_cka", "min"),
}
THRESHOLD_KEYS = tuple(key for key, _ in METRICS.values())

_POINT = DecisionSettings(mode="point")


# --------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    thresholds: dict[str, float | None]


@dataclass(frozen=True)
class DriftOptions:
    """The `checks.drift` section, defaults applied."""

    layers: tuple[str, ...] | None = None
    max_layers: int = 64
    thresholds: dict[str, float | None] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    statistic: str = "mean"
    percentile: float = 5.0
    bins: int = 20
    cka: str = "auto"
    cka_max_features: int = 1024
    severity: str = "fail"
    buffer_rows: int = 4096
    buffer_mb: float = 64.0
    layout: tuple[tuple[str, str], ...] = ()     # (module glob, layout), later entries winning
    min_coverage: float = 0.5


_OPTION_KEYS = frozenset({
    "layers", "max_layers", "thresholds", "rules", "statistic", "percentile", "bins", "cka", "cka_max_features",
    "severity", "buffer_rows", "buffer_mb", "layout", "min_coverage",
})


def drift_options(options: dict[str, Any]) -> DriftOptions:
    """Typed options from the config section; keys missing from `options` take the schema's defaults."""
    merged = options
    if not _OPTION_KEYS <= options.keys() or not set(THRESHOLD_KEYS) <= (options.get("thresholds") or {}).keys():
        from gate.config import check_defaults, deep_merge     # reads the schema files: only when keys are missing

        merged = deep_merge(check_defaults()["drift"], options)
    rules = []
    for i, rule in enumerate(merged.get("rules") or []):
        pats = rule.get("layers")
        pats = (pats,) if isinstance(pats, str) else tuple(pats or ())
        if not pats:
            raise ConfigError(f"checks.drift.rules[{i}].layers: expected a glob or a list of globs, found none")
        rules.append(Rule(patterns=pats, thresholds={k: rule[k] for k in THRESHOLD_KEYS if k in rule}))
    layers = merged.get("layers")
    return DriftOptions(
        layers=tuple(layers) if layers else None,
        max_layers=int(merged["max_layers"]),
        thresholds={k: merged["thresholds"].get(k) for k in THRESHOLD_KEYS},
        rules=tuple(rules),
        statistic=merged["statistic"],
        percentile=float(merged["percentile"]),
        bins=int(merged["bins"]),
        cka=merged["cka"],
        cka_max_features=int(merged["cka_max_features"]),
        severity=merged["severity"],
        buffer_rows=int(merged["buffer_rows"]),
        buffer_mb=float(merged["buffer_mb"]),
        layout=tuple((str(k), str(v)) for k, v in (merged.get("layout") or {}).items()),
        min_coverage=float(merged.get("min_coverage", 0.5)),
    )


def layout_for(module: str, options: DriftOptions) -> str:
    """The `layout:` the config gives the module (the last glob that matches it), else auto."""
    out = "auto"
    for pattern, layout in options.layout:
        if glob_match(pattern, module):
            out = layout
    return out


# ------------------------------------------------------------------------------------------ judging


def thresholds_for(layer: str, module: str, options: DriftOptions) -> dict[str, float | None]:
    """Global thresholds with every matching rule laid on top, later rules winning (null switches a metric off)."""
    out = dict(options.thresholds)
    for rule in options.rules:
        if any(glob_match(p, layer) or glob_match(p, module) for p in rule.patterns):
            out.update(rule.thresholds)
    return out


def _metric_value(fig: dict[str, Any], metric: str, statistic: str) -> float | None:
    if metric in ("cosine", "rel_l2"):
        entry = fig[metric]
        return None if entry is None else entry[statistic]
    if metric == "sqnr_db":
        entry = fig[metric]
        return None if entry is None else entry["pooled"]
    return fig[metric]


def judge_layer(fig: dict[str, Any], thresholds: dict[str, float | None], options: DriftOptions) -> list[Finding]:
    """Every thresholded metric of one layer, plus a failing finding when either model produced NaN/Inf."""
    layer = fig["layer"]
    found: list[Finding] = []
    bad = {role: fig[role]["nan"] + fig[role]["inf"] for role in ROLES}
    if any(bad.values()):
        found.append(Finding(
            metric="non_finite", rule="max", status="fail", threshold=0.0, value=float(sum(bad.values())),
            baseline=float(bad["baseline"]), candidate=float(bad["candidate"]), margin=-float(sum(bad.values())),
            required=None, where=layer,
            reason=(
                f"{layer}: {bad['baseline']} NaN/Inf activation values in the baseline, {bad['candidate']} in the "
                "candidate; non-finite activations always fail"
            ),
        ))
    for metric, (key, rule) in METRICS.items():
        threshold = thresholds.get(key)
        value = _metric_value(fig, metric, options.statistic)
        if threshold is None or value is None:
            continue
        if rule == "min" and value == math.inf:
            # SQNR of an identical layer: no noise at all, the best possible value (judge() rejects any inf)
            found.append(Finding(
                metric=metric, rule=rule, status="pass", threshold=float(threshold), value=math.inf,
                margin=math.inf, required=math.inf, where=layer, decision="point",
                reason=f"{layer}: {metric}: value inf (no difference at all) is at or above min {_fmt(threshold)}",
            ))
            continue
        f = judge(
            metric=metric, rule=rule, threshold=float(threshold), value=float(value), settings=_POINT, where=layer
        )
        f = dataclasses.replace(f, reason=f"{layer}: {f.reason}")
        if f.status == "fail" and options.severity == "warn" and not math.isnan(float(value)):
            f = dataclasses.replace(f, status="warn")
        found.append(f)
    return found


def _layer_status(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else ("warn" if "warn" in statuses else "pass")


def reported_findings(per_layer: list[list[Finding]]) -> list[Finding]:
    """Every breach, plus for each metric without a breach its tightest pass (closest to the threshold)."""
    flat = [f for fs in per_layer for f in fs]
    breaches = [f for f in flat if f.status != "pass"]
    breached = {f.metric for f in breaches}
    tightest: dict[str, Finding] = {}
    for f in flat:
        if f.status == "pass" and f.metric not in breached:
            best = tightest.get(f.metric)
            if best is None or (f.margin is not None and (best.margin is None or f.margin < best.margin)):
                tightest[f.metric] = f
    return breaches + list(tightest.values())


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def _r(x: Any) -> Any:
    """A table cell: floats rounded to 6 significant digits, None kept."""
    if isinstance(x, float) and math.isfinite(x):
        return float(f"{x:.6g}")
    return x
