"""dtype as shipped, end to end: float16/bfloat16 checkpoints run in their dtype (an overflowing one must not pass),
`dtype:` casts on load and says so, and every report shows each model's dtype."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from gate.report.json_report import validate_report
from tests import shipped_models as sm
from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli

FACTORY = "tests.tiny_models:build_mlp"


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("half")
    x, y = tm.make_data(600, seed=0)
    np.savez(root / "eval.npz", x=x, labels=y)
    teacher = tm.teacher(0)
    torch.save(teacher.state_dict(), root / "base.pt")
    torch.save(teacher.half().state_dict(), root / "half.pt")
    torch.save(sm.overflowing(tm.teacher(0)).half().state_dict(), root / "overflow.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tm.teacher(0).bfloat16().state_dict().items()}, str(root / "bf16.safetensors"))
    return {"root": root, "data": root / "eval.npz", "base": root / "base.pt", "half": root / "half.pt",
            "overflow": root / "overflow.pt", "bf16": root / "bf16.safetensors", "x": x, "y": y}


def _run(capsys, half, candidate: str, tmp_path: Path, *extra: object, factory: str = FACTORY):
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "md")}
    res = run_cli(capsys, "check", half[candidate], "--baseline", half["base"], "--data", half["data"],
                  "--model-factory", factory, "--json", paths["json"], "--markdown", paths["md"], *extra)
    report = json.loads(paths["json"].read_text()) if paths["json"].exists() else None
    if report is not None:
        validate_report(report)
    return res, report, (paths["md"].read_text() if paths["md"].exists() else None)


def _preds(model: torch.nn.Module, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        return model.to(dtype)(torch.from_numpy(x).to(dtype)).float().argmax(1).numpy()


def test_a_float16_state_dict_runs_in_float16(half, in_repo_root, tmp_path, capsys):
    res, report, md = _run(capsys, half, "half", tmp_path)
    assert res.code == 0, res.out + res.err
    base, cand = report["models"]
    assert (cand["dtype"], cand["checkpoint_dtype"], cand["cast"]) == ("float16", "float16", None)
    assert (base["dtype"], base["checkpoint_dtype"]) == ("float32", "float32")
    expected = accuracy_score(half["y"], _preds(tm.teacher(0), half["x"], torch.float16))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(expected)
    assert "candidate float16 (as shipped)" in res.out and "baseline float32 (as shipped)" in res.out
    assert "candidate: float16 (as shipped)" in md


def test_a_float16_candidate_whose_logits_overflow_does_not_pass(half, in_repo_root, tmp_path, capsys):
    with torch.no_grad():
        z16 = sm.overflowing(tm.teacher(0)).half()(torch.from_numpy(half["x"]).half())
        z32 = sm.overflowing(tm.teacher(0))(torch.from_numpy(half["x"]))
    assert not torch.isfinite(z16).all() and torch.isfinite(z32).all()   # the oracle: only float16 overflows
    assert (z32.argmax(1) == tm.teacher(0)(torch.from_numpy(half["x"])).argmax(1)).all()
    res, report, _ = _run(capsys, half, "overflow", tmp_path)
    assert res.code == 1, res.out + res.err
    sanity = next(c for c in report["checks"] if c["name"] == "sanity")
    finding = next(f for f in sanity["findings"] if f["metric"] == "non_finite_outputs[candidate]")
    assert finding["status"] == "fail" and finding["value"] == float((~torch.isfinite(z16)).sum())
    assert report["models"][1]["dtype"] == "float16"


def test_dtype_float32_casts_on_load_and_says_so(half, in_repo_root, tmp_path, capsys):
    config = tmp_path / "gate.yaml"
    config.write_text("model:\n  candidate: {dtype: float32}\n")
    res, report, md = _run(capsys, half, "overflow", tmp_path, "--config", config)
    assert res.code == 0, res.out + res.err                  # asked for: the same decisions as the teacher in fp32
    cand = report["models"][1]
    assert (cand["dtype"], cand["checkpoint_dtype"]) == ("float32", "float16")
    assert cand["cast"] == "cast on load from float16 to float32 (dtype: float32)"
    assert "note: candidate: cast on load from float16 to float32" in res.out
    assert "cast on load from float16 to float32" in md
    assert report["metrics"]["comparison"]["agreement"] == 1.0


def test_a_bfloat16_safetensors_file_runs_in_bfloat16(half, in_repo_root, tmp_path, capsys):
    res, report, _ = _run(capsys, half, "bf16", tmp_path)
    assert res.code in (0, 1), res.err
    assert report["models"][1]["dtype"] == "bfloat16"
    expected = accuracy_score(half["y"], _preds(tm.teacher(0), half["x"], torch.bfloat16))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize(("candidate", "dtype"), [("half", "float16"), ("base", "float32")])
def test_a_factory_that_returns_a_half_module_works(candidate, dtype, half, in_repo_root, tmp_path, capsys):
    """The module takes the checkpoint's dtype: float16 weights run in float16, float32 weights in float32."""
    res, report, _ = _run(capsys, half, candidate, tmp_path, factory="tests.shipped_models:build_half")
    assert res.code == 0, res.out + res.err
    assert report["models"][1]["dtype"] == dtype
    assert report["models"][0]["dtype"] == "float32"          # base.pt holds float32 weights


def test_a_float16_convolution_runs_in_float16(tmp_path, in_repo_root, capsys):
    torch.manual_seed(0)
    net = sm.build_cnn().eval()
    x = np.random.default_rng(0).standard_normal((120, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "eval.npz", x=x, labels=y)
    torch.save(net.state_dict(), tmp_path / "base.pt")
    torch.save(net.half().state_dict(), tmp_path / "half.pt")
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", tmp_path / "half.pt", "--baseline", tmp_path / "base.pt", "--data",
                  tmp_path / "eval.npz", "--model-factory", "tests.shipped_models:build_cnn", "--json", out)
    report = json.loads(out.read_text())
    assert report["models"][1]["dtype"] == "float16", res.err
    expected = accuracy_score(y, _preds(net, x, torch.float16))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(expected)


def test_float16_torchscript_and_hugging_face_models_run_as_shipped(tmp_path, in_repo_root, capsys):
    import warnings

    from tests.unit.model_fixtures import TEXTS, build_hf_dir

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|save)` is deprecated",
                                category=DeprecationWarning)
        torch.jit.save(torch.jit.script(tm.teacher(0).half()), str(tmp_path / "half.ts"))
    x, y = tm.make_data(100)
    np.savez(tmp_path / "eval.npz", x=x, labels=y)
    torch.save(tm.teacher(0).state_dict(), tmp_path / "base.pt")
    out = tmp_path / "ts.json"
    res = run_cli(capsys, "check", tmp_path / "half.ts", "--baseline", tmp_path / "base.pt", "--data",
                  tmp_path / "eval.npz", "--model-factory", FACTORY, "--json", out, "--trust-checkpoint", "candidate")
    assert res.code == 0, res.out + res.err
    assert json.loads(out.read_text())["models"][1]["dtype"] == "float16"

    labels = {0: "negative", 1: "positive"}
    model, _ = build_hf_dir(tmp_path / "base", id2label=labels, seed=0)
    build_hf_dir(tmp_path / "cand", id2label=labels, seed=0)
    model.half().save_pretrained(str(tmp_path / "cand"))
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": labels[i % 2]}) + "\n" for i, t in enumerate(TEXTS * 5)))
    out = tmp_path / "hf.json"
    res = run_cli(capsys, "check", tmp_path / "cand", "--baseline", tmp_path / "base", "--data", data, "--json", out)
    report = json.loads(out.read_text())
    assert [m["dtype"] for m in report["models"]] == ["float32", "float16"], res.err


def test_the_onnx_check_exports_a_float16_candidate_in_float16_and_says_what_its_tolerance_means(
    half, in_repo_root, tmp_path, capsys
):
    res, report, _ = _run(capsys, half, "half", tmp_path, "--enable", "onnx")
    assert res.code in (0, 1), res.err
    onnx = next(c for c in report["checks"] if c["name"] == "onnx")
    measured = next(f for f in onnx["findings"] if f["metric"] == "logits")   # exported, run and compared
    assert measured["value"] < 1e-2, measured
    assert any("runs in float16, whose rounding step near 1.0 is 0.000977" in n for n in onnx["notes"]), onnx


@pytest.mark.parametrize("data_dtype", [np.float16, np.float64])
def test_a_float32_model_gets_its_inputs_in_float32_from_data_of_another_dtype(half, data_dtype, in_repo_root,
                                                                                 tmp_path, capsys):
    """Floating inputs are cast to each model's dtype, float32 included: a float16 (or float64) data file for a
    float32 baseline and a float16 candidate. The oracle: torch on the same values, each model in its dtype."""
    x = half["x"].astype(data_dtype)
    data = tmp_path / "eval.npz"
    np.savez(data, x=x, labels=half["y"])
    out = tmp_path / "r.json"
    res = run_cli(capsys, "check", half["half"], "--baseline", half["base"], "--data", data,
                  "--model-factory", FACTORY, "--json", out)
    assert res.code in (0, 1), res.err
    report = json.loads(out.read_text())
    inputs = x.astype(np.float32) if data_dtype == np.float64 else x        # the reader narrows float64 itself
    base = _preds(tm.teacher(0), inputs.astype(np.float32), torch.float32)
    cand = _preds(tm.teacher(0), inputs, torch.float16)
    assert report["metrics"]["baseline"]["accuracy"] == pytest.approx(accuracy_score(half["y"], base))
    assert report["metrics"]["candidate"]["accuracy"] == pytest.approx(accuracy_score(half["y"], cand))
    assert [m["dtype"] for m in report["models"]] == ["float32", "float16"]
