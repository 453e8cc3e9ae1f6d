"""Renderers on fixed multi-label and regression reports (not live runs): the task in every header, the metrics
block of a task check rendered figure by figure, the JSON valid against the report schema; classification keeps
its schema rules."""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from gate.report.console import render_console
from gate.report.html import render_html
from gate.report.json_report import report_dict, validate_report
from gate.report.junit import render_junit
from gate.report.markdown import render_markdown
from gate.report.model import CheckResult, DataInfo, Finding, ModelInfo, Report, comparison_items, metric_rows
from tests.unit.test_reports import fixed_report

METRICS = {
    "regression": {
        "baseline": {"mae": 0.5, "rmse": 0.75, "r2": 0.9, "per_target": [{"target": "price", "mae": 0.5}]},
        "candidate": {"mae": 0.625, "rmse": 0.8, "r2": 0.875, "per_target": [{"target": "price", "mae": 0.625}]},
        "comparison": {"mae_delta": 0.125, "samples": 96, "targets": ["price"]},
    },
    "multi_label": {
        "baseline": {"micro_f1": 0.8, "macro_f1": 0.7, "subset_accuracy": 0.5},
        "candidate": {"micro_f1": 0.75, "macro_f1": 0.72, "subset_accuracy": 0.5},
        "comparison": {"label_agreement": 0.95},
    },
}
NAMES = {"regression": ("price",), "multi_label": ("sports", "politics", "tech")}


def task_report(task: str) -> Report:
    check = CheckResult(name="sanity", status="pass", summary="outputs finite",
                        findings=(Finding(metric="non_finite_outputs[candidate]", rule="max", status="pass",
                                          reason="candidate outputs are all finite", threshold=0.0, value=0.0),))
    width = len(NAMES[task])
    return Report(
        verdict="pass", exit_code=0, summary="PASS: all 1 checks passed", checks=(check,),
        models=(ModelInfo("baseline", "prod.pt", "state_dict", "ab" * 32, 1234, 99, width, output="regression"),
                ModelInfo("candidate", "cand.pt", "state_dict", "cd" * 32, 1300, 99, width, output="regression")),
        data=DataInfo(path="eval.npz", format="npz", sha256="ef" * 32, num_samples=96, num_batches=2, batch_size=64),
        class_names=NAMES[task], metrics=copy.deepcopy(METRICS[task]),
        config={"task": task, "device": "cpu"}, environment={"python": "3.11", "torch": "2.13.0", "device": "cpu"},
        created_at="2026-11-29T00:00:00+00:00", duration_s=1.5, gate_version="0.2.0", schema_version="1.3", task=task,
    )


def test_metric_rows_pair_the_numbers_both_models_hold():
    rows = metric_rows(METRICS["regression"])
    assert [r[0] for r in rows] == ["mae", "rmse", "r2"]             # nested per_target is left to the check's tables
    assert rows[0] == ("mae", 0.5, 0.625, pytest.approx(0.125))
    assert comparison_items(METRICS["regression"]) == [("mae_delta", 0.125), ("samples", 96)]
    assert metric_rows({}) == [] and comparison_items({}) == []


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_the_console_names_the_task_and_shows_every_figure(task):
    text = render_console(task_report(task))
    assert f"vs baseline prod.pt [state_dict], task {task}\n" in text
    assert f"96 samples, {'1 target' if task == 'regression' else '3 labels'}\n" in text
    for name, b, c, d in metric_rows(METRICS[task]):
        assert f"{name}: baseline {b:.4g}  candidate {c:.4g}  delta {d:+.4g}" in text
    assert "comparison: " + "  ".join(f"{n} {v:.4g}" if isinstance(v, float) else f"{n} {v}"
                                      for n, v in comparison_items(METRICS[task])) in text
    assert "\naccuracy: baseline" not in text and "negative flips" not in text


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_markdown_names_the_task_and_tabulates_the_figures(task):
    text = render_markdown(task_report(task))
    assert f"task: **{task}**" in text
    for name, b, c, d in metric_rows(METRICS[task]):
        assert f"| {name} | {b:.4g} | {c:.4g} | {d:+.4g} |" in text
    for name, v in comparison_items(METRICS[task]):
        assert f"| {name} |  | {v:.4g} |  |" in text


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_junit_carries_the_task_as_a_suite_property(task):
    root = ET.fromstring(render_junit(task_report(task)))
    props = root.find("testsuite/properties")
    assert props is not None and [(p.get("name"), p.get("value")) for p in props] == [("task", task)]


def test_junit_of_classification_has_no_task_property():
    assert ET.fromstring(render_junit(fixed_report())).find("testsuite/properties") is None


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_html_names_the_task_and_shows_the_figures_but_no_confusion_or_per_class(task):
    page = render_html(task_report(task))
    assert f"; task {task}</p></header>" in page
    assert '<section id="metrics"' in page
    for name, *_ in metric_rows(METRICS[task]):
        assert f"<td>{name}</td>" in page
    assert '<section id="confusion"' not in page and '<section id="per-class"' not in page


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_json_reports_of_other_tasks_are_schema_valid(task):
    data = json.loads(json.dumps(report_dict(task_report(task))))
    validate_report(data)
    assert data["task"] == task and data["metrics"] == METRICS[task]
    data["metrics"] = {}
    validate_report(data)                        # no task check ran: an empty block


def test_the_schema_keeps_classification_metrics_required():
    data = json.loads(json.dumps(report_dict(fixed_report())))
    validate_report(data)
    assert data["task"] == "classification"
    broken = copy.deepcopy(data)
    broken["metrics"] = {}
    with pytest.raises(jsonschema.ValidationError, match="'num_samples' is a required property"):
        validate_report(broken)
    del broken["task"]                             # a report before 1.3 is classification
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    data["task"] = "ranking"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(data)


@pytest.mark.parametrize("task,says,family", [("regression", "BCa and bootstrap-t", "targets"),
                                              ("multi_label", "per label", "labels")])
def test_the_markdown_footer_names_the_tasks_own_statistics(task, says, family):
    from dataclasses import replace

    decision = {"mode": "significant-and-beyond", "confidence": 0.95, "multiple_comparisons": "holm",
                "inconclusive": "warn"}
    report = task_report(task)
    text = render_markdown(replace(report, config={**report.config, "decision": decision}))
    footer = next(line for line in text.splitlines() if line.startswith("<sub>decisions:"))
    assert says in footer and f"holm-adjusted across {family}" in footer and "F1;" not in footer
