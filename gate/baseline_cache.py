"""The baseline cache (`--baseline-cache DIR`): the baseline's per-sample scores and its sanity figures, kept
between runs so a rerun against the same production model skips the baseline's forward passes.

An entry is keyed by SHA-256 of everything that changes the baseline's outputs: its checkpoint hash, format,
dtype and model options, the data's hash and options (batch size, limit, max_length, ...), the tokenizer, the
device, the torch and gate versions, the shard. It is two files: `<key>.scores` (the raw (N, K) scores, batch after
batch) and `<key>.json` (the facts it was keyed on, the scores' dtype, shape and SHA-256, the sanity figures),
written last, as the commit mark. A cache folder may be shared between jobs, so an entry is data: the JSON is
size-bounded and checked field by field, the facts must equal this run's, the scores' size and SHA-256 must match
before one row is used. An entry that fails any of these is rebuilt by this run, never trusted.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gate

CACHE_VERSION = 1
MAX_ENTRY_JSON = 1024 * 1024
_DTYPES = ("float16", "bfloat16", "float32", "float64")


def tokenizer_digest(tokenizer: Any) -> str | None:
    """SHA-256 of what a tokenizer does: its serialised pipeline (fast tokenizers) or vocabulary, and its settings."""
    if tokenizer is None:
        return None
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode("utf-8"))
    elif hasattr(tokenizer, "get_vocab"):
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    settings = {k: v for k, v in sorted((getattr(tokenizer, "init_kwargs", None) or {}).items())
                if isinstance(v, (str, int, float, bool)) or v is None}
    settings.update(model_max_length=getattr(tokenizer, "model_max_length", None),
                    padding_side=getattr(tokenizer, "padding_side", None))
    h.update(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def entry_facts(*, config: Any, baseline: Any, data: Any, tokenizer: Any, device: Any, class_names: Any,
                shard: Any) -> dict[str, Any] | None:
    """What the baseline's scores depend on; None when something cannot be pinned (no file hash)."""
    import torch

    if not baseline.sha256 or not data.sha256:
        return None
    options = {k: v for k, v in config.model_options("baseline").items() if k != "trust_checkpoint"}
    return {
        "cache_version": CACHE_VERSION, "gate_version": gate.__version__, "torch": torch.__version__,
        "baseline": {"sha256": baseline.sha256, "format": baseline.format, "dtype": baseline.dtype,
                     "options": options},
        "data": {"sha256": data.sha256, "format": data.format, "options": config.data,
                 "class_names": list(class_names) if class_names else None},
        "tokenizer": tokenizer_digest(tokenizer), "device": str(device), "seed": config.seed,
        "sanity": config.checks.get("sanity"),
        "shard": [shard.index, shard.count] if shard is not None else None,
    }


def entry_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


@dataclass
class Entry:
    """A checked cache entry: where its scores are, their layout, and what the baseline's sanity measured."""

    scores: Path
    dtype: str
    num_samples: int
    num_classes: int
    output: str
    records: dict[str, Any]             # check name -> its baseline_record()


class CorruptEntry(Exception):
    """Why an entry cannot be trusted; the run rebuilds it."""


#: The output kinds a baseline's scores may have been read as, per task (gate.forward.to_scores).
TASK_OUTPUTS = {"classification": ("logits", "probabilities", "sigmoid", "binary_logit"),
                "multi_label": ("multi_label_logits", "multi_label_probabilities"), "regression": ("regression",)}
_DETECTED = ("auto", "multi_label", None)       # a configured output that the first batch resolves


def open_entry(folder: Path, key: str, facts: dict[str, Any], *, task: str = "classification",
               output: str | None = None, expected_rows: int | None = None) -> Entry | None:
    """The entry for `key`, checked against this run (its task, the baseline's configured `output`, the samples the
    pass will score when the data says so up front); None when there is none. Raises CorruptEntry when it is
    there but bad: every field is checked, and any mismatch means the entry is rebuilt, never trusted."""
    meta_path, scores_path = folder / f"{key}.json", folder / f"{key}.scores"
    if not os.path.lexists(meta_path):
        return None
    try:
        for path in (meta_path, scores_path):
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise CorruptEntry(f"{path.name} is not a regular file (a link, a device, a pipe)")
        if meta_path.stat().st_size > MAX_ENTRY_JSON:
            raise CorruptEntry(f"{meta_path.name} is larger than {MAX_ENTRY_JSON} bytes")
        meta = json.loads(meta_path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except RecursionError as err:
        raise CorruptEntry(f"{meta_path.name} is JSON nested too deeply to read") from err
    except (OSError, ValueError) as err:
        raise CorruptEntry(f"{meta_path.name} is not readable JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("facts") != json.loads(json.dumps(facts, default=str)):
        raise CorruptEntry(f"{meta_path.name} was keyed on other facts than its name says")
    wrong = _wrong_field(meta, task=task, output=output, expected_rows=expected_rows)
    if wrong:
        raise CorruptEntry(f"{meta_path.name}: {wrong}")
    dtype, n, k = meta["dtype"], meta["num_samples"], meta["num_classes"]
    import torch

    itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    try:
        size = scores_path.stat().st_size
        if size != n * k * itemsize:
            raise CorruptEntry(f"{scores_path.name} has {size} bytes, {n * k * itemsize} expected")
        if _file_sha256(scores_path) != meta["sha256"]:
            raise CorruptEntry(f"{scores_path.name} does not match its SHA-256")
    except OSError as err:
        raise CorruptEntry(f"{scores_path.name}: {err}") from err
    return Entry(scores=scores_path, dtype=dtype, num_samples=n, num_classes=k, output=meta["output"],
                 records=dict(meta["records"]))


_FIELDS = ("facts", "dtype", "num_samples", "num_classes", "output", "sha256", "records")


def _wrong_field(meta: dict[str, Any], *, task: str, output: str | None, expected_rows: int | None) -> str | None:
    """What in an entry's JSON cannot be this run's (None: every field fits)."""
    extra = sorted(set(meta) - set(_FIELDS))
    missing = [f for f in _FIELDS if f not in meta]
    if extra or missing:
        return f"{'unknown field ' + extra[0] if extra else 'missing field ' + missing[0]}"
    n, k = meta["num_samples"], meta["num_classes"]
    if meta["dtype"] not in _DTYPES:
        return f"dtype {meta['dtype']!r} is not one of {', '.join(_DTYPES)}"
    for name, value in (("num_samples", n), ("num_classes", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"{name} {value!r} is not a positive integer"
    if expected_rows is not None and n != expected_rows:
        return f"num_samples {n}, but this run scores {expected_rows} samples"
    kinds = TASK_OUTPUTS.get(task, ())
    if meta["output"] not in kinds:
        return f"output {meta['output']!r} is not a {task} output ({', '.join(kinds)})"
    if output not in _DETECTED and meta["output"] != output:
        return f"output {meta['output']!r}, but the baseline's is set to {output!r}"
    if meta["output"] in ("sigmoid", "binary_logit") and k != 2:
        return f"num_classes {k}, but a {meta['output']} output is kept as 2 columns"
    if not isinstance(meta["sha256"], str) or len(meta["sha256"]) != 64:
        return "sha256 is not a SHA-256"
    records = meta["records"]
    if not isinstance(records, dict) or not all(isinstance(v, dict) for v in records.values()):
        return "records must map each check's name to what it recorded (an object)"
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a cache entry holds")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Replay:
    """The cached scores, batch after batch, as the live baseline would have given them (same dtype, same bits)."""

    def __init__(self, entry: Entry) -> None:
        import torch

        self.entry = entry
        self._dtype = getattr(torch, entry.dtype)
        self._row = entry.num_classes * torch.empty(0, dtype=self._dtype).element_size()
        self._fh: BinaryIO = entry.scores.open("rb")
        self.rows = 0

    def next(self, size: int, *, device: Any) -> Any:
        """The next `size` rows as a (size, K) tensor on `device`."""
        import torch

        if self.rows + size > self.entry.num_samples:
            raise CorruptEntry(f"the data has more than the {self.entry.num_samples} samples the entry "
                               f"{self.entry.scores.name} was written for")
        self.rows += size
        raw = bytearray(self._fh.read(size * self._row))
        if len(raw) != size * self._row:
            raise CorruptEntry(f"{self.entry.scores.name} ended early (changed after it was checked)")
        scores = torch.frombuffer(raw, dtype=torch.uint8).view(self._dtype).reshape(size, -1)
        _check_kind(scores, self.entry.output, where=self.entry.scores.name)
        return scores.to(device)

    def close(self) -> None:
        self._fh.close()


def _check_kind(scores: Any, kind: str, *, where: str) -> None:
    """CorruptEntry when replayed scores cannot be what their output kind makes of a live output (to_scores):
    probabilities in [0, 1], a binary logit's first column 0; as the live baseline's are checked, batch by batch."""
    import torch

    from gate.forward import _UNIT_SLACK

    if kind == "binary_logit":
        if bool((scores[:, 0] != 0).any()):
            raise CorruptEntry(f"{where}: binary_logit scores with a first column that is not 0")
    elif kind not in ("logits", "regression"):
        finite = scores[torch.isfinite(scores)].float()
        if finite.numel() and (float(finite.min()) < -_UNIT_SLACK or float(finite.max()) > 1 + _UNIT_SLACK):
            raise CorruptEntry(f"{where}: {kind} scores outside [0, 1] (min {float(finite.min()):.4g}, max "
                               f"{float(finite.max()):.4g})")


class Recorder:
    """The live baseline's scores written as they come, to a temp file renamed into place only after the pass.

    The entry it replaces is cleared safely: its files (a link: the link itself, never what it points to) are
    replaced by the rename, an empty folder in their place is removed, and anything that cannot be removed so (a
    folder with files in it, a name it may not remove) is left alone: the entry is then not written, commit() says
    why, and the run goes on (its verdict never depends on the cache)."""

    def __init__(self, folder: Path, key: str, facts: dict[str, Any]) -> None:
        import tempfile

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.key, self.facts = folder, key, facts
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
        self._tmp = Path(tmp)
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self.rows = 0
        self.dtype: str | None = None
        self.num_classes: int | None = None
        _clear(folder / f"{key}.json")      # the old entry's commit mark goes first (commit() says if it could not)

    def add(self, scores: Any) -> None:
        import torch

        cpu = scores.detach().contiguous().cpu()
        self.dtype = str(cpu.dtype).removeprefix("torch.")
        self.num_classes = int(cpu.shape[1])
        raw = cpu.view(torch.uint8).numpy().tobytes() if cpu.numel() else b""
        self._fh.write(raw)
        self._sha.update(raw)
        self.rows += int(cpu.shape[0])

    def commit(self, *, output: str, records: dict[str, Any]) -> str | None:
        """Scores renamed into place, then the JSON (the mark that the entry is complete). None when the entry was
        written, else why it was not (the run goes on without it)."""
        self._fh.close()
        if self.dtype not in _DTYPES or not self.rows:
            self.discard()
            return None
        meta_path, scores_path = self.folder / f"{self.key}.json", self.folder / f"{self.key}.scores"
        blocked = _clear(meta_path) or _clear(scores_path, keep_file=True)
        if blocked:
            self.discard()
            return blocked
        meta = {"facts": self.facts, "dtype": self.dtype, "num_samples": self.rows, "num_classes": self.num_classes,
                "output": output, "sha256": self._sha.hexdigest(), "records": records}
        from gate.errors import ConfigError
        from gate.sharding import write_bytes_atomically

        try:                        # without its JSON the entry is a miss next time, never a hit
            os.replace(self._tmp, scores_path)
            write_bytes_atomically(meta_path, json.dumps(meta, sort_keys=True).encode("utf-8"),
                                   what="baseline cache entry")
        except OSError as err:
            self.discard()
            return f"cannot write {scores_path.name}: {err.strerror or err}"
        except ConfigError as err:  # the JSON's (write_bytes_atomically says which file and why)
            return str(err)
        return None

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


def _clear(path: Path, *, keep_file: bool = False) -> str | None:
    """Make room for an entry file at `path`; None when there is room, else why not. A file or a link there is
    removed (a link itself, never followed), or with `keep_file` left for the rename to replace atomically; an empty
    folder is removed; a folder with anything in it is left alone, never emptied."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            os.rmdir(path)
        elif not keep_file:
            path.unlink()
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENOTEMPTY:
            return f"{path.name} is a folder with files in it, left alone"
        return f"cannot remove {path.name}: {err.strerror or err}"
    return None

