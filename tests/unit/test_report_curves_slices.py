"""The HTML report's ROC / precision-recall section and its slices tables, and the slices in JUnit: parsed back
(html.parser, xml.etree) and checked against the check's own figures and scikit-learn on the same rows."""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from gate.report.html import render_html
from gate.report.junit import render_junit
from tests.unit.report_fixtures import HOSTILE, html_report
from tests.unit.test_curves import checks, feed, softmax, world
from tests.unit.test_slices import OPTIONS, check_for
from tests.unit.test_slices import feed as feed_slices
from tests.unit.test_slices import world as slice_world


class Page(HTMLParser):
    """Sections (by id) with their svgs' polylines and texts, and every table's rows of cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.section: str | None = None
        self.svgs: dict[str, list[dict]] = {}
        self.tables: dict[str, list[list[str]]] = {}       # data-dimension -> rows of cell texts
        self.table: str | None = None
        self.cell: list[str] | None = None
        self.row: list[str] | None = None
        self.in_text = False
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.section = a.get("id")
        elif tag == "svg" and self.section:
            self.svgs.setdefault(self.section, []).append({"label": a.get("aria-label"), "lines": {}, "texts": []})
        elif tag == "polyline" and self.section:
            self.svgs[self.section][-1]["lines"][a.get("class")] = [
                tuple(float(v) for v in p.split(",")) for p in (a.get("points") or "").split()]
        elif tag == "text" and self.section:
            self.in_text = True
            self.svgs[self.section][-1]["texts"].append("")
        elif tag == "table" and a.get("data-dimension") is not None:
            self.table = a["data-dimension"]
            self.tables[self.table] = []
        elif tag == "tr" and self.table:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "text":
            self.in_text = False

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None
        elif tag == "text":
            self.in_text = False
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.table:
            self.tables[self.table].append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.in_text and self.section:
            self.svgs[self.section][-1]["texts"][-1] += data


def scores_result(k: int, *, names: tuple[str, ...] | None = None, options: dict | None = None, n: int = 1500):
    y, zb, zc = world(n, k, seed=21 + k)
    (check,) = checks(options or {}, k)
    if names:
        check.ctx = dataclasses.replace(check.ctx, class_names=names)
    feed(check, y, zb, zc, batch=250)
    return check.compute(), (y, zb, zc)


def with_checks(*results):
    report = html_report()
    return dataclasses.replace(report, checks=(*report.checks, *results))


# ------------------------------------------------------------------------------------------- curves


def test_binary_report_draws_one_roc_and_one_pr_chart_with_both_models():
    result, (y, zb, zc) = scores_result(2)
    page = Page(render_html(with_checks(result)))
    svgs = page.svgs["curves"]
    assert [s["label"] for s in svgs] == ["ROC: baseline and candidate", "precision-recall: baseline and candidate"]
    entry = result.details["curves"]["classes"][0]
    size, left, top = 300, 46, 34
    for svg, kind, (xk, yk) in zip(svgs, ("roc", "pr"), (("fpr", "tpr"), ("recall", "precision"))):
        assert set(svg["lines"]) == {"baseline", "candidate"}
        for role in ("baseline", "candidate"):
            curve = entry[role][kind]
            drawn = svg["lines"][role]
            assert len(drawn) == len(curve[xk])
            expected = [(left + x * size, top + (1 - v) * size) for x, v in zip(curve[xk], curve[yk])]
            assert np.allclose(drawn, expected, atol=0.051)        # one decimal in the page
    # the legend's AUC is scikit-learn's on the models' probabilities
    legend = [t for t in svgs[0]["texts"] if "AUC" in t]
    for role, z in (("baseline", zb), ("candidate", zc)):
        want = roc_auc_score(y == 1, softmax(z)[:, 1])
        shown = next(t for t in legend if t.startswith(role))
        assert float(shown.rsplit(" ", 1)[1]) == pytest.approx(want, abs=5e-4)


def test_multiclass_report_draws_small_multiples_with_names_escaped():
    names = (HOSTILE[0], HOSTILE[1], "bird")
    result, _ = scores_result(3, names=names)
    text = render_html(with_checks(result))
    page = Page(text)
    svgs = page.svgs["curves"]
    assert len(svgs) == 6 and all(set(s["lines"]) == {"baseline", "candidate"} for s in svgs)
    assert "script" not in page.tags and "img" not in page.tags
    assert svgs[0]["texts"][0] == f"class {HOSTILE[0][:25]}\u2026: ROC"          # text, cut to 26 characters
    assert svgs[3]["texts"][0] == f"class {HOSTILE[1][:25]}\u2026: precision-recall"


def test_streamed_curves_are_labelled_approximate_in_the_page():
    result, _ = scores_result(2, options={"bins": 30})
    page = Page(render_html(with_checks(result)))
    assert all("approximate" in s["label"] or "(approximate)" in s["texts"][0] for s in page.svgs["curves"])
    assert "APPROXIMATE" in render_html(with_checks(result))


def test_a_report_without_a_scores_check_has_no_curves():
    text = render_html(html_report())
    assert 'id="curves"' not in text and "<polyline" not in text and "ROC / PR" not in text
    assert 'id="slices"' not in text


# ------------------------------------------------------------------------------------------- slices


def slices_result():
    y, pb, pc, group, texts = slice_world(3000, seed=0)
    check = check_for(OPTIONS | {"min_size": 80})
    feed_slices(check, y, pb, pc, group, texts, batch=400)
    return check.compute(), (y, pb, pc, group, texts)


def slice_masks(y, group, texts):
    lengths = np.array([len(t) for t in texts])
    bucket = np.where(lengths < 100, "<100", np.where(lengths < 400, "100-399", ">=400"))
    label = np.array(("a", "b", "c"))[y]
    out = {"group": {f"group={g}": group == g for g in np.unique(group)},
           "group x label": {f"group={g}, label={c}": (group == g) & (label == c)
                             for g in np.unique(group) for c in ("a", "b", "c")},
           "text_length": {f"text_length={b}": bucket == b for b in np.unique(bucket)}}
    return out


def test_html_has_a_slices_table_per_dimension_with_scikit_learns_numbers():
    result, (y, pb, pc, group, texts) = slices_result()
    page = Page(render_html(with_checks(result)))
    masks = slice_masks(y, group, texts)
    assert set(page.tables) == set(masks)
    statuses = {}
    for f in result.findings:
        statuses.setdefault(f.where, []).append(f.status)
    for dim, rows in page.tables.items():
        header, *body = rows
        assert header[:4] == ["slice", "samples", "accuracy baseline", "accuracy candidate"]
        assert {r[0] for r in body} == set(masks[dim])
        drops = [float(r[4]) for r in body]
        assert drops == sorted(drops, reverse=True)                 # largest drop first
        for row in body:
            m = masks[dim][row[0]]
            assert int(row[1]) == m.sum()
            assert float(row[2]) == pytest.approx(accuracy_score(y[m], pb[m]), abs=5e-5)
            assert float(row[3]) == pytest.approx(accuracy_score(y[m], pc[m]), abs=5e-5)
            assert float(row[4]) == pytest.approx(accuracy_score(y[m], pb[m]) - accuracy_score(y[m], pc[m]), abs=5e-5)
            assert int(row[6]) == np.sum(m & (pb == y) & (pc != y)) and int(row[7]) == np.sum(m & (pb != y) & (pc == y))
            if m.sum() < 80:
                assert row[8].startswith("not gated")
            else:
                worst = min(statuses[row[0]], key=["fail", "warn", "pass"].index)
                assert row[8] == worst.upper()
    east = next(r for r in page.tables["group"] if r[0] == "group=east")
    assert east[8] == "FAIL" and "accuracy max_drop" in east[9]


def test_junit_has_a_case_per_slice_with_its_figures_and_outcome():
    result, (y, pb, pc, group, texts) = slices_result()
    root = ET.fromstring(render_junit(with_checks(result)).split("\n", 1)[1])
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases)
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    masks = slice_masks(y, group, texts)
    slice_cases = [c for c in cases if c.get("classname").startswith("gate.slices.")]
    assert len(slice_cases) == sum(len(v) for v in masks.values())
    by_finding = {}
    for f in result.findings:
        by_finding.setdefault(f.where, []).append(f.status)
    for case in slice_cases:
        dim = case.get("classname")[len("gate.slices."):]
        m = masks[dim][case.get("name")]
        props = {p.get("name"): p.get("value") for p in case.find("properties")}
        assert int(props["samples"]) == m.sum()
        assert float(props["baseline_accuracy"]) == pytest.approx(accuracy_score(y[m], pb[m]), rel=1e-12)
        assert float(props["candidate_accuracy"]) == pytest.approx(accuracy_score(y[m], pc[m]), rel=1e-12)
        assert int(props["negative_flips"]) == np.sum(m & (pb == y) & (pc != y))
        if m.sum() < 80:
            assert case.find("skipped") is not None and case.find("failure") is None
        elif "fail" in by_finding[case.get("name")]:
            failure = case.find("failure")
            assert failure is not None and case.get("name") in failure.get("message")
        else:
            assert case.find("failure") is None and case.find("skipped") is None
    east = next(c for c in slice_cases if c.get("name") == "group=east")
    assert east.find("failure") is not None
    # the check itself is still one case, failing
    check_case = next(c for c in cases if c.get("classname") == "gate" and c.get("name") == "slices")
    assert check_case.find("failure") is not None


# ------------------------------------------------------------------------------------------- curves in Markdown


def mermaid_blocks(text: str) -> list[dict]:
    """Each ```mermaid block's title, axes and line series."""
    out = []
    for block in text.split("```mermaid\n")[1:]:
        body = block.split("```", 1)[0].splitlines()
        entry: dict = {"lines": []}
        for line in body:
            line = line.strip()
            if line.startswith("title "):
                entry["title"] = line[len("title "):].strip('"')
            elif line.startswith("x-axis "):
                entry["x"] = line
            elif line.startswith("line ["):
                entry["lines"].append([float(v) for v in line[len("line ["):-1].split(",")])
        out.append(entry)
    return out


def path_at(x: np.ndarray, y: np.ndarray, g: float) -> float:
    """Test-side reading of the polyline through (x, y) in path order at x = g, segment by segment: on a segment
    that crosses g, linear along it; where vertices sit exactly at g, the highest of them."""
    exact = [yy for xx, yy in zip(x, y) if xx == g]
    if exact:
        return max(exact)
    for (x0, y0), (x1, y1) in zip(zip(x[:-1], y[:-1]), zip(x[1:], y[1:])):
        if min(x0, x1) < g < max(x0, x1):
            return y0 + (g - x0) / (x1 - x0) * (y1 - y0)
    raise AssertionError(f"no segment crosses {g}")


def envelope_at(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.array([path_at(np.asarray(x, float), np.asarray(y, float), g) for g in grid])


def test_a_staircase_is_read_along_its_path_not_across_its_corners():
    from gate.report.markdown import curve_at

    grid = np.linspace(0, 1, 5)
    fpr, tpr = [0, 0, 0.5, 0.5, 1], [0, 0.5, 0.5, 1, 1]       # up, across, up, across
    assert curve_at(fpr, tpr, grid).tolist() == [0.5, 0.5, 1.0, 1.0, 1.0] == envelope_at(fpr, tpr, grid).tolist()
    recall, precision = [1, 0.5, 0.5, 0], [0.5, 0.5, 1, 1]   # a PR curve, recall falling
    assert curve_at(recall, precision, grid).tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert envelope_at(recall, precision, grid).tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]
    rng = np.random.default_rng(3)
    for n in (12, 40, 300):                                  # small n: long horizontal and vertical runs
        from sklearn.metrics import precision_recall_curve, roc_curve
        y = rng.integers(0, 2, n)
        s = np.round(rng.normal(size=n) + y, 1)
        f, t, _ = roc_curve(y, s)
        p, r, _ = precision_recall_curve(y, s)
        g = np.linspace(0, 1, 21)
        assert np.allclose(curve_at(f, t, g), envelope_at(f, t, g), atol=1e-12)
        assert np.allclose(curve_at(r, p, g), envelope_at(r, p, g), atol=1e-12)


def test_markdown_draws_a_binary_models_roc_and_pr_curves_as_scikit_learn_does():
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    from gate.report.markdown import CURVE_GRID, render_markdown

    result, (y, zb, zc) = scores_result(2)
    charts = [b for b in mermaid_blocks(render_markdown(with_checks(result))) if "ROC" in b.get("title", "")
              or "precision-recall" in b.get("title", "")]
    assert [c["title"].split(":")[0] for c in charts] == ["ROC", "precision-recall"]
    grid = np.linspace(0, 1, CURVE_GRID)
    for chart in charts:
        assert len(chart["lines"]) == 2 and all(len(s) == CURVE_GRID for s in chart["lines"])
    for i, z in enumerate((zb, zc)):
        p = softmax(z)[:, 1]
        fpr, tpr, _ = roc_curve(y == 1, p)
        # thinned to at most 200 vertices: within a few hundredths of the whole curve, exact at its ends
        assert np.allclose(charts[0]["lines"][i], envelope_at(fpr, tpr, grid), atol=0.015)
        assert charts[0]["lines"][i][-1] == 1.0
        precision, recall, _ = precision_recall_curve(y == 1, p)
        assert np.allclose(charts[1]["lines"][i], envelope_at(recall, precision, grid), atol=0.02)
        role = ("baseline", "candidate")[i]
        auc = float(charts[0]["title"].split(f"{role} ")[1].split(",")[0])
        ap = float(charts[1]["title"].split(f"{role} ")[1].split(",")[0])
        assert auc == pytest.approx(roc_auc_score(y == 1, p), abs=5e-5)
        assert ap == pytest.approx(average_precision_score(y == 1, p), abs=5e-5)
    # a candidate with worse ranking reads lower along its ROC, as its AUC says
    assert (np.mean(charts[0]["lines"][1]) < np.mean(charts[0]["lines"][0])) == (
        roc_auc_score(y == 1, softmax(zc)[:, 1]) < roc_auc_score(y == 1, softmax(zb)[:, 1]))


def test_markdown_draws_the_classes_whose_auc_changed_most_and_says_approximate_when_streamed():
    from gate.report.markdown import CURVE_CLASSES, render_markdown

    result, (y, zb, zc) = scores_result(5, names=("a", "b", "c", "d", "e"))
    charts = [b for b in mermaid_blocks(render_markdown(with_checks(result))) if b.get("title", "").startswith("class ")]
    change = {c: abs(roc_auc_score(y == c, softmax(zc)[:, c]) - roc_auc_score(y == c, softmax(zb)[:, c])) for c in range(5)}
    want = ["abcde"[c] for c in sorted(change, key=change.get, reverse=True)[:CURVE_CLASSES]]
    assert [c["title"].split(":")[0] for c in charts[::2]] == [f"class {w}" for w in want]
    assert len(charts) == 2 * CURVE_CLASSES
    streamed, _ = scores_result(2, options={"bins": 30})
    text = render_markdown(with_checks(streamed))
    assert "ROC (approximate)" in text and "curves (approximate)" in text


def test_markdown_has_no_curves_without_a_scores_check():
    from gate.report.markdown import render_markdown

    text = render_markdown(html_report())
    assert "false positive rate" not in text and "precision-recall" not in text


def test_a_curve_with_no_vertices_is_not_charted_and_a_lone_line_says_whose_it_is():
    from gate.report.markdown import curve_charts

    curves = {"num_classes": 2, "selection": "class 1 against class 0", "classes": [
        {"class": "1", "baseline": {"roc": {"fpr": [], "tpr": []}, "pr": {}},
         "candidate": {"roc": {"fpr": [0, 0, 1], "tpr": [0, 0.5, 1], "auc": 0.75}, "pr": {}}}]}
    charts = mermaid_blocks("\n".join(curve_charts(curves)))
    assert len(charts) == 1 and charts[0]["title"].endswith("(candidate only)")
    assert charts[0]["lines"] == [envelope_at(np.array([0, 0, 1.0]), np.array([0, 0.5, 1.0]),
                                              np.linspace(0, 1, 21)).round(4).tolist()]
