"""`gate check --task` and `gate.check(task=...)`: the task from the command line, winning over gate.yaml's `task:`.

On scikit-learn's diabetes patients (a one-output regressor that, undeclared, reads as a binary classifier) the
option alone makes the run a regression run, whose numbers are checked against scikit-learn; on classifiers it
is one `error:` line naming --task, exit 2, no report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, r2_score

from examples.diabetes.make_models import make
from examples.diabetes.model import build_model
from gate.errors import ConfigError
from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli
from tests.unit.model_fixtures import build_hf_dir

FACTORY = ("--model-factory", "examples.diabetes.model:build_model")


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make(tmp_path_factory.mktemp("diabetes"))


def _predictions(path: Path, x: np.ndarray) -> np.ndarray:
    model = build_model()
    model.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).reshape(-1).double().numpy()


def _one_error_line(res) -> str:
    lines = res.err.strip().splitlines()
    assert res.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    return lines[0]


def test_task_regression_on_the_command_line_runs_a_regressor_without_a_config(diabetes, in_repo_root, tmp_path,
                                                                                 capsys):
    base = ("check", diabetes["candidate_good"], "--baseline", diabetes["baseline"], "--data", diabetes["data"],
            *FACTORY)
    out = tmp_path / "r.json"
    undeclared = run_cli(capsys, *base, "--json", out)
    # Without the task its one output reads as a binary classifier, and real-valued targets are not class indices.
    assert "labels must be integer class indices" in _one_error_line(undeclared) and not out.exists()
    res = run_cli(capsys, *base, "--task", "regression", "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["task"] == "regression"
    assert {c["name"] for c in report["checks"]} == {"sanity", "regression"}
    data = np.load(diabetes["data"])
    y = data["labels"].astype(np.float64)
    for role, path in (("baseline", diabetes["baseline"]), ("candidate", diabetes["candidate_good"])):
        pred = _predictions(path, data["x"])
        assert report["metrics"][role]["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
        assert report["metrics"][role]["r2"] == pytest.approx(r2_score(y, pred), rel=1e-5)


def test_the_option_wins_over_the_configs_task(diabetes, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text("task: classification\n")
    out = tmp_path / "r.json"
    args = ("check", diabetes["candidate_good"], "--baseline", diabetes["baseline"], "--data", diabetes["data"],
            *FACTORY, "--config", config, "--json", out)
    assert "labels must be integer class indices" in _one_error_line(run_cli(capsys, *args))
    res = run_cli(capsys, *args, "--task", "regression")
    assert res.code == 0, res.out + res.err
    assert json.loads(out.read_text())["task"] == "regression"


def test_task_regression_on_a_classifier_is_one_error_line(world, in_repo_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", "tests.tiny_models:build_mlp", "--task", "regression", "--json", out)
    line = _one_error_line(res)
    assert not out.exists()
    assert f"but the models output {tm.NUM_CLASSES} targets" in line
    assert "the task regression was set by --task" in line and "--task auto" in line


def test_task_regression_on_a_hugging_face_classifier_names_the_option(tmp_path, capsys):
    hf = tmp_path / "hf"
    build_hf_dir(hf, id2label={0: "negative", 1: "positive"}, seed=1)
    config = json.loads((hf / "config.json").read_text())
    config["problem_type"] = "single_label_classification"
    (hf / "config.json").write_text(json.dumps(config))
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": "good film", "label": 1.0}) + "\n" for _ in range(8)))
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", hf, "--baseline", hf, "--data", data, "--task", "regression", "--json", out)
    line = _one_error_line(res)
    assert not out.exists()
    assert line.startswith("error: --task: regression, but baseline ")
    assert "config.json problem_type single_label_classification means classification" in line


def test_a_misspelt_task_is_a_usage_error(world, tmp_path, capsys):
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--task", "regresion")
    line = _one_error_line(res)
    assert "'--task'" in line and "'regresion' is not one of 'auto', 'classification', 'multi_label', 'regression'" in line


def test_the_python_api_takes_task(diabetes, in_repo_root):
    import gate

    report = gate.check(diabetes["candidate_good"], diabetes["baseline"], diabetes["data"],
                        model_factory="examples.diabetes.model:build_model", task="regression")
    assert report.model.task == "regression" and report.passed, report.summary
    from gate.api import configure

    assert configure(None, task="multi_label").task == "multi_label"
    assert configure({"task": "regression"}, task="auto").task == "auto"       # the option wins
    assert configure({"task": "regression"}).task_source is None
    with pytest.raises(ConfigError, match=r"task: expected one of auto, classification, multi_label, regression, "
                                          r"found 'regresion' \(did you mean regression\?\)"):
        configure(None, task="regresion")


@pytest.mark.parametrize("option", ["task", "decision", "device"])
def test_a_choice_that_is_not_text_is_a_config_error_not_a_traceback(option):
    from gate.api import configure

    with pytest.raises(ConfigError, match=rf"{option}: expected one of .*found int 5"):
        configure(None, **{option: 5})
