"""Fixed reports (not live runs) for the HTML renderer's tests: every section's data, hostile names, 1,000 classes."""
from __future__ import annotations

import math

from gate.report.model import Chart, CheckResult, DataInfo, Finding, ModelInfo, Report, Table

HOSTILE = ("</svg><script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "a&amp;b <b>bold</b>")


def _per_class(names: tuple[str, ...], recall: list[float], precision: list[float]) -> list[dict]:
    return [{"class": n, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": 10}
            for n, r, p in zip(names, recall, precision)]


def _latency_check() -> CheckResult:
    def run(bs: int, base: tuple[float, ...], cand: tuple[float, ...]) -> dict:
        keys = ("p50", "p90", "p95", "p99", "mean")
        return {
            "device": "cpu", "batch_size": bs, "samples": bs, "threads": 2, "rounds": 200,
            "baseline_ms": dict(zip(keys, base)), "candidate_ms": dict(zip(keys, cand)),
            "ratios": {"p50": {"ratio": cand[0] / base[0], "low": 0.9, "high": 1.3, "enough_rounds": True}},
            "decisions": [{"statistic": "p50", "kind": "ratio", "limit": 1.15, "decision": "pass"}],
        }

    return CheckResult(
        name="latency", status="pass", summary="no slowdown beyond the limits at cpu bs=1, cpu bs=8",
        findings=(Finding(metric="p50_ratio", rule="max_ratio", status="pass", reason="p50 ratio 1.05 within 1.15",
                          threshold=1.15, value=1.05, margin=0.1, where="cpu bs=1"),),
        tables=(Table(title="Latency per call (ms)", headers=("batch", "model", "p50"),
                      rows=((1, "baseline", 1.0), (1, "candidate", 1.05))),),
        charts=(Chart(title="p50 latency, candidate / baseline", labels=("cpu bs=1", "cpu bs=8"), values=(1.05, 1.0),
                      y_label="ratio"),),
        details={"runs": [run(1, (1.0, 1.2, 1.3, 1.6, 1.1), (1.05, 1.3, 1.4, 2.0, 1.15)),
                          run(8, (2.0, 2.4, 40.0, 90.0, 4.0), (2.0, 2.2, 30.0, 80.0, 3.5))]},
        duration_s=3.0,
    )


def _drift_check(layers: tuple[str, ...]) -> CheckResult:
    cosines = (0.9999, 0.999, 0.93, 0.9)
    figures = []
    for name, cos in zip(layers, cosines):
        status = "pass" if cos > 0.95 else "fail"
        figures.append({
            "layer": name, "module": "Linear", "cosine": {"mean": cos, "tail": cos - 0.01},
            "cka": None, "status": status, "breaches": [] if status == "pass" else ["cosine"],
            "thresholds": {"min_cosine": 0.95, "max_rel_l2": 0.3},
        })
    first = next(f["layer"] for f in figures if f["status"] == "fail")
    return CheckResult(
        name="drift", status="fail", summary=f"drift starts at {first} (layer 3 of 4)",
        findings=(Finding(metric=f"cosine[{first}]", rule="min", status="fail", reason=f"{first}: cosine 0.93 is below min 0.95",
                          threshold=0.95, value=0.93, margin=-0.02, where=first),),
        charts=(Chart(title="Top drifting layers", labels=layers, values=tuple(1 - c for c in cosines), y_label="drift"),),
        details={"first_drifting_layer": first, "layers": figures, "sqnr_db": {"fc": math.inf}},
        notes=("power: grow the data 3x",),
    )


def html_report(*, class_names: tuple[str, ...] = ("cat", "dog", "bird"),
                layers: tuple[str, ...] = ("body.0", "body.2", "head", "out"),
                path: str = "cand.pt2", latency: bool = True, drift: bool = True) -> Report:
    """A failing report with per-class, confusion, latency and drift data; names and paths can be made hostile."""
    a, b, c = class_names
    per_class_check = CheckResult(
        name="per_class", status="fail", summary=f"recall[{b}]: drop 0.3 exceeds max_drop 0.1 by 0.2",
        findings=(
            Finding(metric=f"recall[{b}]", rule="max_drop", status="fail",
                    reason=f"recall[{b}]: drop 0.3 exceeds max_drop 0.1 by 0.2", threshold=0.1, value=0.3,
                    baseline=0.8, candidate=0.5, margin=-0.2, required=0.3, interval=(0.2, 0.4), p_value=0.003,
                    decision="non-inferiority", where=b),
            Finding(metric=f"precision[{c}]", rule="max_drop", status="warn", reason=f"precision[{c}]: inconclusive",
                    threshold=0.1, value=0.08, baseline=0.9, candidate=0.82, margin=0.02, inconclusive=True, where=c),
            Finding(metric=f"recall[{a}]", rule="max_drop", status="pass", reason="ok", threshold=0.1, value=0.0,
                    baseline=0.9, candidate=0.9, margin=0.1, required=0.0, where=a),
        ),
        tables=(Table(title="Per-class metrics", headers=("class", "recall b", "recall c"),
                      rows=((a, 0.9, 0.9), (b, 0.8, 0.5), (c, 0.7, 0.75))),),
        duration_s=0.002,
    )
    checks = [
        CheckResult(name="sanity", status="pass", summary="outputs finite", duration_s=0.01),
        per_class_check,
        CheckResult(name="onnx", status="skip", summary="onnx is optional and onnxruntime is not installed"),
    ]
    if drift:
        checks.append(_drift_check(layers))
    if latency:
        checks.append(_latency_check())
    metrics = {
        "num_samples": 30,
        "baseline": {"accuracy": 0.8, "macro_f1": 0.79, "weighted_f1": 0.79,
                     "per_class": _per_class(class_names, [0.9, 0.8, 0.7], [0.85, 0.8, 0.9]),
                     "confusion_matrix": [[9, 1, 0], [1, 8, 1], [2, 1, 7]]},
        "candidate": {"accuracy": 0.7167, "macro_f1": 0.7, "weighted_f1": 0.7,
                      "per_class": _per_class(class_names, [0.9, 0.5, 0.75], [0.75, 0.83, 0.82]),
                      "confusion_matrix": [[9, 1, 0], [4, 5, 1], [1, 1, 8]]},
        "comparison": {"agreement": 0.83, "negative_flip_rate": 0.1, "positive_flip_rate": 0.03,
                       "negative_flips": 3, "positive_flips": 1, "per_class": []},
    }
    return Report(
        verdict="fail", exit_code=1, summary="FAIL: 2 of 5 checks failed (per_class, drift)", checks=tuple(checks),
        models=(ModelInfo("baseline", "prod.pt", "state_dict", "ab" * 32, 1234, 99, 3),
                ModelInfo("candidate", path, "export", "cd" * 32, 1300, 99, 3)),
        data=DataInfo(path="eval.npz", format="npz", sha256="ef" * 32, num_samples=30, num_batches=1, batch_size=64),
        class_names=class_names, metrics=metrics,
        config={"device": "cpu", "decision": {"mode": "non-inferiority", "confidence": 0.95, "inconclusive": "warn",
                                              "multiple_comparisons": "holm"}},
        environment={"python": "3.11", "torch": "2.13.0", "device": "cpu"},
        created_at="2026-11-29T00:00:00+00:00", duration_s=1.5, gate_version="0.1.0", schema_version="1.0",
    )


def wide_report(num_classes: int = 1000) -> Report:
    """A report of `num_classes` classes, as a big vision model would give, with every class in every table."""
    names = tuple(f"class_{i:04d}_with_a_longish_name" for i in range(num_classes))
    base_cm = [[0] * num_classes for _ in range(num_classes)]
    cand_cm = [[0] * num_classes for _ in range(num_classes)]
    for i in range(num_classes):
        base_cm[i][i] = 50
        cand_cm[i][i] = 50 - (i % 7)
        cand_cm[i][(i * 31 + 1) % num_classes] += i % 7
    recall_b = [1.0] * num_classes
    recall_c = [(50 - (i % 7)) / 50 for i in range(num_classes)]
    per_class = [
        {"class": n, "precision": 1.0, "recall": r, "f1": 1.0, "support": 50} for n, r in zip(names, recall_b)
    ]
    per_class_c = [
        {"class": n, "precision": 0.95, "recall": r, "f1": 0.95, "support": 50} for n, r in zip(names, recall_c)
    ]
    findings = tuple(
        Finding(metric=f"recall[{n}]", rule="max_drop", status="fail" if i % 7 == 6 else "pass",
                reason=f"recall[{n}]: drop {1 - recall_c[i]:.2f}", threshold=0.1, value=1 - recall_c[i],
                baseline=1.0, candidate=recall_c[i], margin=0.1 - (1 - recall_c[i]), where=n)
        for i, n in enumerate(names)
    )
    check = CheckResult(
        name="per_class", status="fail", summary=f"{sum(f.status == 'fail' for f in findings)} classes dropped",
        findings=findings,
        tables=(Table(title="Per-class metrics", headers=("class", "recall b", "recall c"),
                      rows=tuple((n, 1.0, r) for n, r in zip(names, recall_c))),),
    )
    base = html_report(latency=False, drift=False)
    metrics = {
        "num_samples": 50 * num_classes,
        "baseline": {"accuracy": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0, "per_class": per_class,
                     "confusion_matrix": base_cm},
        "candidate": {"accuracy": 0.94, "macro_f1": 0.94, "weighted_f1": 0.94, "per_class": per_class_c,
                      "confusion_matrix": cand_cm},
        "comparison": base.metrics["comparison"],
    }
    from dataclasses import replace

    return replace(base, checks=(check,), class_names=names, metrics=metrics,
                   summary="FAIL: 1 of 1 checks failed (per_class)")
