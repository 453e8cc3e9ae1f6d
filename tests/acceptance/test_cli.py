"""End to end through the CLI on tiny seeded models: verdicts, exit codes, every report format, every input format."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score

from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli

FACTORY = "tests.tiny_models:build_mlp"


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return dict(data)


def _preds(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def test_good_candidate_passes_with_every_report(world, in_repo_root, tmp_path, capsys):
    paths = {k: tmp_path / f"report.{k}" for k in ("json", "md", "xml")}
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", paths["json"], "--markdown", paths["md"], "--junit", paths["xml"])
    assert res.code == 0, res.err
    assert "verdict: PASS" in res.out
    report = json.loads(paths["json"].read_text())
    validate_report(report)
    assert report["verdict"] == "pass" and report["exit_code"] == 0
    assert {c["name"] for c in report["checks"]} == {"sanity", "accuracy", "per_class", "flips"}
    assert paths["md"].read_text().startswith("## :white_check_mark: gate passed")
    suite = ET.parse(paths["xml"]).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"


def test_regressed_candidate_fails_and_says_where(world, in_repo_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", out, "--junit", tmp_path / "r.xml")
    assert res.code == 1
    report = json.loads(out.read_text())
    validate_report(report)
    per_class = next(c for c in report["checks"] if c["name"] == "per_class")
    assert per_class["status"] == "fail"
    failed = [f for f in per_class["findings"] if f["status"] == "fail"]
    assert any(f["metric"] == "recall[1]" and f["where"] == "1" for f in failed)
    # The figures in the report agree with scikit-learn on the same predictions.
    data = _arrays(world.data)
    x, y = data["x"], data["labels"]
    pb, pc = _preds(tm.teacher(), x), _preds(tm.regressed_candidate(), x)
    assert report["metrics"]["baseline"]["accuracy"] == pytest.approx(accuracy_score(y, pb))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(y, pc))
    recall = recall_score(y, pc, average=None)
    assert [r["recall"] for r in report["metrics"]["candidate"]["per_class"]] == pytest.approx(list(recall))
    assert report["metrics"]["comparison"]["negative_flips"] == int(((pb == y) & (pc != y)).sum())
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")}
    assert cases["per_class"].find("failure") is not None
    assert "recall[1]" in cases["per_class"].find("failure").text


def test_two_runs_give_identical_numbers(world, in_repo_root, tmp_path, capsys):
    reports = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                "--model-factory", FACTORY, "--json", out, "--batch-size", 7 if i else 64)
        data = json.loads(out.read_text())
        reports.append({k: data[k] for k in ("metrics", "verdict")} | {"checks": [
            {k: c[k] for k in ("name", "status", "findings")} for c in data["checks"] if c["name"] != "sanity"]})
    assert reports[0] == reports[1]


def test_point_decision_differs_from_non_inferiority_on_a_small_drop(in_repo_root, tmp_path, capsys):
    # A candidate slightly worse than the baseline on few samples: point decisions fail, paired statistics cannot
    # tell and report inconclusive (a warning, exit 0).
    world = tm.make_world(tmp_path / "w", n=120)
    cand = tm.teacher()
    with torch.no_grad():
        cand.head.bias[2] -= 0.02
    torch.save(cand.state_dict(), tmp_path / "slight.pt")
    args = ["check", tmp_path / "slight.pt", "--baseline", world.baseline, "--data", world.data, "--model-factory",
            FACTORY, "--disable", "per_class", "--disable", "flips", "--json", tmp_path / "r.json"]
    point = run_cli(capsys, *args, "--decision", "point")
    report = json.loads((tmp_path / "r.json").read_text())
    drop = report["metrics"]["baseline"]["accuracy"] - report["metrics"]["candidate"]["accuracy"]
    assert 0.01 < drop < 0.06, drop  # the fixture really is slightly worse
    assert point.code == 1
    stat = run_cli(capsys, *args, "--decision", "non-inferiority")
    assert stat.code == 0, stat.out
    report = json.loads((tmp_path / "r.json").read_text())
    acc = next(c for c in report["checks"] if c["name"] == "accuracy")
    finding = next(f for f in acc["findings"] if f["metric"] == "accuracy" and f["rule"] == "max_drop")
    assert finding["inconclusive"] and finding["status"] == "warn"
    assert finding["interval"][0] < 0.01 < finding["interval"][1]


def _save_formats(model: torch.nn.Module, directory: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, tm.IN_FEATURES)
    out = {}
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.script(model), str(directory / "m.torchscript"))
    out["torchscript"] = directory / "m.torchscript"
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(directory / "m.pt2"))
    out["export"] = directory / "m.pt2"
    torch.save(model.state_dict(), directory / "m.pth")
    out["state_dict"] = directory / "m.pth"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, directory / "m.ckpt")
    out["lightning"] = directory / "m.ckpt"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "m.safetensors"))
    out["safetensors"] = directory / "m.safetensors"
    return out


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "export", "state_dict", "lightning", "safetensors"])
def test_every_checkpoint_format_as_candidate(fmt, world, in_repo_root, tmp_path, capsys):
    files = _save_formats(tm.regressed_candidate(), tmp_path / fmt)
    out = tmp_path / "r.json"
    trust = ("--trust-checkpoint", "candidate") if fmt in ("torchscript", "export") else ()
    res = run_cli(capsys, "check", files[fmt], "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", out, *trust)
    assert res.code == 1, res.err
    report = json.loads(out.read_text())
    assert report["models"][1]["format"] in (fmt, "state_dict")
    data = _arrays(world.data)
    expected = accuracy_score(data["labels"], _preds(tm.regressed_candidate(), data["x"]))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(expected)


def test_pickled_module_only_with_trust(world, in_repo_root, tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(tm.good_candidate(), path)
    refused = run_cli(capsys, "check", path, "--baseline", world.baseline, "--data", world.data, "--model-factory", FACTORY)
    assert refused.code == 2 and "--trust-checkpoint" in refused.err
    other_role = run_cli(capsys, "check", path, "--baseline", world.baseline, "--data", world.data,
                         "--model-factory", FACTORY, "--trust-checkpoint", "baseline")
    assert other_role.code == 2 and "--trust-checkpoint candidate" in other_role.err
    trusted = run_cli(capsys, "check", path, "--baseline", world.baseline, "--data", world.data,
                      "--model-factory", FACTORY, "--trust-checkpoint", "candidate")
    assert trusted.code == 0, trusted.err


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_programs_are_refused_without_trust_for_their_role(fmt, world, in_repo_root, tmp_path, capsys):
    files = _save_formats(tm.good_candidate(), tmp_path / fmt)
    out = tmp_path / "r.json"
    for trust in ((), ("--trust-checkpoint", "baseline")):
        res = run_cli(capsys, "check", files[fmt], "--baseline", world.baseline, "--data", world.data,
                      "--model-factory", FACTORY, "--json", out, *trust)
        assert res.code == 2 and not out.exists()
        assert res.err.startswith("error: candidate checkpoint") and res.err.count("\n") == 1
        assert "is a program, not weights" in res.err and "--trust-checkpoint candidate" in res.err


@pytest.mark.parametrize("fmt", ["npz", "pt", "safetensors", "factory"])
def test_every_tensor_data_format(fmt, world, in_repo_root, tmp_path, capsys):
    from safetensors.numpy import save_file

    arrays = _arrays(world.data)
    if fmt == "npz":
        data = world.data
    elif fmt == "pt":
        data = tmp_path / "eval.pt"
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, data)
    elif fmt == "safetensors":
        data = tmp_path / "eval.safetensors"
        save_file(arrays, str(data))
    else:
        data = "tests.acceptance.data_factories:tiny_dataset"
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", data,
                  "--model-factory", FACTORY, "--json", out)
    assert res.code == 1, res.err
    report = json.loads(out.read_text())
    assert report["data"]["num_samples"] == len(arrays["labels"])
    expected = accuracy_score(arrays["labels"], _preds(tm.regressed_candidate(), arrays["x"]))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_text_data_with_hugging_face_models(fmt, tmp_path, in_repo_root, capsys):
    import csv

    from tests.unit.model_fixtures import TEXTS, build_hf_dir

    labels = {0: "negative", 1: "positive"}
    build_hf_dir(tmp_path / "base", id2label=labels, seed=0)
    build_hf_dir(tmp_path / "cand", id2label=labels, seed=0)
    rows = [{"text": t, "label": labels[i % 2]} for i, t in enumerate(TEXTS * 10)]
    data = tmp_path / f"eval.{fmt}"
    if fmt == "jsonl":
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with data.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "cand", "--baseline", tmp_path / "base", "--data", data, "--json", out,
                  "--batch-size", 8)
    assert res.code == 0, res.err + res.out
    report = json.loads(out.read_text())
    assert report["class_names"] == ["negative", "positive"]
    assert report["models"][0]["format"] == "huggingface"
    assert report["data"]["num_samples"] == len(rows)
    assert report["metrics"]["comparison"]["agreement"] == 1.0


def test_help_and_schema_do_not_import_torch():
    code = ("import sys; from gate.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    for args in (["--help"], ["schema", "config"], ["schema", "report"], ["check", "--help"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_schema_command_prints_valid_json_schemas(capsys):
    import jsonschema

    for which in ("config", "report"):
        res = run_cli(capsys, "schema", which)
        assert res.code == 0
        jsonschema.Draft202012Validator.check_schema(json.loads(res.out))


def test_every_optional_check_through_the_cli(world, in_repo_root, tmp_path, capsys):
    """drift, latency and onnx together with the defaults: one pass, a schema-valid report, every check present."""
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--enable", "drift", "--enable", "latency", "--enable", "onnx",
                  "--threads", "1", "--json", out, "--markdown", md)
    assert res.code == 1, res.err
    report = json.loads(out.read_text())
    validate_report(report)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"sanity", "accuracy", "per_class", "flips", "drift", "onnx", "latency"}
    # The regressed candidate only moved the head's bias: drift starts at the head, the body is identical.
    assert checks["drift"]["status"] == "fail"
    assert checks["drift"]["details"]["first_drifting_layer"] == "head"
    # A correct export of the candidate agrees with it; timing identical architectures never fails.
    assert checks["onnx"]["status"] == "pass", checks["onnx"]["summary"]
    assert checks["latency"]["status"] in ("pass", "warn")
    assert "```mermaid" in md.read_text()


def test_json_report_on_stdout_keeps_stdout_parseable(world, in_repo_root, capsys):
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", "/dev/stdout")
    assert res.code == 1
    report = json.loads(res.out)  # nothing but the report on stdout
    validate_report(report)
    assert "verdict: FAIL" in res.err  # the console report moved to stderr
