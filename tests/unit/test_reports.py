"""Renderers on a fixed report (not a live run), compared with files under tests/golden/.

Regenerate after an intended change: GATE_UPDATE_GOLDEN=1 pytest tests/unit/test_reports.py
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from gate.errors import ConfigError
from gate.report.console import render_console
from gate.report.json_report import render_json, report_dict, validate_report
from gate.report.junit import render_junit
from gate.report.markdown import render_markdown
from gate.report.model import Chart, CheckResult, DataInfo, Finding, ModelInfo, PowerNote, Report, Table
from gate.report.write import write_atomic

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def fixed_report() -> Report:
    per_class = [{"class": c, "precision": p, "recall": r, "f1": f, "support": 10}
                 for c, p, r, f in (("cat", 0.9, 0.9, 0.9), ("dog", 0.8, 0.8, 0.8))]
    metrics = {
        "num_samples": 20,
        "baseline": {"accuracy": 0.85, "macro_f1": 0.85, "weighted_f1": 0.85, "per_class": per_class,
                     "confusion_matrix": [[9, 1], [2, 8]]},
        "candidate": {"accuracy": 0.7, "macro_f1": 0.69, "weighted_f1": 0.69, "per_class": per_class,
                      "confusion_matrix": [[9, 1], [5, 5]]},
        "comparison": {"agreement": 0.8, "negative_flip_rate": 0.15, "positive_flip_rate": 0.0,
                       "negative_flips": 3, "positive_flips": 0,
                       "per_class": [{"class": "cat", "negative_flips": 0, "positive_flips": 0, "negative_flip_rate": 0.0},
                                     {"class": "dog", "negative_flips": 3, "positive_flips": 0, "negative_flip_rate": 0.3}]},
    }
    checks = (
        CheckResult(name="sanity", status="pass", summary="outputs finite", duration_s=0.01),
        CheckResult(
            name="per_class", status="fail", summary="recall[dog]: drop 0.3 exceeds max_drop 0.1 by 0.2",
            findings=(
                Finding(metric="recall[dog]", rule="max_drop", status="fail", reason="recall[dog]: drop 0.3 exceeds max_drop 0.1 by 0.2",
                        threshold=0.1, value=0.3, baseline=0.8, candidate=0.5, margin=-0.2, required=0.3, where="dog"),
                Finding(metric="recall[cat]", rule="max_drop", status="pass", reason="ok", threshold=0.1, value=0.0,
                        baseline=0.9, candidate=0.9, margin=0.1, required=0.0, where="cat"),
            ),
            tables=(Table(title="Per-class", headers=("class", "recall b", "recall c"), rows=(("cat", 0.9, 0.9), ("dog", 0.8, 0.5))),),
            duration_s=0.002,
        ),
        CheckResult(
            name="drift", status="warn", summary="drift starts at layer fc",
            findings=(Finding(metric="cosine[fc]", rule="min_cosine", status="warn", reason="cosine 0.9 straddles",
                              threshold=0.95, value=0.9, margin=-0.05, interval=(0.85, 0.97), inconclusive=True,
                              decision="non-inferiority", where="fc"),),
            charts=(Chart(title="1 - cosine", labels=("conv", "fc"), values=(0.01, 0.1), y_label="1 - cosine"),),
            details={"sqnr_db": {"fc": math.inf}},
            notes=("power: grow the data 3x",),
        ),
        CheckResult(name="onnx", status="skip", summary="onnx is optional and onnxruntime is not installed"),
    )
    return Report(
        verdict="fail", exit_code=1, summary="FAIL: 1 of 4 checks failed (per_class)", checks=checks,
        models=(ModelInfo("baseline", "prod.pt", "state_dict", "ab" * 32, 1234, 99, 2),
                ModelInfo("candidate", "cand.pt2", "export", "cd" * 32, 1300, 99, 2)),
        data=DataInfo(path="eval.npz", format="npz", sha256="ef" * 32, num_samples=20, num_batches=1, batch_size=64),
        class_names=("cat", "dog"), metrics=metrics, config={"device": "cpu", "decision": {"mode": "non-inferiority", "confidence": 0.95, "inconclusive": "warn", "multiple_comparisons": "holm"}},
        environment={"python": "3.11", "torch": "2.13.0", "device": "cpu"},
        created_at="2026-11-29T00:00:00+00:00", duration_s=1.5, gate_version="0.1.0", schema_version="1.1",
        power=(PowerNote(check="accuracy", metric="accuracy", threshold=0.01, min_detectable=0.039, samples=200,
                         samples_needed=1234, note="the data cannot decide accuracy max_drop 0.01"),),
    )


@pytest.mark.parametrize("name,render", [("report.md", render_markdown), ("report.xml", render_junit),
                                         ("report.txt", render_console), ("report.json", render_json)])
def test_golden(name, render):
    text = render(fixed_report())
    path = GOLDEN / name
    if os.environ.get("GATE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if intended, regenerate with GATE_UPDATE_GOLDEN=1"


def test_json_report_validates_and_carries_non_finite_values():
    data = json.loads(render_json(fixed_report()))
    validate_report(data)
    assert data["checks"][2]["details"]["sqnr_db"]["fc"] == "inf"
    broken = dict(data, verdict="maybe")
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    assert report_dict(fixed_report())["schema_version"] == "1.1"


def test_power_notes_come_first_and_have_the_published_shape():
    import dataclasses

    report = fixed_report()
    data = json.loads(render_json(report))
    assert data["power"] == [{"check": "accuracy", "metric": "accuracy", "threshold": 0.01, "min_detectable": 0.039,
                              "samples": 200, "samples_needed": 1234,
                              "note": "the data cannot decide accuracy max_drop 0.01"}]
    assert all("power" not in check for check in data["checks"])
    assert render_console(report).startswith("POWER: the data cannot decide accuracy max_drop 0.01\n")
    assert render_markdown(report).startswith("> [!WARNING]\n> **Too few samples to decide accuracy: accuracy threshold 0.01.**")
    quiet = dataclasses.replace(report, power=())
    assert json.loads(render_json(quiet))["power"] == []
    validate_report(json.loads(render_json(quiet)))
    assert render_markdown(quiet).startswith("## :x: gate FAILED")
    bad = dict(data, power=[{"check": "accuracy"}])
    with pytest.raises(jsonschema.ValidationError):
        validate_report(bad)


def test_markdown_puts_verdict_and_failures_first_and_renders_charts():
    md = render_markdown(fixed_report())
    assert md.split("\n\n", 1)[1].startswith("## :x: gate FAILED")   # after the power warning
    order = [md.index(f"<b>{name}</b>") for name in ("per_class", "drift", "sanity", "onnx")]
    assert order == sorted(order)
    assert "```mermaid\nxychart-beta" in md and 'x-axis ["conv", "fc"]' in md


def test_junit_has_one_case_per_check_with_failure_reasons():
    root = ET.fromstring(render_junit(fixed_report()).split("\n", 1)[1])
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"sanity", "per_class", "drift", "onnx"}
    assert "recall[dog]" in cases["per_class"].find("failure").text
    assert cases["onnx"].find("skipped") is not None
    assert cases["sanity"].find("failure") is None


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    write_atomic(target, "first")

    def explode(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(ConfigError, match=r"^cannot write .*r\.json: disk full$"):
        write_atomic(target, "second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_reports_replace_a_symlink_never_write_through_it_and_write_devices_in_place(tmp_path):
    """A link at a report path is replaced by the report, as a failed run removes the link: the file it points to
    (outside the checkout, say) is never written. Folders on the way are followed."""
    from gate.report.write import write_reports

    real = tmp_path / "real.json"
    real.write_text("theirs")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    (tmp_path / "folder").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "folder")
    write_reports({str(link): "{}", str(tmp_path / "via" / "r.md"): "# r", "/dev/null": "ignored"})
    assert not link.is_symlink() and link.read_text() == "{}" and real.read_text() == "theirs"
    assert (tmp_path / "folder" / "r.md").read_text() == "# r"
    assert Path("/dev/null").is_char_device()


def test_reports_are_all_or_nothing(tmp_path, monkeypatch):
    from gate.report import write

    calls = []
    real_replace = os.replace

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(ConfigError, match=r"^cannot write .*b\.md: disk full$"):
        write.write_reports({str(tmp_path / "a.json"): "a", str(tmp_path / "b.md"): "b"})
    assert list(tmp_path.iterdir()) == []


def test_reports_respect_the_umask(tmp_path):
    from gate.report.write import write_reports

    old = os.umask(0o022)
    try:
        write_reports({str(tmp_path / "r.json"): "{}"})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_markdown_for_reviewers_sorts_classes_worst_first_and_caps_long_tables():
    from gate.report.markdown import MAX_ROWS, _table, render_markdown
    from gate.report.model import Table
    from tests.unit.report_fixtures import wide_report

    text = render_markdown(wide_report(1000))
    assert len(text) < 65_536                        # GitHub's limit for a comment or a job summary
    assert "more rows in the JSON and HTML reports" in text

    headers = ("class", "support", "precision b", "precision c", "recall b", "recall c", "recall delta",
               "f1 b", "f1 c", "f1 delta")                      # gate.checks.classification.PerClassCheck's table
    rng = __import__("random").Random(0)
    rows = tuple((f"c{i}", 50, 1.0, 1.0, 1.0, 0.9, f"{rng.uniform(-0.3, 0.1):+.4f}", 1.0, 0.9, f"{-i / 1000:+.4f}")
                 for i in range(60))
    lines = _table(Table(title="Per-class metrics", headers=headers, rows=rows), check="per_class")
    body = [line for line in lines if line.startswith("| c") and not line.startswith("| class")]
    deltas = [float(line.split("|")[7]) for line in body]
    assert len(body) == MAX_ROWS and deltas == sorted(float(r[6]) for r in rows)[:MAX_ROWS]
    assert lines[0] == "**Per-class metrics** (worst first)"
    assert f"{60 - MAX_ROWS} more rows" in "\n".join(lines)


def test_fit_github_cuts_at_a_line_and_closes_what_it_opened():
    from gate.report.markdown import fit_github

    body = "<details open><summary>x</summary>\n\n```\n" + "\n".join(f"line {i} " + "x" * 80 for i in range(2000))
    cut = fit_github(body, limit=20_000)
    assert len(cut) <= 20_000 and "cut here to fit GitHub's comment size" in cut
    lines = cut.splitlines()
    assert sum(line.startswith("```") for line in lines) % 2 == 0
    assert cut.count("<details") == cut.count("</details>")
    assert all(line == "```" or line.startswith(("line ", "<details", "</details", ">", "")) for line in lines)
    assert fit_github("short\n") == "short\n"
