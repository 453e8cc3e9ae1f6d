"""The multilabel check end to end on real data: scikit-learn's digits, four tags per image read off the digit
(even, prime, greater_than_4, has_loop), a tagger trained in the test from a fixed seed. A fine-tuned candidate
passes; one trained on tags where a 7 is not prime fails, naming the `prime` tag. Figures in the report are
checked against scikit-learn on the models' own outputs; bad options exit 2 with one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from examples.digits_tags.make_models import make
from examples.digits_tags.model import TAGS, build_model
from gate.report.json_report import validate_report
from tests.acceptance.helpers import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "digits_tags" / "gate.yaml"


@pytest.fixture(scope="module")
def tags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make(tmp_path_factory.mktemp("digits_tags"))


def _gate(capsys, tags, candidate: str, tmp_path: Path, *extra: object, config: Path = CONFIG):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tags[candidate], "--baseline", tags["baseline"], "--data", tags["data"],
                  "--config", config, "--json", out, "--markdown", tmp_path / "r.md", *extra)
    return res, (json.loads(out.read_text()) if out.exists() else None)


def _predictions(path: Path, data: Path, threshold: float = 0.5) -> np.ndarray:
    from safetensors.torch import load_file

    model = build_model()
    model.load_state_dict(load_file(str(path)))
    with torch.no_grad():
        p = torch.sigmoid(model.eval()(torch.from_numpy(np.load(data)["x"]))).numpy()
    return (p >= threshold).astype(np.int64)


def _check(report: dict) -> dict:
    return next(c for c in report["checks"] if c["name"] == "multilabel")


def test_a_candidate_that_forgets_a_tag_fails_naming_it_and_the_figures_are_scikit_learns(tags, in_repo_root,
                                                                                         tmp_path, capsys):
    res, report = _gate(capsys, tags, "candidate_forgets_seven", tmp_path)
    assert res.code == 1, res.out + res.err
    validate_report(report)
    assert report["task"] == "multi_label" and [c["name"] for c in report["checks"]] == ["sanity", "multilabel"]
    check = _check(report)
    assert check["status"] == "fail" and check["details"]["regressed_labels"] == ["prime"]
    failed = {f["metric"] for f in check["findings"] if f["status"] == "fail"}
    assert "recall[prime]" in failed and not any(m.endswith(f"[{t}]") for m in failed for t in TAGS if t != "prime")
    y = np.load(tags["data"])["labels"]
    for role, path in (("baseline", tags["baseline"]), ("candidate", tags["candidate_forgets_seven"])):
        pred = _predictions(path, tags["data"])
        m = report["metrics"][role]
        assert m["subset_accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
        assert m["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
        p, r, f, s = precision_recall_fscore_support(y, pred, average=None)
        assert [e["recall"] for e in m["per_label"]] == pytest.approx(r.tolist())
        assert [e["support"] for e in m["per_label"]] == s.tolist()
    assert report["metrics"]["candidate"]["per_label"][1]["recall"] < report["metrics"]["baseline"]["per_label"][1][
        "recall"] - 0.15


def test_a_fine_tuned_candidate_passes(tags, in_repo_root, tmp_path, capsys):
    res, report = _gate(capsys, tags, "candidate_good", tmp_path)
    assert res.code == 0, res.out + res.err
    assert _check(report)["status"] == "pass"
    md = (tmp_path / "r.md").read_text()
    assert "Per-label metrics" in md and "has_loop" in md


def test_a_per_label_threshold_changes_the_predictions_the_report_counts(tags, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.read_text().replace("threshold: 0.5", "threshold: {prime: 0.9}"))
    res, report = _gate(capsys, tags, "candidate_good", tmp_path, config=config)
    assert res.code in (0, 1), res.err
    y = np.load(tags["data"])["labels"]
    thr = np.array([0.5, 0.9, 0.5, 0.5])
    from safetensors.torch import load_file

    model = build_model()
    model.load_state_dict(load_file(str(tags["candidate_good"])))
    with torch.no_grad():
        p = torch.sigmoid(model.eval()(torch.from_numpy(np.load(tags["data"])["x"]))).numpy()
    pred = (p >= thr).astype(int)
    assert report["metrics"]["candidate"]["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert _check(report)["details"]["thresholds"]["prime"] == 0.9


@pytest.mark.parametrize("option, message", [
    ("threshold: {primes: 0.9}", "checks.multilabel.threshold: unknown label 'primes'"),
    ("threshold: 1.5", "checks.multilabel.threshold"),
    ("labels: [odd]", "checks.multilabel.labels: unknown label 'odd'"),
    ("f1: {max_increase: 0.1}", "checks.multilabel.f1"),
])
def test_bad_options_exit_2_with_one_line(tags, in_repo_root, tmp_path, capsys, option, message):
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.read_text().replace("threshold: 0.5", option))
    res, report = _gate(capsys, tags, "candidate_good", tmp_path, config=config)
    assert res.code == 2 and report is None
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.err
    assert "Traceback" not in res.err


def test_enabling_multilabel_for_a_classifier_is_refused(tags, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text("task: classification\nclass_names: [a, b, c, d]\nmodel:\n  factory: "
                      "examples.digits_tags.model:build_model\ndata:\n  inputs: [x]\n  labels: labels\n"
                      "checks:\n  multilabel: {enabled: true}\n")
    res, _ = _gate(capsys, tags, "candidate_good", tmp_path, config=config)
    assert res.code == 2 and "multilabel" in res.err and "classification" in res.err, res.err


def test_labels_nothing_names_are_named_by_position_from_the_first_batch(tags, in_repo_root, tmp_path, capsys):
    """No class_names anywhere: the first batch's width names the labels "0".."3" (setup runs before it)."""
    text = CONFIG.read_text().replace("class_names: [even, prime, greater_than_4, has_loop]\n", "")
    assert "class_names" not in text
    config = tmp_path / "unnamed.yaml"
    config.write_text(text)
    res, report = _gate(capsys, tags, "candidate_forgets_seven", tmp_path, config=config)
    assert res.code == 1, res.out + res.err
    check = _check(report)
    assert check["details"]["regressed_labels"] == ["1"]            # the prime tag, by its position
    y = np.load(tags["data"])["labels"]
    pred = _predictions(tags["candidate_forgets_seven"], tags["data"])
    assert report["metrics"]["candidate"]["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    # A per-label threshold by a name the run does not have is one error line once the labels are known.
    config.write_text(text.replace("threshold: 0.5", "threshold: {prime: 0.7}"))
    res, report = _gate(capsys, tags, "candidate_good", tmp_path, config=config)
    assert res.code == 2 and report is None
    assert res.err.startswith("error: ") and "unknown label 'prime'" in res.err and res.err.count("\n") == 1
