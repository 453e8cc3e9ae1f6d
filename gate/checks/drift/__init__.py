"""Activation drift: compare what the two models compute inside, layer by layer, and name the first layer that drifted.

The runner hooks the modules `activation_layers()` names in both models during the one evaluation pass and hands the
raw module outputs to `update()`. Each output is split into named tensor parts (`lstm[0]`, `lstm[1][0]`,
`encoder[last_hidden_state]`), each part is turned into per-sample features (B, F), buffered for a few batches (bounded
by `buffer_mb`) and folded into float64 sums in one vectorised step: memory is O(layers x features) plus the fixed
buffers, whatever the number of samples (see docs/checks/drift.md).

Feature rule per part (batch dimension first):
- (B,) -> (B, 1); (B, F) as is;
- (B, T, H) -> mean over T (masked by the batch's `attention_mask` when its shape is (B, T)), because the sequence
  length changes between batches and a per-token flatten would not line features up; blocks that end in a
  channel-mixing module (Conv1d, BatchNorm1d: `part_layout` reads the module tree and the shape) are (B, C, L) or
  (B, L, C) and are averaged over L instead; `layout:` overrides this per module;
- (B, C, H, W) and higher -> flattened C*H*W (images have a fixed size; the spatial layout is part of the signal);
  (B, H, W, C) after a Linear/LayerNorm over the channels is moved channels-first;
- recurrent states h_n/c_n (L*D, B, H) -> batch moved first, then flattened.
Linear CKA uses the same features, except image-like parts, which it sees as channel means (B, C).

The output layer's (B, K) features are class scores (`layout.class_modules`: the model's last Linear when it has K
outputs, or a block ending in it): the candidate's columns are put in the baseline's class order by the map the
forward pass uses (RunContext.classes.columns) before they are compared, and the layer says so (`class_columns`).

Files, one idea each: `layout` (which modules are hooked, tensor parts, layouts and per-sample features), `state`
(the streamed sums and the fold), `figures` (plain floats from a layer's state), `rules` (options, thresholds,
findings), `tables` (summary, tables, chart), `check` (the Check that ties them to the run's one pass).
"""
from __future__ import annotations

from gate.checks.drift.check import DriftCheck
from gate.checks.drift.figures import (
    db_from_rel_l2,
    hist_quantile,
    layer_figures,
    linear_cka,
    psi,
    side_figures,
    sqnr_db,
)
from gate.checks.drift.layout import (
    LAYOUTS,
    LayoutHints,
    PartFeatures,
    attention_mask,
    batch_dim,
    class_modules,
    default_layer_names,
    evenly_spaced,
    features,
    glob_match,
    glob_regex,
    is_quantized_module,
    layout_hints,
    output_layer,
    part_layout,
    pooled_mean,
    select_layers,
    tensor_parts,
)
from gate.checks.drift.rules import (
    METRICS,
    THRESHOLD_KEYS,
    DriftOptions,
    Rule,
    drift_options,
    judge_layer,
    layout_for,
    reported_findings,
    thresholds_for,
)
from gate.checks.drift.state import (
    COS_DISTANCE_EDGES,
    REL_L2_EDGES,
    Buffer,
    CkaState,
    LayerState,
    Rows,
    SideState,
    bin_counts,
    cka_features,
    fix_psi_edges,
    fold,
    fold_samples,
    linear_quantiles,
    nbytes,
    new_cka,
    pair_figures,
    psi_edges,
    psi_stride,
    rows_of,
    update_cka,
    update_side,
)

__all__ = [
    "COS_DISTANCE_EDGES", "LAYOUTS", "METRICS", "REL_L2_EDGES", "THRESHOLD_KEYS", "Buffer", "CkaState", "DriftCheck",
    "DriftOptions", "LayerState", "LayoutHints", "PartFeatures", "Rows", "Rule", "SideState", "attention_mask",
    "batch_dim", "bin_counts", "cka_features", "class_modules", "db_from_rel_l2", "default_layer_names", "drift_options",
    "evenly_spaced", "features", "fix_psi_edges", "fold", "fold_samples", "glob_match", "glob_regex", "hist_quantile",
    "is_quantized_module", "judge_layer", "layer_figures", "layout_for", "layout_hints", "linear_cka",
    "linear_quantiles", "nbytes", "new_cka", "output_layer", "pair_figures", "part_layout", "pooled_mean", "psi", "psi_edges",
    "psi_stride", "reported_findings", "rows_of", "select_layers", "side_figures", "sqnr_db", "tensor_parts",
    "thresholds_for", "update_cka", "update_side",
]
