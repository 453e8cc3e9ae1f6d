"""Regression models (task `regression`): MAE, RMSE, R^2 and bias of both models on the same samples, per target
and averaged over targets, and the share of samples whose error grew (the regression analogue of negative flips).

Which statistic backs which rule (docs/checks/regression.md has the formulas and the measured coverage):
- MAE / RMSE (`max`, `max_increase`, `max_relative_increase`) and R^2 (`min`, `max_drop`, `max_relative_drop`):
  a seeded per-sample paired bootstrap (`decision.bootstrap_resamples` resamples, both models on the same
  resamples); each claim only when both the BCa interval (acceleration from the influence values) and the
  bootstrap-t make it (the larger p-value, the hull of the intervals): t* = (theta* - theta) / se*, se* each
  resample's delta-method standard error from the influence values under its own weights (BCa alone where se is
  0 or undefined); both widened about the estimate by a small-sample factor (Hesterberg's expanded bootstrap,
  sqrt(n / (n - 1)) t_nu / z, with nu = 2n / (kurtosis - 1) the influence values' effective degrees of freedom);
  an R^2 drop (`max_drop`, `max_relative_drop`, one target) also only when the bootstrap-t of its Fieller form
  log(A_c / (w_b A_b + w_t B)) makes it (`fieller_form`, `regression_stats.fieller_pseudo`);
- `worse_rate` `max`: the exact binomial test (Clopper-Pearson interval), as the flips check's negative flip rate;
- "the candidate's absolute errors are larger at all": the Wilcoxon signed-rank test of |e_c| - |e_b|, reported
  (details and a note), not a rule.
Every rule is decided by gate.verdict.judge from that Evidence, in the run's decision mode.

State: each sample's targets and both models' predictions, float32 (O(N x T), stated in the report), under
`rows.` keys with the global sample index `rows.index`, so shards concatenate into exactly the single run.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from gate import regression_stats as rs
from gate import stats
from gate.checks.base import ROLES, Check, Step
from gate.errors import DataError, ModelError
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import DecisionSettings, Evidence, check_summary, decision_settings, judge

LOWER_RULES = ("max", "max_increase", "max_relative_increase")
HIGHER_RULES = ("min", "max_drop", "max_relative_drop")
LABELS = {"mae": "MAE", "rmse": "RMSE", "r2": "R^2"}
#: Above this many samples the bootstrap resamples a seeded uniform subsample of this size and scales its spread
#: to the whole data by sqrt(m / N) (the cost is resamples x samples); point values are always over every sample.
BOOTSTRAP_SAMPLES = 20_000
#: Which interval decides the MAE / RMSE / R^2 rules: "hull" (BCa and bootstrap-t both), "bootstrap-t", "off" (BCa)
STUDENTIZED = "hull"
#: Whether both bootstraps' spread about the estimate is widened by `regression_stats.small_sample_expansion`
#: (Hesterberg's expanded bootstrap with the influence values' effective degrees of freedom); False: as before
EXPANDED = True
#: Whether the R^2 rules (one target at a time) take a third member, the bootstrap-t of the Fieller log-ratio
#: log(A_c / M) (`fieller_form`, `regression_stats.fieller_pseudo`); False: the hull of BCa and the bootstrap-t alone
FIELLER = True
#: The R^2 rules that take it: the two models' drops, whose denominator B mixes with both models' errors
#: (for `min`, A_c < (1 - r) B is a log-scale studentization of 1 - R^2_c only, measured to cost power for nothing)
FIELLER_RULES = ("max_drop", "max_relative_drop")
#: Steps of the bisection that inverts the Fieller member's test into the ends of its interval
FIELLER_STEPS = 30
STATE_KEYS = ("rows.index", "rows.target", "rows.baseline", "rows.candidate")


def rules_of(metric: str) -> tuple[str, ...]:
    return HIGHER_RULES if rs.HIGHER_IS_BETTER[metric] else LOWER_RULES


def compared(rule: str, base: Any, cand: Any) -> Any:
    """What a rule compares, positive when worse: the candidate (min/max), its drop / increase, or relative."""
    base = np.asarray(base, dtype=np.float64)
    cand = np.asarray(cand, dtype=np.float64)
    if rule in ("min", "max"):
        out = cand
    else:
        worse = base - cand if rule in ("max_drop", "max_relative_drop") else cand - base
        if rule in ("max_relative_drop", "max_relative_increase"):
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = worse / np.where(base > 0, base, 1.0)
            out = np.where(base > 0, rel, np.where(worse <= 0, 0.0, np.inf))
        else:
            out = worse
    return out[()] if out.ndim == 0 else out


def compared_weights(rule: str, base: Any, cand: Any) -> tuple[np.ndarray, np.ndarray]:
    """d compared / d base and d compared / d cand (elementwise over arrays of the two models' values)."""
    base = np.asarray(base, dtype=np.float64)
    cand = np.asarray(cand, dtype=np.float64)
    one = np.ones(np.broadcast(base, cand).shape)
    if rule in ("min", "max"):
        return 0.0 * one, one
    sign = 1.0 if rule in ("max_drop", "max_relative_drop") else -1.0     # drop: b - c; increase: c - b
    if rule in ("max_drop", "max_increase"):
        return sign * one, -sign * one
    # (b - c) / b = 1 - c / b: d/db = c / b^2, d/dc = -1 / b (the negatives for an increase); 0 where b <= 0
    ok = base > 0
    bb = np.where(ok, base, 1.0)
    return np.where(ok, sign * cand / (bb * bb), 0.0) * one, np.where(ok, -sign / bb, 0.0) * one


def compared_influence(rule: str, base: float, cand: float, u_base: np.ndarray, u_cand: np.ndarray) -> np.ndarray:
    """Per-sample influence of `compared` (the chain rule on the two models' influences)."""
    wb, wc = compared_weights(rule, base, cand)
    return float(wb) * u_base + float(wc) * u_cand


def fieller_form(rule: str, bound: float, r2_base: float) -> tuple[float, float] | None:
    """(w_b, w_t) with which an R^2 rule is within `bound` exactly when A_c < w_b A_b + w_t B (A = mean e^2,
    B = mean (y - ybar)^2, B > 0; R^2 = 1 - A / B), Fieller's way of testing a ratio without linearising it:
    `max_drop` d: (A_c - A_b) / B < d, so (1, d); `min` r: A_c / B < 1 - r, so (0, 1 - r); `max_relative_drop` d
    (R^2_b > 0): R^2_b - R^2_c < d R^2_b, so (1 - d, d). None for other rules, or a relative drop with R^2_b <= 0
    (compared() reads it as 0 or inf there)."""
    if rule == "max_drop":
        return 1.0, float(bound)
    if rule == "min":
        return 0.0, 1.0 - float(bound)
    if rule == "max_relative_drop" and r2_base > 0:
        return 1.0 - float(bound), float(bound)
    return None


def _arr(x: Any, *, what: str) -> np.ndarray:
    """A batch's targets or predictions as (B, T) float32 numpy (a (B,) vector is one target)."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ModelError(f"regression: {what} has shape {tuple(a.shape)}; expected (batch,) or (batch, targets)")
    return a


def _fmt(x: float) -> str:
    return "NaN" if x != x else f"{x:.4g}"


def _cell(x: float) -> float | None:
    return None if x is None or x != x else float(f"{float(x):.6g}")


def _interval_text(ci: tuple[float, float] | None) -> str:
    if ci is None or not all(math.isfinite(v) for v in ci):
        return ""
    return f"[{ci[0]:+.4g}, {ci[1]:+.4g}]"


class RegressionCheck(Check):
    name = "regression"
    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: Any) -> None:
        super().__init__(options, ctx)
        self._index: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._pred: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
        self._rows: dict[str, np.ndarray] | None = None       # concatenated (or loaded) rows, in sample order
        self._figures: dict[str, rs.ModelFigures] | None = None

    # ------------------------------------------------------------------------------------------------ state

    def update(self, step: Step) -> None:
        task = getattr(step, "task", "regression")
        if task != "regression":
            raise ModelError(f"regression: the check needs the regression task, but the run's task is {task}")
        y = _arr(step.labels, what="the targets")
        preds = {}
        for role in ROLES:
            source = (step.preds or {}).get(role)
            preds[role] = _arr(source if source is not None else step.scores[role], what=f"the {role}'s output")
            if preds[role].shape != y.shape:
                raise ModelError(
                    f"regression: the {role} predicts shape {tuple(preds[role].shape)} for a batch whose targets "
                    f"have shape {tuple(y.shape)} (one column per target)")
        if self._y and y.shape[1] != self._y[0].shape[1]:
            raise DataError(f"regression: batch {step.index} has {y.shape[1]} targets, earlier batches "
                            f"{self._y[0].shape[1]}")
        self._index.append(step.offset + np.arange(y.shape[0], dtype=np.int64))
        self._y.append(y)
        for role in ROLES:
            self._pred[role].append(preds[role])
        self._rows = None

    def _collected(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            if not self._y:
                return {"rows.index": np.zeros(0, dtype=np.int64), "rows.target": np.zeros((0, 1), np.float32),
                        "rows.baseline": np.zeros((0, 1), np.float32), "rows.candidate": np.zeros((0, 1), np.float32)}
            self._rows = {"rows.index": np.concatenate(self._index), "rows.target": np.concatenate(self._y),
                          "rows.baseline": np.concatenate(self._pred["baseline"]),
                          "rows.candidate": np.concatenate(self._pred["candidate"])}
        return self._rows

    def state(self) -> dict[str, np.ndarray]:
        """Per-sample rows (concatenated across shards, ordered by `rows.index`); float32 values held as float64."""
        rows = self._collected()
        return {"rows.index": rows["rows.index"].astype(np.int64),
                **{k: rows[k].astype(np.float64) for k in STATE_KEYS[1:]}}

    def load_state(self, merged: dict[str, np.ndarray]) -> None:
        missing = [k for k in STATE_KEYS if k not in merged]
        if missing:
            raise ValueError(f"regression state lacks {', '.join(missing)}")
        index = np.asarray(merged["rows.index"], dtype=np.int64).ravel()
        arrays = {}
        for key in STATE_KEYS[1:]:
            a = np.asarray(merged[key], dtype=np.float64)
            a = a[:, None] if a.ndim == 1 else a
            if a.ndim != 2 or a.shape[0] != index.size:
                raise ValueError(f"regression state {key} has shape {a.shape}; expected ({index.size}, targets)")
            arrays[key] = a.astype(np.float32)
        if len({a.shape[1] for a in arrays.values()}) != 1:
            raise ValueError("regression state: targets and predictions disagree on the number of targets")
        order = np.argsort(index, kind="stable")
        if index.size and np.any(np.diff(index[order]) == 0):
            raise ValueError("regression state: a sample index appears twice")
        if not np.array_equal(index[order], np.arange(index.size)):
            # a whole run's rows are samples 0..N-1; anything else was summed, not concatenated, or is incomplete
            raise ValueError("regression state: the rows are not samples 0..N-1 of one run (per-sample rows must be "
                             "concatenated across shards, not summed)")
        self._rows = {"rows.index": index[order], **{k: v[order] for k, v in arrays.items()}}
        self._index, self._y, self._pred = [], [], {role: [] for role in ROLES}
        self._figures = None

    # --------------------------------------------------------------------------------------------- measures

    def _data(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        rows = self._collected()
        n = rows["rows.index"].size
        if n == 0:
            raise DataError("regression: no samples were seen")
        y = rows["rows.target"].astype(np.float64)
        return rows["rows.index"], y, {"baseline": rows["rows.baseline"].astype(np.float64),
                                       "candidate": rows["rows.candidate"].astype(np.float64)}

    def target_names(self, t: int) -> tuple[str, ...]:
        names = tuple(getattr(self.ctx, "class_names", None) or ())
        if len(names) == t:
            return names
        return ("target",) if t == 1 else tuple(f"target[{i}]" for i in range(t))

    def _gated(self, metric: str) -> dict[str, float]:
        section = self.options.get(metric) or {}
        return {r: float(section[r]) for r in rules_of(metric) if section.get(r) is not None}

    def _worse_thresholds(self, y: np.ndarray) -> tuple[np.ndarray, str]:
        """The growth of |error| that makes a sample worse, per target: worse_by, else worse_by_relative x std."""
        absolute = self.options.get("worse_by")
        if absolute is not None:
            return np.full(y.shape[1], float(absolute)), f"worse_by {float(absolute):g} (target units)"
        rel = self.options.get("worse_by_relative")
        rel = 0.1 if rel is None else float(rel)
        return rel * y.std(axis=0), f"worse_by_relative {rel:g} x each target's standard deviation"

    def metrics(self) -> dict[str, Any]:
        """The report's `metrics` block: both models' figures and the comparison (mean over targets, per target)."""
        _, y, preds = self._data()
        fig = self._figures or {r: rs.figures(y, preds[r]) for r in ROLES}
        names = self.target_names(y.shape[1])

        def block(f: rs.ModelFigures) -> dict[str, Any]:
            out: dict[str, Any] = {m: float(f.get(m)[0]) for m in ("mae", "rmse", "r2", "bias")}
            out["per_target"] = {name: {m: float(f.get(m)[j + 1]) for m in ("mae", "rmse", "r2", "bias")}
                                 for j, name in enumerate(names)}
            return out

        b, c = fig["baseline"], fig["candidate"]
        thresholds, _ = self._worse_thresholds(y)
        worse = self._worse_mask(y, preds, thresholds)
        comparison = {"mae_increase": float(c.mae[0] - b.mae[0]), "rmse_increase": float(c.rmse[0] - b.rmse[0]),
                      "r2_drop": float(b.r2[0] - c.r2[0]), "worse_rate": float(worse.mean()),
                      "worse_samples": int(worse.sum())}
        return {"baseline": block(b), "candidate": block(c), "comparison": comparison}

    @staticmethod
    def _worse_mask(y: np.ndarray, preds: dict[str, np.ndarray], thresholds: np.ndarray) -> np.ndarray:
        growth = np.abs(preds["candidate"] - y) - np.abs(preds["baseline"] - y)
        return np.any(growth > thresholds, axis=1)

    @staticmethod
    def _replicates(y: np.ndarray, preds: dict[str, np.ndarray], fig: dict[str, rs.ModelFigures],
                    settings: DecisionSettings) -> dict[str, Any]:
        """Bootstrap replicates of every metric, both models; on a seeded subsample (spread scaled) for large N.

        Returns `reps` (baseline, candidate) scaled to the whole data, and for the bootstrap-t the resampled data
        (`y`, `preds`), their own figures `sub_fig` and the resamples' weighted sums `sums`."""
        n = y.shape[0]
        if n <= BOOTSTRAP_SAMPLES:
            ys, pb, pc = y, preds["baseline"], preds["candidate"]
        else:
            keep = np.sort(np.random.default_rng(settings.seed).choice(n, BOOTSTRAP_SAMPLES, replace=False))
            ys, pb, pc = y[keep], preds["baseline"][keep], preds["candidate"][keep]
        sums = rs.bootstrap_sums(ys, (pb, pc), resamples=settings.resamples, seed=settings.seed)
        rb, rc = rs.figures_from_sums(sums)
        boot: dict[str, Any] = {"y": ys, "preds": (pb, pc), "sums": sums, "samples": ys.shape[0],
                                "raw": (rb, rc), "data": (y, (preds["baseline"], preds["candidate"]))}
        if n <= BOOTSTRAP_SAMPLES:
            boot["reps"], boot["sub_fig"] = (rb, rc), fig
            return boot
        scale = math.sqrt(BOOTSTRAP_SAMPLES / n)
        sub = {"baseline": rs.figures(ys, pb), "candidate": rs.figures(ys, pc)}
        out = []
        for role, reps in (("baseline", rb), ("candidate", rc)):
            out.append({m: fig[role].get(m) + scale * (reps[m] - sub[role].get(m)) for m in rs.METRICS})
        boot["reps"], boot["sub_fig"] = (out[0], out[1]), sub
        return boot

    @staticmethod
    def _studentized(rule: str, col: int, metric: str, ctx: dict[str, Any], settings: DecisionSettings,
                     u: np.ndarray) -> np.ndarray | None:
        """Bootstrap-t pseudo-replicates est - t* se of the compared quantity, t* = (theta* - theta_sub) / se*
        with se* its delta-method standard error under each resample's weights and estimates (on the resampled
        data: t* is pivotal, so a subsample's serves the whole data), se from the full data's influences `u`.
        None when it is undefined (no spread, a NaN metric): the caller falls back to BCa."""
        key = (rule, col, metric)
        cache = ctx.setdefault("student", {})
        if key in cache:
            return cache[key]
        fig, boot = ctx["fig"], ctx["boot"]
        n = u.shape[0]
        est = float(compared(rule, float(fig["baseline"].get(metric)[col]), float(fig["candidate"].get(metric)[col])))
        se = math.sqrt(float(np.mean(u * u)) / n) if np.all(np.isfinite(u)) else float("nan")
        out = None
        if math.isfinite(est) and math.isfinite(se) and se > 0:
            rb, rc = boot["raw"]
            sb, sc = boot["sub_fig"]["baseline"], boot["sub_fig"]["candidate"]
            theta = compared(rule, rb[metric][:, col], rc[metric][:, col])
            theta_sub = float(compared(rule, float(sb.get(metric)[col]), float(sc.get(metric)[col])))
            wb, wc = compared_weights(rule, rb[metric][:, col], rc[metric][:, col])
            coef = (wb[:, None, None] * rs.influence_coefficients(metric, 0, boot["sums"])
                    + wc[:, None, None] * rs.influence_coefficients(metric, 1, boot["sums"]))     # (R, T, 6)
            t_count = coef.shape[1]
            if col == 0 and t_count > 1:
                # the mean over targets reads every target's basis: a second pass over the same weights
                basis = rs.influence_basis(boot["y"], boot["preds"])                            # (m, T, 6)
                se_star = rs.replicate_se(basis.reshape(basis.shape[0], -1),
                                          (coef / t_count).reshape(coef.shape[0], -1),
                                          resamples=settings.resamples, seed=settings.seed)
            else:
                j = max(col, 1) - 1
                se_star = rs.moment_se(boot["sums"], coef[:, j, :], j)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (theta - theta_sub) / se_star
            t = np.where(np.isfinite(t), t, np.nan)
            if np.any(np.isfinite(t)):
                out = est - t * se
        cache[key] = out
        return out

    # ------------------------------------------------------------------------------------------------ rules

    @staticmethod
    def _evidence(rule: str, threshold: float, col: int, metric: str, ctx: dict[str, Any],
                  settings: DecisionSettings, family: int = 1) -> Evidence:
        """Evidence of one rule on one column (0: mean over targets, j: target j) from the paired replicates: BCa's
        and the bootstrap-t's (the percentile p-values and interval of its pseudo-replicates), combined as
        STUDENTIZED says (the hull by default); BCa alone where the studentization is undefined. In a family of
        `family` comparisons (per target, Holm / BH adjusted) the small-sample widening is taken at the strictest
        level a comparison of the family is judged at (Bonferroni's), since t_nu / z grows as the level shrinks."""
        b = float(ctx["fig"]["baseline"].get(metric)[col])
        c = float(ctx["fig"]["candidate"].get(metric)[col])
        if ctx["infl"]["baseline"][metric].shape[0] < 2:
            # the bootstrap of one sample is that sample: no spread, so no claim either way at any confidence
            return Evidence(p_beyond=1.0, p_within=1.0, p_worse=None if rule == "min" else 1.0, interval=None,
                            method="none: one sample cannot be resampled")
        u = compared_influence(rule, b, c, ctx["infl"]["baseline"][metric][:, col],
                               ctx["infl"]["candidate"][metric][:, col])
        beyond_side, within_side = ("less", "greater") if rule == "min" else ("greater", "less")
        pseudo = (None if STUDENTIZED == "off"
                  else RegressionCheck._studentized(rule, col, metric, ctx, settings, u))
        reps = compared(rule, ctx["reps"][0][metric][:, col], ctx["reps"][1][metric][:, col])
        est = np.asarray(compared(rule, b, c), dtype=np.float64)
        a = rs.acceleration(u)
        reps = np.where(np.isfinite(reps), reps, np.nan)
        level = 1.0 - (1.0 - settings.confidence) / max(family, 1)
        k = rs.small_sample_expansion(u, confidence=level) if EXPANDED else 1.0
        if k != 1.0 and np.isfinite(est):
            # the same widening of both: z0 (the share below the estimate) and a are unchanged by it
            reps = est + k * (reps - est)
            pseudo = None if pseudo is None else est + k * (pseudo - est)
        beyond = float(rs.bca_p_value(reps, est, a, bound=threshold, alternative=beyond_side))
        within = float(rs.bca_p_value(reps, est, a, bound=threshold, alternative=within_side))
        worse = None
        if rule not in ("min", "max"):
            worse = float(rs.bca_p_value(reps, est, a, bound=0.0, alternative="greater"))
        lo, hi = (float(v) for v in rs.bca_interval(reps, est, a, confidence=settings.confidence))
        if pseudo is None:
            return Evidence(p_beyond=beyond, p_within=within, p_worse=worse, interval=(lo, hi),
                            method="paired bootstrap (BCa)")
        t_beyond = float(stats.bootstrap_p_value(pseudo, bound=threshold, alternative=beyond_side))
        t_within = float(stats.bootstrap_p_value(pseudo, bound=threshold, alternative=within_side))
        t_worse = None
        if rule not in ("min", "max"):
            t_worse = float(stats.bootstrap_p_value(pseudo, bound=0.0, alternative="greater"))
        t_lo, t_hi = (float(v) for v in stats.percentile_interval(pseudo, confidence=settings.confidence))
        if STUDENTIZED == "bootstrap-t":
            return Evidence(p_beyond=t_beyond, p_within=t_within, p_worse=t_worse, interval=(t_lo, t_hi),
                            method="paired bootstrap-t (studentized)")
        # each claim only when both BCa and the bootstrap-t make it: the larger p-value, the hull of the intervals
        p_beyond, p_within = max(beyond, t_beyond), max(within, t_within)
        p_worse = None if worse is None else max(worse, t_worse)
        lo, hi = min(lo, t_lo), max(hi, t_hi)
        member = RegressionCheck._fieller_member(rule, col, metric, ctx, level, b)
        if member is None:
            return Evidence(p_beyond=p_beyond, p_within=p_within, p_worse=p_worse, interval=(lo, hi),
                            method="paired bootstrap, BCa and bootstrap-t")
        # R^2: and only when the Fieller log-ratio's bootstrap-t makes it too (a third member of the hull)
        step = math.sqrt(float(np.mean(u * u)) / u.shape[0]) if np.all(np.isfinite(u)) else float("nan")
        f_lo, f_hi = RegressionCheck._fieller_interval(member, float(est), step, (1.0 - settings.confidence) / 2.0,
                                                       beyond_above=rule == "min")
        at = RegressionCheck._fieller_claims(member, threshold, (f_lo, f_hi), beyond_above=rule == "min")
        if at is not None:
            p_beyond, p_within = max(p_beyond, at[0]), max(p_within, at[1])
        if p_worse is not None:
            at0 = member(0.0)
            p_worse = p_worse if at0 is None else max(p_worse, at0[0])
        return Evidence(p_beyond=p_beyond, p_within=p_within, p_worse=p_worse,
                        interval=(min(lo, f_lo), max(hi, f_hi)),
                        method="paired bootstrap, BCa, bootstrap-t and Fieller log-ratio bootstrap-t")

    @staticmethod
    def _fieller_member(rule: str, col: int, metric: str, ctx: dict[str, Any], level: float,
                        base: float) -> Any:
        """The Fieller member of an R^2 rule's hull: bound -> (p beyond, p within) of the bootstrap-t of
        g = log(A_c / M) against 0 (`fieller_form`, `regression_stats.fieller_pseudo`; beyond is g > 0, within
        g < 0), or None at a bound where g is undefined. None (no member) unless FIELLER, the hull decides
        (STUDENTIZED "hull"), the rule is one of FIELLER_RULES and it reads one target (R^2 averaged over several
        targets is no one ratio)."""
        if not (FIELLER and STUDENTIZED == "hull" and metric == "r2" and rule in FIELLER_RULES and "boot" in ctx):
            return None
        boot = ctx["boot"]
        targets = boot["sums"]["sq_b"].shape[1]
        if col == 0 and targets > 1:
            return None
        j = max(col, 1) - 1
        cache = ctx.setdefault("fieller", {})
        if j not in cache:
            y, preds = boot["data"]
            cache[j] = rs.fieller_parts(y, preds, boot["y"], boot["preds"], boot["sums"], j)
        parts = cache[j]
        if fieller_form(rule, 0.0, base) is None:
            return None

        def member(bound: float) -> tuple[float, float] | None:
            form = fieller_form(rule, bound, base)
            got = None if form is None else rs.fieller_pseudo(parts, *form, confidence=level if EXPANDED else None)
            if got is None:
                return None
            pseudo = got[1]
            return (float(stats.bootstrap_p_value(pseudo, bound=0.0, alternative="greater")),
                    float(stats.bootstrap_p_value(pseudo, bound=0.0, alternative="less")))

        return member

    @staticmethod
    def _fieller_claims(member: Any, bound: float, interval: tuple[float, float], *,
                        beyond_above: bool) -> tuple[float, float] | None:
        """The Fieller member's (p beyond, p within) at `bound`, made monotone in the bound by its own interval: a
        bound past the end where the member first claims a side is claimed on that side too (a claim against a
        tighter bound implies it against a looser one: drop < 0.02 means drop < 0.11), with the smaller of the two
        p-values. At small n (about n <= 10) the member's p-value at the bound alone can rise again as the bound
        loosens (its weights move with the bound), which made a looser threshold turn a pass into a warn and the
        interval disagree with the verdict."""
        at = member(bound)
        lo, hi = interval
        beyond_end, within_end = (hi, lo) if beyond_above else (lo, hi)
        past_beyond = bound >= beyond_end if beyond_above else bound <= beyond_end
        past_within = bound <= within_end if beyond_above else bound >= within_end
        if not (past_beyond or past_within):
            return at
        side = 0 if past_beyond else 1               # a finite end: no bound is past an infinite one
        end = member(beyond_end if past_beyond else within_end)
        p = list(at) if at is not None else [0.0, 0.0]
        p[side] = min(p[side], 0.0 if end is None else end[side])   # an undefined member withholds nothing
        return p[0], p[1]

    @staticmethod
    def _fieller_interval(member: Any, est: float, step: float, alpha: float, *,
                          beyond_above: bool) -> tuple[float, float]:
        """The bounds at which the Fieller member claims neither side at one-sided level `alpha`: from the
        estimate outward in steps doubling from `step` (the compared value's delta-method se) to the first bound
        where the claim of that side is made (or the member is undefined, where it withholds nothing), then
        FIELLER_STEPS bisection steps; each end the claimed side of its bracket. -inf / inf where no claim is
        ever made. `beyond_above`: "beyond" is claimed above the interval (`min`), else below it (the drops)."""
        if not (math.isfinite(est) and math.isfinite(step) and step > 0):
            step = 0.01 * max(abs(est), 1.0) if math.isfinite(est) else 0.0
        if not (math.isfinite(est) and step > 0):
            return -math.inf, math.inf

        def claimed(bound: float, side: int) -> bool:
            got = member(bound)
            return got is None or got[side] < alpha

        ends = []
        for direction in (-1.0, 1.0):
            side = 0 if (direction > 0) == beyond_above else 1          # 0: beyond, 1: within
            inner, outer = est, None
            for k in range(64):
                b = est + direction * step * 2.0 ** k
                if claimed(b, side):
                    outer = b
                    break
                inner = b
            if outer is None:
                ends.append(direction * math.inf)
                continue
            for _ in range(FIELLER_STEPS):
                mid = 0.5 * (inner + outer)
                if claimed(mid, side):
                    outer = mid
                else:
                    inner = mid
            ends.append(outer)
        return ends[0], ends[1]

    def _difference_interval(self, metric: str, col: int, ctx: dict[str, Any],
                             settings: DecisionSettings) -> tuple[float, float] | None:
        """Interval of candidate - baseline (the tables' column): the same statistic as the rules (None: none)."""
        rule = "max_increase"                       # c - b for every metric (for R^2 the negative of its drop)
        sign = 1.0
        if metric == "r2":
            rule, sign = "max_drop", -1.0
        interval = self._evidence(rule, 0.0, col, metric, ctx, settings).interval
        if interval is None:
            return None
        lo, hi = interval
        return (float(lo), float(hi)) if sign > 0 else (-float(hi), -float(lo))

    def _rule_findings(self, settings: DecisionSettings, ctx: dict[str, Any],
                       names: tuple[str, ...]) -> list[Finding]:
        """The overall rules (mean over targets), then, with per_target, each target's as a Holm/BH family."""
        fig = ctx["fig"]
        findings: list[Finding] = []
        t = len(names)
        for metric in rs.METRICS:
            for rule, threshold in self._gated(metric).items():
                b, c = float(fig["baseline"].get(metric)[0]), float(fig["candidate"].get(metric)[0])
                ev = (self._evidence(rule, threshold, 0, metric, ctx, settings)
                      if settings.statistical else None)
                label = metric if t == 1 else f"{metric}[mean of {t} targets]"
                findings.append(judge(metric=label, rule=rule, threshold=threshold, value=float(compared(rule, b, c)),
                                      baseline=b, candidate=c, settings=settings, evidence=ev))
        if not self.options.get("per_target") or t == 1:
            return findings
        family = [(j, metric, rule, threshold) for j in range(1, t + 1) for metric in rs.METRICS
                  for rule, threshold in self._gated(metric).items()]
        evidence: list[Evidence | None] = [None] * len(family)
        if settings.statistical and family:
            raw = [self._evidence(rule, thr, j, metric, ctx, settings, family=len(family))
                   for j, metric, rule, thr in family]
            adj_beyond = stats.adjust(np.array([e.p_beyond for e in raw], dtype=np.float64),
                                      settings.multiple_comparisons)
            worse = np.array([np.nan if e.p_worse is None else e.p_worse for e in raw], dtype=np.float64)
            adj_worse = stats.adjust(worse, settings.multiple_comparisons)
            evidence = [Evidence(p_beyond=float(adj_beyond[i]), p_within=e.p_within,
                                 p_worse=None if e.p_worse is None else float(adj_worse[i]), interval=e.interval,
                                 method=e.method) for i, e in enumerate(raw)]
        for i, (j, metric, rule, threshold) in enumerate(family):
            b, c = float(fig["baseline"].get(metric)[j]), float(fig["candidate"].get(metric)[j])
            findings.append(judge(metric=f"{metric}[{names[j - 1]}]", rule=rule, threshold=threshold,
                                  value=float(compared(rule, b, c)), baseline=b, candidate=c, settings=settings,
                                  evidence=evidence[i], where=names[j - 1]))
        return findings

    def _worse_rate_finding(self, worse: np.ndarray, settings: DecisionSettings) -> Finding | None:
        threshold = (self.options.get("worse_rate") or {}).get("max")
        if threshold is None:
            return None
        from gate.checks.classification import rate_evidence

        k, n = int(worse.sum()), int(worse.size)
        ev = (rate_evidence(k, n, threshold=float(threshold), rule="max", confidence=settings.confidence)
              if settings.statistical else None)
        return judge(metric="worse_rate", rule="max", threshold=float(threshold), value=k / n, settings=settings,
                     evidence=ev)

    # ---------------------------------------------------------------------------------------------- compute

    def compute(self) -> CheckResult:
        settings = decision_settings(self.ctx.config, self.options)
        index, y, preds = self._data()
        n, t = y.shape
        names = self.target_names(t)
        with np.errstate(invalid="ignore", over="ignore"):
            fig = {r: rs.figures(y, preds[r]) for r in ROLES}
            self._figures = fig
            ctx: dict[str, Any] = {"fig": fig}
            resampled = 0
            finite = all(np.isfinite(preds[r]).all() for r in ROLES) and np.isfinite(y).all()
            if settings.statistical:
                ctx["infl"] = {r: rs.influences(y, preds[r], fig[r]) for r in ROLES}
                boot = self._replicates(y, preds, fig, settings)
                ctx["boot"], ctx["reps"], resampled = boot, boot["reps"], boot["samples"]
            findings = self._rule_findings(settings, ctx, names)
            thresholds, worse_how = self._worse_thresholds(y)
            worse = self._worse_mask(y, preds, thresholds)
            wf = self._worse_rate_finding(worse, settings)
            findings += [wf] if wf is not None else []
            growth = np.abs(preds["candidate"] - y) - np.abs(preds["baseline"] - y)
            abs_growth = np.abs(preds["candidate"] - y).mean(axis=1) - np.abs(preds["baseline"] - y).mean(axis=1)
            wil = rs.wilcoxon_signed_rank(abs_growth) if finite else None
        tables = (self._metrics_table(fig, names, ctx, settings), self._growth_table(index, y, preds, growth, names))
        kept = 3 * n * t * 4 + n * 8
        notes = [f"kept per sample: the targets and both models' predictions, {n} x {t} float32 each, and the sample "
                 f"index: {kept / 2 ** 20:.2f} MiB (O(N)); the per-sample error difference |e_c| - |e_b| is "
                 "derived from them"]
        if wil is not None:
            notes.append(
                f"Wilcoxon signed-rank test of |e_c| - |e_b| (mean over targets per sample, {wil.n} non-zero "
                f"differences, {wil.method}): one-sided p {wil.p_greater:.3g} that the candidate's absolute errors "
                f"tend to be larger, two-sided p {wil.p_two_sided:.3g} (reported, not a rule)")
        if not finite:
            notes.append("a target or a prediction is NaN or infinite: every metric that reads it is NaN, which fails")
        if settings.statistical and resampled < n:
            notes.append(f"the bootstrap resampled a seeded uniform subsample of {resampled} of the {n} samples, its "
                         "spread scaled to the whole data by sqrt(subsample / N); point values are over every sample")
        sst_zero = [names[j] for j in range(t) if float(np.ptp(y[:, j])) == 0.0]
        if sst_zero:
            notes.append(f"constant target ({', '.join(sst_zero)}): R^2 is undefined there and reported as "
                         "scikit-learn does (1 for a perfect fit, else 0)")
        details: dict[str, Any] = {
            "decision": settings.mode,
            "confidence": settings.confidence,
            "num_samples": n,
            "num_targets": t,
            "targets": list(names),
            "bootstrap_resamples": settings.resamples if settings.statistical else 0,
            "bootstrap_samples": resampled,
            "interval": "the hull of BCa and the bootstrap-t (theta - q(t*) se with t* = (theta* - theta) / se*, "
                        "se* each resample's standard error from the influence values under its weights; BCa "
                        "where se is 0 or undefined), both widened about the estimate by the small-sample "
                        "factor sqrt(n / (n - 1)) t_nu / z, nu = 2n / (kurtosis - 1) of the influence values; "
                        "an R^2 drop of one target also the bootstrap-t of its Fieller log-ratio "
                        "log(A_c / (w_b A_b + w_t B)) (docs/checks/regression.md)",
            "metrics": self.metrics(),
            "worse": {"definition": f"a sample whose |error| grows by more than the threshold in any target "
                                    f"({worse_how})",
                      "thresholds": {name: float(thresholds[j]) for j, name in enumerate(names)},
                      "samples": int(worse.sum()), "rate": float(worse.mean())},
            "wilcoxon": None if wil is None else {
                "statistic": wil.statistic, "n": wil.n, "z": wil.z, "p_greater": wil.p_greater,
                "p_less": wil.p_less, "p_two_sided": wil.p_two_sided, "method": wil.method, "zero_method": "wilcox",
                "means": "one-sided p_greater: H1 the candidate's absolute errors tend to be larger than the "
                         "baseline's (per sample, mean over targets)"},
            "kept_per_sample": {"samples": n, "targets": t, "dtype": "float32", "bytes": kept},
        }
        b, c = fig["baseline"], fig["candidate"]
        passed = (f"MAE {_fmt(c.mae[0])} vs baseline {_fmt(b.mae[0])}, RMSE {_fmt(c.rmse[0])} vs {_fmt(b.rmse[0])}, "
                  f"R^2 {c.r2[0]:.4f} vs {b.r2[0]:.4f}: within every threshold")
        status, summary = check_summary(self.name, findings, passed=passed)
        named = list(dict.fromkeys(f.metric for f in findings if f.status == status))
        if status != "pass" and len(named) > 1:
            # say every metric that is beyond first: the worst reason alone names one of them
            summary = f"{status}ing on {', '.join(named)}: {summary}"         # "failing on ..." / "warning on ..."
        return CheckResult(name=self.name, status=status, summary=summary, findings=tuple(findings), tables=tables,
                           details=details, notes=tuple(notes))

    def _metrics_table(self, fig: dict[str, rs.ModelFigures], names: tuple[str, ...], ctx: dict[str, Any],
                       settings: DecisionSettings) -> Table:
        ci_head = f" {settings.confidence:.0%} CI" if settings.statistical else ""
        headers = ["target"]
        for m in rs.METRICS:
            headers += [f"{LABELS[m]} b", f"{LABELS[m]} c", f"{LABELS[m]} delta" + (" [CI]" if ci_head else "")]
        headers += ["bias b", "bias c"]
        rows = []
        cols = [(0, f"mean of {len(names)} targets")] if len(names) > 1 else []
        cols += [(j + 1, name) for j, name in enumerate(names)]
        for col, label in cols:
            row: list[Any] = [label]
            for m in rs.METRICS:
                bv, cv = float(fig["baseline"].get(m)[col]), float(fig["candidate"].get(m)[col])
                ci = self._difference_interval(m, col, ctx, settings) if "reps" in ctx else None
                delta = f"{cv - bv:+.4g}" if math.isfinite(cv - bv) else "NaN"
                row += [_cell(bv), _cell(cv), (delta + " " + _interval_text(ci)).strip()]
            row += [_cell(float(fig["baseline"].bias[col])), _cell(float(fig["candidate"].bias[col]))]
            rows.append(tuple(row))
        return Table(title="Regression metrics per target (b: baseline, c: candidate; delta = c - b"
                           + (f", {settings.confidence:.0%} bootstrap-t interval" if ci_head else "") + ")",
                     headers=tuple(headers), rows=tuple(rows))

    def _growth_table(self, index: np.ndarray, y: np.ndarray, preds: dict[str, np.ndarray], growth: np.ndarray,
                      names: tuple[str, ...]) -> Table:
        top = int(self.options.get("top", 10))
        flat = np.where(np.isfinite(growth), growth, np.inf).ravel()
        k = min(top, flat.size)
        pick = np.argpartition(-flat, k - 1)[:k] if k else np.array([], dtype=np.int64)
        pick = pick[np.lexsort((pick, -flat[pick]))]
        rows = []
        t = y.shape[1]
        for rank, p in enumerate(pick, 1):
            i, j = divmod(int(p), t)
            if not flat[p] > 0:
                break
            eb, ec = abs(preds["baseline"][i, j] - y[i, j]), abs(preds["candidate"][i, j] - y[i, j])
            rows.append((rank, int(index[i]), names[j], _cell(y[i, j]), _cell(preds["baseline"][i, j]),
                         _cell(preds["candidate"][i, j]), _cell(eb), _cell(ec), _cell(float(growth[i, j]))))
        return Table(title=f"Largest error growths (top {top} samples by |e_c| - |e_b|; sample = 0-based index in "
                           "the evaluation data)",
                     headers=("rank", "sample", "target", "target value", "baseline", "candidate", "|e_b|", "|e_c|",
                              "growth"),
                     rows=tuple(rows))
