"""The sanity check catches the classic mistakes, through the real runner on in-memory models."""
from __future__ import annotations

import torch
from torch import nn

from gate.checks.base import RunContext
from gate.config import build_config
from gate.models import LoadedModel
from gate.runner import align_models, build_checks, evaluate
from tests import tiny_models as tm


class _Data:
    path, format, sha256 = "mem", "npz", None

    def __init__(self, n: int = 96, batch: int = 32) -> None:
        x, y = tm.make_data(n)
        self._batches = [(torch.from_numpy(x[i : i + batch]), torch.from_numpy(y[i : i + batch])) for i in range(0, n, batch)]
        self.num_samples = n

    def batches(self):
        return iter(self._batches)


def _loaded(module: nn.Module, role: str, class_names=None) -> LoadedModel:
    return LoadedModel(role=role, path=f"{role}.pt", format="state_dict", module=module, sha256=None, size_bytes=None,
                       parameters=None, class_names=class_names, tokenizer=None, input_names=None, is_eager=True)


def _sanity(baseline: nn.Module, candidate: nn.Module, *, names=(None, None)):
    config = build_config({"checks": {k: {"enabled": False} for k in ("accuracy", "per_class", "flips")}})
    models, alignment = align_models(config, {"baseline": _loaded(baseline, "baseline", names[0]),
                                              "candidate": _loaded(candidate, "candidate", names[1])})
    ctx = RunContext(config=config, models=models, class_names=alignment.names or (), device=torch.device("cpu"),
                     classes=alignment)
    checks = build_checks(config, ctx)
    ctx.counts, _, _ = evaluate(ctx, _Data(), checks)
    (result,) = [c.compute() for c in checks]
    return result, {f.metric: f for f in result.findings}


class WithDropout(tm.TinyMLP):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.head(self.drop(self.body(x)))


class WithBatchNorm(tm.TinyMLP):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(tm.HIDDEN)

    def forward(self, x):
        return self.head(self.norm(self.body(x)))


class ProducesNaN(tm.TinyMLP):
    def forward(self, x):
        out = super().forward(x)
        return torch.where(x[:, :1] > 1.5, torch.full_like(out, float("nan")), out)


def test_identical_models_pass():
    result, _ = _sanity(tm.teacher(), tm.teacher())
    assert result.status == "pass", result.summary


def test_dropout_left_active_in_the_candidate_fails_as_non_deterministic():
    torch.manual_seed(0)
    cand = WithDropout().train()
    result, found = _sanity(tm.teacher(), cand)
    assert result.status == "fail"
    assert found["determinism[candidate]"].status == "fail"
    assert "train mode" in found["determinism[candidate]"].reason
    assert found["determinism[baseline]"].status == "pass"


def test_batchnorm_in_train_mode_fails_as_batch_dependent():
    torch.manual_seed(0)
    cand = WithBatchNorm().train()
    result, found = _sanity(tm.teacher(), cand)
    assert found["batch_invariance[candidate]"].status == "fail"
    assert found["determinism[candidate]"].status == "pass"  # the same rows again give the same outputs


def test_a_defective_baseline_is_a_warning_not_a_failure():
    torch.manual_seed(0)
    result, found = _sanity(WithDropout().train(), tm.teacher())
    assert found["determinism[baseline]"].status == "warn"
    assert result.status == "warn"


def test_nan_outputs_fail_and_are_counted():
    cand = ProducesNaN()
    cand.load_state_dict(tm.teacher().state_dict())
    x, _ = tm.make_data(96)
    expected = int((x[:, 0] > 1.5).sum()) * tm.NUM_CLASSES
    assert expected > 0
    result, found = _sanity(tm.teacher(), cand.eval())
    assert found["non_finite_outputs[candidate]"].status == "fail"
    assert found["non_finite_outputs[candidate]"].value == expected
    assert result.details["non_finite"]["candidate"] == expected


def test_class_names_in_another_order_are_matched_by_name():
    result, found = _sanity(tm.teacher(), tm.teacher(), names=(("a", "b", "c"), ("a", "c", "b")))
    assert found["class_names"].status == "pass"
    assert "reordered to the baseline's by name" in found["class_names"].reason
    assert "'c' column 1 -> 2" in found["class_names"].reason


def test_generic_names_against_real_names_warn():
    result, found = _sanity(tm.teacher(), tm.teacher(), names=(("a", "b", "c"), None))
    assert "class_names" not in found                    # no names on one side: compared by position, silently
    loaded = {"baseline": _loaded(tm.teacher(), "baseline", ("a", "b", "c")),
              "candidate": _loaded(tm.teacher(), "candidate")}
    config = build_config({"model": {"candidate": {"class_names": ["LABEL_0", "LABEL_1", "LABEL_2"]}}})
    _, alignment = align_models(config, loaded)
    assert alignment.columns is None and alignment.names == ("a", "b", "c")
    assert alignment.warnings and "generically ([LABEL_0, LABEL_1, LABEL_2])" in alignment.warnings[0]


def _dynamic_int8(net: nn.Module) -> nn.Module:
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization is deprecated in torch 2.13, still shipped
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(net).eval(), {nn.Linear}, dtype=torch.qint8)


def _alone_vs_batch(model: nn.Module, n: int = 4) -> tuple[float, float]:
    """Independent oracle: max |first n rows alone - the same rows in the first batch|, and max |batched|."""
    x = _Data()._batches[0][0]
    with torch.no_grad():
        batched, alone = model(x)[:n], model(x[:n])
    return float((batched - alone).abs().max()), float(batched.abs().max())


def test_dynamic_int8_batch_dependence_is_named_and_has_its_own_tolerance():
    cand = _dynamic_int8(tm.teacher())
    diff, scale = _alone_vs_batch(cand)
    assert diff > 1e-4 + 1e-3 * scale          # beyond the float tolerance: per-batch activation scales are real
    result, found = _sanity(tm.teacher(), cand)
    f = found["batch_invariance[candidate]"]
    assert f.status == "pass", f.reason
    assert f.value == diff
    assert f.threshold == 1e-4 + 0.1 * scale
    assert "dynamic quantization" in f.reason and "torch.ao dynamic int8" in f.reason
    assert "BatchNorm" not in f.reason
    assert result.details["dynamic_quantization"]["candidate"].startswith("2 torch.ao dynamic int8 layers")
    assert result.status == "pass", result.summary


def test_dynamic_int8_with_a_real_batch_defect_still_fails_and_says_so():
    torch.manual_seed(0)
    defect = WithBatchNorm().train()
    with torch.no_grad():
        defect.norm.weight.fill_(3.0)
    cand = _dynamic_int8(defect)
    cand.train()                        # the BatchNorm keeps using the batch's statistics
    diff, scale = _alone_vs_batch(cand)
    assert diff > 1e-4 + 0.1 * scale
    result, found = _sanity(tm.teacher(), cand)
    f = found["batch_invariance[candidate]"]
    assert f.status == "fail"
    assert "beyond the dynamic-quantization tolerance" in f.reason
    assert result.status == "fail"
