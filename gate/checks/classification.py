"""Accuracy, per-class metrics and prediction flips: all computed from the run's paired counts (no extra state).

The paired bootstrap (multinomial resampling of the joint count table) is drawn once per run and shared by the
three checks, so their intervals describe the same resamples.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binom

from gate import stats
from gate.checks.base import Check
from gate.metrics import PairedCounts, comparison_metrics, model_metrics, point_metrics
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import DecisionSettings, check_summary, decision_settings, judge

HIGHER_RULES = ("min", "max_drop", "max_relative_drop")
MAX_RESAMPLES = 20000


def replicates(ctx: Any, settings: DecisionSettings, *, resamples: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap replicates of every metric, for both models and between them (cached on the run context).

    Single-threaded BLAS: these are many small products, which a busy multi-threaded BLAS makes ~50x slower.
    """
    count = max(resamples or 0, settings.resamples)
    key = ("bootstrap", count, settings.seed)
    if key not in ctx.extras:
        from threadpoolctl import threadpool_limits

        cells = ctx.counts.cells()
        with threadpool_limits(limits=1, user_api="blas"):
            weights = stats.bootstrap_weights(cells.counts, resamples=count, seed=settings.seed)
            ctx.extras[key] = {
                "baseline": model_metrics(cells, cells.pb, weights, empty=np.nan),
                "candidate": model_metrics(cells, cells.pc, weights, empty=np.nan),
                "comparison": comparison_metrics(cells, weights, empty=np.nan),
            }
    return ctx.extras[key]


def _drop_value(rule: str, base: float, cand: float) -> float:
    if rule == "max_relative_drop":
        return (base - cand) / base if base > 0 else (0.0 if cand >= base else math.inf)
    return base - cand


def _drop_reps(rule: str, base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    if rule == "max_relative_drop":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(base > 0, (base - cand) / np.where(base > 0, base, 1.0), np.nan)
    return base - cand


def _interval(reps: np.ndarray, settings: DecisionSettings) -> tuple[float, float]:
    lo, hi = stats.percentile_interval(reps, confidence=settings.confidence)
    return float(lo), float(hi)


class _PairedCheck(Check):
    """Shared plumbing: settings, point estimates and (in non-inferiority mode) bootstrap replicates."""

    def _prepare(
        self, *, family_size: int = 1
    ) -> tuple[DecisionSettings, dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]] | None]:
        settings = decision_settings(self.ctx.config, self.options)
        counts: PairedCounts = self.ctx.counts
        if "point_metrics" not in self.ctx.extras:  # shared by the three checks, like the bootstrap
            self.ctx.extras["point_metrics"] = point_metrics(counts)
        point = self.ctx.extras["point_metrics"]
        reps = None
        if settings.mode == "non-inferiority":
            # A Holm family of F comparisons can only fail a member if 1/(R+1) < alpha/F: raise R to match.
            needed = stats.min_resamples(family_size, confidence=settings.confidence) + 1
            reps = replicates(self.ctx, settings, resamples=min(needed, MAX_RESAMPLES))
        return settings, point, reps

    def _higher_is_better(
        self,
        *,
        metric: str,
        thresholds: dict[str, Any],
        base: float,
        cand: float,
        reps_b: np.ndarray | None,
        reps_c: np.ndarray | None,
        settings: DecisionSettings,
        floor_counts: tuple[int, int] | None = None,
        where: str | None = None,
        p_adjusted: dict[str, float] | None = None,
        p_value: float | None = None,
        intervals: dict[str, tuple[float, float]] | None = None,
    ) -> list[Finding]:
        """Findings for min / max_drop / max_relative_drop; `intervals` are precomputed ones (per-class columns)."""
        out = []
        for rule in HIGHER_RULES:
            threshold = thresholds.get(rule)
            if threshold is None:
                continue
            interval = (intervals or {}).get(rule)
            if interval is not None:
                value = cand if rule == "min" else _drop_value(rule, base, cand)
            elif rule == "min":
                value = cand
                if floor_counts is not None:
                    interval = stats.wilson_interval(*floor_counts, confidence=settings.confidence)
                elif reps_c is not None:
                    interval = _interval(reps_c, settings)
            else:
                value = _drop_value(rule, base, cand)
                if reps_b is not None and reps_c is not None:
                    interval = _interval(_drop_reps(rule, reps_b, reps_c), settings)
            out.append(
                judge(
                    metric=metric, rule=rule, threshold=float(threshold), value=float(value), baseline=base,
                    candidate=cand, settings=settings, interval=interval, where=where,
                    p_value=p_value if rule != "min" else None,
                    p_adjusted=(p_adjusted or {}).get(rule),
                )
            )
        return out


class AccuracyCheck(_PairedCheck):
    name = "accuracy"

    def compute(self) -> CheckResult:
        settings, point, reps = self._prepare()
        counts = self.ctx.counts
        n = counts.total
        comp = point["comparison"]
        neg, pos = int(round(comp["negative_flips"])), int(round(comp["positive_flips"]))
        mcnemar_p = stats.mcnemar_exact(neg, pos)
        findings: list[Finding] = []
        rows = []
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            base = float(point["baseline"][metric])
            cand = float(point["candidate"][metric])
            floor_counts = (int(round(cand * n)), n) if metric == "accuracy" else None
            findings += self._higher_is_better(
                metric=metric,
                thresholds=self.options.get(metric) or {},
                base=base,
                cand=cand,
                reps_b=reps["baseline"][metric] if reps else None,
                reps_c=reps["candidate"][metric] if reps else None,
                settings=settings,
                floor_counts=floor_counts,
                p_value=mcnemar_p if metric == "accuracy" else None,
            )
            ci = ""
            if reps:
                lo, hi = _interval(reps["candidate"][metric] - reps["baseline"][metric], settings)
                ci = f"[{lo:+.4f}, {hi:+.4f}]"
            rows.append((metric, round(base, 4), round(cand, 4), f"{cand - base:+.4f}", ci))
        notes = self._power_notes(n=n, neg=neg, pos=pos, settings=settings)
        status, summary = check_summary(self.name, findings, passed=(
            f"accuracy {point['candidate']['accuracy']:.4f} vs baseline {point['baseline']['accuracy']:.4f} "
            f"({point['candidate']['accuracy'] - point['baseline']['accuracy']:+.4f}) is within every threshold"
        ))
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Overall metrics",
                headers=("metric", "baseline", "candidate", "delta", f"{settings.confidence:.0%} CI of delta" if reps else ""),
                rows=tuple(rows),
            ),),
            details={
                "decision": settings.mode,
                "confidence": settings.confidence,
                "mcnemar_p_value": mcnemar_p,
                "negative_flips": neg,
                "positive_flips": pos,
                "num_samples": n,
            },
            notes=tuple(notes),
        )

    def _power_notes(self, *, n: int, neg: int, pos: int, settings: DecisionSettings) -> list[str]:
        max_drop = (self.options.get("accuracy") or {}).get("max_drop")
        if max_drop is None or n == 0:
            return []
        discordance = max((neg + pos) / n, 1.0 / n)
        mdd = stats.min_detectable_drop(n, discordance=discordance, confidence=settings.confidence)
        if mdd <= max_drop:
            return []
        need = stats.required_samples(max_drop, discordance=discordance, confidence=settings.confidence)
        return [
            f"power: with {n} samples and {discordance:.1%} of them discordant, the smallest accuracy drop this data "
            f"can detect is {mdd:.4f}, larger than max_drop {max_drop:g}; about {need} samples "
            f"({need / n:.1f}x the data) would decide a drop of {max_drop:g}"
        ]


def _class_selection(spec: Any, class_names: tuple[str, ...], *, where: str) -> list[int]:
    if spec in (None, "all"):
        return list(range(len(class_names)))
    out = []
    for item in spec:
        if isinstance(item, int) and 0 <= item < len(class_names):
            out.append(item)
        elif str(item) in class_names:
            out.append(class_names.index(str(item)))
        else:
            from gate.errors import ConfigError

            raise ConfigError(
                f"{where}: unknown class {item!r} (classes: {', '.join(class_names[:20])})"
            )
    return out


class PerClassCheck(_PairedCheck):
    name = "per_class"
    METRICS = ("recall", "precision", "f1")

    def _rules_by_class(self) -> dict[int, dict[str, dict[str, Any]]]:
        names = self.ctx.class_names
        rules: dict[int, dict[str, dict[str, Any]]] = {}
        where = self.ctx.config.where("checks.per_class.classes")
        for k in _class_selection(self.options.get("classes"), names, where=where):
            rules[k] = {m: dict(self.options.get(m) or {}) for m in self.METRICS}
        for override in self.options.get("overrides") or []:
            for k in _class_selection(override["classes"], names, where=where.replace(".classes", ".overrides")):
                entry = rules.setdefault(k, {m: {} for m in self.METRICS})
                for m in self.METRICS:
                    entry[m].update(override.get(m) or {})
        return rules

    def compute(self) -> CheckResult:
        rules = self._rules_by_class()
        family_size = sum(
            1 for by_metric in rules.values() for th in by_metric.values() for r in HIGHER_RULES if th.get(r) is not None
        )
        settings, point, reps = self._prepare(family_size=family_size)
        names = self.ctx.class_names
        pb, pc = point["baseline"], point["candidate"]
        # One family: every (class, metric, rule) comparison; the fail side is multiplicity-adjusted.
        family: list[tuple[int, str, str, float]] = []
        for k, by_metric in rules.items():
            if pb["support"][k] <= 0:
                continue
            for m, th in by_metric.items():
                for rule in HIGHER_RULES:
                    if th.get(rule) is not None:
                        family.append((k, m, rule, float(th[rule])))
        adjusted: dict[tuple[int, str, str], float] = {}
        column_intervals: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        if reps is not None:
            # One quantile call per (metric, rule) over all classes at once, not one per class.
            for m, rule in {(m, rule) for _, m, rule, _ in family}:
                col = reps["candidate"][m] if rule == "min" else _drop_reps(rule, reps["baseline"][m], reps["candidate"][m])
                column_intervals[(m, rule)] = stats.percentile_interval(col, confidence=settings.confidence)
        if reps is not None and family:
            raw = []
            for k, m, rule, thr in family:
                if rule == "min":
                    raw.append(float(stats.bootstrap_p_value(reps["candidate"][m][:, k], bound=thr, alternative="less")))
                else:
                    d = _drop_reps(rule, reps["baseline"][m][:, k], reps["candidate"][m][:, k])
                    raw.append(float(stats.bootstrap_p_value(d, bound=thr, alternative="greater")))
            adj = stats.adjust(np.asarray(raw), settings.multiple_comparisons)
            adjusted = {(k, m, rule): float(p) for (k, m, rule, _), p in zip(family, adj)}
        findings: list[Finding] = []
        for k, by_metric in rules.items():
            if pb["support"][k] <= 0:
                continue
            for m, th in by_metric.items():
                findings += self._higher_is_better(
                    metric=f"{m}[{names[k]}]",
                    thresholds=th,
                    base=float(pb[m][k]),
                    cand=float(pc[m][k]),
                    reps_b=None,
                    reps_c=None,
                    settings=settings,
                    where=names[k],
                    p_adjusted={r: adjusted[(k, m, r)] for r in HIGHER_RULES if (k, m, r) in adjusted} or None,
                    intervals={
                        r: (float(lo[k]), float(hi[k]))
                        for (mm, r), (lo, hi) in column_intervals.items()
                        if mm == m
                    },
                )
        rows = tuple(
            (
                names[k],
                int(round(pb["support"][k])),
                round(float(pb["precision"][k]), 4), round(float(pc["precision"][k]), 4),
                round(float(pb["recall"][k]), 4), round(float(pc["recall"][k]), 4),
                f"{pc['recall'][k] - pb['recall'][k]:+.4f}",
                round(float(pb["f1"][k]), 4), round(float(pc["f1"][k]), 4),
                f"{pc['f1'][k] - pb['f1'][k]:+.4f}",
            )
            for k in range(len(names))
        )
        status, summary = check_summary(self.name, findings, passed=f"all {len(rules)} classes are within their thresholds")
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Per-class metrics (baseline -> candidate)",
                headers=("class", "support", "precision b", "precision c", "recall b", "recall c", "recall delta",
                         "f1 b", "f1 c", "f1 delta"),
                rows=rows,
            ),),
            details={
                "decision": settings.mode,
                "multiple_comparisons": settings.multiple_comparisons if reps is not None else "none",
                "comparisons": len(family),
            },
        )


class FlipsCheck(_PairedCheck):
    name = "flips"

    def compute(self) -> CheckResult:
        settings, point, _ = self._prepare()
        names = self.ctx.class_names
        comp = point["comparison"]
        n = self.ctx.counts.total
        neg = int(round(comp["negative_flips"]))
        agree = int(round(comp["agreement"] * n))
        interval = settings.mode == "non-inferiority"
        findings: list[Finding] = []
        th = (self.options.get("negative_flip_rate") or {}).get("max")
        if th is not None:
            findings.append(judge(
                metric="negative_flip_rate", rule="max", threshold=float(th), value=neg / n, settings=settings,
                interval=stats.wilson_interval(neg, n, confidence=settings.confidence) if interval else None,
            ))
        th = (self.options.get("agreement") or {}).get("min")
        if th is not None:
            findings.append(judge(
                metric="agreement", rule="min", threshold=float(th), value=agree / n, settings=settings,
                interval=stats.wilson_interval(agree, n, confidence=settings.confidence) if interval else None,
            ))
        th = (self.options.get("per_class_negative_flip_rate") or {}).get("max")
        support = point["baseline"]["support"]
        if th is not None:
            ks = [k for k in range(len(names)) if support[k] > 0]
            negs = [int(round(comp["per_class_negative_flips"][k])) for k in ks]
            sups = [int(round(support[k])) for k in ks]
            adjusted = None
            if interval and ks:
                # exact binomial p-value of "this class's flip rate is above the ceiling"
                raw = binom.sf(np.asarray(negs) - 1, np.asarray(sups), float(th))
                adjusted = stats.adjust(raw, settings.multiple_comparisons)
            for i, k in enumerate(ks):
                findings.append(judge(
                    metric=f"negative_flip_rate[{names[k]}]", rule="max", threshold=float(th),
                    value=negs[i] / sups[i], settings=settings, where=names[k],
                    interval=stats.wilson_interval(negs[i], sups[i], confidence=settings.confidence) if interval else None,
                    p_adjusted=float(adjusted[i]) if adjusted is not None else None,
                ))
        rows = tuple(
            (names[k], int(round(support[k])), int(round(comp["per_class_negative_flips"][k])),
             int(round(comp["per_class_positive_flips"][k])), round(float(comp["per_class_negative_flip_rate"][k]), 4))
            for k in range(len(names))
        )
        status, summary = check_summary(self.name, findings, passed=(
            f"negative flip rate {neg / n:.4f} ({neg} of {n} samples the baseline got right), "
            f"agreement {agree / n:.4f}"
        ))
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(
                title="Flips by true class (negative: baseline right, candidate wrong)",
                headers=("class", "support", "negative flips", "positive flips", "negative flip rate"),
                rows=rows,
            ),),
            details={
                "negative_flips": neg,
                "positive_flips": int(round(comp["positive_flips"])),
                "negative_flip_rate": neg / n,
                "positive_flip_rate": float(comp["positive_flip_rate"]),
                "agreement": agree / n,
            },
        )
