"""The regression check end to end on real data: scikit-learn's diabetes patients (442, 10 features), a small
regressor trained in the test from a fixed seed. The candidate retrained from another seed passes (exit 0); the one
with noise in its weights fails on MAE and RMSE (exit 1). The report's numbers are checked against scikit-learn on
the models' own outputs; bad options are exit 2 in one line with no report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from examples.diabetes.make_models import make
from examples.diabetes.model import build_model
from gate.report.json_report import validate_report
from tests.acceptance.helpers import run_cli

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "diabetes" / "gate.yaml"


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make(tmp_path_factory.mktemp("diabetes"))


def _gate(capsys, world, candidate: str, tmp_path: Path, *extra: object, config: Path = CONFIG):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world[candidate], "--baseline", world["baseline"], "--data", world["data"],
                  "--config", config, "--json", out, "--markdown", tmp_path / "r.md", *extra)
    return res, (json.loads(out.read_text()) if out.exists() else None)


def _predictions(path: Path) -> np.ndarray:
    model = build_model()
    model.load_state_dict(torch.load(path, weights_only=True))
    x = np.load(path.parent / "eval.npz")["x"]
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).reshape(-1).double().numpy()


def _regression(report: dict) -> dict:
    return next(c for c in report["checks"] if c["name"] == "regression")


def test_a_candidate_retrained_from_another_seed_passes(diabetes, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, diabetes, "candidate_good", tmp_path)
    assert res.code == 0, res.out + res.err
    validate_report(report)
    assert report["task"] == "regression"
    assert {c["name"]: c["status"] for c in report["checks"]} == {"sanity": "pass", "regression": "pass"}
    check = _regression(report)
    assert {f["metric"] for f in check["findings"]} == {"mae", "rmse", "r2", "worse_rate"}
    assert all(f["status"] == "pass" and f["p_value"] is not None for f in check["findings"])
    y = np.load(diabetes["data"])["labels"].astype(np.float64)
    for role in ("baseline", "candidate"):
        pred = _predictions(diabetes[role if role == "baseline" else "candidate_good"])
        got = report["metrics"][role]
        assert got["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
        assert got["rmse"] == pytest.approx(mean_squared_error(y, pred) ** 0.5, rel=1e-5)
        assert got["r2"] == pytest.approx(r2_score(y, pred), rel=1e-5)
    assert check["details"]["num_samples"] == 200 and check["details"]["bootstrap_resamples"] == 2000


def test_a_noisy_candidate_fails_on_mae_and_rmse(diabetes, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, diabetes, "candidate_noisy", tmp_path)
    assert res.code == 1, res.out + res.err
    validate_report(report)
    check = _regression(report)
    assert check["status"] == "fail"
    failed = {f["metric"]: f for f in check["findings"] if f["status"] == "fail"}
    assert {"mae", "rmse"} <= set(failed)
    for metric in ("mae", "rmse"):
        f = failed[metric]
        assert f["rule"] == "max_relative_increase" and f["value"] > 0.05 and f["interval"][0] > 0.05
        assert f["p_value"] < 0.025
    assert "failing on mae, rmse" in check["summary"]
    assert "FAIL" in res.out and "regression" in res.out
    md = (tmp_path / "r.md").read_text()
    assert "Regression metrics per target" in md and "Largest error growths" in md
    growth = next(t for t in check["tables"] if t["title"].startswith("Largest error growths"))
    y = np.load(diabetes["data"])["labels"].astype(np.float64)
    eb = np.abs(_predictions(diabetes["baseline"]) - y)
    ec = np.abs(_predictions(diabetes["candidate_noisy"]) - y)
    worst = int(np.argmax(ec - eb))
    assert growth["rows"][0][1] == worst                  # the report says which patient got worst, by index


def test_point_mode_from_the_command_line(diabetes, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, diabetes, "candidate_noisy", tmp_path, "--decision", "point")
    assert res.code == 1, res.out + res.err
    findings = _regression(report)["findings"]
    assert all(f["decision"] == "point" and f["interval"] is None for f in findings)


@pytest.mark.parametrize(("text", "needle"), [
    ("checks:\n  regression:\n    rmse: {max_relativ_increase: 0.1}\n", "did you mean max_relative_increase"),
    ("checks:\n  regression:\n    mae: {max: -1}\n", "checks.regression.mae.max"),
    ("checks:\n  regression:\n    top: 0\n", "checks.regression.top"),
])
def test_bad_regression_options_exit_2(diabetes, in_repo_root, tmp_path, capsys, text, needle):
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.read_text().split("checks:")[0] + text)
    res, report = _gate(capsys, diabetes, "candidate_good", tmp_path, config=config)
    assert res.code == 2 and report is None, res.out + res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.err
    assert not (tmp_path / "r.md").exists()
