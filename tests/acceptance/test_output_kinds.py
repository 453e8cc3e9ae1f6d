"""Output kinds end to end: a sigmoid model is read as a probability (a regression must not pass), an ambiguous
output stops the gate asking for `output:`, and tasks gate does not compare yet are refused in one line."""
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


@pytest.mark.parametrize(("kind", "task"), [("multi_label", "multi-label classification"), ("regression", "regression")])
def test_tasks_not_supported_yet_are_refused_in_one_line(kind, task, sigmoid, in_repo_root, tmp_path, capsys):
    config = tmp_path / "kind.yaml"
    config.write_text(f"model:\n  factory: {FACTORY}\n  candidate: {{output: {kind}}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", sigmoid["good"], "--baseline", sigmoid["base"], "--data", sigmoid["data"],
                  "--config", config, "--json", out)
    assert res.code == 2 and not out.exists()
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err
    assert lines[0] == (f"error: {config}: model.candidate.output: {kind}: {task} is not supported yet; gate compares "
                        "classifiers whose output is one of logits, probabilities, sigmoid, binary_logit")
