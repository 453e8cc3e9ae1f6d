"""gate.schema_subset against jsonschema (the oracle): the same answer on every shipped config and report, and on
thousands of mutations of them (wrong types, out-of-range numbers, unknown or missing keys, bad enum values)."""
from __future__ import annotations

import copy
import datetime
import random
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from gate.config import check_defaults, config_schema, read_config_file, report_schema, validate_config
from gate.errors import ConfigError
from gate.schema_subset import Unsupported, is_valid

ROOT = Path(__file__).resolve().parents[2]

ODD_VALUES = [None, True, False, 0, 1, -1, 2, 1.0, 0.5, -0.5, 1.5, 1e9, -1e9, "", "x", "cpu", "pkg.mod:fn", "fp16",
              [], [1], ["a", "a"], ["a", "b"], [0.1, 0.2], {}, {"zz": 1}, {"enabled": True}, {"max_drop": 0.1}]


def _shipped_configs() -> list[dict[str, Any]]:
    found = [{}, {"checks": check_defaults()}]
    for path in sorted(ROOT.glob("examples/*/gate.yaml")):
        found.append(read_config_file(path))
    return found


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _schema_keys(schema: dict[str, Any]) -> list[str]:
    keys: set[str] = set()
    for path in _paths(schema):
        if len(path) >= 2 and path[-2] == "properties" and isinstance(path[-1], str):
            keys.add(path[-1])
    return sorted(keys)


def _mutate(instance: Any, rng: random.Random, keys: list[str]) -> Any:
    out = copy.deepcopy(instance)
    for _ in range(rng.choice([1, 1, 2, 3])):
        path = rng.choice(_paths(out))
        parent, last = (None, None) if not path else (_get(out, path[:-1]), path[-1])
        target = _get(out, path)
        move = rng.random()
        if move < 0.45 and parent is not None:
            parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif move < 0.6 and isinstance(parent, dict):
            del parent[last]
        elif move < 0.85 and isinstance(target, dict):
            target[rng.choice(keys)] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif isinstance(target, list) and target:
            target.append(copy.deepcopy(rng.choice(target)))
        elif isinstance(target, dict):
            target[rng.choice(keys) + "x"] = 1
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _agree(instances: list[Any], schema: dict[str, Any]) -> tuple[int, int]:
    oracle = jsonschema.Draft202012Validator(schema)
    valid = invalid = 0
    for instance in instances:
        try:
            fast = is_valid(instance, schema)
        except Unsupported:
            continue
        assert fast == oracle.is_valid(instance), instance
        valid += fast
        invalid += not fast
    return valid, invalid


def test_every_shipped_config_is_valid_here_and_for_jsonschema():
    schema = config_schema()
    for raw in _shipped_configs():
        assert is_valid(raw, schema)
        assert jsonschema.Draft202012Validator(schema).is_valid(raw)


def test_mutated_configs_get_jsonschemas_answer():
    schema = config_schema()
    keys = _schema_keys(schema)
    rng = random.Random(0)
    bases = _shipped_configs()
    instances = [_mutate(rng.choice(bases), rng, keys) for _ in range(500)]
    valid, invalid = _agree(instances, schema)
    assert valid > 50 and invalid > 200      # both answers exercised, not one of them only


def test_mutated_reports_get_jsonschemas_answer():
    from gate.report.json_report import report_dict
    from tests.unit.report_fixtures import html_report

    schema = report_schema()
    base = report_dict(html_report())
    assert is_valid(base, schema)
    keys = _schema_keys(schema)
    rng = random.Random(1)
    valid, invalid = _agree([_mutate(base, rng, keys) for _ in range(60)], schema)
    assert valid > 10 and invalid > 10


@pytest.mark.parametrize("value", [np.float64(0.5), np.int64(3), datetime.date(2024, 1, 1), float("nan"), (1, 2)])
def test_values_that_are_not_plain_json_are_left_to_jsonschema(value):
    with pytest.raises(Unsupported):
        is_valid({"seed": value}, config_schema())


def test_keywords_it_does_not_know_are_left_to_jsonschema():
    with pytest.raises(Unsupported):
        is_valid("abc", {"maxLength": 2})
    with pytest.raises(Unsupported):
        is_valid(1, {"$ref": "other.json#/x"})


def test_a_deep_value_is_left_to_jsonschema_not_a_recursion_error():
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(Unsupported):
        is_valid(deep, {"items": {"$ref": "#"}})


def test_an_invalid_config_still_gets_jsonschemas_message():
    with pytest.raises(ConfigError, match=r"checks\.accuracy\.accuracy\.max_dorp: unknown key \(did you mean max_drop\?\)"):
        validate_config({"checks": {"accuracy": {"accuracy": {"max_dorp": 0.1}}}})
    with pytest.raises(ConfigError, match="seed"):
        validate_config(yaml.safe_load("seed: 2024-01-01"))
