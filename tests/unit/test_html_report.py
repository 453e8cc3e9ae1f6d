"""The HTML report on fixed reports (not live runs): golden structure, self-containment, escaping, caps.

Regenerate the golden file after an intended change: GATE_UPDATE_GOLDEN=1 pytest tests/unit/test_html_report.py
"""
from __future__ import annotations

import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gate.report import html as html_report_module
from gate.report.html import render_html
from tests.unit.report_fixtures import HOSTILE, html_report, wide_report

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

# Every element the renderer writes; anything else in the page came from data that escaped its escaping.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "h4", "p", "strong", "b", "code",
    "main", "nav", "a", "section", "ol", "li", "br", "div", "span", "table", "thead", "tbody", "tr", "th", "td",
    "details", "summary", "footer", "svg", "g", "rect", "line", "text", "path",
}
VOID = {"meta", "br"}


class Page(HTMLParser):
    """Tags (checked for nesting), attributes and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_golden_html():
    text = render_html(html_report())
    path = GOLDEN / "report.html"
    if os.environ.get("GATE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), "report.html changed; if intended, regenerate with GATE_UPDATE_GOLDEN=1"


def test_page_is_well_formed_and_fetches_nothing():
    text = render_html(html_report())
    page = Page(text)
    assert page.errors == []
    assert set(page.tags) <= ALLOWED_TAGS
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    for tag, key, value in page.attrs:
        if key in ("href", "src", "xlink:href"):
            assert (value or "").startswith("#"), f"<{tag} {key}={value!r}> would fetch or leave the page"
        assert not key.startswith("on"), f"event handler {key} on <{tag}>"
    assert "url(" not in text and "@import" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    csp = [v for tag, k, v in page.attrs if tag == "meta" and k == "content" and "default-src" in (v or "")]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]


def test_verdict_first_then_failures_then_charts():
    text = render_html(html_report())
    marks = ["<header class=\"verdict fail\">", 'id="failures"', 'id="checks"', 'id="metrics"', 'id="per-class"',
             'id="confusion"', 'id="latency"', 'id="drift"', 'id="details"', "<footer>"]
    positions = [text.index(m) for m in marks]
    assert positions == sorted(positions)
    failures = text[text.index('id="failures"'):text.index('id="checks"')]
    # fail findings before warn findings; passing ones are not listed at the top
    assert failures.index("recall[dog]") < failures.index("precision[bird]")
    assert failures.index("cosine[head]") < failures.index("precision[bird]")     # every failure, then warnings
    assert "recall[cat]" not in failures
    assert "drop 0.3 exceeds max_drop 0.1 by 0.2" in failures and "interval [0.2, 0.4]" in failures


def test_per_class_chart_marks_the_failing_class_and_sorts_worst_first():
    text = render_html(html_report())
    chart = text[text.index('id="per-class"'):text.index('id="confusion"')]
    labels = re.findall(r'text-anchor="end" fill="[^"]+"(?: font-weight="bold")?>([^<]+)</text>', chart)
    assert labels == ["dog", "cat", "bird"]        # recall -0.3, precision -0.1, precision -0.08
    assert "FAIL: recall" in chart and "WARN: precision" in chart


def test_confusion_heatmap_shows_each_changed_cell_with_its_counts():
    text = render_html(html_report())
    heat = text[text.index('id="confusion"'):text.index('id="latency"')]
    # baseline [[9,1,0],[1,8,1],[2,1,7]] -> candidate [[9,1,0],[4,5,1],[1,1,8]]: four cells changed
    tips = re.findall(r"<title>(true [^<]+)</title>", heat)
    assert sorted(tips) == sorted([
        "true dog, predicted cat: baseline 1, candidate 4 (+3)",
        "true dog, predicted dog: baseline 8, candidate 5 (-3)",
        "true bird, predicted cat: baseline 2, candidate 1 (-1)",
        "true bird, predicted bird: baseline 7, candidate 8 (+1)",
    ] + ["true cat, predicted cat: baseline 9, candidate 9 (+0)"])
    worse = re.search(r"predicted cat: baseline 1, candidate 4 \(\+3\)</title><rect [^>]*fill=\"([^\"]+)\"", heat)
    better = re.search(r"predicted bird: baseline 7, candidate 8 \(\+1\)</title><rect [^>]*fill=\"([^\"]+)\"", heat)
    assert worse.group(1) == "#c62828" and better.group(1) == "#1565c0"


def test_latency_shows_both_models_for_every_batch_size():
    text = render_html(html_report())
    latency = text[text.index('id="latency"'):text.index('id="drift"')]
    assert latency.count("<svg") == 2
    assert "cpu batch size 1: p50 ratio 1.05" in latency and "cpu batch size 8" in latency
    assert "p50 1.05  p90 1.3  p95 1.4  p99 2  mean 1.15 ms" in latency      # candidate, bs=1
    assert "linear axis" in latency and "log axis" in latency                 # bs=8's tail spans 45x


def test_drift_marks_the_first_drifting_layer():
    text = render_html(html_report())
    drift = text[text.index('id="drift"'):text.index('id="details"')]
    assert "First drifting layer: head" in drift
    row = drift[drift.index(">head</text>"):]
    assert row.index("drift starts here") < row.index("</g>")
    assert drift.count("drift starts here") == 1


def test_sections_appear_only_when_their_data_exists():
    text = render_html(html_report(latency=False, drift=False))
    assert 'id="latency"' not in text and 'id="drift"' not in text
    assert 'href="#latency"' not in text and 'href="#drift"' not in text
    assert 'id="per-class"' in text and 'href="#per-class"' in text
    passing = render_html(html_report())
    assert 'href="#latency"' in passing and 'href="#drift"' in passing


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_text_not_markup(hostile):
    names = (hostile, hostile + "2", "ok")
    report = html_report(class_names=names, layers=(hostile, "b", hostile + "3", "d"), path=hostile)
    text = render_html(report)
    page = Page(text)
    assert page.errors == []
    assert set(page.tags) <= ALLOWED_TAGS
    assert not any(k.startswith("on") for _, k, _ in page.attrs)
    assert "<script" not in text and "<img" not in text and "</svg><script" not in text
    seen = "".join(page.text)
    assert hostile in seen                                  # shown, as text
    assert f"recall[{hostile}2]: drop 0.3" in seen          # in a reason
    assert f"First drifting layer: {hostile}3" in seen      # in a layer name


def test_a_thousand_classes_stay_small_and_say_what_they_left_out():
    text = render_html(wide_report(1000))
    size = len(text.encode("utf-8"))
    assert size < 300_000, f"{size} bytes for 1,000 classes"
    assert Page(text).errors == []
    heat = text[text.index('id="confusion"'):]
    heat = heat[:heat.index("</section>")]
    assert len(re.findall(r"<title>true ", heat)) <= html_report_module.MAX_HEATMAP_CLASSES ** 2
    assert "classes with the largest changes of 1000" in heat
    chart = text[text.index('id="per-class"'):text.index('id="confusion"')]
    assert chart.count("<g><title>") == html_report_module.MAX_CLASS_BARS
    assert "40 of 1000 classes: the flagged ones (142) first" in chart
    assert "132 more per_class failures" in text
    assert "950 more rows are in the JSON report" in text


def test_non_finite_and_missing_figures_render_without_breaking_the_page():
    from dataclasses import replace

    from gate.report.model import Chart, Finding

    nan, inf = math.nan, math.inf
    report = html_report()
    metrics = json.loads(json.dumps(report.metrics))
    metrics["candidate"]["per_class"][0]["recall"] = nan            # a class without support
    metrics["candidate"]["per_class"][1]["precision"] = None
    checks = []
    for check in report.checks:
        if check.name == "drift":
            layers = [dict(f) for f in check.details["layers"]]
            layers[0]["cosine"] = None                              # widths differ: CKA
            layers[0]["cka"] = 0.5
            layers[1]["cosine"] = {"mean": nan, "tail": nan}        # NaN activations
            layers[2]["cosine"] = None                              # nothing comparable
            check = replace(check, details={**check.details, "layers": layers},
                            findings=(Finding(metric="non_finite", rule="max", status="fail", reason="NaN",
                                              value=inf, threshold=0.0, margin=-inf, where="body.2"),))
        if check.name == "latency":
            runs = [dict(r) for r in check.details["runs"]]
            runs[0]["candidate_ms"] = {"p50": nan, "p90": None, "p95": inf, "p99": 2.0, "mean": 1.0}
            runs[1]["baseline_ms"] = {}
            check = replace(check, details={**check.details, "runs": runs})
        if check.name == "sanity":
            check = replace(check, charts=(Chart(title="t", labels=("a", "b"), values=(nan, inf)),))
        checks.append(check)
    broken = replace(report, metrics=metrics, checks=tuple(checks))
    text = render_html(broken)
    page = Page(text)
    assert page.errors == [] and set(page.tags) <= ALLOWED_TAGS
    assert "1 \u2212 CKA 0.5" in text and "not comparable" in text
    assert "recall n/a  precision -0.100" in text and "precision n/a" in text       # cat, dog
    assert "measured inf" in text and "margin -inf" in text
    # nothing to chart: the sections go, the page stays
    empty = replace(report, metrics={}, checks=(report.checks[0],))
    text = render_html(empty)
    assert Page(text).errors == []
    assert 'id="per-class"' not in text and 'id="confusion"' not in text and 'id="metrics"' not in text


def test_flipped_examples_are_listed_and_their_text_is_inert():
    import dataclasses

    from gate.report.html import render_html
    from gate.report.model import FlipExample, FlipExamples
    from tests.unit.report_fixtures import html_report

    hostile = '</td></table><script>alert(1)</script><img src=x onerror=alert(1)>'
    examples = FlipExamples(
        negative=(FlipExample("negative", 7, "positive", "positive", 0.91, "negative", 0.88, text=hostile,
                              where="eval.jsonl: line 8"),),
        positive=(), negative_total=3, positive_total=0, cap=20, text_chars=300)
    page = render_html(dataclasses.replace(html_report(), examples=examples))
    assert '<section id="flipped">' in page and "1 of 3 shown" in page and "eval.jsonl: line 8" in page
    assert "positive (0.91)" in page and "negative (0.88)" in page
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert render_html(html_report()).count('<section id="flipped">') == 0      # no examples: no section
