"""Classic mistakes that make any comparison meaningless: NaN/Inf outputs, non-determinism (a model left in train
mode, dropout active), outputs that depend on the batch they are in, and class names that cannot be matched by name
(generic LABEL_i names against real ones: a warning; the runner reorders the candidate's columns by name).

Determinism and batch invariance use the first `samples` rows of the first batch only, scored again as a smaller
batch: one extra forward call per model (two when something is wrong), not a second pass over the data.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gate.checks.base import ROLES, Check, Step
from gate.forward import batch_len, run_model, slice_batch
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import check_summary


def _max_excess(a: torch.Tensor, b: torch.Tensor, *, atol: float, rtol: float) -> tuple[float, bool]:
    """Largest |a-b| and whether every element is within atol + rtol*|b| (NaN never is)."""
    diff = (a - b).abs()
    ok = bool(torch.all(diff <= atol + rtol * b.abs()).item())
    worst = float(diff.max().item()) if diff.numel() else 0.0
    return worst, ok


def dynamic_quantization(module: Any) -> str | None:
    """What in `module` quantizes activations per call ("3 torch.ao dynamic int8 layers"), or None.

    torch.ao's dynamic modules (quantize_dynamic) compute one activation scale per call over the whole batch, so a
    sample's output depends on the batch it is in, by design; torchao's dynamic-activation weights are counted too.
    """
    ao = [m for m in module.modules() if type(m).__module__.startswith(("torch.ao.nn.quantized.dynamic",
                                                                        "torch.nn.quantized.dynamic"))]
    torchao = {id(p) for p in module.parameters()
               if type(p).__module__.startswith("torchao") and getattr(p, "act_quant_kwargs", None) is not None}
    found = []
    if ao:
        found.append(f"{len(ao)} torch.ao dynamic int8 layer{'s' if len(ao) != 1 else ''}")
    if torchao:
        found.append(f"{len(torchao)} torchao dynamic-activation int8 weight{'s' if len(torchao) != 1 else ''}")
    return " and ".join(found) or None


def _trim_padding(inputs: Any) -> Any:
    """A single text sample keeps only its real tokens (right padding), so it is scored as it would be alone."""
    if isinstance(inputs, dict) and "attention_mask" in inputs:
        length = int(inputs["attention_mask"].sum().item())
        seq = inputs["attention_mask"].shape[1]
        return {k: (v[:, :length] if v.ndim >= 2 and v.shape[1] == seq else v) for k, v in inputs.items()}
    return inputs


class SanityCheck(Check):
    name = "sanity"
    tasks = frozenset({"classification", "multi_label", "regression"})
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: Any) -> None:
        super().__init__(options, ctx)
        self.non_finite = {role: 0 for role in ROLES}
        self.values = {role: 0 for role in ROLES}
        self.determinism: dict[str, float] = {}
        self.determinism_ok: dict[str, bool] = {}
        self.invariance: dict[str, float] = {}
        self.invariance_ok: dict[str, bool] = {}
        self.invariance_tol: dict[str, float] = {}        # role -> the dynamic-quantization tolerance applied
        self.dynamic_quant: dict[str, str] = {}           # role -> what quantizes its activations per batch
        self._replayed: set[str] = set()       # roles whose first-batch figures came from the baseline cache

    def baseline_record(self) -> dict[str, Any]:
        return {label: ([worst["baseline"], ok["baseline"]] if "baseline" in worst else None)
                for label, worst, ok in (("determinism", self.determinism, self.determinism_ok),
                                         ("invariance", self.invariance, self.invariance_ok))}

    def baseline_replay(self, recorded: dict[str, Any]) -> None:
        figures = {}
        for label in ("determinism", "invariance"):
            value = recorded.get(label)
            if value is not None and not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], bool)
                                          and isinstance(value[0], (int, float)) and not isinstance(value[0], bool)):
                raise ValueError(f"sanity: cached {label} {value!r} is not [max difference, within tolerance]")
            figures[label] = value
        for (label, value), worst, ok in zip(figures.items(), (self.determinism, self.invariance),
                                             (self.determinism_ok, self.invariance_ok)):
            if value is not None:
                worst["baseline"], ok["baseline"] = float(value[0]), value[1]
        self._replayed.add("baseline")

    def update(self, step: Step) -> None:
        for role in ROLES:
            s = step.scores[role]
            finite = torch.isfinite(s)
            if not bool(finite.all()):          # counted only when there is something to count
                self.non_finite[role] += s.numel() - int(finite.sum().item())
            self.values[role] += s.numel()
        if step.index != 0 or not (self.options["determinism"] or self.options["batch_invariance"]):
            return
        size = batch_len(step.inputs)
        n = min(int(self.options["samples"]), size)
        atol, rtol = float(self.options["atol"]), float(self.options["rtol"])
        head = _trim_padding(slice_batch(step.inputs, slice(0, n)))
        for role in ROLES:
            if role in self._replayed:
                continue
            model = self.ctx.models[role]
            batched = step.scores[role][:n]
            # One extra call on the first rows as a smaller batch catches both defects (dropout changes every call,
            # batch statistics change with the batch). Only when it disagrees does a second call tell them apart.
            first = run_model(model, head)
            diff, ok = _max_excess(first, batched, atol=atol, rtol=rtol)
            rerun: tuple[float, bool] = (0.0, True)
            in_batch: tuple[float, bool] | None = (diff, True)
            if not ok:
                second = run_model(model, head)
                rerun = _max_excess(second, first, atol=atol, rtol=rtol)
                # Deterministic but different from the full batch: batch-dependent. Random: undecidable, so only
                # the rerun is reported.
                in_batch = (diff, False) if rerun[1] else None
            if self.options["determinism"]:
                self.determinism[role], self.determinism_ok[role] = rerun
            if self.options["batch_invariance"] and n < size and in_batch is not None:
                self.invariance[role], self.invariance_ok[role] = in_batch
                quantized = dynamic_quantization(model.module) if not in_batch[1] else None
                if quantized is not None:
                    # per-batch activation scales move every output by about one quantization step of the
                    # batch's range: judged against the output's own scale, not against float rounding
                    scale = float(batched.abs().max().item()) if batched.numel() else 0.0
                    tol = atol + float(self.options["dynamic_quant_rtol"]) * scale
                    self.dynamic_quant[role] = quantized
                    self.invariance_tol[role] = tol
                    self.invariance_ok[role] = bool(in_batch[0] <= tol)

    def state(self) -> dict[str, np.ndarray]:
        """Counts per role (baseline, candidate); the first-batch figures come only from the shard that read
        batch 0, with a `seen` count, so summing the shards keeps them as they are."""
        out: dict[str, np.ndarray] = {
            "non_finite": np.array([self.non_finite[r] for r in ROLES], dtype=np.int64),
            "values": np.array([self.values[r] for r in ROLES], dtype=np.int64),
        }
        for label, worst, ok in (("determinism", self.determinism, self.determinism_ok),
                                 ("invariance", self.invariance, self.invariance_ok)):
            out[f"{label}.seen"] = np.array([int(r in worst) for r in ROLES], dtype=np.int64)
            out[f"{label}.ok"] = np.array([int(ok.get(r, False)) for r in ROLES], dtype=np.int64)
            out[f"{label}.worst"] = np.array([worst.get(r, 0.0) for r in ROLES], dtype=np.float64)
        return out

    def load_state(self, merged: dict[str, np.ndarray]) -> None:
        for i, role in enumerate(ROLES):
            self.non_finite[role] = int(merged["non_finite"][i])
            self.values[role] = int(merged["values"][i])
        for label, worst, ok in (("determinism", self.determinism, self.determinism_ok),
                                 ("invariance", self.invariance, self.invariance_ok)):
            worst.clear()
            ok.clear()
            for i, role in enumerate(ROLES):
                seen = int(merged[f"{label}.seen"][i])
                if seen > 1:
                    raise ValueError(f"sanity: {label} of the {role} measured by {seen} shards; only one reads batch 0")
                if seen:
                    worst[role] = float(merged[f"{label}.worst"][i])
                    ok[role] = bool(merged[f"{label}.ok"][i])

    def compute(self) -> CheckResult:
        findings: list[Finding] = []
        if self.options["non_finite"]:
            for role in ROLES:
                bad = self.non_finite[role]
                findings.append(Finding(
                    metric=f"non_finite_outputs[{role}]", rule="max", threshold=0.0, value=float(bad), margin=-float(bad),
                    required=float(bad), where=role, status="fail" if bad else "pass",
                    reason=(f"{role} produced {bad} NaN/Inf values in {self.values[role]} output scores" if bad
                            else f"{role} outputs are all finite"),
                ))
        atol, rtol = float(self.options["atol"]), float(self.options["rtol"])
        for label, worst_map, ok_map, hint in (
            ("determinism", self.determinism, self.determinism_ok,
             "the same input gave different outputs: is the model left in train mode, or is dropout active?"),
            ("batch_invariance", self.invariance, self.invariance_ok,
             "a sample scored alone differs from the same sample in a batch: batch statistics (BatchNorm in train "
             "mode), padding that is not masked, or cross-sample operations"),
        ):
            for role in ROLES:
                if role not in worst_map:
                    continue
                worst, ok = worst_map[role], ok_map[role]
                if label == "batch_invariance" and role in self.dynamic_quant:
                    findings.append(self._dynamic_quant_finding(role, worst, ok))
                    continue
                # The baseline is what runs in production: its own defect is reported, but it is not the candidate's fault.
                status = "pass" if ok else ("fail" if role == "candidate" else "warn")
                findings.append(Finding(
                    metric=f"{label}[{role}]", rule="atol+rtol", threshold=atol, value=worst, where=role,
                    status=status, required=worst, margin=atol - worst,
                    reason=(f"{role}: max |difference| {worst:.3g} is within atol {atol:g} + rtol {rtol:g}" if ok
                            else f"{role}: max |difference| {worst:.3g} beyond atol {atol:g} + rtol {rtol:g}; {hint}"),
                ))
        if self.options["class_names"]:
            findings += self._class_name_findings()
        checked = [label for label, done in (
            ("outputs finite", self.options["non_finite"]),
            ("deterministic", bool(self.determinism)),
            ("batch-invariant", bool(self.invariance)),
            ("classes matched by name", any(f.metric == "class_names" and f.status == "pass" for f in findings)),
        ) if done]
        if self.options["batch_invariance"] and not self.invariance:
            checked.append("batch invariance not measured (batches of one sample)")
        status, summary = check_summary(self.name, findings, passed="; ".join(checked) or "nothing to check")
        rows = tuple(
            (role, self.non_finite[role], _fmt(self.determinism.get(role)), _fmt(self.invariance.get(role)))
            for role in ROLES
        )
        return CheckResult(
            name=self.name,
            status=status,
            summary=summary,
            findings=tuple(findings),
            tables=(Table(title="Sanity", headers=("model", "NaN/Inf values", "rerun max |diff|", "alone-vs-batch max |diff|"), rows=rows),),
            details={
                "non_finite": dict(self.non_finite),
                "determinism_max_abs_diff": dict(self.determinism),
                "batch_invariance_max_abs_diff": dict(self.invariance),
                "dynamic_quantization": dict(self.dynamic_quant),
                "batch_invariance_tolerance": dict(self.invariance_tol),
            },
        )

    def _dynamic_quant_finding(self, role: str, worst: float, ok: bool) -> Finding:
        """Batch dependence of a dynamically quantized model: named, and judged on its own tolerance."""
        tol, what = self.invariance_tol[role], self.dynamic_quant[role]
        rtol = float(self.options["dynamic_quant_rtol"])
        cause = (f"dynamic quantization ({what}) computes activation scales per batch, so a sample's outputs "
                 "depend on the batch it is in")
        status = "pass" if ok else ("fail" if role == "candidate" else "warn")
        reason = (
            f"{role}: max |difference| {worst:.3g} between a sample alone and in its batch is within the "
            f"dynamic-quantization tolerance {tol:.3g} (atol + dynamic_quant_rtol {rtol:g} x max |output|): {cause}"
            if ok else
            f"{role}: max |difference| {worst:.3g} between a sample alone and in its batch is beyond the "
            f"dynamic-quantization tolerance {tol:.3g} (atol + dynamic_quant_rtol {rtol:g} x max |output|): more "
            f"than the per-batch activation scales of {what} explain"
        )
        return Finding(
            metric=f"batch_invariance[{role}]", rule="dynamic_quantization", threshold=tol, value=worst, where=role,
            status=status, required=worst, margin=tol - worst, reason=reason,
        )

    def _class_name_findings(self) -> list[Finding]:
        """How the candidate's classes were matched (gate.classes): by name passes, generic against real names warns.

        Names that cannot be matched never get here: the run stops before the pass (exit 2).
        """
        alignment = self.ctx.classes
        if alignment is None:
            return []
        if alignment.warnings:
            return [Finding(metric="class_names", rule="matched by name", status="warn", reason=alignment.warnings[0])]
        if not alignment.by_name:
            return []
        return [Finding(metric="class_names", rule="matched by name", status="pass", reason=alignment.describe())]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"
