from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gate.config import build_config, check_defaults, config_schema, load_config
from gate.errors import ConfigError


def test_defaults_make_a_useful_gate():
    cfg = build_config({})
    assert cfg.enabled_checks() == ["sanity", "accuracy", "per_class", "flips"]
    assert cfg.checks["accuracy"]["accuracy"]["max_drop"] == 0.01
    assert cfg.decision["mode"] == "significant-and-beyond"
    assert cfg.data["batch_size"] == 64


def test_every_default_validates_against_its_own_schema():
    schema = config_schema()
    jsonschema.Draft202012Validator(schema).validate({"checks": check_defaults()})


def test_user_values_override_defaults_without_losing_siblings():
    cfg = build_config({"checks": {"accuracy": {"accuracy": {"min": 0.8}}}})
    assert cfg.checks["accuracy"]["accuracy"] == {"max_drop": 0.01, "min": 0.8}
    assert cfg.checks["accuracy"]["macro_f1"] == {"max_drop": 0.02}


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({"checks": {"accuracy": {"accuracy": {"max_dorp": 0.1}}}}, "checks.accuracy.accuracy.max_dorp: unknown key (did you mean max_drop?)"),
        ({"modle": {}}, "modle: unknown key (did you mean model?)"),
        ({"data": {"batch_size": "many"}}, "data.batch_size: expected integer"),
        ({"device": "tpu"}, "device: expected one of cpu, cuda, auto"),
        ({"checks": {"per_class": {"recall": {"max_drop": 2}}}}, "checks.per_class.recall.max_drop"),
        ({"model": {"factory": "not a callable"}}, "model.factory"),
    ],
)
def test_bad_config_names_the_key_path(raw, expected):
    with pytest.raises(ConfigError) as err:
        build_config(raw, source="gate.yaml")
    assert str(err.value).startswith("gate.yaml: ")
    assert expected in str(err.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    p = tmp_path / "gate.yaml"
    p.write_text("checks:\n  accuracy:\n    accuracy: {max_drop: 0.1\n")
    with pytest.raises(ConfigError, match=r"gate.yaml:\d+: invalid YAML"):
        load_config(p)


def test_json_config_and_overrides(tmp_path: Path):
    p = tmp_path / "gate.json"
    p.write_text(json.dumps({"device": "cpu", "data": {"batch_size": 8}}))
    cfg = load_config(p, overrides={"data": {"batch_size": 16}, "checks": {"drift": {"enabled": True}}})
    assert cfg.data["batch_size"] == 16
    assert "drift" in cfg.enabled_checks()


def test_top_level_must_be_a_mapping(tmp_path: Path):
    p = tmp_path / "gate.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)


def test_role_overrides_for_models():
    cfg = build_config({"model": {"factory": "a.b:c", "candidate": {"factory": "x.y:z", "kwargs": {"width": 2}}}})
    assert cfg.model_options("baseline")["factory"] == "a.b:c"
    assert cfg.model_options("candidate")["factory"] == "x.y:z"
    assert cfg.model_options("candidate")["kwargs"] == {"width": 2}


@pytest.mark.parametrize("raw,key,maximum", [
    ({"seed": 2**32}, "seed", 2**32 - 1),
    ({"seed": 2**70}, "seed", 2**32 - 1),
    ({"threads": 10**9}, "threads", 1024),
    ({"threads": 2**63 - 1}, "threads", 1024),
    ({"decision": {"bootstrap_resamples": 10**12}}, "decision.bootstrap_resamples", 1_000_000),
    ({"data": {"batch_size": 2**21}}, "data.batch_size", 2**20),
    ({"data": {"limit": 2**64}}, "data.limit", 2**53 - 1),
    ({"checks": {"latency": {"batch_sizes": [1, 10**6]}}}, "checks.latency.batch_sizes[1]", 65536),
    ({"checks": {"latency": {"threads": 4096}}}, "checks.latency.threads", 1024),
    ({"checks": {"latency": {"max_rounds": 10**7}}}, "checks.latency.max_rounds", 1_000_000),
    ({"checks": {"onnx": {"opset": 1000}}}, "checks.onnx.opset", 99),
    ({"checks": {"scores": {"max_samples": 10**9}}}, "checks.scores.max_samples", 100_000_000),
    ({"checks": {"sanity": {"samples": 10**6}}}, "checks.sanity.samples", 100_000),
])
def test_integers_that_reach_numpy_or_torch_are_bounded(raw, key, maximum):
    with pytest.raises(ConfigError) as err:
        build_config(raw, source="gate.yaml")
    assert str(err.value).startswith(f"gate.yaml: {key}: ") and f"maximum of {maximum}" in str(err.value)
    at_most = json.loads(json.dumps(raw).replace(str(_first_int(raw)), str(maximum)))
    build_config(at_most, source="gate.yaml")      # the bound itself is valid


def _first_int(node):
    if isinstance(node, dict):
        node = next(iter(node.values()))
        return _first_int(node)
    if isinstance(node, list):
        return _first_int(node[-1])
    return node


def test_every_integer_in_the_schema_has_an_upper_bound():
    unbounded = []

    def walk(node, path):
        if isinstance(node, dict):
            kind = node.get("type")
            if (kind == "integer" or (isinstance(kind, list) and "integer" in kind)) and "maximum" not in node:
                unbounded.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(config_schema(), "")
    assert unbounded == []
