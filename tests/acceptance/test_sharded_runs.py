"""Sharded runs end to end: 2 torch.distributed ranks (gloo, loopback) and `--shard` + `gate merge` give the
single-process run's metrics, verdict and exit code; bad shards end in one `error:` line, exit 2, no report."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.acceptance.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ("--model-factory", "tests.tiny_models:build_mlp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run_ranks(args_per_rank: list[list[str]], *, timeout: float = 240) -> list[subprocess.CompletedProcess[str]]:
    """`python -m gate check` once per rank with the rendezvous variables torchrun sets (env://, 127.0.0.1)."""
    port = str(_free_port())
    world = str(len(args_per_rank))
    procs = [
        subprocess.Popen([sys.executable, "-m", "gate", "check", *args], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=world, LOCAL_WORLD_SIZE=world,
                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank, args in enumerate(args_per_rank)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _args(world, candidate: Path, *extra: object, data: Path | None = None) -> list[str]:
    return [str(candidate), "-b", str(world.baseline), "-d", str(data or world.data), *FACTORY, "--batch-size", "64",
            *map(str, extra)]


def _comparable(report: dict) -> dict:
    """Everything a sharded run must reproduce: verdict, exit code, metrics, every check's findings and details,
    the flipped examples."""
    checks = [{k: v for k, v in c.items() if k != "duration_s"} for c in report["checks"]]
    return {"verdict": report["verdict"], "exit_code": report["exit_code"], "metrics": report["metrics"],
            "checks": checks, "summary": report["summary"], "num_samples": report["data"]["num_samples"],
            "num_batches": report["data"]["num_batches"], "examples": report["examples"]}


@pytest.fixture(scope="module")
def single(world, tmp_path_factory):
    """The 1-process reports of the regressed (exit 1) and the good (exit 0) candidate."""
    out = tmp_path_factory.mktemp("single")
    reports = {}
    for name, cand in (("regressed", world.regressed), ("good", world.good)):
        done = subprocess.run([sys.executable, "-m", "gate", "check", *_args(world, cand, "--json", out / f"{name}.json"),
                               "-q"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
        assert done.returncode == (1 if name == "regressed" else 0), done.stderr
        reports[name] = (done.returncode, json.loads((out / f"{name}.json").read_text()))
    return reports


def test_two_gloo_ranks_equal_one_process(world, single, tmp_path):
    """600 samples in 10 batches of 64 (the last partial), 5 per rank: same metrics, findings, verdict, code."""
    report = tmp_path / "dist.json"
    done = run_ranks([_args(world, world.regressed, "--json", report, "-q"), _args(world, world.regressed, "-q")])
    code, expected = single["regressed"]
    assert [d.returncode for d in done] == [code, code], [d.stderr for d in done]
    got = json.loads(report.read_text())
    assert _comparable(got) == _comparable(expected)
    assert "FAIL" in done[0].stdout and done[1].stdout == ""       # rank 1 prints and writes nothing
    assert any("2 torch.distributed ranks" in n for n in got["notes"])


def test_shard_files_and_merge_equal_one_process(world, single, tmp_path, capsys):
    for name in ("regressed", "good"):
        cand = getattr(world, name)
        states = []
        for i in (1, 2, 3):
            state = tmp_path / f"{name}-{i}.gstate"
            outcome = run_cli(capsys, "check", *_args(world, cand, "--shard", f"{i}/3", "--state", state))
            assert outcome.code == 0, outcome.err
            assert f"shard {i}/3" in outcome.out
            states.append(state)
        report = tmp_path / f"{name}.json"
        outcome = run_cli(capsys, "merge", *reversed(states), "--json", report)     # any order
        code, expected = single[name]
        assert outcome.code == code, outcome.err
        assert _comparable(json.loads(report.read_text())) == _comparable(expected)


def test_ranks_that_see_different_data_stop_with_one_error(world, tmp_path):
    other = tmp_path / "other.npz"
    with np.load(world.data) as z:
        np.savez(other, x=z["x"][::-1].copy(), labels=z["labels"][::-1].copy())
    report = tmp_path / "dist.json"
    done = run_ranks([_args(world, world.good, "--json", report), _args(world, world.good, data=other)])
    for d in done:
        assert d.returncode == 2, d.stderr
        lines = d.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "data differs" in lines[0], d.stderr
        assert "Traceback" not in d.stderr
    assert not report.exists()


def test_a_failing_rank_fails_every_rank(world, tmp_path):
    """Rank 1 gets a label out of range in its batch only: both ranks end with its error, none waits."""
    bad = tmp_path / "bad.npz"
    with np.load(world.data) as z:
        labels = z["labels"].copy()
        labels[70] = 7                                   # batch 1: rank 1's
        np.savez(bad, x=z["x"], labels=labels)
    done = run_ranks([_args(world, world.good, data=bad), _args(world, world.good, data=bad)])
    for d in done:
        assert d.returncode == 2
        assert d.stderr.strip().startswith("error: rank 1:") and "label 7" in d.stderr, d.stderr


def _shards(world, capsys, tmp_path, *extra: object, candidate: Path | None = None) -> list[Path]:
    paths = []
    for i in (1, 2):
        state = tmp_path / f"s{i}-{len(extra)}.gstate"
        outcome = run_cli(capsys, "check", *_args(world, candidate or world.good, "--shard", f"{i}/2", "--state", state,
                                                  *extra))
        assert outcome.code == 0, outcome.err
        paths.append(state)
    return paths


def _assert_error(outcome, *words: str) -> None:
    assert outcome.code == 2, (outcome.out, outcome.err)
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.err
    for word in words:
        assert word in lines[0], lines[0]


def test_merge_refuses_states_of_another_config_or_version(world, tmp_path, capsys):
    one = _shards(world, capsys, tmp_path)
    other = _shards(world, capsys, tmp_path, "--seed", "3")
    report = tmp_path / "r.json"
    _assert_error(run_cli(capsys, "merge", one[0], other[1], "--json", report), "config differs")
    reversed_data = tmp_path / "reversed.npz"
    with np.load(world.data) as z:
        np.savez(reversed_data, x=z["x"][::-1].copy(), labels=z["labels"][::-1].copy())
    moved = tmp_path / "moved"
    moved.mkdir()
    state = moved / "s2.gstate"
    outcome = run_cli(capsys, "check", *_args(world, world.good, "--shard", "2/2", "--state", state,
                                              data=reversed_data))
    assert outcome.code == 0, outcome.err
    _assert_error(run_cli(capsys, "merge", one[0], state, "--json", report), "data differs")
    _assert_error(run_cli(capsys, "merge", one[0], "--json", report), "shard 2 of 2 missing")
    _assert_error(run_cli(capsys, "merge", one[0], one[0], one[1], "--json", report), "merged once")
    assert not report.exists()

    # The same file as another gate version wrote it (its header rewritten, its arrays as they were).
    from safetensors.numpy import load, save

    raw = one[1].read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    meta = json.loads(header["__metadata__"]["gate_state"])
    meta["gate_version"] = "0.0.1"
    forged = tmp_path / "old.gstate"
    forged.write_bytes(save(load(raw), metadata={"gate_state": json.dumps(meta)}))
    _assert_error(run_cli(capsys, "merge", one[0], forged, "--json", report), "gate 0.0.1")
    assert not report.exists()


def test_merge_refuses_corrupt_or_foreign_files(world, tmp_path, capsys):
    one = _shards(world, capsys, tmp_path)
    report = tmp_path / "r.json"
    raw = bytearray(one[1].read_bytes())
    raw[-3] ^= 0xFF                                      # one bit of the arrays
    corrupt = tmp_path / "corrupt.gstate"
    corrupt.write_bytes(bytes(raw))
    _assert_error(run_cli(capsys, "merge", one[0], corrupt, "--json", report), "SHA-256")
    pickled = tmp_path / "pickle.gstate"
    import pickle

    pickled.write_bytes(pickle.dumps({"format": "gate-state"}))
    _assert_error(run_cli(capsys, "merge", one[0], pickled, "--json", report), "not a gate state file")
    assert not report.exists()


_LATENCY = ("checks:\n  latency:\n    enabled: true\n    batch_sizes: [1, 8]\n    budget_s: 0.3\n"
            "    min_rounds: 20\n    max_rounds: 40\n    warmup: 1\n    threads: 1\n    max_cpu_loss: 1.0\n"
            "    max_slowdown: {p50: 0.5, p90: null}\n")


def _latency_shards(world, capsys, tmp_path) -> list[Path]:
    config = tmp_path / "latency.yaml"
    config.write_text(_LATENCY)
    paths = []
    for i in (1, 2):
        paths.append(tmp_path / f"latency-{i}.gstate")
        outcome = run_cli(capsys, "check", *_args(world, world.good, "--shard", f"{i}/2", "--state", paths[-1],
                                                  "-c", config))
        assert outcome.code == 0, outcome.err
        assert ("latency timed after the pass" in outcome.out) == (i == 1), outcome.out
    return paths


def test_latency_is_timed_by_shard_1_and_decided_by_merge_on_its_timings(world, tmp_path, capsys):
    """`--shard 1/2` times both models after its pass and keeps the timings in its state; `--shard 2/2` keeps none;
    `gate merge` reports exactly those timings (numpy's percentiles of them) and judges them (gate.verdict.judge on
    the paired bootstrap interval of the stored rounds) as the measuring run would."""
    from gate import timing
    from gate.sharding import read_state
    from gate.verdict import DecisionSettings, judge

    states = _latency_shards(world, capsys, tmp_path)
    first, second = (read_state(p) for p in states)
    assert set(first.measured) == {"latency"} and second.measured == {}
    assert first.meta["checks"] == second.meta["checks"] == ["sanity", "accuracy", "per_class", "flips", "latency"]
    kept = first.measured["latency"]
    report = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *reversed(states), "--json", report)
    got = json.loads(report.read_text())
    assert outcome.code == got["exit_code"] in (0, 1), outcome.err
    (latency,) = [c for c in got["checks"] if c["name"] == "latency"]
    assert any("shard 1/N job" in n for n in latency["notes"])
    runs = latency["details"]["runs"]
    assert [(r["device"], r["batch_size"]) for r in runs] == [("cpu", 1), ("cpu", 8)]
    confidence = latency["details"]["interval_confidence"]
    assert confidence == pytest.approx(1 - 0.05 / (2 * 5))        # 2 gated p50 rules, 5 looks
    findings = {f["where"]: f for f in latency["findings"]}
    for i, run in enumerate(runs):
        a, b = kept[f"runs.{i}.baseline_s"], kept[f"runs.{i}.candidate_s"]
        assert a.dtype == b.dtype == np.float64 and run["rounds"] == a.size == b.size >= 20
        for stat, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            assert run["baseline_ms"][stat] == pytest.approx(1000 * np.quantile(a, q), rel=1e-12)
            assert run["candidate_ms"][stat] == pytest.approx(1000 * np.quantile(b, q), rel=1e-12)
        assert run["baseline_ms"]["mean"] == pytest.approx(1000 * a.mean(), rel=1e-12)
        assert run["ratios"]["p50"]["ratio"] == pytest.approx(np.median(b) / np.median(a), rel=1e-12)
        iv = timing.compare(a, b, ["p50"], confidence=confidence, resamples=2000, seed=0)["p50"].ratio
        assert (run["ratios"]["p50"]["low"], run["ratios"]["p50"]["high"]) == pytest.approx((iv.low, iv.high))
        settings = DecisionSettings(mode="non-inferiority", confidence=confidence)
        want = judge(metric="p50_ratio", rule="max_ratio", threshold=1.5, value=iv.estimate,
                     baseline=1000 * float(np.median(a)), candidate=1000 * float(np.median(b)), settings=settings,
                     interval=(iv.low, iv.high), where=f"cpu bs={run['batch_size']}")
        assert findings[f"cpu bs={run['batch_size']}"]["status"] == want.status
    assert got["environment"] == first.meta["environment"]                  # where the timings were taken


def test_merge_refuses_latency_timings_from_two_shards_or_none(world, tmp_path, capsys):
    from gate.sharding import read_state, write_state

    states = _latency_shards(world, capsys, tmp_path)
    first, second = (read_state(p) for p in states)
    report = tmp_path / "r.json"
    both = tmp_path / "both.gstate"
    second.measured = first.measured
    write_state(second, both)                            # a valid file: its hash covers the copied timings
    _assert_error(run_cli(capsys, "merge", states[0], both, "--json", report),
                  str(states[0]), str(both), "both carry latency's timings")
    _assert_error(run_cli(capsys, "merge", both, states[0], "--json", report), str(both), "shard 2/2 carries")
    none = tmp_path / "none.gstate"
    first.measured = {}
    write_state(first, none)
    _assert_error(run_cli(capsys, "merge", none, states[1], "--json", report),
                  "checks.latency is enabled but none of the state files", str(none), str(states[1]))
    bad = tmp_path / "bad.gstate"
    first = read_state(states[0])
    first.measured["latency"]["runs.0.baseline_s"] = np.full(3, np.nan)
    write_state(first, bad)
    _assert_error(run_cli(capsys, "merge", bad, states[1], "--json", report), str(bad), "latency timings")
    # Timings edited in place (the header's hash left as it was) are refused before anything is read.
    from safetensors.numpy import load, save

    raw = states[0].read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    arrays = load(raw)
    arrays["measured.latency.runs.0.candidate_s"] = arrays["measured.latency.runs.0.candidate_s"] * 0.5
    edited = tmp_path / "edited.gstate"
    edited.write_bytes(save(arrays, metadata=header["__metadata__"]))
    _assert_error(run_cli(capsys, "merge", edited, states[1], "--json", report), "SHA-256")
    assert not report.exists()


def test_shard_usage_errors(world, tmp_path, capsys):
    _assert_error(run_cli(capsys, "check", *_args(world, world.good, "--shard", "3/2", "--state", tmp_path / "s")),
                  "--shard")
    _assert_error(run_cli(capsys, "check", *_args(world, world.good, "--shard", "1/2")), "--state")
    _assert_error(run_cli(capsys, "check", *_args(world, world.good, "--shard", "1/2", "--state", tmp_path / "s",
                                                  "--json", tmp_path / "r.json")), "gate merge")


# ------------------------------------------------------------------- text data: slices, cases, flipped texts

TEXT_CASES = """\
cases:
  - {id: neg-plain, type: mft, text: "a bad film", expected: negative, tags: [basic]}
  - {id: neg-glitch, type: mft, text: "a bad glitch film", expected: negative, tags: [glitch]}
  - {id: inv-filler, type: inv, texts: ["good film", "good film, glitch"], tags: [filler]}
  - {id: dir-glitch, type: dir, text: "good film", perturbed: "good glitch film", class: positive, tags: [glitch]}
"""


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    """The keyword text world (tests/slice_world.py): 600 reviews, a candidate wrong on the 'rare' source's glitch
    texts; slices by source, source x label and text length; behavioural cases; flips with texts."""
    from tests.slice_world import make_text_world

    base = tmp_path_factory.mktemp("text")
    world = make_text_world(base / "w", n=600, rare_share=0.2, glitch_share=0.5)
    (base / "cases.yaml").write_text(TEXT_CASES)
    config = base / "gate.yaml"
    config.write_text(
        "data: {tokenizer: 'tests.slice_world:tokenizer', batch_size: 32}\nclass_names: [negative, positive]\n"
        "model: {factory: 'tests.slice_world:build'}\n"
        "checks:\n"
        "  slices:\n    enabled: true\n    by: [source, [source, label], {feature: text_length, bins: [20, 40]}]\n"
        "    min_size: 20\n    accuracy: {max_drop: 0.05}\n"
        f"  cases:\n    enabled: true\n    file: {base / 'cases.yaml'}\n    batch_size: 2\n")
    return world, config


def _text_args(text_world, *extra: object) -> list[str]:
    world, config = text_world
    return [str(world.regressed), "-b", str(world.baseline), "-d", str(world.data), "-c", str(config), "-q",
            *map(str, extra)]


def test_slices_cases_and_flipped_texts_merge_to_the_single_run(text_world, tmp_path, capsys, in_repo_root):
    """19 batches of 32: `--shard i/3` + `gate merge` and 2 gloo ranks give the single run's report: every slice's
    figures, the cases (scored by the shard that read batch 0), the flipped examples with their texts."""
    single = tmp_path / "single.json"
    outcome = run_cli(capsys, "check", *_text_args(text_world, "--json", single))
    assert outcome.code == 1, outcome.err
    expected = json.loads(single.read_text())
    checks = {c["name"]: c for c in expected["checks"]}
    assert checks["slices"]["status"] == "fail" and checks["cases"]["details"]["broken"] == 3
    assert len({s["slice"] for s in checks["slices"]["details"]["slices"]}) >= 7
    assert expected["examples"]["negative"] and expected["examples"]["negative"][0]["text"]

    states = []
    for i in (1, 2, 3):
        state = tmp_path / f"t{i}.gstate"
        outcome = run_cli(capsys, "check", *_text_args(text_world, "--shard", f"{i}/3", "--state", state))
        assert outcome.code == 0, outcome.err
        states.append(state)
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", states[2], states[0], states[1], "--json", merged)
    assert outcome.code == 1, outcome.err
    assert _comparable(json.loads(merged.read_text())) == _comparable(expected)

    dist = tmp_path / "dist.json"
    done = run_ranks([_text_args(text_world, "--json", dist), _text_args(text_world)])
    assert [d.returncode for d in done] == [1, 1], [d.stderr for d in done]
    assert _comparable(json.loads(dist.read_text())) == _comparable(expected)


def _onnx_config(tmp_path: Path, *, latency: bool) -> Path:
    config = tmp_path / f"onnx-{latency}.yaml"
    config.write_text("checks:\n  onnx:\n    enabled: true\n    worst_samples: 5\n"
                      f"    latency: {{enabled: {str(latency).lower()}, budget_s: 0.2, max_rounds: 20}}\n")
    return config


def test_onnx_parity_merges_to_the_single_run(world, tmp_path, capsys):
    """The candidate exported to ONNX on each shard; numeric and task parity, the worst and flipped samples merged
    (`--shard` + `gate merge`, and 2 gloo ranks) equal the single run's."""
    config = _onnx_config(tmp_path, latency=False)
    single = tmp_path / "single.json"
    outcome = run_cli(capsys, "check", *_args(world, world.regressed, "-c", config, "--json", single))
    assert outcome.code == 1, outcome.err
    expected = json.loads(single.read_text())
    onnx = next(c for c in expected["checks"] if c["name"] == "onnx")
    assert onnx["details"]["samples"] == 600 and onnx["details"]["worst_samples"]
    states = _shards(world, capsys, tmp_path, "-c", config, candidate=world.regressed)
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *states, "--json", merged)
    assert outcome.code == 1, outcome.err
    assert _comparable(json.loads(merged.read_text())) == _comparable(expected)
    dist = tmp_path / "dist.json"
    done = run_ranks([_args(world, world.regressed, "-c", config, "--json", dist, "-q"),
                      _args(world, world.regressed, "-c", config, "-q")])
    assert [d.returncode for d in done] == [1, 1], [d.stderr for d in done]
    assert _comparable(json.loads(dist.read_text())) == _comparable(expected)


def test_onnx_latency_comes_from_the_shard_that_read_batch_0(world, tmp_path, capsys):
    states = _shards(world, capsys, tmp_path, "-c", _onnx_config(tmp_path, latency=True))
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *states, "--json", merged)
    assert outcome.code == 0, outcome.err
    onnx = next(c for c in json.loads(merged.read_text())["checks"] if c["name"] == "onnx")
    latency = onnx["details"]["latency"]
    assert latency["batch_size"] == 64 and latency["rounds"] >= 2 and latency["onnx_ms"] > 0
    assert "latency" in onnx["summary"]


def _close(got, want, path: str = "") -> None:
    """Equal, except floats: within 1e-12 relative (sums taken in another order), as the contract allows."""
    if isinstance(want, float) and isinstance(got, float):
        if math.isnan(want):
            assert math.isnan(got), path
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, set(got) ^ set(want))
        for key in want:
            _close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


def test_drift_merges_to_the_single_run(world, tmp_path, capsys):
    """Drift on the MLP's layers: the PSI edges (the baseline's first 256 samples, 4 batches of 64, which no shard
    owns alone) are primed on every shard; `--shard i/3` + `gate merge` and 2 gloo ranks give the single run's
    figures (counts and histograms exactly, float sums within 1e-12), findings, verdict and exit code."""
    single = tmp_path / "single.json"
    outcome = run_cli(capsys, "check", *_args(world, world.regressed, "--enable", "drift", "--json", single))
    assert outcome.code == 1, outcome.err
    expected = json.loads(single.read_text())
    drift = next(c for c in expected["checks"] if c["name"] == "drift")
    assert drift["details"]["layers"] and all(l["psi_bins"] > 2 for l in drift["details"]["layers"])
    states = []
    for i in (1, 2, 3):
        state = tmp_path / f"d{i}.gstate"
        outcome = run_cli(capsys, "check", *_args(world, world.regressed, "--enable", "drift", "--shard", f"{i}/3",
                                                  "--state", state))
        assert outcome.code == 0, outcome.err
        states.append(state)
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *states, "--json", merged)
    assert outcome.code == 1, outcome.err
    _close(_comparable(json.loads(merged.read_text())), _comparable(expected))
    dist = tmp_path / "dist.json"
    done = run_ranks([_args(world, world.regressed, "--enable", "drift", "--json", dist, "-q"),
                      _args(world, world.regressed, "--enable", "drift", "-q")])
    assert [d.returncode for d in done] == [1, 1], [d.stderr for d in done]
    _close(_comparable(json.loads(dist.read_text())), _comparable(expected))


def test_drift_by_class_name_merges_to_the_single_run(world, tmp_path, capsys):
    """The teacher with its output rows permuted and named so per role: the shards map the head's columns by name
    before folding, and `gate merge` gives the single run's drift (passing, the head matched by name)."""
    import torch

    from tests import tiny_models as tm

    order, names = [2, 0, 1], ["ant", "bee", "cat"]
    model = tm.teacher(0)
    with torch.no_grad():
        model.head.weight.copy_(model.head.weight[order])
        model.head.bias.copy_(model.head.bias[order])
    permuted = tm.save_state_dict(model, tmp_path / "permuted.pt")
    config = tmp_path / "gate.yaml"
    config.write_text(f"model:\n  baseline: {{class_names: {names}}}\n"
                      f"  candidate: {{class_names: {[names[k] for k in order]}}}\n")
    extra = ("--enable", "drift", "--config", config)
    single = tmp_path / "single.json"
    outcome = run_cli(capsys, "check", *_args(world, permuted, *extra, "--json", single))
    assert outcome.code == 0, outcome.out + outcome.err
    expected = json.loads(single.read_text())
    drift = next(c for c in expected["checks"] if c["name"] == "drift")
    assert drift["status"] == "pass" and drift["details"]["class_columns"]["layers"] == ["head"]
    states = []
    for i in (1, 2, 3):
        state = tmp_path / f"p{i}.gstate"
        outcome = run_cli(capsys, "check", *_args(world, permuted, *extra, "--shard", f"{i}/3", "--state", state))
        assert outcome.code == 0, outcome.err
        states.append(state)
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *states, "--json", merged)
    assert outcome.code == 0, outcome.err
    _close(_comparable(json.loads(merged.read_text())), _comparable(expected))


def test_scores_merge_to_the_single_run(world, tmp_path, capsys):
    """The scores check with a rule on every metric (log-ratio and skew-corrected, DeLong, the ECE allowance, PR-AUC's influence and logit):
    2 `--shard` files merged by `gate merge` give the single run's metrics, findings, intervals and verdict."""
    config = tmp_path / "scores.yaml"
    config.write_text("checks:\n  scores:\n    enabled: true\n    log_loss: {max_increase: 0.05}\n"
                      "    brier: {max_increase: 0.02}\n    ece: {max_increase: 0.03}\n    roc_auc: {max_drop: 0.01}\n"
                      "    pr_auc: {max_drop: 0.02}\n")
    single = tmp_path / "single.json"
    code = run_cli(capsys, "check", *_args(world, world.regressed, "-c", config, "--json", single)).code
    expected = json.loads(single.read_text())
    scores = next(c for c in expected["checks"] if c["name"] == "scores")
    assert scores["details"]["num_samples"] == 600 and len(scores["findings"]) == 5
    states = _shards(world, capsys, tmp_path, "-c", config, candidate=world.regressed)
    merged = tmp_path / "merged.json"
    outcome = run_cli(capsys, "merge", *reversed(states), "--json", merged)
    assert outcome.code == code, outcome.err
    assert _comparable(json.loads(merged.read_text())) == _comparable(expected)


@pytest.mark.parametrize("streamed", [False, True], ids=["exact", "binned"])
def test_score_curves_merge_to_the_single_runs_curves_and_page(world, tmp_path, capsys, streamed):
    """ROC and precision-recall curves (details.curves, the HTML section) of 2 `--shard` files merged by `gate merge`
    are the single run's, exact or from the streamed bins."""
    config = tmp_path / "scores.yaml"
    config.write_text("checks:\n  scores:\n    enabled: true\n" + ("    bins: 50\n" if streamed else ""))
    single, single_html = tmp_path / "single.json", tmp_path / "single.html"
    code = run_cli(capsys, "check", *_args(world, world.regressed, "-c", config, "--json", single,
                                           "--html", single_html)).code
    curves = next(c for c in json.loads(single.read_text())["checks"] if c["name"] == "scores")["details"]["curves"]
    assert curves["approximate"] is streamed and curves["classes"]
    states = _shards(world, capsys, tmp_path, "-c", config, candidate=world.regressed)
    merged, merged_html = tmp_path / "merged.json", tmp_path / "merged.html"
    outcome = run_cli(capsys, "merge", *states, "--json", merged, "--html", merged_html)
    assert outcome.code == code, outcome.err
    got = next(c for c in json.loads(merged.read_text())["checks"] if c["name"] == "scores")["details"]["curves"]
    assert got == curves

    def section(path: Path) -> str:
        text = path.read_text()
        start = text.index('<section id="curves">')
        return text[start:text.index("</section>", start)]

    assert section(merged_html) == section(single_html) and section(single_html).count("<polyline") == 4 * len(
        curves["classes"])
