"""gate.forward: output kinds read as declared or detected, and never a silent misreading."""
from __future__ import annotations

import pytest
import torch

from gate.errors import ModelError
from gate.forward import cast_floating, detect_output_kind, to_scores


@pytest.mark.parametrize(("output", "kind"), [
    (torch.tensor([[2.0, -1.0], [0.3, 0.2]]), "logits"),
    (torch.tensor([[0.9, 0.1], [0.25, 0.75]]), "probabilities"),
    (torch.tensor([[0.9, 0.1], [0.25, 0.75]]).half(), "probabilities"),
    (torch.tensor([1.5, -0.2, 0.4]), "binary_logit"),
    (torch.tensor([[1.5], [-0.2]]), "binary_logit"),
    (torch.tensor([[float("nan"), float("inf")], [float("-inf"), float("nan")]]), "logits"),
])
def test_unambiguous_outputs_are_detected(output, kind):
    assert detect_output_kind(output) == kind


@pytest.mark.parametrize(("output", "asks"), [
    (torch.tensor([[0.9], [0.2], [0.6]]), "sigmoid or binary_logit"),
    (torch.tensor([0.9, 0.2]), "sigmoid or binary_logit"),
    (torch.tensor([[0.9, 0.8], [0.1, 0.3]]), "logits or multi_label"),
])
def test_ambiguous_outputs_ask_for_output_in_gate_yaml(output, asks):
    with pytest.raises(ModelError) as err:
        detect_output_kind(output, role="candidate")
    assert "model.output (or model.candidate.output)" in str(err.value) and asks in str(err.value)


def test_a_dict_or_hugging_face_output_named_logits_is_read_as_logits():
    scores = to_scores({"logits": torch.tensor([[0.9, 0.8], [0.1, 0.3]])})
    assert scores.argmax(1).tolist() == [0, 1]


def test_a_sigmoid_probability_is_not_stacked_as_a_logit():
    p = torch.tensor([0.9, 0.2, 0.6, 0.4])
    scores = to_scores(p.reshape(-1, 1), kind="sigmoid")
    assert scores.argmax(1).tolist() == [1, 0, 1, 0]                 # class 1 exactly when p > 0.5
    torch.testing.assert_close(scores, torch.stack([1 - p, p], dim=1))
    # Read as a logit, every p > 0 predicts class 1: the misreading the declared kind prevents.
    assert to_scores(p, kind="binary_logit").argmax(1).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(("output", "kind", "message"), [
    (torch.tensor([[2.0], [-3.0]]), "sigmoid", "values outside [0, 1]"),
    (torch.tensor([[0.2, 0.8]]), "sigmoid", "expects one column"),
    (torch.tensor([[1.2, 0.8]]), "probabilities", "values outside [0, 1]"),
    (torch.tensor([0.5, 0.1]), "logits", "expects one column per class"),
])
def test_a_declared_kind_that_cannot_fit_the_output_is_refused(output, kind, message):
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_scores(output, kind=kind)


def test_non_finite_probabilities_reach_the_sanity_check_instead_of_an_error():
    scores = to_scores(torch.tensor([[float("nan")], [0.3]]), kind="sigmoid")
    assert torch.isnan(scores[0]).all() and scores[1].tolist() == pytest.approx([0.7, 0.3])


def test_only_floating_inputs_are_cast():
    inputs = {"x": torch.ones(2, 3), "ids": torch.ones(2, 3, dtype=torch.int64), "n": 3}
    cast = cast_floating(inputs, torch.float16)
    assert cast["x"].dtype == torch.float16 and cast["ids"].dtype == torch.int64 and cast["n"] == 3


def test_onnx_outputs_are_read_like_the_pytorch_candidate():
    """The ONNX parity check compares ONNX Runtime's output with the candidate's scores: same kind, same columns."""
    from types import SimpleNamespace

    from gate.checks.onnx import normalise_logits
    from gate.forward import scores_of

    p = torch.tensor([[0.9], [0.2], [0.6]])
    sigmoid = SimpleNamespace(role="candidate", output="sigmoid", columns=(1, 0))
    got = normalise_logits(p.numpy(), sigmoid)
    assert got.tolist() == scores_of(sigmoid, p).tolist()
    assert got.argmax(1).tolist() == [0, 1, 0]        # columns (1, 0): the baseline's class 0 is the candidate's 1
    logits = SimpleNamespace(role="candidate", output="logits", columns=(2, 0, 1))
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert normalise_logits(z.numpy(), logits).tolist() == z[:, [2, 0, 1]].tolist()


def test_a_float32_model_gets_half_precision_inputs_widened_and_float64_ones_as_they_are():
    """Inputs are cast to each model's dtype; for a float32 model only float16 / bfloat16 ones are widened: a model
    with one float64 layer among float32 ones takes float64 inputs (it fails on float32 ones)."""
    from gate.forward import call_model, set_input_dtype

    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 2)
    set_input_dtype(plain, torch.float32)
    x = torch.randn(3, 4)
    assert torch.equal(call_model(plain, x.half()), plain(x.half().float()))
    assert torch.equal(call_model(plain, x.bfloat16()), plain(x.bfloat16().float()))

    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = torch.nn.Linear(4, 4).double()
            self.rest = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))   # most elements float32

        def forward(self, v):
            return self.rest(self.first(v).float())

    mixed = Mixed()
    set_input_dtype(mixed, torch.float32)               # gate.precision: the dtype most of its elements have
    assert torch.equal(call_model(mixed, x.double()), mixed(x.double()))
