"""Payload tests for `gate merge`: a shard's state file may come from another job, so its header is data and can
never loosen the policy.

Each payload edits the header of real state files (a regressed candidate: the honest merge exits 1). The strongest
forger recomputes `config_digest` in every shard; only the policy given to the merge (`--config`, from the base
branch) stops a consistent forgery of every shard, and each test shows the payload is live without it where it is.
Every refusal is one `error:` line, exit 2, no report.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gate.sharding import digest
from tests.acceptance.helpers import run_cli

POLICY = ("checks:\n  accuracy:\n    accuracy: {max_drop: 0.01}\n  per_class:\n    recall: {max_drop: 0.05}\n"
          "decision:\n  mode: significant-and-beyond\n")


@pytest.fixture(scope="module")
def shards(world, tmp_path_factory) -> tuple[Path, list[Path]]:
    """gate.yaml and the two shard states of the regressed candidate under it."""
    import subprocess
    import sys

    from tests.acceptance.test_sharded_runs import ROOT, _args, _env

    folder = tmp_path_factory.mktemp("state-payloads")
    policy = folder / "gate.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    paths = []
    for i in (1, 2):
        state = folder / f"s{i}.gstate"
        done = subprocess.run([sys.executable, "-m", "gate", "check",
                               *_args(world, world.regressed, "-c", policy, "--shard", f"{i}/2", "--state", state)],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stderr
        paths.append(state)
    return policy, paths


def _header(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.numpy import load

    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    return load(raw), json.loads(header["__metadata__"]["gate_state"])


def _forge(path: Path, out: Path, edit: Callable[[dict[str, Any]], None], *, redigest: bool) -> Path:
    """`path` with `edit` applied to its header; `redigest`: config_digest recomputed, as a forger would."""
    from safetensors.numpy import save

    arrays, meta = _header(path)
    meta = copy.deepcopy(meta)
    edit(meta)
    if redigest:
        meta["config_digest"] = digest(meta["config"])
    out.write_bytes(save(arrays, metadata={"gate_state": json.dumps(meta, sort_keys=True)}))
    return out


def _refused(outcome, report: Path, *words: str) -> None:
    assert outcome.code == 2, (outcome.code, outcome.out, outcome.err)
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], outcome.err
    for word in words:
        assert word in lines[0], lines[0]
    assert not report.exists()


def _loosen(meta: dict[str, Any]) -> None:
    checks = meta["config"]["checks"]
    checks["accuracy"]["accuracy"] = {"min": None, "max_drop": 1.0, "max_relative_drop": None}
    checks["accuracy"]["macro_f1"] = {"max_drop": 1.0}
    checks["per_class"]["recall"] = {"max_drop": 1.0}
    checks["per_class"]["precision"] = {"max_drop": 1.0}
    checks["flips"]["negative_flip_rate"] = {"max": 1.0}
    checks["flips"]["per_class_negative_flip_rate"] = {"max": 1.0}


def _mode(meta: dict[str, Any]) -> None:
    meta["config"]["decision"].update(mode="non-inferiority", inconclusive="warn")


def test_the_honest_merge_fails_the_regressed_candidate_with_and_without_the_policy(shards, tmp_path, capsys):
    policy, states = shards
    for extra in ((), ("--config", policy)):
        report = tmp_path / f"r{len(extra)}.json"
        outcome = run_cli(capsys, "merge", *states, *extra, "--json", report)
        assert outcome.code == 1, outcome.err
        notes = json.loads(report.read_text())["notes"]
        said = "policy checked against" if extra else "policy read from the state files (no --config)"
        assert any(said in n for n in notes), notes


@pytest.mark.parametrize("edit, field", [(_loosen, "checks.accuracy.accuracy.max_drop"), (_mode, "decision.mode")])
def test_a_loosened_policy_is_refused(shards, tmp_path, capsys, edit, field):
    policy, (s1, s2) = shards
    report = tmp_path / "r.json"
    # Edited, digest left as it was: the header does not match its own digest.
    plain = _forge(s1, tmp_path / "plain.gstate", edit, redigest=False)
    _refused(run_cli(capsys, "merge", plain, s2, "--json", report), report, "config does not match", "config_digest")
    # Digest recomputed in one shard: the other shard's config differs, in either order.
    one = _forge(s1, tmp_path / "one.gstate", edit, redigest=True)
    _refused(run_cli(capsys, "merge", one, s2, "--json", report), report, "config differs")
    _refused(run_cli(capsys, "merge", s2, one, "--json", report), report, "config differs")
    # Every shard forged alike: without a policy of its own the merge cannot tell (the payload is live) ...
    two = _forge(s2, tmp_path / "two.gstate", edit, redigest=True)
    live = run_cli(capsys, "merge", one, two, "--json", tmp_path / "live.json")
    assert live.code == (0 if edit is _loosen else 1), live.err
    assert json.loads((tmp_path / "live.json").read_text())["config"]["decision"]["mode"] == (
        "significant-and-beyond" if edit is _loosen else "non-inferiority")
    # ... and with --config from the base branch it refuses, naming the setting.
    _refused(run_cli(capsys, "merge", one, two, "--config", policy, "--json", report), report, "differs from", field)


def _unknown_key(meta: dict[str, Any]) -> None:
    meta["config"]["checks"]["accuracy"]["bogus_key"] = 1


def _negative_samples(meta: dict[str, Any]) -> None:
    meta["num_samples"] = meta["data"]["num_samples"] = -100


def _dict_notes(meta: dict[str, Any]) -> None:
    meta["notes"] = [{"x": 1}]


def _text_threshold(meta: dict[str, Any]) -> None:
    meta["config"]["checks"]["accuracy"]["accuracy"]["max_drop"] = "x"


def _negative_seed(meta: dict[str, Any]) -> None:
    meta["config"]["seed"] = -5


@pytest.mark.parametrize("edit, words", [
    (_unknown_key, ("config: checks.accuracy.bogus_key: unknown key",)),
    (_negative_samples, ("gate state field num_samples", ">= 0")),
    (_dict_notes, ("gate state field notes[0]", "expected a string")),
    (_text_threshold, ("config: checks.accuracy.accuracy.max_drop", "expected number")),
    (_negative_seed, ("config: seed",)),
])
def test_a_malformed_header_in_every_shard_is_refused(shards, tmp_path, capsys, edit, words):
    _, states = shards
    forged = [_forge(s, tmp_path / s.name, edit, redigest=True) for s in states]
    report = tmp_path / "r.json"
    _refused(run_cli(capsys, "merge", *forged, "--json", report), report, str(forged[0]), *words)


def test_a_policy_setting_given_only_to_the_shard_jobs_is_refused(world, shards, tmp_path, capsys):
    """A check switched off on the shard jobs' command line is a policy change the --config file does not make."""
    import subprocess
    import sys

    from tests.acceptance.test_sharded_runs import ROOT, _args, _env

    policy, _ = shards
    states = []
    for i in (1, 2):
        state = tmp_path / f"s{i}.gstate"
        done = subprocess.run([sys.executable, "-m", "gate", "check",
                               *_args(world, world.regressed, "-c", policy, "--disable", "per_class",
                                      "--shard", f"{i}/2", "--state", state)],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stderr
        states.append(state)
    report = tmp_path / "r.json"
    _refused(run_cli(capsys, "merge", *states, "--config", policy, "--json", report), report,
             "checks.per_class.enabled (false there, true in the policy)")


def _relabel(meta: dict[str, Any]) -> None:
    meta["config"]["data"]["labels"] = "cand"        # another column of the same (hashed) file as ground truth


def _outputs(meta: dict[str, Any]) -> None:
    meta["config"]["model"]["output"] = "probabilities"


def _role_dtype(meta: dict[str, Any]) -> None:
    meta["config"]["model"].setdefault("candidate", {})["dtype"] = "bfloat16"


def _role_names(meta: dict[str, Any]) -> None:
    meta["config"]["model"].setdefault("baseline", {})["class_names"] = ["2", "1", "0"]


def _batch(meta: dict[str, Any]) -> None:
    meta["config"]["data"]["batch_size"] = 7


@pytest.mark.parametrize("edit, field", [(_relabel, "data.labels"), (_outputs, "model.output"),
                                         (_role_dtype, "model.candidate.dtype"),
                                         (_role_names, "model.baseline.class_names")])
def test_what_the_data_and_the_outputs_are_is_policy_too(shards, tmp_path, capsys, edit, field):
    """Every shard forged alike, digests recomputed: the data's label column or the models' output kind differs
    from the policy given to the merge, so it refuses, naming the setting."""
    policy, (s1, s2) = shards
    report = tmp_path / "r.json"
    one = _forge(s1, tmp_path / "one.gstate", edit, redigest=True)
    two = _forge(s2, tmp_path / "two.gstate", edit, redigest=True)
    _refused(run_cli(capsys, "merge", one, two, "--config", policy, "--json", report), report, "differs from", field)


def test_how_a_job_measured_is_not_policy(shards, tmp_path, capsys):
    """The batch size says how the shard jobs measured: a merge under the policy still decides (exit 1)."""
    policy, (s1, s2) = shards
    one = _forge(s1, tmp_path / "one.gstate", _batch, redigest=True)
    two = _forge(s2, tmp_path / "two.gstate", _batch, redigest=True)
    assert run_cli(capsys, "merge", one, two, "--config", policy).code == 1
