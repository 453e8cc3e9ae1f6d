"""Classes are matched by name, end to end through the CLI, on tiny Hugging Face models and state_dicts.

The oracle is scikit-learn on predictions computed here, independently of gate: each model is run with
transformers (or torch) directly, and a prediction is the *name* its own id2label gives the argmax column.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score

from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli
from tests.unit.model_fixtures import VOCAB, build_hf_dir

WORDS = VOCAB[5:]
NAMES = {0: "negative", 1: "positive"}


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(n)]


def _hf(directory: Path) -> tuple[object, object]:
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return model.eval(), tokenizer


def predicted_names(directory: Path, texts: list[str]) -> list[str]:
    """The class name each text is given by the model in `directory`, through its own id2label."""
    model, tokenizer = _hf(directory)
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        columns = model(**enc).logits.argmax(1).tolist()
    return [model.config.id2label[c] for c in columns]


def save_variant(base: Path, directory: Path, *, id2label: dict[int, str], reverse_head: bool) -> Path:
    """The baseline's model with other class names; with `reverse_head`, its output rows reversed to match them."""
    model, tokenizer = _hf(base)
    if reverse_head:
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label = dict(id2label)
    model.config.label2id = {v: k for k, v in id2label.items()}
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A baseline, its eval set labelled by name (its own predictions with 10% flipped), and candidates."""
    root = tmp_path_factory.mktemp("hf")
    base = root / "base"
    build_hf_dir(base, id2label=NAMES, seed=3)
    texts = _texts(240, seed=0)
    model, tokenizer = _hf(base)
    with torch.no_grad():                                    # centre the head: both classes predicted about equally
        enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        logits = model(**enc).logits
        diff = (logits[:, 1] - logits[:, 0]).sort().values
        middle = len(diff) // 2                              # between two samples, so no sample sits on a tie
        model.classifier.bias[1] -= (diff[middle - 1] + diff[middle]) / 2
    model.save_pretrained(str(base))
    labels = predicted_names(base, texts)
    rng = np.random.default_rng(1)
    flip = rng.random(len(labels)) < 0.1
    labels = [(NAMES[1] if name == NAMES[0] else NAMES[0]) if f else name for name, f in zip(labels, flip)]
    assert 0.2 < labels.count("positive") / len(labels) < 0.8, "both classes must be present for the test to bite"
    data = root / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    return {
        "root": root, "base": base, "data": data,
        "reversed": save_variant(base, root / "reversed", id2label={0: "positive", 1: "negative"}, reverse_head=True),
        "mislabelled": save_variant(base, root / "mislabelled", id2label={0: "positive", 1: "negative"},
                                    reverse_head=False),
        "generic": save_variant(base, root / "generic", id2label={0: "LABEL_0", 1: "LABEL_1"}, reverse_head=False),
        "renamed": save_variant(base, root / "renamed", id2label={0: "pos", 1: "neg"}, reverse_head=True),
        "other": save_variant(base, root / "other", id2label={0: "negative", 1: "neutral"}, reverse_head=False),
    }


def _labels(data: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _check(capsys, hf, candidate: str, tmp_path: Path, *extra: object):
    out = tmp_path / f"{candidate}.json"
    res = run_cli(capsys, "check", hf[candidate], "--baseline", hf["base"], "--data", hf["data"], "--json", out,
                  "--batch-size", 64, *extra)
    report = json.loads(out.read_text()) if out.exists() else None
    if report is not None:
        validate_report(report)
    return res, report


def test_a_candidate_whose_id2label_is_reversed_passes(hf, tmp_path, capsys):
    texts, y = _labels(hf["data"])
    base_pred = predicted_names(hf["base"], texts)
    cand_pred = predicted_names(hf["reversed"], texts)
    assert cand_pred == base_pred                              # the same model, its outputs in the other order
    res, report = _check(capsys, hf, "reversed", tmp_path)
    assert res.code == 0, res.out + res.err
    metrics = report["metrics"]
    assert metrics["candidate"]["accuracy"] == pytest.approx(accuracy_score(y, cand_pred))
    assert metrics["baseline"]["accuracy"] == pytest.approx(accuracy_score(y, base_pred))
    assert metrics["comparison"]["agreement"] == 1.0
    # Read by position, the reversed columns would have been a collapse (the 0.643 -> 0.357):
    by_position = [NAMES[["positive", "negative"].index(p)] for p in cand_pred]   # column c read as NAMES[c]
    assert accuracy_score(y, by_position) < 0.5 < metrics["candidate"]["accuracy"]
    cand = report["models"][1]
    assert cand["class_names"] == ["positive", "negative"] and cand["columns"] == [1, 0]
    assert report["class_names"] == ["negative", "positive"]
    assert any("reordered to the baseline's by name" in note for note in report["notes"])
    assert "reordered to the baseline's by name" in res.out
    recall = recall_score(y, cand_pred, average=None, labels=["negative", "positive"])
    assert [r["recall"] for r in metrics["candidate"]["per_class"]] == pytest.approx(list(recall))


def test_drift_matches_the_reversed_classifier_by_name(hf, tmp_path, capsys):
    """Tiny BERT with its classifier's rows reversed and id2label saying so: the classifier's outputs, compared
    column for column by name, are the baseline's (cosine 1); every other layer is untouched."""
    res, report = _check(capsys, hf, "reversed", tmp_path, "--enable", "drift")
    assert res.code == 0, res.out + res.err
    drift = next(c for c in report["checks"] if c["name"] == "drift")
    assert drift["status"] == "pass", drift["summary"]
    layers = {layer["layer"]: layer for layer in drift["details"]["layers"]}
    assert layers["classifier"]["class_columns"] == "by_name"
    assert layers["classifier"]["cosine"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert [name for name, layer in layers.items() if layer["class_columns"]] == ["classifier"]
    assert drift["details"]["class_columns"]["columns"] == [1, 0]


@pytest.mark.parametrize("sanity_names", [True, False])
def test_names_swapped_without_the_weights_fails_on_metrics(hf, tmp_path, capsys, sanity_names):
    """A real labelling bug: the same weights, id2label swapped. Its predictions are wrong by name."""
    config = tmp_path / "gate.yaml"
    config.write_text(f"checks:\n  sanity: {{class_names: {str(sanity_names).lower()}}}\n")
    texts, y = _labels(hf["data"])
    cand_pred = predicted_names(hf["mislabelled"], texts)
    res, report = _check(capsys, hf, "mislabelled", tmp_path, "--config", config)
    assert res.code == 1, res.out + res.err
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(y, cand_pred))
    accuracy = next(c for c in report["checks"] if c["name"] == "accuracy")
    assert accuracy["status"] == "fail"
    recall = recall_score(y, cand_pred, average=None, labels=["negative", "positive"])
    assert [r["recall"] for r in report["metrics"]["candidate"]["per_class"]] == pytest.approx(list(recall))


def test_a_class_on_one_side_only_is_exit_2_naming_both(hf, tmp_path, capsys):
    res, report = _check(capsys, hf, "other", tmp_path)
    assert res.code == 2 and report is None
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "only the baseline has [positive]" in lines[0] and "only the candidate has [neutral]" in lines[0]
    assert "class_map" in lines[0] and "Traceback" not in res.err


def test_generic_names_against_real_names_is_a_warning(hf, tmp_path, capsys):
    res, report = _check(capsys, hf, "generic", tmp_path)
    assert res.code == 0, res.err
    assert report["verdict"] == "warn"
    sanity = next(c for c in report["checks"] if c["name"] == "sanity")
    finding = next(f for f in sanity["findings"] if f["metric"] == "class_names")
    assert finding["status"] == "warn" and "LABEL_0, LABEL_1" in finding["reason"]
    assert any("compared by position" in note for note in report["notes"])


def test_class_map_matches_renamed_classes(hf, tmp_path, capsys):
    res, report = _check(capsys, hf, "renamed", tmp_path)
    assert res.code == 2 and "only the candidate has [pos, neg]" in res.err
    config = tmp_path / "map.yaml"
    config.write_text("class_map: {pos: positive, neg: negative}\n")
    res, report = _check(capsys, hf, "renamed", tmp_path, "--config", config)
    assert res.code == 0, res.out + res.err
    assert report["metrics"]["comparison"]["agreement"] == 1.0
    assert report["models"][1]["columns"] == [1, 0]
    assert any("pos -> positive" in note for note in report["notes"])


def test_a_class_map_naming_an_unknown_class_is_exit_2(hf, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("class_map: {postive: positive}\n")
    res, report = _check(capsys, hf, "renamed", tmp_path, "--config", config)
    assert res.code == 2 and report is None
    assert res.err.count("\n") == 1 and "class_map.postive: 'postive' is not one of the candidate's classes" in res.err


# ------------------------------------------------------------------ state_dicts named in gate.yaml, labels as names


def _unnamed_baseline_world(tmp_path: Path, order: list[int]):
    """A baseline state_dict (it names no classes of its own), a candidate with the same weights but its output
    rows put in `order` (its column j is the baseline's class order[j]), and data labelled by name."""
    names = ["ant", "bee", "cat"]
    x, y = tm.make_data(400, seed=4)
    np.savez(tmp_path / "eval.npz", x=x, labels=np.array([names[k] for k in y]))
    baseline, candidate = tm.regressed_candidate(seed=4, push=1.0), tm.regressed_candidate(seed=4, push=1.0)
    with torch.no_grad():
        candidate.head.weight.copy_(baseline.head.weight[order])
        candidate.head.bias.copy_(baseline.head.bias[order])
    torch.save(baseline.state_dict(), tmp_path / "base.pt")
    torch.save(candidate.state_dict(), tmp_path / "cand.pt")
    return names, x, y, candidate


def test_per_role_class_names_realign_a_permuted_state_dict(tmp_path, in_repo_root, capsys):
    """The teacher with its output rows permuted and named accordingly in gate.yaml; data labels are names."""
    order = [2, 0, 1]                                            # candidate column j is baseline class order[j]
    names, x, y, candidate = _unnamed_baseline_world(tmp_path, order)
    config = tmp_path / "gate.yaml"
    config.write_text(
        "model:\n  factory: tests.tiny_models:build_mlp\n"
        f"  baseline: {{class_names: {names}}}\n  candidate: {{class_names: {[names[k] for k in order]}}}\n"
    )
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "cand.pt", "--baseline", tmp_path / "base.pt", "--data",
                  tmp_path / "eval.npz", "--config", config, "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    with torch.no_grad():
        pred = [names[order[c]] for c in candidate(torch.from_numpy(x)).argmax(1).tolist()]
    truth = [names[k] for k in y]
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    recall = recall_score(truth, pred, average=None, labels=names)
    assert [r["recall"] for r in report["metrics"]["candidate"]["per_class"]] == pytest.approx(list(recall))
    assert report["metrics"]["comparison"]["agreement"] == 1.0
    assert report["models"][1]["columns"] == [1, 2, 0]


@pytest.mark.parametrize("permuted", [True, False])
def test_the_policys_class_names_name_an_unnamed_baseline_and_the_candidates_names_are_matched_to_them(
        tmp_path, in_repo_root, capsys, permuted):
    """The candidate declares its classes in the order [cat, ant, bee]. With its rows permuted that way it is the
    baseline, and passes; with the baseline's rows unchanged its names are a lie (it would label every sample
    wrongly under them) and it fails. Before, the candidate's names named the run's classes and the columns were
    compared by position, so the lie passed with agreement 1.0."""
    order = [2, 0, 1]
    names, x, y, candidate = _unnamed_baseline_world(tmp_path, order if permuted else [0, 1, 2])
    config = tmp_path / "gate.yaml"
    config.write_text(f"class_names: {names}\nmodel:\n  factory: tests.tiny_models:build_mlp\n"
                      f"  candidate: {{class_names: {[names[k] for k in order]}}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "cand.pt", "--baseline", tmp_path / "base.pt", "--data",
                  tmp_path / "eval.npz", "--config", config, "--json", out)
    report = json.loads(out.read_text())
    validate_report(report)
    with torch.no_grad():           # the oracle: each candidate prediction is the name it declares for the column
        pred = [names[order[c]] for c in candidate(torch.from_numpy(x)).argmax(1).tolist()]
    truth = [names[k] for k in y]
    assert report["class_names"] == names
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert report["models"][1]["columns"] == [1, 2, 0]
    if permuted:
        assert res.code == 0, res.out + res.err
        assert report["metrics"]["comparison"]["agreement"] == 1.0
    else:
        assert res.code == 1 and report["verdict"] == "fail"
        assert report["metrics"]["comparison"]["agreement"] < 0.5


def test_labels_given_as_names_need_names_the_candidate_alone_cannot_give(tmp_path, in_repo_root, capsys):
    names, *_ = _unnamed_baseline_world(tmp_path, [0, 1, 2])
    config = tmp_path / "gate.yaml"
    config.write_text(f"model:\n  factory: tests.tiny_models:build_mlp\n  candidate: {{class_names: {names}}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "cand.pt", "--baseline", tmp_path / "base.pt", "--data",
                  tmp_path / "eval.npz", "--config", config, "--json", out)
    assert res.code == 2 and not out.exists()
    assert res.err.count("\n") == 1 and res.err.startswith("error: ")
    assert "'ant' is not an integer, and no class names are known to map it" in res.err


def test_top_level_class_names_that_are_not_the_models_classes_is_exit_2(hf, tmp_path, capsys):
    config = tmp_path / "names.yaml"
    config.write_text("class_names: [neg, pos]\n")
    res, report = _check(capsys, hf, "reversed", tmp_path, "--config", config)
    assert res.code == 2 and report is None
    assert "class_names: [neg, pos] are not the classes the baseline names" in res.err



def test_class_names_that_do_not_fit_the_output_are_exit_2(world, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text("model:\n  factory: tests.tiny_models:build_mlp\n  candidate: {class_names: [a, b]}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out)
    assert res.code == 2 and not out.exists()
    assert res.err == (f"error: {config}: model.candidate.class_names: the candidate names 2 classes (a, b) "
                       "but outputs 3\n")



def test_one_model_naming_its_classes_is_compared_by_position_with_a_note(world, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text("model:\n  factory: tests.tiny_models:build_mlp\n  candidate: {class_names: [a, b, c]}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    # the run's classes are the baseline's columns: the candidate's names do not name them
    assert report["class_names"] == ["0", "1", "2"] and report["models"][1]["columns"] is None
    assert report["notes"] == ["classes compared by position: only the candidate names its classes; its names do "
                               "not name the run's classes, the baseline's columns 0..K-1 (name those with "
                               "model.baseline.class_names or class_names to compare by name)"]
    assert report["models"][0]["class_names"] is None and report["models"][1]["class_names"] == ["a", "b", "c"]


def test_an_id2label_with_a_newline_is_exit_2_before_it_reaches_a_log(hf, tmp_path, capsys):
    """A class name that would print `::error ...` at the start of a CI log line (a GitHub workflow command)."""
    forged = save_variant(hf["base"], tmp_path / "forged", reverse_head=False,
                          id2label={0: "negative\n::error title=forged::gate passed", 1: "positive"})
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", forged, "--baseline", hf["base"], "--data", hf["data"], "--json", out, "-v")
    assert res.code == 2 and not out.exists()
    assert res.err.count("\n") == 1 and res.err.startswith(f"error: {forged}: id2label: class 0 ")
    assert "::error" not in res.out and not any(line.startswith("::") for line in res.err.splitlines())
