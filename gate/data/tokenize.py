"""Turn a batch of texts into model inputs: a Hugging Face tokenizer, or a user's 'pkg.mod:callable'.

Where the tokenizer comes from, first match wins:
  1. data.tokenizer in gate.yaml: a tokenizer directory (AutoTokenizer.from_pretrained, local files only),
     or 'package.module:callable' called once with no arguments, returning a tokenizer or a callable
     texts -> dict of tensors;
  2. the tokenizer of a Hugging Face model directory (passed in by the runner).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gate.data._common import import_callable, is_callable_spec
from gate.errors import DataError, require

if TYPE_CHECKING:
    import torch

_HOW_TO_PROVIDE = (
    "text data needs a tokenizer: set data.tokenizer in gate.yaml to a Hugging Face tokenizer directory "
    "or to package.module:callable, or use a Hugging Face model directory that contains its tokenizer"
)


class HFEncoder:
    """A Hugging Face tokenizer called per batch: padding to the longest text, truncation at max_length."""

    def __init__(self, tokenizer: Any, *, max_length: int, name: str) -> None:
        if getattr(tokenizer, "pad_token", None) is None:
            raise DataError(
                f"tokenizer {name}: has no padding token, so a batch of texts of different lengths cannot be "
                f"padded; set pad_token in its tokenizer_config.json"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name

    def __call__(self, texts: list[str], *, where: str) -> dict[str, torch.Tensor]:
        try:
            encoded = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        except Exception as err:
            raise DataError(f"{where}: tokenizer {self.name} failed: {type(err).__name__}: {err}") from err
        return dict(encoded.items())


def tokenizer_fingerprint(tokenizer: Any) -> Any:
    """What decides a tokenizer's output as gate calls it (`padding=True, truncation=True, max_length=data.max_length`,
    HFEncoder): a fast tokenizer's serialised pipeline (normaliser, pre-tokeniser, vocabulary,
    post-processor, added tokens) without the truncation and padding state a call sets, with its wrapper's special
    tokens and sides; a slow one's class, vocabulary, scalar settings, special tokens and sides; anything else is
    itself. Not model_max_length (an explicit max_length overrides it) for a fast one."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    special = sorted((str(k), str(v)) for k, v in (getattr(tokenizer, "special_tokens_map", None) or {}).items())
    sides = (getattr(tokenizer, "padding_side", None), getattr(tokenizer, "truncation_side", None))
    if backend is not None and hasattr(backend, "to_str"):
        pipeline = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        return ("fast", type(tokenizer).__name__, json.dumps(pipeline, sort_keys=True), special, sides)
    vocab = getattr(tokenizer, "get_vocab", None)
    if callable(vocab):             # a slow tokenizer's behaviour also lives in its settings (do_lower_case, ...)
        settings = sorted((k, v) for k, v in (getattr(tokenizer, "init_kwargs", None) or {}).items()
                          if isinstance(v, (str, int, float, bool)) or v is None)
        return ("slow", type(tokenizer).__name__, sorted(vocab().items()), settings, special, sides)
    return ("object", id(tokenizer))


class CallableEncoder:
    """A user's callable texts -> dict of tensors; its output is checked so a mistake names the tokenizer."""

    def __init__(self, fn: Any, *, name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, texts: list[str], *, where: str) -> dict[str, torch.Tensor]:
        import torch

        try:
            encoded = self.fn(texts)
        except Exception as err:
            raise DataError(f"{where}: tokenizer {self.name} failed: {type(err).__name__}: {err}") from err
        if not isinstance(encoded, Mapping) or not encoded:
            raise DataError(
                f"{where}: tokenizer {self.name} returned {type(encoded).__name__}, "
                f"expected a dict of tensors (e.g. input_ids, attention_mask)"
            )
        for key, val in encoded.items():
            if not isinstance(val, torch.Tensor) or val.ndim == 0 or val.shape[0] != len(texts):
                found = f"shape {tuple(val.shape)}" if isinstance(val, torch.Tensor) else type(val).__name__
                raise DataError(
                    f"{where}: tokenizer {self.name} returned {key!r} as {found}, "
                    f"expected a tensor with one row per text ({len(texts)})"
                )
        return dict(encoded)


def is_hf_tokenizer(obj: Any) -> bool:
    """True for a transformers tokenizer; transformers is only consulted if something already imported it."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(obj, transformers.PreTrainedTokenizerBase)


def resolve_encoder(*, option: str | None, tokenizer: Any | None, max_length: int) -> HFEncoder | CallableEncoder:
    """The encoder for text data, from data.tokenizer first, then the model's tokenizer; DataError if neither."""
    if option:
        return _encoder_from_option(option, max_length=max_length)
    if tokenizer is not None:
        return _encoder_from_object(tokenizer, max_length=max_length, name="of the model")
    raise DataError(_HOW_TO_PROVIDE)


def _encoder_from_option(option: str, *, max_length: int) -> HFEncoder | CallableEncoder:
    if os.path.isdir(option):
        return HFEncoder(load_hf_tokenizer(option), max_length=max_length, name=option)
    if is_callable_spec(option):
        factory = import_callable(option, what="tokenizer")
        try:
            made = factory()
        except Exception as err:
            raise DataError(
                f"tokenizer {option!r}: calling it failed ({type(err).__name__}: {err}); it must take no "
                f"arguments and return a tokenizer or a callable texts -> dict of tensors"
            ) from err
        return _encoder_from_object(made, max_length=max_length, name=repr(option))
    raise DataError(
        f"tokenizer {option!r}: not a directory and not package.module:callable; {_HOW_TO_PROVIDE}"
    )


def _encoder_from_object(obj: Any, *, max_length: int, name: str) -> HFEncoder | CallableEncoder:
    if is_hf_tokenizer(obj):
        return HFEncoder(obj, max_length=max_length, name=name)
    if not callable(obj):
        raise DataError(f"tokenizer {name}: got a {type(obj).__name__}, expected a callable texts -> dict of tensors")
    return CallableEncoder(obj, name=name)


def load_hf_tokenizer(directory: str) -> Any:
    """AutoTokenizer from a local directory (never the network); DataError naming the directory if it fails."""
    from gate.models.huggingface import import_transformers

    transformers = import_transformers(purpose=f"Loading the tokenizer in {directory}")
    try:
        return transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as err:
        raise DataError(
            f"tokenizer {directory}: cannot load a Hugging Face tokenizer from this directory "
            f"(expected tokenizer.json / tokenizer_config.json): {type(err).__name__}: {err}"
        ) from err
