"""JUnit XML: one test case per check, so CI test-report viewers show what regressed."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from gate.report.model import Report


def render_junit(report: Report) -> str:
    checks = report.checks
    suite = ET.Element(
        "testsuite",
        name="gate",
        tests=str(len(checks)),
        failures=str(sum(c.status == "fail" for c in checks)),
        skipped=str(sum(c.status == "skip" for c in checks)),
        errors="0",
        time=f"{report.duration_s:.3f}",
        timestamp=report.created_at,
    )
    if report.task != "classification":
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="task", value=report.task)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="gate", name=check.name, time=f"{check.duration_s:.3f}")
        details = "\n".join(f.reason for f in check.findings if f.status in ("fail", "warn"))
        if check.status == "fail":
            node = ET.SubElement(case, "failure", message=check.summary, type="GateRegression")
            node.text = details or check.summary
        elif check.status == "skip":
            ET.SubElement(case, "skipped", message=check.summary)
        elif check.status == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = "warning: " + (details or check.summary)
    root = ET.Element("testsuites", name="gate", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
