"""The scores check's ranking metrics and curves on many random cases against independent computations: scikit-learn
(roc_auc_score, average_precision_score, log_loss, brier_score_loss, top_k_accuracy_score) on the same kept
log-odds, and DeLong's components and average precision's influence written out here as O(n^2) loops. The cases
mix continuous scores (no ties: the one-position-runs path) with rounded ones (ties), +-inf and NaN logits,
float16 / float32 / float64 logits, one batch and many, streamed (`bins`, `max_samples`) and sharded runs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss, roc_auc_score,
                             top_k_accuracy_score)

from gate import score_metrics as sm
from gate.checks.base import RunContext, Step
from gate.checks.scores import ScoresCheck
from gate.config import build_config
from tests.unit.test_scores import fed_check

ROLES = ("baseline", "candidate")


def case(seed: int, *, ties: bool | None = None):
    """Labels and two models' logits (a paired design) of a random size, width, dtype and tie pattern."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([2, 3, 5, 10]))
    n = int(rng.integers(30, 400))
    y = rng.integers(0, k, n)
    common = rng.standard_normal((n, k)) * rng.uniform(0.5, 3.0)
    z = [common + 0.5 * rng.standard_normal((n, k)) for _ in ROLES]
    for m in z:
        m[np.arange(n), y] += rng.uniform(0.0, 2.5)
    if ties if ties is not None else rng.random() < 0.5:
        step = float(rng.choice([0.5, 1.0]))
        z = [np.round(m / step) * step for m in z]
    dtype = rng.choice([np.float16, np.float32, np.float64])
    return y, z[0].astype(dtype), z[1].astype(dtype)


def kept_log_odds(z: np.ndarray) -> np.ndarray:
    """The log-odds the check keeps, computed independently: z_k - logsumexp of the other logits, as float32."""
    z = z.astype(np.float64)
    out = np.empty_like(z)
    for c in range(z.shape[1]):
        out[:, c] = z[:, c] - logsumexp(np.delete(z, c, axis=1), axis=1)
    return out.astype(np.float32).astype(np.float64)


def run(y, zb, zc, *, options=None, batch=None):
    check = fed_check(y, zb, zc, options=options, batch=batch)
    return check, check.compute()


def ranked(y: np.ndarray, k: int) -> list[int]:
    support = np.bincount(y, minlength=k)
    if k == 2:
        return [1] if 0 < support[1] < y.size else []
    return [c for c in range(k) if 0 < support[c] < y.size]


def reference_auc(s: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC and DeLong influence from the Mann-Whitney kernel (ties half), O(n^2)."""
    n, n1 = pos.size, int(pos.sum())
    kernel = (s[pos][:, None] > s[~pos][None, :]) + 0.5 * (s[pos][:, None] == s[~pos][None, :])
    auc = kernel.mean()
    psi = np.empty(n)
    psi[pos] = n / n1 * (kernel.mean(axis=1) - auc)
    psi[~pos] = n / (n - n1) * (kernel.mean(axis=0) - auc)
    return auc, psi


def reference_ap(s: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray]:
    """Average precision and its influence, each term of docs/checks/scores.md's formula counted directly, O(n^2):
    h(t) = A(t) / B(t), psi_k = (y_k h(s_k) - AP pi + (1/n) sum_{positive i, s_i <= s_k} (y_k - h(s_i)) / B(s_i)
    - AP (y_k - pi)) / pi."""
    n = pos.size
    at_or_above = s[None, :] >= s[:, None]             # [i, j]: sample j scores >= sample i
    b = at_or_above.mean(axis=1)
    h = (at_or_above & pos[None, :]).mean(axis=1) / b
    pi = pos.mean()
    ap = h[pos].mean()
    psi = np.empty(n)
    for k in range(n):
        below = pos & (s <= s[k])
        psi[k] = (pos[k] * h[k] - ap * pi + np.sum((pos[k] - h[below]) / b[below]) / n - ap * (pos[k] - pi)) / pi
    return ap, psi


@pytest.mark.parametrize("seed", range(24))
def test_ranking_influences_are_the_quadratic_references_with_and_without_ties(seed):
    """ROC-AUC's DeLong influence and PR-AUC's influence per class, and their macro averages over both models at
    once, against the O(n^2) references; each class's value against scikit-learn."""
    y, zb, zc = case(seed, ties=seed % 2 == 1)
    odds = [kept_log_odds(zb), kept_log_odds(zc)]
    k = zb.shape[1]
    classes = ranked(y, k)
    roc, pr = sm.ranking_influences(sm.Rankings(odds, y))
    for m, (r, p) in enumerate(zip(roc, pr)):
        aucs, aps, psi_auc, psi_ap = [], [], np.zeros(y.size), np.zeros(y.size)
        for c in classes:
            pos = y == c
            auc, pa = reference_auc(odds[m][:, c], pos)
            ap, pp = reference_ap(odds[m][:, c], pos)
            assert auc == pytest.approx(roc_auc_score(pos, odds[m][:, c]), rel=1e-12)
            assert ap == pytest.approx(average_precision_score(pos, odds[m][:, c]), rel=1e-12)
            aucs.append(auc)
            aps.append(ap)
            psi_auc += pa
            psi_ap += pp
        assert r.parts == pytest.approx(aucs, rel=1e-12) and p.parts == pytest.approx(aps, rel=1e-12)
        assert r.value == pytest.approx(np.mean(aucs), rel=1e-12)
        assert p.value == pytest.approx(np.mean(aps), rel=1e-12)
        assert r.psi == pytest.approx(psi_auc / len(classes), rel=1e-9, abs=1e-12)
        assert p.psi == pytest.approx(psi_ap / len(classes), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(100, 124))
def test_every_metric_and_every_curve_area_is_scikit_learns_on_the_kept_log_odds(seed):
    """The report's metrics, and each drawn curve's ROC-AUC and average precision (now the ranking metrics' own
    per-class values), against scikit-learn on the log-odds the check keeps; the table's interval is finite."""
    y, zb, zc = case(seed)
    k = zb.shape[1]
    rng = np.random.default_rng(seed)
    _, result = run(y, zb, zc, options={"top_k": 2} if k > 2 else {},
                    batch=int(rng.choice([len(y), 37, 64])))
    metrics = result.details["metrics"]
    classes = ranked(y, k)
    for i, (role, z) in enumerate(zip(ROLES, (zb, zc))):
        odds = kept_log_odds(z)
        p = 1.0 / (1.0 + np.exp(-odds))
        want_auc = np.mean([roc_auc_score(y == c, odds[:, c]) for c in classes])
        want_ap = np.mean([average_precision_score(y == c, odds[:, c]) for c in classes])
        assert metrics["roc_auc"][role] == pytest.approx(want_auc, rel=1e-9)
        assert metrics["pr_auc"][role] == pytest.approx(want_ap, rel=1e-9)
        soft = np.exp(z.astype(np.float64) - logsumexp(z.astype(np.float64), axis=1, keepdims=True))
        assert metrics["log_loss"][role] == pytest.approx(log_loss(y, soft, labels=list(range(k))), rel=1e-5)
        if k == 2:
            assert metrics["brier"][role] == pytest.approx(brier_score_loss(y, p[:, 1]), rel=1e-5)
        else:
            assert metrics["brier"][role] == pytest.approx(brier_score_loss(y, soft, labels=list(range(k))),
                                                           rel=1e-5)
            true = odds[np.arange(y.size), y]           # a tie with the true class counts for it
            assert metrics["top_2_accuracy"][role] == np.mean(np.sum(odds > true[:, None], axis=1) < 2)
            if all(len(set(row)) == k for row in odds.tolist()):
                assert metrics["top_2_accuracy"][role] == pytest.approx(
                    top_k_accuracy_score(y, odds, k=2, labels=list(range(k))), rel=1e-12)
        drawn = result.details["curves"]["classes"]
        assert [entry["index"] for entry in drawn] == classes
        for entry in drawn:
            c = entry["index"]
            assert entry[role]["roc"]["auc"] == pytest.approx(round(roc_auc_score(y == c, odds[:, c]), 6),
                                                              abs=1.01e-6)
            assert entry[role]["pr"]["average_precision"] == pytest.approx(
                round(average_precision_score(y == c, odds[:, c]), 6), abs=1.01e-6)
    row = next(r for r in result.tables[0].rows if r[0] == "roc_auc")
    assert row[4].startswith("[")


@pytest.mark.parametrize("seed", range(200, 208))
def test_infinite_logits_tie_and_a_nan_fails_as_before(seed):
    """A -inf logit gives a -inf log-odds, and those tie (the O(n^2) references agree; scikit-learn refuses them);
    a +inf logit gives inf - inf, a NaN, which ranks nothing: that model's ranking metrics are NaN and its class
    draws no curve."""
    y, zb, zc = case(seed, ties=False)
    zb, zc = zb.astype(np.float32), zc.astype(np.float32)
    k = zb.shape[1]
    rng = np.random.default_rng(seed)
    rows = rng.choice(y.size, 6, replace=False)
    zb[rows[:3], 0] = np.inf                 # the check's log-odds: inf - inf, NaN
    zc[rows[3:], rng.integers(0, k)] = -np.inf
    _, result = run(y, zb, zc)
    metrics = result.details["metrics"]
    assert math.isnan(metrics["roc_auc"]["baseline"]) and math.isnan(metrics["pr_auc"]["baseline"])
    odds = kept_log_odds(zc)
    classes = ranked(y, k)
    assert np.isinf(odds).any()               # scikit-learn refuses infinite scores: the references here
    assert metrics["roc_auc"]["candidate"] == pytest.approx(
        np.mean([reference_auc(odds[:, c], y == c)[0] for c in classes]), rel=1e-9)
    assert metrics["pr_auc"]["candidate"] == pytest.approx(
        np.mean([reference_ap(odds[:, c], y == c)[0] for c in classes]), rel=1e-9)
    assert result.status == "pass"          # nothing gated
    assert all(entry["index"] != 0 for entry in result.details["curves"]["classes"]) or k == 2


@pytest.mark.parametrize("options", [{"bins": 200}, {"max_samples": 150}])
@pytest.mark.parametrize("seed", range(300, 304))
def test_streamed_and_sharded_runs_agree_with_the_single_exact_computation(options, seed):
    """Streamed runs: the binned ROC-AUC is scikit-learn's on the binned probabilities; sharded exact runs merge
    to the single run's report exactly."""
    y, zb, zc = case(seed)
    k = zb.shape[1]
    check, result = run(y, zb, zc, options={**options, "roc_auc": {"max_drop": 0.05}}, batch=50)
    if "bins" in options:
        for role, z in zip(ROLES, (zb, zc)):
            p = 1.0 / (1.0 + np.exp(-kept_log_odds(z)))
            binned = np.minimum(np.floor(p * 200), 199)
            want = np.mean([roc_auc_score(y == c, binned[:, c]) for c in ranked(y, k)])
            assert result.details["metrics"]["roc_auc"][role] == pytest.approx(want, rel=1e-9)
    config = build_config({"checks": {"scores": {"enabled": True, "roc_auc": {"max_drop": 0.05}}}})
    models = {r: SimpleNamespace(output="logits") for r in ROLES}
    names = tuple(str(i) for i in range(k))
    shards = [ScoresCheck(config.check("scores"), RunContext(config=config, models=models, class_names=names,
                                                               device=None)) for _ in range(2)]
    for i, start in enumerate(range(0, len(y), 40)):
        sl = slice(start, start + 40)
        shards[i % 2].update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                                  scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])}))
    states = [s.state() for s in shards]
    order = np.argsort(np.concatenate([s["rows.index"] for s in states]), kind="stable")
    merged = {key: (np.concatenate([s[key] for s in states])[order] if key.startswith("rows.")
                    else np.sum([s[key] for s in states], axis=0)) for key in states[0]}
    fresh = ScoresCheck(config.check("scores"), RunContext(config=config, models={}, class_names=names, device=None))
    fresh.load_state(merged)
    _, whole = run(y, zb, zc, options={"roc_auc": {"max_drop": 0.05}}, batch=40)
    got = fresh.compute()
    assert got.details == whole.details and got.tables == whole.tables
    assert [(f.value, f.interval, f.p_value, f.status) for f in got.findings] == \
           [(f.value, f.interval, f.p_value, f.status) for f in whole.findings]


@pytest.mark.parametrize("k", [2, 3, 12])
@pytest.mark.parametrize("options", [{}, {"log_loss": {"max_increase": 0.05}}, {"bins": 200}])
def test_data_of_one_class_ranks_nothing_and_the_other_metrics_still_judge(k, options):
    """Every label the same: no class has both positives and negatives, so ROC-AUC and PR-AUC are NaN and no curve
    is drawn, while log loss and Brier are still scikit-learn's and an ungated or log-loss-gated check decides."""
    rng = np.random.default_rng(k)
    y = np.zeros(50, dtype=np.int64)
    zb, zc = (rng.standard_normal((50, k)).astype(np.float32) for _ in ROLES)
    _, result = run(y, zb, zc, options=options, batch=16)
    metrics = result.details["metrics"]
    assert all(math.isnan(metrics[m][r]) for m in ("roc_auc", "pr_auc") for r in ROLES)
    assert result.details["curves"]["classes"] == []
    for role, z in zip(ROLES, (zb, zc)):
        soft = np.exp(z.astype(np.float64) - logsumexp(z.astype(np.float64), axis=1, keepdims=True))
        assert metrics["log_loss"][role] == pytest.approx(log_loss(y, soft, labels=list(range(k))), rel=1e-5)
    if "log_loss" in options:       # the rule is judged on the paired difference of the two log losses
        finding = next(f for f in result.findings if f.metric == "log_loss")
        assert finding.value == pytest.approx(metrics["log_loss"]["candidate"] - metrics["log_loss"]["baseline"],
                                              rel=1e-9)
        assert finding.status in ("pass", "warn", "fail")
