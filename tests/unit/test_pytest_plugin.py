"""The pytest plugin, run by pytest itself (pytester): a regressed model fails its test with the console report."""
from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

MODEL_TESTS = '''
import torch
from torch import nn

def models():
    torch.manual_seed(0)
    baseline = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    regressed = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    regressed.load_state_dict(baseline.state_dict())
    with torch.no_grad():
        regressed[2].bias[1] -= 50.0           # class 1 is never predicted any more
    return baseline, regressed

def batches(baseline):
    # 3,000 samples: enough for identical models to be proven within every default threshold (a clean pass)
    x = torch.randn(3000, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = baseline(x).argmax(1)            # the baseline is right by construction
    return [(x[i:i + 500], y[i:i + 500]) for i in range(0, 3000, 500)]

def test_same_weights_pass(gate_check):
    baseline, _ = models()
    report = gate_check(baseline, baseline, batches(baseline))
    assert report.verdict == "pass"

def test_regressed_weights_fail(gate_check):
    baseline, regressed = models()
    gate_check(regressed, baseline, batches(baseline))

def test_setup_error_fails_with_one_line(gate_check):
    baseline, _ = models()
    gate_check(baseline, baseline, batches(baseline), enable=["dirft"])

def test_helper_without_the_fixture():
    from gate.pytest_plugin import gate_check
    baseline, regressed = models()
    gate_check(regressed, baseline, batches(baseline), disable=["per_class", "flips"])
'''


def test_a_regression_fails_its_test_with_the_console_report(pytester: pytest.Pytester, tmp_path: Path):
    pytester.makepyfile(test_models=MODEL_TESTS)
    out = tmp_path / "gate-reports"
    result = pytester.runpytest_subprocess("-p", "gate.pytest_plugin", "--gate-report-dir", str(out), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    text = result.stdout.str()
    # the failure message is the console report: the verdict line and the table of what failed
    regressed = text[text.index("test_regressed_weights_fail"):]
    assert "verdict: FAIL" in regressed and "recall[1]" in regressed and "[per_class]" in regressed
    assert "status    check" in regressed
    assert "gate could not run (exit 2): enable: expected one of" in text and "(did you mean drift?)" in text
    assert "verdict: FAIL" in text[text.index("test_helper_without_the_fixture"):]
    assert "Traceback" not in text and "gate/api.py" not in text      # a message, not a stack
    # --gate-report-dir: one HTML and one JSON report per fixture call, named after the test
    names = sorted(p.name for p in out.iterdir())
    assert names == ["test_models.py_test_regressed_weights_fail.html", "test_models.py_test_regressed_weights_fail.json",
                     "test_models.py_test_same_weights_pass.html", "test_models.py_test_same_weights_pass.json"]
    assert json.loads((out / "test_models.py_test_regressed_weights_fail.json").read_text())["verdict"] == "fail"
    assert (out / "test_models.py_test_same_weights_pass.html").read_text().startswith("<!DOCTYPE html>")


def test_strict_fails_on_a_warning(pytester: pytest.Pytester):
    pytester.makepyfile(test_warn='''
import torch
from torch import nn

def test_warns(gate_check):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    y[:6] = (y[:6] + 1) % 3               # a few labels wrong: accuracy 0.85 straddles min 0.9 on 40 samples
    config = {"checks": {"accuracy": {"accuracy": {"min": 0.86}}}, "decision": {"inconclusive": "warn"}}
    report = gate_check(model, model, [(x, y)], config=config)
    assert report.verdict == "warn"
    gate_check(model, model, [(x, y)], config=config, strict=True)
''')
    result = pytester.runpytest_subprocess("-p", "gate.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    # the first call returned its warning report; the strict one failed the test with the console report
    # (the console report opens with the power note when the data cannot decide, then the table)
    assert "verdict: PASS with warnings: accuracy" in text and "Failed: POWER: " in text and "status    check" in text
    assert "AssertionError" not in text and "assert report.verdict" not in text


def test_the_entry_point_names_the_plugin_module():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    plugins = meta["entry-points"]["pytest11"]
    assert plugins == {"gate.pytest_plugin": "gate.pytest_plugin"}
    module = importlib.import_module(plugins["gate.pytest_plugin"])
    assert callable(module.gate_check) and hasattr(module, "pytest_addoption")


def test_loading_the_plugin_does_not_import_torch():
    """pytest loads the plugin in every session of an environment where gate is installed: it must stay light."""
    import subprocess
    import sys

    code = "import sys, gate.pytest_plugin; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
