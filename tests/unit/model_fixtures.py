"""Tiny models and checkpoint writers for the gate.models tests (every format the loaders accept).

The model code lives in a real module file written to a temporary directory, as a user's would: the
factory tests import it as `name:build`, and whole-module pickles refer to its classes by that name.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

NET_SOURCE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: eval mode changes its outputs (dropout, BN stats)."""

    def __init__(self, in_features: int = 6, hidden: int = 8, num_classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(in_features, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.norm(self.fc(x)))))


def build(in_features: int = 6, hidden: int = 8, num_classes: int = 3):
    return TinyNet(in_features=in_features, hidden=hidden, num_classes=num_classes)


def not_a_module(**kwargs):
    return {"weights": [1, 2, 3]}


def broken(**kwargs):
    raise RuntimeError("the factory exploded")


NOT_CALLABLE = 3
'''


def write_net_module(directory: Path, name: str) -> Path:
    """Write the model code as `directory/name.py`."""
    path = directory / f"{name}.py"
    path.write_text(NET_SOURCE, encoding="utf-8")
    return path


def import_file(path: Path, name: str) -> ModuleType:
    """Import `path` as module `name` and register it (pickles find classes through sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def trained_net(netmod: ModuleType, *, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    """A seeded TinyNet whose BatchNorm running stats moved away from their defaults, in eval mode."""
    torch.manual_seed(seed)
    net = netmod.build(**kwargs)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, net.fc.in_features) * 2 + 1)
    return net.eval()


def sample_input(*, seed: int = 1, rows: int = 5, features: int = 6) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(seed))


def save_torchscript(net: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|save)` is deprecated",
                                category=DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(path))


def save_export(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export with a dynamic batch dimension, as gate's docs recommend (the last batch is usually smaller)."""
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))


def save_safetensors(net: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "very", "good", "bad", "plot",
         "acting", "boring", "great", "not", "."]
TEXTS = ["the movie was very good .", "bad acting , boring plot", "not great", "the plot was not bad ."]


def write_tokenizer(directory: Path) -> Any:
    """A WordPiece tokenizer from VOCAB, wrapped by transformers from a directory we write (no vocab_file=)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {token: i for i, token in enumerate(VOCAB)}
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "BertTokenizerFast", "unk_token": "[UNK]", "pad_token": "[PAD]",
              "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]", "model_max_length": 32}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return tokenizer


def build_hf_dir(directory: Path, *, id2label: dict[int, str] | None, seed: int = 0, base_model: bool = False) -> Any:
    """A tiny BertForSequenceClassification (or bare BertModel) with its tokenizer, saved with save_pretrained."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    source = directory.parent / f"{directory.name}-tokenizer-src"
    raw = write_tokenizer(source)
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(source))
    labels = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=len(id2label) if id2label else 2, **labels,
    )
    torch.manual_seed(seed)
    cls = transformers.BertModel if base_model else transformers.BertForSequenceClassification
    model = cls(config).eval()
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return model, raw


class ExecPayload:
    """Unpickling this runs exec(): it writes `marker`. Saving it only records the call, nothing runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class SystemPayload:
    """Unpickling this runs os.system(): it creates `marker` through a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"echo pwned > '{self.marker}'",))


class Hyperparameters:
    """A harmless custom object, as training code keeps in a checkpoint (argparse.Namespace-like)."""

    def __init__(self, lr: float, hidden: int) -> None:
        self.lr = lr
        self.hidden = hidden
