"""The scores check end to end on real data: scikit-learn's breast-cancer tumours, a binary scorer with one logit
trained in the test from a fixed seed. A candidate with every decision unchanged but overconfident fails on log
loss; one with the same decisions but a scrambled ranking fails on ROC-AUC; a fine-tuned one passes. Numbers in
the report are checked against scikit-learn on the models' own outputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from examples.breast_cancer.make_models import make
from examples.breast_cancer.model import build_model
from gate.report.json_report import validate_report
from tests.acceptance.helpers import run_cli

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "breast_cancer" / "gate.yaml"


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make(tmp_path_factory.mktemp("breast_cancer"))


def _gate(capsys, cancer, candidate: str, tmp_path: Path, config: Path = CONFIG):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", cancer[candidate], "--baseline", cancer["baseline"], "--data", cancer["data"],
                  "--config", config, "--json", out, "--markdown", tmp_path / "r.md")
    return res, (json.loads(out.read_text()) if out.exists() else None)


def _outputs(path: Path) -> np.ndarray:
    model = build_model()
    model.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        x = np.load(path.parent / "eval.npz")["x"]
        return model.eval()(torch.from_numpy(x)).reshape(-1).double().numpy()


def _labels(cancer) -> np.ndarray:
    return np.load(cancer["data"])["labels"]


def _scores(report: dict) -> dict:
    return next(c for c in report["checks"] if c["name"] == "scores")


def test_overconfident_candidate_keeps_accuracy_and_fails_on_log_loss(cancer, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, cancer, "candidate_overconfident", tmp_path)
    assert res.code == 1, res.out + res.err
    validate_report(report)
    y = _labels(cancer)
    zb, zc = _outputs(cancer["baseline"]), _outputs(cancer["candidate_overconfident"])
    assert accuracy_score(y, zb > 0) == accuracy_score(y, zc > 0) > 0.9
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["scores"] == "fail" and statuses["accuracy"] != "fail" and statuses["flips"] != "fail"
    scores = _scores(report)
    failed = {f["metric"] for f in scores["findings"] if f["status"] == "fail"}
    assert "log_loss" in failed and "roc_auc" not in failed
    metrics = scores["details"]["metrics"]
    # both columns computed without cancellation (1 - p loses digits where p is near 1)
    pb, pc = (np.stack([1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))], axis=1) for z in (zb, zc))
    assert metrics["log_loss"]["baseline"] == pytest.approx(log_loss(y, pb), rel=1e-4)
    assert metrics["log_loss"]["candidate"] == pytest.approx(log_loss(y, pc), rel=1e-4)
    assert metrics["roc_auc"]["candidate"] == pytest.approx(roc_auc_score(y, zc))
    assert "log_loss: increase" in res.out and "FAIL" in res.out
    assert "Reliability diagram" in (tmp_path / "r.md").read_text()
    import jsonschema

    del scores["details"]["kept_per_sample"]          # the schema holds renderers to the scores details
    with pytest.raises(jsonschema.ValidationError, match="kept_per_sample"):
        validate_report(report)


def test_scrambled_ranking_keeps_accuracy_and_fails_on_roc_auc(cancer, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, cancer, "candidate_scrambled", tmp_path)
    assert res.code == 1, res.out + res.err
    y = _labels(cancer)
    zb, zc = _outputs(cancer["baseline"]), _outputs(cancer["candidate_scrambled"])
    assert accuracy_score(y, zb > 0) == accuracy_score(y, zc > 0)
    scores = _scores(report)
    auc = next(f for f in scores["findings"] if f["metric"] == "roc_auc")
    assert auc["status"] == "fail"
    assert auc["baseline"] == pytest.approx(roc_auc_score(y, zb)) and auc["candidate"] == pytest.approx(roc_auc_score(y, zc))
    assert auc["value"] == pytest.approx(roc_auc_score(y, zb) - roc_auc_score(y, zc))
    assert report["metrics"]["comparison"]["agreement"] == 1.0


def test_fine_tuned_candidate_passes_the_score_metrics(cancer, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, cancer, "candidate_good", tmp_path)
    assert res.code == 0, res.out + res.err
    assert _scores(report)["status"] == "pass"
    th = _scores(report)["details"]["threshold"]
    assert th["chosen_by"].startswith("best F1 on the baseline")


def test_labels_that_do_not_fit_a_binary_model_are_exit_2(cancer, in_repo_root, tmp_path, capsys):
    data = np.load(cancer["data"])
    labels = data["labels"].copy()
    labels[5] = 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=data["x"], labels=labels)
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", cancer["candidate_good"], "--baseline", cancer["baseline"], "--data", bad,
                  "--config", CONFIG, "--json", out)
    assert res.code == 2 and not out.exists()
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "label 2" in lines[0], res.err


def test_logits_declared_as_probabilities_are_exit_2(cancer, in_repo_root, tmp_path, capsys):
    config = tmp_path / "sigmoid.yaml"
    config.write_text(CONFIG.read_text().replace("output: binary_logit", "output: sigmoid"))
    res, report = _gate(capsys, cancer, "candidate_good", tmp_path, config)
    assert res.code == 2 and report is None
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "outside [0, 1]" in lines[0], res.err
