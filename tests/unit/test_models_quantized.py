"""int8 checkpoints load as data, without trust: torchao's quantize_ (the current path) and torch.ao's dynamic
quantization (deprecated in torch 2.13, still shipped). The loaded model computes what the quantized model does."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from gate.errors import CheckpointError
from gate.models import load_model
from tests.security.payloads import MarkerPayload
from tests.unit import model_fixtures as fx

CPU = torch.device("cpu")


def _torchao():
    from gate.models.pickles import register_torchao_safe_globals

    assert register_torchao_safe_globals(), "torchao (the quant extra) is installed by .ci/install.sh"
    import torchao.quantization as quantization

    return quantization


def _dynamic_int8(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization and its qint8 tensors are deprecated in torch 2.13
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear}, dtype=torch.qint8)


QUANT_SOURCE = '''
import warnings
import torch
from {netmod} import build


def build_dynamic_int8(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(build(**kwargs).eval(), {{torch.nn.Linear}}, dtype=torch.qint8)
'''


def test_torchao_int8_state_dict_loads_into_the_float_factory_without_trust(netmod, tmp_path):
    quantization = _torchao()
    net = fx.trained_net(netmod)
    quantized = copy.deepcopy(net)
    quantization.quantize_(quantized, quantization.Int8DynamicActivationInt8WeightConfig())
    path = tmp_path / "int8.pt"
    torch.save(quantized.state_dict(), path)
    loaded = load_model(path, role="candidate", options={"factory": f"{netmod.__name__}:build",
                                                         "trust_checkpoint": False}, device=CPU)
    x = fx.sample_input(rows=16)
    with torch.inference_mode():
        got, want, full = loaded.module(x), quantized(x), net(x)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, full, atol=1e-6), "the int8 model must not be evaluated as the float one"
    assert loaded.format == "state_dict"
    assert type(loaded.module.fc.weight).__name__ == "Int8Tensor"
    assert loaded.parameters == sum(p.numel() for p in net.parameters())


def test_torch_ao_dynamic_int8_loads_into_a_quantized_factory_without_trust(netmod, tmp_path):
    net = fx.trained_net(netmod)
    quantized = _dynamic_int8(net)
    path = tmp_path / "dynamic.pt"
    torch.save(quantized.state_dict(), path)
    (tmp_path / "qfactory.py").write_text(QUANT_SOURCE.format(netmod=netmod.__name__), encoding="utf-8")
    loaded = load_model(path, role="candidate", options={"factory": "qfactory:build_dynamic_int8",
                                                         "trust_checkpoint": False}, device=CPU)
    x = fx.sample_input(rows=16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), quantized(x))
    assert loaded.parameters == sum(p.numel() for p in net.parameters())   # packed int8 weights counted


def test_torch_ao_dynamic_int8_into_a_float_factory_says_what_the_factory_must_return(netmod, tmp_path):
    path = tmp_path / "dynamic.pt"
    torch.save(_dynamic_int8(fx.trained_net(netmod)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"torch\.ao quantized weights .*must return the quantized module"):
        load_model(path, role="candidate", options={"factory": f"{netmod.__name__}:build"}, device=CPU)


def test_torchao_names_do_not_open_the_door_to_other_globals(netmod, tmp_path):
    quantization = _torchao()
    quantized = fx.trained_net(netmod)
    quantization.quantize_(quantized, quantization.Int8DynamicActivationInt8WeightConfig())
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pt"
    torch.save({**quantized.state_dict(), "evil": MarkerPayload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load.*(io|builtins)\.open"):
        load_model(path, role="candidate", options={"factory": f"{netmod.__name__}:build"}, device=CPU)
    assert not marker.exists()


def test_an_int8_candidate_is_gated_through_the_cli_with_a_clean_stderr(world, tmp_path):
    """In a fresh process (torchao not yet imported), so its import-time logging would show if it leaked."""
    import subprocess
    import sys
    from pathlib import Path

    from tests import tiny_models as tm

    quantization = _torchao()
    candidate = tm.good_candidate()
    quantization.quantize_(candidate, quantization.Int8DynamicActivationInt8WeightConfig())
    path = tmp_path / "int8.pt"
    torch.save(candidate.state_dict(), path)
    done = subprocess.run([sys.executable, "-m", "gate", "check", str(path), "--baseline", str(world.baseline),
                           "--data", str(world.data), "--model-factory", "tests.tiny_models:build_mlp", "-q"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1) and done.stderr == "", done.stderr   # decided; nothing from torchao
    assert done.stdout.startswith("verdict: ")
