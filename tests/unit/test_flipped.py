"""Flipped examples: a bounded top-N per kind that matches a brute-force ranking, the same for any batching, and
the texts a reviewer reads in every report (escaped)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gate.data import BatchMeta
from gate.flipped import FlipCollector, confidences
from gate.report.json_report import validate_report
from tests.acceptance.helpers import run_cli
from tests.slice_world import make_text_world


def fake_run(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    scores = {role: torch.from_numpy(rng.normal(size=(n, k)).astype(np.float32) * 3) for role in ("baseline", "candidate")}
    preds = {role: s.argmax(1).numpy() for role, s in scores.items()}
    texts = tuple(f"text of sample {i}" for i in range(n))
    return y, scores, preds, texts


def collect(y, scores, preds, texts, *, batch: int, cap: int) -> FlipCollector:
    names = tuple(f"c{i}" for i in range(scores["baseline"].shape[1]))
    col = FlipCollector(names, cap=cap)
    for start in range(0, len(y), batch):
        sl = slice(start, start + batch)
        col.update(offset=start, labels=y[sl], preds={r: p[sl] for r, p in preds.items()},
                   scores={r: s[sl] for r, s in scores.items()}, kinds={"baseline": "logits", "candidate": "logits"},
                   meta=BatchMeta(texts=texts[sl]))
    return col


def test_top_flips_match_a_brute_force_ranking_for_any_batching():
    y, scores, preds, texts = fake_run(3000, 4, seed=3)
    probs = {r: torch.softmax(s, 1).numpy() for r, s in scores.items()}
    ok = {r: preds[r] == y for r in preds}
    one = collect(y, scores, preds, texts, batch=3000, cap=7).result()
    many = collect(y, scores, preds, texts, batch=37, cap=7).result()
    assert one == many
    for kind, mask, wrong in (("negative", ok["baseline"] & ~ok["candidate"], "candidate"),
                              ("positive", ~ok["baseline"] & ok["candidate"], "baseline")):
        rows = np.flatnonzero(mask)
        conf = probs[wrong][rows, preds[wrong][rows]]
        expected = rows[np.lexsort((rows, -conf))][:7]
        kept = getattr(one, kind)
        assert [e.index for e in kept] == expected.tolist()
        assert getattr(one, f"{kind}_total") == rows.size
        for e in kept:
            assert e.text == f"text of sample {e.index}"
            assert e.label == f"c{y[e.index]}"
            assert e.baseline == f"c{preds['baseline'][e.index]}"
            assert e.candidate_confidence == pytest.approx(probs["candidate"][e.index, preds["candidate"][e.index]],
                                                           abs=1e-6)


def test_confidences_are_probabilities_of_the_output_kind():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    assert torch.allclose(confidences(logits, "logits"), torch.softmax(logits, 1))
    probs = torch.tensor([[0.2, 0.8]])
    assert torch.equal(confidences(probs, "probabilities"), probs)
    # binary_logit scores are [0, z]: softmax gives sigmoid(z) for the positive class
    z = torch.tensor([[0.0, 1.5]])
    assert confidences(z, "binary_logit")[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(1.5)).item())


def test_memory_is_the_cap_not_the_data():
    y, scores, preds, texts = fake_run(5000, 3, seed=5)
    col = collect(y, scores, preds, texts, batch=64, cap=3)
    assert all(len(heap) <= 3 for heap in col._heaps.values())
    assert col.totals["negative"] > 100


def test_every_report_shows_the_flipped_texts_escaped(tmp_path, in_repo_root, capsys):
    world = make_text_world(tmp_path / "w", n=400, rare_share=0.2)
    config = tmp_path / "gate.yaml"
    config.write_text("data: {tokenizer: 'tests.slice_world:tokenizer'}\nclass_names: [negative, positive]\n"
                      "model: {factory: 'tests.slice_world:build'}\n")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out, "--markdown", md, "--batch-size", 16)
    assert res.code == 1, res.err
    report = json.loads(out.read_text())
    validate_report(report)
    examples = report["examples"]
    negative = examples["negative"]
    assert negative and len(negative) <= examples["cap"]
    for e in negative:
        row = world.rows[e["index"]]
        assert e["text"] == row["text"] and e["label"] == row["label"]
        assert "glitch" in row["text"].split()          # the candidate is wrong only on these
        assert e["baseline"] == row["label"] != e["candidate"]
        assert e["where"] == f"{world.data}: line {e['index'] + 1}"
    text = md.read_text()
    assert "<details><summary><b>Flipped examples</b>" in text
    first = negative[0]["text"]
    escaped = first.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("@", "@\u200b")
    assert escaped in text
    assert "<b>" not in text.split("Flipped examples", 1)[1].split("</details>", 1)[0].replace("<b>Flipped", "")
    assert "negative flips (baseline right, candidate wrong)" in res.out
    assert negative[0]["text"][:40] in res.out


def test_flipped_text_is_inert_in_markdown_and_on_the_console():
    import dataclasses

    from gate.report.console import render_console
    from gate.report.markdown import render_markdown
    from gate.report.model import FlipExample, FlipExamples
    from tests.unit.test_reports import fixed_report

    # What a collector would have kept: plain_text already took the control characters out.
    y, scores, preds, _ = fake_run(200, 2, seed=1)
    evil = ("</details><img src=x onerror=alert(1)> @org/team see [link](http://e.vil) | `code`\x1b[2J\nline2 "
            + "x" * 400)
    texts = tuple(evil for _ in range(200))
    kept = collect(y, scores, preds, texts, batch=50, cap=4).result()
    assert kept.negative and all("\x1b" not in e.text and "\n" not in e.text for e in kept.negative)
    assert all(len(e.text) == 300 and e.text.endswith("...") for e in kept.negative)
    report = dataclasses.replace(fixed_report(), examples=kept)
    md = render_markdown(report)
    block = md.split("<b>Flipped examples</b>", 1)[1].split("</details>", 1)[0]
    assert "<img" not in block and "&lt;img src=x onerror=alert(1)&gt;" in block
    assert "&lt;/details&gt;" in block and "@\u200borg" in block and "http&#58;//e.vil" in block
    assert "\\[link\\]" in block and "\\|" in block and "\\`code\\`" in block
    console = render_console(report)
    assert "\x1b" not in console and "negative flips (baseline right, candidate wrong)" in console
    lines = [line for line in console.splitlines() if line.startswith("  #")]
    assert 0 < len(lines) <= 6
    manual = FlipExample(kind="negative", index=3, label="a", baseline="a", baseline_confidence=0.9, candidate="b",
                         candidate_confidence=0.6, text=None)
    none_text = dataclasses.replace(report, examples=FlipExamples((manual,), (), 1, 0, 20, 300))
    assert "| 3 | a | a (0.90) | b (0.60) |" in render_markdown(none_text)


@pytest.mark.parametrize("count", [2, 3])
def test_shards_top_flips_merge_to_the_single_runs(count):
    """Each shard keeps its own top-N; the merge of their `rows.` state gives the single run's top-N, ties (many
    equal confidences here) broken by the earlier sample as the single run breaks them."""
    from gate.sharding import Shard, merge_arrays, split_values

    y, scores, preds, texts = fake_run(1500, 3, seed=7)
    scores = {r: torch.round(s) for r, s in scores.items()}           # integer logits: many exact ties
    preds = {r: s.argmax(1).numpy() for r, s in scores.items()}
    single = collect(y, scores, preds, texts, batch=40, cap=9)
    names = tuple(f"c{i}" for i in range(3))
    parts = []
    for s in range(count):
        col = FlipCollector(names, cap=9)
        for b, start in enumerate(range(0, len(y), 40)):
            if not Shard(s, count).owns(b):
                continue
            sl = slice(start, start + 40)
            col.update(offset=start, labels=y[sl], preds={r: p[sl] for r, p in preds.items()},
                       scores={r: v[sl] for r, v in scores.items()}, kinds={"baseline": "logits", "candidate": "logits"},
                       meta=BatchMeta(texts=texts[sl], where=tuple(f"line {i + 1}" for i in range(start, start + 40))
                                      [: len(texts[sl])]))
        parts.append(col.state())
    arrays, rows_text = split_values(merge_arrays(parts))
    merged = FlipCollector(names, cap=9)
    merged.load_state({**arrays, **rows_text})
    want = single.result()
    got = merged.result()
    assert [e.index for e in got.negative] == [e.index for e in want.negative]
    assert [e.index for e in got.positive] == [e.index for e in want.positive]
    assert (got.negative_total, got.positive_total) == (want.negative_total, want.positive_total)
    strip = lambda examples: [dataclasses.replace(e, where=None) for e in examples]  # noqa: E731
    import dataclasses

    assert strip(got.negative) == list(want.negative) and strip(got.positive) == list(want.positive)
    assert all(e.where == f"line {e.index + 1}" for e in got.negative)
    confs = [e.candidate_confidence for e in want.negative]
    assert len(set(confs)) < len(confs)                                  # the ties really are there


def test_a_nan_score_ranks_its_flip_first_merges_as_in_one_run_and_the_json_report_validates():
    """A candidate that outputs NaN for some samples: those flips come first (in sample order), the shards' merge
    gives the single run's list, and the JSON report carries the confidence as "nan" and fits its schema."""
    import dataclasses

    from gate.report.json_report import report_dict
    from gate.sharding import Shard, merge_arrays, split_values
    from tests.unit.report_fixtures import html_report

    y, scores, preds, texts = fake_run(600, 3, seed=11)
    nan_rows = np.flatnonzero((preds["baseline"] == y) & (y != 0))[[5, 40, 41, 90]]   # argmax(NaN) is class 0
    scores["candidate"][torch.as_tensor(nan_rows)] = float("nan")
    preds = {r: s.argmax(1).numpy() for r, s in scores.items()}
    assert all(preds["candidate"][nan_rows] == 0)
    single = collect(y, scores, preds, texts, batch=50, cap=6).result()
    assert [e.index for e in single.negative[:4]] == nan_rows.tolist()
    assert all(np.isnan(e.candidate_confidence) for e in single.negative[:4])
    assert not any(np.isnan(e.candidate_confidence) for e in single.negative[4:])
    names = tuple(f"c{i}" for i in range(3))
    parts = []
    for s in range(2):
        col = FlipCollector(names, cap=6)
        for b, start in enumerate(range(0, len(y), 50)):
            if Shard(s, 2).owns(b):
                sl = slice(start, start + 50)
                col.update(offset=start, labels=y[sl], preds={r: p[sl] for r, p in preds.items()},
                           scores={r: v[sl] for r, v in scores.items()},
                           kinds={"baseline": "logits", "candidate": "logits"}, meta=BatchMeta(texts=texts[sl]))
        parts.append(col.state())
    arrays, rows_text = split_values(merge_arrays(parts))
    merged = FlipCollector(names, cap=6)
    merged.load_state({**arrays, **rows_text})
    assert [e.index for e in merged.result().negative] == [e.index for e in single.negative]
    data = report_dict(dataclasses.replace(html_report(class_names=names), examples=single))
    assert [e["candidate_confidence"] for e in data["examples"]["negative"][:4]] == ["nan"] * 4
    validate_report(json.loads(json.dumps(data)))
