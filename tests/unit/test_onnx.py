"""The ONNX cross-check: exports, ship files, numeric and task parity, exporter failures, missing extras.

Steps are fed directly by a tiny mimic of the runner (run the candidate, normalise its output with the runner's
gate.forward.to_scores, build the Step). Oracles: onnxruntime run here on the same file, scikit-learn's metrics,
and element-wise rules written out by hand.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gate.checks.base import RunContext, Step
from gate.checks.onnx import (
    REL_EPSILON,
    OnnxCheck,
    ParityStats,
    abs_rel_errors,
    normalise_logits,
    outside_tolerance,
    required_atol,
    required_rtol,
)
from gate.config import build_config
from gate.errors import ConfigError, MissingExtraError
from gate.forward import call_model, to_scores
from gate.models.base import LoadedModel
from gate.onnx_export import OnnxExportError, export_onnx, named_inputs

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
metrics = pytest.importorskip("sklearn.metrics")

REPO = Path(__file__).resolve().parents[2]
NO_LATENCY = {"latency": {"enabled": False}}


# ------------------------------------------------------------------------------------------------ models


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


class LSTMText(nn.Module):
    def __init__(self, vocab: int = 40, num_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(ids))
        return self.head(out[:, -1])


class TinyEncoder(nn.Module):
    def __init__(self, vocab: int = 40, num_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(16, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


class Bessel(nn.Module):
    """torch.special.i1 has no ONNX translation in either exporter (checked in the test)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i1(x)


class Unexportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.block = nn.Sequential(nn.ReLU(), Bessel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.fc(x))


def seeded(cls: type, *args: Any, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls(*args).eval()


# ------------------------------------------------------------------------------------------------ mimic runner


def loaded(module: Any, *, input_names: tuple[str, ...] | None, fmt: str = "state_dict") -> LoadedModel:
    return LoadedModel(
        role="candidate", path="candidate.pt", format=fmt, module=module, sha256=None, size_bytes=None,
        parameters=None, class_names=None, tokenizer=None, input_names=input_names, is_eager=fmt != "torchscript",
    )


def make_check(
    module: Any,
    *,
    options: dict[str, Any] | None = None,
    input_names: tuple[str, ...] | None = ("x",),
    num_classes: int,
    extras: dict[str, Any] | None = None,
    fmt: str = "state_dict",
) -> OnnxCheck:
    config = build_config({"checks": {"onnx": {"enabled": True, **(options or {})}}})
    ctx = RunContext(
        config=config,
        models={"candidate": loaded(module, input_names=input_names, fmt=fmt)},
        class_names=tuple(f"c{k}" for k in range(num_classes)),
        device=torch.device("cpu"),
        extras=dict(extras or {}),
    )
    return OnnxCheck(config.check("onnx"), ctx)


def candidate_scores(module: Any, inputs: Any, input_names: tuple[str, ...] | None) -> torch.Tensor:
    with torch.inference_mode():
        return to_scores(call_model(module, inputs, input_names=input_names))


def feed(check: OnnxCheck, batches: list[tuple[Any, torch.Tensor]]) -> list[np.ndarray]:
    """Run the pass like the runner does; returns the candidate's scores per batch (the test's PyTorch side)."""
    candidate = check.ctx.models["candidate"]
    offset = 0
    scores = []
    for index, (inputs, labels) in enumerate(batches):
        s = candidate_scores(candidate.module, inputs, candidate.input_names)
        check.update(Step(index=index, offset=offset, inputs=inputs, labels=labels, scores={"candidate": s, "baseline": s}))
        scores.append(s.numpy())
        offset += int(labels.shape[0])
    return scores


def run_pass(check: OnnxCheck, batches: list[tuple[Any, torch.Tensor]]):
    check.setup()
    try:
        feed(check, batches)
        return check.compute()
    finally:
        check.teardown()


def image_batches(sizes: list[int], *, seed: int = 1, num_classes: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, num_classes, (n,), generator=gen)) for n in sizes]


def token_batches(shapes: list[tuple[int, int]], *, seed: int = 2, vocab: int = 40) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(1, vocab, shape, generator=gen), torch.randint(0, 3, (shape[0],), generator=gen)) for shape in shapes]


def ort_logits(path: Path, batches: list[tuple[Any, torch.Tensor]]) -> np.ndarray:
    """The oracle: onnxruntime run directly on the file, batch by batch, inputs matched by the graph's names."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outs = []
    for inputs, _ in batches:
        if isinstance(inputs, dict):
            feed_ = {n: inputs[n].numpy() for n in names}
        else:
            feed_ = {names[0]: inputs.numpy()}
        outs.append(session.run(None, feed_)[0])
    return np.concatenate(outs)


def broken_copy(good: Path, out: Path, *, initializer: str, scale: float) -> Path:
    """The shipped file with one initializer's weights altered (a stale or mis-converted weight)."""
    model = onnx.load(str(good))
    for init in model.graph.initializer:
        if init.name == initializer:
            arr = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array((arr * scale).astype(arr.dtype), init.name))
            break
    else:
        raise AssertionError(f"no initializer {initializer} in {[i.name for i in model.graph.initializer]}")
    onnx.save(model, str(out))
    return out


def finding(result: Any, metric: str) -> Any:
    return next(f for f in result.findings if f.metric == metric)


# ------------------------------------------------------------------------------------------------ element rule


def test_tolerance_is_atol_or_rtol_and_nan_never_passes() -> None:
    atol, rtol = 1e-3, 1e-2
    ref = np.array([0.001, 1000.0, 1.0, 0.0, 1.0, np.nan, np.inf, 5.0], dtype=np.float32)
    got = np.array([0.0015, 1000.5, 1.5, 0.0, np.nan, np.nan, np.inf, 5.0], dtype=np.float32)
    # by hand: [within atol only, within rtol only, outside both, exact zero, NaN, NaN vs NaN, inf vs inf, equal]
    expected_fail = np.array([False, False, True, False, True, True, True, False])
    assert outside_tolerance(got, ref, atol=atol, rtol=rtol).tolist() == expected_fail.tolist()
    # numpy's isclose adds the two tolerances instead (|d| <= atol + rtol * |ref|): a difference beyond each
    # tolerance alone but within their sum passes numpy and fails the OR rule.
    edge_ref, edge_got = np.array([1.0]), np.array([1.0105])
    assert np.isclose(edge_got, edge_ref, atol=atol, rtol=rtol).all()
    assert outside_tolerance(edge_got, edge_ref, atol=atol, rtol=rtol).all()


def test_relative_error_uses_polygraphy_epsilon_for_zero_reference() -> None:
    absdiff, rel = abs_rel_errors(np.array([1e-6, 0.0]), np.array([0.0, 0.0]))
    assert absdiff.tolist() == [1e-6, 0.0]
    assert rel[0] == pytest.approx(1e-6 / REL_EPSILON)
    assert rel[1] == 0.0


def test_required_tolerances_are_the_smallest_that_pass() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 6))
    got = ref + rng.normal(scale=1e-3, size=ref.shape)
    atol, rtol = 1e-4, 1e-3
    absdiff, rel = abs_rel_errors(got, ref)
    need_atol = required_atol(absdiff, rel, rtol=rtol)
    need_rtol = required_rtol(absdiff, rel, atol=atol)
    assert outside_tolerance(got, ref, atol=atol, rtol=rtol).any()
    assert not outside_tolerance(got, ref, atol=need_atol, rtol=rtol).any()
    assert outside_tolerance(got, ref, atol=need_atol * (1 - 1e-9), rtol=rtol).any()
    assert not outside_tolerance(got, ref, atol=atol, rtol=need_rtol).any()
    assert outside_tolerance(got, ref, atol=atol, rtol=need_rtol * (1 - 1e-9)).any()
    nan_got = got.copy()
    nan_got[3, 2] = np.nan
    absdiff, rel = abs_rel_errors(nan_got, ref)
    assert required_atol(absdiff, rel, rtol=rtol) == math.inf
    assert required_rtol(absdiff, rel, atol=atol) == math.inf


@pytest.mark.parametrize("shape", [(5,), (5, 1)])
def test_single_logit_outputs_normalise_like_the_runner(shape: tuple[int, ...]) -> None:
    z = torch.randn(*shape)
    assert np.array_equal(normalise_logits(z.numpy()), to_scores(z).numpy())


def test_stats_merge_over_batches_like_one_batch() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 5)).astype(np.float32)
    got = ref + rng.normal(scale=0.3, size=ref.shape).astype(np.float32)
    labels = rng.integers(0, 5, size=40)
    whole = ParityStats(5, atol=1e-3, rtol=1e-3, top_n=7)
    whole.update(ref, got, labels, offset=0)
    parts = ParityStats(5, atol=1e-3, rtol=1e-3, top_n=7)
    for start in range(0, 40, 9):
        parts.update(ref[start : start + 9], got[start : start + 9], labels[start : start + 9], offset=start)
    for attr in ("agree", "outside", "negative_flips", "positive_flips", "max_abs", "required_atol", "required_rtol"):
        assert getattr(parts, attr) == getattr(whole, attr), attr
    assert parts.sum_abs == pytest.approx(whole.sum_abs)
    assert np.array_equal(parts.confusion_onnx, whole.confusion_onnx)
    assert [r.index for r in parts.worst] == [r.index for r in whole.worst]
    per_sample = np.abs(got.astype(np.float64) - ref).max(axis=1)
    assert [r.index for r in whole.worst] == list(np.argsort(-per_sample, kind="stable")[:7])


def test_sharded_stats_merge_to_the_single_runs() -> None:
    """Shards' ParityStats state (sums, per-shard maxima, heap rows) merged equal the stats of all the batches."""
    from gate.sharding import Shard, merge_arrays

    rng = np.random.default_rng(2)
    ref = rng.normal(size=(300, 4)).astype(np.float32)
    got = ref + np.round(rng.normal(scale=0.3, size=ref.shape), 1).astype(np.float32)   # ties in the errors
    labels = rng.integers(0, 4, size=300)
    whole = ParityStats(4, atol=1e-3, rtol=1e-3, top_n=6)
    shards = [ParityStats(4, atol=1e-3, rtol=1e-3, top_n=6) for _ in range(3)]
    for b, start in enumerate(range(0, 300, 16)):
        sl = slice(start, start + 16)
        whole.update(ref[sl], got[sl], labels[sl], offset=start)
        shards[b % 3].update(ref[sl], got[sl], labels[sl], offset=start)
        assert Shard(b % 3, 3).owns(b)
    parts = []
    for i, stats in enumerate(shards):
        state = stats.state()
        maxima = state.pop("maxima")
        parts.append({**state, "shard.rows.index": np.array([16 * i], np.int64), "shard.rows.maxima": maxima[None]})
    merged = merge_arrays(parts)
    back = ParityStats(4, atol=1e-3, rtol=1e-3, top_n=6)
    back.load_state(merged, merged["shard.rows.maxima"])
    for attr in ("samples", "elements", "agree", "outside", "non_finite", "negative_flips", "positive_flips",
                 "max_abs", "max_rel", "required_atol", "required_rtol"):
        assert getattr(back, attr) == getattr(whole, attr), attr
    assert back.sum_abs == pytest.approx(whole.sum_abs, rel=1e-12)
    assert np.array_equal(back.confusion_torch, whole.confusion_torch)
    assert back.worst == whole.worst and back.flips == whole.flips and len(whole.flips) == 6


# ------------------------------------------------------------------------------------------------ exports


def test_cnn_export_passes_and_matches_onnxruntime_and_sklearn() -> None:
    model = seeded(SmallCNN)
    batches = image_batches([16, 16, 5])   # the export sees 16; 5 proves the batch axis is dynamic
    check = make_check(model, options=NO_LATENCY, num_classes=4)
    check.setup()
    try:
        torch_scores = np.concatenate(feed(check, batches))
        result = check.compute()
        onnx_scores = ort_logits(check.onnx_path, batches)
    finally:
        check.teardown()
    assert check.onnx_path is None or not check.onnx_path.exists()   # the temp export is gone after teardown
    assert result.status == "pass", result.summary
    export = result.details["export"]
    assert export["exporter"] == "dynamo" and export["fallback_reason"] is None
    assert export["dynamic_axes"] == {"x": [0]}
    labels = torch.cat([b[1] for b in batches]).numpy()
    torch_pred, onnx_pred = torch_scores.argmax(1), onnx_scores.argmax(1)
    numeric, task = result.details["numeric"], result.details["task"]
    diff = np.abs(onnx_scores.astype(np.float64) - torch_scores)
    assert numeric["max_abs_error"] == pytest.approx(diff.max(), rel=1e-12, abs=0)
    assert numeric["mean_abs_error"] == pytest.approx(diff.mean(), rel=1e-9)
    assert numeric["outside_tolerance"] == 0
    assert task["onnx_accuracy"] == pytest.approx(metrics.accuracy_score(labels, onnx_pred))
    assert task["pytorch_accuracy"] == pytest.approx(metrics.accuracy_score(labels, torch_pred))
    assert task["top1_agreement"] == pytest.approx(metrics.accuracy_score(torch_pred, onnx_pred))
    p, r, f, s = metrics.precision_recall_fscore_support(labels, onnx_pred, labels=range(4), zero_division=0)
    for k in range(4):
        row = task["per_class"][f"c{k}"]
        assert row["onnx"]["precision"] == pytest.approx(p[k])
        assert row["onnx"]["recall"] == pytest.approx(r[k])
        assert row["onnx"]["f1"] == pytest.approx(f[k])
        assert row["support"] == s[k]


def test_lstm_text_model_exports_with_dynamic_batch_and_sequence() -> None:
    model = seeded(LSTMText)
    batches = token_batches([(8, 12), (3, 7), (5, 20)])
    check = make_check(model, options=NO_LATENCY, input_names=("ids",), num_classes=3)
    result = run_pass(check, batches)
    assert result.status == "pass", result.summary
    assert result.details["export"]["dynamic_axes"] == {"ids": [0, 1]}
    assert result.details["samples"] == 16
    assert [inp["name"] for inp in result.details["onnx_inputs"]] == ["ids"]
    assert all(isinstance(dim, str) for dim in result.details["onnx_inputs"][0]["shape"])


def test_hugging_face_bert_exports_with_its_named_inputs() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    gen = torch.Generator().manual_seed(3)
    batches = []
    for size, length in ((6, 10), (2, 5), (4, 14)):
        ids = torch.randint(1, 40, (size, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0          # a padded sample
        ids[0, length // 2 :] = 0
        inputs = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}
        batches.append((inputs, torch.randint(0, 3, (size,), generator=gen)))
    names = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "labels")
    check = make_check(model, options=NO_LATENCY, input_names=names, num_classes=3, fmt="huggingface")
    check.setup()
    try:
        torch_scores = np.concatenate(feed(check, batches))
        result = check.compute()
        onnx_scores = ort_logits(check.onnx_path, batches)
    finally:
        check.teardown()
    assert result.status == "pass", result.summary
    # the batches give token_type_ids before attention_mask; the export follows forward()'s order
    assert result.details["export"]["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {i["name"] for i in result.details["onnx_inputs"]} <= {"input_ids", "token_type_ids", "attention_mask"}
    assert result.details["numeric"]["max_abs_error"] == pytest.approx(
        np.abs(onnx_scores.astype(np.float64) - torch_scores).max(), rel=1e-12, abs=0
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_module_falls_back_to_the_torchscript_exporter() -> None:
    model = torch.jit.script(seeded(SmallCNN))
    result = run_pass(make_check(model, options=NO_LATENCY, num_classes=4, fmt="torchscript"), image_batches([8, 3]))
    assert result.status == "pass", result.summary
    assert result.details["export"]["exporter"] == "torchscript"
    assert "TorchScript modules cannot be traced by torch.export" in result.details["export"]["fallback_reason"]
    assert any(note.startswith("exported with the torchscript exporter because") for note in result.notes)


def test_export_that_runtime_cannot_run_at_other_shapes_fails_the_check() -> None:
    # The TorchScript exporter bakes the example's shapes into nn.MultiheadAttention's reshapes.
    model = seeded(TinyEncoder)
    options = {**NO_LATENCY, "exporter": "torchscript"}
    check = make_check(model, options=options, input_names=("ids",), num_classes=3)
    result = run_pass(check, token_batches([(4, 9), (3, 5)]))
    assert result.status == "fail"
    assert result.summary.startswith("ONNX Runtime failed on batch 1 (samples 4..6)")
    assert "\n" not in result.summary
    # the current exporter gets the same model right
    good = run_pass(make_check(model, options=NO_LATENCY, input_names=("ids",), num_classes=3),
                    token_batches([(4, 9), (3, 5)]))
    assert good.status == "pass", good.summary


# ------------------------------------------------------------------------------------------------ ship files


@pytest.fixture(scope="module")
def shipped_cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    model = seeded(SmallCNN)
    path = tmp_path_factory.mktemp("ship") / "cnn.onnx"
    x = torch.randn(4, 1, 8, 8)
    export_onnx(model, named_inputs(x, declared=("x",)), path, dict_inputs=False, dynamic_axes={"x": (0,)})
    return model, path


def test_good_ship_file_passes(shipped_cnn: tuple[nn.Module, Path]) -> None:
    model, path = shipped_cnn
    check = make_check(model, options=NO_LATENCY, num_classes=4, extras={"onnx_path": str(path)})
    result = run_pass(check, image_batches([10, 7]))
    assert result.status == "pass", result.summary
    assert result.details["source"] == "file" and "export" not in result.details
    assert path.exists()   # a shipped file is never cleaned up


def test_broken_ship_file_fails_numeric_and_task_parity(shipped_cnn: tuple[nn.Module, Path], tmp_path: Path) -> None:
    model, good = shipped_cnn
    bad = broken_copy(good, tmp_path / "bad.onnx", initializer="head.weight", scale=-0.5)
    batches = image_batches([32, 32, 20], seed=5)
    options = {**NO_LATENCY, "worst_samples": 5, "max_negative_flips": 0}
    check = make_check(model, options=options, num_classes=4, extras={"onnx_path": str(bad)})
    result = run_pass(check, batches)
    assert result.status == "fail"
    numeric = finding(result, "logits")
    assert numeric.status == "fail" and numeric.rule == "allclose"
    assert numeric.required > numeric.threshold and numeric.margin < 0
    assert finding(result, "top1_agreement").status == "fail"
    assert finding(result, "negative_flips").status == "fail"
    # worst samples: the oracle is onnxruntime run here on the broken file
    torch_scores = np.concatenate([candidate_scores(model, x, ("x",)).numpy() for x, _ in batches])
    onnx_scores = ort_logits(bad, batches)
    per_sample = np.abs(onnx_scores.astype(np.float64) - torch_scores).max(axis=1)
    worst = result.details["worst_samples"]
    assert [w["index"] for w in worst] == list(np.argsort(-per_sample, kind="stable")[:5])
    assert worst[0]["max_abs_error"] == pytest.approx(per_sample.max(), rel=1e-12)
    labels = torch.cat([b[1] for b in batches]).numpy()
    torch_pred, onnx_pred = torch_scores.argmax(1), onnx_scores.argmax(1)
    negative = (torch_pred == labels) & (onnx_pred != labels)
    assert result.details["task"]["negative_flips"] == int(negative.sum()) > 0
    flipped = result.details["flipped_samples"]
    assert len(flipped) == 5 and all(torch_pred[f["index"]] != onnx_pred[f["index"]] for f in flipped)
    assert flipped[0]["flip"] == "negative" and negative[flipped[0]["index"]]
    titles = [t.title for t in result.tables]
    assert "Largest logit differences (ONNX vs PyTorch)" in titles and "Top-1 flips (ONNX vs PyTorch)" in titles


def test_fixed_batch_ship_file_runs_in_chunks(tmp_path: Path) -> None:
    model = seeded(SmallCNN)
    path = tmp_path / "fixed.onnx"
    export_onnx(model, {"x": torch.randn(4, 1, 8, 8)}, path, dict_inputs=False, dynamic_axes={})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 4
    check = make_check(model, options=NO_LATENCY, num_classes=4, extras={"onnx_path": str(path)})
    result = run_pass(check, image_batches([10, 3]))
    assert result.status == "pass", result.summary
    assert result.details["samples"] == 13
    assert "fixed batch size of 4" in " ".join(result.notes)


def test_missing_ship_file_is_a_usage_error(tmp_path: Path) -> None:
    check = make_check(seeded(SmallCNN), num_classes=4, extras={"onnx_path": str(tmp_path / "nope.onnx")})
    with pytest.raises(ConfigError, match=r"--onnx: ONNX file not found: .*nope\.onnx"):
        check.setup()


# ------------------------------------------------------------------------------------------------ failures


def test_unsupported_operator_fails_both_exporters() -> None:
    x = {"x": torch.randn(4, 6)}
    for exporter in ("dynamo", "torchscript"):
        with pytest.raises(OnnxExportError) as info:
            export_onnx(seeded(Unexportable), x, Path("/nonexistent/never-written.onnx"), dict_inputs=False,
                        dynamic_axes={"x": (0,)}, exporter=exporter)
        assert info.value.operator == "aten::special_i1"
        assert "module block.1 (Bessel)" in str(info.value)


def test_missing_onnxruntime_is_a_setup_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime now raises ImportError
    check = make_check(seeded(SmallCNN), options={**NO_LATENCY, "optional": False}, num_classes=4)
    with pytest.raises(MissingExtraError, match=r"pip install 'pytorch-gate\[onnx\]'") as err:
        run_pass(check, image_batches([4]))
    assert "onnxruntime" in str(err.value)


def test_missing_onnxruntime_is_a_skip_when_onnx_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    check = make_check(seeded(SmallCNN), options={**NO_LATENCY, "optional": True}, num_classes=4)
    result = run_pass(check, image_batches([4]))
    assert result.status == "skip"
    assert "pip install 'pytorch-gate[onnx]'" in result.summary and "onnxruntime" in result.summary
    assert result.details["stage"] == "dependencies"


def test_bad_dynamic_axes_name_is_a_config_error() -> None:
    check = make_check(seeded(SmallCNN), options={**NO_LATENCY, "dynamic_axes": {"pixels": [0]}}, num_classes=4)
    check.setup()
    try:
        with pytest.raises(ConfigError, match=r"checks\.onnx\.dynamic_axes: unknown input 'pixels'"):
            feed(check, image_batches([4]))
    finally:
        check.teardown()


# ------------------------------------------------------------------------------------------------ the example


def _digits() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    safetensors = pytest.importorskip("safetensors.torch")
    spec = importlib.util.spec_from_file_location("gate_digits_model", REPO / "examples/digits/model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    artifacts = REPO / "examples/digits/artifacts"
    model = module.build_model()
    model.load_state_dict(safetensors.load_file(str(artifacts / "candidate_good.safetensors")))
    data = np.load(artifacts / "eval.npz")
    x, y = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
    return model.eval(), [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]


def test_defaults_pass_the_digits_export_and_fail_a_broken_one(tmp_path: Path) -> None:
    model, batches = _digits()
    check = make_check(model, num_classes=10, options={"latency": {"budget_s": 0.2, "warmup": 1}})
    good = run_pass(check, batches)
    assert good.status == "pass", good.summary
    latency = good.details["latency"]
    assert latency["rounds"] >= 1 and latency["pytorch_ms"] > 0 and latency["onnx_ms"] > 0
    assert not any(f.metric == "latency_ratio" for f in good.findings)   # informational by default

    shipped = tmp_path / "digits.onnx"
    export_onnx(model, {"x": batches[0][0]}, shipped, dict_inputs=False, dynamic_axes={"x": (0,)})
    bad = broken_copy(shipped, tmp_path / "digits_bad.onnx", initializer="conv1.0.bias", scale=0.0)
    broken = run_pass(
        make_check(model, num_classes=10, options=NO_LATENCY, extras={"onnx_path": str(bad)}), batches
    )
    assert broken.status == "fail"
    assert finding(broken, "logits").status == "fail"


def test_max_slowdown_makes_latency_a_finding() -> None:
    options = {"max_slowdown": 100.0, "latency": {"budget_s": 0.2, "warmup": 1, "max_rounds": 40}}
    result = run_pass(make_check(seeded(SmallCNN), options=options, num_classes=4), image_batches([8]))
    latency = finding(result, "latency_ratio")
    assert latency.threshold == 101.0 and latency.value == pytest.approx(result.details["latency"]["ratio"])
    assert latency.status in ("pass", "warn", "fail")


def test_onnx_runtime_and_torch_are_timed_on_the_same_pinned_threads_and_contention_is_recorded() -> None:
    from gate.timing import default_threads

    options = {"max_slowdown": 100.0, "latency": {"budget_s": 0.2, "warmup": 1, "max_rounds": 40}}
    check = make_check(seeded(SmallCNN), options=options, num_classes=4)
    before = torch.get_num_threads()
    result = run_pass(check, image_batches([8]))
    assert torch.get_num_threads() == before
    latency = result.details["latency"]
    assert latency["threads"] == default_threads()
    assert check._threads() == default_threads()          # the count ONNX Runtime's session was opened with
    contention = latency["contention"]
    assert set(contention["lost_fraction"]) == {"pytorch", "onnxruntime"}
    assert all(0.0 <= v <= 1.0 for v in contention["lost_fraction"].values())
    f = finding(result, "latency_ratio")
    assert f.status != "fail" or not contention["detected"]
    if contention["detected"]:
        assert "contended" in f.reason and "contended machine" in result.summary


def test_a_stop_on_any_shard_is_the_merged_result_the_earliest_batch_first() -> None:
    """A shard whose ONNX Runtime failed hands its stop on; the merge reports the stop of the earliest batch (the
    single run stops there), and with no stop the facts of the shard that read batch 0."""
    from gate.checks.onnx import _Stopped
    from gate.sharding import merge_arrays, split_values

    rng = np.random.default_rng(3)

    def shard(first: int, *, stop: tuple[int, str] | None) -> dict:
        check = make_check(torch.nn.Linear(4, 3), num_classes=3)
        check._first_sample, check._reads_batch_0 = first, first == 0
        check._stats = ParityStats(3, atol=1e-3, rtol=1e-3, top_n=5)
        ref = rng.normal(size=(8, 3)).astype(np.float32)
        check._stats.update(ref, ref + 1e-4, rng.integers(0, 3, 8), offset=first)
        if stop is not None:
            check._stop_batch, summary = stop
            check._stopped = _Stopped("fail", summary, "run")
        return check.state()

    def merged(*parts: dict):
        arrays, texts = split_values(merge_arrays(list(parts)))
        check = make_check(torch.nn.Linear(4, 3), num_classes=3)
        check.load_state({**arrays, **texts})
        return check.compute()

    result = merged(shard(0, stop=None), shard(8, stop=(5, "failed on batch 5")), shard(16, stop=(2, "failed on batch 2")))
    assert (result.status, result.summary) == ("fail", "failed on batch 2")
    result = merged(shard(0, stop=None), shard(8, stop=None))
    assert result.status == "pass" and result.details["samples"] == 16 and result.details["source"] == "export"
