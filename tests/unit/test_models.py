"""gate.models: each checkpoint format loads to a module with the original's outputs; bad input -> CheckpointError."""
from __future__ import annotations

import hashlib
import json
import random
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
import torch

from gate.errors import CheckpointError, MissingExtraError
from gate.models import FORMATS, LoadedModel, load_model, sniff_format

try:
    from . import model_fixtures as fx
except ImportError:
    import model_fixtures as fx

CPU = torch.device("cpu")


@pytest.fixture
def net(netmod):
    return fx.trained_net(netmod)


@pytest.fixture
def x():
    return fx.sample_input()


def factory_options(netmod, **extra):
    return {"factory": f"{netmod.__name__}:build", "kwargs": {}, "trust_checkpoint": False, "strict": True, **extra}


def expected_output(net, x):
    with torch.inference_mode():
        return net(x)


def run(loaded: LoadedModel, x):
    with torch.inference_mode():
        return loaded.module(x)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- writers for every single-file format: (file name, expected format, needs a factory) ----------------------

def write_checkpoint(kind: str, net, x, directory: Path) -> Path:
    sd = net.state_dict()
    if kind == "torchscript":
        path = directory / "model.ts.pt"
        fx.save_torchscript(net, path)
    elif kind == "export":
        path = directory / "model.pt2"
        fx.save_export(net, x, path)
    elif kind == "safetensors":
        path = directory / "model.safetensors"
        fx.save_safetensors(net, path)
    else:
        path = directory / f"{kind}.pt"
        torch.save(STATE_DICT_LAYOUTS[kind](sd, net), path, **({"_use_new_zipfile_serialization": False}
                                                                if kind == "legacy_state_dict" else {}))
    return path


def _optimizer_state(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    net(fx.sample_input(seed=5)).sum().backward()
    optimizer.step()          # momentum buffers: tensors in the optimizer state, as real checkpoints hold
    net.eval()
    return optimizer.state_dict()


STATE_DICT_LAYOUTS = {
    "state_dict": lambda sd, net: sd,
    "legacy_state_dict": lambda sd, net: sd,
    "lightning": lambda sd, net: {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {**{f"model.{k}": v for k, v in sd.items()}, "loss_fn.weight": torch.ones(3)},
        "optimizer_states": [], "lr_schedulers": [], "hyper_parameters": {"hidden": 8, "lr": 0.01},
    },
    "model_dict": lambda sd, net: {"model": dict(sd), "epoch": 1},
    "model_state_dict": lambda sd, net: {"model_state_dict": dict(sd), "epoch": 2},
    "dataparallel": lambda sd, net: {f"module.{k}": v for k, v in sd.items()},
    "compiled": lambda sd, net: {f"_orig_mod.{k}": v for k, v in sd.items()},      # torch.compile's wrapper
    "lightning_dataparallel": lambda sd, net: {"state_dict": {f"model.module.{k}": v for k, v in sd.items()}},
}

SINGLE_FILE_KINDS = {
    "torchscript": ("torchscript", False),
    "export": ("export", False),
    "safetensors": ("safetensors", True),
    **{kind: ("state_dict", True) for kind in STATE_DICT_LAYOUTS},
}


@pytest.mark.parametrize("kind", sorted(SINGLE_FILE_KINDS))
def test_every_single_file_format_loads_with_the_original_outputs(kind, netmod, net, x, tmp_path):
    # The state must be captured before _optimizer_state-style side effects; snapshot expected output first.
    expected = expected_output(net, x)
    path = write_checkpoint(kind, net, x, tmp_path)
    fmt, needs_factory = SINGLE_FILE_KINDS[kind]
    # Programs (TorchScript, torch.export) load only when the command line trusts the role.
    options = factory_options(netmod) if needs_factory else {"trust_checkpoint": True}

    loaded = load_model(path, role="candidate", options=options, device=CPU)

    torch.testing.assert_close(run(loaded, x), expected)
    other_batch = fx.sample_input(seed=3, rows=7)
    torch.testing.assert_close(run(loaded, other_batch), expected_output(net, other_batch))
    assert (loaded.role, loaded.path, loaded.format) == ("candidate", str(path), fmt)
    assert loaded.sha256 == sha256_of(path)
    assert loaded.size_bytes == path.stat().st_size
    assert loaded.parameters == sum(p.numel() for p in net.parameters())
    assert loaded.input_names == ("x",)
    assert loaded.is_eager is (fmt not in ("torchscript", "export"))
    assert loaded.class_names is None and loaded.tokenizer is None
    if loaded.is_eager:
        assert not loaded.module.training
        assert all(not m.training for m in loaded.module.modules())
    assert all(p.device == CPU for p in loaded.module.parameters())


def test_training_checkpoint_with_optimizer_state_loads(netmod, net, x, tmp_path):
    expected = expected_output(net, x)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "train.ckpt"
    torch.save({"model_state_dict": sd, "optimizer_state_dict": _optimizer_state(net), "epoch": 7}, path)
    loaded = load_model(path, role="baseline", options=factory_options(netmod), device=CPU)
    torch.testing.assert_close(run(loaded, x), expected)


def test_factory_module_is_imported_from_the_working_directory(netmod, net, x, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    name = f"usernets_{uuid.uuid4().hex[:10]}"
    fx.write_net_module(project, name)
    monkeypatch.chdir(project)
    assert name not in sys.modules
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    try:
        loaded = load_model(path, role="candidate", options={"factory": f"{name}:build", "kwargs": {}}, device=CPU)
        assert type(loaded.module).__module__ == name
        torch.testing.assert_close(run(loaded, x), expected_output(net, x))
    finally:
        sys.modules.pop(name, None)


def test_factory_kwargs_are_passed(netmod, tmp_path, x):
    wide = fx.trained_net(netmod, hidden=12, num_classes=4)
    path = tmp_path / "wide.pt"
    torch.save(wide.state_dict(), path)
    loaded = load_model(path, role="candidate", device=CPU,
                        options=factory_options(netmod, kwargs={"hidden": 12, "num_classes": 4}))
    assert loaded.module.fc.out_features == 12
    torch.testing.assert_close(run(loaded, x), expected_output(wide, x))


def test_candidate_and_baseline_may_use_different_formats(netmod, tmp_path, x):
    baseline_net, candidate_net = fx.trained_net(netmod, seed=1), fx.trained_net(netmod, seed=2)
    baseline_path, candidate_path = tmp_path / "prod.pt", tmp_path / "cand.safetensors"
    fx.save_torchscript(baseline_net, baseline_path)
    fx.save_safetensors(candidate_net, candidate_path)
    # Trust is per role: a team's own TorchScript baseline loads while the candidate stays a safe format.
    baseline = load_model(baseline_path, role="baseline", options=factory_options(netmod, trust_checkpoint=True),
                          device=CPU)
    candidate = load_model(candidate_path, role="candidate", options=factory_options(netmod), device=CPU)
    assert (baseline.format, candidate.format) == ("torchscript", "safetensors")
    torch.testing.assert_close(run(baseline, x), expected_output(baseline_net, x))
    torch.testing.assert_close(run(candidate, x), expected_output(candidate_net, x))
    assert not torch.allclose(run(baseline, x), run(candidate, x))


# --- sniffing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(SINGLE_FILE_KINDS))
def test_sniff_format_on_every_format(kind, net, x, tmp_path):
    path = write_checkpoint(kind, net, x, tmp_path)
    assert sniff_format(path) == SINGLE_FILE_KINDS[kind][0]
    assert sniff_format(str(path)) in FORMATS


@pytest.mark.parametrize(("kind", "misleading_name"), [
    ("torchscript", "weights.safetensors"),
    ("export", "model.pt"),
    ("safetensors", "model.pt"),
    ("state_dict", "model.pt2"),
    ("state_dict", "model.safetensors"),
    ("torchscript", "model.bin"),
])
def test_sniff_format_ignores_misleading_extensions(kind, misleading_name, netmod, net, x, tmp_path):
    written = write_checkpoint(kind, net, x, tmp_path)
    path = written.rename(tmp_path / misleading_name)
    fmt = SINGLE_FILE_KINDS[kind][0]
    assert sniff_format(path) == fmt
    trust = fmt in ("torchscript", "export")          # programs load only when the role is trusted
    loaded = load_model(path, role="candidate", options=factory_options(netmod, trust_checkpoint=trust), device=CPU)
    assert loaded.format == fmt
    torch.testing.assert_close(run(loaded, x), expected_output(net, x))


def test_sniff_format_whole_pickled_module_is_pickle(net, tmp_path):
    path = tmp_path / "whole.safetensors"     # misleading name on purpose
    torch.save(net, path)
    assert sniff_format(path) == "pickle"


# --- key alignment and strictness ---------------------------------------------------------------------------

def test_strict_reports_missing_keys(netmod, net, tmp_path):
    sd = dict(net.state_dict())
    del sd["head.bias"]
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys \(head\.bias\)") as info:
        load_model(path, role="candidate", options=factory_options(netmod), device=CPU)
    assert str(path) in str(info.value) and "model.strict: false" in str(info.value)


def test_strict_reports_unexpected_keys(netmod, net, tmp_path):
    sd = {**net.state_dict(), "extra.weight": torch.zeros(2)}
    path = tmp_path / "extra.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(extra\.weight\)"):
        load_model(path, role="candidate", options=factory_options(netmod), device=CPU)


def test_non_strict_loads_a_partial_match(netmod, net, tmp_path):
    sd = dict(net.state_dict())
    del sd["head.bias"]
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    loaded = load_model(path, role="candidate", options=factory_options(netmod, strict=False), device=CPU)
    for key, value in sd.items():
        torch.testing.assert_close(loaded.module.state_dict()[key], value)


def test_shape_mismatch_names_the_tensor_and_both_shapes(netmod, net, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"fc\.weight: checkpoint \(8, 6\) vs module \(16, 6\)") as info:
        load_model(path, role="candidate", options=factory_options(netmod, kwargs={"hidden": 16}), device=CPU)
    assert str(path) in str(info.value)


def test_unrelated_keys_are_rejected_even_when_not_strict(netmod, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.layer.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="none of the state_dict's keys"):
        load_model(path, role="candidate", options=factory_options(netmod, strict=False), device=CPU)


# --- Hugging Face directories --------------------------------------------------------------------------------

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def test_huggingface_directory_loads_with_labels_tokenizer_and_outputs(tmp_path):
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-model"
    original, raw_tokenizer = fx.build_hf_dir(directory, id2label=LABELS)

    loaded = load_model(directory, role="candidate", options={}, device=CPU)

    assert loaded.format == "huggingface" and sniff_format(directory) == "huggingface"
    assert loaded.class_names == ("negative", "neutral", "positive")
    # The tokenizer round-trips: the loaded one encodes exactly as the raw `tokenizers` object we built.
    for text in fx.TEXTS:
        assert loaded.tokenizer(text)["input_ids"] == raw_tokenizer.encode(text).ids
    batch = loaded.tokenizer(fx.TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(**batch).logits, original(**batch).logits)
    weights = directory / "model.safetensors"
    assert loaded.sha256 == sha256_of(weights) and loaded.size_bytes == weights.stat().st_size
    assert loaded.parameters == sum(p.numel() for p in original.parameters())
    assert loaded.input_names[:3] == ("input_ids", "attention_mask", "token_type_ids")
    assert loaded.is_eager and not loaded.module.training


def test_huggingface_generic_labels_give_no_class_names(tmp_path):
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-generic"
    fx.build_hf_dir(directory, id2label=None)
    config_path = directory / "config.json"
    assert load_model(directory, role="baseline", options={}, device=CPU).class_names is None
    # Written out explicitly, the generic names still carry no information.
    config = json.loads(config_path.read_text())
    config.update(id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    config_path.write_text(json.dumps(config))
    loaded = load_model(directory, role="baseline", options={}, device=CPU)
    assert loaded.module.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert loaded.class_names is None


def test_huggingface_base_model_without_classifier_is_refused_when_strict(tmp_path):
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-base"
    fx.build_hf_dir(directory, id2label=LABELS, base_model=True)
    with pytest.raises(CheckpointError, match="classifier") as info:
        load_model(directory, role="candidate", options={"strict": True}, device=CPU)
    assert str(directory) in str(info.value)
    loaded = load_model(directory, role="candidate", options={"strict": False}, device=CPU)
    assert loaded.format == "huggingface"


def test_huggingface_config_that_sizes_the_model_beyond_its_weights_is_refused_before_allocating(tmp_path):
    """A vocab_size of 2,000,000 next to a few dozen saved rows: strict, the mismatch is refused by name with both
    shapes; not strict (which lets a mismatched head be initialised), the 32M elements the weights do not fill are
    refused too, counted on a meta-device skeleton before transformers allocates any of them."""
    directory = tmp_path / "hf-wide"
    fx.build_hf_dir(directory, id2label=LABELS)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["vocab_size"] = 2_000_000
    config_path.write_text(json.dumps(config))
    saved = len(fx.VOCAB)
    with pytest.raises(CheckpointError, match=rf"bert\.embeddings\.word_embeddings\.weight: \[{saved}, 16\] in the "
                                              r"weights, \[2000000, 16\] in the model\) would be randomly initialised"):
        load_model(directory, role="candidate", options={"strict": True}, device=CPU)
    with pytest.raises(CheckpointError, match=rf"config\.json describes a model of \d+ elements but its weights hold "
                                              rf"\d+ \(the largest tensor, bert\.embeddings\.word_embeddings\.weight: "
                                              rf"\[2000000, 16\] in the model, \[{saved}, 16\] in the weights\)") as info:
        load_model(directory, role="candidate", options={"strict": False}, device=CPU)
    assert str(directory) in str(info.value)


def test_huggingface_classifier_of_another_size_than_id2label_is_refused_by_name(tmp_path):
    """config.json names 3 labels, the weights' classifier has 2 rows: refused with both shapes (transformers
    raised 'look at the above report', a report the gate silences); loaded, freshly initialised, when not strict."""
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-two"
    fx.build_hf_dir(directory, id2label={0: "negative", 1: "positive"})
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config.update(id2label={"0": "negative", "1": "positive", "2": "neutral"},
                  label2id={"negative": 0, "positive": 1, "neutral": 2})
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        load_model(directory, role="candidate", options={}, device=CPU)
    message = str(info.value)
    assert str(directory) in message
    assert "classifier.weight: [2, " in message and "in the weights, [3, " in message and "id2label" in message
    loaded = load_model(directory, role="candidate", options={"strict": False}, device=CPU)
    assert loaded.class_names == ("negative", "positive", "neutral")


def test_a_huggingface_run_prints_nothing_but_its_error_line(tmp_path):
    """transformers imports torchao (the quant extra) when installed; its CUDA-kernel and pytree warnings must not
    reach stderr above the gate's one line."""
    import subprocess
    import sys

    pytest.importorskip("transformers")
    directory = tmp_path / "hf-model"
    fx.build_hf_dir(directory, id2label=LABELS)
    res = subprocess.run([sys.executable, "-m", "gate", "check", str(directory), "--baseline", str(directory),
                          "--data", str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.jsonl" in lines[0], res.stderr


def test_huggingface_directory_without_weights(tmp_path):
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-empty"
    fx.build_hf_dir(directory, id2label=LABELS)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="without PyTorch weights") as info:
        load_model(directory, role="candidate", options={}, device=CPU)
    assert str(directory) in str(info.value)


def test_huggingface_without_transformers_names_the_extra(tmp_path, monkeypatch):
    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "bert"}')
    (directory / "model.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "transformers", None)     # makes `import transformers` fail
    with pytest.raises(MissingExtraError, match=r"pytorch-gate\[text\]"):
        load_model(directory, role="candidate", options={}, device=CPU)


# --- bad input: always a CheckpointError that names the file -------------------------------------------------

def _truncated_zip(tmp_path, net):
    whole = tmp_path / "whole.pt"
    torch.save(net.state_dict(), whole)
    path = tmp_path / "truncated.pt"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def _truncated_safetensors(tmp_path, net):
    whole = tmp_path / "whole.safetensors"
    fx.save_safetensors(net, whole)
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(whole.read_bytes()[:-40])
    return path


def _zip_with_garbage_pickle(tmp_path, net):
    path = tmp_path / "garbage.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("garbage/data.pkl", b"\x80\x02this is not a pickle at all")
        archive.writestr("garbage/version", b"3\n")
    return path


def _zip_with_broken_torchscript(tmp_path, net):
    path = tmp_path / "broken_ts.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("broken_ts/constants.pkl", b"garbage")
        archive.writestr("broken_ts/code/__torch__.py", b"def forward(self):\n  return ???\n")
    return path


def _plain_zip(tmp_path, net):
    path = tmp_path / "data.zip.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("eval.csv", "text,label\nhello,1\n")
    return path


def _truncated_legacy(tmp_path, net):
    """torch.save's legacy (non-zip) format cut inside its pickled header, in the middle of a GLOBAL's name."""
    whole = tmp_path / "legacy_whole.pt"
    torch.save(net.state_dict(), whole, _use_new_zipfile_serialization=False)
    blob = whole.read_bytes()
    cut = blob.index(b"collections\n") + len(b"collections\n") + 3
    path = tmp_path / "legacy_cut.pt"
    path.write_bytes(blob[:cut])
    return path


def _write(name: str, content: bytes):
    def make(tmp_path, net):
        path = tmp_path / name
        path.write_bytes(content)
        return path
    return make


BAD_FILES = {
    "empty": (_write("empty.pt", b""), "empty"),
    "truncated zip": (_truncated_zip, "truncated or corrupt zip"),
    "corrupt bytes": (_write("noise.pt", b"\x00\x13" + random.Random(0).randbytes(300)), "not a checkpoint"),
    "corrupt pickle": (_write("bad.pkl", b"\x80\x02" + b"\xff" * 40), "corrupt pickle"),
    "csv": (_write("eval.pt", b"text,label\nthe movie was good,1\n"), "looks like CSV"),
    "json": (_write("model.safetensors", b'{"weights": [1, 2, 3]}\n'), "looks like JSON"),
    "truncated safetensors": (_truncated_safetensors, "truncated safetensors"),
    "truncated legacy pickle": (_truncated_legacy, "ends inside its pickled header"),
    "garbage data.pkl": (_zip_with_garbage_pickle, "data.pkl is not a valid pickle"),
    "broken torchscript": (_zip_with_broken_torchscript, "could not load it as a TorchScript archive"),
    "zip of something else": (_plain_zip, "not a PyTorch checkpoint"),
    "a bare tensor": (lambda tmp_path, net: _saved(tmp_path / "tensor.pt", torch.ones(3)), "holds a torch.Tensor"),
    "dict without weights": (lambda tmp_path, net: _saved(tmp_path / "meta.pt", {"epoch": 1, "note": "hi"}),
                             "a dict without model weights"),
}


def _saved(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_checkpoint_error_naming_the_file(case, netmod, net, tmp_path):
    make, expected = BAD_FILES[case]
    path = make(tmp_path, net)
    trust = case == "broken torchscript"               # trusted, so that the loader itself meets the damage
    with pytest.raises(CheckpointError) as info:
        load_model(path, role="candidate", options=factory_options(netmod, trust_checkpoint=trust), device=CPU)
    message = str(info.value)
    assert f"candidate checkpoint {path}" in message
    assert expected in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="file not found") as info:
        load_model(path, role="baseline", options={}, device=CPU)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="file not found"):
        sniff_format(path)


def test_directory_that_is_not_a_huggingface_model(tmp_path):
    directory = tmp_path / "runs"
    directory.mkdir()
    (directory / "metrics.csv").write_text("a,b\n")
    with pytest.raises(CheckpointError, match="not a Hugging Face model directory.*found: metrics.csv") as info:
        load_model(directory, role="candidate", options={}, device=CPU)
    assert str(directory) in str(info.value)


def test_state_dict_without_factory_explains_model_factory(net, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(CheckpointError, match="--model-factory package.module:callable") as info:
        load_model(path, role="candidate", options={"factory": None, "kwargs": {}}, device=CPU)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("factory", "kwargs", "expected"), [
    ("no_such_module_xyz:build", {}, "cannot import module 'no_such_module_xyz'"),
    ("{mod}:nowhere", {}, "has no attribute 'nowhere'"),
    ("{mod}:NOT_CALLABLE", {}, "is not callable"),
    ("{mod}:not_a_module", {}, "expected a torch.nn.Module"),
    ("{mod}:build", {"bogus": 1}, "does not accept the kwargs ['bogus']"),
    ("{mod}:broken", {}, "raised RuntimeError: the factory exploded"),
    ("{mod}.build", {}, "not of the form package.module:callable"),
])
def test_bad_factories(factory, kwargs, expected, netmod, net, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    options = {"factory": factory.format(mod=netmod.__name__), "kwargs": kwargs, "strict": True}
    with pytest.raises(CheckpointError) as info:
        load_model(path, role="candidate", options=options, device=CPU)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_factory_module_that_fails_to_import(netmod, net, tmp_path):
    name = f"needsdeps_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_abc\n\ndef build():\n    pass\n")
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, role="baseline", options={"factory": f"{name}:build"}, device=CPU)
    message = str(info.value)
    assert f"importing {name!r} failed" in message and "no_such_dependency_abc" in message
    assert f"baseline checkpoint {path}" in message
    sys.modules.pop(name, None)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["torchscript", "export", "state_dict", "safetensors"])
def test_models_land_on_the_requested_device(kind, netmod, net, x, tmp_path):
    cuda = torch.device("cuda")
    path = write_checkpoint(kind, net, x, tmp_path)
    loaded = load_model(path, role="candidate", options=factory_options(netmod), device=cuda)
    assert all(p.device.type == "cuda" for p in loaded.module.parameters())
    assert all(b.device.type == "cuda" for b in loaded.module.buffers())
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x.to(cuda)).cpu(), expected_output(net, x), rtol=1e-4, atol=1e-5)


def test_a_state_dict_keeps_its_dtypes_tensor_by_tensor(netmod, tmp_path):
    """load_state_dict into the factory's float32 module would cast; each tensor keeps the checkpoint's dtype."""
    from gate.precision import apply_dtype

    net = fx.trained_net(netmod).half()
    net.norm.float()                                          # shipped mixed: a float32 norm in a float16 model
    path = tmp_path / "mixed.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(path, role="candidate", options={"factory": f"{netmod.__name__}:build"}, device=CPU)
    assert loaded.module.fc.weight.dtype == torch.float16 and loaded.module.norm.running_mean.dtype == torch.float32
    for name, tensor in loaded.module.state_dict().items():
        assert torch.equal(tensor, net.state_dict()[name]), name
    ready = apply_dtype(loaded, "auto")
    assert (ready.dtype, ready.checkpoint_dtype) == ("float16", "float16")
    assert ready.cast is not None and ready.cast.startswith("shipped with mixed dtypes (float16 x")
    cast = apply_dtype(load_model(path, role="candidate", options={"factory": f"{netmod.__name__}:build"},
                                  device=CPU), "bfloat16")
    assert cast.dtype == "bfloat16" and "cast on load from float16 to bfloat16 (dtype: bfloat16)" in cast.cast
    assert {p.dtype for p in cast.module.parameters()} == {torch.bfloat16}
