"""gate.tasks: the run's task resolved in one place (declared, outputs, Hugging Face configs), conflicts refused,
checks per task; gate.forward's multi-label and regression kinds (scipy.special.expit as the sigmoid oracle)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.special import expit

from gate.config import CHECK_NAMES, build_config
from gate.errors import ConfigError, ModelError
from gate.forward import check_output_kind, detect_task_kind, predictions, to_scores
from gate.tasks import DEFAULT_CHECKS, refuse_conflicts, refuse_unsupported_checks, resolve_task, target_names


def hf(problem_type: str | None = None, num_labels: int = 2, path: str = "hf-dir") -> SimpleNamespace:
    config = SimpleNamespace(problem_type=problem_type, num_labels=num_labels)
    return SimpleNamespace(format="huggingface", module=SimpleNamespace(config=config), path=path)


def plain(path: str = "m.pt") -> SimpleNamespace:
    return SimpleNamespace(format="state_dict", module=SimpleNamespace(), path=path)


def models(baseline: SimpleNamespace, candidate: SimpleNamespace) -> dict[str, SimpleNamespace]:
    return {"baseline": baseline, "candidate": candidate}


# ------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(("raw", "expected"), [
    ({}, "classification"),
    ({"task": "regression"}, "regression"),
    ({"task": "multi_label"}, "multi_label"),
    ({"model": {"output": "regression"}}, "regression"),
    ({"model": {"output": "multi_label"}}, "multi_label"),
    ({"model": {"candidate": {"output": "multi_label_probabilities"}}}, "multi_label"),
    ({"model": {"output": "sigmoid"}}, "classification"),
])
def test_the_task_is_declared_or_read_from_the_declared_outputs(raw, expected):
    assert resolve_task(build_config(raw), models(plain(), plain())) == expected


@pytest.mark.parametrize(("baseline", "candidate", "expected"), [
    (hf("multi_label_classification"), hf("multi_label_classification"), "multi_label"),
    (hf("regression"), hf(None, num_labels=1), "regression"),
    (hf(None, num_labels=1), plain(), "regression"),                 # the other role says nothing
    (hf("single_label_classification"), hf(None, num_labels=3), "classification"),
    (hf(None, num_labels=3), hf(None, num_labels=3), "classification"),
])
def test_hugging_face_configs_say_the_task_when_nothing_is_declared(baseline, candidate, expected):
    assert resolve_task(build_config({}), models(baseline, candidate)) == expected


def test_a_declared_output_wins_over_the_models_config_json():
    """A one-label head declared binary_logit is a classifier, whatever transformers would call it."""
    config = build_config({"model": {"output": "binary_logit"}})
    assert resolve_task(config, models(hf(None, num_labels=1), hf(None, num_labels=1))) == "classification"


@pytest.mark.parametrize(("raw", "message"), [
    ({"task": "regression", "model": {"output": "logits"}},
     "model.output: logits is a classification output, but task is regression"),
    ({"task": "classification", "model": {"candidate": {"output": "multi_label"}}},
     "model.candidate.output: multi_label is a multi_label output, but task is classification"),
    ({"model": {"baseline": {"output": "regression"}, "candidate": {"output": "multi_label"}}},
     "the baseline's output regression (regression) and the candidate's multi_label (multi_label) are different tasks"),
])
def test_conflicting_declarations_are_refused_before_anything_loads(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        refuse_conflicts(build_config(raw, source="gate.yaml"))


def test_two_hugging_face_heads_of_different_tasks_are_refused_naming_both():
    with pytest.raises(ConfigError) as err:
        resolve_task(build_config({}), models(hf("regression", path="base"), hf("multi_label_classification",
                                                                                 path="cand")))
    text = str(err.value)
    assert "the baseline is a regression model (baseline base: config.json problem_type regression)" in text
    assert "the candidate a multi_label model (candidate cand: config.json problem_type " in text


def test_a_declared_task_against_a_models_config_json_is_refused():
    with pytest.raises(ConfigError) as err:
        resolve_task(build_config({"task": "classification"}, source="gate.yaml"), models(hf("regression"), plain()))
    assert str(err.value) == ("gate.yaml: task: classification, but baseline hf-dir: config.json problem_type "
                              "regression means regression; set model.baseline.output to say what the model returns")


def test_an_unknown_task_is_a_schema_error():
    with pytest.raises(ConfigError, match="task: expected one of auto, classification, multi_label, regression"):
        build_config({"task": "ranking"})


def test_target_names():
    assert target_names(1) == ("target",)
    assert target_names(3) == ("target[0]", "target[1]", "target[2]")


# ------------------------------------------------------------------------------------------- checks per task


def test_classification_runs_the_checks_it_ran_before():
    config = build_config({})
    assert config.enabled_checks("classification") == config.enabled_checks() == ["sanity", "accuracy", "per_class",
                                                                                   "flips"]


def test_other_tasks_run_their_default_list_and_what_is_enabled_by_name():
    config = build_config({"checks": {"drift": {"enabled": True}, "latency": {"enabled": True}}})
    assert [n for n in DEFAULT_CHECKS["multi_label"] if n in CHECK_NAMES and n != "sanity"] == [
        n for n in ("multilabel",) if n in CHECK_NAMES]          # a task check not registered yet is skipped
    assert config.enabled_checks("regression")[:1] == ["sanity"]
    assert "drift" in config.enabled_checks("regression") and "latency" in config.enabled_checks("multi_label")
    assert not {"accuracy", "per_class", "flips"} & set(config.enabled_checks("regression"))
    assert set(config.explicit_checks) == {"drift", "latency"}


def test_disabling_a_default_check_by_name_holds_for_every_task():
    config = build_config({"checks": {"sanity": {"enabled": False}}})
    assert "sanity" not in config.enabled_checks("regression") + config.enabled_checks("classification")


def test_an_explicitly_enabled_classification_check_is_refused_for_regression():
    config = build_config({"checks": {"accuracy": {"enabled": True}}}, source="gate.yaml")
    with pytest.raises(ConfigError) as err:
        refuse_unsupported_checks(config, "regression", config.enabled_checks("regression"))
    assert str(err.value) == ("gate.yaml: checks.accuracy: enabled (in the config or by --enable), but the accuracy "
                              "check does not support the task regression (it supports classification); leave it "
                              "off for this model")
    refuse_unsupported_checks(config, "classification", config.enabled_checks("classification"))   # no error


@pytest.mark.parametrize("name", ["sanity", "drift", "latency", "onnx"])
def test_the_task_agnostic_checks_support_every_task(name):
    from gate.tasks import check_tasks

    assert check_tasks(name) == {"classification", "multi_label", "regression"}


@pytest.mark.parametrize("name", ["accuracy", "per_class", "flips", "scores", "slices", "cases"])
def test_classification_checks_declare_classification_only(name):
    from gate.tasks import check_tasks

    assert check_tasks(name) == {"classification"}


# ------------------------------------------------------------------------------------------- output kinds


def test_multi_label_logits_are_detected_when_a_value_leaves_zero_one():
    out = torch.tensor([[0.2, 1.7, -0.3], [0.5, 0.1, 0.9]])
    assert detect_task_kind(out, task="multi_label") == "multi_label_logits"
    assert detect_task_kind(out.clamp(0, 1), task="multi_label", named_logits=True) == "multi_label_logits"


def test_multi_label_values_all_in_zero_one_ask_in_one_line():
    with pytest.raises(ModelError) as err:
        detect_task_kind(torch.tensor([[0.2, 0.7], [0.5, 0.1]]), task="multi_label", role="candidate")
    text = str(err.value)
    assert "\n" not in text and "model.candidate.output" in text
    assert "multi_label_probabilities or multi_label_logits" in text


def test_multi_label_logits_become_sigmoid_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(7, 4)).astype(np.float32)
    scores = to_scores(torch.from_numpy(logits), kind="multi_label_logits")
    assert scores.dtype == torch.float32 and scores.shape == (7, 4)
    np.testing.assert_allclose(scores.numpy(), expit(logits), rtol=1e-6)
    assert to_scores(torch.from_numpy(logits), kind="multi_label").shape == (7, 4)   # detected on the call


def test_multi_label_columns_follow_the_baseline_label_order():
    probs = torch.tensor([[0.1, 0.6, 0.9]])
    assert to_scores(probs, kind="multi_label_probabilities", columns=(2, 0, 1)).tolist() == [[pytest.approx(0.9),
                                                                                             pytest.approx(0.1),
                                                                                             pytest.approx(0.6)]]


def test_an_infinite_multi_label_logit_reaches_sanity_as_non_finite():
    scores = to_scores(torch.tensor([[float("inf"), 0.0], [float("nan"), -1.0]]), kind="multi_label_logits")
    assert torch.isnan(scores[:, 0]).all() and scores[0, 1] == 0.5


def test_declared_multi_label_probabilities_outside_zero_one_are_refused():
    with pytest.raises(ModelError, match=r"values outside \[0, 1\].*multi_label_logits"):
        check_output_kind(torch.tensor([[1.5, 0.2]]), "multi_label_probabilities", role="candidate")


@pytest.mark.parametrize(("output", "shape"), [(torch.tensor([1.5, -2.0, 3.0]), (3, 1)),
                                               (torch.tensor([[1.5, 0.0], [-2.0, 7.0]]), (2, 2))])
def test_regression_outputs_are_kept_as_b_by_t_floats(output, shape):
    scores = to_scores(output.double(), kind="regression")
    assert scores.shape == shape and scores.dtype == torch.float32
    assert detect_task_kind(output, task="regression") == "regression"
    np.testing.assert_array_equal(scores.numpy().reshape(-1), output.numpy().reshape(-1))


def test_predictions_per_task():
    scores = torch.tensor([[0.2, 0.5, 0.7], [0.9, 0.1, 0.49]])
    np.testing.assert_array_equal(predictions(scores, "classification"), [2, 0])
    np.testing.assert_array_equal(predictions(scores, "multi_label"), [[False, True, True], [True, False, False]])
    assert predictions(scores, "regression").dtype == np.float32
    np.testing.assert_array_equal(predictions(scores, "regression"), scores.numpy())
