"""Drift compares the output layer's class columns by class name, as the forward pass compares the scores.

A candidate that is the baseline with its output rows permuted, and its class names saying so, is the same model:
drift passes, and the report says the output layer was matched by name. Without names the same file is a finding at
the output layer (compared by position); a head that really drifted still fails when matched by name. The oracle is
numpy on the models' own head outputs, run here with torch, independently of gate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.digits_tags.make_models import make as make_tags
from examples.digits_tags.model import TAGS, build_model as build_tagger
from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli

NAMES = ["ant", "bee", "cat"]
ORDER = [2, 0, 1]                     # candidate row j is baseline class ORDER[j]
COLUMNS = [ORDER.index(k) for k in range(3)]    # candidate column of each baseline class: [1, 2, 0]


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _permuted(model: torch.nn.Module, order: list[int], *, noise: float = 0.0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.head.weight.copy_(model.head.weight[order] + noise * torch.randn(model.head.weight.shape, generator=gen))
        model.head.bias.copy_(model.head.bias[order])
    return model


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("permuted")
    x, y = tm.make_data(400, seed=4)
    np.savez(root / "eval.npz", x=x, labels=y)
    torch.save(tm.teacher(4).state_dict(), root / "base.pt")
    torch.save(_permuted(tm.teacher(4), ORDER).state_dict(), root / "permuted.pt")
    torch.save(_permuted(tm.teacher(4), ORDER, noise=1.0).state_dict(), root / "drifted.pt")
    named = root / "named.yaml"
    named.write_text("model:\n  factory: tests.tiny_models:build_mlp\n"
                     f"  baseline: {{class_names: {NAMES}}}\n  candidate: {{class_names: {[NAMES[k] for k in ORDER]}}}\n")
    unnamed = root / "unnamed.yaml"
    unnamed.write_text("model:\n  factory: tests.tiny_models:build_mlp\n")
    return {"root": root, "data": root / "eval.npz", "base": root / "base.pt", "permuted": root / "permuted.pt",
            "drifted": root / "drifted.pt", "named": named, "unnamed": unnamed}


def _gate(capsys, mlp, candidate: str, config: str, tmp_path: Path, *extra: object):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    res = run_cli(capsys, "check", mlp[candidate], "--baseline", mlp["base"], "--data", mlp["data"], "--config",
                  mlp[config], "--enable", "drift", "--json", out, "--markdown", md, *extra)
    report = json.loads(out.read_text())
    validate_report(report)
    return res, report, md.read_text()


def _drift(report: dict) -> dict:
    return next(c for c in report["checks"] if c["name"] == "drift")


def _layer(drift: dict, name: str) -> dict:
    return next(layer for layer in drift["details"]["layers"] if layer["layer"] == name)


def _heads(mlp, candidate: str) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.load(mlp["data"])["x"])
    out = []
    for path in (mlp["base"], mlp[candidate]):
        model = tm.build_mlp()
        model.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            out.append(model.eval()(x).numpy())
    return out[0], out[1]


def test_a_permuted_head_named_so_passes_drift_matched_by_name(mlp, in_repo_root, tmp_path, capsys):
    res, report, md = _gate(capsys, mlp, "permuted", "named", tmp_path)
    assert res.code == 0, res.out + res.err
    assert report["models"][1]["columns"] == COLUMNS and report["metrics"]["comparison"]["agreement"] == 1.0
    drift = _drift(report)
    assert drift["status"] == "pass" and drift["details"]["first_drifting_layer"] is None
    head, body = _layer(drift, "head"), _layer(drift, "body.0")
    assert head["class_columns"] == "by_name" and body["class_columns"] is None
    base, cand = _heads(mlp, "permuted")
    assert _mean_cosine(base, cand[:, COLUMNS]) == pytest.approx(1.0, abs=1e-12)
    assert head["cosine"]["mean"] == pytest.approx(1.0, abs=1e-12) and head["rel_l2"]["mean"] == pytest.approx(0, abs=1e-7)
    assert head["psi"] == pytest.approx(0.0, abs=1e-12)
    assert _mean_cosine(base, cand) < 0.5                   # by position it would have been a collapse
    details = drift["details"]["class_columns"]
    assert details["layers"] == ["head"] and details["matched"] == "by_name" and details["columns"] == COLUMNS
    assert "reordered to the baseline's by name" in details["how"]
    assert "head: columns matched by class name" in drift["summary"]
    table = next(t for t in drift["tables"] if t["title"].startswith("Activation drift per layer"))
    notes = {row[1]: row[-1] for row in table["rows"]}
    assert notes["head"] == "columns matched by class name" and notes["body.0"] == ""
    assert "columns matched by class name" in md


def test_the_permuted_head_without_names_is_a_drift_finding_at_the_head(mlp, in_repo_root, tmp_path, capsys):
    res, report, _ = _gate(capsys, mlp, "permuted", "unnamed", tmp_path)
    assert res.code == 1, res.out + res.err
    drift = _drift(report)
    assert drift["status"] == "fail" and drift["details"]["first_drifting_layer"] == "head"
    head = _layer(drift, "head")
    assert head["class_columns"] == "by_position" and "cosine" in head["breaches"]
    base, cand = _heads(mlp, "permuted")
    assert head["cosine"]["mean"] == pytest.approx(_mean_cosine(base, cand), rel=1e-9)
    assert _layer(drift, "body.0")["status"] == "pass"      # only the class columns moved
    assert drift["summary"].startswith("drift starts at head (layer 2 of 2) (class columns by position: classes "
                                       "compared by position: neither model names its classes)")
    assert drift["details"]["class_columns"]["matched"] == "by_position"


def test_an_honestly_drifted_head_still_fails_when_matched_by_name(mlp, in_repo_root, tmp_path, capsys):
    res, report, _ = _gate(capsys, mlp, "drifted", "named", tmp_path)
    assert res.code == 1, res.out + res.err
    drift = _drift(report)
    assert drift["status"] == "fail" and drift["details"]["first_drifting_layer"] == "head"
    head = _layer(drift, "head")
    assert head["class_columns"] == "by_name"
    base, cand = _heads(mlp, "drifted")
    want = _mean_cosine(base, cand[:, COLUMNS])
    assert want < 0.95 and head["cosine"]["mean"] == pytest.approx(want, rel=1e-9)
    assert "drift starts at head (layer 2 of 2) (columns matched by class name): cosine" in drift["summary"]


def test_multi_label_heads_are_matched_by_label_name(in_repo_root, tmp_path, capsys):
    """The digits tagger with its four tag logits permuted, the tags named per role: drift passes (the tag columns
    matched by name), the multilabel check sees the same model; the same file without names fails at the head."""
    from safetensors.torch import load_file, save_file

    paths = make_tags(tmp_path / "tags")
    order = [2, 0, 3, 1]
    columns = [order.index(k) for k in range(len(TAGS))]
    model = build_tagger()
    model.load_state_dict(load_file(str(paths["baseline"])))
    _permuted(model, order)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "permuted.safetensors"))
    common = ("task: multi_label\nmodel:\n  factory: examples.digits_tags.model:build_model\n"
              "  output: multi_label_logits\n")
    named = tmp_path / "named.yaml"
    named.write_text(common + f"  baseline: {{class_names: {list(TAGS)}}}\n"
                     f"  candidate: {{class_names: {[TAGS[k] for k in order]}}}\n")
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(f"class_names: {list(TAGS)}\n" + common)       # names the run's tags, no model's
    reports = {}
    for name, config in (("named", named), ("unnamed", unnamed)):
        out = tmp_path / f"{name}.json"
        res = run_cli(capsys, "check", tmp_path / "permuted.safetensors", "--baseline", paths["baseline"], "--data",
                      paths["data"], "--config", config, "--enable", "drift", "--json", out)
        assert out.exists(), res.err
        reports[name] = (res.code, json.loads(out.read_text()))
    code, report = reports["named"]
    assert code == 0 and report["task"] == "multi_label" and report["models"][1]["columns"] == columns
    drift = _drift(report)
    assert drift["status"] == "pass"
    assert _layer(drift, "head")["class_columns"] == "by_name"
    assert _layer(drift, "head")["cosine"]["mean"] == pytest.approx(1.0, abs=1e-12)
    code, report = reports["unnamed"]
    drift = _drift(report)
    assert code == 1 and drift["details"]["first_drifting_layer"] == "head"
    assert _layer(drift, "head")["class_columns"] == "by_position"
    x = torch.from_numpy(np.load(paths["data"])["x"])
    base = build_tagger()
    base.load_state_dict(load_file(str(paths["baseline"])))
    with torch.no_grad():
        b, c = base.eval()(x).numpy(), model.eval()(x).numpy()
    assert _layer(drift, "head")["cosine"]["mean"] == pytest.approx(_mean_cosine(b, c), rel=1e-9)


@pytest.fixture(scope="module")
def one_logit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A binary model with one logit (of class 1) and the same model with its classes' names swapped: its logit is
    the baseline's negated, since its class 1 is the baseline's class 0."""
    root = tmp_path_factory.mktemp("one_logit")
    torch.manual_seed(9)
    base = tm.build_mlp(num_classes=1).eval()
    x = np.random.default_rng(9).standard_normal((400, tm.IN_FEATURES)).astype(np.float32)
    with torch.no_grad():
        z = base(torch.from_numpy(x)).numpy()[:, 0]
    y = (z > np.median(z)).astype(np.int64)
    np.savez(root / "eval.npz", x=x, labels=y)
    torch.save(base.state_dict(), root / "base.pt")
    swapped = tm.build_mlp(num_classes=1)
    swapped.load_state_dict(base.state_dict())
    with torch.no_grad():
        swapped.head.weight.neg_()
        swapped.head.bias.neg_()
    torch.save(swapped.state_dict(), root / "swapped.pt")
    common = "model:\n  factory: tests.tiny_models:build_mlp\n  kwargs: {num_classes: 1}\n  output: binary_logit\n"
    named = root / "named.yaml"
    named.write_text(common + "  baseline: {class_names: [negative, positive]}\n"
                              "  candidate: {class_names: [positive, negative]}\n")
    unnamed = root / "unnamed.yaml"
    unnamed.write_text(common)
    return {"data": root / "eval.npz", "base": root / "base.pt", "swapped": root / "swapped.pt", "named": named,
            "unnamed": unnamed, "x": x}


def test_a_one_logit_model_with_its_class_names_swapped_passes_drift_its_logit_negated(one_logit, in_repo_root,
                                                                                      tmp_path, capsys):
    res, report, md = _gate(capsys, one_logit, "swapped", "named", tmp_path)
    assert res.code == 0, res.out + res.err
    assert report["models"][1]["columns"] == [1, 0] and report["metrics"]["comparison"]["agreement"] == 1.0
    drift = _drift(report)
    assert drift["status"] == "pass", drift["summary"]
    head = _layer(drift, "head")
    assert head["class_columns"] == "by_name" and _layer(drift, "body.0")["class_columns"] is None
    assert head["cosine"]["mean"] == pytest.approx(1.0, abs=1e-12) and head["psi"] == pytest.approx(0.0, abs=1e-12)
    # the oracle: the two files' logits, by torch here, are each other's negation, so by position they are opposite
    logits = []
    for path in (one_logit["base"], one_logit["swapped"]):
        model = tm.build_mlp(num_classes=1)
        model.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            logits.append(model.eval()(torch.from_numpy(one_logit["x"])).numpy()[:, 0].astype(np.float64))
    np.testing.assert_allclose(logits[1], -logits[0], rtol=1e-6)
    assert "head: columns matched by class name" in drift["summary"]


def test_a_one_logit_model_negated_without_names_fails_drift_at_its_head(one_logit, in_repo_root, tmp_path, capsys):
    res, report, _ = _gate(capsys, one_logit, "swapped", "unnamed", tmp_path)
    assert res.code == 1, res.out + res.err
    drift = _drift(report)
    assert drift["status"] == "fail" and drift["details"]["first_drifting_layer"] == "head"
    assert _layer(drift, "head")["class_columns"] == "by_position"
