"""The registry of checks: name -> 'module:Class', imported only when the check is enabled."""
from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {
    "sanity": "gate.checks.sanity:SanityCheck",
    "accuracy": "gate.checks.classification:AccuracyCheck",
    "per_class": "gate.checks.classification:PerClassCheck",
    "flips": "gate.checks.classification:FlipsCheck",
    "scores": "gate.checks.scores:ScoresCheck",
    "regression": "gate.checks.regression:RegressionCheck",
    "slices": "gate.checks.slices:SlicesCheck",
    "cases": "gate.checks.cases:CasesCheck",
    "multilabel": "gate.checks.multilabel:MultiLabelCheck",
    "drift": "gate.checks.drift:DriftCheck",
    "onnx": "gate.checks.onnx:OnnxCheck",
    "latency": "gate.checks.latency:LatencyCheck",
}


def check_class(name: str) -> type:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)
