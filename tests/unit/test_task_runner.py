"""What checks see per task (gate.checks.base.Step), from the real pass: multi-label probabilities in the baseline's
label order, multi-hot labels and thresholded predictions; regression (B, T) targets and predictions; no paired
counts outside classification; one batch vs many batches."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy.special import expit
from torch import nn

from gate.checks.base import Check, RunContext, Step
from gate.config import build_config
from gate.data import open_data
from gate.errors import ConfigError, DataError
from gate.models.memory import in_memory_model
from gate.report.model import CheckResult
from gate.runner import align_models, evaluate

CPU = torch.device("cpu")
NAMES = ("sports", "politics", "tech", "arts")


class Recorder(Check):
    """Keeps copies of what every update() saw."""

    name = "recorder"
    tasks = frozenset({"classification", "multi_label", "regression"})

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.steps: list[dict[str, Any]] = []

    def update(self, step: Step) -> None:
        self.steps.append({"task": step.task, "labels": step.labels.clone(), "offset": step.offset,
                           "scores": {r: s.clone() for r, s in step.scores.items()},
                           "preds": {r: np.array(p) for r, p in step.preds.items()}})

    def compute(self) -> CheckResult:
        return CheckResult(self.name, "pass", "recorded")


def linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    return layer.eval()


def run(raw: dict[str, Any], baseline: nn.Module, candidate: nn.Module, batches: list[tuple[Any, Any]],
        task: str) -> tuple[Any, RunContext, Recorder]:
    config = build_config(raw)
    models = {role: in_memory_model(m, role=role, device=CPU) for role, m in
              (("baseline", baseline), ("candidate", candidate))}
    models, alignment = align_models(config, models, task)
    ctx = RunContext(config=config, models=models, class_names=alignment.names or (), device=CPU,
                     classes=alignment, task=task)
    data = open_data(batches, options=config.data, class_names=alignment.names, tokenizer=None, task=task)
    recorder = Recorder({}, ctx)
    counts, samples, _ = evaluate(ctx, data, [recorder])
    assert samples == sum(len(x) for x, _ in batches)
    return counts, ctx, recorder


@pytest.fixture
def multi_label_world() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    x = rng.normal(size=(10, 5)).astype(np.float32)
    y = (rng.random((10, 4)) < 0.5).astype(np.int64)
    order = [2, 0, 3, 1]                      # the candidate's columns: the same labels in another order
    return {"w": w, "b": b, "x": x, "y": y, "order": order}


def test_multi_label_steps_hold_probabilities_in_the_baselines_label_order(multi_label_world):
    world = multi_label_world
    w, b, x, y, order = world["w"], world["b"], world["x"], world["y"], world["order"]
    raw = {"task": "multi_label", "model": {"baseline": {"class_names": list(NAMES)},
                                            "candidate": {"class_names": [NAMES[i] for i in order]}}}
    baseline, candidate = linear(w, b), linear(w[order], b[order])
    batches = [(torch.from_numpy(x[:6]), torch.from_numpy(y[:6])), (torch.from_numpy(x[6:]), torch.from_numpy(y[6:]))]
    counts, ctx, rec = run(raw, baseline, candidate, batches, "multi_label")
    assert counts is None and ctx.counts is None and "flipped" not in ctx.extras
    assert ctx.class_names == NAMES and [m.output for m in ctx.models.values()] == ["multi_label_logits"] * 2
    expected = expit(x @ w.T + b)                              # scipy's sigmoid on numpy's matmul: the oracle
    scores = {r: torch.cat([s["scores"][r] for s in rec.steps]).numpy() for r in ("baseline", "candidate")}
    np.testing.assert_allclose(scores["baseline"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores["candidate"], expected, rtol=1e-5, atol=1e-6)  # reordered back by name
    labels = torch.cat([s["labels"] for s in rec.steps])
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.from_numpy(y))
    preds = np.concatenate([s["preds"]["candidate"] for s in rec.steps])
    assert preds.dtype == np.bool_ and np.array_equal(preds, expected >= 0.5)
    assert {s["task"] for s in rec.steps} == {"multi_label"} and [s["offset"] for s in rec.steps] == [0, 6]


def test_regression_steps_hold_b_by_t_targets_and_predictions():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    x, y = rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(7, 2)).astype(np.float32)
    batches = [(torch.from_numpy(x[i:i + 3]), torch.from_numpy(y[i:i + 3])) for i in range(0, 7, 3)]
    counts, ctx, rec = run({"task": "regression"}, linear(w, b), linear(w, b + 1), batches, "regression")
    assert counts is None and ctx.class_names == ("target[0]", "target[1]")
    pred = torch.cat([s["scores"]["candidate"] for s in rec.steps]).numpy()
    np.testing.assert_allclose(pred, x @ w.T + b + 1, rtol=1e-5, atol=1e-5)
    labels = torch.cat([s["labels"] for s in rec.steps])
    assert labels.dtype == torch.float32 and np.array_equal(labels.numpy(), y)
    assert all(s["preds"]["baseline"].dtype == np.float32 for s in rec.steps)


def test_a_scalar_regression_target_is_named_target_and_kept_as_one_column():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0))     # returns (B,)
    _, ctx, rec = run({"task": "regression"}, model, model, [(x, torch.arange(5.0))], "regression")
    assert ctx.class_names == ("target",)
    assert rec.steps[0]["labels"].shape == (5, 1) and rec.steps[0]["scores"]["baseline"].shape == (5, 1)


def test_one_batch_equals_many_batches_for_every_task(multi_label_world):
    world = multi_label_world
    x, y = torch.from_numpy(world["x"]), torch.from_numpy(world["y"])
    model = linear(world["w"], world["b"])
    for task, labels in (("multi_label", y), ("regression", y[:, :4].float())):
        whole = run({"task": task}, model, model, [(x, labels)], task)[2]
        split = run({"task": task}, model, model, [(x[:3], labels[:3]), (x[3:], labels[3:])], task)[2]
        for key in ("baseline", "candidate"):
            torch.testing.assert_close(whole.steps[0]["scores"][key],
                                       torch.cat([s["scores"][key] for s in split.steps]), rtol=1e-6, atol=1e-6)


def test_class_names_of_the_wrong_length_for_the_targets_are_refused():
    model = linear(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ConfigError, match="3 names but the models output 2 targets"):
        run({"task": "regression", "class_names": ["a", "b", "c"]}, model, model,
            [(torch.zeros(2, 3), torch.zeros(2, 2))], "regression")


def test_labels_that_do_not_fit_the_models_width_are_refused():
    model = linear(np.ones((4, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(DataError, match="a multi-hot of width 3, but the models output 4 labels"):
        run({"task": "multi_label"}, model, model, [(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.int64))],
            "multi_label")


def test_a_class_label_out_of_range_names_its_first_sample():
    # (negative labels are refused by the data readers before the pass)
    model = linear(np.ones((4, 3), np.float32), np.zeros(4, np.float32))
    batches = [(torch.zeros(3, 3), torch.tensor([0, 1, 2])), (torch.zeros(4, 3), torch.tensor([3, 4, 1, 5]))]
    with pytest.raises(DataError, match=r"label 4 of sample 4 is out of range for models with 4 classes "
                                        r"\(expected 0\.\.3\)"):
        run({"model": {"output": "logits"}}, model, model, batches, "classification")


def test_onnx_output_parity_counts_thresholded_agreement_and_the_tolerance_rule():
    """gate.checks.onnx.OutputParity against numpy: batches streamed equal the whole arrays at once."""
    from gate.checks.onnx import OutputParity

    rng = np.random.default_rng(4)
    ref = rng.random((50, 3)).astype(np.float32)
    got = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    got[7, 1] = 0.49 if ref[7, 1] >= 0.5 else 0.51                    # one label flips across the threshold
    stats = OutputParity(3, task="multi_label", atol=1e-4, rtol=1e-3)
    for start in range(0, 50, 16):
        stats.update(ref[start:start + 16], got[start:start + 16])
    same = (ref >= 0.5) == (got >= 0.5)
    assert stats.samples == 50 and stats.elements == 150
    assert stats.labels_agree == int(same.sum()) and stats.samples_agree == int(same.all(axis=1).sum())
    diff = np.abs(got.astype(np.float64) - ref)
    outside = ~((diff <= 1e-4) | (diff <= 1e-3 * np.abs(ref.astype(np.float64))))
    assert stats.outside == int(outside.sum()) and stats.max_abs == pytest.approx(diff.max())
    regression = OutputParity(3, task="regression", atol=1e-4, rtol=1e-3)
    regression.update(ref, got)
    assert regression.outside == stats.outside and regression.samples_agree == 0
