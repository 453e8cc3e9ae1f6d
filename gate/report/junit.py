"""JUnit XML: one test case per check, so CI test-report viewers show what regressed; the slices check adds one
test case per slice (classname `gate.slices.<dimension>`), its figures as properties, failed or warned like a check."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from gate.report.model import STATUS_ORDER, CheckResult, Finding, Report

#: a slice's figures carried as test-case properties, in this order (the slices check's details.slices keys)
SLICE_PROPERTIES = ("samples", "baseline_accuracy", "candidate_accuracy", "accuracy_drop", "negative_flips",
                    "positive_flips")


def _outcome(case: ET.Element, status: str, summary: str, findings: list[Finding]) -> None:
    details = "\n".join(f.reason for f in findings if f.status in ("fail", "warn"))
    if status == "fail":
        node = ET.SubElement(case, "failure", message=summary, type="GateRegression")
        node.text = details or summary
    elif status == "skip":
        ET.SubElement(case, "skipped", message=summary)
    elif status == "warn":
        out = ET.SubElement(case, "system-out")
        out.text = "warning: " + (details or summary)


def _slice_cases(check: CheckResult) -> list[tuple[ET.Element, str]]:
    """One test case per slice of the slices check, by dimension, largest accuracy drop first; its status is the
    worst of its findings, and a slice smaller than min_size is skipped (reported, not gated)."""
    dims = [str(d) for d in check.details.get("dimensions") or ()]
    slices = [s for s in check.details.get("slices") or () if isinstance(s, dict)]
    slices.sort(key=lambda s: dims.index(str(s.get("dimension"))) if str(s.get("dimension")) in dims else len(dims))
    findings: dict[str, list[Finding]] = {}
    for f in check.findings:
        findings.setdefault(f.where or "", []).append(f)
    out = []
    for s in slices:
        value = str(s.get("slice"))
        mine = findings.get(value, [])
        case = ET.Element("testcase", classname=f"gate.slices.{s.get('dimension')}", name=value, time="0.000")
        props = ET.SubElement(case, "properties")
        for key in SLICE_PROPERTIES:
            ET.SubElement(props, "property", name=key, value=_value(s.get(key)))
        interval = s.get("accuracy_drop_interval")
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            ET.SubElement(props, "property", name="accuracy_drop_interval",
                          value=f"[{_value(interval[0])}, {_value(interval[1])}]")
        if not s.get("gated", True):
            status, summary = "skip", f"{value}: {s.get('samples')} samples, fewer than min_size " \
                                      f"{check.details.get('min_size')}: reported, not gated"
        else:
            status = min((f.status for f in mine), key=lambda st: STATUS_ORDER[st], default="pass")
            bad = [f for f in mine if f.status == status and status in ("fail", "warn")]
            summary = bad[0].reason if bad else f"{value}: within every threshold"
        _outcome(case, status, summary, mine)
        out.append((case, status))
    return out


def _value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else str(v)


def render_junit(report: Report) -> str:
    cases: list[tuple[ET.Element, str]] = []
    for check in report.checks:
        case = ET.Element("testcase", classname="gate", name=check.name, time=f"{check.duration_s:.3f}")
        _outcome(case, check.status, check.summary, list(check.findings))
        cases.append((case, check.status))
        if check.name == "slices":
            cases += _slice_cases(check)
    statuses = [status for _, status in cases]
    suite = ET.Element(
        "testsuite",
        name="gate",
        tests=str(len(cases)),
        failures=str(statuses.count("fail")),
        skipped=str(statuses.count("skip")),
        errors="0",
        time=f"{report.duration_s:.3f}",
        timestamp=report.created_at,
    )
    if report.task != "classification":
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="task", value=report.task)
    for case, _ in cases:
        suite.append(case)
    root = ET.Element("testsuites", name="gate", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
