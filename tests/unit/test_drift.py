"""Activation drift: streamed figures against numpy on the concatenated activations, drift localisation, real models."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from gate.checks.base import RunContext, Step
from gate.checks.drift import (
    COS_DISTANCE_EDGES,
    REL_L2_EDGES,
    DriftCheck,
    bin_counts,
    default_layer_names,
    glob_match,
    hist_quantile,
    linear_quantiles,
)
from gate.config import build_config
from gate.errors import ConfigError
from gate.report.model import to_jsonable


# ------------------------------------------------------------------------------------------------ helpers


@dataclass
class Loaded:
    """The fields of gate.models.LoadedModel the drift check and the runner's call convention read."""

    module: Any
    role: str = "model"
    is_eager: bool = True
    format: str = "pickle"
    path: str = "test"
    input_names: tuple[str, ...] | None = None


def make_check(base: nn.Module, cand: nn.Module, **drift: Any) -> DriftCheck:
    config = build_config({"checks": {"drift": {"enabled": True, **drift}}})
    ctx = RunContext(
        config=config,
        models={"baseline": Loaded(base.eval(), role="baseline"), "candidate": Loaded(cand.eval(), role="candidate")},
        class_names=(),
        device=torch.device("cpu"),
    )
    check = DriftCheck(config.check("drift"), ctx)
    check.setup()
    return check


def call(module: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return module(**inputs)
    if isinstance(inputs, tuple):
        return module(*inputs)
    return module(inputs)


def first_tensor(out: Any) -> torch.Tensor:
    while not isinstance(out, torch.Tensor):
        out = out[0]
    return out


def feed(check: DriftCheck, base: nn.Module, cand: nn.Module, batches: list[Any]) -> list[dict[str, dict[str, Any]]]:
    """What the runner does: hook the names activation_layers() gives, run both models per batch, update.

    Returns the raw outputs per batch (role -> name -> output) so the tests can build their own oracle.
    """
    layers = check.activation_layers()
    models = {"baseline": base, "candidate": cand}
    captured: dict[str, dict[str, Any]] = {"baseline": {}, "candidate": {}}
    handles = []
    for role, names in layers.items():
        for name in names:
            sub = models[role].get_submodule(name)
            handles.append(sub.register_forward_hook(
                lambda _m, _i, out, role=role, name=name: captured[role].__setitem__(name, out)
            ))
    seen: list[dict[str, dict[str, Any]]] = []
    offset = 0
    try:
        for index, inputs in enumerate(batches):
            with torch.inference_mode():
                scores = {role: first_tensor(call(m, inputs)).float() for role, m in models.items()}
            acts = {role: dict(captured[role]) for role in captured}
            for role in captured:
                captured[role].clear()
            size = scores["baseline"].shape[0]
            check.update(Step(
                index=index, offset=offset, inputs=inputs, labels=torch.zeros(size, dtype=torch.int64),
                scores=scores, activations=acts,
            ))
            seen.append(acts)
            offset += size
    finally:
        for h in handles:
            h.remove()
    return seen


def layer(result: Any, name: str) -> dict[str, Any]:
    return next(f for f in result.details["layers"] if f["layer"] == name)


# ----- the numpy oracle, written independently of gate.checks.drift


def np_pair(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """a = candidate, b = baseline features (N, F)."""
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    return {
        "cos_mean": cos.mean(),
        "cos_p5": np.percentile(cos, 5),
        "rel_mean": rel.mean(),
        "rel_p95": np.percentile(rel, 95),
        "sqnr": 20 * np.log10(np.linalg.norm(b) / np.linalg.norm(a - b)),
    }


def np_side(x: np.ndarray) -> dict[str, float]:
    return {
        "mean": x.mean(), "std": x.std(), "min": x.min(), "max": x.max(),
        "dead_fraction": float(np.mean(np.all(x == 0, axis=0))),
    }


def np_psi(first_base: np.ndarray, base: np.ndarray, cand: np.ndarray, bins: int) -> float:
    """PSI on the bins the baseline's first samples fix (documented: at most `bins`, at least 20 values per bin)."""
    bins = max(2, min(bins, first_base.size // 20))
    edges = np.unique(np.quantile(first_base.ravel(), np.arange(1, bins) / bins))
    k = edges.size + 1
    pb = (np.bincount(np.searchsorted(edges, base.ravel(), side="right"), minlength=k) + 0.5) / (base.size + 0.5 * k)
    pc = (np.bincount(np.searchsorted(edges, cand.ravel(), side="right"), minlength=k) + 0.5) / (cand.size + 0.5 * k)
    return float(np.sum((pc - pb) * np.log(pc / pb)))


def np_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in its Gram-matrix (sample-space) form: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(k * l_) / math.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def np_features(out: Any) -> np.ndarray:
    t = first_tensor(out).detach().double().numpy()
    return t.reshape(t.shape[0], -1) if t.ndim != 3 else t.mean(axis=1)


# ------------------------------------------------------------------------------------------------ models


class Tower(nn.Module):
    """Blocks in a ModuleList and a head: the default selection is blocks.0..n-1 and head."""

    def __init__(self, width: int = 16, depth: int = 4, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(6, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(depth))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3))


def nudged(model: nn.Module, *, scale: float, seed: int = 1, only: str | None = None) -> nn.Module:
    """A copy with Gaussian noise of `scale` x each weight's std added (to one submodule when `only` names it)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    target = out.get_submodule(only) if only else out
    with torch.no_grad():
        for p in target.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * (p.std() if p.numel() > 1 else 1.0))
    return out


def inputs(n: int, batch: int, *, dim: int = 6, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    return list(x.split(batch))


# ------------------------------------------------------------------------------------------------ tests


# buffering: every batch folded as it comes (buffer_mb 0), folded every 50 rows (not a multiple of the batches),
# or all 240 rows folded in compute() (the defaults)
BUFFERING = [{"buffer_mb": 0}, {"buffer_rows": 50}, {}]


@pytest.mark.parametrize("buffering", BUFFERING, ids=["unbuffered", "50_rows", "default"])
@pytest.mark.parametrize("batch", [240, 30, 7])
def test_streamed_statistics_match_numpy_on_concatenated_activations(batch: int, buffering: dict[str, Any]) -> None:
    base = mlp()
    with torch.no_grad():
        base[0].bias[0] = -1e3          # hidden unit 0 never fires: one dead ReLU unit of 24
    cand = nudged(base, scale=0.3)
    check = make_check(base, cand, layers=["*"], cka="all", bins=10, **buffering)
    seen = feed(check, base, cand, inputs(240, batch))
    result = check.compute()
    names = [f["layer"] for f in result.details["layers"]]
    assert names == ["0", "1", "2", "3", "4"]
    for name in names:
        b = np.concatenate([s["baseline"][name].double().numpy() for s in seen])
        a = np.concatenate([s["candidate"][name].double().numpy() for s in seen])
        fig = layer(result, name)
        want = np_pair(a, b)
        assert fig["compared_samples"] == 240
        assert fig["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-10)
        assert fig["rel_l2"]["mean"] == pytest.approx(want["rel_mean"], rel=1e-10)
        assert fig["sqnr_db"]["pooled"] == pytest.approx(want["sqnr"], rel=1e-10)
        # tail percentiles come from log bins 10**(1/20) wide: within 12.2% of the distance from the ideal value
        assert 1 - fig["cosine"]["tail"] == pytest.approx(1 - want["cos_p5"], rel=0.13)
        assert fig["rel_l2"]["tail"] == pytest.approx(want["rel_p95"], rel=0.13)
        for role, x in (("baseline", b), ("candidate", a)):
            for key, value in np_side(x).items():
                assert fig[role][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, role, key)
            assert fig[role]["nan"] == fig[role]["inf"] == 0
        # the bin edges come from the baseline's first 256 samples, whatever the batch size: all 240 here
        assert fig["psi"] == pytest.approx(np_psi(b[:256], b, a, bins=10), rel=1e-9, abs=1e-12)
        assert fig["cka"] == pytest.approx(np_cka(b, a), rel=1e-8)
    assert layer(result, "1")["baseline"]["dead_fraction"] == pytest.approx(1 / 24)


def test_one_batch_and_many_batches_agree_except_psi_edges() -> None:
    base = mlp()
    cand = nudged(base, scale=0.2)
    results = []
    for batch in (200, 9):
        check = make_check(base, cand, cka="all")
        feed(check, base, cand, inputs(200, batch))
        results.append(check.compute())
    # the models run in float32, and a batch of 200 and batches of 9 take different matmul kernels: the
    # activations themselves differ at float32 rounding (~1e-7), so that is the tolerance
    for one, many in zip(results[0].details["layers"], results[1].details["layers"]):
        for key in ("cosine", "rel_l2", "sqnr_db"):
            for stat, value in one[key].items():
                assert many[key][stat] == pytest.approx(value, rel=1e-6)
        assert many["cka"] == pytest.approx(one["cka"], rel=1e-6)
        for role in ("baseline", "candidate"):
            for stat in ("mean", "std", "min", "max", "dead_fraction"):
                assert many[role][stat] == pytest.approx(one[role][stat], rel=1e-6, abs=1e-9)


def test_histogram_quantile_against_numpy_percentile() -> None:
    rng = np.random.default_rng(0)
    values = 10 ** rng.uniform(-6, 1, size=5000)
    counts = np.bincount(np.searchsorted(REL_L2_EDGES, values, side="left"), minlength=REL_L2_EDGES.size + 1)
    for q in (0.5, 0.9, 0.95, 0.99):
        assert hist_quantile(counts, REL_L2_EDGES, q) == pytest.approx(np.quantile(values, q), rel=0.13)
    zeros = np.bincount(np.zeros(10, dtype=int), minlength=COS_DISTANCE_EDGES.size + 1)
    assert hist_quantile(zeros, COS_DISTANCE_EDGES, 0.95) == 0.0


def test_perturbed_block_is_the_first_drifting_layer_and_earlier_layers_pass() -> None:
    base = Tower()
    cand = nudged(base, scale=1.0, only="blocks.2")
    check = make_check(base, cand)
    assert check.activation_layers()["baseline"] == ["inp", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"]
    feed(check, base, cand, inputs(256, 64))
    result = check.compute()
    assert result.status == "fail"
    assert result.details["first_drifting_layer"] == "blocks.2"
    assert "drift starts at blocks.2" in result.summary
    statuses = {f["layer"]: f["status"] for f in result.details["layers"]}
    assert statuses == {"inp": "pass", "blocks.0": "pass", "blocks.1": "pass", "blocks.2": "fail",
                        "blocks.3": "fail", "head": "fail"}
    assert layer(result, "blocks.1")["cosine"]["mean"] == 1.0
    breach = next(f for f in result.findings if f.where == "blocks.2" and f.metric == "cosine")
    assert breach.status == "fail" and breach.rule == "min" and breach.threshold == 0.95
    assert breach.margin == pytest.approx(breach.value - 0.95) and breach.margin < 0
    assert breach.required == breach.value
    drift_table = result.tables[0]
    marked = [row for row in drift_table.rows if row[-1] == "drift starts here"]
    assert [row[1] for row in marked] == ["blocks.2"]
    assert [row[1] for row in drift_table.rows] == ["inp", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"]
    chart = result.charts[0]
    assert chart.labels[0] in ("blocks.2", "blocks.3", "head") and "inp" not in chart.labels[:3]
    assert list(chart.values) == sorted(chart.values, reverse=True)


def test_identical_candidate_passes_with_cosine_one_rel_l2_zero_sqnr_inf() -> None:
    base = Tower()
    cand = copy.deepcopy(base)
    check = make_check(base, cand)
    feed(check, base, cand, inputs(100, 32))
    result = check.compute()
    assert result.status == "pass", result.summary
    assert result.details["first_drifting_layer"] is None
    for fig in result.details["layers"]:
        assert fig["cosine"] == {"mean": 1.0, "tail": 1.0}
        assert fig["rel_l2"] == {"mean": 0.0, "tail": 0.0}
        assert fig["sqnr_db"]["pooled"] == math.inf
        assert fig["psi"] == 0.0
    assert all(f.status == "pass" for f in result.findings)
    json.dumps(to_jsonable(result))     # the whole result is JSON-able (inf -> "inf")


def test_barely_fine_tuned_candidate_passes_the_defaults() -> None:
    base = Tower()
    cand = nudged(base, scale=0.01)     # every weight moved by 1% of its spread
    check = make_check(base, cand)
    feed(check, base, cand, inputs(200, 50))
    result = check.compute()
    assert result.status == "pass", result.summary


def test_cnn_conv_outputs_are_flattened_per_sample() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10),
    )
    cand = nudged(base, scale=1.0, only="3")
    check = make_check(base, cand)
    assert check.activation_layers()["baseline"] == ["0", "3", "7"]
    gen = torch.Generator().manual_seed(0)
    batches = list(torch.randn(96, 1, 8, 8, generator=gen).split(32))
    seen = feed(check, base, cand, batches)
    result = check.compute()
    assert layer(result, "0")["baseline"]["width"] == 4 * 8 * 8
    assert layer(result, "3")["baseline"]["width"] == 8 * 4 * 4
    b = np.concatenate([np_features(s["baseline"]["3"]) for s in seen])
    a = np.concatenate([np_features(s["candidate"]["3"]) for s in seen])
    assert layer(result, "3")["cosine"]["mean"] == pytest.approx(np_pair(a, b)["cos_mean"], rel=1e-10)
    assert result.details["first_drifting_layer"] == "3"


class LstmClassifier(nn.Module):
    def __init__(self, *, batch_first: bool = True, vocab: int = 50, classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.batch_first = batch_first
        self.embedding = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 12, num_layers=2, batch_first=batch_first)
        self.fc = nn.Linear(12, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(ids if self.batch_first else ids.T)
        _, (h, _) = self.lstm(emb)
        return self.fc(h[-1])


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_tuple_outputs_are_named_parts(batch_first: bool) -> None:
    base = LstmClassifier(batch_first=batch_first)
    cand = nudged(base, scale=0.05, only="lstm")
    check = make_check(base, cand)
    assert check.activation_layers()["baseline"] == ["embedding", "lstm", "fc"]
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 50, (16, length), generator=gen) for length in (5, 9, 7)]   # lengths vary
    seen = feed(check, base, cand, batches)
    result = check.compute()
    names = [f["layer"] for f in result.details["layers"]]
    assert names == ["embedding", "lstm[0]", "lstm[1][0]", "lstm[1][1]", "fc"]
    assert layer(result, "lstm[0]")["baseline"]["width"] == 12            # mean over time steps
    assert layer(result, "lstm[1][0]")["baseline"]["width"] == 2 * 12     # h_n: (layers, B, H) -> B x (layers*H)
    for part, pick in (("lstm[0]", lambda o: o[0]), ("lstm[1][0]", lambda o: o[1][0])):
        def feats(out: Any) -> np.ndarray:
            t = pick(out).double().numpy()
            if part == "lstm[0]":
                t = t if batch_first else t.transpose(1, 0, 2)
                return t.mean(axis=1)
            return t.transpose(1, 0, 2).reshape(t.shape[1], -1)
        b = np.concatenate([feats(s["baseline"]["lstm"]) for s in seen])
        a = np.concatenate([feats(s["candidate"]["lstm"]) for s in seen])
        want = np_pair(a, b)
        fig = layer(result, part)
        assert fig["cosine"]["mean"] == pytest.approx(want["cos_mean"], rel=1e-10)
        assert fig["rel_l2"]["mean"] == pytest.approx(want["rel_mean"], rel=1e-10)
    assert layer(result, "embedding")["cosine"]["mean"] == 1.0


def test_layers_glob_with_a_part_keeps_only_that_part() -> None:
    base = LstmClassifier()
    check = make_check(base, copy.deepcopy(base), layers=["lstm[1][0]"])
    assert check.activation_layers()["baseline"] == ["lstm"]
    feed(check, base, check.ctx.models["candidate"].module, [torch.randint(0, 50, (8, 6))])
    assert [f["layer"] for f in check.compute().details["layers"]] == ["lstm[1][0]"]


def test_transformer_encoder_blocks() -> None:
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(40, 16)
            layer_ = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer_, num_layers=2, enable_nested_tensor=False)
            self.head = nn.Linear(16, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(self.embed(ids)).mean(dim=1))

    base = Encoder()
    cand = nudged(base, scale=1.0, only="encoder.layers.1")
    check = make_check(base, cand)
    assert check.activation_layers()["baseline"] == ["embed", "encoder.layers.0", "encoder.layers.1", "head"]
    gen = torch.Generator().manual_seed(0)
    seen = feed(check, base, cand, [torch.randint(0, 40, (16, n), generator=gen) for n in (6, 10)])
    result = check.compute()
    assert result.details["first_drifting_layer"] == "encoder.layers.1"
    b = np.concatenate([np_features(s["baseline"]["encoder.layers.1"]) for s in seen])
    a = np.concatenate([np_features(s["candidate"]["encoder.layers.1"]) for s in seen])
    assert layer(result, "encoder.layers.1")["cosine"]["mean"] == pytest.approx(np_pair(a, b)["cos_mean"], rel=1e-10)


def test_tiny_bert_with_padding_uses_the_attention_mask() -> None:
    transformers = pytest.importorskip("transformers")

    class BertClassifier(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            torch.manual_seed(seed)
            cfg = transformers.BertConfig(
                vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=32,
            )
            self.bert = transformers.BertModel(cfg)
            self.classifier = nn.Linear(16, 2)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output)

    base = BertClassifier(0)
    cand = nudged(base, scale=0.02)
    check = make_check(base, cand, layers=["bert.embeddings", "bert.encoder.layer.*", "bert.encoder", "classifier"])
    assert default_layer_names(base) == [
        "bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "classifier"
    ]
    gen = torch.Generator().manual_seed(0)
    batches = []
    for length in (7, 11):
        ids = torch.randint(1, 60, (12, length), generator=gen)
        mask = torch.ones_like(ids)
        for i in range(12):
            mask[i, 3 + i % (length - 3):] = 0          # padded tails of different lengths
        batches.append({"input_ids": ids * mask, "attention_mask": mask})
    seen = feed(check, base, cand, batches)
    result = check.compute()
    names = [f["layer"] for f in result.details["layers"]]
    assert names == [
        "bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder[last_hidden_state]",
        "classifier",
    ]

    def masked_mean(out: Any, mask: torch.Tensor) -> np.ndarray:
        t, m = first_tensor(out).double().numpy(), mask.double().numpy()[..., None]
        return (t * m).sum(axis=1) / m.sum(axis=1)

    for name in ("bert.encoder.layer.1", "bert.encoder[last_hidden_state]"):
        module = name.split("[")[0]
        b = np.concatenate([masked_mean(s["baseline"][module], bt["attention_mask"]) for s, bt in zip(seen, batches)])
        a = np.concatenate([masked_mean(s["candidate"][module], bt["attention_mask"]) for s, bt in zip(seen, batches)])
        fig = layer(result, name)
        assert fig["cosine"]["mean"] == pytest.approx(np_pair(a, b)["cos_mean"], rel=1e-10)
        assert fig["baseline"]["mean"] == pytest.approx(b.mean(), rel=1e-9)
    assert result.status == "pass", result.summary


def rotated(model: nn.Linear, *, seed: int, widen: bool = False) -> nn.Linear:
    """The same layer followed by a random orthogonal map (optionally also repeating its features: width x2)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(model.out_features, model.out_features, generator=gen, dtype=torch.float64))
    w = q @ model.weight.double()
    b = q @ model.bias.double()
    if widen:
        w, b = torch.cat([w, model.weight.double()]), torch.cat([b, model.bias.double()])
    out = nn.Linear(model.in_features, w.shape[0]).double()
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out


@pytest.mark.parametrize("widen", [False, True])
def test_cka_of_a_random_rotation_is_one(widen: bool) -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 20).double())
    cand = nn.Sequential(rotated(base[0], seed=3, widen=widen))
    check = make_check(base, cand, cka="all" if not widen else "auto")
    feed(check, base, cand, [x.double() for x in inputs(300, 64)])
    fig = layer(check.compute(), "0")
    assert fig["comparison"] == ("cka" if widen else "elementwise")
    assert fig["cka"] == pytest.approx(1.0, abs=1e-6)
    if not widen:
        assert fig["cosine"]["mean"] < 0.9       # the rotation moves every vector: cosine sees it, CKA does not


def test_cka_is_not_computed_beyond_cka_max_features_and_says_why() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 200).double())
    cand = nn.Sequential(rotated(base[0], seed=3))
    check = make_check(base, cand, cka="all", cka_max_features=64)
    feed(check, base, cand, [x.double() for x in inputs(100, 50)])
    fig = layer(check.compute(), "0")
    assert fig["cka"] is None
    assert "200 features exceed cka_max_features 64" in fig["cka_note"]


def test_channel_pruned_conv_is_compared_by_cka_on_channel_means() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1))
    cand = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1))
    with torch.no_grad():              # pruned: channels 1 and 5 removed
        keep = [0, 2, 3, 4, 6, 7]
        cand[0].weight.copy_(base[0].weight[keep])
        cand[0].bias.copy_(base[0].bias[keep])
    check = make_check(base, cand)
    gen = torch.Generator().manual_seed(0)
    seen = feed(check, base, cand, list(torch.randn(120, 2, 5, 5, generator=gen).split(40)))
    result = check.compute()
    fig = layer(result, "0")
    assert fig["comparison"] == "cka" and fig["cosine"] is None
    assert (fig["baseline"]["width"], fig["candidate"]["width"]) == (8 * 25, 6 * 25)
    b = np.concatenate([s["baseline"]["0"].double().numpy().mean(axis=(2, 3)) for s in seen])
    a = np.concatenate([s["candidate"]["0"].double().numpy().mean(axis=(2, 3)) for s in seen])
    assert fig["cka"] == pytest.approx(np_cka(b, a), rel=1e-9)
    assert result.tables[0].rows[0][2] == "200->150"


def test_cka_of_unrelated_random_features_is_near_zero() -> None:
    base, cand = nn.Sequential(nn.Linear(2, 16)), nn.Sequential(nn.Linear(2, 24))
    check = make_check(base, cand)
    gen = torch.Generator().manual_seed(0)
    for i in range(10):
        acts = {
            "baseline": {"0": torch.randn(200, 16, generator=gen)},
            "candidate": {"0": torch.randn(200, 24, generator=gen)},
        }
        check.update(Step(index=i, offset=200 * i, inputs=None, labels=torch.zeros(200, dtype=torch.int64),
                          scores={}, activations=acts))
    result = check.compute()
    cka = layer(result, "0")["cka"]
    assert 0.0 <= cka < 0.03            # ~ sqrt(16 * 24) / 2000 = 0.01 for independent features
    assert result.details["first_drifting_layer"] == "0" and result.status == "fail"


@pytest.mark.parametrize("buffering", [{}, {"buffer_rows": 40}, {"buffer_mb": 0}])
def test_state_size_is_flat_in_the_number_of_batches(buffering: dict[str, Any]) -> None:
    base = LstmClassifier()
    cand = nudged(base, scale=0.1)
    check = make_check(base, cand, cka="all", **buffering)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 50, (16, 4 + i % 5), generator=gen) for i in range(40)]
    # until the baseline's first 256 samples have fixed the PSI edges, their sampled values wait (bounded by
    # 256 x 128 per side); from then on nothing grows: 20 batches of 16 are past that (and past a fold of 40 rows)
    feed(check, base, cand, batches[:20])
    after_two, buffers = check.state_nbytes(), check.buffer_nbytes()
    feed(check, base, cand, batches[20:])
    assert after_two > 0
    assert check.state_nbytes() == after_two
    assert check.buffer_nbytes() == buffers <= check.opts.buffer_mb * 2**20     # reserved once, within the cap
    if buffering.get("buffer_mb") == 0:
        assert buffers == 0
    result = check.compute()
    assert result.details["layers"][0]["samples"] == 40 * 16
    assert result.details["buffer_bytes"] == buffers


def test_buffering_does_not_change_any_figure_on_a_cnn() -> None:
    """A conv layer of 16x8x8 values per sample: PSI bins every 5th value of the stream, across buffer folds."""
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.Flatten(), nn.Linear(512, 4),
    )
    cand = nudged(base, scale=0.3, only="2")
    gen = torch.Generator().manual_seed(0)
    batches = list(torch.randn(200, 1, 8, 8, generator=gen).split(32))     # the last batch is short (8)
    figures = {}
    for label, buffering in (("unbuffered", {"buffer_mb": 0}), ("70_rows", {"buffer_rows": 70}), ("default", {})):
        check = make_check(base, cand, cka="all", **buffering)
        feed(check, base, cand, batches)
        assert (check.buffer_nbytes() == 0) == (label == "unbuffered")
        figures[label] = check.compute().details["layers"]
    for label in ("70_rows", "default"):
        for one, other in zip(figures["unbuffered"], figures[label]):
            assert other["psi"] == one["psi"] and other["psi_bins"] == one["psi_bins"]     # same bins, same counts
            for key in ("baseline", "candidate"):
                assert other[key] == pytest.approx(one[key], rel=1e-12, abs=1e-15)
            for key in ("cosine", "rel_l2", "sqnr_db"):
                assert other[key] == pytest.approx(one[key], rel=1e-12)
            assert other["cka"] == pytest.approx(one["cka"], rel=1e-12)


def test_linear_quantiles_of_sorted_values_are_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    q = np.arange(1, 20) / 20
    for values in (rng.standard_normal(1001), np.maximum(rng.standard_normal(640), 0), rng.integers(0, 4, 97) * 0.5,
                   rng.standard_normal(3).astype(np.float32)):
        want = np.quantile(values.astype(np.float64), q)
        got = linear_quantiles(np.sort(values).astype(np.float64), q)
        assert np.array_equal(got, want)


def test_bin_counts_match_searchsorted_with_values_on_the_edges() -> None:
    rng = np.random.default_rng(0)
    edges = np.array([-1.0, 0.0, 0.5, 2.0])
    values = np.concatenate([rng.standard_normal(500), edges, edges, np.zeros(30)]).astype(np.float32)
    want = np.bincount(np.searchsorted(edges, values.astype(np.float64), side="right"), minlength=edges.size + 1)
    assert np.array_equal(bin_counts(values, edges), want)


def test_nan_activations_always_fail_even_with_loose_thresholds() -> None:
    base = Tower()
    cand = copy.deepcopy(base)
    with torch.no_grad():
        cand.blocks[1][0].weight[0, 0] = math.nan
    nulls = dict.fromkeys(["min_cosine", "max_rel_l2", "min_sqnr_db", "max_psi", "min_cka"])
    check = make_check(base, cand, thresholds=nulls, severity="warn")
    feed(check, base, cand, inputs(64, 32))
    result = check.compute()
    assert result.status == "fail"
    assert result.details["first_drifting_layer"] == "blocks.1"
    bad = [f for f in result.findings if f.metric == "non_finite"]
    assert bad[0].where == "blocks.1" and bad[0].candidate == 64.0 and bad[0].baseline == 0.0
    assert layer(result, "blocks.1")["candidate"]["nan"] == 64


def test_rules_override_thresholds_per_layer_pattern_and_severity_warn() -> None:
    base = Tower()
    cand = nudged(base, scale=1.0, only="blocks.2")
    loose = {"min_cosine": None, "max_rel_l2": None, "min_sqnr_db": None, "max_psi": None}
    check = make_check(base, cand, rules=[{"layers": ["blocks.2", "blocks.3"], **loose}], severity="warn")
    feed(check, base, cand, inputs(128, 64))
    result = check.compute()
    assert result.status == "warn"
    assert result.details["first_drifting_layer"] == "head"
    assert layer(result, "blocks.2")["thresholds"]["min_cosine"] is None
    assert layer(result, "head")["thresholds"]["min_cosine"] == 0.95


def test_tail_statistic_judges_the_worst_samples() -> None:
    base = Tower()
    cand = nudged(base, scale=0.1, only="blocks.0")
    results = {}
    for statistic in ("mean", "tail"):
        check = make_check(base, cand, statistic=statistic, thresholds={"min_cosine": 0.999})
        feed(check, base, cand, inputs(256, 64))
        results[statistic] = check.compute()
    mean_fig = layer(results["mean"], "blocks.0")
    found = {
        s: next(f for f in r.findings if f.where == "blocks.0" and f.metric == "cosine") for s, r in results.items()
    }
    assert found["mean"].value == mean_fig["cosine"]["mean"]
    assert found["tail"].value == mean_fig["cosine"]["tail"] < found["mean"].value


def test_unmatched_layers_are_listed_not_dropped() -> None:
    base, cand = Tower(depth=3), Tower(depth=5)
    check = make_check(base, cand)
    assert check.activation_layers()["candidate"] == ["inp", "blocks.0", "blocks.1", "blocks.2", "head"]
    feed(check, base, cand, inputs(32, 32))
    result = check.compute()
    assert result.details["unmatched_layers"] == {"baseline": [], "candidate": ["blocks.3", "blocks.4"]}


def test_max_layers_keeps_both_ends_and_lists_the_omitted() -> None:
    base = Tower(depth=8)
    check = make_check(base, copy.deepcopy(base), max_layers=4)
    kept = check.activation_layers()["baseline"]
    assert len(kept) == 4 and kept[0] == "inp" and kept[-1] == "head"
    feed(check, base, check.ctx.models["candidate"].module, inputs(16, 16))
    assert len(check.compute().details["omitted_layers"]) == 10 - 4


def test_a_model_without_submodules_is_its_own_layer() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    cand = nudged(base, scale=1.0)
    check = make_check(base, cand)
    assert check.activation_layers() == {"baseline": [""], "candidate": [""]}
    feed(check, base, cand, inputs(64, 32))
    result = check.compute()
    assert result.details["first_drifting_layer"] == "(model)"
    assert result.charts[0].labels == ("(model)",)


def test_markdown_renders_the_drift_tables_and_chart() -> None:
    from gate.report.markdown import md_table, mermaid_chart

    base = Tower()
    cand = nudged(base, scale=1.0, only="blocks.2")
    check = make_check(base, cand)
    feed(check, base, cand, inputs(64, 32))
    result = check.compute()
    chart = "\n".join(mermaid_chart(result.charts[0]))
    assert "xychart-beta" in chart and '"blocks.2"' in chart
    table = "\n".join(md_table(result.tables[0].headers, result.tables[0].rows))
    assert "| drift starts here |" in table


def test_a_model_that_cannot_be_hooked_is_skipped_with_the_reason() -> None:
    base = Tower()
    config = build_config({"checks": {"drift": {"enabled": True}}})
    ctx = RunContext(
        config=config,
        models={"baseline": Loaded(base), "candidate": Loaded(base, is_eager=False, format="torchscript")},
        class_names=(), device=torch.device("cpu"),
    )
    check = DriftCheck(config.check("drift"), ctx)
    check.setup()
    assert check.activation_layers() == {}
    result = check.compute()
    assert result.status == "skip"
    assert "candidate (torchscript) cannot be hooked" in result.summary


def test_layer_globs() -> None:
    assert glob_match("encoder.layer.*", "encoder.layer.3")
    assert not glob_match("encoder.layer.*", "encoder.layer.3.attention")
    assert glob_match("encoder.**", "encoder.layer.3.attention")
    assert glob_match("lstm[1][0]", "lstm[1][0]") and not glob_match("lstm[1][0]", "lstm1")
    base = Tower()
    with pytest.raises(ConfigError, match=r"checks\.drift\.layers: \['encodr\.\*'\] match no module"):
        make_check(base, copy.deepcopy(base), layers=["encodr.*"])


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        (
            {"thresholds": {"min_cosin": 0.9}},
            r"checks\.drift\.thresholds\.min_cosin: unknown key \(did you mean min_cosine\?\)",
        ),
        ({"thresholds": {"min_cosine": 2}}, r"checks\.drift\.thresholds\.min_cosine"),
        ({"rules": [{"layers": "a.*", "max_psi": -1}]}, r"checks\.drift\.rules\[0\]\.max_psi"),
        ({"rules": [{"min_cka": 0.5}]}, r"checks\.drift\.rules\[0\]"),
        ({"statistic": "median"}, r"checks\.drift\.statistic: expected one of mean, tail"),
        ({"layer": ["a"]}, r"checks\.drift\.layer: unknown key \(did you mean layers\?\)"),
    ],
)
def test_bad_drift_config_is_a_config_error(drift: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"checks": {"drift": drift}})


def test_defaults_are_disabled_and_thresholds_merge_with_user_values() -> None:
    drift = build_config({}).check("drift")
    assert drift["enabled"] is False and drift["layers"] is None and drift["max_layers"] == 64
    merged = build_config({"checks": {"drift": {"thresholds": {"min_cosine": 0.9}}}}).check("drift")
    assert merged["thresholds"]["min_cosine"] == 0.9 and merged["thresholds"]["max_psi"] == 0.25


def test_the_runner_pass_feeds_the_check() -> None:
    runner = pytest.importorskip("gate.runner")
    from gate.models.base import LoadedModel

    base = Tower()
    cand = nudged(base, scale=1.0, only="blocks.1")
    config = build_config({"checks": {"drift": {"enabled": True}}})

    def loaded(role: str, module: nn.Module) -> LoadedModel:
        return LoadedModel(role=role, path=f"{role}.pt", format="pickle", module=module.eval(), sha256=None,
                           size_bytes=None, parameters=None, class_names=None, tokenizer=None, input_names=None,
                           is_eager=True)

    ctx = RunContext(
        config=config,
        models={"baseline": loaded("baseline", base), "candidate": loaded("candidate", cand)},
        class_names=(),
        device=torch.device("cpu"),
    )

    class Data:
        path = "memory"
        num_samples = 96

        def batches(self) -> Any:
            for x in inputs(96, 32):
                yield x, torch.zeros(x.shape[0], dtype=torch.int64)

    check = DriftCheck(config.check("drift"), ctx)
    check.setup()
    runner.evaluate(ctx, Data(), [check])
    result = check.compute()
    assert result.details["first_drifting_layer"] == "blocks.1"
    assert layer(result, "blocks.0")["samples"] == 96


# ------------------------------------------------------------------------------------------------ shards


def _acts(base: nn.Module, cand: nn.Module, check: DriftCheck, batches: list[Any]) -> list[Step]:
    """The runner's Steps for every batch (hooked outputs of both models), offsets global."""
    models = {"baseline": base, "candidate": cand}
    captured: dict[str, dict[str, Any]] = {"baseline": {}, "candidate": {}}
    handles = [models[role].get_submodule(name).register_forward_hook(
        lambda _m, _i, out, role=role, name=name: captured[role].__setitem__(name, out.clone()))
        for role, names in check.activation_layers().items() for name in names]
    steps, offset = [], 0
    try:
        for index, x in enumerate(batches):
            with torch.inference_mode():
                scores = {role: first_tensor(call(m, x)).float() for role, m in models.items()}
            steps.append(Step(index=index, offset=offset, inputs=x, labels=torch.zeros(len(x), dtype=torch.int64),
                              scores=scores, activations={r: dict(c) for r, c in captured.items()}))
            offset += len(x)
    finally:
        for h in handles:
            h.remove()
    return steps


def _approx(got: Any, want: Any, path: str = "") -> None:
    if isinstance(want, float) and isinstance(got, float):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12, abs=1e-300), path
    elif isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            _approx(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _approx(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


@pytest.mark.parametrize("count,nan", [(2, False), (3, False), (3, True)])
def test_sharded_states_merge_to_the_single_runs_figures(count: int, nan: bool) -> None:
    """A CNN whose first conv output (256 wide) is PSI-sampled on a stride of 3: shards prime on the first 256
    samples (the edges), fold their own batches at their global offsets; merged, every figure is the single run's,
    also when some samples' activations are NaN (the stride runs over positions, finite or not)."""
    from gate.sharding import Shard, merge_arrays, split_values

    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10),
    )
    cand = nudged(base, scale=0.3, only="3")
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(420, 1, 8, 8, generator=gen)
    if nan:
        data[[3, 77, 150, 301], 0, 0, 0] = math.nan       # 16 NaN conv outputs each: not a multiple of the stride
    batches = list(data.split(40))
    single = make_check(base, cand)
    steps = _acts(base, cand, single, batches)
    for step in steps:
        single.update(step)
    want = single.compute()
    assert single._layers["0"].psi_stride == 3          # 256 values per sample: every 3rd is binned
    parts = []
    for s in range(count):
        shard = make_check(base, cand)
        seen = 0
        for step in steps:                    # the runner's prime: the data's first samples, whoever owns them
            if seen >= shard.prime_samples:
                break
            shard.prime(step)
            seen += len(step.inputs)
        for step in steps:
            if Shard(s, count).owns(step.index):
                shard.update(step)
        parts.append(shard.state())
    arrays, texts = split_values(merge_arrays(parts))
    merged = make_check(base, cand)
    merged.load_state({**arrays, **texts})
    got = merged.compute()
    assert got.status == want.status and got.summary == want.summary
    assert (single._layers["0"].base.nan > 0) is nan
    _approx(got.details, want.details)
    for name in ("0", "3"):
        np.testing.assert_array_equal(merged._layers[name].base.psi_counts, single._layers[name].base.psi_counts)
        np.testing.assert_array_equal(merged._layers[name].cand.psi_counts, single._layers[name].cand.psi_counts)
