"""Strings from files are inert in the Markdown the Action publishes (job summary, PR comment), in its workflow
commands (annotations) and in its outputs. The Markdown oracle is an independent CommonMark parser (markdown-it-py,
raw HTML and tables on, as GitHub has them): whatever it turns into a tag, a link or a table cell, GitHub would.
"""
from __future__ import annotations

import dataclasses
import io
import re
import urllib.parse

import pytest
from markdown_it import MarkdownIt

from gate.action import entrypoint as ep
from gate.report.escape import md_code, md_fence, md_text, mermaid_text
from gate.report.markdown import render_markdown
from gate.report.model import Chart, Table
from tests.github_files import parse_github_output
from tests.unit.test_reports import fixed_report

HOSTILE = [
    "</details><img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "@admins please look",
    "@acme/security-team",
    "[click](http://e.vil)",
    "![pixel](https://e.vil/p.png)",
    "http://e.vil/bare www.e.vil mailto:x@e.vil",
    "`code` and ``` fence",
    "a|b||c",
    "&lt;img src=x&gt; &#60;b&#62;",
    "<!-- hidden --> visible",
    "$\\href{http://e.vil}{x}$",
    "acme/models#1 and #2",
    "line one\nline two\r\n## heading",
    "\u202eevil\u202c reversed",
    "back\\slash \\| pipe",
]


def html(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def text_of(rendered: str) -> str:
    """The visible text: tags dropped, entities decoded, zero-width spaces removed."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", rendered)).replace("\u200b", "")


@pytest.mark.parametrize("value", HOSTILE)
def test_md_text_is_inert_and_reads_as_the_original(value: str):
    out = html(f"before {md_text(value)} after")
    assert re.findall(r"<(\w+)", out) == ["p"]            # no tag but the paragraph
    # GitHub also autolinks bare URLs, which this CommonMark oracle does not: no scheme or www. survives as such.
    assert not re.search(r"(?i)\b(https?|mailto|ftp):|\bwww\.", md_text(value))
    assert "@admins" not in out and "@acme/" not in out and "#1" not in out.replace("&#", "")
    shown = text_of(out).strip()
    expected = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    assert " ".join(shown.replace("\ufffd", "").split()) == f"before {expected} after".replace("\u202e", "").replace(
        "\u202c", "")


@pytest.mark.parametrize("value", HOSTILE)
def test_md_text_keeps_a_table_cell_one_cell(value: str):
    out = html(f"| a | b | c |\n|---|---|---|\n| x | {md_text(value)} | y |\n")
    [row] = re.findall(r"<tr>\s*(<td>.*?)</tr>", out, re.S)
    cells = re.findall(r"<td>(.*?)</td>", row, re.S)
    assert len(cells) == 3 and cells[0] == "x" and cells[2] == "y"
    assert "<img" not in row and "<a " not in row and "<code" not in row


def test_md_code_cannot_be_closed_by_a_backtick():
    out = html(md_code("a`b</code><img src=x>"))
    assert "<img" not in out and out.count("<code>") == 1


def test_md_fence_is_longer_than_any_backtick_run():
    block = md_fence("error: ```` </details> @admins")
    out = html(block)
    assert out.count("<pre>") == 1 and "&lt;/details&gt;" in out and "<details" not in out


def test_mermaid_labels_keep_no_markup():
    assert mermaid_text('a"]\n```\n<b>x</b>') == "a_]______b_x_/b_"


def hostile_report():
    """The fixed report with class names, a path and notes taken from a hostile PR."""
    report = fixed_report()
    bad = HOSTILE[0] + " " + HOSTILE[2] + " " + HOSTILE[4]
    checks = list(report.checks)
    per_class = checks[1]
    finding = dataclasses.replace(per_class.findings[0], metric=f"recall[{bad}]", where=bad)
    checks[1] = dataclasses.replace(
        per_class, summary=f"recall[{bad}] dropped", findings=(finding, *per_class.findings[1:]),
        tables=(Table(title=f"Per-class {bad}", headers=("class", bad), rows=((bad, 0.5), ("a|b", 0.1))),),
        notes=(f"note {bad}",))
    drift = checks[2]
    checks[2] = dataclasses.replace(drift, charts=(Chart(title=bad, labels=("```", bad), values=(0.1, 0.2),
                                                         y_label=bad),))
    models = (dataclasses.replace(report.models[0], path=f"models/{bad}`.pt"), report.models[1])
    return dataclasses.replace(report, checks=tuple(checks), models=models, summary=f"FAIL: {bad}",
                               data=dataclasses.replace(report.data, path="eval/x`</sub><img src=x>.npz"))


def test_the_gates_markdown_report_is_inert_with_hostile_class_names():
    markdown = render_markdown(hostile_report())
    out = html(markdown)
    assert "<img" not in out and "<a " not in out and "<script" not in out
    assert out.count("<details") == out.count("</details>") == 4
    assert out.count("<sub>") == out.count("</sub>")
    assert "@admins" not in out
    for table in re.findall(r"<table>.*?</table>", out, re.S):
        widths = {len(re.findall(r"<t[hd][ >]", row)) for row in re.findall(r"<tr>.*?</tr>", table, re.S)}
        assert len(widths) == 1, table        # no pipe in a name added a cell
    # The mermaid chart stays one code block, its two labels two plain quoted strings.
    [chart] = re.findall(r"```mermaid\n(.*?)```", markdown, re.S)
    assert not set("<&`") & set(chart) and chart.count(">") == chart.count("-->")
    [x_axis] = [line for line in chart.splitlines() if "x-axis" in line]
    assert len(re.findall(r'"[^"]*"', x_axis)) == 2 and x_axis.count('"') == 4
    assert markdown.count("```mermaid") == 1 and markdown.count("\n```\n") == 1


def test_the_actions_own_markdown_is_inert():
    bad = HOSTILE[0] + " " + HOSTILE[2] + " " + HOSTILE[4] + " a|b"
    report = {"verdict": "fail", "summary": bad, "checks": [
        {"name": bad, "status": "fail", "summary": bad, "findings": [{"status": "fail", "reason": bad}]}]}
    for markdown in (ep.markdown_from_report(report),
                     ep.summary_markdown(ep.GateOutcome(exit_code=2, verdict="error", error="error: ``` " + bad))):
        out = html(markdown)
        assert "<img" not in out and "<a " not in out and "<details" not in out
        assert out.count("<pre>") <= 1 and out.count("<table>") <= 1
        # GitHub links no @mention inside a code block; outside one, none survives.
        assert "@admins" not in re.sub(r"<pre>.*?</pre>", "", out, flags=re.S)


# --------------------------------------------------------------------------- workflow commands and outputs


INJECTIONS = ["x\n::set-env name=BASH_ENV::/tmp/pwned", "x\r::add-mask::y", "%0A::error::forged", "a::b,c:d"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_annotations_stay_one_command_whatever_the_report_says(value: str):
    outcome = ep.GateOutcome(exit_code=1, verdict="fail", report={"verdict": "fail", "checks": [
        {"name": value, "status": "fail", "summary": value, "findings": []}]})
    [line] = ep.annotations(outcome)
    assert "\n" not in line and "\r" not in line
    command, title, message = re.fullmatch(r"::(\w+) title=([^:,]*)::(.*)", line).groups()
    # GitHub percent-decodes both parts once: they decode to exactly the report's text, nothing more.
    assert command == "error"
    assert urllib.parse.unquote(title) == f"gate: {value}" and urllib.parse.unquote(message) == value


@pytest.mark.parametrize("value", INJECTIONS)
def test_outputs_cannot_add_keys(tmp_path, value: str):
    report = {"verdict": "fail", "checks": [{"name": value, "status": "fail"}],
              "power": [{"check": "accuracy", "note": value, "min_detectable": 0.05, "samples_needed": 9000}]}
    outcome = ep.GateOutcome(exit_code=1, verdict="fail", report=report)
    outputs = ep.action_outputs(outcome, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md",
                                workspace=tmp_path)
    text = "".join(ep.format_output(k, v) for k, v in outputs.items())
    assert parse_github_output(text) == outputs
    assert "\n" not in outputs["power-note"] and "\r" not in outputs["power-note"]


def test_the_outputs_line_in_the_log_is_one_line(tmp_path):
    outcome = ep.GateOutcome(exit_code=1, verdict="fail", report={"verdict": "fail", "checks": [
        {"name": "x\n::error::forged", "status": "fail"}]})
    stdout = io.StringIO()
    ep.publish(outcome, values={}, environ={}, workspace=tmp_path, json_path=tmp_path / "r.json",
               markdown_path=tmp_path / "r.md", stdout=stdout)
    log = stdout.getvalue().splitlines()
    [line] = [entry for entry in log if entry.startswith("gate outputs:")]
    assert "failed-checks=x%0A::error::forged" in line
    assert not [entry for entry in log if entry.startswith("::error::")]
