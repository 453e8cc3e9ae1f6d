"""multi_label and regression end to end through `python -m gate check`: tiny seeded models saved as safetensors
state_dicts rebuilt by a factory, sanity / drift / onnx / latency enabled, schema-valid reports that name the task;
a broken candidate fails (exit 1); bad input is exit 2 in one line with no report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gate.report.json_report import validate_report
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli

FACTORY = "tests.tiny_models:build_mlp"
ROOT = Path(__file__).resolve().parents[2]
LABELS = ["sports", "politics", "tech", "arts"]
FAST = ("checks:\n  latency:\n    batch_sizes: [1, 8]\n    budget_s: 0.5\n  onnx:\n    latency:\n      enabled: false\n")


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _jitter(model: torch.nn.Module, seed: int, scale: float = 1e-4) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def _world(root: Path, *, width: int, task: str) -> dict[str, Path]:
    torch.manual_seed(3)
    base = tm.build_mlp(num_classes=width).eval()
    good = tm.build_mlp(num_classes=width).eval()
    good.load_state_dict(base.state_dict())
    good = _jitter(good, 1)
    broken = tm.build_mlp(num_classes=width).eval()
    broken.load_state_dict(base.state_dict())
    with torch.no_grad():
        broken.head.bias[0] = float("nan")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, tm.IN_FEATURES)).astype(np.float32)
    with torch.no_grad():
        out = base(torch.from_numpy(x)).numpy()
    if task == "multi_label":
        y = (out > 0).astype(np.int64)
    else:
        y = (out + 0.1 * rng.standard_normal(out.shape)).astype(np.float32)
    np.savez(root / "eval.npz", x=x, labels=y)
    names = f"class_names: {json.dumps(LABELS)}\n" if task == "multi_label" else ""
    (root / "gate.yaml").write_text(f"task: {task}\n{names}model:\n  factory: {FACTORY}\n  kwargs: {{num_classes: {width}}}\n"
                                    + FAST)
    return {"root": root, "base": _save(base, root / "base.safetensors"), "good": _save(good, root / "good.safetensors"),
            "broken": _save(broken, root / "broken.safetensors"), "data": root / "eval.npz",
            "config": root / "gate.yaml"}


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _world(tmp_path_factory.mktemp("multi_label"), width=4, task="multi_label")


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _world(tmp_path_factory.mktemp("regression"), width=2, task="regression")


def _gate(world: dict[str, Path], candidate: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "gate", "check", str(world[candidate]), "--baseline", str(world["base"]),
         "--data", str(world["data"]), "--config", str(world["config"]), "--enable", "drift", "--enable", "onnx",
         "--enable", "latency", "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
         "--junit", str(out / "r.xml"), "--html", str(out / "r.html"), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(("world_name", "task", "names", "output"), [
    ("multi_label", "multi_label", LABELS, "multi_label_logits"),
    ("regression", "regression", ["target[0]", "target[1]"], "regression"),
])
def test_a_good_candidate_passes_with_the_task_agnostic_checks(world_name, task, names, output, request, tmp_path):
    world = request.getfixturevalue(world_name)
    res = _gate(world, "good", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    validate_report(report)
    assert report["task"] == task and report["class_names"] == names
    assert [m["output"] for m in report["models"]] == [output, output]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    task_checks = {"regression": {"regression"}, "multi_label": {"multilabel"}}[task]   # the task's own check
    assert set(statuses) == {"sanity", "drift", "onnx", "latency"} | task_checks, statuses   # no classification check
    assert statuses["sanity"] == statuses["drift"] == statuses["onnx"] == "pass"
    assert statuses["latency"] in ("pass", "warn")
    onnx = next(c for c in report["checks"] if c["name"] == "onnx")
    assert onnx["details"]["samples"] == 96 and onnx["details"]["numeric"]["outside_tolerance"] == 0
    assert onnx["details"]["task"]["compared"] == ("probabilities" if task == "multi_label" else "predictions")
    if task == "multi_label":
        assert onnx["details"]["task"]["sample_agreement"] == 1.0
    if task == "regression":                             # the regression check's metrics() gives the block
        assert set(report["metrics"]) == {"baseline", "candidate", "comparison"}
        assert statuses["regression"] == "pass"
    else:                                                # the multilabel check gives the metrics block
        assert statuses["multilabel"] in ("pass", "warn")
        assert report["metrics"]["num_labels"] == len(names) and "per_label" in report["metrics"]["candidate"]
    assert f", task {task}" in res.stdout and f"{len(names)} {'labels' if task == 'multi_label' else 'targets'}" in res.stdout
    assert f"task: **{task}**" in (tmp_path / "r.md").read_text()
    assert f'<property name="task" value="{task}" />' in (tmp_path / "r.xml").read_text()
    assert f"; task {task}</p></header>" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("world_name", ["multi_label", "regression"])
def test_a_candidate_with_nan_outputs_fails(world_name, request, tmp_path, capsys, in_repo_root):
    world = request.getfixturevalue(world_name)
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world["broken"], "--baseline", world["base"], "--data", world["data"],
                  "--config", world["config"], "--json", out)
    assert res.code == 1, res.out + res.err
    report = json.loads(out.read_text())
    validate_report(report)
    sanity = next(c for c in report["checks"] if c["name"] == "sanity")
    assert sanity["status"] == "fail" and sanity["details"]["non_finite"]["candidate"] == 96
    assert sanity["details"]["non_finite"]["baseline"] == 0


def _refused(capsys, world: dict[str, Path], tmp_path: Path, *args: object, config: str | None = None,
             data: Path | None = None) -> str:
    cfg = world["config"]
    if config is not None:
        cfg = tmp_path / "gate.yaml"
        cfg.write_text(config)
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", world["good"], "--baseline", world["base"], "--data", data or world["data"],
                  "--config", cfg, "--json", out, *args)
    assert res.code == 2 and not out.exists(), res.out + res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.err, res.err
    return lines[0]


def test_a_classification_check_enabled_for_regression_is_refused(regression, tmp_path, capsys, in_repo_root):
    line = _refused(capsys, regression, tmp_path, "--enable", "accuracy")
    assert line == (f"error: {regression['config']}: checks.accuracy: enabled (in the config or by --enable), but "
                    "the accuracy check does not support the task regression (it supports classification); leave it "
                    "off for this model")


def test_a_classification_check_enabled_in_gate_yaml_for_multi_label_is_refused(multi_label, tmp_path, capsys,
                                                                               in_repo_root):
    config = multi_label["config"].read_text() + "  flips:\n    enabled: true\n"
    line = _refused(capsys, multi_label, tmp_path, config=config)
    assert line.endswith("gate.yaml: checks.flips: enabled (in the config or by --enable), but the flips check does "
                         "not support the task multi_label (it supports classification); leave it off for this model")


def test_class_index_labels_for_a_multi_label_run_are_refused(multi_label, tmp_path, capsys, in_repo_root):
    data = tmp_path / "flat.npz"
    np.savez(data, x=np.zeros((4, tm.IN_FEATURES), np.float32), labels=np.array([0, 1, 2, 3]))
    line = _refused(capsys, multi_label, tmp_path, data=data)
    assert line == (f"error: {data}: tensor 'labels': labels of shape (4,); task multi_label expects an (N, L) 0/1 "
                    "multi-hot tensor, one column per label")


def test_a_multi_hot_of_another_width_is_refused(multi_label, tmp_path, capsys, in_repo_root):
    data = tmp_path / "narrow.npz"
    np.savez(data, x=np.ones((4, tm.IN_FEATURES), np.float32), labels=np.eye(4, 3, dtype=np.int64))
    line = _refused(capsys, multi_label, tmp_path, data=data)
    assert line == f"error: {data}: batch 0 (sample 0): a multi-hot of width 3, but the models output 4 labels"


def test_a_non_finite_regression_target_is_refused(regression, tmp_path, capsys, in_repo_root):
    data = tmp_path / "nan.npz"
    y = np.zeros((4, 2), np.float32)
    y[2, 1] = np.nan
    np.savez(data, x=np.ones((4, tm.IN_FEATURES), np.float32), labels=y)
    line = _refused(capsys, regression, tmp_path, data=data)
    assert line == (f"error: {data}: tensor 'labels': target [0.0, nan] of sample 2 is not finite (task regression "
                    "needs finite targets)")


def test_class_names_that_do_not_match_the_targets_are_refused(regression, tmp_path, capsys, in_repo_root):
    config = regression["config"].read_text() + "class_names: [price, volume, rating]\n"
    line = _refused(capsys, regression, tmp_path, config=config)
    assert line.endswith("gate.yaml: class_names: 3 names but the models output 2 targets")


def test_multi_label_probabilities_without_a_declared_kind_ask_in_one_line(multi_label, tmp_path, capsys,
                                                                          in_repo_root):
    """A model whose outputs all lie in [0, 1]: probabilities or logits? The gate asks instead of guessing."""
    data = tmp_path / "tiny.npz"
    np.savez(data, x=np.zeros((4, tm.IN_FEATURES), np.float32), labels=np.zeros((4, 4), np.int64))
    zero = tm.build_mlp(num_classes=4)
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    world = {**multi_label, "good": _save(zero, tmp_path / "zero.safetensors"),
             "base": _save(zero, tmp_path / "zero_base.safetensors")}
    line = _refused(capsys, world, tmp_path, data=data)
    assert "cannot tell what the model outputs" in line and "multi_label_probabilities or multi_label_logits" in line


def _check_details(report: dict) -> dict:
    return {c["name"]: c["details"] for c in report["checks"]}


def test_sharded_regression_merges_to_the_unsharded_run(regression, tmp_path, capsys, in_repo_root):
    """The regression check's per-sample rows merge by concatenation in sample order (`rows.` keys), so two
    `--shard` files merged by `gate merge` give the single run's metrics, findings and intervals exactly."""
    common = ("--baseline", regression["base"], "--data", regression["data"], "--config", regression["config"],
              "--batch-size", "16")
    whole = tmp_path / "whole.json"
    assert run_cli(capsys, "check", regression["good"], *common, "--json", whole).code == 0
    states = [tmp_path / f"s{i}.gstate" for i in (1, 2)]
    for i, state in enumerate(states, start=1):
        res = run_cli(capsys, "check", regression["good"], *common, "--shard", f"{i}/2", "--state", state)
        assert res.code == 0, res.err
    merged = tmp_path / "merged.json"
    res = run_cli(capsys, "merge", *states, "--json", merged)
    assert res.code == 0, res.out + res.err
    a, b = json.loads(whole.read_text()), json.loads(merged.read_text())
    validate_report(b)
    assert b["task"] == "regression" and b["class_names"] == a["class_names"]
    assert b["data"]["num_samples"] == a["data"]["num_samples"] == 96
    assert _check_details(a)["sanity"]["non_finite"] == _check_details(b)["sanity"]["non_finite"]
    assert a["metrics"] and b["metrics"] == a["metrics"]
    [ra], [rb] = ([c for c in r["checks"] if c["name"] == "regression"] for r in (a, b))
    assert ra["findings"] and rb["findings"] == ra["findings"] and rb["details"] == ra["details"]
    assert rb["status"] == ra["status"] and b["exit_code"] == a["exit_code"]


def test_sharded_multi_label_merges_to_the_unsharded_run(multi_label, tmp_path, capsys, in_repo_root):
    """The multilabel check's per-(sample, label) codes are `rows.` state: 3 `--shard` files merged by `gate merge`
    give the single run's metrics block, findings, intervals (the bootstrap over samples) and exit code."""
    common = ("--baseline", multi_label["base"], "--data", multi_label["data"], "--config", multi_label["config"],
              "--batch-size", "16")
    whole = tmp_path / "whole.json"
    code = run_cli(capsys, "check", multi_label["good"], *common, "--json", whole).code
    states = [tmp_path / f"s{i}.gstate" for i in (1, 2, 3)]
    for i, state in enumerate(states, start=1):
        res = run_cli(capsys, "check", multi_label["good"], *common, "--shard", f"{i}/3", "--state", state)
        assert res.code == 0, res.err
    merged = tmp_path / "merged.json"
    res = run_cli(capsys, "merge", *states, "--json", merged)
    assert res.code == code, res.out + res.err
    a, b = json.loads(whole.read_text()), json.loads(merged.read_text())
    validate_report(b)
    assert b["task"] == "multi_label" and a["metrics"] and b["metrics"] == a["metrics"]
    [ma], [mb] = ([c for c in r["checks"] if c["name"] == "multilabel"] for r in (a, b))
    assert ma["findings"] and mb["findings"] == ma["findings"] and mb["details"] == ma["details"]


def test_a_baseline_cache_hit_gives_the_same_multi_label_run(multi_label, tmp_path, capsys, in_repo_root):
    common = ("--baseline", multi_label["base"], "--data", multi_label["data"], "--config", multi_label["config"],
              "--baseline-cache", tmp_path / "cache")
    reports = []
    for name in ("miss", "hit"):
        out = tmp_path / f"{name}.json"
        assert run_cli(capsys, "check", multi_label["good"], *common, "--json", out).code == 0
        reports.append(json.loads(out.read_text()))
    assert "baseline cache miss" in reports[0]["notes"][-1] and "baseline cache hit" in reports[1]["notes"][-1]
    assert _check_details(reports[0]) == _check_details(reports[1])
    assert [m["output"] for m in reports[1]["models"]] == ["multi_label_logits"] * 2


# ------------------------------------------------------------------------- Hugging Face heads and text data


def _hf_pair(root: Path, *, problem_type: str | None, id2label: dict[int, str], order: list[int] | None = None
             ) -> tuple[Path, Path]:
    """A tiny BERT head saved twice: the baseline, and a candidate with the same weights whose label columns are
    permuted by `order` (with id2label permuted to match, so by name they are the same model)."""
    import transformers

    from tests.unit import model_fixtures as fx

    base_dir = root / "base"
    model, _ = fx.build_hf_dir(base_dir, id2label=id2label)
    config = json.loads((base_dir / "config.json").read_text())
    config["problem_type"] = problem_type
    (base_dir / "config.json").write_text(json.dumps(config))
    cand_dir = root / "cand"
    order = order or list(range(len(id2label)))
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order].clone())
        model.classifier.bias.copy_(model.classifier.bias[order].clone())
    model.config.id2label = {i: id2label[j] for i, j in enumerate(order)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.config.problem_type = problem_type
    model.save_pretrained(str(cand_dir))
    transformers.AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(cand_dir))
    return base_dir, cand_dir


def test_a_hugging_face_multi_label_head_runs_on_jsonl_label_names(tmp_path, capsys, in_repo_root):
    from tests.unit.model_fixtures import TEXTS

    names = {0: "plot", 1: "acting", 2: "tone"}
    base, cand = _hf_pair(tmp_path, problem_type="multi_label_classification", id2label=names, order=[2, 0, 1])
    data = tmp_path / "eval.jsonl"
    labels = [["plot"], ["acting", "tone"], [], ["plot", "tone"]]
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(TEXTS * 3, labels * 3)))
    out = tmp_path / "r.json"
    # (drift is left off: it compares the classifier layer's raw columns, which the permutation reorders)
    res = run_cli(capsys, "check", cand, "--baseline", base, "--data", data, "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["task"] == "multi_label" and report["class_names"] == ["plot", "acting", "tone"]
    assert [m["output"] for m in report["models"]] == ["multi_label_logits"] * 2     # a HF output is named logits
    assert any("reordered to the baseline's by name" in n for n in report["notes"]), report["notes"]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    # the same model with its columns permuted: matched by name, every prediction agrees (12 samples prove nothing
    # within the thresholds, so multilabel warns rather than passes)
    assert statuses == {"sanity": "pass", "multilabel": "warn"}, statuses
    assert report["metrics"]["baseline"] == report["metrics"]["candidate"]
    assert report["metrics"]["comparison"]["negative_flips"] == report["metrics"]["comparison"]["positive_flips"] == 0
    sanity = next(c for c in report["checks"] if c["name"] == "sanity")
    assert any(f["metric"] == "class_names" and f["status"] == "pass" for f in sanity["findings"])


def test_a_hugging_face_head_with_one_label_is_a_regressor_on_jsonl_numbers(tmp_path, capsys, in_repo_root):
    from tests.unit.model_fixtures import TEXTS

    base, cand = _hf_pair(tmp_path, problem_type=None, id2label={0: "LABEL_0"})
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i * 0.5}) + "\n" for i, t in enumerate(TEXTS * 2)))
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", cand, "--baseline", base, "--data", data, "--enable", "drift", "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["task"] == "regression" and report["class_names"] == ["target"]
    assert [c["name"] for c in report["checks"]] == ["sanity", "regression", "drift"]
    assert report["data"]["num_samples"] == 8
    assert [m["output"] for m in report["models"]] == ["regression", "regression"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": TEXTS[0], "label": 1}) + "\n" + json.dumps({"text": TEXTS[1], "label": "x"}) + "\n")
    res = run_cli(capsys, "check", cand, "--baseline", base, "--data", bad, "--json", tmp_path / "bad.json")
    assert res.code == 2 and not (tmp_path / "bad.json").exists()
    assert res.err.strip() == f"error: {bad}: line 2, key 'label': target 'x' is not a number (task regression)"


def test_a_single_regression_target_can_be_named(tmp_path, capsys, in_repo_root):
    torch.manual_seed(0)
    model = tm.build_mlp(num_classes=1).eval()
    path = _save(model, tmp_path / "m.safetensors")
    data = tmp_path / "eval.npz"
    np.savez(data, x=np.ones((5, tm.IN_FEATURES), np.float32), labels=np.arange(5, dtype=np.float32))
    config = tmp_path / "gate.yaml"
    config.write_text(f"task: regression\nclass_names: [price]\nmodel:\n  factory: {FACTORY}\n  kwargs: {{num_classes: 1}}\n")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", path, "--baseline", path, "--data", data, "--config", config, "--json", out)
    assert res.code == 0, res.out + res.err
    report = json.loads(out.read_text())
    assert report["class_names"] == ["price"] and "5 samples, 1 target\n" in res.out


def test_the_python_api_takes_the_task_from_a_config_dict_and_a_dataloader():
    import gate

    torch.manual_seed(1)
    base = tm.build_mlp(num_classes=3).eval()
    cand = tm.build_mlp(num_classes=3).eval()
    cand.load_state_dict(base.state_dict())
    x = torch.randn(40, tm.IN_FEATURES, generator=torch.Generator().manual_seed(2))
    y = (torch.rand(40, 3, generator=torch.Generator().manual_seed(3)) < 0.5).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    report = gate.check(cand, base, loader, config={"task": "multi_label", "class_names": ["a", "b", "c"]},
                        enable=["drift"])
    # identical models: nothing fails; 40 samples cannot prove the multilabel thresholds met, so it warns
    assert report.verdict == "warn" and report.exit_code == 0 and report.model.task == "multi_label"
    assert [c.name for c in report.model.checks] == ["sanity", "multilabel", "drift"]
    assert [c.status for c in report.model.checks] == ["pass", "warn", "pass"]
    assert report.model.class_names == ("a", "b", "c") and report.model.data.num_samples == 40
    with pytest.raises(gate.errors.ConfigError, match="the per_class check does not support the task multi_label"):
        gate.check(cand, base, loader, config={"task": "multi_label"}, enable=["per_class"])
