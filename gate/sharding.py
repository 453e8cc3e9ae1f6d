"""Sharded evaluation: which batches a shard reads, a run's mergeable state as a file, and the merge of shards.

One state protocol serves both ways of sharding:
- torch.distributed (`torchrun ... -m gate check`): every rank evaluates its shard, the states are all-gathered as
  bytes (gloo on CPU, NCCL on GPU), rank 0 merges them and decides;
- a CI matrix (`gate check --shard I/N --state FILE` per job, then `gate merge FILE...`).

A state file may come from another job, so it is data: a safetensors file (no pickle), its size bounded, its
header JSON checked field by field, a SHA-256 of its arrays checked before anything is read from them.
Arrays merge key by key: a key whose name (after its check's prefix) starts with `rows.` holds per-sample rows
(first axis = samples); the rows of every shard are concatenated and put in global sample order by the group's
int64 `rows.index` (the sample's index in the data). Every other key is summed. So a merged state is the state
the single-process run would have had: exact for counts and rows, within float rounding for sums.
What a "rank0" check measured after the pass (latency's timings) is not merged: only the `--shard 1/N` file carries
it (`RunState.measured`: arrays under `measured.<check>.`, facts in the header, both under the SHA-256), and the
merge hands it on whole.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gate
from gate.errors import ConfigError, DataError, GateError

STATE_FORMAT = "gate-state"
STATE_VERSION = 1
MAX_STATE_BYTES = 512 * 1024 * 1024          # sums over classes and layers, and the few per-sample rows
_META_KEY = "gate_state"
_MEASURED = "measured."       # array keys of a check's measured_state(): `measured.<check>.<key>`
_DTYPES = (np.int64, np.float64)


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`: it owns every count-th batch from its index (strided by batch), so a
    given rank and world size always read the same batches, whatever the machine."""

    index: int
    count: int

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.count == self.index

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"


#: The most shards a run may be split into (a CI matrix or torchrun world far beyond any real one): a state file's
#: shard count is bounded by it before the merge lists the shards.
MAX_SHARDS = 65536


def parse_shard(text: str) -> Shard:
    """'I/N' with 1 <= I <= N <= MAX_SHARDS, as CI matrices count: `--shard 2/4` is the second of four."""
    head, sep, tail = str(text).partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count or count > MAX_SHARDS:
        raise ConfigError(f"--shard: expected I/N with 1 <= I <= N <= {MAX_SHARDS} (e.g. 1/4), found {text!r}")
    return Shard(index - 1, count)


def distributed_shard() -> Shard | None:
    """This process's shard under torchrun (RANK / WORLD_SIZE, the standard rendezvous variables); None alone."""
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return None
    try:
        count, index = int(world), int(os.environ.get("RANK", "0"))
    except ValueError as err:
        raise ConfigError(f"WORLD_SIZE={world!r} RANK={os.environ.get('RANK')!r}: expected integers") from err
    if count <= 1:
        return None
    if not 0 <= index < count:
        raise ConfigError(f"RANK={index} is outside WORLD_SIZE={count}")
    return Shard(index, count)


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value, keys sorted: the config digest."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


@dataclass
class RunState:
    """One shard's mergeable state: facts about the run (JSON), named arrays that merge across shards, and the
    per-sample text rows (`rows.` keys whose values are strings: a flipped sample's text) kept in the JSON header."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    texts: dict[str, list[str | None]] = field(default_factory=dict)
    #: check -> what a "rank0" check measured after the pass (arrays and JSON values), in the `--shard 1/N` file
    #: only: not merged, handed back whole (Check.measured_state / load_measured)
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        arrays, facts = dict(self.arrays), {}
        for check, values in self.measured.items():
            facts[check] = {}
            for key, value in values.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{_MEASURED}{check}.{key}"] = value.astype(np.float64 if value.dtype.kind == "f"
                                                                       else np.int64)
                else:
                    facts[check][key] = value
        meta = dict(self.meta, rows_text=self.texts, arrays_sha256=arrays_digest(arrays, self.texts, facts))
        if facts:
            meta["measured"] = facts
        return save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                    metadata={_META_KEY: json.dumps(meta, sort_keys=True)})

    def values(self) -> dict[str, Any]:
        """Arrays and text rows in one dict, as a check's state() gives them."""
        return {**self.arrays, **self.texts}


def arrays_digest(arrays: dict[str, np.ndarray], texts: dict[str, list[str | None]] | None = None,
                  measured: dict[str, Any] | None = None) -> str:
    """SHA-256 of every array, the text rows and the measured facts (those last two only where there are any)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if texts:
        h.update(json.dumps(texts, sort_keys=True).encode("utf-8"))
    if measured:
        h.update(b"measured|" + json.dumps(measured, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def split_values(values: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, list[str | None]]]:
    """A merged dict back into arrays and text rows."""
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    return arrays, {k: list(v) for k, v in values.items() if not isinstance(v, np.ndarray)}


# The header's schema, field by field (a state may come from another job: every field is checked before use).
# A spec is a type name ("str", "int" >= 0, "pos" >= 1, "bool", "hex" a SHA-256, "scalar" a JSON scalar, "any"
# what gate.runner checks itself: the config against gate.yaml's schema, a check's measured facts), a
# ("?", spec) for spec-or-null, a ("list", spec), a ("map", spec) (string keys), a ("one of", values), or a dict
# of exactly these keys.
_ROLE_NAMES = {"names": ("?", ("list", "str")), "source": ("?", "str"), "generic": "bool"}
_MODEL = {"role": ("one of", ("baseline", "candidate")), "path": "str", "format": "str", "sha256": ("?", "str"),
          "size_bytes": ("?", "int"), "parameters": ("?", "int"), "num_classes": ("?", "int"),
          "class_names": ("?", ("list", "str")), "columns": ("?", ("list", "int")), "output": ("?", "str"),
          "dtype": ("?", "str"), "checkpoint_dtype": ("?", "str"), "cast": ("?", "str")}
_HEADER: dict[str, Any] = {
    "format": "str", "version": "int", "gate_version": "str", "config_digest": "hex", "data_digest": "hex",
    "shard": ("list", "int"), "num_classes": "int", "class_names": ("list", "str"), "num_samples": "int",
    "num_batches": "int", "task": ("one of", ("classification", "multi_label", "regression")),
    "models": ("list", _MODEL),
    "data": {"path": "str", "format": "str", "sha256": ("?", "str"), "num_samples": "int", "num_batches": "int",
             "batch_size": "pos"},
    "config": ("map", "any"), "source": ("?", "str"),
    "classes": {"names": ("?", ("list", "str")), "columns": ("?", ("list", "int")), "baseline": _ROLE_NAMES,
                "candidate": _ROLE_NAMES, "renamed": ("list", ("list", "str")), "by_name": "bool",
                "warnings": ("list", "str")},
    "notes": ("list", "str"), "checks": ("list", "str"), "environment": ("map", ("?", "scalar")),
    "arrays_sha256": "hex", "rows_text": ("map", ("list", ("?", "str"))), "measured": ("map", ("map", "any")),
}
_OPTIONAL = ("measured",)


def _field_error(value: Any, spec: Any, path: str) -> str | None:
    """What is wrong with `value` at `path` against `spec`; None when it fits."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{path}: expected an object, found {_kind(value)}"
        for key in value:
            if key not in spec:
                return f"{path}.{key}: unknown field"
        for key, sub in spec.items():
            if key not in value:
                return f"{path}.{key}: missing"
            found = _field_error(value[key], sub, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(spec, tuple):
        head, sub = spec
        if head == "?":
            return None if value is None else _field_error(value, sub, path)
        if head == "one of":
            return None if isinstance(value, str) and value in sub else \
                f"{path}: expected one of {', '.join(sub)}, found {_kind(value)}"
        if head == "list":
            if not isinstance(value, list):
                return f"{path}: expected a list, found {_kind(value)}"
            return next((e for i, v in enumerate(value) if (e := _field_error(v, sub, f"{path}[{i}]"))), None)
        if not isinstance(value, dict):                                     # "map"
            return f"{path}: expected an object, found {_kind(value)}"
        return next((e for k, v in value.items() if (e := _field_error(v, sub, f"{path}.{k}"))), None)
    if spec == "any":
        return None
    if spec in ("int", "pos"):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{path}: expected an integer, found {_kind(value)}"
        return None if value >= (1 if spec == "pos" else 0) else \
            f"{path}: expected an integer >= {1 if spec == 'pos' else 0}, found {value}"
    if spec == "bool":
        return None if isinstance(value, bool) else f"{path}: expected true or false, found {_kind(value)}"
    if spec == "scalar":
        ok = isinstance(value, (bool, int, float, str))
        return None if ok else f"{path}: expected a string or a number, found {_kind(value)}"
    if not isinstance(value, str):                                          # "str", "hex"
        return f"{path}: expected a string, found {_kind(value)}"
    if spec == "hex" and not (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        return f"{path}: expected a SHA-256 (64 hex digits), found {_kind(value)}"
    return None


def _kind(value: Any) -> str:
    text = json.dumps(value, default=str)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_header(meta: dict[str, Any], *, where: str) -> None:
    """Every header field against _HEADER, and the facts that tie fields together (the shard within its count,
    one model per role, the data's counts the state's); DataError naming the first field that is wrong."""
    for key in meta:
        if key not in _HEADER:
            raise DataError(f"{where}: gate state field {key}: unknown field")
    for key, spec in _HEADER.items():
        if key not in meta:
            if key in _OPTIONAL:
                continue
            raise DataError(f"{where}: gate state field {key}: missing")
        found = _field_error(meta[key], spec, key)
        if found:
            raise DataError(f"{where}: gate state field {found}")
    if len(meta["shard"]) != 2 or not meta["shard"][0] < meta["shard"][1] <= MAX_SHARDS:
        raise DataError(f"{where}: gate state field shard: expected [index, count] with 0 <= index < count <= "
                        f"{MAX_SHARDS}, found {meta['shard']}")
    if [m["role"] for m in meta["models"]] != ["baseline", "candidate"]:
        raise DataError(f"{where}: gate state field models: expected the baseline's then the candidate's, found "
                        f"{[m['role'] for m in meta['models']]}")
    for key in ("num_samples", "num_batches"):
        if meta["data"][key] != meta[key]:
            raise DataError(f"{where}: gate state field data.{key}: {meta['data'][key]}, but {key} is {meta[key]}")
    if len(meta["class_names"]) != meta["num_classes"] and meta["task"] == "classification":
        raise DataError(f"{where}: gate state field class_names: {len(meta['class_names'])} names for "
                        f"num_classes {meta['num_classes']}")
    if digest(meta["config"]) != meta["config_digest"]:
        raise DataError(f"{where}: gate state field config does not match the state's config_digest (the file was "
                        "edited)")
    from gate.config import CHECK_NAMES

    unknown = [c for c in meta["checks"] if c not in CHECK_NAMES]
    if unknown or len(set(meta["checks"])) != len(meta["checks"]):
        raise DataError(f"{where}: gate state field checks: {unknown[0] + ' is no check' if unknown else 'a check named twice'}")


def state_from_bytes(payload: bytes, *, where: str) -> RunState:
    """Parse a state (file contents or a rank's payload) as data: bounded, no pickle, every field checked."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if len(payload) > MAX_STATE_BYTES:
        raise DataError(f"{where}: {len(payload)} bytes is larger than a gate state can be ({MAX_STATE_BYTES})")
    try:
        arrays = load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8:8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except RecursionError as err:
        raise DataError(f"{where}: not a gate state file: its header is nested too deeply to read") from err
    except (SafetensorError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: not a gate state file (safetensors with a gate_state header): {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise DataError(f"{where}: not a gate state file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != STATE_VERSION:
        raise DataError(f"{where}: gate state version {meta.get('version')!r}; this gate reads version {STATE_VERSION}")
    check_header(meta, where=where)
    for key, a in arrays.items():
        if a.dtype not in _DTYPES:
            raise DataError(f"{where}: array {key!r} has dtype {a.dtype}; a gate state holds int64 and float64 only")
    texts = meta.pop("rows_text", {})
    if not isinstance(texts, dict) or not all(
            isinstance(k, str) and rows_group(k) is not None and isinstance(v, list)
            and all(t is None or isinstance(t, str) for t in v) for k, v in texts.items()):
        raise DataError(f"{where}: gate state field 'rows_text' must map rows keys to lists of strings")
    facts = meta.pop("measured", {})
    if not isinstance(facts, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in facts.items()):
        raise DataError(f"{where}: gate state field 'measured' must map check names to their measured facts")
    if arrays_digest(arrays, texts, facts) != meta["arrays_sha256"]:
        raise DataError(f"{where}: the arrays do not match the state's SHA-256 (the file is corrupt or was edited)")
    _check_counts(arrays, meta, where=where)
    measured: dict[str, dict[str, Any]] = {check: dict(values) for check, values in facts.items()}
    for key in [k for k in arrays if k.startswith(_MEASURED)]:
        check, _, name = key[len(_MEASURED):].partition(".")
        if check not in measured or not name:
            raise DataError(f"{where}: array {key!r} is measured by no check the state names")
        measured[check][name] = arrays.pop(key)
    return RunState(meta=meta, arrays=arrays, texts=texts, measured=measured)


def _check_counts(arrays: dict[str, np.ndarray], meta: dict[str, Any], *, where: str) -> None:
    """The paired counts: codes and counts as two 1-D int64 arrays of one length, every count positive, and (for
    classification, where every sample is counted once) summing to the state's num_samples."""
    codes, n = arrays.get("counts.codes"), arrays.get("counts.n")
    if codes is None or n is None:
        raise DataError(f"{where}: arrays 'counts.codes' and 'counts.n' are missing")
    if codes.dtype != np.int64 or n.dtype != np.int64 or codes.ndim != 1 or codes.shape != n.shape:
        raise DataError(f"{where}: arrays 'counts.codes' and 'counts.n' must be 1-D int64 arrays of one length, "
                        f"found {codes.dtype} {codes.shape} and {n.dtype} {n.shape}")
    if not n.size:
        return
    total = sum(n.tolist()) if n.size <= meta["num_samples"] else None       # Python ints: no int64 wrap-around
    if int(n.min()) < 1 or total is None or (meta["task"] == "classification" and total != meta["num_samples"]):
        raise DataError(f"{where}: array 'counts.n' ({n.size} counts, the smallest {int(n.min())}"
                        f"{f', {total} in all' if total is not None else ''}) cannot count the state's "
                        f"{meta['num_samples']} samples: the counts are not this shard's")


def read_state(path: str | os.PathLike[str]) -> RunState:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_STATE_BYTES:
            raise DataError(f"{p}: {size} bytes is larger than a gate state can be ({MAX_STATE_BYTES})")
        payload = p.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"{p}: state file not found") from err
    except OSError as err:
        raise DataError(f"{p}: cannot read the state file: {err}") from err
    return state_from_bytes(payload, where=str(p))


def write_state(state: RunState, path: str | os.PathLike[str]) -> None:
    """Atomically (temp file + rename), as reports are: a cancelled job leaves no half-written state."""
    write_bytes_atomically(Path(path), state.to_bytes(), what="state file")


def write_bytes_atomically(target: Path, payload: bytes, *, what: str) -> None:
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ConfigError(f"{target}: cannot write the {what}: {err.strerror or err}") from err


_SAME = ("gate_version", "config_digest", "data_digest", "num_classes", "class_names", "checks", "task", "classes")


def merge_states(states: list[RunState], *, names: list[str]) -> RunState:
    """The shards' states summed: every shard of one run (same gate, config, data, models), each exactly once."""
    if not states:
        raise ConfigError("gate merge: no state files given")
    first = states[0].meta
    for state, name in zip(states, names):
        meta = state.meta
        if meta["gate_version"] != gate.__version__:
            raise DataError(f"{name}: written by gate {meta['gate_version']}, this is gate {gate.__version__}; "
                            "merge states with the gate that wrote them")
        for key in _SAME:
            if meta[key] != first[key]:
                what = {"config_digest": "config", "data_digest": "data"}.get(key, key.replace("_", " "))
                raise DataError(f"{name}: its {what} differs from {names[0]}'s ({_short(meta[key])} vs "
                                f"{_short(first[key])}): the shards are not of the same run")
        if [m.get("sha256") for m in meta["models"]] != [m.get("sha256") for m in first["models"]]:
            raise DataError(f"{name}: its checkpoints differ from {names[0]}'s: the shards are not of the same run")
    counts = {int(s.meta["shard"][1]) for s in states}
    if len(counts) != 1:
        raise DataError(f"the states are shards of different splits ({', '.join(map(str, sorted(counts)))} shards)")
    count = counts.pop()
    seen: dict[int, str] = {}
    for state, name in zip(states, names):
        index = int(state.meta["shard"][0])
        if index in seen:
            raise DataError(f"{name}: shard {index + 1}/{count} is also in {seen[index]}; each shard must be merged once")
        seen[index] = name
    absent = count - len(seen)
    if absent:
        shown = [str(i + 1) for i in range(count) if i not in seen][:10]
        more = f" and {absent - len(shown)} more" if absent > len(shown) else ""
        raise DataError(f"shard{'s' if absent > 1 else ''} {', '.join(shown)}{more} of {count} missing: a gate "
                        "decides on the whole data")
    keys = set(states[0].values())
    for state, name in zip(states, names):
        if set(state.values()) != keys:
            raise DataError(f"{name}: its arrays differ from {names[0]}'s: the shards are not of the same run")
    ordered = sorted(states, key=lambda s: s.meta["shard"][0])
    arrays, texts = split_values(merge_arrays([{k: v for k, v in s.values().items()
                                                 if k not in ("counts.codes", "counts.n")} for s in ordered]))
    codes = np.concatenate([s.arrays["counts.codes"] for s in states])
    n = np.concatenate([s.arrays["counts.n"] for s in states])
    uniq, inverse = np.unique(codes, return_inverse=True)
    summed = np.zeros(uniq.size, dtype=np.int64)
    np.add.at(summed, inverse.reshape(-1), n)
    arrays["counts.codes"], arrays["counts.n"] = uniq.astype(np.int64), summed
    zero = sorted(states, key=lambda s: s.meta["shard"][0])[0].meta
    meta = dict(zero, shard=[0, 1], num_samples=sum(s.meta["num_samples"] for s in states),
                num_batches=sum(s.meta["num_batches"] for s in states))
    meta["data"] = dict(zero["data"], num_samples=meta["num_samples"], num_batches=meta["num_batches"])
    return RunState(meta=meta, arrays=arrays, texts=texts, measured=_measured_of(states, names, count))


def _measured_of(states: list[RunState], names: list[str], count: int) -> dict[str, dict[str, Any]]:
    """Each "rank0" check's measured_state(), from the one shard that measured it: shard 1/N."""
    carriers: dict[str, list[str]] = {}
    measured: dict[str, dict[str, Any]] = {}
    for state, name in zip(states, names):
        for check, values in state.measured.items():
            carriers.setdefault(check, []).append(name)
            if len(carriers[check]) > 1:
                raise DataError(f"{carriers[check][0]} and {name} both carry {check}'s timings; only the shard "
                                f"1/{count} job measures them: the shards are not of one run")
            if int(state.meta["shard"][0]) != 0:
                raise DataError(f"{name}: shard {int(state.meta['shard'][0]) + 1}/{count} carries {check}'s "
                                f"timings, which only the shard 1/{count} job measures: the shards are not of one run")
            measured[check] = values
    return measured


def rows_group(key: str) -> str | None:
    """The group of a per-sample key (`scores.rows.margin` -> `scores.`, `rows.x` -> ``); None for a summed key."""
    if key.startswith("rows."):
        return ""
    head, sep, _ = key.partition(".rows.")
    return f"{head}." if sep else None


def merge_arrays(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards' arrays (each shard the same keys) merged: `rows.` keys concatenated in global sample order (by their
    group's `rows.index`), every other key summed. A `rows.` key may hold a list of strings (one per row) instead
    of an array. Raises DataError for shards that cannot be one run's."""
    if not parts:
        return {}
    merged: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    for key in sorted(parts[0]):
        values = [p[key] for p in parts]
        group = rows_group(key)
        if group is not None:
            groups.setdefault(group, []).append(key)
            continue
        if not all(isinstance(v, np.ndarray) for v in values):
            raise DataError(f"state key {key!r} holds text but is not a rows. key")
        if len({v.dtype for v in values}) != 1:
            raise DataError(f"array {key!r} has different dtypes across shards: the shards are not of the same run")
        if len({v.shape for v in values}) != 1:
            raise DataError(f"array {key!r} has different shapes across shards: the shards are not of the same run")
        merged[key] = np.sum(np.stack(values), axis=0, dtype=values[0].dtype)
    for group, keys in groups.items():
        merged.update(_merge_rows(parts, group, keys))
    return merged


def _merge_rows(parts: list[dict[str, Any]], group: str, keys: list[str]) -> dict[str, Any]:
    index_key = f"{group}rows.index"
    if index_key not in keys:
        raise DataError(f"arrays {', '.join(map(repr, keys))} are per-sample rows without {index_key!r}: "
                        "a state's rows must say which samples they are")
    for part in parts:
        index = part[index_key]
        if not isinstance(index, np.ndarray) or index.dtype != np.int64 or index.ndim != 1:
            raise DataError(f"array {index_key!r} must be a 1-D int64 array of sample indices, found "
                            f"{getattr(index, 'dtype', type(index).__name__)} with shape {np.shape(index)}")
        for key in keys:
            value = part[key]
            if isinstance(value, list) != isinstance(parts[0][key], list):
                raise DataError(f"state key {key!r} is text on one shard and numbers on another")
            if isinstance(value, list):
                if len(value) != index.shape[0]:
                    raise DataError(f"text rows {key!r} has {len(value)} rows but {index_key!r} "
                                    f"{index.shape[0]}: one row per sample")
                continue
            if value.ndim == 0 or value.shape[0] != index.shape[0]:
                raise DataError(f"array {key!r} has {value.shape[0] if value.ndim else 0} rows but {index_key!r} "
                                f"{index.shape[0]}: one row per sample")
            if value.dtype != parts[0][key].dtype:
                raise DataError(f"array {key!r} has different dtypes across shards: the shards are not of the "
                                "same run")
            if value.shape[1:] != parts[0][key].shape[1:]:
                raise DataError(f"array {key!r} has rows of different shapes across shards: the shards are not of "
                                "the same run")
    index = np.concatenate([p[index_key] for p in parts])
    order = np.argsort(index, kind="stable")
    ranked = index[order]
    if ranked.size and (ranked[0] < 0 or bool(np.any(ranked[1:] == ranked[:-1]))):
        bad = ranked[0] if ranked[0] < 0 else ranked[1:][ranked[1:] == ranked[:-1]][0]
        raise DataError(f"array {index_key!r}: sample {int(bad)} is {'negative' if bad < 0 else 'in two shards'}: "
                        "the shards are not of one run")
    merged: dict[str, Any] = {}
    for key in keys:
        if isinstance(parts[0][key], list):
            every = [t for p in parts for t in p[key]]
            merged[key] = [every[i] for i in order.tolist()]
        else:
            merged[key] = np.concatenate([p[key] for p in parts])[order]
    return merged


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:12] if len(text) == 64 else text[:60]


# ----------------------------------------------------------------------------------------- torch.distributed


_comm_device: Any = None      # where collectives run: CPU for gloo, this rank's GPU for NCCL


class RankError(GateError):
    """A rank failed before the merge; raised on every rank alike, so no rank waits for the others."""


def init_distributed(device: Any) -> Any:
    """Join the torchrun process group (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)."""
    import torch.distributed as dist

    global _comm_device
    device_type = device.type
    _comm_device = device
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, init_method="env://")
        except (RuntimeError, ValueError) as err:
            raise ConfigError(f"torch.distributed: cannot join the process group ({backend}): {err}") from err
    return dist


def all_gather_bytes(payload: bytes, *, device: Any) -> list[bytes]:
    """Every rank's payload on every rank: sizes first, then the padded bytes (works on gloo and NCCL)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    data = torch.tensor(list(payload[:0]), dtype=torch.uint8)
    if payload:
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    top = max(1, max(int(s.item()) for s in sizes))
    padded = torch.zeros(top, dtype=torch.uint8, device=device)
    padded[: data.numel()] = data.to(device)
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [bytes(p[: int(s.item())].cpu().numpy().tobytes()) for p, s in zip(parts, sizes)]


def gather_states(state: RunState | GateError, *, device: Any) -> RunState:
    """All ranks' states merged, on every rank; a rank that failed makes every rank fail with its message."""
    if isinstance(state, GateError):
        payload = b"E" + f"{type(state).__name__}\n{state}".encode("utf-8")
    else:
        payload = b"S" + state.to_bytes()
    parts = all_gather_bytes(payload, device=device)
    for rank, part in enumerate(parts):
        if part[:1] == b"E":
            kind, _, message = part[1:].decode("utf-8", "replace").partition("\n")
            leave_group()
            raise RankError(f"rank {rank}: {message}")
    names = [f"rank {rank}" for rank in range(len(parts))]
    try:
        return merge_states([state_from_bytes(p[1:], where=n) for p, n in zip(parts, names)], names=names)
    except GateError as err:
        leave_group()
        raise RankError(str(err)) from err


def leave_group() -> None:
    """Leave the process group before an error ends the process: every rank raises alike, so none waits; a group
    left to the interpreter's exit can abort the process in gloo's destructor ("terminate called ...")."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_exit_code(code: int) -> int:
    """Rank 0's exit code on every rank, then the process group is left."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([code], dtype=torch.int64, device=_comm_device)
    dist.broadcast(value, src=0)
    dist.destroy_process_group()
    return int(value.item())
