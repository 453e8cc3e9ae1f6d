"""The drift check: selects and matches layers, streams both models' activations into the layer states during the
run's one pass, and assembles the result (see the package docstring).

Sharded (gate.sharding), every shard first primes on the data's first samples (`prime_samples`: the runner feeds
them to `prime()`, both models run on them), so each layer's PSI bin edges are the single run's, fixed before the
shard's own pass; each batch is then folded at once with its PSI sampling offset read off the batch's global
offset (the stride runs over value positions, finite or not: the single run's offset, always). Counts, sums,
histograms, live units and CKA cross-products add up; extremes and what the shard knows of the layers are one
`shard.rows.` row per shard.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gate.checks.base import ROLES, Check, RunContext, Step
from gate.checks.drift.figures import layer_figures
from gate.checks.drift.layout import (
    LayoutHints, PartFeatures, _split_pattern, attention_mask, batch_dim, class_modules, evenly_spaced, features,
    glob_regex, layout_hints, select_layers, tensor_parts,
)
from gate.checks.drift.rules import (
    _POINT, _layer_status, drift_options, judge_layer, layout_for, reported_findings, thresholds_for,
)
from gate.checks.drift.state import (
    _PSI_EDGE_SAMPLES, COS_DISTANCE_EDGES, REL_L2_EDGES, Buffer, CkaState, LayerState, _fits, _new_side,
    fix_psi_edges, fold, nbytes, new_cka, psi_stride,
)
from gate.checks.drift.tables import drift_charts, drift_summary, drift_table, stats_table
from gate.errors import ConfigError
from gate.report.model import CheckResult, Finding
from gate.verdict import judge


class DriftCheck(Check):
    """Per-layer activation drift between baseline and candidate, streamed from the run's one pass."""

    name = "drift"
    tasks = frozenset({"classification", "multi_label", "regression"})
    needs = frozenset({"scores", "activations"})

    sharding = "merge"
    prime_samples = _PSI_EDGE_SAMPLES      # the PSI bin edges' samples, seen by every shard before its pass
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
        self._model_layers = 0                          # layers the selection finds in the larger model
        self._patterns = [
            (glob_regex(mod), glob_regex(part) if part is not None else None)
            for mod, part in map(_split_pattern, self.opts.layers or ())
        ]
        self._primer: DriftCheck | None = None          # sharded: the first samples' layers, for the PSI edges
        self._edges: dict[str, np.ndarray] | None = None
        self._sharded = False
        self._first_sample: int | None = None
        self._clones: dict[str, Any] | None = None      # merged: every shard's cloned / overwritten layers
        self._buffer_bytes: int | None = None           # merged: the shard of batch 0's buffers
        self._class_modules: dict[str, set[str]] | None = None   # role -> hooked modules whose output is K classes
        self._classes: int | None = None
        self._class_widths: dict[str, int | None] = {}   # role -> the output layer's class columns (K, or 1 logit)
        self._class_layers: dict[str, str] = {}         # part name -> "by_name" | "by_position": class columns

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
                f"{self.ctx.config.where('checks.drift.layers')}: {list(self.opts.layers)} match no module of "
                "either model "
                f"(the baseline has e.g. {sample})"
            )
        self._model_layers = max(len(names["baseline"]), len(names["candidate"]))
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
                self._hints[role][n] = layout_hints(roots[role].get_submodule(n), layout_for(n, self.opts))
            self._selected[role] = list(kept)
        return self._selected

    # -- streaming ------------------------------------------------------------------------------------------
    def prime(self, step: Step) -> None:
        """Sharded: one of the data's first batches, into a primer whose layers fix the single run's PSI edges."""
        self._sharded = True
        if self._primer is None:
            self._primer = DriftCheck(self.options, self.ctx)
            self._primer.setup()
        self._primer.update(step)

    def _primed_edges(self) -> dict[str, np.ndarray]:
        if self._edges is None:
            self._edges = {}
            primer, self._primer = self._primer, None
            for name, state in (primer._layers.items() if primer is not None else ()):
                primer._flush(state)
                if state.psi_edges is None:
                    fix_psi_edges(state)
                self._edges[name] = state.psi_edges
        return self._edges

    def update(self, step: Step) -> None:
        import torch

        if self._first_sample is None:
            self._first_sample = step.offset
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
                parts, by_class = {}, {}
                for role in ROLES:
                    parts[role], by_class[role] = self._module_features(
                        module, role, acts[role][module], size=size, mask=mask, step=step)
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
                    if suffix in by_class["baseline"] and suffix in by_class["candidate"]:
                        x_c = self._in_class_order(name, x_c)
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

    # -- the class axis -------------------------------------------------------------------------------------
    def _class_count(self, step: Step) -> int | None:
        """K: the classes (labels) the forward pass compares, for the output layer; None for regression."""
        if self.ctx.task == "regression":
            return None
        columns = self.ctx.classes.columns if self.ctx.classes is not None else None
        if columns is not None:
            return len(columns)
        scores = step.scores.get("baseline")
        return int(scores.shape[1]) if scores is not None and scores.ndim == 2 else None

    def _find_class_modules(self, step: Step) -> dict[str, set[str]]:
        """Per role, the hooked modules whose output is class-indexed (the output layer, once, on the first batch)."""
        if self._class_modules is None:
            classes = self._class_count(step)
            selected = self._selected or {}
            self._class_widths = {role: self._class_width(role, classes) for role in ROLES}
            self._class_modules = {
                role: (class_modules(self.ctx.models[role].module, selected.get(role, []), width,
                                     layer_only=width == 1)
                       if width is not None else set())
                for role, width in self._class_widths.items()
            }
            self._classes = classes
        return self._class_modules

    def _class_width(self, role: str, classes: int | None) -> int | None:
        """The output layer's width for K classes: K, or 1 for a binary model that outputs one logit (or its
        sigmoid), whose output Linear's one column is the logit of class 1."""
        if classes == 2 and self.ctx.task == "classification" and \
                getattr(self.ctx.models[role], "output", None) in ("binary_logit", "sigmoid"):
            return 1
        return classes

    def _in_class_order(self, name: str, f_c: PartFeatures) -> PartFeatures:
        """The candidate's class-indexed features with its columns in the baseline's class order (the forward pass's
        map, RunContext.classes.columns), and the layer marked as matched by class name or by position."""
        alignment = self.ctx.classes
        self._class_layers.setdefault(name, "by_name" if alignment is not None and alignment.by_name
                                      else "by_position")
        columns = alignment.columns if alignment is not None else None
        if columns is None:
            return f_c
        if f_c.values.shape[1] == 1:
            # One logit, of class 1: the candidate's class 1 is the baseline's class 0 when the names swap, and
            # the logit of the other class is its negation (the forward pass maps p to 1 - p the same way).
            return f_c if tuple(columns) == (0, 1) else PartFeatures(-f_c.values, channels=f_c.channels)
        import torch

        index = torch.tensor(columns, dtype=torch.long, device=f_c.values.device)
        return PartFeatures(f_c.values.index_select(1, index), channels=f_c.channels)

    def _module_features(
        self, module: str, role: str, output: Any, *, size: int, mask: Any, step: Step
    ) -> tuple[dict[str, Any], set[str]]:
        """suffix -> PartFeatures, or a string saying why the part cannot be compared; and the suffixes whose
        features are the output layer's class columns: (B, K) parts of a class-indexed module."""
        hints = self._hints[role][module]
        out: dict[str, Any] = {}
        by_class: set[str] = set()
        class_module = module in self._find_class_modules(step)[role]
        for suffix, path, t in tensor_parts(output):
            if not isinstance(t, str) and t.is_quantized:
                t = t.dequantize()          # a static int8 layer: compared with its float counterpart as values
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
                    if class_module and t.ndim == 2 and dim == 0 and int(t.shape[1]) == self._class_widths[role]:
                        by_class.add(suffix)
        return out, by_class

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
        if self._sharded:
            # Folded at once, on the PSI stride's positions of the batch's place in the data (batches of the
            # other shards lie between this shard's): the values the single run bins.
            state.base.psi_offset = (step.offset * f_b.width) % state.psi_stride
            state.cand.psi_offset = (step.offset * f_c.width) % state.psi_stride
            fold(state, f_b.matrix(), f_c.matrix())
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
        wb, wc = f_b.width, f_c.width
        elementwise = wb == wc
        state = LayerState(
            name=name, module=module, psi_edges=None, base=_new_side(wb), cand=_new_side(wc),
            psi_stride=psi_stride(wb), psi_bins=self.opts.bins, elementwise=elementwise,
            channels=(f_b.channels, f_c.channels), class_columns=self._class_layers.get(name),
        )
        if elementwise:
            state.cos_hist = np.zeros(COS_DISTANCE_EDGES.size + 1, dtype=np.int64)
            state.rel_hist = np.zeros(REL_L2_EDGES.size + 1, dtype=np.int64)
        edges = self._primed_edges().get(name) if self._sharded else None
        if edges is not None:
            state.psi_edges = edges.copy()
            for side in (state.base, state.cand):
                side.psi_counts = np.zeros(edges.size + 1, dtype=np.int64)
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
        if self._buffer_bytes is not None:
            return self._buffer_bytes
        return sum(state.buffer.nbytes() for state in self._layers.values() if state.buffer is not None)

    # -- shards ---------------------------------------------------------------------------------------------
    _SIDE_INTS = ("count", "nan", "inf")
    _SIDE_FLOATS = ("total", "total_sq")

    def state(self) -> dict[str, Any]:
        """Per layer `L<i>.` (forward order): counts, sums, live units, PSI counts, histograms, CKA sums (added up);
        this shard's extremes and layer facts as one `shard.rows.` row."""
        import json

        for state in self._layers.values():
            self._flush(state)
        names = [n for n in self._order if n in self._layers]
        out: dict[str, Any] = {}
        extremes, layers = [], []
        for i, name in enumerate(names):
            st = self._layers[name]
            sides = (st.base, st.cand)
            out[f"L{i}.ints"] = np.array([getattr(side, k) for side in sides for k in self._SIDE_INTS]
                                         + [st.samples, st.pairs, st.cka.n if st.cka else 0], dtype=np.int64)
            out[f"L{i}.floats"] = np.array([getattr(side, k) for side in sides for k in self._SIDE_FLOATS]
                                           + [st.cos_sum, st.rel_sum, st.signal, st.noise], dtype=np.float64)
            for role, side in zip(("base", "cand"), sides):
                out[f"L{i}.{role}.alive"] = side.alive.astype(np.int64)
                out[f"L{i}.{role}.psi"] = (side.psi_counts if side.psi_counts is not None
                                           else np.zeros(0, dtype=np.int64))
            if st.elementwise:
                out[f"L{i}.cos_hist"], out[f"L{i}.rel_hist"] = st.cos_hist, st.rel_hist
            if st.cka is not None:
                for key, value in zip(("sx", "sy", "sxx", "syy", "sxy"), st.cka.arrays()):
                    out[f"L{i}.cka.{key}"] = value
            extremes += [st.base.vmin, st.base.vmax, st.cand.vmin, st.cand.vmax]
            layers.append({"name": name, "module": st.module, "stride": st.psi_stride, "bins": st.psi_bins,
                           "widths": [st.base.width, st.cand.width], "elementwise": st.elementwise,
                           "channels": list(st.channels), "cka": st.cka is not None,
                           "class_columns": st.class_columns,
                           "edges": None if st.psi_edges is None else st.psi_edges.tolist()})
        clones = self.ctx.extras.get("activation_clones") or {}
        facts = {
            "layers": layers, "skip": self._skip, "selected": self._selected, "unmatched": self._unmatched,
            "omitted": self._omitted, "model_layers": self._model_layers, "called": sorted(self._called),
            "skipped_parts": self._skipped_parts, "unmatched_parts": self._unmatched_parts,
            "cka_skipped": self._cka_skipped, "order": list(self._order), "buffer_bytes": self.buffer_nbytes(),
            "clones": {"cloned": clones.get("cloned") or {}, "overwritten": clones.get("overwritten") or {}},
        }
        out["shard.rows.index"] = np.array([self._first_sample or 0], dtype=np.int64)
        out["shard.rows.extremes"] = np.array([extremes], dtype=np.float64).reshape(1, 4 * len(names))
        out["shard.rows.facts"] = [json.dumps(facts, sort_keys=True)]
        return out

    def load_state(self, merged: dict[str, Any]) -> None:
        """The shards' layers summed; the facts of the shard that read batch 0, what the others add to them."""
        import json

        facts = [json.loads(f) for f in merged["shard.rows.facts"]]
        if not facts:
            raise ValueError("drift state: no shard's facts")
        first = facts[0]
        for other in facts[1:]:
            if [(l["name"], l["edges"]) for l in other["layers"]] != [(l["name"], l["edges"]) for l in first["layers"]]:
                raise ValueError("drift state: the shards compared other layers or PSI bins")
        extremes = merged["shard.rows.extremes"].reshape(len(facts), -1)
        self._skip, self._selected = first["skip"], first["selected"]
        self._unmatched, self._omitted = first["unmatched"], first["omitted"]
        self._model_layers, self._buffer_bytes = int(first["model_layers"]), int(first["buffer_bytes"])
        self._called = {c for f in facts for c in f["called"]}
        self._skipped_parts, self._cka_skipped = {}, {}
        self._unmatched_parts = {role: [] for role in ROLES}
        self._clones = {"cloned": {role: [] for role in ROLES}, "overwritten": {role: {} for role in ROLES}}
        self._order = {}
        for f in facts:
            for key, value in f["skipped_parts"].items():
                self._skipped_parts.setdefault(key, value)
            for key, value in f["cka_skipped"].items():
                self._cka_skipped.setdefault(key, value)
            for name in f["order"]:
                self._order.setdefault(name)
            for role in ROLES:
                for name in f["unmatched_parts"].get(role, []):
                    if name not in self._unmatched_parts[role]:
                        self._unmatched_parts[role].append(name)
                for name in f["clones"]["cloned"].get(role, []):
                    if name not in self._clones["cloned"][role]:
                        self._clones["cloned"][role].append(name)
                for name, batches in f["clones"]["overwritten"].get(role, {}).items():
                    kept = self._clones["overwritten"][role].setdefault(name, [])
                    kept[:] = sorted(set(kept) | set(batches))
        self._layers = {}
        for i, layer in enumerate(first["layers"]):
            self._layers[layer["name"]] = self._merged_layer(i, layer, merged, extremes[:, 4 * i:4 * i + 4])

    def _merged_layer(self, i: int, layer: dict[str, Any], merged: dict[str, Any], extremes: np.ndarray) -> LayerState:
        wb, wc = (int(w) for w in layer["widths"])
        st = LayerState(
            name=layer["name"], module=layer["module"],
            psi_edges=None if layer["edges"] is None else np.array(layer["edges"], dtype=np.float64),
            psi_stride=int(layer["stride"]), psi_bins=int(layer["bins"]), base=_new_side(wb), cand=_new_side(wc),
            elementwise=bool(layer["elementwise"]), channels=tuple(layer["channels"]),  # type: ignore[arg-type]
            class_columns=layer.get("class_columns"),
        )
        ints, floats = merged[f"L{i}.ints"].tolist(), merged[f"L{i}.floats"].tolist()
        if len(ints) != 9 or len(floats) != 8:
            raise ValueError(f"drift state: layer {layer['name']} has the wrong number of sums")
        for j, side in enumerate((st.base, st.cand)):
            for k, key in enumerate(self._SIDE_INTS):
                setattr(side, key, int(ints[3 * j + k]))
            for k, key in enumerate(self._SIDE_FLOATS):
                setattr(side, key, float(floats[2 * j + k]))
            role = ("base", "cand")[j]
            alive = merged[f"L{i}.{role}.alive"]
            if alive.shape != (side.width,):
                raise ValueError(f"drift state: layer {layer['name']}: live units of the wrong width")
            side.alive = alive > 0
            psi_counts = merged[f"L{i}.{role}.psi"]
            side.psi_counts = psi_counts.astype(np.int64) if st.psi_edges is not None else None
            side.vmin = float(extremes[:, 2 * j].min()) if extremes.size else side.vmin
            side.vmax = float(extremes[:, 2 * j + 1].max()) if extremes.size else side.vmax
        st.samples, st.pairs = int(ints[6]), int(ints[7])
        st.cos_sum, st.rel_sum, st.signal, st.noise = (float(v) for v in floats[4:])
        if st.elementwise:
            st.cos_hist, st.rel_hist = merged[f"L{i}.cos_hist"], merged[f"L{i}.rel_hist"]
        if layer["cka"]:
            st.cka = CkaState(int(ints[8]), *(merged[f"L{i}.cka.{k}"] for k in ("sx", "sy", "sxx", "syy", "sxy")))
        return st
    # -- result ---------------------------------------------------------------------------------------------
    def compute(self) -> CheckResult:
        for state in self._layers.values():
            self._flush(state)
            if state.psi_edges is None:
                fix_psi_edges(state)
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
        coverage = self._coverage_finding()
        if coverage is not None:
            findings.append(coverage)
        status = _layer_status(findings)
        details = {
            "first_drifting_layer": first["layer"] if first else None,
            "layers": figures,
            "statistic": self.opts.statistic,
            "percentile": self.opts.percentile,
            "state_bytes": self.state_nbytes(),
            "buffer_bytes": self.buffer_nbytes(),
            "class_columns": self._class_details(figures),
            **self._listing(),
        }
        alignment = self.ctx.classes
        summary = drift_summary(figures, first, per_layer,
                                classes=alignment.describe() if alignment is not None else None)
        if coverage is not None and coverage.status != "pass":
            summary += f"; {coverage.reason}"
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(drift_table(figures, first, percentile=self.opts.percentile), stats_table(figures)),
            charts=drift_charts(figures),
            details=details,
        )

    def _class_details(self, figures: list[dict[str, Any]]) -> dict[str, Any]:
        """Which compared layers hold the output layer's class columns, and how they were matched to the baseline's
        (by name: the candidate's columns reordered by RunContext.classes, as the scores are; else by position)."""
        layers = [f["layer"] for f in figures if f.get("class_columns")]
        alignment = self.ctx.classes
        matched = next((f["class_columns"] for f in figures if f.get("class_columns")), None)
        return {
            "layers": layers,
            "matched": matched,
            "columns": list(alignment.columns) if matched == "by_name" and alignment is not None
            and alignment.columns is not None else None,
            "how": alignment.describe() if layers and alignment is not None else None,
        }

    def compared_modules(self) -> list[str]:
        return list(dict.fromkeys(state.module for state in self._layers.values()))

    def _coverage_finding(self) -> Finding | None:
        """Layers compared / layers the larger model has: far fewer is a warning (never a silent pass)."""
        if not self._model_layers or self.opts.min_coverage <= 0:
            return None
        compared = len(self.compared_modules())
        value = compared / self._model_layers
        f = judge(metric="layer_coverage", rule="min", threshold=self.opts.min_coverage, value=value,
                  settings=_POINT, where="model")
        reason = (
            f"{compared} of {self._model_layers} layers compared ({value:.0%}, min_coverage "
            f"{self.opts.min_coverage:.0%}); not compared: {', '.join(self._not_compared()[:6]) or 'none'}"
            f"{', ...' if len(self._not_compared()) > 6 else ''} (details.not_compared says why)"
        )
        return dataclasses.replace(f, status="warn" if f.status == "fail" else f.status, reason=reason)

    def _not_compared(self) -> list[str]:
        compared = set(self.compared_modules())
        out = [n for role in ROLES for n in self._unmatched[role]]
        out += [n for n in self._omitted]
        out += [n for n in (self._selected["baseline"] if self._selected else []) if n not in compared]
        return list(dict.fromkeys(out))

    def _not_compared_reasons(self) -> dict[str, str]:
        """Every selected layer left out of the comparison, with why."""
        compared = set(self.compared_modules())
        why: dict[str, str] = {}
        for role, other in (("baseline", "candidate"), ("candidate", "baseline")):
            for n in self._unmatched[role]:
                why.setdefault(n, f"only in the {role} (no layer of that name in the {other})")
        for n in self._omitted:
            why.setdefault(n, "omitted: beyond max_layers")
        for n in self._selected["baseline"] if self._selected else []:
            if n in compared or n in why:
                continue
            if n not in self._called:
                why[n] = "hooked but never called in the forward pass"
            else:
                parts = [f"{p}: {r}" for p, r in self._skipped_parts.items() if p.startswith(n or "(model)")]
                why[n] = "; ".join(parts) or "no part of its output could be compared"
        return why

    def _listing(self) -> dict[str, Any]:
        hooked = self._selected["baseline"] if self._selected else []
        clones = self._clones if self._clones is not None else (self.ctx.extras.get("activation_clones") or {})
        return {
            "model_layers": self._model_layers,
            "compared_layers": len(self.compared_modules()),
            "not_compared": self._not_compared_reasons(),
            "cloned_layers": {role: list((clones.get("cloned") or {}).get(role, [])) for role in ROLES},
            "overwritten_batches": {role: dict((clones.get("overwritten") or {}).get(role, {})) for role in ROLES},
            "unmatched_layers": {role: list(self._unmatched[role]) for role in ROLES},
            "unmatched_parts": {role: list(self._unmatched_parts[role]) for role in ROLES},
            "omitted_layers": list(self._omitted),
            "not_called": [n for n in hooked if n not in self._called],
            "skipped_parts": dict(self._skipped_parts),
        }
