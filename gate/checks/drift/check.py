"""The drift check: selects and matches layers, streams both models' activations into the layer states during the
run's one pass, and assembles the result (see the package docstring)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gate.checks.base import ROLES, Check, RunContext, Step
from gate.checks.drift.figures import layer_figures
from gate.checks.drift.layout import (
    LayoutHints, PartFeatures, _split_pattern, attention_mask, batch_dim, evenly_spaced, features, glob_regex,
    layout_hints, select_layers, tensor_parts,
)
from gate.checks.drift.rules import (
    _POINT, _layer_status, drift_options, judge_layer, layout_for, reported_findings, thresholds_for,
)
from gate.checks.drift.state import (
    COS_DISTANCE_EDGES, REL_L2_EDGES, Buffer, LayerState, _fits, _new_side, fix_psi_edges, fold, nbytes, new_cka,
    psi_stride,
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

    # Drift's PSI bin edges come from the baseline's first samples a process sees, and its sums are per process:
    # refused under sharding rather than merged wrongly.
    sharding = "its PSI bins are fixed from the first samples a process sees, so shards' histograms do not add up"
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
        wb, wc = f_b.width, f_c.width
        elementwise = wb == wc
        state = LayerState(
            name=name, module=module, psi_edges=None, base=_new_side(wb), cand=_new_side(wc),
            psi_stride=psi_stride(wb), psi_bins=self.opts.bins, elementwise=elementwise,
            channels=(f_b.channels, f_c.channels),
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
            **self._listing(),
        }
        summary = drift_summary(figures, first, per_layer)
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
        clones = self.ctx.extras.get("activation_clones") or {}
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
