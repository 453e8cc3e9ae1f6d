"""Streaming state: per-layer sums, counts and fixed-bin histograms that add up across batches, the bounded
buffers that feed them, and the fold that turns a block of per-sample features into those sums."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gate.checks.drift.layout import PartFeatures

if TYPE_CHECKING:
    import torch

_PER_DECADE = 20                     # per-sample histogram resolution: bins 10**(1/20) = 1.122x wide
_PSI_PRIOR = 0.5                     # Jeffreys pseudo-count per PSI bin: an empty bin on one side stays finite
_FOLD_BYTES = 2 * 2**20              # float64 bytes per model folded in one step (cache-sized)
_PSI_MIN_PER_BIN = 20                # fewer bins when the edge sample has fewer than 20 values per bin
_PSI_EDGE_SAMPLES = 256              # the baseline's first 256 samples fix the PSI bin edges, however they are batched
_PSI_VALUES_PER_SAMPLE = 128         # wider parts are binned on an even stride of their values (cost)


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
    psi_counts: np.ndarray | None = None     # (len(edges)+1,) int64, once the edges are fixed
    psi_offset: int = 0                      # values seen (finite or not), modulo the PSI stride
    psi_pending: list[np.ndarray] = field(default_factory=list)    # sampled values waiting for the edges

    def arrays(self) -> list[np.ndarray]:
        return [a for a in (self.alive, self.psi_counts, *self.psi_pending) if a is not None]


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
    psi_edges: np.ndarray | None    # quantiles of the baseline's first _PSI_EDGE_SAMPLES samples; None until then
    psi_stride: int                 # every psi_stride-th finite value is binned (fixed by the width)
    psi_bins: int
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
    class_columns: str | None = None   # "by_name" | "by_position": the output layer's class columns; None: not those
    buffer: Buffer | None = None    # not a statistic: rows waiting to be folded in (bounded, see `buffer_mb`)

    def arrays(self) -> list[Any]:
        out: list[Any] = [a for a in (self.psi_edges,) if a is not None]
        out.extend([*self.base.arrays(), *self.cand.arrays()])
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
    does a narrow layer on a small data set (at least 20 values per bin: edges between a handful of values would
    read any tiny change as a shift). The quantiles are numpy's default (linear) ones, read off one sort of the
    values, which is several times faster than np.quantile's selection for 19 quantiles.
    """
    v = values.reshape(-1)
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    bins = max(2, min(bins, v.size // _PSI_MIN_PER_BIN))
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


def _new_side(width: int) -> SideState:
    return SideState(width=width, alive=np.zeros(width, dtype=bool))


def fix_psi_edges(state: LayerState) -> None:
    """Edges from the baseline's values sampled so far (its first samples), then every waiting value binned on them."""
    pool = state.base.psi_pending
    state.psi_edges = psi_edges(np.concatenate(pool) if pool else np.zeros(0), state.psi_bins)
    for side in (state.base, state.cand):
        side.psi_counts = np.zeros(state.psi_edges.size + 1, dtype=np.int64)
        for values in side.psi_pending:
            side.psi_counts += bin_counts(values, state.psi_edges)
        side.psi_pending = []


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


def update_side(side: SideState, native: torch.Tensor, x: torch.Tensor, rows: Rows, *, edges: np.ndarray | None,
                stride: int) -> None:
    """Counts, sums, extremes, live units and the PSI histogram of one side's rows (finite values only).

    `x` is the float64 (N, F) matrix the sums are taken on; `native` the same values in their own dtype
    (float32 or float64), on which the exact figures (extremes, live units, PSI bins) are read at half the memory.
    """
    import torch

    # The PSI stride runs over value positions, finite or not: whether a value is binned depends on its place in
    # the data only, so a shard (which never sees the values before its batches) bins the single run's values.
    start = (-side.psi_offset) % stride
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
        sampled = flat[start::stride]
        positions = flat.size
    else:
        finite = torch.isfinite(x)
        side.nan += int(torch.isnan(x).sum())
        side.inf += int(torch.isinf(x).sum())
        side.total += float(x[finite].sum())
        side.total_sq += float(x[finite].square().sum())
        _update_alive(side, x)
        flat = native[finite].numpy()
        every = native.reshape(-1).numpy()
        picked = every[start::stride]
        sampled = picked[np.isfinite(picked)]
        positions = every.size
    side.psi_offset = (side.psi_offset + positions) % stride
    if flat.size == 0:
        return
    side.count += int(flat.size)
    side.vmin = min(side.vmin, float(flat.min()))
    side.vmax = max(side.vmax, float(flat.max()))
    if edges is None:
        side.psi_pending.append(np.array(sampled, copy=True))
    else:
        side.psi_counts += bin_counts(sampled, edges)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1), [e1, e2), ..., [em, inf): one sort, then one binary search per edge (exact compares)."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate(([0], below, [ordered.size])))


def psi_stride(width: int) -> int:
    """An even stride giving at most _PSI_VALUES_PER_SAMPLE values per sample, coprime with the width (every unit).

    It depends on the width only, so the values binned are the same however the data is batched.
    """
    stride = max(1, math.ceil(width / _PSI_VALUES_PER_SAMPLE))
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
    rows = int(native_b.shape[0])
    cuts = set(range(0, rows, step))
    if state.psi_edges is None and 0 < _PSI_EDGE_SAMPLES - state.samples < rows:
        cuts.add(_PSI_EDGE_SAMPLES - state.samples)     # the edges' samples end exactly at a block's end
    bounds = sorted(cuts) + [rows]
    for start, end in zip(bounds, bounds[1:]):
        _fold_block(state, native_b[start:end], native_c[start:end])
        if state.psi_edges is None and state.samples >= _PSI_EDGE_SAMPLES:
            fix_psi_edges(state)


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
