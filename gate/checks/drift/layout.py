"""Capture and layout: which modules drift hooks, how each output splits into tensor parts, where a part's batch
and feature axes are (from the module tree, the tensor's shape, or `layout:`), and its per-sample features."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch

_POOL_BYTES = 16 * 2**20             # float64 bytes of one block of samples pooled at a time (on the device)
_MAX_PART_DEPTH = 4                  # nested tuples/dicts deeper than this are not searched for tensors


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Module-name glob: `*` stays inside one dotted segment, `**` crosses dots, `?` is one character.

    Brackets are literal, so `lstm[1][0]` names a tensor part. Example: `encoder.layer.*` matches
    `encoder.layer.3` but not `encoder.layer.3.attention`; `encoder.**` matches both.
    """
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def glob_match(pattern: str, name: str) -> bool:
    return glob_regex(pattern).fullmatch(name) is not None


def _split_pattern(pattern: str) -> tuple[str, str | None]:
    """`lstm[1]*` -> ("lstm", "[1]*"): a module glob and an optional glob over the part suffix."""
    cut = pattern.find("[")
    return (pattern, None) if cut < 0 else (pattern[:cut], pattern[cut:])


# ------------------------------------------------------------------------------------------ layer selection


def _is_stack(module: Any) -> bool:
    import torch.nn as nn

    return isinstance(module, (nn.ModuleList, nn.Sequential, nn.ModuleDict))


def _owns_state(module: Any) -> bool:
    """Parameters, buffers, or torch.ao quantized weights (packed parameters are neither: a dynamic int8 Linear
    would otherwise drop out of the default layers, and its float counterpart with it)."""
    if next(module.parameters(), None) is not None or next(module.buffers(), None) is not None:
        return True
    return is_quantized_module(module)


def is_quantized_module(module: Any) -> bool:
    """A torch.ao quantized module (dynamic or static), or one holding a packed-parameter submodule."""
    if _is_quantized_type(module):
        return True
    return any("PackedParams" in type(m).__name__ for m in module.modules())


def _is_quantized_type(module: Any) -> bool:
    """The module itself is one of torch.ao's quantized modules (its weights packed inside it: one block)."""
    kind = type(module).__module__
    return kind.startswith(("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized"))


def _is_rnn(module: Any) -> bool:
    """nn.RNN/LSTM/GRU, and their torch.ao dynamic int8 versions (which do not derive from nn.RNNBase)."""
    import torch.nn as nn

    if isinstance(module, nn.RNNBase):
        return True
    return is_quantized_module(module) and all(
        hasattr(module, a) for a in ("hidden_size", "num_layers", "bidirectional", "batch_first")
    )


def default_layer_names(root: Any) -> list[str]:
    """The model's blocks: items of every ModuleList/Sequential on the way down, and the stateful modules beside them.

    Descends through modules that contain a stack (ModuleList, Sequential, ModuleDict); takes a stack's items as
    blocks; takes any other child that owns parameters or buffers as one block (parameter-free ReLU, Dropout,
    pooling are skipped: they repeat their neighbour). BERT + head gives `bert.embeddings`,
    `bert.encoder.layer.0..11`, `bert.pooler`, `classifier`; an LSTM classifier `embedding`, `lstm`, `fc`.
    A model without children is its own single block (name "").
    """
    return _blocks(root, "") or [""]


def _blocks(module: Any, prefix: str) -> list[str]:
    children = list(module.named_children())
    if _is_stack(module):
        return [f"{prefix}{name}" for name, child in children if _owns_state(child)]
    out: list[str] = []
    for name, child in children:
        if _is_quantized_type(child):
            out.append(f"{prefix}{name}")       # a quantized LSTM keeps its packed weights in a ModuleList
        elif any(_is_stack(m) for m in child.modules()):
            out.extend(_blocks(child, f"{prefix}{name}."))
        elif _owns_state(child):
            out.append(f"{prefix}{name}")
    return out


def select_layers(root: Any, patterns: tuple[str, ...] | None) -> list[str]:
    """Module names to hook: the default blocks, or every module (not the root) whose name matches a glob."""
    if patterns is None:
        return default_layer_names(root)
    regexes = [glob_regex(_split_pattern(p)[0]) for p in patterns]
    return [name for name, _ in root.named_modules() if name and any(r.fullmatch(name) for r in regexes)]


def evenly_spaced(names: list[str], limit: int) -> list[str]:
    """At most `limit` names, spread over the list, first and last kept (the input end and the output end)."""
    if len(names) <= limit:
        return list(names)
    idx = sorted({int(round(i)) for i in np.linspace(0, len(names) - 1, limit)})
    return [names[i] for i in idx]


def _linear_width(module: Any) -> int | None:
    """out_features of an nn.Linear or a torch.ao quantized Linear; None for any other module."""
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if _is_quantized_type(module) and isinstance(getattr(module, "out_features", None), int):
        return int(module.out_features)
    return None


def output_layer(root: Any, classes: int) -> str | None:
    """The model's output layer: its last Linear (in registration order) when that Linear has `classes` outputs.

    Only the last one: a hidden Linear that happens to have K units (a binary model's 2-unit layer before its one
    logit) is not the class axis, and a model whose last Linear is something else is compared by position.
    """
    last: tuple[str, int] | None = None
    for name, module in root.named_modules():
        width = _linear_width(module)
        if width is not None:
            last = (name, width)
    return last[0] if last is not None and last[1] == classes else None


def class_modules(root: Any, names: list[str], classes: int, *, layer_only: bool = False) -> set[str]:
    """The hooked modules whose output's feature axis is the class axis: the output layer itself, or a block
    (the root included) whose last feature- or channel-mixing module is the output layer (`classifier` of a
    RobertaClassificationHead: dense, dropout, out_proj). `layer_only`: the output layer itself, no block (a
    binary model's one logit: a block may end in a sigmoid, whose output is not the logit)."""
    head = output_layer(root, classes)
    if head is None:
        return set()
    out = set()
    for name in names:
        if name == head:
            out.add(name)
        elif not layer_only and (name == "" or head.startswith(name + ".")):
            last = None
            for sub, module in root.get_submodule(name).named_modules(prefix=name):
                if _linear_width(module) is not None or _feature_count(module) is not None \
                        or _channel_count(module) is not None:
                    last = sub
            if last == head:
                out.add(name)
    return out


# --------------------------------------------------------------------------------------- tensors -> features


LAYOUTS = ("auto", "sequence", "channels_first", "channels_last", "flat")


@dataclass(frozen=True)
class LayoutHints:
    """What the module tree says about where the batch dimension is and which axis holds the features."""

    rnn: bool = False                 # nn.RNN/LSTM/GRU: output[0] follows batch_first, states are (L*D, B, H)
    batch_first: bool = True          # False: 3-D outputs are (T, B, H) (nn.LSTM, nn.MultiheadAttention defaults)
    channels: int | None = None       # the last channel-mixing module (Conv*, BatchNorm*, ...) makes this many channels
    features: int | None = None       # the last feature-mixing module (Linear, LayerNorm, ...) makes this many features
    channels_last_feature: bool = False   # the feature-mixing module came after the channel-mixing one
    layout: str = "auto"              # `layout:` from the config for this module: overrides what the tree says


def _channel_count(module: Any) -> int | None:
    """Output channels of a module that works on (B, C, ...) tensors; None for any other module."""
    import torch.nn as nn

    if isinstance(module, nn.modules.conv._ConvNd) or (
        is_quantized_module(module) and isinstance(getattr(module, "out_channels", None), int)
    ):
        return int(module.out_channels)
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return int(module.num_features)
    if isinstance(module, nn.GroupNorm):
        return int(module.num_channels)
    return None


def _feature_count(module: Any) -> int | None:
    """Output width of a module that works on the last axis (B, ..., F); None for any other module."""
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.Embedding):
        return int(module.embedding_dim)
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return int(module.normalized_shape[0])
    if isinstance(module, nn.MultiheadAttention):
        return int(module.embed_dim)
    if _is_rnn(module):
        return int(module.hidden_size * (2 if module.bidirectional else 1))
    if is_quantized_module(module) and isinstance(getattr(module, "out_features", None), int):
        return int(module.out_features)          # torch.ao quantized Linear
    return None


def layout_hints(module: Any, layout: str = "auto") -> LayoutHints:
    """Hints from the module and its descendants (registration order, which is forward order in nearly all models)."""
    batch_first = True
    for sub in module.modules():    # itself first, then descendants (TransformerEncoderLayer.self_attn)
        flag = getattr(sub, "batch_first", None)
        if isinstance(flag, bool):
            batch_first = flag
            break
    channels = features = None
    feature_after = False
    for sub in module.modules():
        c, f = _channel_count(sub), _feature_count(sub)
        if c is not None:
            channels, feature_after = c, False
        if f is not None:
            features, feature_after = f, True
    return LayoutHints(
        rnn=_is_rnn(module), batch_first=batch_first, channels=channels, features=features,
        channels_last_feature=feature_after and channels is not None, layout=layout,
    )


def part_layout(shape: tuple[int, ...], hints: LayoutHints) -> str:
    """The layout of a batch-first tensor part of `shape`: the configured one, else read off the module tree.

    (B, C, L) with C the channels of the block's last Conv/BatchNorm is channels_first (pooled over L); (B, L, C)
    with C there, or a Linear/LayerNorm after the convolutions making the last axis, is channels_last; anything
    else 3-D is a (B, T, H) sequence. 4-D and higher are channels_first (NCHW, whatever the memory format) unless
    the last axis is the width of a feature-mixing module that runs last and dim 1 is not (ConvNeXt-style NHWC).
    """
    if hints.layout != "auto":
        return hints.layout
    last_is_feature = hints.features is not None and (hints.channels is None or hints.channels_last_feature)
    if len(shape) == 3:
        if hints.channels is not None and not last_is_feature:
            if shape[1] == hints.channels:
                return "channels_first"
            if shape[2] == hints.channels:
                return "channels_last"
        return "sequence"
    if len(shape) >= 4 and last_is_feature and shape[-1] == hints.features and shape[1] != hints.features:
        return "channels_last"
    return "channels_first"


def tensor_parts(output: Any, suffix: str = "", depth: int = 0) -> Iterator[tuple[str, tuple, Any]]:
    """(suffix, path, tensor-or-skip-reason) for every tensor inside a module output, in traversal order.

    Dicts and Hugging Face ModelOutputs give `[key]`, tuples and lists `[i]`; None and other values are ignored.
    """
    import torch
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(output, torch.Tensor):
        yield suffix, (), output
        return
    if isinstance(output, PackedSequence):
        yield suffix, (), "a PackedSequence has no per-sample layout"
        return
    if depth >= _MAX_PART_DEPTH:
        return
    if isinstance(output, dict):
        items = list(output.items())
    elif isinstance(output, (tuple, list)):
        items = list(enumerate(output))
    else:
        return
    for key, value in items:
        for sub, path, t in tensor_parts(value, f"{suffix}[{key}]", depth + 1):
            yield sub, (key, *path), t


def batch_dim(t: Any, *, path: tuple, hints: LayoutHints, batch_size: int) -> int | None:
    """Which dimension of `t` indexes the batch's samples; None when none does."""
    shape = tuple(t.shape)
    if hints.rnn:
        dim = 1 if path[:1] == (1,) or not hints.batch_first else 0
        return dim if len(shape) > dim and shape[dim] == batch_size else None
    if not hints.batch_first and len(shape) == 3 and shape[1] == batch_size:
        return 1
    if len(shape) >= 1 and shape[0] == batch_size:
        return 0
    if len(shape) >= 3 and shape[1] == batch_size:
        return 1
    return None


@dataclass(frozen=True)
class PartFeatures:
    """One tensor part's per-sample features: row i of `values` flattened (row-major) is sample i's feature vector.

    `values` is batch-first and keeps the module's own float dtype (and device) where the features are a pure
    reshape of the output, so buffering it is exact and costs one copy; parts reduced by a mean are float64, CPU.
    `channels` is set for (B, C, H, W...) parts, which CKA sees as channel means.
    """

    values: torch.Tensor
    channels: int | None = None

    @property
    def batch(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return math.prod(self.values.shape[1:])

    @property
    def cka_width(self) -> int:
        return self.channels if self.channels is not None else self.width

    def matrix(self) -> torch.Tensor:
        """(B, F) on the CPU in float32 or float64 (half precision widened: exact)."""
        import torch

        x = self.values.reshape(self.batch, -1).to("cpu")
        return x if x.dtype in (torch.float32, torch.float64) else x.float()


def features(
    t: torch.Tensor, *, dim: int, path: tuple, hints: LayoutHints, mask: torch.Tensor | None
) -> PartFeatures:
    """Per-sample features by the module docstring's rule (no copy where they are a reshape of the output).

    Means are taken where the tensor lives, in float64 (see `pooled_mean`); only the (B, F) result goes to the CPU.
    """
    x = t.detach()
    if dim:
        x = x.movedim(dim, 0)
    if x.ndim == 1:
        return PartFeatures(x.reshape(-1, 1))
    if x.ndim == 2:
        return PartFeatures(x)
    is_state = hints.rnn and path[:1] == (1,)
    if is_state:
        return PartFeatures(x)
    layout = part_layout(tuple(x.shape), hints)
    if layout == "flat":
        return PartFeatures(x)
    if x.ndim == 3:
        if layout == "channels_first":
            return PartFeatures(pooled_mean(x.transpose(1, 2), None))
        return PartFeatures(pooled_mean(x, mask if layout == "sequence" else None))
    if layout == "channels_last":
        x = x.movedim(-1, 1)
    return PartFeatures(x, channels=int(x.shape[1]))


def pooled_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) -> (B, H) float64 on the CPU: the mean over T (the positions a (B, T) attention mask keeps).

    Taken on x's device, a block of samples at a time, so the float64 temporary stays under _POOL_BYTES whatever
    the activation's size (a 64 x 512 x 4096 activation is never copied whole to float64 or to the CPU).
    """
    import torch

    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        mask = None
    per_sample = max(1, math.prod(x.shape[1:]) * 8)
    step = max(1, _POOL_BYTES // per_sample)
    out = []
    for start in range(0, int(x.shape[0]), step):
        block = x[start : start + step]
        if mask is None:
            out.append(block.sum(dim=1, dtype=torch.float64) / max(1, int(block.shape[1])))
            continue
        keep = mask[start : start + step].to(device=block.device) > 0
        total = torch.where(keep.unsqueeze(-1), block, torch.zeros((), dtype=block.dtype, device=block.device))
        count = keep.sum(dim=1, dtype=torch.float64).clamp_min(1.0).unsqueeze(-1)
        out.append(total.sum(dim=1, dtype=torch.float64) / count)
    return torch.cat(out).to("cpu")


def attention_mask(inputs: Any) -> torch.Tensor | None:
    if isinstance(inputs, dict):
        mask = inputs.get("attention_mask")
        if mask is not None and getattr(mask, "ndim", 0) == 2:
            return mask
    return None
