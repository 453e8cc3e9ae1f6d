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

import hashlib
import json
import os
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


def open_entry(folder: Path, key: str, facts: dict[str, Any]) -> Entry | None:
    """The entry for `key`, checked; None when there is none. Raises CorruptEntry when it is there but bad."""
    meta_path, scores_path = folder / f"{key}.json", folder / f"{key}.scores"
    if not meta_path.exists():
        return None
    try:
        if meta_path.stat().st_size > MAX_ENTRY_JSON:
            raise CorruptEntry(f"{meta_path.name} is larger than {MAX_ENTRY_JSON} bytes")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CorruptEntry(f"{meta_path.name} is not readable JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("facts") != json.loads(json.dumps(facts, default=str)):
        raise CorruptEntry(f"{meta_path.name} was keyed on other facts than its name says")
    dtype, n, k, output = meta.get("dtype"), meta.get("num_samples"), meta.get("num_classes"), meta.get("output")
    if (dtype not in _DTYPES or not isinstance(n, int) or not isinstance(k, int) or n < 1 or k < 1
            or not isinstance(output, str) or not isinstance(meta.get("sha256"), str)
            or not isinstance(meta.get("records"), dict)):
        raise CorruptEntry(f"{meta_path.name} lacks a field or has one of the wrong type")
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
    return Entry(scores=scores_path, dtype=dtype, num_samples=n, num_classes=k, output=output,
                 records=dict(meta["records"]))


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

        from gate.errors import DataError

        if self.rows + size > self.entry.num_samples:
            raise DataError(f"baseline cache: the data has more than the {self.entry.num_samples} samples the "
                            f"entry {self.entry.scores.name} was written for")
        self.rows += size
        raw = bytearray(self._fh.read(size * self._row))
        return torch.frombuffer(raw, dtype=torch.uint8).view(self._dtype).reshape(size, -1).to(device)

    def close(self) -> None:
        self._fh.close()


class Recorder:
    """The live baseline's scores written as they come, to a temp file renamed into place only after the pass."""

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

    def add(self, scores: Any) -> None:
        import torch

        cpu = scores.detach().contiguous().cpu()
        self.dtype = str(cpu.dtype).removeprefix("torch.")
        self.num_classes = int(cpu.shape[1])
        raw = cpu.view(torch.uint8).numpy().tobytes() if cpu.numel() else b""
        self._fh.write(raw)
        self._sha.update(raw)
        self.rows += int(cpu.shape[0])

    def commit(self, *, output: str, records: dict[str, Any]) -> None:
        """Scores renamed into place, then the JSON (the mark that the entry is complete)."""
        self._fh.close()
        if self.dtype not in _DTYPES or not self.rows:
            self.discard()
            return
        os.replace(self._tmp, self.folder / f"{self.key}.scores")
        meta = {"facts": self.facts, "dtype": self.dtype, "num_samples": self.rows, "num_classes": self.num_classes,
                "output": output, "sha256": self._sha.hexdigest(), "records": records}
        from gate.sharding import write_bytes_atomically

        write_bytes_atomically(self.folder / f"{self.key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"),
                               what="baseline cache entry")

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)
