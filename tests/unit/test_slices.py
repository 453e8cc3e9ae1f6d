"""Slices: per-slice figures against scikit-learn on the slice's rows, the same for any batching and for merged
shards, Holm across slices, the readers' fields, and a regression confined to a 5% slice failing by name."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score

from gate import stats
from gate.checks.base import RunContext, Step
from gate.checks.slices import SlicesCheck, SliceKey
from gate.config import build_config
from gate.data import BatchMeta, open_data
from gate.report.json_report import validate_report
from tests.acceptance.helpers import run_cli
from tests.slice_world import make_text_world

NAMES = ("a", "b", "c")


def world(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    group = rng.choice(["north", "south", "east"], size=n, p=[0.6, 0.3, 0.1])
    texts = ["x" * int(rng.integers(1, 700)) for _ in range(n)]
    pb = np.where(rng.random(n) < 0.85, y, rng.integers(0, 3, n))
    # the candidate is worse in the east only
    worse = (group == "east") & (rng.random(n) < 0.4)
    pc = np.where(worse, (y + 1) % 3, np.where(rng.random(n) < 0.97, pb, rng.integers(0, 3, n)))
    return y, pb, pc, group, texts


def check_for(options: dict, *, n_classes: int = 3) -> SlicesCheck:
    config = build_config({"checks": {"slices": {"enabled": True, **options}}})
    ctx = RunContext(config=config, models={}, class_names=NAMES[:n_classes], device=None)
    return SlicesCheck(config.check("slices"), ctx)


def feed(check: SlicesCheck, y, pb, pc, group, texts, *, batch: int, start: int = 0) -> None:
    for lo in range(0, len(y), batch):
        sl = slice(lo, lo + batch)
        scores = {role: torch.nn.functional.one_hot(torch.from_numpy(p[sl]), 3).float()
                  for role, p in (("baseline", pb), ("candidate", pc))}
        step = Step(index=lo // batch, offset=start + lo, inputs=None, labels=torch.from_numpy(y[sl]), scores=scores,
                    meta=BatchMeta(texts=tuple(texts[sl]), fields={"group": list(group[sl])}),
                    preds={"baseline": pb[sl], "candidate": pc[sl]})
        check.update(step)


OPTIONS = {"by": ["group", ["group", "label"], {"feature": "text_length", "bins": [100, 400]}], "min_size": 20,
           "accuracy": {"max_drop": 0.05, "min": 0.5}, "recall": {"max_drop": 0.1},
           "negative_flip_rate": {"max": 0.1}}


def test_per_slice_figures_match_sklearn_on_the_slice_rows():
    y, pb, pc, group, texts = world(3000, seed=0)
    check = check_for(OPTIONS)
    feed(check, y, pb, pc, group, texts, batch=3000)
    result = check.compute()
    lengths = np.array([len(t) for t in texts])
    bucket = np.where(lengths < 100, "<100", np.where(lengths < 400, "100-399", ">=400"))
    label = np.array(NAMES)[y]
    keys = {f"group={g}": group == g for g in np.unique(group)}
    keys |= {f"group={g}, label={c}": (group == g) & (label == c) for g in np.unique(group) for c in NAMES}
    keys |= {f"text_length={b}": bucket == b for b in np.unique(bucket)}
    rows = {s["slice"]: s for s in result.details["slices"]}
    assert set(rows) == set(keys)
    for name, mask in keys.items():
        row = rows[name]
        assert row["samples"] == mask.sum()
        assert row["baseline_accuracy"] == pytest.approx(accuracy_score(y[mask], pb[mask]))
        assert row["candidate_accuracy"] == pytest.approx(accuracy_score(y[mask], pc[mask]))
        assert row["negative_flips"] == np.sum(mask & (pb == y) & (pc != y))
        assert row["gated"] == (mask.sum() >= 20)
    findings = {(f.metric, f.rule): f for f in result.findings}
    east = group == "east"
    for k, cls in enumerate(NAMES):
        f = findings[(f"recall[{cls}][group=east]", "max_drop")]
        assert f.baseline == pytest.approx(recall_score(y[east], pb[east], labels=[k], average=None)[0])
        assert f.candidate == pytest.approx(recall_score(y[east], pc[east], labels=[k], average=None)[0])
    nfr = findings[("negative_flip_rate[group=east]", "max")]
    assert nfr.value == pytest.approx(np.mean((pb[east] == y[east]) & (pc[east] != y[east])))
    # ranked by the accuracy drop, the worst first, and the east is named in the failure
    drops = [s["accuracy_drop"] for s in result.details["slices"]]
    assert drops == sorted(drops, reverse=True)
    assert result.status == "fail"
    assert "group=east" in result.summary and "accuracy" in result.summary


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_holm_or_bh_runs_across_every_slice_comparison(method):
    y, pb, pc, group, texts = world(2000, seed=1)
    config = build_config({"decision": {"multiple_comparisons": method},
                           "checks": {"slices": {"enabled": True, "by": ["group"], "min_size": 1,
                                                 "accuracy": {"max_drop": 0.02}}}})
    check = SlicesCheck(config.check("slices"), RunContext(config=config, models={}, class_names=NAMES, device=None))
    feed(check, y, pb, pc, group, texts, batch=128)
    result = check.compute()
    raw = []
    for f in result.findings:
        m = group == f.where.split("=", 1)[1]
        b = int(np.sum(m & (pb == y) & (pc != y)))
        c = int(np.sum(m & (pb != y) & (pc == y)))
        raw.append(float(stats.paired_difference_p_values(b, c, int(m.sum()), bound=0.02)[0]))
    assert len(raw) == 3
    assert [f.p_value for f in result.findings] == pytest.approx(list(stats.adjust(np.array(raw), method)))
    assert result.details["multiple_comparisons"] == method


def test_one_batch_many_batches_and_merged_shards_agree():
    y, pb, pc, group, texts = world(1500, seed=2)
    one, many = check_for(OPTIONS), check_for(OPTIONS)
    feed(one, y, pb, pc, group, texts, batch=1500)
    feed(many, y, pb, pc, group, texts, batch=37)
    first, second = check_for(OPTIONS), check_for(OPTIONS)
    feed(first, y[:700], pb[:700], pc[:700], group[:700], texts[:700], batch=64)
    feed(second, y[700:], pb[700:], pc[700:], group[700:], texts[700:], batch=50, start=700)
    merged = check_for(OPTIONS)
    merged.sliced = first.sliced.merge(second.sliced)
    results = [c.compute() for c in (one, many, merged)]
    assert results[0].details == results[1].details == results[2].details
    assert results[0].findings == results[1].findings == results[2].findings


def test_text_length_buckets_and_slice_keys():
    key = SliceKey("text_length", "text_length", (100, 400))
    assert [key.bucket(n) for n in (0, 99, 100, 399, 400, 10_000)] == ["<100", "<100", "100-399", "100-399",
                                                                        ">=400", ">=400"]


def test_small_slices_are_reported_not_gated():
    y, pb, pc, group, texts = world(600, seed=3)
    check = check_for({"by": ["group"], "min_size": 100})
    feed(check, y, pb, pc, group, texts, batch=64)
    result = check.compute()
    east = next(s for s in result.details["slices"] if s["slice"] == "group=east")
    assert east["samples"] < 100 and not east["gated"]
    assert not any(f.where == "group=east" for f in result.findings)
    assert any("not gated" in row[-1] for row in result.tables[0].rows if row[0] == "group=east")
    assert any("fewer than min_size 100" in n for n in result.notes)


def test_too_many_distinct_values_is_a_data_error():
    from gate.errors import DataError

    y, pb, pc, _, texts = world(300, seed=4)
    check = check_for({"by": ["group"], "max_values": 10})
    ids = np.array([f"id{i}" for i in range(300)])
    with pytest.raises(DataError, match=r"checks.slices.by\[0\]: 'group' has more than 10 distinct values"):
        feed(check, y, pb, pc, ids, texts, batch=64)


# ------------------------------------------------------------------------------------------ readers' fields


def test_text_tensor_and_factory_readers_carry_fields(tmp_path, in_repo_root):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": 0, "source": "x", "n": 1}\n{"text": "b", "label": 1, "source": "y"}\n')
    data = open_data(str(jsonl), options={"tokenizer": "tests.slice_world:tokenizer"}, class_names=None,
                     tokenizer=None)
    (_, labels, meta), = list(data.batches_with_meta())
    from gate.data import MISSING

    assert meta.texts == ("a", "b") and meta.fields["source"] == ["x", "y"] and meta.fields["n"] == [1, MISSING]
    assert meta.where == (f"{jsonl}: line 1", f"{jsonl}: line 2")
    csv = tmp_path / "d.csv"
    csv.write_text("text,label,source\nhello,0,imdb\nworld,1,rt\n")
    data = open_data(str(csv), options={"tokenizer": "tests.slice_world:tokenizer"}, class_names=None,
                     tokenizer=None)
    (_, _, meta), = list(data.batches_with_meta())
    assert meta.fields == {"source": ["imdb", "rt"]}
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((5, 3), np.float32), labels=np.arange(5) % 2, group=np.array(list("ppqqp")),
             score=np.arange(5.0), wide=np.zeros((5, 2)))
    data = open_data(str(npz), options={"batch_size": 2, "inputs": ["x"]}, class_names=None, tokenizer=None)
    metas = [m for _, _, m in data.batches_with_meta()]
    assert [m.fields["group"] for m in metas] == [["p", "p"], ["q", "q"], ["p"]]
    assert "wide" not in metas[0].fields and "x" not in metas[0].fields and "labels" not in metas[0].fields
    module = tmp_path / "meta_factory_mod.py"
    module.write_text("import torch\nfrom torch.utils.data import Dataset\nclass D(Dataset):\n"
                      "    def __len__(self):\n        return 5\n"
                      "    def __getitem__(self, i):\n"
                      "        return {'x': torch.zeros(3), 'labels': i % 2, 'meta': {'source': 'ab'[i % 2], 'text': f't{i}'}}\n"
                      "def make():\n    return D()\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        data = open_data("meta_factory_mod:make", options={"batch_size": 4}, class_names=None, tokenizer=None)
        batches = list(data.batches_with_meta())
    finally:
        sys.path.remove(str(tmp_path))
    inputs, _, meta = batches[0]
    assert set(inputs) == {"x"}                       # meta never reaches the model
    assert meta.fields["source"] == ["a", "b", "a", "b"] and meta.texts == ("t0", "t1", "t2", "t3")


# ------------------------------------------------------------------------------------------ end to end


def _config(tmp_path, slices: str) -> str:
    config = tmp_path / "gate.yaml"
    config.write_text("data: {tokenizer: 'tests.slice_world:tokenizer'}\nclass_names: [negative, positive]\n"
                      "model: {factory: 'tests.slice_world:build'}\n"
                      "checks:\n  accuracy: {accuracy: {max_drop: 0.05}, macro_f1: {max_drop: 0.05}}\n  per_class: {enabled: false}\n"
                      "  flips: {enabled: false}\n" + slices)
    return str(config)


def test_a_regression_in_a_5_percent_slice_fails_on_the_slice_and_names_it(tmp_path, in_repo_root, capsys):
    world = make_text_world(tmp_path / "w", n=2000, rare_share=0.05, glitch_share=0.5)
    rows = world.rows
    rare = np.array([r["source"] == "rare" for r in rows])
    assert 0.04 < rare.mean() < 0.06
    config = _config(tmp_path, "  slices:\n    enabled: true\n    by: [source, [source, label]]\n"
                               "    min_size: 50\n    accuracy: {max_drop: 0.05}\n")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out, "--markdown", md)
    assert res.code == 1, res.err + res.out
    report = json.loads(out.read_text())
    validate_report(report)
    checks = {c["name"]: c for c in report["checks"]}
    overall = report["metrics"]["baseline"]["accuracy"] - report["metrics"]["candidate"]["accuracy"]
    assert 0 < overall < 0.05 and checks["accuracy"]["status"] == "pass"
    assert checks["slices"]["status"] == "fail"
    assert checks["slices"]["summary"].startswith("accuracy[source=rare]: drop ")
    failed = {f["where"] for f in checks["slices"]["findings"] if f["status"] == "fail"}
    assert "source=rare" in failed and "source=common" not in failed
    top = checks["slices"]["details"]["slices"][0]
    assert top["slice"].startswith("source=rare")
    assert "accuracy\\[source=rare\\]: drop" in md.read_text()   # escaped: slice values are data


def test_the_good_candidate_passes_every_slice(tmp_path, in_repo_root, capsys):
    world = make_text_world(tmp_path / "w", n=1000, rare_share=0.2)
    config = _config(tmp_path, "  slices:\n    enabled: true\n    by: [source, label]\n    min_size: 50\n")
    res = run_cli(capsys, "check", world.baseline, "--baseline", world.baseline, "--data", world.data,
                  "--config", config)
    assert res.code == 0, res.err + res.out


def test_a_slice_field_missing_in_some_rows_is_one_error_line_and_no_report(tmp_path, in_repo_root, capsys):
    world = make_text_world(tmp_path / "w", n=300)
    lines = world.data.read_text().splitlines()
    row = json.loads(lines[200])
    del row["source"]
    lines[200] = json.dumps(row)
    world.data.write_text("\n".join(lines) + "\n")
    config = _config(tmp_path, "  slices:\n    enabled: true\n    by: [source]\n")
    out = tmp_path / "out" / "r.json"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--config", config, "--json", out)
    assert res.code == 2
    err = res.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in res.err
    assert "checks.slices.by[0]" in err[0] and "line 201" in err[0] and "'source'" in err[0]
    assert not out.exists()


def test_slice_values_from_data_are_inert_in_every_report():
    import dataclasses

    from gate.report.console import render_console
    from gate.report.markdown import render_markdown
    from tests.unit.test_reports import fixed_report

    y, pb, pc, _, texts = world(400, seed=6)
    evil = np.where(np.arange(400) % 2 == 0, "</details><img src=x> @team [a](http://e.vil) |", "plain\x1b[2J")
    check = check_for({"by": ["group"], "min_size": 10, "accuracy": {"max_drop": 0.0}}, n_classes=3)
    feed(check, y, pb, pc, evil, texts, batch=64)
    result = check.compute()
    report = dataclasses.replace(fixed_report(), checks=(result,))
    md = render_markdown(report)
    assert "<img" not in md and "&lt;img src=x&gt;" in md and "@\u200bteam" in md and "http&#58;//e.vil" in md
    console = render_console(report, verbose=True)
    assert "\x1b" not in console and "plain [2J" in console


def test_slicing_a_tensor_file_by_a_named_key_through_the_cli(tmp_path, in_repo_root, capsys):
    from tests import tiny_models as tm

    x, y = tm.make_data(600, seed=0)
    group = np.where(np.arange(600) % 10 == 0, "tail", "head")
    data = tmp_path / "eval.npz"
    np.savez(data, x=x, labels=y, group=group)
    torch.save(tm.teacher(0).state_dict(), tmp_path / "b.pt")
    torch.save(tm.regressed_candidate(0).state_dict(), tmp_path / "c.pt")
    config = tmp_path / "gate.yaml"
    config.write_text("data: {inputs: [x]}\nchecks:\n  slices:\n    enabled: true\n    by: [group, [group, label]]\n"
                      "    min_size: 30\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "c.pt", "--baseline", tmp_path / "b.pt", "--data", data,
                  "--model-factory", "tests.tiny_models:build_mlp", "--config", config, "--json", out)
    assert res.code == 1, res.err
    report = json.loads(out.read_text())
    rows = {s["slice"]: s for s in next(c for c in report["checks"] if c["name"] == "slices")["details"]["slices"]}
    with torch.no_grad():
        pb = tm.teacher(0)(torch.from_numpy(x)).argmax(1).numpy()
        pc = tm.regressed_candidate(0)(torch.from_numpy(x)).argmax(1).numpy()
    tail = group == "tail"
    assert rows["group=tail"]["samples"] == 60
    assert rows["group=tail"]["candidate_accuracy"] == pytest.approx(accuracy_score(y[tail], pc[tail]))
    assert rows["group=head"]["baseline_accuracy"] == pytest.approx(accuracy_score(y[~tail], pb[~tail]))
    assert rows["group=tail, label=1"]["samples"] == np.sum(tail & (y == 1))


def test_sharded_states_merge_to_the_single_runs_result():
    """Shards see different slice values (east is rare); their `rows.` states merged give the single run's result."""
    from gate.sharding import Shard, merge_arrays, split_values

    y, pb, pc, group, texts = world(2000, seed=4)
    single = check_for(OPTIONS)
    feed(single, y, pb, pc, group, texts, batch=50)
    parts = []
    for s in range(3):
        shard = check_for(OPTIONS)
        for b, lo in enumerate(range(0, len(y), 50)):
            if Shard(s, 3).owns(b):
                sl = slice(lo, lo + 50)
                feed(shard, y[sl], pb[sl], pc[sl], group[sl], texts[sl], batch=50, start=lo)
        parts.append(shard.state())
    merged = check_for(OPTIONS)
    arrays, rows_text = split_values(merge_arrays(parts))
    merged.load_state({**arrays, **rows_text})
    want, got = single.compute(), merged.compute()
    assert got.details == want.details and got.findings == want.findings and got.status == want.status
    for dim, slots in single.sliced.counts.items():
        assert {v: c.arrays()[1].tolist() for v, c in merged.sliced.counts[dim].items()} == \
               {v: c.arrays()[1].tolist() for v, c in slots.items()}
    too_few = check_for({**OPTIONS, "max_values": 2})
    from gate.errors import DataError

    with pytest.raises(DataError, match="more than 2 distinct values in the merged shards"):
        too_few.load_state({**arrays, **rows_text})
