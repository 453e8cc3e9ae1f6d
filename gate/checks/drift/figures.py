"""Figures: the plain floats of one layer (cosine, relative L2, SQNR, PSI, CKA, statistics) read off its state."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gate.checks.drift.state import _PSI_PRIOR, COS_DISTANCE_EDGES, REL_L2_EDGES, CkaState, LayerState, SideState


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
        # PSI compares the distributions of values of the same units: only between layers of the same width
        "psi": psi(state.base.psi_counts, state.cand.psi_counts) if state.elementwise else None,
        "psi_bins": int(state.psi_edges.size + 1),
        "cka": linear_cka(state.cka) if state.cka is not None else None,
        # the output layer's columns are classes: matched to the baseline's by name (as the scores are), or by position
        "class_columns": state.class_columns,
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
