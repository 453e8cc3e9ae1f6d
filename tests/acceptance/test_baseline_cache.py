"""--baseline-cache: a hit skips the baseline's forward passes and gives the miss's report; anything that changes the
baseline's outputs (data file, dtype, tokenizer) misses; a corrupt entry is rebuilt, never trusted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gate.runner
from tests.acceptance.helpers import run_cli

FACTORY = ("--model-factory", "tests.tiny_models:build_mlp")


def _comparable(report: dict) -> dict:
    checks = [{k: v for k, v in c.items() if k != "duration_s"} for c in report["checks"]]
    return {"verdict": report["verdict"], "exit_code": report["exit_code"], "metrics": report["metrics"],
            "checks": checks, "models": report["models"], "data": report["data"]}


@pytest.fixture
def forwards(monkeypatch):
    """The roles the runner's pass runs a forward for, batch after batch."""
    calls: list[str] = []
    real = gate.runner.forward_output

    def spy(model, inputs, **kwargs):
        calls.append(model.role)
        return real(model, inputs, **kwargs)

    monkeypatch.setattr(gate.runner, "forward_output", spy)
    return calls


def _run(capsys, tmp_path, world, name: str, *extra: object, candidate: Path | None = None, data: Path | None = None):
    report = tmp_path / f"{name}.json"
    outcome = run_cli(capsys, "check", candidate or world.regressed, "-b", world.baseline, "-d", data or world.data,
                      *FACTORY, "--batch-size", 64, "--json", report, *extra)
    return outcome, (json.loads(report.read_text()) if report.exists() else None)


def _cache_note(report: dict) -> str:
    notes = [n for n in report["notes"] if n.startswith("baseline cache")]
    assert len(notes) == 1, report["notes"]
    return notes[0]


def test_a_hit_skips_the_baseline_and_gives_the_same_report(world, tmp_path, capsys, forwards):
    cache = tmp_path / "cache"
    _, plain = _run(capsys, tmp_path, world, "plain")
    forwards.clear()
    miss_out, miss = _run(capsys, tmp_path, world, "miss", "--baseline-cache", cache)
    assert forwards.count("baseline") == 10 and forwards.count("candidate") == 10
    forwards.clear()
    hit_out, hit = _run(capsys, tmp_path, world, "hit", "--baseline-cache", cache)
    assert forwards == ["candidate"] * 10                     # not one baseline forward in the pass
    assert miss_out.code == hit_out.code == 1
    assert _comparable(hit) == _comparable(miss) == _comparable(plain)
    assert _cache_note(miss).startswith("baseline cache miss")
    assert _cache_note(hit).startswith("baseline cache hit")
    assert len(list(cache.glob("*.json"))) == 1 and len(list(cache.glob("*.scores"))) == 1


def test_sanity_figures_of_the_baseline_come_back_from_the_cache(world, tmp_path, capsys):
    cache = tmp_path / "cache"
    _, miss = _run(capsys, tmp_path, world, "miss", "--baseline-cache", cache)
    _, hit = _run(capsys, tmp_path, world, "hit", "--baseline-cache", cache)
    sanity = {c["name"]: c for c in hit["checks"]}["sanity"]
    assert "baseline" in sanity["details"]["determinism_max_abs_diff"]
    assert sanity == {c["name"]: c for c in miss["checks"]}["sanity"] | {"duration_s": sanity["duration_s"]}


def test_a_changed_data_file_or_dtype_misses(world, tmp_path, capsys, forwards):
    cache = tmp_path / "cache"
    _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    other = tmp_path / "other.npz"
    with np.load(world.data) as z:
        x = z["x"].copy()
        x[0, 0] += 1.0                                        # one value of one sample
        np.savez(other, x=x, labels=z["labels"])
    forwards.clear()
    _, changed = _run(capsys, tmp_path, world, "data", "--baseline-cache", cache, data=other)
    assert _cache_note(changed).startswith("baseline cache miss") and "baseline" in forwards
    config = tmp_path / "bf16.yaml"
    config.write_text("model:\n  dtype: bfloat16\n")
    forwards.clear()
    _, cast = _run(capsys, tmp_path, world, "dtype", "--baseline-cache", cache, "--config", config)
    assert _cache_note(cast).startswith("baseline cache miss") and "baseline" in forwards
    assert len(list(cache.glob("*.json"))) == 3
    forwards.clear()
    _, again = _run(capsys, tmp_path, world, "dtype-again", "--baseline-cache", cache, "--config", config)
    assert _cache_note(again).startswith("baseline cache hit") and "baseline" not in forwards
    assert _comparable(again) == _comparable(cast)


def _text_world(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny Hugging Face classifier directory (the baseline) and a JSONL of texts labelled by name."""
    from tests.unit.model_fixtures import TEXTS, build_hf_dir

    base = tmp_path / "base"
    build_hf_dir(base, id2label={0: "negative", 1: "positive"}, seed=3)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": ["negative", "positive"][i % 2]}) + "\n"
                            for i, t in enumerate(TEXTS * 10)))
    return base, data


def test_a_changed_tokenizer_misses(tmp_path, capsys, forwards):
    base, data = _text_world(tmp_path)
    candidate = tmp_path / "candidate"
    shutil.copytree(base, candidate)
    cache = tmp_path / "cache"

    def run(name: str):
        out = tmp_path / f"{name}.json"
        outcome = run_cli(capsys, "check", candidate, "-b", base, "-d", data, "--baseline-cache", cache, "--json", out)
        assert outcome.code in (0, 1), outcome.err
        return json.loads(out.read_text())

    assert _cache_note(run("first")).startswith("baseline cache miss")
    assert _cache_note(run("second")).startswith("baseline cache hit")
    for model in (base, candidate):         # the one tokenizer both read (the baseline's) now truncates to 4 tokens
        settings = json.loads((model / "tokenizer_config.json").read_text())
        settings["model_max_length"] = 4
        (model / "tokenizer_config.json").write_text(json.dumps(settings))
    forwards.clear()
    assert _cache_note(run("third")).startswith("baseline cache miss")
    assert "baseline" in forwards


@pytest.mark.parametrize("damage", ["scores", "json", "truncate"])
def test_a_corrupt_entry_is_rebuilt_never_trusted(world, tmp_path, capsys, forwards, damage):
    cache = tmp_path / "cache"
    _, first = _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    scores = next(cache.glob("*.scores"))
    meta = next(cache.glob("*.json"))
    if damage == "scores":                    # a plausible poisoning: the baseline's scores made to look perfect
        raw = bytearray(scores.read_bytes())
        raw[:4] = np.float32(50.0).tobytes()
        scores.write_bytes(bytes(raw))
    elif damage == "json":
        meta.write_text("{not json")
    else:
        scores.write_bytes(scores.read_bytes()[:-4])
    forwards.clear()
    outcome, rebuilt = _run(capsys, tmp_path, world, "rebuilt", "--baseline-cache", cache)
    assert outcome.code == 1
    assert "corrupt" in _cache_note(rebuilt) and "rebuilt" in _cache_note(rebuilt)
    assert forwards.count("baseline") == 10
    assert _comparable(rebuilt) == _comparable(first)
    forwards.clear()
    _, hit = _run(capsys, tmp_path, world, "hit", "--baseline-cache", cache)
    assert _cache_note(hit).startswith("baseline cache hit") and "baseline" not in forwards


def _halve_rows(entry: dict) -> None:
    """num_samples halved and num_classes doubled: the scores' size still fits, their shape does not."""
    entry["num_samples"] //= 2
    entry["num_classes"] *= 2


def _half_width(entry: dict) -> None:
    """float16 with twice the classes: the same bytes, the same rows, the wrong width (found on the first batch)."""
    entry["dtype"] = "float16"
    entry["num_classes"] *= 2


@pytest.mark.parametrize("edit, said", [
    (lambda e: e.__setitem__("output", "bogus"), "output 'bogus' is not a classification output"),
    (lambda e: e.__setitem__("output", "regression"), "output 'regression' is not a classification output"),
    (lambda e: e.__setitem__("output", "probabilities"), "probabilities scores outside [0, 1]"),
    (lambda e: e.__setitem__("records", {"sanity": [1, 2]}), "records must map each check's name"),
    (lambda e: e["records"].__setitem__("sanity", {"determinism": float("nan")}), "NaN is not a number"),
    (lambda e: e.__setitem__("extra", 1), "unknown field extra"),
    (_halve_rows, "but this run scores"),
    (_half_width, "did not fit the pass: the baseline outputs"),
])
def test_an_entry_that_does_not_fit_this_run_is_rebuilt(world, tmp_path, capsys, forwards, edit, said):
    cache = tmp_path / "cache"
    _, first = _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    meta = next(cache.glob("*.json"))
    entry = json.loads(meta.read_text())
    edit(entry)
    meta.write_text(json.dumps(entry))
    forwards.clear()
    outcome, rebuilt = _run(capsys, tmp_path, world, "rebuilt", "--baseline-cache", cache)
    assert outcome.code == 1, outcome.err
    note = _cache_note(rebuilt)
    assert note.startswith("baseline cache miss") and "corrupt" in note and "rebuilt" in note and said in note, note
    assert forwards.count("baseline") == 10
    assert _comparable(rebuilt) == _comparable(first)
    forwards.clear()
    _, hit = _run(capsys, tmp_path, world, "hit", "--baseline-cache", cache)
    assert _cache_note(hit).startswith("baseline cache hit") and "baseline" not in forwards


@pytest.mark.parametrize("which", ["json", "scores"])
def test_an_entry_file_that_is_a_link_is_rebuilt(world, tmp_path, capsys, which):
    """A link in the cache folder is never followed: the entry is rebuilt (a link to /dev/zero would read zeros)."""
    cache = tmp_path / "cache"
    _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    path = next(cache.glob(f"*.{which}"))
    kept = tmp_path / f"kept.{which}"
    shutil.move(path, kept)
    path.symlink_to(kept)
    outcome, rebuilt = _run(capsys, tmp_path, world, "rebuilt", "--baseline-cache", cache)
    assert outcome.code == 1, outcome.err
    assert "is not a regular file" in _cache_note(rebuilt) and "rebuilt" in _cache_note(rebuilt)


@pytest.mark.parametrize("which", ["json", "scores"])
@pytest.mark.parametrize("thing", ["empty_folder", "link_to_a_folder"])
def test_an_entry_file_that_is_a_folder_is_rebuilt(world, tmp_path, capsys, forwards, which, thing):
    """An empty folder in an entry file's place is removed, a link to a folder replaced (the folder behind it left as
    it was, never emptied): the entry is rebuilt, the report the honest one's, the next run a hit."""
    cache = tmp_path / "cache"
    _, first = _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    path = next(cache.glob(f"*.{which}"))
    path.unlink()
    behind = tmp_path / "behind"
    behind.mkdir()
    (behind / "keep").write_text("keep")
    if thing == "empty_folder":
        path.mkdir()
    else:
        path.symlink_to(behind)
    forwards.clear()
    outcome, rebuilt = _run(capsys, tmp_path, world, "rebuilt", "--baseline-cache", cache)
    assert outcome.code == 1, outcome.err
    note = _cache_note(rebuilt)
    assert "is not a regular file" in note and "rebuilt" in note and "kept for the next run" in note, note
    assert forwards.count("baseline") == 10
    assert _comparable(rebuilt) == _comparable(first)
    assert [p.name for p in behind.iterdir()] == ["keep"] and (behind / "keep").read_text() == "keep"
    forwards.clear()
    _, hit = _run(capsys, tmp_path, world, "hit", "--baseline-cache", cache)
    assert _cache_note(hit).startswith("baseline cache hit") and "baseline" not in forwards


@pytest.mark.parametrize("which", ["json", "scores"])
def test_an_entry_file_that_is_a_folder_with_files_is_left_alone_and_the_run_goes_on(world, tmp_path, capsys,
                                                                                     which):
    """What cannot be removed without emptying a folder is left alone: the run's verdict and report are the
    honest ones, the note says the scores could not be kept, and the next run is a miss again, not a crash."""
    cache = tmp_path / "cache"
    _, first = _run(capsys, tmp_path, world, "first", "--baseline-cache", cache)
    path = next(cache.glob(f"*.{which}"))
    path.unlink()
    path.mkdir()
    (path / "someone's").write_text("keep")
    for name in ("second", "third"):
        outcome, report = _run(capsys, tmp_path, world, name, "--baseline-cache", cache)
        assert outcome.code == 1 and outcome.err == "", outcome.err
        assert _comparable(report) == _comparable(first)
        note = _cache_note(report)
        assert note.startswith("baseline cache miss") and "is a folder with files in it, left alone" in note, note
        assert "could not be kept" in note and "kept for the next run" not in note, note
        assert (path / "someone's").read_text() == "keep"
    assert not list(cache.glob(".*.tmp"))


def test_drift_bypasses_the_cache_and_says_so(world, tmp_path, capsys, forwards):
    cache = tmp_path / "cache"
    for name in ("one", "two"):
        forwards.clear()
        _, report = _run(capsys, tmp_path, world, name, "--baseline-cache", cache, "--enable", "drift")
        assert "bypassed" in _cache_note(report) and "live activations" in _cache_note(report)
        assert forwards.count("baseline") == 10
    assert not cache.exists() or not any(cache.iterdir())


def test_latency_says_it_times_the_live_baseline(world, tmp_path, capsys):
    cache = tmp_path / "cache"
    config = tmp_path / "lat.yaml"
    config.write_text("checks:\n  latency:\n    enabled: true\n    budget_s: 1\n")
    _, report = _run(capsys, tmp_path, world, "lat", "--baseline-cache", cache, "--config", config)
    assert "latency times the live baseline" in _cache_note(report)


def test_a_cache_folder_that_cannot_be_written_is_exit_2(world, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    outcome, report = _run(capsys, tmp_path, world, "r", "--baseline-cache", blocker)
    assert outcome.code == 2 and report is None
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --baseline-cache"), outcome.err


def test_a_shard_hits_its_own_entry(world, tmp_path, capsys, forwards):
    """`--shard 2/2` keeps the scores of its own batches: the rerun hits (the entry's rows are the shard's samples,
    not the data's), and its state is the miss's."""
    from gate.sharding import read_state

    cache = tmp_path / "cache"
    states = []
    for name in ("miss", "hit"):
        state = tmp_path / f"{name}.gstate"
        forwards.clear()
        outcome = run_cli(capsys, "check", world.regressed, "-b", world.baseline, "-d", world.data, *FACTORY,
                          "--batch-size", 64, "--shard", "2/2", "--state", state, "--baseline-cache", cache)
        assert outcome.code == 0, outcome.err
        states.append(read_state(state))
    assert "baseline" not in forwards and forwards.count("candidate") == 5
    notes = [[n for n in s.meta["notes"] if n.startswith("baseline cache")] for s in states]
    assert notes[0][0].startswith("baseline cache miss") and notes[1][0].startswith("baseline cache hit"), notes
    assert states[0].arrays.keys() == states[1].arrays.keys()
    for key, value in states[0].arrays.items():
        np.testing.assert_array_equal(states[1].arrays[key], value)


def test_an_entry_nested_too_deeply_is_corrupt_not_a_crash(tmp_path):
    """200,000 nested brackets as the entry's JSON: CorruptEntry (so the runner rebuilds it), not a RecursionError."""
    from gate.baseline_cache import CorruptEntry, entry_key, open_entry

    facts = {"baseline": "x"}
    key = entry_key(facts)
    (tmp_path / f"{key}.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / f"{key}.scores").write_bytes(b"")
    with pytest.raises(CorruptEntry, match="nested too deeply"):
        open_entry(tmp_path, key, facts)


def test_the_candidates_tokenizer_never_encodes_the_baselines_text_unless_the_policy_says_so(tmp_path, capsys):
    """Both models read one encoding of the text data. A candidate whose tokenizer differs from the baseline's (one
    more word in its vocabulary here), or the only one with a tokenizer, would decide the baseline's inputs: exit 2,
    naming data.tokenizer; with data.tokenizer in the config the run goes on with that tokenizer for both."""
    import transformers

    base, data = _text_world(tmp_path)
    candidate = tmp_path / "candidate"
    shutil.copytree(base, candidate)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(candidate))
    tokenizer.add_tokens(["zzzword"])
    tokenizer.save_pretrained(str(candidate))
    out = tmp_path / "r.json"
    refused = run_cli(capsys, "check", candidate, "-b", base, "-d", data, "--json", out)
    assert refused.code == 2 and not out.exists() and refused.err.count("\n") == 1
    assert refused.err.startswith("error: data.tokenizer: the candidate's tokenizer") and "differs" in refused.err
    config = tmp_path / "gate.yaml"
    config.write_text(f"data: {{tokenizer: {json.dumps(str(base))}}}\n")
    chosen = run_cli(capsys, "check", candidate, "-b", base, "-d", data, "--json", out, "--config", config)
    assert chosen.code in (0, 1), chosen.err
    assert json.loads(out.read_text())["metrics"]["comparison"]["agreement"] == 1.0    # the same model, one encoding


def test_a_changed_data_tokenizer_misses(tmp_path, capsys, forwards):
    """With data.tokenizer the key is the tokenizer that encodes the text (not the baseline model's own): its
    vocabulary changed, the baseline's cached scores are of another encoding, so the rerun misses."""
    base, data = _text_world(tmp_path)
    named = tmp_path / "tokenizer"
    named.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).exists():
            shutil.copy(base / name, named / name)
    config = tmp_path / "gate.yaml"
    config.write_text(f"data: {{tokenizer: {json.dumps(str(named))}}}\n")
    cache = tmp_path / "cache"

    def run(name: str):
        out = tmp_path / f"{name}.json"
        outcome = run_cli(capsys, "check", base, "-b", base, "-d", data, "--baseline-cache", cache, "--json", out,
                          "--config", config)
        assert outcome.code in (0, 1), outcome.err
        return json.loads(out.read_text())

    assert _cache_note(run("first")).startswith("baseline cache miss")
    assert _cache_note(run("second")).startswith("baseline cache hit")
    spec = json.loads((named / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    words = [w for w in vocab if not w.startswith("[")][:2]
    vocab[words[0]], vocab[words[1]] = vocab[words[1]], vocab[words[0]]      # two words swap their ids
    (named / "tokenizer.json").write_text(json.dumps(spec))
    forwards.clear()
    assert _cache_note(run("third")).startswith("baseline cache miss")
    assert "baseline" in forwards
