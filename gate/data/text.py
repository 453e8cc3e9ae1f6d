"""JSON Lines and CSV readers: streamed line by line, tokenized per batch, never loaded whole into memory."""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from gate.data._common import (
    MISSING,
    BatchMeta,
    LabelSets,
    Skipped,
    label_index,
    multi_label_indices,
    names_list,
    regression_targets,
)
from gate.errors import DataError

if TYPE_CHECKING:
    import torch

    from gate.data.tokenize import CallableEncoder, HFEncoder


@dataclass(frozen=True)
class TextLayout:
    """Where the text and the label live in each record of a text file."""

    path: str
    kind: str                       # "jsonl" | "csv"
    text_column: str
    label_column: str
    delimiter: str = ","            # csv only; "\t" for .tsv
    task: str = "classification"    # what a label is: a class, a list of labels (multi_label), targets (regression)
    label_separator: str = "|"      # csv, multi_label: between a row's label names or indices


@dataclass(frozen=True)
class TextRecord:
    line: int                       # 1-based line number in the file (for CSV: where the row ends)
    text: str
    label: Any                      # int (classification), tuple of label indices (multi_label), of floats (regression)
    row: dict[str, Any] | None = None   # the whole record (other keys / columns: slice fields)


def iter_records(layout: TextLayout, *, class_names: tuple[str, ...] | None) -> Iterator[TextRecord]:
    """The file's samples in file order, each checked (columns present, text a string, label mappable)."""
    reader = _iter_jsonl_rows if layout.kind == "jsonl" else _iter_csv_rows
    for line, row in reader(layout):
        yield _record(layout, line, row, class_names=class_names)


def _record(layout: TextLayout, line: int, row: dict[str, Any], *, class_names: tuple[str, ...] | None) -> TextRecord:
    where = f"{layout.path}: line {line}"
    missing = [col for col in (layout.text_column, layout.label_column) if col not in row]
    if missing:
        what = "key" if layout.kind == "jsonl" else "column"
        raise DataError(
            f"{where}: no {what} {missing[0]!r} (found: {names_list(list(row))}); "
            f"set data.text_column / data.label_column in gate.yaml to the names your file uses"
        )
    text = row[layout.text_column]
    if not isinstance(text, str):
        raise DataError(
            f"{where}: {layout.text_column!r} is {type(text).__name__}, expected a string of text"
        )
    at = f"{where}, {'key' if layout.kind == 'jsonl' else 'column'} {layout.label_column!r}"
    value = row[layout.label_column]
    label: Any
    if layout.task == "multi_label":
        label = multi_label_indices(value, class_names=class_names, where=at,
                                    separator=layout.label_separator if layout.kind == "csv" else None)
    elif layout.task == "regression":
        label = regression_targets(value, where=at)
    else:
        label = label_index(value, class_names=class_names, where=f"{where}, column {layout.label_column!r}")
    return TextRecord(line=line, text=text, label=label, row=row)


def _iter_jsonl_rows(layout: TextLayout) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(_decoded_lines(layout.path), start=1):
        if raw.strip():
            yield line, _parse_json_line(raw, path=layout.path, line=line)


def _parse_json_line(raw: str, *, path: str, line: int) -> dict[str, Any]:
    hint = ""
    if line == 1 and raw.lstrip().startswith("["):
        hint = "; this looks like a JSON array, but gate reads JSON Lines: one JSON object per line"
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {line}, column {err.colno}: malformed JSON: {err.msg}{hint}") from err
    except RecursionError as err:
        raise DataError(f"{path}: line {line}: JSON nested too deeply to read; a row is one flat object") from err
    except ValueError as err:        # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise DataError(f"{path}: line {line}: unreadable JSON value: {str(err).split(';')[0]}") from err
    if not isinstance(row, dict):
        raise DataError(f"{path}: line {line}: expected a JSON object, found {type(row).__name__}{hint}")
    return row


def _iter_csv_rows(layout: TextLayout) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(_decoded_lines(layout.path), delimiter=layout.delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{layout.path}: empty CSV file, expected a header row and one row per sample")
        _check_header(layout, header)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{layout.path}: line {reader.line_num}: expected {len(header)} fields "
                    f"({names_list(header)}), found {len(row)}"
                )
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as err:
        raise DataError(f"{layout.path}: line {reader.line_num}: malformed CSV: {err}") from err


def _check_header(layout: TextLayout, header: list[str]) -> None:
    for column in (layout.text_column, layout.label_column):
        if column not in header:
            raise DataError(
                f"{layout.path}: line 1 (header): no column {column!r} (found: {names_list(header)}); "
                f"set data.text_column / data.label_column in gate.yaml to the names your file uses"
            )


def _decoded_lines(path: str) -> Iterator[str]:
    """The file's lines as text, line endings kept (csv needs them); a decoding error names its exact line."""
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file: {err.strerror or err}") from err
    with fh:
        for line, raw in enumerate(fh, start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):  # byte-order mark written by Excel / Windows tools
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}: line {line}, byte {err.start + 1}: not valid UTF-8 text ({err.reason})"
                ) from err


def check_text_file(layout: TextLayout, *, class_names: tuple[str, ...] | None) -> None:
    """Read up to the first sample, so an empty file or a wrong column name fails before any model runs."""
    for _ in iter_records(layout, class_names=class_names):
        return
    raise DataError(f"{layout.path}: no samples (the file has no data lines)")


class _Skimmer:
    """The file's records, read one of two ways at each step: checked (`next`) or only counted (`skip`)."""

    def __init__(self, layout: TextLayout, *, class_names: tuple[str, ...] | None) -> None:
        self.layout = layout
        self.class_names = class_names
        self._rows = _iter_raw_jsonl(layout.path) if layout.kind == "jsonl" else _iter_csv_rows(layout)

    def __iter__(self) -> _Skimmer:
        return self

    def __next__(self) -> TextRecord:
        line, row = next(self._rows)
        if self.layout.kind == "jsonl":
            row = _parse_json_line(_decode(row, path=self.layout.path, line=line), path=self.layout.path, line=line)
        return _record(self.layout, line, row, class_names=self.class_names)

    def skip(self, count: int) -> int:
        """Pass over up to `count` records without checking them; how many there were."""
        return sum(1 for _ in islice(self._rows, max(0, count)))


def _iter_raw_jsonl(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, raw bytes) of the non-blank lines: what a shard skips is counted, not decoded or parsed."""
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file: {err.strerror or err}") from err
    with fh:
        for line, raw in enumerate(fh, start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.strip() and (raw.isascii() or _blank_unless_text(raw)):
                yield line, raw


def _blank_unless_text(raw: bytes) -> bool:
    """Whether a non-ASCII line has text (str.strip's Unicode whitespace, as the checked read sees it); a line
    that is not UTF-8 counts as a sample (its owner reports it)."""
    try:
        return bool(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True


def _decode(raw: bytes, *, path: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: line {line}, byte {err.start + 1}: not valid UTF-8 text ({err.reason})") from err


class TextReader:
    """Batches of (tokenized inputs, labels) from a JSON Lines or CSV file, in file order."""

    num_samples: int | None = None  # unknown until the file has been read: the caller counts
    seeks = True                    # batches_with_meta(owns=...) skips other shards' batches unread

    def __init__(
        self,
        layout: TextLayout,
        *,
        encoder: HFEncoder | CallableEncoder,
        class_names: tuple[str, ...] | None,
        batch_size: int,
        limit: int | None,
    ) -> None:
        self.layout = layout
        self.encoder = encoder
        self.class_names = class_names
        self.batch_size = batch_size
        self.limit = limit

    def batches(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for inputs, labels, _ in self.batches_with_meta():
            yield inputs, labels

    def batches_with_meta(self, *, owns: Callable[[int], bool] | None = None) -> Iterator[Any]:
        """(inputs, labels, meta) per batch, in file order. With `owns` (a shard's batch test), another shard's
        batch is a `Skipped(size)` in its place: its lines are counted (JSON Lines: non-blank lines, not even
        decoded; CSV: records, split but not checked), never parsed into samples or tokenized."""
        if owns is None:
            yield from self._batches(iter_records(self.layout, class_names=self.class_names))
            return
        records = _Skimmer(self.layout, class_names=self.class_names)
        batch = seen = 0
        while self.limit is None or seen < self.limit:
            want = self.batch_size if self.limit is None else min(self.batch_size, self.limit - seen)
            if owns(batch):
                chunk = list(islice(records, want))
                size = len(chunk)
                if size:
                    yield self._encode(chunk)
            else:
                size = records.skip(want)
                if size:
                    yield Skipped(size), None, None
            seen += size
            batch += 1
            if size < want:
                break
        if seen == 0:
            raise DataError(f"{self.layout.path}: no samples (the file has no data lines)")

    def _batches(self, records: Iterator[TextRecord]) -> Iterator[Any]:
        pending: list[TextRecord] = []
        seen = 0
        for record in records:
            pending.append(record)
            seen += 1
            if len(pending) == self.batch_size:
                yield self._encode(pending)
                pending = []
            if self.limit is not None and seen >= self.limit:
                break
        if pending:
            yield self._encode(pending)
        if seen == 0:
            raise DataError(f"{self.layout.path}: no samples (the file has no data lines)")

    def _encode(self, records: list[TextRecord]) -> tuple[dict[str, torch.Tensor], torch.Tensor, BatchMeta]:
        import torch

        where = f"{self.layout.path}: lines {records[0].line}-{records[-1].line}"
        texts = [r.text for r in records]
        inputs = self.encoder(texts, where=where)
        labels: Any
        if self.layout.task == "multi_label":
            labels = LabelSets(tuple(r.label for r in records),
                               tuple(f"{self.layout.path}: line {r.line}" for r in records))
        elif self.layout.task == "regression":
            width = len(records[0].label)
            for r in records:
                if len(r.label) != width:
                    raise DataError(f"{self.layout.path}: line {r.line}: {len(r.label)} targets, but line "
                                    f"{records[0].line} has {width}; every sample needs the same number of targets")
            labels = torch.tensor([r.label for r in records], dtype=torch.float32)
        else:
            labels = torch.tensor([r.label for r in records], dtype=torch.int64)
        return inputs, labels, self._meta(records, texts)

    def _meta(self, records: list[TextRecord], texts: list[str]) -> BatchMeta:
        """Every other key / column of the batch's rows, MISSING where a row lacks it."""
        skip = (self.layout.text_column, self.layout.label_column)
        names = dict.fromkeys(k for r in records for k in (r.row or {}) if k not in skip)
        fields = {name: [(r.row or {}).get(name, MISSING) for r in records] for name in names}
        return BatchMeta(texts=tuple(texts), fields=fields,
                         where=tuple(f"{self.layout.path}: line {r.line}" for r in records))
