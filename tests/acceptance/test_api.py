"""The Python API against the CLI on the same inputs: the same JSON, the same error messages; in-memory modules,
Datasets, DataLoaders and lists of batches give the figures the files give."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import gate
from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli
from tests.acceptance.test_bad_inputs import CASE_NAMES, CASES, bad_file_cases

FACTORY = "tests.tiny_models:build_mlp"
CONFIG = {
    "checks": {
        "accuracy": {"accuracy": {"max_drop": 0.02}},
        "per_class": {"recall": {"max_drop": 0.1}},
        "drift": {"enabled": True},
    },
}


def masked(report: dict) -> dict:
    """The JSON report without what differs between two runs of the same gate: timestamps and durations."""
    out = copy.deepcopy(report)
    out.pop("created_at")
    out.pop("duration_s")
    for check in out["checks"]:
        check.pop("duration_s")
    return out


def cli_json(capsys, tmp_path: Path, *args: object) -> tuple[int, dict]:
    out = tmp_path / "cli.json"
    res = run_cli(capsys, "check", *args, "--json", out)
    assert res.code in (0, 1), res.err
    return res.code, json.loads(out.read_text())


def _tensors(world) -> tuple[torch.Tensor, torch.Tensor]:
    with __import__("numpy").load(world.data) as data:
        return torch.from_numpy(data["x"]), torch.from_numpy(data["labels"])


@pytest.mark.parametrize("which", ["good", "regressed"])
def test_api_and_cli_give_identical_json_for_the_same_files(which, world, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    candidate = getattr(world, which)
    code, expected = cli_json(capsys, tmp_path, candidate, "--baseline", world.baseline, "--data", world.data,
                              "--config", config, "--model-factory", FACTORY, "--enable", "latency",
                              "--disable", "latency", "--seed", 3)
    report = gate.check(str(candidate), str(world.baseline), str(world.data), config=config, model_factory=FACTORY,
                        enable=["latency"], disable="latency", seed=3)
    assert report.exit_code == code == (0 if which == "good" else 1)
    assert masked(json.loads(report.to_json())) == masked(expected)
    # the same settings as a dict instead of a file: the same report
    from_dict = gate.check(candidate, world.baseline, world.data, config=CONFIG, model_factory=FACTORY, seed=3)
    assert masked(from_dict.to_dict()) == masked(report.to_dict())


def test_in_memory_modules_and_data_give_the_figures_of_the_files(world, in_repo_root, tmp_path, capsys):
    _, expected = cli_json(capsys, tmp_path, world.regressed, "--baseline", world.baseline, "--data", world.data,
                           "--model-factory", FACTORY, "--enable", "drift")
    x, y = _tensors(world)
    dataset = TensorDataset(x, y)
    sources = {
        "Dataset": dataset,
        "DataLoader": DataLoader(dataset, batch_size=64),
        "list of batches": [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)],
    }
    for name, data in sources.items():
        report = gate.check(tm.regressed_candidate(), tm.teacher(), data, enable=["drift"])
        got = masked(report.to_dict())
        validate_report(got | {"created_at": "x", "duration_s": 0.0,
                               "checks": [c | {"duration_s": 0.0} for c in got["checks"]]})
        want = masked(expected)
        assert got["metrics"] == want["metrics"], name
        assert got["checks"] == want["checks"], name
        assert (got["verdict"], got["exit_code"], got["summary"]) == (want["verdict"], 1, want["summary"])
        # what differs is what names the inputs: no file, so no path and no file digest
        assert got["data"] | {"path": None, "format": None, "sha256": None} == want["data"] | {
            "path": None, "format": None, "sha256": None}
        assert got["data"]["path"] == f"<in-memory {type(data).__name__}>" and got["data"]["format"] == "memory"
        assert [m["path"] for m in got["models"]] == ["<in-memory TinyMLP>"] * 2
        assert [m["format"] for m in got["models"]] == ["module"] * 2
        assert [m["parameters"] for m in got["models"]] == [m["parameters"] for m in want["models"]]
    # the weights' digest names the weights: equal weights, equal digests; other weights, another one
    digests = [m.sha256 for m in gate.check(tm.teacher(), tm.teacher(), dataset).model.models]
    assert digests[0] == digests[1] != gate.check(tm.regressed_candidate(), tm.teacher(), dataset).model.models[1].sha256


def test_a_modules_id2label_names_the_classes(world):
    from types import SimpleNamespace

    x, y = _tensors(world)
    candidate, baseline = tm.good_candidate(), tm.teacher()
    baseline.config = SimpleNamespace(id2label={0: "red", 1: "green", 2: "blue"})
    report = gate.check(candidate, baseline, [(x, y)])
    assert report.model.class_names == ("red", "green", "blue")
    assert [c["class"] for c in report.metrics["candidate"]["per_class"]] == ["red", "green", "blue"]


def test_report_object(world, in_repo_root, tmp_path):
    report = gate.check(world.regressed, world.baseline, world.data, model_factory=FACTORY)
    assert report.verdict == "fail" and report.exit_code == 1 and not report.passed
    assert repr(report) == f"<gate.Report {report.summary}>"
    assert list(report.checks) == ["sanity", "accuracy", "per_class", "flips"]
    assert report.checks["per_class"].status == "fail"
    failed = {(f.check, f.metric) for f in report.failures}
    assert ("per_class", "recall[1]") in failed
    assert all(f.finding is not None and f.finding.status == "fail" and f.reason == f.finding.reason
               for f in report.failures)
    assert not any(f.check == "sanity" for f in report.failures)
    assert next(f for f in report.failures if f.metric == "recall[1]").label == "recall[1]"
    validate_report(json.loads(report.to_json()))
    assert report.to_markdown().startswith("## :x: gate FAILED")
    assert report.to_html().startswith("<!DOCTYPE html>") and "recall[1]" in report.to_html()
    assert report.to_junit().startswith('<?xml version="1.0"')
    assert str(report) == report.to_console() and "verdict: FAIL" in str(report)
    inline = report._repr_html_()         # what Jupyter shows: the page, in an iframe of its own
    srcdoc = __import__("re").fullmatch(r'<iframe srcdoc="([^"]*)" title="gate report" style="[^"]*"></iframe>',
                                        inline)
    assert srcdoc is not None and __import__("html").unescape(srcdoc.group(1)) == report.to_html()
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "markdown", "junit", "html")}
    report.write(**paths)
    assert paths["json"].read_text() == report.to_json()
    assert paths["html"].read_text() == report.to_html()
    passing = gate.check(world.good, world.baseline, world.data, model_factory=FACTORY)
    assert passing.passed and passing.failures == ()


def test_the_callers_modules_come_back_as_they_were(world):
    x, y = _tensors(world)
    candidate, baseline = tm.regressed_candidate().train(), tm.teacher()
    baseline.eval()
    baseline.body.train()              # a mixed state is kept too
    gate.check(candidate, baseline, [(x, y)], enable="drift")
    assert candidate.training and all(m.training for m in candidate.modules())
    assert not baseline.training and baseline.body.training and not baseline.head.training


def test_trust_comes_from_the_options_only(world, in_repo_root, tmp_path, capsys):
    whole = tmp_path / "whole.pt"
    torch.save(tm.good_candidate(), whole)
    with pytest.raises(gate.CheckpointError, match="--trust-checkpoint"):
        gate.check(whole, world.baseline, world.data, model_factory=FACTORY)
    with pytest.raises(gate.CheckpointError):
        gate.check(whole, world.baseline, world.data, model_factory=FACTORY, trust_checkpoint="baseline")
    assert gate.check(whole, world.baseline, world.data, model_factory=FACTORY, trust_checkpoint="candidate").passed
    assert gate.check(whole, world.baseline, world.data, model_factory=FACTORY, trust_checkpoint=["all"]).passed
    with pytest.raises(gate.ConfigError, match="trust cannot be given by a config file"):
        gate.check(whole, world.baseline, world.data, model_factory=FACTORY,
                   config={"model": {"candidate": {"trust_checkpoint": True}}})
    with pytest.raises(gate.ConfigError, match="trust_checkpoint: expected one of"):
        gate.check(whole, world.baseline, world.data, model_factory=FACTORY, trust_checkpoint="everyone")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"candidate": 3}, "candidate: expected a checkpoint path or a torch.nn.Module, found int"),
    ({"data": None}, "no evaluation data given"),
    ({"data": 42}, "data <in-memory int>: expected a path, a torch Dataset, a DataLoader or an iterable"),
    ({"enabel": ["drift"]}, "enabel: unknown option (did you mean enable?)"),
    ({"enable": ["dirft"]}, "enable: expected one of"),
    ({"device": "gpu"}, "device: expected one of cpu, cuda, auto, found 'gpu'"),
    ({"batch_size": 0}, "data.batch_size"),
    ({"config": ["not", "a", "mapping"]}, "config: expected a path to gate.yaml, a dict of settings or None"),
    ({"config": {"checks": {"accuracy": {"max_drp": 1}}}}, "config: checks.accuracy.max_drp: unknown key"),
    # an empty string (an unset variable) is a mistake, never "not given": the policy or the check is not dropped
    ({"config": ""}, "config: an empty path"),
    ({"model_factory": ""}, "model_factory: an empty value"),
    ({"onnx": ""}, "onnx: an empty path"),
    ({"device": ""}, "device: an empty value"),
    ({"candidate": ""}, "candidate: an empty path"),
    ({"baseline": ""}, "baseline: an empty path"),
    ({"data": ""}, "data: an empty path"),
])
def test_bad_arguments_raise_gate_errors_that_say_what_to_do(kwargs, needle, world):
    args = {"candidate": tm.good_candidate(), "baseline": tm.teacher(), "data": [_tensors(world)]} | kwargs
    with pytest.raises(gate.GateError) as err:
        gate.check(args.pop("candidate"), args.pop("baseline"), args.pop("data"), **args)
    assert needle in str(err.value)


def test_a_one_shot_iterator_is_read_once(world):
    batches = iter([_tensors(world)])
    assert gate.check(tm.good_candidate(), tm.teacher(), batches).passed


def _error_line(capsys, *args: object) -> str:
    res = run_cli(capsys, "check", *args)
    assert res.code == 2, res.err
    return res.err.strip()


def _api_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(gate.GateError) as err:
        gate.check(*args, **kwargs)
    return "error: " + " ".join(str(err.value).split())


@pytest.mark.parametrize("case", sorted(CASES.iterdir()), ids=lambda p: p.name)
def test_bad_configs_give_the_cli_message(case, world, in_repo_root, capsys):
    line = _error_line(capsys, world.good, "--baseline", world.baseline, "--data", world.data,
                       "--model-factory", FACTORY, "--config", case)
    assert _api_error(world.good, world.baseline, world.data, config=case, model_factory=FACTORY) == line


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_files_give_the_cli_message(name, world, in_repo_root, tmp_path, capsys):
    candidate, baseline, data, _ = bad_file_cases(world, tmp_path)[name]
    line = _error_line(capsys, candidate, "--baseline", baseline, "--data", data, "--model-factory", FACTORY)
    assert _api_error(candidate, baseline, data, model_factory=FACTORY) == line


def test_cli_writes_the_html_report_with_the_others(world, in_repo_root, tmp_path, capsys):
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "html")}
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", paths["json"], "--html", paths["html"])
    assert res.code == 1, res.err
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "gate FAILED" in page and "recall[1]" in page
    report = gate.check(world.regressed, world.baseline, world.data, model_factory=FACTORY)
    # the same page as the API's, but for the run's own time and durations
    strip = __import__("re").compile(r"created [^<]* in [^<]* s|\d+\.\d+ s\b")
    assert strip.sub("", page) == strip.sub("", report.to_html())
    same = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                   "--json", tmp_path / "x", "--html", tmp_path / "x")
    assert same.code == 2 and "--json, --markdown, --junit and --html must name different files" in same.err


class _CountingDataset(torch.utils.data.Dataset):
    """The eval data as a map-style Dataset that records every sample fetched."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.touched = x, y, []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        self.touched.append(int(i))
        return self.x[i], self.y[i]


def test_a_sharded_dataset_fetches_only_its_own_samples_and_merges_to_the_unsharded_report(world, tmp_path):
    """`run(..., shard=1/2 and 2/2)` on a Dataset: each shard's __getitem__ sees exactly its batches' samples (batch
    b of 64 is shard b % 2's), and `merge` of the two states gives the unsharded report's metrics and checks."""
    from gate.report.json_report import report_dict
    from gate.sharding import parse_shard, write_state

    x, y = _tensors(world)
    import gate.api

    config = gate.api.configure(batch_size=64)
    unsharded = gate.api.run(config, tm.regressed_candidate(), tm.teacher(), _CountingDataset(x, y))
    paths = []
    for index in (1, 2):
        data = _CountingDataset(x, y)
        state = gate.api.run(config, tm.regressed_candidate(), tm.teacher(), data, shard=parse_shard(f"{index}/2"))
        own = [j for b in range(index - 1, -(-len(y) // 64), 2) for j in range(64 * b, min(64 * b + 64, len(y)))]
        assert sorted(data.touched) == own and len(data.touched) == len(own)     # each of its own once, no other
        paths.append(tmp_path / f"s{index}.gstate")
        write_state(state, paths[-1])
    merged = masked(report_dict(gate.api.merge(paths)))
    want = masked(report_dict(unsharded))
    assert merged["metrics"] == want["metrics"]
    assert merged["checks"] == want["checks"]
    assert (merged["verdict"], merged["exit_code"], merged["examples"]) == (want["verdict"], 1, want["examples"])
    assert merged["data"]["num_samples"] == len(y)


def test_empty_report_and_state_paths_are_refused_naming_the_argument(world, tmp_path):
    report = gate.check(tm.good_candidate(), tm.teacher(), [_tensors(world)])
    with pytest.raises(gate.ConfigError, match=r"^html: an empty path$"):
        report.write(json=tmp_path / "r.json", html="")
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(gate.ConfigError, match=r"^states: an empty path$"):
        gate.api.merge([tmp_path / "s1.gstate", ""])
    with pytest.raises(gate.ConfigError, match=r"^baseline_cache: an empty path$"):
        gate.api.run(gate.api.configure(), tm.good_candidate(), tm.teacher(), [_tensors(world)], baseline_cache="")
