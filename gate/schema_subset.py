"""Whether a value fits one of the shipped schemas, without importing jsonschema (about 0.1 s, a twentieth of a run).

Only the keywords the shipped schemas use are implemented, as JSON Schema 2020-12 defines them and with jsonschema's
types (a boolean is not a number, 1.0 is an integer, an array is a list, an object a dict). Anything else (another
keyword, a remote `$ref`, a value that is not plain JSON: a date from YAML, a numpy scalar from the API) raises
`Unsupported`. Callers take only "valid" from here: on False or Unsupported they ask jsonschema, whose error message
is the one users see, so this can make a valid run faster and nothing else.
tests/unit/test_schema_subset.py holds it to jsonschema's answers on every shipped config and on mutated ones.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: Keywords that never make a value invalid (annotations and containers of definitions); `then` / `else` are read
#: by `if`.
_IGNORED = frozenset({"description", "default", "title", "$schema", "$id", "$comment", "$defs", "examples",
                      "then", "else"})


class Unsupported(Exception):
    """The schema or the value is outside what this module decides; ask jsonschema."""


def is_valid(instance: Any, schema: dict[str, Any] | bool, root: dict[str, Any] | None = None) -> bool:
    """True when `instance` is valid against `schema` (`$ref`s resolved in `root`, by default the schema itself)."""
    try:
        return _valid(instance, schema, schema if root is None else root)
    except RecursionError as err:
        raise Unsupported("nested too deep") from err


def _valid(instance: Any, schema: Any, root: dict[str, Any]) -> bool:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise Unsupported(f"schema {schema!r}")
    _check_plain(instance)
    for key, value in schema.items():
        if key in _IGNORED:
            continue
        keyword = _KEYWORDS.get(key)
        if keyword is None:
            raise Unsupported(key)
        if not keyword(instance, value, schema, root):
            return False
    return True


def _check_plain(instance: Any) -> None:
    if type(instance) is float and instance != instance:
        raise Unsupported("NaN")            # equal to nothing, itself included: leave it to jsonschema
    if instance is None or type(instance) in (bool, int, float, str, list, dict):
        return
    raise Unsupported(f"a {type(instance).__name__} is not a plain JSON value")


def _is_number(x: Any) -> bool:
    return type(x) in (int, float)


def _is_type(x: Any, name: str) -> bool:
    if name == "object":
        return type(x) is dict
    if name == "array":
        return type(x) is list
    if name == "string":
        return type(x) is str
    if name == "boolean":
        return type(x) is bool
    if name == "null":
        return x is None
    if name == "number":
        return _is_number(x)
    if name == "integer":
        return type(x) is int or (type(x) is float and x.is_integer())
    raise Unsupported(f"type {name!r}")


def _equal(a: Any, b: Any) -> bool:
    """JSON equality (jsonschema's): True is not 1, 1 is 1.0, lists by items, objects by keys and values."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    if type(a) is str and type(b) is str:
        return a == b
    return False


def _type(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return any(_is_type(x, t) for t in (value if isinstance(value, list) else [value]))


def _enum(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return any(_equal(x, option) for option in value)


def _const(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return _equal(x, value)


def _minimum(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return not _is_number(x) or x >= value


def _maximum(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return not _is_number(x) or x <= value


def _exclusive_minimum(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return not _is_number(x) or x > value


def _exclusive_maximum(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return not _is_number(x) or x < value


def _min_length(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not str or len(x) >= value


def _pattern(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not str or re.search(value, x) is not None


def _items(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    if not isinstance(value, (dict, bool)):
        raise Unsupported("items as a list")
    return type(x) is not list or all(_valid(item, value, root) for item in x)


def _min_items(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not list or len(x) >= value


def _max_items(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not list or len(x) <= value


def _unique_items(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    if type(x) is not list or not value:
        return True
    # Python's == is coarser than JSON's (True == 1), so items it tells apart are distinct in JSON too.
    return all(x[i] != x[j] for i in range(len(x)) for j in range(i))


def _required(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not dict or all(key in x for key in value)


def _properties(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return type(x) is not dict or all(_valid(x[key], sub, root) for key, sub in value.items() if key in x)


def _additional(x: Any, value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    if type(x) is not dict:
        return True
    known = schema.get("properties", {})
    return all(_valid(x[key], value, root) for key in x if key not in known)


def _min_properties(x: Any, value: Any, _s: dict[str, Any], _r: dict[str, Any]) -> bool:
    return type(x) is not dict or len(x) >= value


def _property_names(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return type(x) is not dict or all(_valid(key, value, root) for key in x)


def _one_of(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return sum(1 for sub in value if _valid(x, sub, root)) == 1


def _any_of(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return any(_valid(x, sub, root) for sub in value)


def _not(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return not _valid(x, value, root)


def _all_of(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    return all(_valid(x, sub, root) for sub in value)


def _if(x: Any, value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    branch = "then" if _valid(x, value, root) else "else"
    return branch not in schema or _valid(x, schema[branch], root)


def _ref(x: Any, value: Any, _s: dict[str, Any], root: dict[str, Any]) -> bool:
    if not isinstance(value, str) or not value.startswith("#/") or "~" in value or "%" in value:
        raise Unsupported(f"$ref {value!r}")
    node: Any = root
    for part in value[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            raise Unsupported(f"$ref {value!r}")
        node = node[part]
    return _valid(x, node, root)


_KEYWORDS: dict[str, Callable[[Any, Any, dict[str, Any], dict[str, Any]], bool]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "exclusiveMaximum": _exclusive_maximum,
    "minLength": _min_length,
    "pattern": _pattern,
    "items": _items,
    "minItems": _min_items,
    "maxItems": _max_items,
    "uniqueItems": _unique_items,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional,
    "minProperties": _min_properties,
    "propertyNames": _property_names,
    "oneOf": _one_of,
    "allOf": _all_of,
    "anyOf": _any_of,
    "not": _not,
    "if": _if,
    "$ref": _ref,
}
