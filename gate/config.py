"""Load gate.yaml (or JSON), validate it against the shipped JSON Schema, apply defaults -> frozen GateConfig.

No torch here: `gate schema config` and config errors must answer fast.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gate.errors import ConfigError

# Forward order of the checks in the report; the runner feeds them in this order.
CHECK_NAMES = ("sanity", "accuracy", "per_class", "flips", "scores", "regression", "multilabel", "slices", "cases",
               "drift", "onnx", "latency")

#: The roles a checkpoint plays. Trust (loading a program or a pickle that runs code) is given per role, and only
#: on the command line or as an Action input: gate.yaml may come from the pull request it judges.
ROLES = ("baseline", "candidate")
TRUST_CHOICES = ("baseline", "candidate", "all")


def _read_schema_file(*parts: str) -> dict[str, Any]:
    node = resources.files("gate.schemas")
    for part in parts:
        node = node.joinpath(part)
    text = node.read_text(encoding="utf-8")
    return json.loads(text)


def config_schema() -> dict[str, Any]:
    """The full config schema: the core file with each check's fragment (schemas/checks/NAME.json) plugged in."""
    return copy.deepcopy(_composed_schema())


@functools.lru_cache(maxsize=1)
def _composed_schema() -> dict[str, Any]:
    schema = _read_schema_file("config.schema.json")
    props = schema["properties"]["checks"]["properties"]
    for name in CHECK_NAMES:
        props[name] = _read_schema_file("checks", f"{name}.json")
    return schema


def report_schema() -> dict[str, Any]:
    return _read_schema_file("report.schema.json")


def check_defaults() -> dict[str, dict[str, Any]]:
    schema = config_schema()
    return {
        name: copy.deepcopy(frag.get("default", {}))
        for name, frag in schema["properties"]["checks"]["properties"].items()
    }


def _section_defaults(schema: dict[str, Any], section: str) -> dict[str, Any]:
    props = schema["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in props.items() if "default" in sub}


@dataclass(frozen=True)
class GateConfig:
    """The effective configuration: user values over defaults. Sections are plain dicts (JSON-able)."""

    device: str = "cpu"
    seed: int = 0
    threads: int | None = None
    class_names: tuple[str, ...] | None = None
    class_map: dict[str, str] = field(default_factory=dict)   # candidate class name -> baseline class name
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None           # where the config came from, for messages
    trusted: frozenset[str] = frozenset()  # roles whose checkpoints may run code: from the command line only
    task: str = "auto"                  # auto | classification | multi_label | regression (gate.tasks resolves auto)
    explicit_checks: frozenset[str] = frozenset()  # checks enabled by name in gate.yaml or --enable, not by default
    task_source: str | None = None      # "--task" when the task came from the options (CLI, API), not the config

    def where(self, key_path: str) -> str:
        """'gate.yaml: key.path', for errors found after validation (they need the models or the data)."""
        return f"{self.source}: {key_path}" if self.source and self.source != "options" else key_path

    def check(self, name: str) -> dict[str, Any]:
        return self.checks[name]

    def enabled_checks(self, task: str = "classification") -> list[str]:
        """The checks that run for `task`: enabled explicitly, or by default and in the task's default list
        (gate.tasks.DEFAULT_CHECKS). The runner refuses an explicit one that does not support the task."""
        from gate.tasks import DEFAULT_CHECKS

        defaults = DEFAULT_CHECKS.get(task, ())
        return [name for name in CHECK_NAMES if self.checks.get(name, {}).get("enabled", False)
                and (name in self.explicit_checks or name in defaults)]

    def model_options(self, role: str) -> dict[str, Any]:
        """factory/kwargs/dtype/output for one role: the role's override wins over the shared `model` section."""
        merged = {k: v for k, v in self.model.items() if k not in ROLES}
        merged.update(self.model.get(role) or {})
        merged["trust_checkpoint"] = role in self.trusted
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "device": self.device,
            "seed": self.seed,
            "threads": self.threads,
            "class_names": list(self.class_names) if self.class_names else None,
            "class_map": dict(self.class_map),
            "model": self.model,
            "data": self.data,
            "decision": self.decision,
            "checks": self.checks,
            "trusted_roles": sorted(self.trusted),
            "explicit_checks": sorted(self.explicit_checks),
        }


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins; lists and scalars are replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Bounds on a config file, which may come from a pull request: its size, and the number of nodes YAML aliases
#: may expand to (a few hundred bytes of nested aliases otherwise expand to billions: the "billion laughs").
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000
#: How deep a config may nest (the schema's deepest key is 6 levels down; model.kwargs is the user's): deeper is
#: refused before Python's recursion limit is reached by the YAML composer, json or the validator.
MAX_CONFIG_DEPTH = 64


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse YAML or JSON into a dict, with errors that name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: the config file has {size} bytes; at most {MAX_CONFIG_BYTES} are read")
        text = p.read_text(encoding="utf-8-sig")  # editors on Windows write a byte-order mark
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read config file: {err}") from err
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{p}:{err.lineno}: invalid JSON: {err.msg}") from err
        except RecursionError as err:
            raise ConfigError(f"{p}: (top level): nested deeper than {MAX_CONFIG_DEPTH} levels") from err
        except ValueError as err:       # an integer beyond Python's int_max_str_digits, a date like 2020-13-01
            raise ConfigError(f"{p}: {_unreadable_value(err)}") from err
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_strict_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except ValueError as err:       # an integer beyond Python's int_max_str_digits, a date like 2020-13-01
            raise ConfigError(f"{p}: {_unreadable_value(err)}") from err
        except _TooDeep as err:
            raise ConfigError(f"{p}:{err.mark.line + 1}: nested deeper than {MAX_CONFIG_DEPTH} levels") from err
        except _BadKey as err:
            kind = "list" if isinstance(err.node, yaml.SequenceNode) else "mapping"
            where = f"{_key_path(err.path)}: " if err.path is not None else ""
            raise ConfigError(f"{p}:{err.node.start_mark.line + 1}: {where}a key must be a string, found a {kind}"
                              ) from err
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{where}: invalid YAML: {problem}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level, found {type(data).__name__}")
    data = check_shape(data, source=str(p))
    _reject_non_finite(data, source=str(p))
    return data


def _unreadable_value(err: ValueError) -> str:
    import sys

    if "digits" in str(err):
        return f"a number has more than {sys.get_int_max_str_digits()} digits (no setting needs one)"
    return f"cannot read a value: {short_repr(str(err))[1:-1]}"


#: The tags YAML resolves a plain scalar to besides str: as a mapping key each is read as the text written.
_RESOLVED_KEY_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null", "timestamp"))


def check_shape(data: Any, *, source: str) -> Any:
    """`data` with integer keys as strings ({1: 5} is batch size "1"), once every other key is known to be a
    string and nothing nests deeper than MAX_CONFIG_DEPTH: before anything walks the settings recursively.

    The check is iterative, so a 5,000-level document is refused here rather than by a RecursionError; the error
    names the key path: `gate.yaml: checks.accuracy: a key must be a string, found null (quote it: "null")`."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: {_key_path(path[:MAX_CONFIG_DEPTH])}: nested deeper than "
                              f"{MAX_CONFIG_DEPTH} levels")
        if isinstance(node, dict):
            names: set[str] = set()
            for key, value in node.items():
                if not isinstance(key, str) and (type(key) is not int):
                    raise ConfigError(f"{source}: {_key_path(path)}: a key must be a string, found "
                                      f"{short_repr(key, kind=True)}{_quote_hint(key)}")
                if str(key) in names:
                    raise ConfigError(f"{source}: {_key_path((*path, str(key)))}: key given twice (as a number "
                                      "and as a string)")
                names.add(str(key))
                stack.append((value, (*path, str(key))))
        elif isinstance(node, (list, tuple)):
            stack.extend((value, (*path, i)) for i, value in enumerate(node))
    return _string_keys(data)


def _string_keys(node: Any) -> Any:
    """Recursive, but only after check_shape bounded the depth."""
    if isinstance(node, dict):
        if all(type(key) is str for key in node):
            return {key: _string_keys(value) for key, value in node.items()}
        return {str(key): _string_keys(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_string_keys(value) for value in node)
    return node


def _quote_hint(key: Any) -> str:
    if key is None or isinstance(key, (bool, int, float)):
        text = "null" if key is None else str(key).lower() if isinstance(key, bool) else str(key)
        return f' (quote it: "{text}")'
    return ""


#: How much of a value an error message quotes: a 99,000-entry class_names list is named, not echoed.
MAX_QUOTED_CHARS = 200
MAX_QUOTED_ITEMS = 5


def short_repr(value: Any, *, kind: bool = False) -> str:
    """repr(value), cut to the first MAX_QUOTED_ITEMS entries of a list or mapping and MAX_QUOTED_CHARS characters;
    with `kind`, the type's name first ("int 2", "list ['a', 'b']")."""
    if isinstance(value, (list, tuple)) and len(value) > MAX_QUOTED_ITEMS:
        head = ", ".join(short_repr(v) for v in value[:MAX_QUOTED_ITEMS])
        text = f"[{head}, ... ({len(value)} entries)]"
    elif isinstance(value, dict) and len(value) > MAX_QUOTED_ITEMS:
        head = ", ".join(f"{short_repr(k)}: {short_repr(v)}" for k, v in list(value.items())[:MAX_QUOTED_ITEMS])
        text = f"{{{head}, ... ({len(value)} entries)}}"
    else:
        text = repr(value)
    if len(text) > MAX_QUOTED_CHARS:
        text = f"{text[:MAX_QUOTED_CHARS]}... ({len(text)} characters)"
    if value is None:
        return "null" if kind else text
    return f"{type(value).__name__} {text}" if kind else text


def _strict_yaml_loader() -> type:
    """yaml.SafeLoader that refuses a key given twice in one mapping (the last one would silently win)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            """The composer recurses once per level: refuse a document nested deeper than MAX_CONFIG_DEPTH."""
            self.depth += 1
            try:
                if self.depth > MAX_CONFIG_DEPTH + 1:
                    raise _TooDeep(self.peek_event().start_mark)
                return yaml.SafeLoader.compose_node(self, parent, index)
            finally:
                self.depth -= 1

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):   # a list or mapping as a key: not hashable, never valid
                raise _BadKey(key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden here
                continue
            if key_node.style is None and key_node.tag in _RESOLVED_KEY_TAGS:
                # a plain key is the text written: `01:` stays "01" (YAML 1.1 would read octal 1), `yes:` stays "yes"
                key_node.tag = "tag:yaml.org,2002:str"
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the first one would be silently ignored)", key_node.start_mark
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    def construct_document(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        _check_keys(node, yaml)
        _check_expansion(node, yaml)
        return yaml.SafeLoader.construct_document(loader, node)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    StrictLoader.construct_document = construct_document  # type: ignore[method-assign]
    return StrictLoader


class _TooDeep(Exception):
    """Raised inside the YAML composer; read_config_file turns it into a ConfigError naming the file and line."""

    def __init__(self, mark: Any) -> None:
        super().__init__(mark)
        self.mark = mark


class _BadKey(Exception):
    """A mapping key that is a list or a mapping (`? [a, b]`); read_config_file names its key path and line."""

    def __init__(self, node: Any, path: tuple[Any, ...] | None = None) -> None:
        super().__init__(node)
        self.node = node
        self.path = path


def _check_keys(root: Any, yaml: Any) -> None:
    """Before construction hashes them: a list or mapping used as a key, with the key path of the first one.

    Iterative and once per distinct node (aliases share theirs), so neither depth nor aliases make it costly."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _BadKey(key_node, path)
                stack.append((value_node, (*path, str(key_node.value))))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))


def _check_expansion(root: Any, yaml: Any) -> None:
    """Refuse a document whose aliases expand to more than MAX_CONFIG_NODES nodes, or refer to themselves.

    Aliases share one composed node, so the expanded size is counted once per distinct node (memoised): linear in
    the file, however deep the nesting."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise yaml.constructor.ConstructorError(None, None, "an alias refers to a node that contains it",
                                                    node.start_mark)
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        open_nodes.discard(key)
        sizes[key] = total
        if total > MAX_CONFIG_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases expand to more than {MAX_CONFIG_NODES} values (a config needs far fewer)",
                node.start_mark)
        return total

    size(root)


def _reject_non_finite(node: Any, *, source: str, path: tuple[Any, ...] = ()) -> None:
    """NaN and infinite thresholds slip past JSON Schema's minimum/maximum; use null to switch a rule off."""
    if isinstance(node, float) and (math.isnan(node) or math.isinf(node)):
        raise ConfigError(f"{source}: {_key_path(path)}: expected a finite number, found {node} (use null to switch a rule off)")
    if isinstance(node, dict):
        for key, value in node.items():
            _reject_non_finite(value, source=source, path=(*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _reject_non_finite(value, source=source, path=(*path, i))


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _describe(err: Any, root: dict[str, Any]) -> str:
    where = _key_path(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(_resolve(err.schema, root).get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        key = extra[0]
        path = f"{where}.{key}" if err.absolute_path else key
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else f" (valid keys: {', '.join(allowed)})"
        return f"{path}: unknown key{hint}"
    if err.validator == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{where}: expected {expected}, found {short_repr(err.instance, kind=True)}"
    if err.validator == "pattern" and ":" in str(err.validator_value):
        return f"{where}: expected package.module:callable, found {short_repr(err.instance)}"
    if err.validator == "enum":
        return f"{where}: expected one of {', '.join(map(str, err.validator_value))}, found {short_repr(err.instance)}"
    # jsonschema's messages quote the whole value ("[...] has non-unique elements"): quote the first entries only
    return f"{where}: {err.message.replace(repr(err.instance), short_repr(err.instance))}"


def validate_config(data: dict[str, Any], *, source: str = "config") -> None:
    """Raise ConfigError naming the key path of the first problem (deepest first, then by path).

    An integer setting must be written as one: JSON Schema counts 64.0 as an integer, the code that reads
    `batch_size` does not, so the error is here, with the file and key path, not later without them."""
    from gate.schema_subset import Unsupported, is_valid

    try:
        if not _has_integral_float(data) and is_valid(data, _composed_schema()):
            return                      # valid: jsonschema (0.1 s to import) is needed only to say what is wrong
    except Unsupported:
        pass
    import jsonschema

    schema = config_schema()
    validator = _strict_validator_class()(schema)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    raise ConfigError(f"{source}: {_describe(best, schema)}")


def _has_integral_float(data: Any) -> bool:
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and node.is_integer():
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


@functools.lru_cache(maxsize=1)
def _strict_validator_class() -> Any:
    """Draft 2020-12 with `integer` meaning a Python int (not 64.0, not True)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", lambda _checker, x: type(x) is int)
    return jsonschema.validators.extend(base, type_checker=checker)


def trusted_roles(choices: Any) -> frozenset[str]:
    """--trust-checkpoint values (baseline, candidate, all; repeatable) as the set of trusted roles."""
    out: set[str] = set()
    for choice in choices or ():
        if choice not in TRUST_CHOICES:
            raise ConfigError(f"--trust-checkpoint: expected one of {', '.join(TRUST_CHOICES)}, found {short_repr(choice)}")
        out.update(ROLES if choice == "all" else (choice,))
    return frozenset(out)


def _refuse_trust_from_file(raw: dict[str, Any], *, source: str) -> None:
    """Trust runs code from a checkpoint; a config file may come from the pull request, so it cannot give it."""
    model = raw.get("model")
    if not isinstance(model, dict):
        return
    for path, section in (("model", model), *((f"model.{r}", model.get(r)) for r in ROLES)):
        if isinstance(section, dict) and "trust_checkpoint" in section:
            raise ConfigError(
                f"{source}: {path}.trust_checkpoint: trust cannot be given by a config file (it may come from "
                "the pull request it judges); pass --trust-checkpoint baseline|candidate|all on the command "
                "line, or the Action's trust-checkpoint input, for checkpoints you built yourself"
            )


def build_config(raw: dict[str, Any] | None = None, *, source: str | None = None,
                 trusted: frozenset[str] = frozenset()) -> GateConfig:
    """Validate user settings, then lay them over the defaults. `trusted` comes from the command line only."""
    raw = raw or {}
    raw = check_shape(raw, source=source or "config")
    _reject_non_finite(raw, source=source or "config")
    _refuse_trust_from_file(raw, source=source or "config")
    validate_config(raw, source=source or "config")
    schema = config_schema()
    checks = deep_merge(check_defaults(), raw.get("checks", {}))
    class_names = raw.get("class_names")
    return GateConfig(
        device=raw.get("device", "cpu"),
        seed=raw.get("seed", 0),
        threads=raw.get("threads"),
        class_names=tuple(class_names) if class_names else None,
        class_map=dict(raw.get("class_map") or {}),
        model=deep_merge(_section_defaults(schema, "model"), raw.get("model", {})),
        data=deep_merge(_section_defaults(schema, "data"), raw.get("data", {})),
        decision=deep_merge(_section_defaults(schema, "decision"), raw.get("decision", {})),
        checks=checks,
        source=source,
        trusted=frozenset(trusted),
        task=raw.get("task", "auto"),
        explicit_checks=frozenset(name for name, section in (raw.get("checks") or {}).items()
                                  if isinstance(section, dict) and section.get("enabled") is True),
    )


def load_config(path: str | Path | None, *, overrides: dict[str, Any] | None = None,
                trusted: frozenset[str] = frozenset()) -> GateConfig:
    """Read the config file (if any), lay CLI overrides on top, validate, apply defaults."""
    raw = read_config_file(path) if path else {}
    if path:
        _refuse_trust_from_file(raw, source=str(path))
    if overrides:
        raw = deep_merge(raw, overrides)
    return build_config(raw, source=str(path) if path else "options", trusted=trusted)
