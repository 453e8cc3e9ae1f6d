"""Labels per task in every data reader: multi-label lists (names, indices, empty) and multi-hot tensors, regression
numbers and (N, T) targets; labels that do not fit the task end in one DataError naming the file and the sample."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gate.data import LabelSets, open_data, task_batch_labels
from gate.errors import DataError
from tests.unit.test_data import hf_tokenizer, opts, tokenizer_dir, write_csv, write_jsonl  # noqa: F401 (fixtures)

LABELS = ("sports", "politics", "tech", "arts")


def all_labels(data: Any, width: int | None = None) -> torch.Tensor:
    """Every batch's labels as the runner makes them (LabelSets made multi-hot with the models' width)."""
    out = []
    for _, labels in data.batches():
        out.append(labels.multi_hot(width) if isinstance(labels, LabelSets) else labels)
    return torch.cat(out)


def multi_hot_oracle(rows: list[list[int]], width: int) -> np.ndarray:
    """Independent of gate: numpy fancy indexing."""
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, row] = 1
    return out


# ----------------------------------------------------------------------------------------------- multi_label


def test_jsonl_multi_label_names_indices_and_empty_lists(tmp_path: Path, hf_tokenizer: Any) -> None:
    rows = [{"text": "good movie", "label": ["sports", "tech"]}, {"text": "bad plot", "label": []},
            {"text": "great acting", "label": [3, 0]}, {"text": "fine", "label": ["politics"]},
            {"text": "long", "label": ["arts", "arts"]}]
    path = write_jsonl(tmp_path / "ml.jsonl", rows)
    data = open_data(str(path), options=opts(batch_size=2), class_names=LABELS, tokenizer=hf_tokenizer,
                     task="multi_label")
    got = all_labels(data, width=4)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), multi_hot_oracle([[0, 2], [], [3, 0], [1], [3]], 4))


def test_csv_multi_label_separated_names_with_a_custom_separator(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_csv(tmp_path / "ml.csv", ["text", "label"],
                     [["good movie", "sports;tech"], ["bad", ""], ["plot", " arts ; 1 "]])
    data = open_data(str(path), options=opts(label_separator=";"), class_names=LABELS, tokenizer=hf_tokenizer,
                     task="multi_label")
    np.testing.assert_array_equal(all_labels(data, width=4).numpy(), multi_hot_oracle([[0, 2], [], [3, 1]], 4))


def test_text_index_labels_without_names_wait_for_the_models_width(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "ml.jsonl", [{"text": "good", "label": [0, 2]}, {"text": "bad", "label": [5]}])
    data = open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="multi_label")
    _, labels = next(iter(data.batches()))
    assert isinstance(labels, LabelSets) and len(labels) == 2
    assert task_batch_labels(labels, task="multi_label", width=6, where="x").tolist() == [[1, 0, 1, 0, 0, 0],
                                                                                         [0, 0, 0, 0, 0, 1]]
    with pytest.raises(DataError) as err:
        task_batch_labels(labels, task="multi_label", width=4, where="x")
    assert str(err.value) == (f"{path}: line 2: label index 5 is out of range for models with 4 labels "
                              "(expected 0..3)")


@pytest.mark.parametrize(("label", "message"), [
    ("sports", "label 'sports' is a str; task multi_label expects a list of label names or indices"),
    (["sport"], "label 'sport' is neither an integer nor a known class name"),
    ([1.5], "label 1.5 is not an integer class index"),
])
def test_jsonl_multi_label_labels_that_do_not_fit_name_file_and_line(tmp_path: Path, hf_tokenizer: Any, label: Any,
                                                                     message: str) -> None:
    path = write_jsonl(tmp_path / "ml.jsonl", [{"text": "good", "label": []}, {"text": "bad", "label": label}])
    with pytest.raises(DataError) as err:
        data = open_data(str(path), options=opts(), class_names=LABELS, tokenizer=hf_tokenizer, task="multi_label")
        all_labels(data, width=4)
    assert str(err.value).startswith(f"{path}: line 2, key 'label': ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "pt"])
def test_tensor_files_hold_an_n_by_l_multi_hot(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 3)).astype(np.float32)
    y = (rng.random((9, 4)) < 0.4)
    path = tmp_path / f"ml.{fmt}"
    if fmt == "npz":
        np.savez(path, x=x, labels=y.astype(np.float32))        # 0.0 / 1.0 floats are fine
    elif fmt == "safetensors":
        save_file({"x": torch.from_numpy(x), "labels": torch.from_numpy(y)}, str(path))   # bool
    else:
        torch.save({"x": torch.from_numpy(x), "labels": torch.from_numpy(y.astype(np.int64))}, path)
    data = open_data(str(path), options=opts(batch_size=4), class_names=None, tokenizer=None, task="multi_label")
    got = all_labels(data)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), y.astype(np.int64))


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([0, 1, 1]), "labels of shape (3,); task multi_label expects an (N, L) 0/1 multi-hot tensor"),
    (np.array([[0, 1], [2, 0], [1, 1]]), "label 2 at sample 1, column 0; task multi_label expects 0/1"),
    (np.array([[0, 0.5], [1, 0], [1, 1]]), "label 0.5 at sample 0, column 1"),
])
def test_tensor_multi_hot_that_does_not_fit_is_refused(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    path = tmp_path / "ml.npz"
    np.savez(path, x=np.zeros((3, 2), np.float32), labels=labels)
    with pytest.raises(DataError) as err:
        open_data(str(path), options=opts(), class_names=None, tokenizer=None, task="multi_label")
    assert str(err.value).startswith(f"{path}: tensor 'labels': ") and message in str(err.value)


def test_a_multi_hot_of_the_wrong_width_is_refused_against_the_models() -> None:
    with pytest.raises(DataError) as err:
        task_batch_labels(torch.zeros((2, 3), dtype=torch.int64), task="multi_label", width=4, where="d.npz: batch 1",
                          offset=64)
    assert str(err.value) == "d.npz: batch 1 (sample 64): a multi-hot of width 3, but the models output 4 labels"


# ----------------------------------------------------------------------------------------------- regression


def test_jsonl_regression_numbers_and_lists(tmp_path: Path, hf_tokenizer: Any) -> None:
    rows = [{"text": "good", "label": [1.5, -2]}, {"text": "bad", "label": [0, 3.25]}]
    path = write_jsonl(tmp_path / "rg.jsonl", rows)
    data = open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="regression")
    got = all_labels(data)
    assert got.dtype == torch.float32 and got.tolist() == [[1.5, -2.0], [0.0, 3.25]]
    path = write_jsonl(tmp_path / "one.jsonl", [{"text": "good", "label": 4}, {"text": "bad", "label": -0.5}])
    data = open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="regression")
    assert all_labels(data).tolist() == [[4.0], [-0.5]]


def test_csv_regression_targets_as_text(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_csv(tmp_path / "rg.csv", ["text", "label"], [["good", "1e-3"], ["bad", " -7.5 "]])
    data = open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="regression")
    np.testing.assert_allclose(all_labels(data).numpy(), [[1e-3], [-7.5]])


@pytest.mark.parametrize(("fmt", "label", "message"), [
    ("csv", "high", "line 3, column 'label': target 'high' is not a number (task regression)"),
    ("csv", "nan", "line 3, column 'label': target 'nan' is not finite"),
    ("jsonl", "high", "line 2, key 'label': target 'high' is not a number (task regression)"),
    ("jsonl", True, "line 2, key 'label': target True (bool) is not a number"),
    ("jsonl", [], "line 2, key 'label': an empty list of targets"),
])
def test_text_regression_targets_that_do_not_fit_name_file_and_line(tmp_path: Path, hf_tokenizer: Any, fmt: str,
                                                                    label: Any, message: str) -> None:
    if fmt == "csv":
        path = write_csv(tmp_path / "rg.csv", ["text", "label"], [["good", "1"], ["bad", label]])
    else:
        path = write_jsonl(tmp_path / "rg.jsonl", [{"text": "good", "label": 1}, {"text": "bad", "label": label}])
    with pytest.raises(DataError) as err:
        all_labels(open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="regression"))
    assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}")


def test_text_regression_rows_of_different_widths_are_refused(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "rg.jsonl", [{"text": "good", "label": [1, 2]}, {"text": "bad", "label": 3}])
    with pytest.raises(DataError, match=r"line 2: 1 targets, but line 1 has 2"):
        all_labels(open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer, task="regression"))


@pytest.mark.parametrize("labels", [np.array([1, 2, 3], np.int64), np.array([[0.5, 1.0], [2, 3], [4, 5]], np.float64)])
def test_tensor_regression_targets_become_n_by_t_float32(tmp_path: Path, labels: np.ndarray) -> None:
    path = tmp_path / "rg.npz"
    np.savez(path, x=np.zeros((3, 2), np.float32), labels=labels)
    got = all_labels(open_data(str(path), options=opts(batch_size=2), class_names=None, tokenizer=None,
                               task="regression"))
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), labels.reshape(3, -1).astype(np.float32))


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([1.0, np.inf, 0.0]), "target [inf] of sample 1 is not finite"),
    (np.array(["a", "b", "c"]), "labels of dtype <U1; task regression expects numbers"),
    (np.array([True, False, True]), "labels of dtype bool; task regression expects numeric targets"),
    (np.zeros((3, 2, 2)), "targets of shape (3, 2, 2); task regression expects (N,) or (N, T)"),
])
def test_tensor_regression_targets_that_do_not_fit_are_refused(tmp_path: Path, labels: np.ndarray,
                                                              message: str) -> None:
    path = tmp_path / "rg.npz"
    np.savez(path, x=np.zeros((3, 2), np.float32), labels=labels)
    with pytest.raises(DataError) as err:
        open_data(str(path), options=opts(), class_names=None, tokenizer=None, task="regression")
    assert str(err.value) == f"{path}: tensor 'labels': {message}" or message in str(err.value)
    assert str(err.value).startswith(f"{path}: tensor 'labels': ")


def test_targets_of_the_wrong_width_are_refused_against_the_models() -> None:
    with pytest.raises(DataError) as err:
        task_batch_labels(torch.zeros((2, 1)), task="regression", width=3, where="d.npz: batch 0",
                          places=("d.jsonl: line 1", "d.jsonl: line 2"))
    assert str(err.value) == "d.jsonl: line 1: targets of width 1, but the models output 3 targets"


# ----------------------------------------------------------------------------------------------- factories


def _factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "task_factories.py").write_text(
        "import torch\n"
        "def multi_hot():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(10, 3, generator=g)\n"
        "    y = (torch.rand(10, 4, generator=g) < 0.5).long()\n"
        "    return torch.utils.data.TensorDataset(x, y)\n"
        "def targets():\n"
        "    return [(torch.zeros(4, 3), torch.arange(4.0)), (torch.zeros(2, 3), torch.tensor([1.0, 2.0]))]\n"
        "def bad_targets():\n"
        "    return [(torch.zeros(2, 3), torch.tensor([1.0, float('nan')]))]\n"
        "def one_dim_multi_label():\n"
        "    return [(torch.zeros(2, 3), torch.tensor([1, 0]))]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("task_factories", None)


def test_factory_multi_hot_and_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _factory_module(tmp_path, monkeypatch)
    data = open_data("task_factories:multi_hot", options=opts(batch_size=4), class_names=None, tokenizer=None,
                     task="multi_label")
    g = torch.Generator().manual_seed(0)
    torch.randn(10, 3, generator=g)
    expected = (torch.rand(10, 4, generator=g) < 0.5).long()
    assert torch.equal(all_labels(data), expected)
    data = open_data("task_factories:targets", options=opts(), class_names=None, tokenizer=None, task="regression")
    assert all_labels(data).tolist() == [[0.0], [1.0], [2.0], [3.0], [1.0], [2.0]]


@pytest.mark.parametrize(("spec", "task", "message"), [
    ("task_factories:bad_targets", "regression",
     "data factory 'task_factories:bad_targets': batch 0 (samples from 0), labels: target [nan] of sample 1 is not "
     "finite"),
    ("task_factories:one_dim_multi_label", "multi_label",
     "data factory 'task_factories:one_dim_multi_label': batch 0 (samples from 0), labels: labels of shape (2,); "
     "task multi_label expects an (N, L) 0/1 multi-hot tensor"),
])
def test_factory_labels_that_do_not_fit_name_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                                                       task: str, message: str) -> None:
    _factory_module(tmp_path, monkeypatch)
    with pytest.raises(DataError) as err:
        all_labels(open_data(spec, options=opts(), class_names=None, tokenizer=None, task=task))
    assert str(err.value).startswith(message)
