"""A Python factory 'package.module:callable', called with data.kwargs, that returns the evaluation data.

What it may return:
  - a map-style torch Dataset of samples: (inputs, label) pairs, or dicts holding the label under data.labels
    (default 'labels', else 'label' / 'y' / 'targets') whose other keys are the inputs (passed as kwargs);
    batched with DataLoader(batch_size=data.batch_size, shuffle=False);
  - a torch IterableDataset of such samples, batched the same way;
  - any other iterable (a list, a generator, a DataLoader) of ready batches: (inputs, labels) pairs or dicts.
Metadata to slice by (never passed to the model): a dict sample's or batch's 'meta' key, a mapping of field ->
value (per sample) or values (per batch); a meta field 'text' is the sample's text in the flipped examples.

Sharded (`batches_with_meta(owns=...)`), a source that can be indexed seeks: a map-style Dataset's other batches
are never fetched (`__getitem__` is called for the shard's own samples only), a list or tuple of batches yields
the others' sizes only (their labels' length; nothing converted or checked), and a plain DataLoader over a
map-style Dataset with the sequential sampler (shuffle=False, no custom sampler) is re-made with a batch sampler
of the shard's own batches, with its own collate_fn, workers and pinning. What cannot be indexed (an
IterableDataset, a generator, a DataLoader with another sampler or of another class) is read whole: every batch
is made, and the runner skips the ones the shard does not own.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gate.data._common import (
    LABEL_FALLBACKS,
    BatchMeta,
    Skipped,
    batch_rows,
    meta_values,
    import_callable,
    names_list,
    take_first,
    task_labels_tensor,
)
from gate.errors import DataError, GateError

if TYPE_CHECKING:
    import torch


def make_source(spec: str, *, kwargs: dict[str, Any]) -> Any:
    """Call the factory; DataError naming it if it cannot be imported, fails, or returns no iterable."""
    fn = import_callable(spec, what="data factory")
    try:
        source = fn(**kwargs)
    except Exception as err:
        raise DataError(
            f"data factory {spec!r}: calling it with data.kwargs {sorted(kwargs)} failed: {type(err).__name__}: {err}"
        ) from err
    if not _is_map_dataset(source) and not isinstance(source, Iterable):
        raise DataError(
            f"data factory {spec!r}: returned a {type(source).__name__}, expected a torch Dataset "
            f"or an iterable of (inputs, labels) batches"
        )
    return source


def _is_map_dataset(source: Any) -> bool:
    from torch.utils.data import Dataset, IterableDataset

    return isinstance(source, Dataset) and not isinstance(source, IterableDataset)


def _is_sample_stream(source: Any) -> bool:
    from torch.utils.data import IterableDataset

    return isinstance(source, IterableDataset)


class FactoryReader:
    """Batches from a factory's Dataset or iterable, in its own order; labels checked and turned into int64."""

    seeks = True        # batches_with_meta(owns=...): Datasets, lists and plain DataLoaders skip others' batches

    def __init__(
        self,
        spec: str,
        *,
        kwargs: dict[str, Any],
        labels: str,
        class_names: tuple[str, ...] | None,
        batch_size: int,
        limit: int | None,
        task: str = "classification",
    ) -> None:
        self.spec = spec
        self.task = task
        self.where = f"data factory {spec!r}"
        self.kwargs = kwargs
        self.labels = labels
        self.class_names = class_names
        self.batch_size = batch_size
        self.limit = limit
        self.source = make_source(spec, kwargs=kwargs)
        self.num_samples: int | None = self._known_length()
        self._used = False

    def _known_length(self) -> int | None:
        if not _is_map_dataset(self.source):
            return None
        try:
            length = len(self.source)
        except TypeError as err:
            raise DataError(
                f"{self.where}: its Dataset has no __len__; a map-style Dataset needs one "
                f"(or return an IterableDataset)"
            ) from err
        if length == 0:
            raise DataError(f"{self.where}: no samples (its Dataset has length 0)")
        return length if self.limit is None else min(length, self.limit)

    def batches(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for inputs, labels, _ in self.batches_with_meta():
            yield inputs, labels

    def batches_with_meta(self, *, owns: Callable[[int], bool] | None = None) -> Iterator[Any]:
        """(inputs, labels, meta) per batch; with `owns` (a shard's batch test), another shard's batch is a
        `Skipped(size)` in its place where the source can be indexed (the module docstring says which)."""
        seen = 0
        for index, raw in enumerate(self._raw_batches(owns)):
            if isinstance(raw, Skipped):
                size = raw.size if self.limit is None else min(raw.size, self.limit - seen)
                seen += size
                if size:
                    yield Skipped(size), None, None
                if self.limit is not None and seen >= self.limit:
                    break
                continue
            where = f"{self.where}: batch {index} (samples from {seen})"
            inputs, labels, meta = self._split(raw, where=where)
            if self.limit is not None and seen + len(labels) > self.limit:
                keep = self.limit - seen
                inputs, labels = take_first(inputs, keep), labels[:keep]
                meta = BatchMeta(texts=meta.texts[:keep] if meta.texts is not None else None,
                                 fields={k: v[:keep] for k, v in meta.fields.items()})
            seen += len(labels)
            if len(labels):
                yield inputs, labels, meta
            if self.limit is not None and seen >= self.limit:
                break
        if seen == 0:
            raise DataError(f"{self.where}: no samples (it yielded no batches)")

    def _fresh_source(self) -> Any:
        # A generator can be read only once: a second pass calls the factory again for a new one.
        if self._used and iter(self.source) is self.source:
            self.source = make_source(self.spec, kwargs=self.kwargs)
        self._used = True
        return self.source

    def _raw_batches(self, owns: Callable[[int], bool] | None = None) -> Iterator[Any]:
        source = self._fresh_source()
        iterator = self._seeking(source, owns) if owns is not None else None
        if iterator is None:
            if _is_map_dataset(source) or _is_sample_stream(source):
                source = self._loader(source)
            iterator = iter(source)
        index = 0
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                return
            except GateError:
                raise
            except Exception as err:
                raise DataError(
                    f"{self.where}: reading batch {index} failed: {type(err).__name__}: {err}"
                ) from err
            yield raw
            index += 1

    def _seeking(self, source: Any, owns: Callable[[int], bool]) -> Iterator[Any] | None:
        """Raw batches with `Skipped(size)` for the batches `owns` refuses, their samples untouched; None where the
        source cannot be indexed (it is then read whole)."""
        from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

        if _is_map_dataset(source):
            n, size = self.num_samples or 0, self.batch_size
            return _owned_batches(source, [range(s, min(s + size, n)) for s in range(0, n, size)], owns, {})
        if isinstance(source, (list, tuple)):
            return (raw if owns(i) else Skipped(self._rows_of(raw, index=i)) for i, raw in enumerate(source))
        if (type(source) is DataLoader and _is_map_dataset(source.dataset)
                and type(source.batch_sampler) is BatchSampler and type(source.sampler) is SequentialSampler):
            options = {"num_workers": source.num_workers, "collate_fn": source.collate_fn,
                       "pin_memory": source.pin_memory, "timeout": source.timeout,
                       "worker_init_fn": source.worker_init_fn, "multiprocessing_context": source.multiprocessing_context,
                       "generator": source.generator, "prefetch_factor": source.prefetch_factor,
                       "persistent_workers": source.persistent_workers, "pin_memory_device": source.pin_memory_device}
            if hasattr(source, "in_order"):
                options["in_order"] = source.in_order
            return _owned_batches(source.dataset, list(source.batch_sampler), owns, options)
        return None

    def _rows_of(self, raw: Any, *, index: int) -> int:
        """Another shard's ready batch: its size from its labels' length, nothing converted (the owner checks it);
        a batch whose size cannot be read so is split as the owner would split it, raising its error."""
        try:
            if isinstance(raw, Mapping):
                return len(raw[self._label_key(raw, where=f"{self.where}: batch {index}")])
            if isinstance(raw, (tuple, list)) and len(raw) == 2:
                return len(raw[1])
        except TypeError:
            pass
        return len(self._split(raw, where=f"{self.where}: batch {index}")[1])

    def _loader(self, dataset: Any) -> Any:
        from torch.utils.data import DataLoader, Subset

        if self.num_samples is not None and self.num_samples < len(dataset):
            dataset = Subset(dataset, range(self.num_samples))
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def _split(self, raw: Any, *, where: str) -> tuple[Any, torch.Tensor, BatchMeta]:
        raw_meta: Any = None
        if isinstance(raw, Mapping):
            key = self._label_key(raw, where=where)
            inputs: Any = {k: v for k, v in raw.items() if k not in (key, "meta")}
            label_values = raw[key]
            raw_meta = raw.get("meta")
        elif isinstance(raw, (tuple, list)) and len(raw) == 2:
            inputs, label_values = raw
            if isinstance(inputs, list):
                inputs = tuple(inputs)
        else:
            found = f"a {type(raw).__name__} of {len(raw)}" if isinstance(raw, (tuple, list)) else type(raw).__name__
            raise DataError(
                f"{where}: expected (inputs, labels) or a dict with a {self.labels!r} key, found {found}; "
                f"Dataset samples must be (inputs, label) pairs or dicts"
            )
        labels = task_labels_tensor(label_values, task=self.task, class_names=self.class_names, where=f"{where}, labels")
        rows = batch_rows(inputs)
        if rows and rows != {len(labels)}:
            raise DataError(
                f"{where}: inputs have {sorted(rows)} rows but there are {len(labels)} labels; "
                f"each batch needs one input row per label"
            )
        return inputs, labels, self._meta(raw_meta, rows=len(labels), where=where)

    @staticmethod
    def _meta(raw_meta: Any, *, rows: int, where: str) -> BatchMeta:
        if raw_meta is None:
            return BatchMeta()
        if not isinstance(raw_meta, Mapping):
            raise DataError(f"{where}: meta must be a mapping of field -> values, found {type(raw_meta).__name__}")
        fields = {str(k): meta_values(v, rows=rows, where=f"{where}, meta {k!r}") for k, v in raw_meta.items()}
        text = fields.get("text")
        texts = tuple(text) if text is not None and all(isinstance(t, str) for t in text) else None
        return BatchMeta(texts=texts, fields=fields)

    def _label_key(self, raw: Mapping[str, Any], *, where: str) -> str:
        candidates = (self.labels, *LABEL_FALLBACKS) if self.labels == "labels" else (self.labels,)
        for key in candidates:
            if key in raw:
                return key
        raise DataError(
            f"{where}: no label key (tried {', '.join(repr(c) for c in candidates)}; "
            f"found: {names_list(list(raw))}); set data.labels in gate.yaml"
        )


def _owned_batches(dataset: Any, batches: list[Any], owns: Callable[[int], bool],
                   options: dict[str, Any]) -> Iterator[Any]:
    """Batch i of `batches` (lists of sample indices), collated by a DataLoader over the owned ones only, or
    `Skipped(len)` where `owns(i)` is false: the others' samples are never fetched."""
    from torch.utils.data import DataLoader

    owned = [list(b) for i, b in enumerate(batches) if owns(i)]
    loaded = iter(DataLoader(dataset, batch_sampler=owned, **options))
    for i, indices in enumerate(batches):
        yield next(loaded) if owns(i) else Skipped(len(indices))


def object_label(source: Any) -> str:
    """How the caller's own data object is named in messages and in the report."""
    return f"<in-memory {type(source).__name__}>"


class ObjectReader(FactoryReader):
    """The caller's own Dataset, DataLoader or iterable of batches (the Python API), read as a factory's result is."""

    def __init__(
        self,
        source: Any,
        *,
        labels: str,
        class_names: tuple[str, ...] | None,
        batch_size: int,
        limit: int | None,
        task: str = "classification",
    ) -> None:
        self.spec = object_label(source)
        self.task = task
        self.where = f"data {self.spec}"
        self.kwargs = {}
        self.labels = labels
        self.class_names = class_names
        self.batch_size = batch_size
        self.limit = limit
        if not _is_map_dataset(source) and not isinstance(source, Iterable):
            raise DataError(
                f"{self.where}: expected a path, a torch Dataset, a DataLoader or an iterable of (inputs, labels) "
                "batches"
            )
        self.source = source
        self.num_samples = self._known_length()
        self._used = False

    def _fresh_source(self) -> Any:
        if self._used and iter(self.source) is self.source:
            raise DataError(f"{self.where}: a one-shot iterator can be read only once; pass a list, a Dataset or "
                            "a DataLoader")
        self._used = True
        return self.source
