"""Output kinds end to end: a sigmoid model is read as a probability (a regression must not pass), an ambiguous
output stops the gate asking for `output:`, and outputs of another task resolve the run's task or are refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score

from gate.report.json_report import validate_report
from tests import shipped_models as sm
from tests.acceptance.helpers import run_cli

FACTORY = "tests.shipped_models:build_sigmoid"


@pytest.fixture(scope="module")
def sigmoid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sigmoid")
    x, y, teacher = sm.sigmoid_world(600)
    np.savez(root / "eval.npz", x=x, labels=y)
    torch.save(teacher.state_dict(), root / "base.pt")
    torch.save(sm.shifted(teacher, -3.0).state_dict(), root / "regressed.pt")
    torch.save(sm.shifted(teacher, 1e-4).state_dict(), root / "good.pt")
    (root / "sigmoid.yaml").write_text(f"model:\n  factory: {FACTORY}\n  output: sigmoid\n")
    (root / "auto.yaml").write_text(f"model:\n  factory: {FACTORY}\n")
    return {"root": root, "data": root / "eval.npz", "base": root / "base.pt", "regressed": root / "regressed.pt",
            "good": root / "good.pt"}


def _run(capsys, sigmoid, candidate: str, config: str, tmp_path: Path):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", sigmoid[candidate], "--baseline", sigmoid["base"], "--data", sigmoid["data"],
                  "--config", sigmoid["root"] / config, "--json", out)
    return res, (json.loads(out.read_text()) if out.exists() else None)


def _predictions(path: Path, x: np.ndarray) -> np.ndarray:
    model = sm.build_sigmoid()
    model.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        return (model.eval()(torch.from_numpy(x)).reshape(-1) > 0.5).numpy().astype(np.int64)


def test_a_sigmoid_model_that_regressed_fails(sigmoid, in_repo_root, tmp_path, capsys):
    res, report = _run(capsys, sigmoid, "regressed", "sigmoid.yaml", tmp_path)
    assert res.code == 1, res.out + res.err
    validate_report(report)
    with np.load(sigmoid["data"]) as data:
        x, y = data["x"], data["labels"]
    pb, pc = _predictions(sigmoid["base"], x), _predictions(sigmoid["regressed"], x)
    assert report["metrics"]["baseline"]["accuracy"] == pytest.approx(accuracy_score(y, pb))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(y, pc))
    recall = recall_score(y, pc, average=None)
    assert [r["recall"] for r in report["metrics"]["candidate"]["per_class"]] == pytest.approx(list(recall))
    assert recall[1] < 0.5 < accuracy_score(y, pb)
    assert [m["output"] for m in report["models"]] == ["sigmoid", "sigmoid"]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["accuracy"] == "fail" and statuses["per_class"] == "fail"


def test_a_good_sigmoid_candidate_passes(sigmoid, in_repo_root, tmp_path, capsys):
    res, report = _run(capsys, sigmoid, "good", "sigmoid.yaml", tmp_path)
    assert res.code == 0, res.out + res.err
    assert report["metrics"]["comparison"]["agreement"] > 0.99


def test_one_probability_column_without_output_is_exit_2_asking(sigmoid, in_repo_root, tmp_path, capsys):
    res, report = _run(capsys, sigmoid, "regressed", "auto.yaml", tmp_path)
    assert res.code == 2 and report is None
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "every value in [0, 1]" in lines[0] and "model.output" in lines[0] and "sigmoid or binary_logit" in lines[0]


def _one_line_error(res, out: Path) -> str:
    assert res.code == 2 and not out.exists(), res.out + res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.err, res.err
    return lines[0]


def test_a_multi_label_output_with_class_index_labels_is_refused_naming_the_label_tensor(sigmoid, in_repo_root,
                                                                                        tmp_path, capsys):
    config = tmp_path / "kind.yaml"
    config.write_text(f"model:\n  factory: {FACTORY}\n  candidate: {{output: multi_label}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", sigmoid["good"], "--baseline", sigmoid["base"], "--data", sigmoid["data"],
                  "--config", config, "--json", out)
    line = _one_line_error(res, out)
    assert line == (f"error: {sigmoid['data']}: tensor 'labels': labels of shape (600,); task multi_label expects an "
                    "(N, L) 0/1 multi-hot tensor, one column per label")


def test_a_declared_task_that_contradicts_a_declared_output_is_refused_before_loading(sigmoid, in_repo_root,
                                                                                     tmp_path, capsys):
    config = tmp_path / "kind.yaml"
    config.write_text(f"task: classification\nmodel:\n  factory: {FACTORY}\n  candidate: {{output: regression}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", sigmoid["good"], "--baseline", sigmoid["base"], "--data", sigmoid["data"],
                  "--config", config, "--json", out)
    line = _one_line_error(res, out)
    assert line == (f"error: {config}: model.candidate.output: regression is a regression output, but task is "
                    "classification (for classification use output logits or probabilities or sigmoid or "
                    "binary_logit, or auto)")


def test_one_output_declared_regression_makes_both_models_regressors(sigmoid, in_repo_root, tmp_path, capsys):
    """The baseline's auto output follows the task the candidate's declaration gives; 0/1 labels become targets."""
    config = tmp_path / "kind.yaml"
    config.write_text(f"model:\n  factory: {FACTORY}\n  candidate: {{output: regression}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", sigmoid["good"], "--baseline", sigmoid["base"], "--data", sigmoid["data"],
                  "--config", config, "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["task"] == "regression" and report["class_names"] == ["target"]
    assert [m["output"] for m in report["models"]] == ["regression", "regression"]
    assert [c["name"] for c in report["checks"]] == ["sanity"]       # accuracy & co. are classification checks
    assert report["metrics"] == {}                                     # no regression check in this run
