"""Drift reads every layer right: layouts from the module tree, in-place overwrites, batching-free PSI bins."""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from gate.checks.base import RunContext
from gate.checks.drift import DriftCheck, LayoutHints, layout_hints, part_layout
from gate.config import build_config
from gate.models.base import LoadedModel
from tests.unit.test_drift import feed, layer, make_check, np_pair, np_psi, np_side


def loaded(role: str, module: nn.Module) -> LoadedModel:
    return LoadedModel(role=role, path=f"{role}.pt", format="pickle", module=module.eval(), sha256=None,
                       size_bytes=None, parameters=None, class_names=None, tokenizer=None, input_names=None,
                       is_eager=True)


def run_pass(base: nn.Module, cand: nn.Module, xs: list[torch.Tensor], **drift: Any) -> tuple[Any, RunContext]:
    """The real runner's one pass (its hooks, its in-place handling) feeding a drift check."""
    from gate import runner

    config = build_config({"checks": {"drift": {"enabled": True, **drift}}})
    ctx = RunContext(config=config, models={"baseline": loaded("baseline", base), "candidate": loaded("candidate", cand)},
                     class_names=(), device=torch.device("cpu"))

    class Data:
        path = "memory"
        num_samples = sum(x.shape[0] for x in xs)

        def batches(self) -> Any:
            for x in xs:
                yield x, torch.zeros(x.shape[0], dtype=torch.int64)

    check = DriftCheck(config.check("drift"), ctx)
    check.setup()
    runner.evaluate(ctx, Data(), [check])
    return check.compute(), ctx


# ------------------------------------------------------------------------------------------ Conv1d channels


def conv1d_net(seed: int = 0, length: int = 16) -> nn.Sequential:
    torch.manual_seed(seed)
    block = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU())
    with torch.no_grad():
        block[1].running_mean.uniform_(-0.5, 0.5)
        block[1].running_var.uniform_(0.5, 2.0)
        block[1].weight.uniform_(0.5, 1.5)
        block[1].bias.uniform_(-0.3, 0.3)
    return nn.Sequential(block, nn.Flatten(), nn.Linear(8 * length, 3))


def channels_permuted(net: nn.Sequential, perm: torch.Tensor, length: int = 16) -> nn.Sequential:
    """The same function with the block's output channels permuted (and the head reading them back in order)."""
    out = copy.deepcopy(net)
    conv, bn = out[0][0], out[0][1]
    with torch.no_grad():
        conv.weight.copy_(conv.weight[perm])
        conv.bias.copy_(conv.bias[perm])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(getattr(bn, name)[perm])
        head = out[2].weight.reshape(3, 8, length)
        out[2].weight.copy_(head[:, perm].reshape(3, -1))
    return out


def test_conv1d_block_with_permuted_channels_is_compared_on_channel_means_not_cosine_one() -> None:
    base = conv1d_net()
    perm = torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])
    cand = channels_permuted(base, perm)
    gen = torch.Generator().manual_seed(0)
    xs = list(torch.randn(96, 4, 16, generator=gen).split(32))
    check = make_check(base, cand)
    seen = feed(check, base, cand, xs)
    result = check.compute()
    b = np.concatenate([s["baseline"]["0"].double().numpy() for s in seen]).mean(axis=2)    # (N, C) channel means
    a = np.concatenate([s["candidate"]["0"].double().numpy() for s in seen]).mean(axis=2)
    fig = layer(result, "0")
    want = np_pair(a, b)
    assert fig["baseline"]["width"] == 8
    assert fig["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-10)
    assert fig["cosine"]["mean"] < 0.99
    assert fig["rel_l2"]["mean"] == pytest.approx(want["rel_mean"], rel=1e-10)
    # the model's outputs are the same: the head reads the channels back in order
    assert layer(result, "2")["cosine"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert result.details["first_drifting_layer"] == "0"

    # read as a (B, T, H) sequence (the old rule, now only by `layout:`), the permutation vanishes: cosine 1
    forced = make_check(base, cand, layout={"0": "sequence"})
    feed(forced, base, cand, xs)
    assert layer(forced.compute(), "0")["cosine"]["mean"] == pytest.approx(1.0, abs=1e-6)


def test_layouts_from_the_module_tree_and_the_shape() -> None:
    conv = layout_hints(nn.Sequential(nn.Conv1d(4, 8, 3), nn.BatchNorm1d(8), nn.ReLU()))
    assert conv.channels == 8
    assert part_layout((5, 8, 30), conv) == "channels_first"
    assert part_layout((5, 30, 8), conv) == "channels_last"          # (B, L, C) after a transpose
    assert part_layout((5, 7, 30), conv) == "sequence"               # neither axis is the channels: a sequence
    seq = layout_hints(nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16)))
    assert part_layout((5, 8, 16), seq) == "sequence"
    # convolutions, then a Linear over the last axis: (B, L, F) is a sequence, not the convolution's channels
    mixed = layout_hints(nn.Sequential(nn.Conv1d(4, 8, 3), nn.Linear(8, 8)))
    assert part_layout((5, 8, 8), mixed) == "sequence"
    nhwc = layout_hints(nn.Sequential(nn.Conv2d(3, 8, 3), nn.LayerNorm(8)))
    assert part_layout((5, 6, 6, 8), nhwc) == "channels_last"
    assert part_layout((5, 8, 6, 6), layout_hints(nn.Conv2d(3, 8, 3))) == "channels_first"
    assert part_layout((5, 8, 6), LayoutHints(channels=8, layout="flat")) == "flat"


def test_channels_last_images_get_channel_means_for_cka_and_the_layout_can_be_set() -> None:
    class Nhwc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1))
            self.mix = nn.Linear(6, 6)
            self.head = nn.Linear(6 * 5 * 5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.mix(self.stem(x).permute(0, 2, 3, 1))            # (B, H, W, C)
            return self.head(h.flatten(1))

    base = Nhwc()
    cand = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(1)
    xs = list(torch.randn(40, 3, 5, 5, generator=gen).split(20))
    check = make_check(base, cand, layers=["mix"], layout={"mix": "channels_last"}, cka="all")
    seen = feed(check, base, cand, xs)
    result = check.compute()
    fig = layer(result, "mix")
    assert fig["baseline"]["width"] == 6 * 5 * 5
    assert fig["cka"] == pytest.approx(1.0, abs=1e-9)
    assert fig["baseline"]["mean"] == pytest.approx(
        np.concatenate([s["baseline"]["mix"].double().numpy() for s in seen]).mean(), rel=1e-10)


# ------------------------------------------------------------------------------------------ in-place overwrite


def inplace_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 3))


def test_in_place_relu_after_a_linear_is_read_before_the_overwrite() -> None:
    base = inplace_mlp(0)
    cand = copy.deepcopy(base)
    with torch.no_grad():
        cand[0].weight.add_(0.3 * torch.randn(cand[0].weight.shape, generator=torch.Generator().manual_seed(5)))
    gen = torch.Generator().manual_seed(2)
    xs = list(torch.randn(90, 6, generator=gen).split(30))
    result, ctx = run_pass(base, cand, xs, layers=["0", "2"])
    x = torch.cat(xs).double().numpy()
    truth = {}
    for role, m in (("baseline", base), ("candidate", cand)):
        w, bias = m[0].weight.detach().double().numpy(), m[0].bias.detach().double().numpy()
        truth[role] = x @ w.T + bias                               # the Linear's output before ReLU overwrites it
    fig = layer(result, "0")
    assert truth["baseline"].min() < 0
    for role in ("baseline", "candidate"):
        for key, value in np_side(truth[role]).items():
            assert fig[role][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (role, key)
    want = np_pair(truth["candidate"], truth["baseline"])
    assert fig["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-5)
    assert fig["rel_l2"]["mean"] == pytest.approx(want["rel_mean"], rel=1e-5)
    # cloned only where needed: the Linear the in-place ReLU follows, not the head
    assert ctx.extras["activation_clones"]["cloned"] == {"baseline": ["0"], "candidate": ["0"]}
    assert result.details["cloned_layers"] == {"baseline": ["0"], "candidate": ["0"]}


def test_resnet_style_bn_then_in_place_relu() -> None:
    class Stem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.relu(self.bn1(self.conv1(x))).flatten(1))

    base = Stem().eval()
    cand = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(4)
    xs = list(torch.randn(24, 3, 6, 6, generator=gen).split(8))
    result, ctx = run_pass(base, cand, xs)
    with torch.no_grad():
        real = torch.cat([base.bn1(base.conv1(x)) for x in xs]).double().numpy()
    fig = layer(result, "bn1")
    assert fig["baseline"]["min"] == pytest.approx(real.min(), rel=1e-6)
    assert fig["baseline"]["mean"] == pytest.approx(real.mean(), rel=1e-5, abs=1e-7)
    assert fig["baseline"]["min"] < 0
    assert ctx.extras["activation_clones"]["cloned"]["baseline"] == ["bn1"]


# ------------------------------------------------------------------------------------------ PSI bins


def test_psi_only_between_matched_widths() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    torch.manual_seed(1)
    cand = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    check = make_check(base, cand, layers=["*"])
    feed(check, base, cand, list(torch.randn(64, 6).split(32)))
    result = check.compute()
    assert layer(result, "0")["psi"] is None
    assert layer(result, "0")["cka"] is not None
    assert layer(result, "2")["psi"] is not None
    assert all(f.metric != "psi" or f.where != "0" for f in result.findings)


def shifted_tower(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    from tests.unit.test_drift import Tower

    base = Tower(seed=seed).double()
    cand = copy.deepcopy(base)
    with torch.no_grad():
        cand.blocks[2][0].bias.add_(0.35)         # a shift of block 2's values: a PSI breach, cosine barely moves
    return base, cand


def test_first_drifting_layer_and_psi_do_not_depend_on_the_batch_size() -> None:
    base, cand = shifted_tower()
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(640, 6, generator=gen, dtype=torch.float64)
    results, seen = {}, {}
    for batch in (50, 64):
        check = make_check(base, cand, thresholds={"min_cosine": None, "max_rel_l2": None, "min_sqnr_db": None,
                                                   "max_psi": 0.1})
        seen[batch] = feed(check, base, cand, list(x.split(batch)))
        results[batch] = check.compute()
    assert results[50].details["first_drifting_layer"] == results[64].details["first_drifting_layer"] == "blocks.2"
    for f50, f64 in zip(results[50].details["layers"], results[64].details["layers"]):
        assert f50["psi_bins"] == f64["psi_bins"]
        assert f50["psi"] == pytest.approx(f64["psi"], rel=1e-9, abs=1e-12)
    name = "blocks.2"
    b = np.concatenate([s["baseline"][name].numpy() for s in seen[64]])
    a = np.concatenate([s["candidate"][name].numpy() for s in seen[64]])
    assert layer(results[64], name)["psi"] == pytest.approx(np_psi(b[:256], b, a, bins=20), rel=1e-9)
    assert layer(results[64], name)["psi"] > 0.1 > layer(results[64], "blocks.1")["psi"]


def test_wide_parts_bin_the_same_values_whatever_the_batching() -> None:
    """A part wider than 128 values per sample is strided by its width alone: counts identical at any batch."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 300), nn.Tanh(), nn.Linear(300, 3)).double()
    cand = copy.deepcopy(base)
    with torch.no_grad():
        cand[0].bias.add_(0.05)
    x = torch.randn(300, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    states = []
    for batch in (50, 64, 300):
        check = make_check(base, cand, layers=["0"], buffer_mb=0)
        feed(check, base, cand, list(x.split(batch)))
        check.compute()
        states.append(check._layers["0"])
    for s in states[1:]:
        np.testing.assert_array_equal(s.psi_edges, states[0].psi_edges)
        np.testing.assert_array_equal(s.base.psi_counts, states[0].base.psi_counts)
        np.testing.assert_array_equal(s.cand.psi_counts, states[0].cand.psi_counts)
    # ceil(300 / 128) = 3 shares a factor with 300, and so do 4, 5 and 6: 7 is the first stride visiting every unit
    assert states[0].psi_stride == 7


# ------------------------------------------------------------------------------------------ pooling


def test_sequence_pooling_matches_numpy_and_never_makes_a_whole_float64_copy() -> None:
    from gate.checks.drift import layout as drift_mod

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 40, 16, generator=gen)
    mask = (torch.arange(40).expand(12, 40) < torch.randint(1, 41, (12, 1), generator=gen)).long()
    old = drift_mod._POOL_BYTES
    drift_mod._POOL_BYTES = 40 * 16 * 8 * 5           # blocks of 5 samples: 12 = 5 + 5 + 2
    try:
        got = drift_mod.pooled_mean(x, mask)
        plain = drift_mod.pooled_mean(x, None)
    finally:
        drift_mod._POOL_BYTES = old
    xn, m = x.double().numpy(), mask.numpy().astype(float)
    want = (xn * m[:, :, None]).sum(1) / m.sum(1, keepdims=True)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(plain.numpy(), xn.mean(1), rtol=1e-12)


# ------------------------------------------------------------------------------------------ quantized layers


def dynamic_int8(net: nn.Module) -> nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization is deprecated in torch 2.13, still shipped
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def test_dynamic_int8_layers_are_matched_to_their_float_counterparts_by_name() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    cand = dynamic_int8(base)
    xs = list(torch.randn(96, 6, generator=torch.Generator().manual_seed(1)).split(32))
    check = make_check(base, cand)
    seen = feed(check, base, cand, xs)
    result = check.compute()
    names = [f["layer"] for f in result.details["layers"]]
    assert names == ["0", "2", "4"]
    assert result.details["compared_layers"] == result.details["model_layers"] == 3
    assert result.details["not_compared"] == {}
    for name in names:
        b = np.concatenate([s["baseline"][name].double().numpy() for s in seen])
        a = np.concatenate([s["candidate"][name].double().numpy() for s in seen])
        want = np_pair(a, b)
        assert 0.99 < want["cos_mean"] < 1.0                  # int8 noise: real, small
        assert layer(result, name)["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-10)
    assert not any(f.metric == "layer_coverage" and f.status != "pass" for f in result.findings)


def test_dynamic_int8_lstm_is_read_as_a_recurrent_layer() -> None:
    from tests.unit.test_drift import LstmClassifier

    base = LstmClassifier().eval()
    cand = dynamic_int8(base)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randint(0, 50, (16, 6), generator=gen) for _ in range(3)]
    check = make_check(base, cand)
    feed(check, base, cand, xs)
    result = check.compute()
    names = [f["layer"] for f in result.details["layers"]]
    assert "lstm[1][0]" in names and "fc" in names
    assert layer(result, "lstm[1][0]")["baseline"]["width"] == layer(result, "lstm[1][0]")["candidate"]["width"]
    assert layer(result, "fc")["cosine"]["mean"] > 0.95


def test_comparing_far_fewer_layers_than_the_model_has_is_a_warning_that_lists_them() -> None:
    class Renamed(nn.Module):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.names = names
            for n in names:
                self.add_module(n, nn.Linear(6, 6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for n in self.names:
                x = torch.tanh(getattr(self, n)(x))
            return x

    base = Renamed(["a", "b", "c", "d"])
    cand = Renamed(["a", "q", "r", "s"])
    check = make_check(base, cand)
    feed(check, base, cand, list(torch.randn(64, 6).split(32)))
    result = check.compute()
    cov = next(f for f in result.findings if f.metric == "layer_coverage")
    assert cov.status == "warn" and cov.value == pytest.approx(1 / 4)
    assert result.status == "warn"
    assert "1 of 4 layers compared" in result.summary
    assert set(result.details["not_compared"]) == {"b", "c", "d", "q", "r", "s"}
    assert "only in the baseline" in result.details["not_compared"]["b"]


def test_hooked_outputs_are_cloned_keeping_their_container_types() -> None:
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    from gate.runner import _clone_tensors

    packed = pack_padded_sequence(torch.randn(2, 3, 4), [3, 2], batch_first=True)
    out = (torch.ones(2), {"h": torch.zeros(3)}, packed, [torch.full((1,), 2.0)])
    got = _clone_tensors(out)
    assert type(got) is tuple and isinstance(got[1], dict) and isinstance(got[2], PackedSequence)
    assert isinstance(got[3], list)
    out[0].add_(5.0)                       # an in-place op after the hook: the clone keeps what the hook saw
    assert torch.equal(got[0], torch.ones(2))
    assert torch.equal(got[2].data, packed.data) and got[2].data.data_ptr() != packed.data.data_ptr()


def test_static_int8_outputs_are_dequantized_and_compared_with_their_float_namesakes() -> None:
    import warnings

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.quant = torch.ao.quantization.QuantStub()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 5 * 5, 2)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(self.quant(x))
            return self.dequant(self.fc(h.reshape(h.shape[0], -1)))

    base = Net().eval()
    gen = torch.Generator().manual_seed(3)
    xs = list(torch.randn(48, 3, 5, 5, generator=gen).split(16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization is deprecated in torch 2.13, still shipped
        prepared = copy.deepcopy(base)
        prepared.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
        torch.ao.quantization.prepare(prepared, inplace=True)
        with torch.no_grad():
            for x in xs:
                prepared(x)
        cand = torch.ao.quantization.convert(prepared)
    check = make_check(base, cand, layers=["conv", "fc"])
    seen = feed(check, base, cand, xs)
    result = check.compute()
    assert seen[0]["candidate"]["conv"].is_quantized
    fig = layer(result, "conv")
    b = np.concatenate([s["baseline"]["conv"].double().numpy() for s in seen]).reshape(48, -1)
    a = np.concatenate([s["candidate"]["conv"].dequantize().double().numpy() for s in seen]).reshape(48, -1)
    want = np_pair(a, b)
    assert 0.98 < want["cos_mean"] < 1.0
    assert fig["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-9)
    assert result.details["compared_layers"] == 2


# ------------------------------------------------------------------------------------ the class axis


class _Head(nn.Module):
    """RobertaClassificationHead's shape: dense, dropout, out_proj; the block's output is out_proj's."""

    def __init__(self) -> None:
        super().__init__()
        self.dense, self.dropout, self.out_proj = nn.Linear(6, 6), nn.Dropout(0.1), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6))
        self.classifier = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def test_the_output_layer_is_the_last_linear_when_it_has_k_outputs():
    from gate.checks.drift import class_modules, output_layer

    model = _Classifier()
    assert output_layer(model, 3) == "classifier.out_proj"
    assert output_layer(model, 6) is None                    # the last Linear has 3 outputs, not 6
    names = ["encoder.0", "encoder.2", "classifier", "classifier.dense", "classifier.out_proj"]
    assert class_modules(model, names, 3) == {"classifier", "classifier.out_proj"}
    # A binary model's one logit after a 2-unit hidden layer: the hidden layer is not the class axis.
    binary = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
    assert output_layer(binary, 2) is None and class_modules(binary, ["0", "2"], 2) == set()
    # A bare Linear is its own output layer (the model's output itself, hooked as "").
    assert class_modules(nn.Linear(4, 3), [""], 3) == {""}
    # A block whose last mixing module comes after the head (a norm over the logits) is not read as class columns.
    normed = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    assert class_modules(nn.Sequential(nn.Linear(4, 4), normed), ["1"], 3) == set()


def test_a_head_block_is_compared_in_the_baselines_class_order():
    """The permuted head inside a block (`classifier`): with the run's class map the block's and the Linear's
    outputs are the baseline's, column for column; the hidden layers are compared by position as before."""
    from gate.classes import RoleNames, align_classes

    torch.manual_seed(0)
    base = _Classifier().eval()
    cand = copy.deepcopy(base)
    order = [2, 0, 1]
    with torch.no_grad():
        cand.classifier.out_proj.weight.copy_(base.classifier.out_proj.weight[order])
        cand.classifier.out_proj.bias.copy_(base.classifier.out_proj.bias[order])
    names = ("a", "b", "c")
    alignment = align_classes(RoleNames(names, "model.baseline.class_names"),
                              RoleNames(tuple(names[k] for k in order), "model.candidate.class_names"))
    assert alignment.columns == (1, 2, 0)
    xs = [torch.randn(32, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    check = make_check(base, cand, layers=["encoder.*", "classifier", "classifier.out_proj"])
    check.ctx.classes = alignment
    feed(check, base, cand, xs)
    result = check.compute()
    assert result.status == "pass", result.summary
    for name in ("classifier", "classifier.out_proj"):
        assert layer(result, name)["class_columns"] == "by_name"
        assert layer(result, name)["cosine"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert layer(result, "encoder.2")["class_columns"] is None
    assert result.details["class_columns"]["layers"] == ["classifier.out_proj", "classifier"]
    # The same candidate by position: the two class-indexed layers breach, each with numpy's cosine.
    unnamed = make_check(base, cand, layers=["encoder.*", "classifier", "classifier.out_proj"])
    feed(unnamed, base, cand, xs)
    result = unnamed.compute()
    x = torch.cat(xs)
    with torch.no_grad():
        b, c = base(x).double().numpy(), cand(x).double().numpy()
    want = np.mean(np.sum(b * c, 1) / (np.linalg.norm(b, axis=1) * np.linalg.norm(c, axis=1)))
    for name in ("classifier", "classifier.out_proj"):
        assert layer(result, name)["class_columns"] == "by_position"
        assert layer(result, name)["cosine"]["mean"] == pytest.approx(want, rel=1e-9)
    assert result.details["first_drifting_layer"] == "classifier.out_proj"
