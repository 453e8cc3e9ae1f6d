"""gate.models never unpickles code from a checkpoint unless the user passes trust_checkpoint.

Each malicious file would write a marker file when unpickled (exec() or os.system() via __reduce__).
The tests check that loading is refused, that the marker never appears, and that no unsafe
unpickling call is even made. The malicious files are never loaded with trust on.
"""
from __future__ import annotations

import pickle
import uuid

import pytest
import torch

from gate.errors import CheckpointError
from gate.models import load_model, sniff_format

try:
    from . import model_fixtures as fx
except ImportError:
    import model_fixtures as fx

CPU = torch.device("cpu")


@pytest.fixture
def unsafe_calls(monkeypatch):
    """Records every unpickling call that could run code: torch.load(weights_only=False) and pickle.load."""
    calls: list[str] = []
    real_torch_load = torch.load

    def guarded_torch_load(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            calls.append(f"torch.load(weights_only={kwargs.get('weights_only')!r})")
        return real_torch_load(*args, **kwargs)

    def guarded_pickle_load(*args, **kwargs):
        calls.append("pickle.load")
        raise AssertionError("pickle.load must not be called on an untrusted checkpoint")

    monkeypatch.setattr(torch, "load", guarded_torch_load)
    monkeypatch.setattr(pickle, "load", guarded_pickle_load)
    return calls


def marker_path(tmp_path):
    return tmp_path / f"pwned-{uuid.uuid4().hex[:8]}"


def save(obj, path, how):
    if how == "torch.save":
        torch.save(obj, path)
    elif how == "torch.save legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:                       # "pickle protocol N": protocol 4+ names globals with STACK_GLOBAL + memo
        with open(path, "wb") as handle:
            pickle.dump(obj, handle, protocol=int(how.rsplit(" ", 1)[1]))


PAYLOADS = {"exec": (fx.ExecPayload, "builtins.exec", b"exec"),
            "os.system": (fx.SystemPayload, ".system", b"system")}
WRITERS = [("torch.save", ".pt"), ("torch.save legacy", ".pth"), ("pickle protocol 2", ".bin"),
           ("pickle protocol 5", ".ckpt")]
CASES = [(payload, how, ext) for payload in PAYLOADS for how, ext in WRITERS]


def malicious_file(tmp_path, payload, how, ext, wrap=lambda evil: evil):
    cls, _, needle = PAYLOADS[payload]
    marker = marker_path(tmp_path)
    path = tmp_path / f"evil-{payload}-{how.replace(' ', '_')}{ext}"
    save(wrap(cls(marker)), path, how)
    # The file really carries the call (read as bytes, not unpickled): the test is not vacuous.
    assert needle in path.read_bytes()
    return path, marker


def assert_refused(path, marker, options, global_name, unsafe_calls):
    with pytest.raises(CheckpointError) as info:
        load_model(path, role="candidate", options=options, device=CPU)
    message = str(info.value)
    assert f"candidate checkpoint {path}" in message
    assert "arbitrary code" in message and "--trust-checkpoint" in message
    assert "state_dict" in message and "safetensors" in message and "--trust-checkpoint candidate" in message
    assert global_name in message
    assert not marker.exists()
    assert unsafe_calls == []


@pytest.mark.parametrize(("payload", "how", "ext"), CASES)
def test_malicious_pickle_is_refused_without_trust(payload, how, ext, tmp_path, unsafe_calls):
    path, marker = malicious_file(tmp_path, payload, how, ext)
    assert_refused(path, marker, {"trust_checkpoint": False}, PAYLOADS[payload][1], unsafe_calls)


@pytest.mark.parametrize(("payload", "how", "ext"), CASES)
def test_malicious_pickle_is_refused_even_with_a_factory(payload, how, ext, netmod, tmp_path, unsafe_calls):
    path, marker = malicious_file(tmp_path, payload, how, ext)
    options = {"factory": f"{netmod.__name__}:build", "kwargs": {}, "trust_checkpoint": False, "strict": True}
    assert_refused(path, marker, options, PAYLOADS[payload][1], unsafe_calls)


@pytest.mark.parametrize(("payload", "how", "ext"), CASES)
def test_sniffing_a_malicious_pickle_runs_nothing(payload, how, ext, tmp_path, unsafe_calls):
    path, marker = malicious_file(tmp_path, payload, how, ext)
    assert sniff_format(path) == "pickle"
    assert not marker.exists() and unsafe_calls == []


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "pickle protocol 4"])
@pytest.mark.parametrize("where", ["inside the state_dict", "next to the state_dict"])
def test_payload_inside_a_training_dict_is_refused(where, how, netmod, tmp_path, unsafe_calls):
    weights = fx.trained_net(netmod).state_dict()

    def wrap(evil):
        if where == "inside the state_dict":
            return {"state_dict": {**weights, "evil": evil}, "epoch": 3}
        return {"state_dict": dict(weights), "hyper_parameters": evil, "epoch": 3}

    path, marker = malicious_file(tmp_path, "exec", how, ".ckpt", wrap=wrap)
    options = {"factory": f"{netmod.__name__}:build", "kwargs": {}, "trust_checkpoint": False, "strict": True}
    assert_refused(path, marker, options, "builtins.exec", unsafe_calls)


def test_malicious_weights_in_a_huggingface_directory_are_refused(tmp_path, unsafe_calls):
    pytest.importorskip("transformers")
    directory = tmp_path / "hf-evil"
    fx.build_hf_dir(directory, id2label={0: "neg", 1: "pos"})
    (directory / "model.safetensors").unlink()
    marker = marker_path(tmp_path)
    torch.save({"bert.embeddings.word_embeddings.weight": fx.ExecPayload(marker)}, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="arbitrary code") as info:
        load_model(directory, role="baseline", options={}, device=CPU)
    assert str(directory / "pytorch_model.bin") in str(info.value)
    assert not marker.exists() and unsafe_calls == []


def test_whole_pickled_module_is_refused_without_trust_naming_its_class(netmod, tmp_path, unsafe_calls):
    path = tmp_path / "whole.pt"
    torch.save(fx.trained_net(netmod), path)
    with pytest.raises(CheckpointError, match="arbitrary code") as info:
        load_model(path, role="candidate", options={"trust_checkpoint": False}, device=CPU)
    assert f"{netmod.__name__}.TinyNet" in str(info.value)
    assert unsafe_calls == []


@pytest.mark.parametrize("how", ["torch.save", "pickle protocol 5"])
def test_trusted_whole_pickled_module_loads_with_the_original_outputs(how, netmod, tmp_path):
    net = fx.trained_net(netmod)
    x = fx.sample_input()
    with torch.inference_mode():
        expected = net(x)
    path = tmp_path / "whole.pt"
    save(net, path, how)
    loaded = load_model(path, role="candidate", options={"trust_checkpoint": True}, device=CPU)
    assert loaded.format == "pickle" and loaded.is_eager and not loaded.module.training
    assert loaded.input_names == ("x",)
    assert loaded.parameters == sum(p.numel() for p in net.parameters())
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), expected)


def test_training_dict_with_custom_objects_needs_trust(netmod, tmp_path, unsafe_calls):
    net = fx.trained_net(netmod)
    x = fx.sample_input()
    with torch.inference_mode():
        expected = net(x)
    path = tmp_path / "train.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": fx.Hyperparameters(lr=0.01, hidden=8)}, path)
    options = {"factory": f"{netmod.__name__}:build", "kwargs": {}, "strict": True}

    with pytest.raises(CheckpointError, match="Hyperparameters"):
        load_model(path, role="candidate", options={**options, "trust_checkpoint": False}, device=CPU)
    assert unsafe_calls == []

    loaded = load_model(path, role="candidate", options={**options, "trust_checkpoint": True}, device=CPU)
    assert loaded.format == "state_dict"
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), expected)


def test_trust_does_not_unpickle_a_plain_state_dict_unsafely(netmod, tmp_path, unsafe_calls):
    """trust_checkpoint allows unsafe loading when needed; a plain state_dict still goes through weights_only."""
    path = tmp_path / "weights.pt"
    torch.save(fx.trained_net(netmod).state_dict(), path)
    options = {"factory": f"{netmod.__name__}:build", "kwargs": {}, "trust_checkpoint": True, "strict": True}
    assert load_model(path, role="candidate", options=options, device=CPU).format == "state_dict"
    assert unsafe_calls == []
