"""Behavioural cases: a case the candidate breaks fails the gate by id with both models' predictions, per-tag
limits decide instead, cases are scored through the run's own encoder and models, and their text is inert."""
from __future__ import annotations

import json

import pytest
import torch

from tests import slice_world
from tests.acceptance.helpers import run_cli
from tests.slice_world import make_text_world

CASES = """\
cases:
  - {id: neg-plain, type: mft, text: "a bad film", expected: negative, tags: [basic]}
  - {id: neg-glitch, type: mft, text: "a bad glitch film", expected: negative, tags: [glitch]}
  - {id: inv-filler, type: inv, texts: ["good film", "good film, glitch"], tags: [filler]}
  - {id: dir-intensify, type: dir, text: "good film", perturbed: "good good film", class: positive, direction: up}
  - {id: dir-glitch, type: dir, text: "good film", perturbed: "good glitch film", class: positive, tags: [glitch]}
  - {id: both-fail, type: mft, text: "good film <script>alert(1)</script> @team", expected: negative}
"""


def probs(net, text: str) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net(slice_world.features([text])["x"]), 1)[0]


def gate_run(tmp_path, capsys, *, tags: str = "", cases: str = CASES, suffix: str = ".yaml"):
    world = make_text_world(tmp_path / "w", n=300, glitch_share=0.0)   # the models agree on every data row
    (tmp_path / f"cases{suffix}").write_text(cases)
    config = tmp_path / "gate.yaml"
    config.write_text("data: {tokenizer: 'tests.slice_world:tokenizer'}\nclass_names: [negative, positive]\n"
                      "model: {factory: 'tests.slice_world:build'}\n"
                      f"checks:\n  cases:\n    enabled: true\n    file: cases{suffix}\n    batch_size: 2\n{tags}")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    before = dict(slice_world.CALLS)
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out, "--markdown", md)
    report = json.loads(out.read_text()) if out.exists() else None
    res.calls = {k: slice_world.CALLS[k] - before[k] for k in before}
    return res, report, md.read_text() if md.exists() else ""


def test_a_broken_must_pass_case_fails_the_gate_with_its_id(tmp_path, in_repo_root, capsys):
    res, report, md = gate_run(tmp_path, capsys)
    assert res.code == 1, res.err + res.out
    # one tokenizer, one model per role: the cases went through the run's own encoder and models
    assert res.calls == {"tokenizer": 1, "build": 2}
    check = next(c for c in report["checks"] if c["name"] == "cases")
    assert check["status"] == "fail"
    failed = sorted(f["where"] for f in check["findings"] if f["status"] == "fail")
    assert failed == ["dir-glitch", "inv-filler", "neg-glitch"]
    details = check["details"]
    assert (details["cases"], details["broken"], details["fixed"], details["failed_by_both"]) == (6, 3, 0, 1)
    results = {r["id"]: r for r in details["results"]}
    base, cand = slice_world.baseline(), slice_world.regressed()
    p_base, p_cand = probs(base, "a bad glitch film"), probs(cand, "a bad glitch film")
    assert results["neg-glitch"]["baseline"] == [{"prediction": "negative", "confidence": pytest.approx(float(p_base.max()))}]
    assert results["neg-glitch"]["candidate"] == [{"prediction": "positive", "confidence": pytest.approx(float(p_cand.max()))}]
    change = float(probs(cand, "good glitch film")[1] - probs(cand, "good film")[1])
    assert results["dir-glitch"]["candidate_change"] == pytest.approx(change) and change < 0
    assert results["dir-glitch"]["baseline_change"] == pytest.approx(0.0, abs=1e-6)
    assert results["inv-filler"]["baseline_pass"] and not results["inv-filler"]["candidate_pass"]
    reason = next(f["reason"] for f in check["findings"] if f["where"] == "neg-glitch")
    assert "expected negative" in reason and "candidate positive 0.88" in reason and "baseline negative 0.88" in reason
    assert "neg-glitch" in res.out
    # case text is data: inert in the Markdown
    assert "<script>" not in md and "&lt;script&gt;" not in md   # both-fail is not broken: not listed
    assert "\\| good film, glitch" in md or "good film \\| good film, glitch" in md


def test_tag_limits_decide_for_the_cases_they_cover(tmp_path, in_repo_root, capsys):
    loose = "    tags:\n      glitch: {max_fail_rate: 1.0}\n      filler: {max_fail_rate: 1.0}\n"
    res, report, _ = gate_run(tmp_path, capsys, tags=loose)
    assert res.code == 0, res.err + res.out
    check = next(c for c in report["checks"] if c["name"] == "cases")
    assert {f["metric"] for f in check["findings"]} == {"fail_rate[glitch]", "fail_rate[filler]"}
    assert "3 broken within their tags' limits" in check["summary"]


def test_a_tag_over_its_limit_fails_and_names_its_broken_cases(tmp_path, in_repo_root, capsys):
    tight = "    tags:\n      glitch: {max_fail_rate: 0.4}\n      filler: {max_fail_rate: 1.0}\n"
    res, report, _ = gate_run(tmp_path, capsys, tags=tight)
    assert res.code == 1
    check = next(c for c in report["checks"] if c["name"] == "cases")
    f = next(f for f in check["findings"] if f["metric"] == "fail_rate[glitch]")
    assert f["status"] == "fail" and f["value"] == 1.0 and f["threshold"] == 0.4
    assert "neg-glitch" in f["reason"] and "dir-glitch" in f["reason"]


def test_jsonl_cases_and_the_broken_table_escapes_text(tmp_path, in_repo_root, capsys):
    lines = [{"id": "evil", "type": "mft", "text": "bad glitch </details><img src=x> [x](http://e.vil)",
              "expected": "negative"},
             {"id": "fine", "type": "mft", "text": "bad", "expected": "negative"}]
    res, report, md = gate_run(tmp_path, capsys, cases="".join(json.dumps(x) + "\n" for x in lines), suffix=".jsonl")
    assert res.code == 1
    assert "<img" not in md and "&lt;img src=x&gt;" in md and "http&#58;//e.vil" in md


@pytest.mark.parametrize("cases,needle", [
    ("cases:\n  - {id: a, type: mft, text: hi, expected: neutral}\n", "unknown label 'neutral'"),
    ("cases:\n  - {id: a, type: inv, texts: []}\n", "found an empty group"),
    ("cases:\n  - {id: a, type: inv, texts: [only one]}\n", "at least two texts"),
    ("cases:\n  - {id: a, type: mft, text: hi, expected: negative}\n  - {id: a, type: mft, text: ho, expected: negative}\n",
     "id 'a' is used twice"),
    ("cases:\n  - {id: a, type: dir, text: hi, perturbed: ho, class: positive, direction: sideways}\n",
     "direction: expected up or down"),
    ("cases:\n  - {id: a, type: mft, txt: hi, expected: negative}\n", "txt: unknown key (did you mean text?)"),
    ("cases:\n  - !!python/object/apply:os.system ['touch /tmp/pwned']\n", "invalid YAML"),
    ("cases: []\n", "at least one case"),
])
def test_bad_cases_files_are_one_error_line_and_no_report(tmp_path, in_repo_root, capsys, cases, needle):
    res, report, md = gate_run(tmp_path, capsys, cases=cases)
    assert res.code == 2 and report is None and not md
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.err
    assert "checks.cases.file" in lines[0]


def test_a_cases_file_that_tries_to_run_code_runs_nothing(tmp_path, in_repo_root, capsys):
    marker = tmp_path / "pwned"
    payload = f"cases:\n  - !!python/object/apply:os.system ['touch {marker}']\n"
    res, report, _ = gate_run(tmp_path, capsys, cases=payload)
    assert res.code == 2 and report is None
    assert not marker.exists()
    jsonl = json.dumps({"id": "x", "type": "mft", "text": f"__import__('os').system('touch {marker}')",
                        "expected": "negative"}) + "\n"
    res, report, _ = gate_run(tmp_path, capsys, cases=jsonl, suffix=".jsonl")
    assert res.code in (0, 1) and not marker.exists()          # a text is scored, never evaluated
