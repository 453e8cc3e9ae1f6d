"""Activation drift: compare what the two models compute inside, layer by layer, and name the first layer that drifted.

The runner hooks the modules `activation_layers()` names in both models during the one evaluation pass and hands the
raw module outputs to `update()`. Each output is split into named tensor parts (`lstm[0]`, `lstm[1][0]`,
`encoder[last_hidden_state]`), each part is turned into per-sample features (B, F), buffered for a few batches (bounded
by `buffer_mb`) and folded into float64 sums in one vectorised step: memory is O(layers x features) plus the fixed
buffers, whatever the number of samples (see docs/checks/drift.md).

Feature rule per part (batch dimension first):
- (B,) -> (B, 1); (B, F) as is;
- (B, T, H) -> mean over T (masked by the batch's `attention_mask` when its shape is (B, T)), because the sequence
  length changes between batches and a per-token flatten would not line features up; 1-D convolution-style modules
  (Conv1d, BatchNorm1d, pooling 1d) are (B, C, L) and are averaged over L instead;
- (B, C, H, W) and higher -> flattened C*H*W (images have a fixed size; the spatial layout is part of the signal);
- recurrent states h_n/c_n (L*D, B, H) -> batch moved first, then flattened.
Linear CKA uses the same features, except image-like parts, which it sees as channel means (B, C).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from gate.checks.base import ROLES, Check, RunContext, Step
from gate.errors import ConfigError
from gate.report.model import Chart, CheckResult, Finding, Table
from gate.verdict import DecisionSettings, judge

if TYPE_CHECKING:
    import torch

# metric -> (threshold key, rule). Every one is judged per layer, on the point value (no interval: these are
# descriptive figures of the same samples through two models, not estimates of a population quantity).
METRICS: dict[str, tuple[str, str]] = {
    "cosine": ("min_cosine", "min"),
    "rel_l2": ("max_rel_l2", "max"),
    "sqnr_db": ("min_sqnr_db", "min"),
    "psi": ("max_psi", "max"),
    "cka": ("min_cka", "min"),
}
THRESHOLD_KEYS = tuple(key for key, _ in METRICS.values())

_POINT = DecisionSettings(mode="point")
_PER_DECADE = 20                     # per-sample histogram resolution: bins 10**(1/20) = 1.122x wide
_PSI_PRIOR = 0.5                     # Jeffreys pseudo-count per PSI bin: an empty bin on one side stays finite
_PSI_EDGE_SAMPLE = 1_000_000         # at most this many first-batch values fix the PSI bin edges
_PSI_VALUES_PER_BATCH = 8192         # larger batches are binned on an even stride of their values (cost)
_FOLD_BYTES = 2 * 2**20              # float64 bytes per model folded in one step (cache-sized)
_PSI_MIN_PER_BIN = 20                # fewer bins when the first batch has fewer than 20 values per bin
_MAX_PART_DEPTH = 4                  # nested tuples/dicts deeper than this are not searched for tensors
_CHART_LAYERS = 10


def _log_edges(lo_exp: int, hi: float) -> np.ndarray:
    """[0, 10**lo_exp, ..., hi]: an exact-zero bin, then log bins _PER_DECADE per decade up to `hi`."""
    exps = np.arange(lo_exp * _PER_DECADE, math.floor(math.log10(hi) * _PER_DECADE) + 1) / _PER_DECADE
    edges = 10.0 ** exps
    if edges[-1] < hi:
        edges = np.append(edges, hi)
    return np.concatenate(([0.0], edges))


# 1 - cosine lies in [0, 2]; relative L2 in [0, inf) (beyond 1e4 counts as one overflow bin).
COS_DISTANCE_EDGES = _log_edges(-12, 2.0)
REL_L2_EDGES = _log_edges(-12, 1e4)


# --------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    thresholds: dict[str, float | None]


@dataclass(frozen=True)
class DriftOptions:
    """The `checks.drift` section, defaults applied."""

    layers: tuple[str, ...] | None = None
    max_layers: int = 64
    thresholds: dict[str, float | None] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    statistic: str = "mean"
    percentile: float = 5.0
    bins: int = 20
    cka: str = "auto"
    cka_max_features: int = 1024
    severity: str = "fail"
    buffer_rows: int = 4096
    buffer_mb: float = 64.0


_OPTION_KEYS = frozenset({
    "layers", "max_layers", "thresholds", "rules", "statistic", "percentile", "bins", "cka", "cka_max_features",
    "severity", "buffer_rows", "buffer_mb",
})


def drift_options(options: dict[str, Any]) -> DriftOptions:
    """Typed options from the config section; keys missing from `options` take the schema's defaults."""
    merged = options
    if not _OPTION_KEYS <= options.keys() or not set(THRESHOLD_KEYS) <= (options.get("thresholds") or {}).keys():
        from gate.config import check_defaults, deep_merge     # reads the schema files: only when keys are missing

        merged = deep_merge(check_defaults()["drift"], options)
    rules = []
    for i, rule in enumerate(merged.get("rules") or []):
        pats = rule.get("layers")
        pats = (pats,) if isinstance(pats, str) else tuple(pats or ())
        if not pats:
            raise ConfigError(f"checks.drift.rules[{i}].layers: expected a glob or a list of globs, found none")
        rules.append(Rule(patterns=pats, thresholds={k: rule[k] for k in THRESHOLD_KEYS if k in rule}))
    layers = merged.get("layers")
    return DriftOptions(
        layers=tuple(layers) if layers else None,
        max_layers=int(merged["max_layers"]),
        thresholds={k: merged["thresholds"].get(k) for k in THRESHOLD_KEYS},
        rules=tuple(rules),
        statistic=merged["statistic"],
        percentile=float(merged["percentile"]),
        bins=int(merged["bins"]),
        cka=merged["cka"],
        cka_max_features=int(merged["cka_max_features"]),
        severity=merged["severity"],
        buffer_rows=int(merged["buffer_rows"]),
        buffer_mb=float(merged["buffer_mb"]),
    )


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
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


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
        if any(_is_stack(m) for m in child.modules()):
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


# --------------------------------------------------------------------------------------- tensors -> features


@dataclass(frozen=True)
class LayoutHints:
    """What the module's type says about where the batch dimension is and what to average."""

    rnn: bool = False                 # nn.RNN/LSTM/GRU: output[0] follows batch_first, states are (L*D, B, H)
    batch_first: bool = True          # False: 3-D outputs are (T, B, H) (nn.LSTM, nn.MultiheadAttention defaults)
    channels_first_1d: bool = False   # (B, C, L) outputs: average over L, keep channels


def layout_hints(module: Any) -> LayoutHints:
    import torch.nn as nn

    one_d = (
        nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d, nn.AvgPool1d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.LPPool1d,
    )
    batch_first = True
    for sub in module.modules():    # itself first, then descendants (TransformerEncoderLayer.self_attn)
        flag = getattr(sub, "batch_first", None)
        if isinstance(flag, bool):
            batch_first = flag
            break
    return LayoutHints(
        rnn=isinstance(module, nn.RNNBase), batch_first=batch_first, channels_first_1d=isinstance(module, one_d)
    )


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
    """Per-sample features by the module docstring's rule (no copy where they are a reshape of the output)."""
    import torch

    x = t.detach()
    if dim:
        x = x.movedim(dim, 0)
    if x.ndim == 1:
        return PartFeatures(x.reshape(-1, 1))
    if x.ndim == 2:
        return PartFeatures(x)
    is_state = hints.rnn and path[:1] == (1,)
    if x.ndim == 3 and not is_state:
        x = x.to(device="cpu", dtype=torch.float64)        # a mean: taken in float64, as the sums are
        if hints.channels_first_1d:
            return PartFeatures(x.mean(dim=2))
        return PartFeatures(_sequence_mean(x, mask))
    return PartFeatures(x, channels=None if is_state else int(x.shape[1]))


def _sequence_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 (tokens), counting only positions the attention mask keeps when it fits (B, T)."""
    import torch

    if mask is None or tuple(mask.shape) != tuple(x.shape[:2]):
        return x.mean(dim=1)
    keep = mask.to(device="cpu", dtype=torch.float64).unsqueeze(-1)
    total = torch.where(keep > 0, x, torch.zeros((), dtype=x.dtype)).sum(dim=1)
    return total / keep.sum(dim=1).clamp_min(1.0)


def attention_mask(inputs: Any) -> torch.Tensor | None:
    if isinstance(inputs, dict):
        mask = inputs.get("attention_mask")
        if mask is not None and getattr(mask, "ndim", 0) == 2:
            return mask
    return None


# ------------------------------------------------------------------------------------------ streamed state


@dataclass
class SideState:
    """One model's activation statistics at one layer: plain sums, counts and a histogram on fixed edges."""

    width: int
    count: int = 0                  # finite values seen
    total: float = 0.0
    total_sq: float = 0.0
    vmin: float = math.inf
    vmax: float = -math.inf
    nan: int = 0
    inf: int = 0
    alive: np.ndarray | None = None          # (F,) bool: unit ever non-zero
    psi_counts: np.ndarray | None = None     # (len(edges)+1,) int64
    psi_offset: int = 0                      # finite values seen, modulo the PSI stride

    def arrays(self) -> list[np.ndarray]:
        return [a for a in (self.alive, self.psi_counts) if a is not None]


@dataclass
class CkaState:
    """Sums for linear CKA between X (baseline) and Y (candidate): n, sum x, sum y, X'X, Y'Y, X'Y."""

    n: int
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        return [self.sx, self.sy, self.sxx, self.syy, self.sxy]


@dataclass
class Buffer:
    """Both models' features of the batches not yet folded into the sums: fixed-size, preallocated, CPU."""

    base: Any                       # torch.Tensor (capacity, Fb), float32 or float64
    cand: Any                       # torch.Tensor (capacity, Fc)
    rows: int = 0

    @property
    def capacity(self) -> int:
        return int(self.base.shape[0])

    def nbytes(self) -> int:
        return nbytes([self.base, self.cand])


@dataclass
class LayerState:
    """Everything kept about one compared tensor part. Every field but the fixed edges adds up across batches."""

    name: str                       # display name: module name + part suffix
    module: str
    psi_edges: np.ndarray           # fixed from the baseline's first batch (quantiles)
    psi_stride: int                 # every psi_stride-th finite value is binned (fixed from the first batch)
    base: SideState
    cand: SideState
    elementwise: bool               # same width: cosine, rel L2, SQNR apply
    channels: tuple[int | None, int | None] = (None, None)     # image-like parts: CKA on channel means
    samples: int = 0
    pairs: int = 0                  # samples whose features are finite in both models
    cos_sum: float = 0.0
    rel_sum: float = 0.0
    signal: float = 0.0             # sum ||b||^2
    noise: float = 0.0              # sum ||a - b||^2
    cos_hist: np.ndarray | None = None
    rel_hist: np.ndarray | None = None
    cka: CkaState | None = None
    buffer: Buffer | None = None    # not a statistic: rows waiting to be folded in (bounded, see `buffer_mb`)

    def arrays(self) -> list[Any]:
        out: list[Any] = [self.psi_edges, *self.base.arrays(), *self.cand.arrays()]
        out.extend(a for a in (self.cos_hist, self.rel_hist) if a is not None)
        if self.cka is not None:
            out.extend(self.cka.arrays())
        return out


def _fits(f: PartFeatures, buffer: Any) -> bool:
    """Whether `f`'s values copy into `buffer` exactly (a float64 part never goes into a float32 buffer)."""
    return buffer.element_size() >= f.values.element_size()


def nbytes(arrays: list[Any]) -> int:
    total = 0
    for a in arrays:
        total += int(a.nbytes) if isinstance(a, np.ndarray) else int(a.element_size() * a.numel())
    return total


def psi_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the k/bins quantiles (k = 1..bins-1) of the finite values, duplicates merged.

    The bins are (-inf, e1), [e1, e2), ..., [em, inf). A layer with many exact zeros (ReLU) gets fewer bins, and so
    does a narrow layer on a small first batch (at least 20 values per bin: edges between a handful of values would
    read any tiny change as a shift). The quantiles are numpy's default (linear) ones, read off one sort of the
    values, which is several times faster than np.quantile's selection for 19 quantiles.
    """
    v = values.reshape(-1)
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    bins = max(2, min(bins, v.size // _PSI_MIN_PER_BIN))
    if v.size > _PSI_EDGE_SAMPLE:
        v = v[:: math.ceil(v.size / _PSI_EDGE_SAMPLE)]
    if v.size == 0:
        return np.zeros(0)
    return np.unique(linear_quantiles(np.sort(v).astype(np.float64), np.arange(1, bins) / bins))


def linear_quantiles(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile(values, q) (method "linear", bit for bit) from the values already sorted."""
    n = ordered.size
    virtual = (n - 1) * q
    lower = np.floor(virtual)
    gamma = virtual - lower
    lo = lower.astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    lo = np.minimum(lo, n - 1)
    a, b = ordered[lo], ordered[hi]
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1 - gamma))[upper]
    return out


def _new_side(width: int, edges: np.ndarray) -> SideState:
    return SideState(
        width=width, alive=np.zeros(width, dtype=bool), psi_counts=np.zeros(edges.size + 1, dtype=np.int64)
    )


@dataclass(frozen=True)
class Rows:
    """Per-sample sums of one side's features, shared by its statistics and by the pairwise figures."""

    sums: torch.Tensor               # (B,)
    squares: torch.Tensor            # (B,) ||x||^2
    finite: torch.Tensor | None      # (B,) bool, True where the sample's features are all finite; None: all are


def rows_of(x: torch.Tensor) -> Rows:
    """Row sums first: a finite row sum proves the row finite, so the common case needs no element-wise mask."""
    import torch

    sums = x.sum(dim=1)
    squares = torch.linalg.vector_norm(x, dim=1).square()
    if bool(torch.isfinite(sums).all()):
        return Rows(sums, squares, None)
    return Rows(sums, squares, torch.isfinite(x).all(dim=1))


_SIGN_MASK = {np.dtype(np.float32): (np.int32, 0x7FFFFFFF), np.dtype(np.float64): (np.int64, 0x7FFFFFFFFFFFFFFF)}


def update_side(side: SideState, native: torch.Tensor, x: torch.Tensor, rows: Rows, *, edges: np.ndarray,
                stride: int) -> None:
    """Counts, sums, extremes, live units and the PSI histogram of one side's rows (finite values only).

    `x` is the float64 (N, F) matrix the sums are taken on; `native` the same values in their own dtype
    (float32 or float64), on which the exact figures (extremes, live units, PSI bins) are read at half the memory.
    """
    import torch

    if rows.finite is None:
        side.total += float(rows.sums.sum())
        side.total_sq += float(rows.squares.sum())
        vals = native.numpy()
        if vals.size == 0:
            return
        # a unit is alive iff some value has a bit set besides the sign bit (-0.0 == 0): one OR-reduction
        as_int, magnitude = _SIGN_MASK[vals.dtype]
        side.alive |= (np.bitwise_or.reduce(vals.view(as_int), axis=0) & magnitude) != 0
        flat = vals.reshape(-1)
    else:
        finite = torch.isfinite(x)
        side.nan += int(torch.isnan(x).sum())
        side.inf += int(torch.isinf(x).sum())
        side.total += float(x[finite].sum())
        side.total_sq += float(x[finite].square().sum())
        _update_alive(side, x)
        flat = native[finite].numpy()
        if flat.size == 0:
            return
    side.count += int(flat.size)
    side.vmin = min(side.vmin, float(flat.min()))
    side.vmax = max(side.vmax, float(flat.max()))
    start = (-side.psi_offset) % stride
    side.psi_offset = (side.psi_offset + flat.size) % stride
    side.psi_counts += bin_counts(flat[start::stride], edges)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1), [e1, e2), ..., [em, inf): one sort, then one binary search per edge (exact compares)."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate(([0], below, [ordered.size])))


def psi_stride(count: int, width: int) -> int:
    """An even stride giving at most _PSI_VALUES_PER_BATCH values of a batch, coprime with the width (every unit)."""
    stride = math.ceil(count / _PSI_VALUES_PER_BATCH)
    while math.gcd(stride, width) != 1:
        stride += 1
    return stride


def _update_alive(side: SideState, x: torch.Tensor) -> None:
    """Mark units seen non-zero (NaN counts as non-zero); only the still-dead columns are looked at."""
    import torch

    dead = np.flatnonzero(~side.alive)
    if dead.size == side.width:
        side.alive |= (x != 0).any(dim=0).numpy()
    elif dead.size:
        side.alive[dead] |= (x[:, torch.from_numpy(dead)] != 0).any(dim=0).numpy()


def pair_figures(
    a: torch.Tensor, b: torch.Tensor, na2: torch.Tensor, nb2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample cosine, relative L2 ||a-b||/||b|| and ||a-b||^2 (a = candidate, b = baseline; n*2 = squared norms).

    a.b is read off the norms, (||a||^2 + ||b||^2 - ||a-b||^2) / 2, which saves a pass over the rows; in float64 its
    error is ~1e-16 (||a||^2 + ||b||^2), i.e. ~1e-16 in cosine, far below anything judged.
    Zero vectors: both zero -> cosine 1, rel L2 0; only one zero -> cosine 0; b zero and a not -> rel L2 inf.
    """
    import torch

    d2 = torch.linalg.vector_norm(a - b, dim=1).square()
    dot = (na2 + nb2 - d2) * 0.5
    denom = (na2 * nb2).sqrt()
    cos = torch.where(denom > 0, dot / denom.clamp_min(1e-300), (na2 == nb2).to(a.dtype)).clamp(-1.0, 1.0)
    cos = torch.where(d2 == 0, 1.0, cos)      # identical rows: exactly 1, whatever the rounding of the norms
    rel = torch.where(nb2 > 0, (d2 / nb2.clamp_min(1e-300)).sqrt(), torch.where(d2 > 0, math.inf, 0.0))
    return cos, rel, d2


def fold_samples(state: LayerState, per_sample: torch.Tensor) -> None:
    """Add per-sample figures (rows: cosine, rel L2, ||a-b||^2, ||b||^2) to the layer's sums and histograms."""
    cos, rel, d2, nb2 = per_sample.numpy()
    sums = per_sample.sum(dim=1).tolist()
    state.cos_sum += sums[0]
    state.rel_sum += sums[1]
    state.noise += sums[2]
    state.signal += sums[3]
    state.cos_hist += _histogram(np.clip(1.0 - cos, 0.0, 2.0), COS_DISTANCE_EDGES)
    state.rel_hist += _histogram(rel, REL_L2_EDGES)


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in [0, e0], (e0, e1], ... (e_last, inf]: bin k holds e_{k-1} < v <= e_k (torch.bucketize, right=False)."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def new_cka(dx: int, dy: int) -> CkaState:
    return CkaState(
        n=0, sx=np.zeros(dx), sy=np.zeros(dy), sxx=np.zeros((dx, dx)), syy=np.zeros((dy, dy)), sxy=np.zeros((dx, dy))
    )


def cka_features(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """CKA's features: channel means for image-like parts (C, not C*H*W, is what pruning changes), else all."""
    if channels is None:
        return x
    return x.reshape(x.shape[0], channels, -1).mean(dim=2)


def update_cka(cka: CkaState, x: torch.Tensor, y: torch.Tensor) -> None:
    cka.n += int(x.shape[0])
    cka.sx += x.sum(dim=0).numpy()
    cka.sy += y.sum(dim=0).numpy()
    cka.sxx += (x.T @ x).numpy()
    cka.syy += (y.T @ y).numpy()
    cka.sxy += (x.T @ y).numpy()


def fold(state: LayerState, native_b: torch.Tensor, native_c: torch.Tensor) -> None:
    """Add N samples' features (N, F) of both models to the layer's sums, a few vectorised steps per block of rows.

    Blocks of about _FOLD_BYTES of float64 per model: large enough that the per-call overhead vanishes, small enough
    that the float64 copies stay in cache and reuse freed memory (one 10 MB temporary costs more in page faults
    than its arithmetic).
    """
    step = max(1, _FOLD_BYTES // (8 * max(1, native_b.shape[1], native_c.shape[1])))
    for start in range(0, int(native_b.shape[0]), step):
        _fold_block(state, native_b[start : start + step], native_c[start : start + step])


def _fold_block(state: LayerState, native_b: torch.Tensor, native_c: torch.Tensor) -> None:
    import torch

    x_b, x_c = native_b.to(torch.float64), native_c.to(torch.float64)
    rows_b, rows_c = rows_of(x_b), rows_of(x_c)
    update_side(state.base, native_b, x_b, rows_b, edges=state.psi_edges, stride=state.psi_stride)
    update_side(state.cand, native_c, x_c, rows_c, edges=state.psi_edges, stride=state.psi_stride)
    state.samples += int(x_b.shape[0])
    nb2, na2 = rows_b.squares, rows_c.squares
    if rows_b.finite is not None or rows_c.finite is not None:
        # pairwise figures over the samples both models kept finite
        finite = torch.ones(x_b.shape[0], dtype=torch.bool)
        for rows in (rows_b, rows_c):
            if rows.finite is not None:
                finite &= rows.finite
        x_b, x_c, nb2, na2 = x_b[finite], x_c[finite], nb2[finite], na2[finite]
    if x_b.shape[0] == 0:
        return
    if state.cka is not None:
        update_cka(state.cka, cka_features(x_b, state.channels[0]), cka_features(x_c, state.channels[1]))
    state.pairs += int(x_b.shape[0])
    if state.elementwise:
        cos, rel, d2 = pair_figures(x_c, x_b, na2, nb2)
        fold_samples(state, torch.stack((cos, rel, d2, nb2)))


# ------------------------------------------------------------------------------------------ figures


def hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The q-quantile of values binned by `_histogram`; log bins are interpolated geometrically.

    Bin 0 holds exact zeros and bin 1 (0, 1e-12] float64 rounding noise: both read as 0.
    """
    n = int(counts.sum())
    if n == 0:
        return math.nan
    target = q * n
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, target, side="left"))
    if k <= 1:
        return 0.0
    if k >= edges.size:
        return math.inf
    lo, hi = float(edges[k - 1]), float(edges[k])
    frac = (target - float(cum[k - 1])) / float(counts[k])
    if lo <= 0.0:
        return lo + frac * (hi - lo)
    return lo * (hi / lo) ** frac


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(sum ||b||^2 / sum ||a-b||^2), the numeric suite's 20 log10(||b|| / ||a-b||) over the whole data."""
    if noise == 0.0:
        return math.inf if signal > 0 or noise == signal else math.nan
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def db_from_rel_l2(rel: float) -> float:
    """A per-sample SQNR from a per-sample relative L2 error: -20 log10(rel)."""
    if rel == 0.0:
        return math.inf
    if math.isinf(rel):
        return -math.inf
    return -20.0 * math.log10(rel) if rel > 0 else math.nan


def psi(base_counts: np.ndarray, cand_counts: np.ndarray) -> float:
    """Population stability index sum (c - b) ln(c / b) over bin shares, each bin count + 0.5 (Jeffreys prior).

    The pseudo-count keeps a bin that is empty on one side finite, and keeps small samples (a 2-logit head on a
    few dozen samples) from reading as a shift; with thousands of values per layer it changes PSI negligibly.
    """
    nb, nc = base_counts.sum(), cand_counts.sum()
    if nb == 0 or nc == 0:
        return math.nan
    k = base_counts.size
    pb = (base_counts + _PSI_PRIOR) / (nb + _PSI_PRIOR * k)
    pc = (cand_counts + _PSI_PRIOR) / (nc + _PSI_PRIOR * k)
    return float(np.sum((pc - pb) * np.log(pc / pb)))


def linear_cka(state: CkaState) -> float:
    """||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F) on centred cross-products (Kornblith et al. 2019, feature-space form)."""
    n = state.n
    if n < 2:
        return math.nan
    mx, my = state.sx / n, state.sy / n
    cxx = state.sxx - n * np.outer(mx, mx)
    cyy = state.syy - n * np.outer(my, my)
    cxy = state.sxy - n * np.outer(mx, my)
    denom = np.linalg.norm(cxx) * np.linalg.norm(cyy)
    if denom <= 0.0:
        return math.nan
    return float(np.sum(cxy * cxy) / denom)


def side_figures(side: SideState) -> dict[str, Any]:
    n = side.count
    mean = side.total / n if n else math.nan
    var = max(side.total_sq / n - mean * mean, 0.0) if n else math.nan
    return {
        "width": side.width,
        "mean": mean,
        "std": math.sqrt(var) if n else math.nan,
        "min": side.vmin if n else math.nan,
        "max": side.vmax if n else math.nan,
        "dead_fraction": float(1.0 - side.alive.mean()) if side.alive is not None and side.alive.size else math.nan,
        "nan": side.nan,
        "inf": side.inf,
    }


def layer_figures(state: LayerState, *, percentile: float) -> dict[str, Any]:
    """Plain-float figures of one layer (JSON-able; inf/nan stay floats for to_jsonable)."""
    q = 1.0 - percentile / 100.0
    fig: dict[str, Any] = {
        "layer": state.name,
        "module": state.module,
        "samples": state.samples,
        "compared_samples": state.pairs,
        "comparison": "elementwise" if state.elementwise else "cka",
        "baseline": side_figures(state.base),
        "candidate": side_figures(state.cand),
        "psi": psi(state.base.psi_counts, state.cand.psi_counts),
        "psi_bins": int(state.psi_edges.size + 1),
        "cka": linear_cka(state.cka) if state.cka is not None else None,
        "cosine": None,
        "rel_l2": None,
        "sqnr_db": None,
    }
    if state.elementwise and state.pairs:
        rel_tail = hist_quantile(state.rel_hist, REL_L2_EDGES, q)
        fig["cosine"] = {
            "mean": state.cos_sum / state.pairs,
            "tail": 1.0 - hist_quantile(state.cos_hist, COS_DISTANCE_EDGES, q),
        }
        fig["rel_l2"] = {"mean": state.rel_sum / state.pairs, "tail": rel_tail}
        fig["sqnr_db"] = {"pooled": sqnr_db(state.signal, state.noise), "tail": db_from_rel_l2(rel_tail)}
    return fig


# ------------------------------------------------------------------------------------------ judging


def thresholds_for(layer: str, module: str, options: DriftOptions) -> dict[str, float | None]:
    """Global thresholds with every matching rule laid on top, later rules winning (null switches a metric off)."""
    out = dict(options.thresholds)
    for rule in options.rules:
        if any(glob_match(p, layer) or glob_match(p, module) for p in rule.patterns):
            out.update(rule.thresholds)
    return out


def _metric_value(fig: dict[str, Any], metric: str, statistic: str) -> float | None:
    if metric in ("cosine", "rel_l2"):
        entry = fig[metric]
        return None if entry is None else entry[statistic]
    if metric == "sqnr_db":
        entry = fig[metric]
        return None if entry is None else entry["pooled"]
    return fig[metric]


def judge_layer(fig: dict[str, Any], thresholds: dict[str, float | None], options: DriftOptions) -> list[Finding]:
    """Every thresholded metric of one layer, plus a failing finding when either model produced NaN/Inf."""
    layer = fig["layer"]
    found: list[Finding] = []
    bad = {role: fig[role]["nan"] + fig[role]["inf"] for role in ROLES}
    if any(bad.values()):
        found.append(Finding(
            metric="non_finite", rule="max", status="fail", threshold=0.0, value=float(sum(bad.values())),
            baseline=float(bad["baseline"]), candidate=float(bad["candidate"]), margin=-float(sum(bad.values())),
            required=None, where=layer,
            reason=(
                f"{layer}: {bad['baseline']} NaN/Inf activation values in the baseline, {bad['candidate']} in the "
                "candidate; non-finite activations always fail"
            ),
        ))
    for metric, (key, rule) in METRICS.items():
        threshold = thresholds.get(key)
        value = _metric_value(fig, metric, options.statistic)
        if threshold is None or value is None:
            continue
        if rule == "min" and value == math.inf:
            # SQNR of an identical layer: no noise at all, the best possible value (judge() rejects any inf)
            found.append(Finding(
                metric=metric, rule=rule, status="pass", threshold=float(threshold), value=math.inf,
                margin=math.inf, required=math.inf, where=layer, decision="point",
                reason=f"{layer}: {metric}: value inf (no difference at all) is at or above min {_fmt(threshold)}",
            ))
            continue
        f = judge(
            metric=metric, rule=rule, threshold=float(threshold), value=float(value), settings=_POINT, where=layer
        )
        f = dataclasses.replace(f, reason=f"{layer}: {f.reason}")
        if f.status == "fail" and options.severity == "warn" and not math.isnan(float(value)):
            f = dataclasses.replace(f, status="warn")
        found.append(f)
    return found


def _layer_status(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else ("warn" if "warn" in statuses else "pass")


def reported_findings(per_layer: list[list[Finding]]) -> list[Finding]:
    """Every breach, plus for each metric without a breach its tightest pass (closest to the threshold)."""
    flat = [f for fs in per_layer for f in fs]
    breaches = [f for f in flat if f.status != "pass"]
    breached = {f.metric for f in breaches}
    tightest: dict[str, Finding] = {}
    for f in flat:
        if f.status == "pass" and f.metric not in breached:
            best = tightest.get(f.metric)
            if best is None or (f.margin is not None and (best.margin is None or f.margin < best.margin)):
                tightest[f.metric] = f
    return breaches + list(tightest.values())


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def _r(x: Any) -> Any:
    """A table cell: floats rounded to 6 significant digits, None kept."""
    if isinstance(x, float) and math.isfinite(x):
        return float(f"{x:.6g}")
    return x


# ------------------------------------------------------------------------------------------ the check


class DriftCheck(Check):
    """Per-layer activation drift between baseline and candidate, streamed from the run's one pass."""

    name = "drift"
    needs = frozenset({"scores", "activations"})

    # PSI edges and the PSI stride are fixed from the first batch each process sees, so shards would bin on
    # different edges: refused rather than merged wrongly.
    sharding = "its PSI bins are fixed from the first batch a process sees, so shards' histograms do not add up"
    live_baseline = "drift reads the baseline's live activations"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.opts = drift_options(options)
        self._selected: dict[str, list[str]] | None = None
        self._skip: str | None = None
        self._hints: dict[str, dict[str, LayoutHints]] = {role: {} for role in ROLES}
        self._unmatched: dict[str, list[str]] = {role: [] for role in ROLES}
        self._omitted: list[str] = []
        self._layers: dict[str, LayerState] = {}
        self._order: dict[str, None] = {}               # part names, in forward order (first hook call)
        self._skipped_parts: dict[str, str] = {}        # part name -> why it is not compared
        self._unmatched_parts: dict[str, list[str]] = {role: [] for role in ROLES}
        self._called: set[str] = set()
        self._cka_skipped: dict[str, str] = {}          # part name -> why CKA was not computed
        self._patterns = [
            (glob_regex(mod), glob_regex(part) if part is not None else None)
            for mod, part in map(_split_pattern, self.opts.layers or ())
        ]

    # -- selection ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        self._select()

    def activation_layers(self) -> dict[str, list[str]]:
        selected = self._select()
        return {} if self._skip else selected

    def _select(self) -> dict[str, list[str]]:
        if self._selected is not None:
            return self._selected
        self._selected = {role: [] for role in ROLES}
        for role in ROLES:
            model = self.ctx.models[role]
            if not getattr(model, "is_eager", True):
                fmt = getattr(model, "format", "this format")
                self._skip = (
                    f"the {role} ({fmt}) cannot be hooked: activation drift needs an eager nn.Module "
                    "(a state_dict with a factory, a pickled module or a Hugging Face directory), "
                    "not TorchScript or torch.export"
                )
                return self._selected
        roots = {role: self.ctx.models[role].module for role in ROLES}
        names = {role: select_layers(roots[role], self.opts.layers) for role in ROLES}
        if self.opts.layers is not None and not (names["baseline"] or names["candidate"]):
            sample = ", ".join(n for n, _ in list(roots["baseline"].named_modules())[1:9])
            raise ConfigError(
                f"checks.drift.layers: {list(self.opts.layers)} match no module of either model "
                f"(the baseline has e.g. {sample})"
            )
        in_base, in_cand = set(names["baseline"]), set(names["candidate"])
        matched = [n for n in names["baseline"] if n in in_cand]
        self._unmatched = {
            "baseline": [n for n in names["baseline"] if n not in in_cand],
            "candidate": [n for n in names["candidate"] if n not in in_base],
        }
        kept = evenly_spaced(matched, self.opts.max_layers)
        self._omitted = [n for n in matched if n not in set(kept)]
        if not kept:
            self._skip = "no layer is named the same in both models; unmatched layers are listed in the details"
        for role in ROLES:
            for n in kept:
                self._hints[role][n] = layout_hints(roots[role].get_submodule(n))
            self._selected[role] = list(kept)
        return self._selected

    # -- streaming ------------------------------------------------------------------------------------------
    def update(self, step: Step) -> None:
        import torch

        if self._skip or self._selected is None:
            return
        acts = {role: step.activations.get(role, {}) for role in ROLES}
        size = int(step.labels.shape[0])
        mask = attention_mask(step.inputs)
        with torch.no_grad():
            for module in acts["baseline"]:
                if module not in self._hints["baseline"] or module not in acts["candidate"]:
                    continue
                self._called.add(module)
                parts = {
                    role: self._module_features(module, role, acts[role][module], size=size, mask=mask, step=step)
                    for role in ROLES
                }
                for suffix, x_b in parts["baseline"].items():
                    if not self._part_wanted(module, suffix):
                        continue
                    name = module + suffix if module else f"(model){suffix}"
                    self._order.setdefault(name)
                    x_c = parts["candidate"].get(suffix)
                    if x_c is None:
                        if name not in self._unmatched_parts["baseline"]:
                            self._unmatched_parts["baseline"].append(name)
                        continue
                    if isinstance(x_b, str) or isinstance(x_c, str):
                        self._skipped_parts.setdefault(name, x_b if isinstance(x_b, str) else x_c)
                        continue
                    if name in self._skipped_parts:
                        continue
                    self._update_layer(name, module, x_b, x_c, step=step, parts=len(parts["baseline"]))
                for suffix in parts["candidate"]:
                    if not self._part_wanted(module, suffix):
                        continue
                    name = module + suffix if module else f"(model){suffix}"
                    if suffix not in parts["baseline"] and name not in self._unmatched_parts["candidate"]:
                        self._unmatched_parts["candidate"].append(name)

    def _part_wanted(self, module: str, suffix: str) -> bool:
        """A part is compared unless every `layers` glob naming its module also names other parts (`lstm[0]`)."""
        parts = [part for mod, part in self._patterns if mod.fullmatch(module)]
        if not parts or any(part is None for part in parts):
            return True
        return any(part.fullmatch(suffix) for part in parts if part is not None)

    def _module_features(
        self, module: str, role: str, output: Any, *, size: int, mask: Any, step: Step
    ) -> dict[str, Any]:
        """suffix -> PartFeatures, or a string saying why the part cannot be compared."""
        hints = self._hints[role][module]
        out: dict[str, Any] = {}
        for suffix, path, t in tensor_parts(output):
            if isinstance(t, str):
                out[suffix] = t
            elif not t.is_floating_point():
                out[suffix] = f"not a floating-point tensor ({t.dtype})"
            else:
                dim = batch_dim(t, path=path, hints=hints, batch_size=size)
                if dim is None:
                    out[suffix] = (
                        f"shape {tuple(t.shape)} has no dimension of the batch size {size} (batch {step.index})"
                    )
                else:
                    out[suffix] = features(t, dim=dim, path=path, hints=hints, mask=mask)
        return out

    def _update_layer(
        self, name: str, module: str, f_b: PartFeatures, f_c: PartFeatures, *, step: Step, parts: int
    ) -> None:
        state = self._layers.get(name)
        if state is None:
            state = self._new_layer(name, module, f_b, f_c, parts=parts)
            self._layers[name] = state
        for side, f, role in ((state.base, f_b, "baseline"), (state.cand, f_c, "candidate")):
            if f.width != side.width:
                self._skipped_parts[name] = (
                    f"the {role}'s feature width changed from {side.width} to {f.width} at batch {step.index}; "
                    "per-sample features must line up across batches"
                )
                del self._layers[name]
                return
        buf = state.buffer
        if buf is None or f_b.batch > buf.capacity or not _fits(f_b, buf.base) or not _fits(f_c, buf.cand):
            # too big for the buffer (or wider than its dtype): folded at once, after what is waiting
            self._flush(state)
            fold(state, f_b.matrix(), f_c.matrix())
            return
        if buf.rows + f_b.batch > buf.capacity:
            self._flush(state)
        end = buf.rows + f_b.batch
        buf.base[buf.rows : end].view(f_b.values.shape).copy_(f_b.values)
        buf.cand[buf.rows : end].view(f_c.values.shape).copy_(f_c.values)
        buf.rows = end

    def _flush(self, state: LayerState) -> None:
        """Fold the buffered rows into the layer's sums and empty the buffer."""
        buf = state.buffer
        if buf is not None and buf.rows:
            fold(state, buf.base[: buf.rows], buf.cand[: buf.rows])
            buf.rows = 0

    def _new_layer(
        self, name: str, module: str, f_b: PartFeatures, f_c: PartFeatures, *, parts: int
    ) -> LayerState:
        first = f_b.matrix()
        edges = psi_edges(first.numpy(), self.opts.bins)
        wb, wc = f_b.width, f_c.width
        elementwise = wb == wc
        state = LayerState(
            name=name, module=module, psi_edges=edges, base=_new_side(wb, edges), cand=_new_side(wc, edges),
            psi_stride=psi_stride(first.numel(), wb) if first.numel() > _PSI_VALUES_PER_BATCH else 1,
            elementwise=elementwise, channels=(f_b.channels, f_c.channels),
        )
        if elementwise:
            state.cos_hist = np.zeros(COS_DISTANCE_EDGES.size + 1, dtype=np.int64)
            state.rel_hist = np.zeros(REL_L2_EDGES.size + 1, dtype=np.int64)
        if self.opts.cka == "all" or (self.opts.cka == "auto" and not elementwise):
            dx, dy = f_b.cka_width, f_c.cka_width
            if max(dx, dy) <= self.opts.cka_max_features:
                state.cka = new_cka(dx, dy)
            else:
                self._cka_skipped[name] = (
                    f"CKA not computed: {max(dx, dy)} features exceed cka_max_features "
                    f"{self.opts.cka_max_features} (its cross-products take 24 x width^2 bytes)"
                )
        state.buffer = self._new_buffer(f_b, f_c, parts=parts)
        return state

    def _new_buffer(self, f_b: PartFeatures, f_c: PartFeatures, *, parts: int) -> Buffer | None:
        """A buffer of up to buffer_rows rows within this part's share of buffer_mb; None when not one batch fits.

        The share is buffer_mb split evenly over the hooked modules, and over a module's tensor parts.
        """
        import torch

        dtypes = [torch.float64 if f.values.dtype == torch.float64 else torch.float32 for f in (f_b, f_c)]
        row_bytes = sum(f.width * (8 if d == torch.float64 else 4) for f, d in zip((f_b, f_c), dtypes))
        modules = max(1, len(self._selected["baseline"]) if self._selected else 1)
        share = self.opts.buffer_mb * 2**20 / modules / max(1, parts)
        capacity = min(self.opts.buffer_rows, int(share // max(1, row_bytes)))
        if capacity < max(2, f_b.batch):
            return None
        return Buffer(
            base=torch.empty((capacity, f_b.width), dtype=dtypes[0]),
            cand=torch.empty((capacity, f_c.width), dtype=dtypes[1]),
        )

    def state_nbytes(self) -> int:
        """Bytes of the sufficient statistics the check keeps (flat in the number of samples; buffers excluded)."""
        return sum(nbytes(state.arrays()) for state in self._layers.values())

    def buffer_nbytes(self) -> int:
        """Bytes reserved for rows waiting to be folded in: fixed once each layer has seen its first batch."""
        return sum(state.buffer.nbytes() for state in self._layers.values() if state.buffer is not None)
    # -- result ---------------------------------------------------------------------------------------------
    def compute(self) -> CheckResult:
        for state in self._layers.values():
            self._flush(state)
        if self._skip:
            return CheckResult(name=self.name, status="skip", summary=self._skip, details=self._listing())
        if not self._layers:
            why = "no hooked layer produced comparable activations"
            if self._skipped_parts:
                first = next(iter(self._skipped_parts.items()))
                why += f" (e.g. {first[0]}: {first[1]})"
            return CheckResult(name=self.name, status="skip", summary=why, details=self._listing())
        order = [n for n in self._order if n in self._layers]
        figures, per_layer = [], []
        for name in order:
            state = self._layers[name]
            fig = layer_figures(state, percentile=self.opts.percentile)
            fig["cka_note"] = self._cka_skipped.get(name)
            th = thresholds_for(name, state.module, self.opts)
            found = judge_layer(fig, th, self.opts)
            fig["thresholds"] = th
            fig["status"] = _layer_status(found)
            fig["breaches"] = sorted({f.metric for f in found if f.status != "pass"})
            figures.append(fig)
            per_layer.append(found)
        first = next((f for f in figures if f["status"] != "pass"), None)
        findings = reported_findings(per_layer)
        status = _layer_status(findings)
        details = {
            "first_drifting_layer": first["layer"] if first else None,
            "layers": figures,
            "statistic": self.opts.statistic,
            "percentile": self.opts.percentile,
            "state_bytes": self.state_nbytes(),
            "buffer_bytes": self.buffer_nbytes(),
            **self._listing(),
        }
        return CheckResult(
            name=self.name,
            status=status,
            summary=self._summary(figures, first, per_layer),
            findings=tuple(findings),
            tables=(self._drift_table(figures, first), self._stats_table(figures)),
            charts=self._charts(figures),
            details=details,
        )

    def _listing(self) -> dict[str, Any]:
        hooked = self._selected["baseline"] if self._selected else []
        return {
            "unmatched_layers": {role: list(self._unmatched[role]) for role in ROLES},
            "unmatched_parts": {role: list(self._unmatched_parts[role]) for role in ROLES},
            "omitted_layers": list(self._omitted),
            "not_called": [n for n in hooked if n not in self._called],
            "skipped_parts": dict(self._skipped_parts),
        }

    def _summary(
        self, figures: list[dict[str, Any]], first: dict[str, Any] | None, per_layer: list[list[Finding]]
    ) -> str:
        n = len(figures)
        if first is None:
            worst = min(
                (f for f in figures if f["cosine"] is not None), key=lambda f: f["cosine"]["mean"], default=None
            )
            tail = f"; lowest mean cosine {_fmt(worst['cosine']['mean'])} at {worst['layer']}" if worst else ""
            return f"{n} layers compared, all within the drift thresholds{tail}"
        idx = figures.index(first)
        bad = next(f for f in per_layer[idx] if f.status != "pass")
        others = sum(1 for f in figures if f["status"] != "pass") - 1
        more = (f"; {others} later layer{'s also breach' if others != 1 else ' also breaches'}") if others else ""
        return f"drift starts at {first['layer']} (layer {idx + 1} of {n}): {bad.reason.split(': ', 1)[1]}{more}"

    def _drift_table(self, figures: list[dict[str, Any]], first: dict[str, Any] | None) -> Table:
        p = self.opts.percentile
        rows = []
        for i, f in enumerate(figures, 1):
            wb, wc = f["baseline"]["width"], f["candidate"]["width"]
            cos, rel, sq = f["cosine"] or {}, f["rel_l2"] or {}, f["sqnr_db"] or {}
            rows.append((
                i, f["layer"], str(wb) if wb == wc else f"{wb}->{wc}",
                _r(cos.get("mean")), _r(cos.get("tail")), _r(rel.get("mean")), _r(rel.get("tail")),
                _r(sq.get("pooled")), _r(f["psi"]), _r(f["cka"]),
                f["baseline"]["nan"] + f["baseline"]["inf"] + f["candidate"]["nan"] + f["candidate"]["inf"],
                f["status"], "drift starts here" if f is first else "",
            ))
        headers = (
            "#", "layer", "width", "cosine mean", f"cosine p{_fmt(p)}", "rel L2 mean", f"rel L2 p{_fmt(100 - p)}",
            "SQNR dB", "PSI", "CKA", "NaN/Inf", "status", "note",
        )
        return Table(title="Activation drift per layer (forward order)", headers=headers, rows=tuple(rows))

    def _stats_table(self, figures: list[dict[str, Any]]) -> Table:
        rows = []
        for f in figures:
            row: list[Any] = [f["layer"]]
            for role in ROLES:
                s = f[role]
                row.extend([_r(s["mean"]), _r(s["std"]), _r(s["min"]), _r(s["max"]), _r(s["dead_fraction"])])
            rows.append(tuple(row))
        headers = ("layer",) + tuple(
            f"{role} {k}" for role in ROLES for k in ("mean", "std", "min", "max", "dead")
        )
        return Table(title="Activation statistics (baseline, candidate)", headers=headers, rows=tuple(rows))

    def _charts(self, figures: list[dict[str, Any]]) -> tuple[Chart, ...]:
        scored = []
        for f in figures:
            if f["cosine"] is not None:
                drift = 1.0 - f["cosine"]["mean"]
            elif f["cka"] is not None:
                drift = 1.0 - f["cka"]
            else:
                continue
            scored.append((drift if math.isfinite(drift) else 2.0, f["layer"]))
        top = sorted(scored, key=lambda s: -s[0])[:_CHART_LAYERS]
        if not top:
            return ()
        return (Chart(
            title="Top drifting layers: 1 - mean cosine, or 1 - CKA where widths differ",
            labels=tuple(name for _, name in top),
            values=tuple(float(v) for v, _ in top),
            y_label="drift",
        ),)
