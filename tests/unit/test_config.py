from __future__ import annotations

import re

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


@pytest.mark.parametrize("text,expected", [
    ("version: 1\n1: x\n", "gate.yaml: 1: unknown key (valid keys: checks, class_map, "),
    ("version: 1\n1: x\nzz: y\n", "gate.yaml: 1: unknown key (valid keys: checks, class_map, "),
    ("checks:\n  accuracy:\n    2: {max_drop: 0.1}\n    accuracy: {max_drop: 0.1}\n",
     "gate.yaml: checks.accuracy.2: unknown key (valid keys: "),
    ("version: 1\nnull: x\n", "gate.yaml: null: unknown key (valid keys: checks, class_map, "),
    ("model:\n  kwargs:\n    1: a\n    '1': b\n", "gate.yaml:4: invalid YAML: duplicate key '1'"),
    ("version: 1\n? [a, b]\n: 1\n", "gate.yaml:2: (top level): a key must be a string, found a list"),
    ("checks:\n  accuracy:\n    ? {a: 1}\n    : 2\n", "gate.yaml:3: checks.accuracy: a key must be a string, found a mapping"),
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", "gate.yaml:1: nested deeper than 64 levels"),
    ("x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "gate.yaml:1: nested deeper than 64 levels"),
])
def test_keys_that_are_not_strings_and_deep_nesting_are_one_config_error(tmp_path, text, expected):
    (tmp_path / "gate.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "gate.yaml")
    assert str(err.value).startswith(f"{tmp_path}/{expected}"), str(err.value)


def test_a_plain_yaml_key_is_the_text_written(tmp_path):
    """YAML 1.1 would read `01:` as octal 1 and `yes:` as True: a key is what the file says, so zero-padded class
    names keep their zeros and a `yes` class stays `yes`."""
    (tmp_path / "gate.yaml").write_text("model:\n  kwargs: {01: a, 010: b, 0x10: c, yes: d, 1.5: e, null: f, "
                                        "2020-01-01: g, 7: h}\n")
    kwargs = load_config(tmp_path / "gate.yaml").model["kwargs"]
    assert kwargs == {"01": "a", "010": "b", "0x10": "c", "yes": "d", "1.5": "e", "null": "f", "2020-01-01": "g",
                      "7": "h"}


def test_keys_that_are_not_strings_in_a_dict_are_one_config_error():
    """The Python API's dicts have no written text: None, bool and float keys are refused, naming the path."""
    for key, said in ((None, 'found null (quote it: "null")'), (True, 'found bool True (quote it: "true")'),
                      (1.5, 'found float 1.5 (quote it: "1.5")')):
        with pytest.raises(ConfigError, match=re.escape(f"model.kwargs: a key must be a string, {said}")):
            build_config({"model": {"kwargs": {key: 1}}}, source="api")


def test_integer_keys_are_read_as_strings(tmp_path):
    # latency's {batch size: ms} ceilings are written with bare numbers in YAML
    (tmp_path / "gate.yaml").write_text("checks:\n  latency:\n    max_p99_ms: {1: 5, 32: 40}\n")
    cfg = load_config(tmp_path / "gate.yaml")
    assert cfg.checks["latency"]["max_p99_ms"] == {"1": 5, "32": 40}


def test_deep_json_is_a_config_error(tmp_path):
    for depth in (100, 5000):     # below and beyond what json's decoder recurses into
        (tmp_path / "gate.json").write_text('{"x": ' + "[" * depth + "]" * depth + "}")
        with pytest.raises(ConfigError, match=r"gate\.json: .*nested deeper than 64 levels$"):
            load_config(tmp_path / "gate.json")


def test_nesting_up_to_the_limit_is_read(tmp_path):
    kwargs = "{a: " * 62 + "1" + "}" * 62        # model.kwargs.a.a... : 64 levels below the top
    (tmp_path / "gate.yaml").write_text(f"model:\n  kwargs: {kwargs}\n")
    cfg = load_config(tmp_path / "gate.yaml")
    node, depth = cfg.model["kwargs"], 2
    while isinstance(node, dict):
        node, depth = node["a"], depth + 1
    assert (node, depth) == (1, 64)


def test_a_dict_config_with_a_key_that_is_not_a_string_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^config: model\.3: unknown key \(valid keys: "):
        build_config({"model": {3: "x"}}, source="config")
    with pytest.raises(ConfigError, match=r"^config: model: a key must be a string, found null \(quote it: \"null\"\)"):
        build_config({"model": {None: "x"}}, source="config")


def test_error_messages_quote_a_long_value_in_part():
    with pytest.raises(ConfigError) as err:
        build_config({"class_names": ["a"] * 99_000}, source="gate.yaml")
    assert str(err.value) == "gate.yaml: class_names: ['a', 'a', 'a', 'a', 'a', ... (99000 entries)] has non-unique elements"
    with pytest.raises(ConfigError) as err:
        build_config({"device": "x" * 100_000}, source="gate.yaml")
    assert len(str(err.value)) < 400 and "(100002 characters)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_config({"seed": list(range(50_000))}, source="gate.yaml")
    assert len(str(err.value)) < 400 and "(50000 entries)" in str(err.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"seed": 2**40}, "options: seed: 1099511627776 is greater than the maximum of 4294967295"),
    ({"seed": 2**64}, "options: seed: 18446744073709551616 is greater than the maximum of 4294967295"),
    ({"threads": 10**9}, "options: threads: 1000000000 is greater than the maximum of 1024"),
    ({"config": {1: "x"}}, "config: 1: unknown key (valid keys: checks, class_map, class_names, data, decision, "
     "device, model, seed, task, threads, version)"),
    ({"config": {(1, 2): "x"}}, "config: (top level): a key must be a string, found tuple (1, 2)"),
    ({"config": {"decision": {"bootstrap_resamples": 10**12}}},
     "config: decision.bootstrap_resamples: 1000000000000 is greater than the maximum of 1000000"),
    ({"onnx": 123}, "onnx: expected a path to the .onnx file, found int 123"),
    ({"enable": ["x"] * 10_000}, "enable: expected one of sanity, accuracy, per_class, flips, scores, regression, "
     "multilabel, slices, cases, drift, onnx, latency, found 'x'"),
    ({"enable": 7}, "enable: expected a name or a list of names, found int 7"),
])
def test_the_python_api_raises_config_errors_for_out_of_range_settings(kwargs, message):
    import gate

    with pytest.raises(gate.GateError) as err:
        gate.check("cand.safetensors", "prod.safetensors", "eval.npz", **kwargs)
    assert isinstance(err.value, ConfigError) and str(err.value) == message


@pytest.mark.parametrize("name,text,expected", [
    ("gate.yaml", "seed: " + "1" * 5000 + "\n", "a number has more than 4300 digits (no setting needs one)"),
    ("gate.json", '{"seed": ' + "1" * 5000 + "}", "a number has more than 4300 digits (no setting needs one)"),
    ("gate.yaml", "seed: 2020-13-45\n", "cannot read a value: month must be in 1..12"),
])
def test_values_python_cannot_build_are_one_config_error(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / name)
    assert str(err.value) == f"{tmp_path / name}: {expected}"


@pytest.mark.parametrize("raw,expected", [
    ({"data": {"batch_size": 64.0}}, "gate.yaml: data.batch_size: expected integer, found float 64.0"),
    ({"seed": 1.0}, "gate.yaml: seed: expected integer, found float 1.0"),
    ({"checks": {"latency": {"enabled": True, "batch_sizes": [1, 8.0]}}},
     "gate.yaml: checks.latency.batch_sizes[1]: expected integer, found float 8.0"),
])
def test_an_integer_setting_written_as_a_float_is_refused_with_its_key_path(raw, expected):
    with pytest.raises(ConfigError) as err:
        build_config(raw, source="gate.yaml")
    assert str(err.value) == expected


def test_a_float_that_is_a_whole_number_is_fine_where_a_number_is_expected():
    cfg = build_config({"checks": {"accuracy": {"accuracy": {"max_drop": 1.0}}}, "decision": {"confidence": 0.95}})
    assert cfg.checks["accuracy"]["accuracy"]["max_drop"] == 1.0


def test_yaml_merge_keys_lay_a_mapping_under_the_keys_beside_them(tmp_path):
    (tmp_path / "gate.yaml").write_text(
        "checks:\n  accuracy:\n    accuracy: &rule {max_drop: 0.02, min: 0.5}\n"
        "    macro_f1:\n      <<: *rule\n      max_drop: 0.05\n")
    cfg = load_config(tmp_path / "gate.yaml")
    assert cfg.checks["accuracy"]["macro_f1"] == {"max_drop": 0.05, "min": 0.5}
    (tmp_path / "gate.yaml").write_text("seed: 1\n<<: {threads: 2}\nseed: 3\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_config(tmp_path / "gate.yaml")
