"""Whole-process cost of `gate check` on the digits example against a bare script doing the same model work.

    python benchmarks/startup.py [--repeats 7]

Both run as fresh processes, interleaved (gate, bare, gate, bare, ...), and are charged their CPU time (user + system,
from the kernel's rusage of the child), so a busy machine inflates neither side more than the other. The bare script
imports torch, loads both checkpoints into the factory's module, reads the eval set and runs both forward passes;
`gate check` does that plus everything the default checks need. With MLflow installed, its evaluate() x2 +
validate_evaluation_results() on the same models and data is measured the same way.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT / "examples" / "digits" / "artifacts"

BARE = r"""
import sys
import numpy as np, torch
from safetensors.torch import load_file
sys.path.insert(0, sys.argv[1])
from examples.digits.model import build_model
art = sys.argv[2]
models = []
for name in ("candidate_good", "baseline"):
    m = build_model(width=16)
    m.load_state_dict(load_file(f"{art}/{name}.safetensors"))
    models.append(m.eval())
data = np.load(f"{art}/eval.npz")
x, y = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
with torch.inference_mode():
    for start in range(0, len(y), 64):
        for m in models:
            m(x[start:start + 64]).argmax(1)
"""

# MLflow's way to gate the same two models on the same data: evaluate() each (the default classifier evaluator, without
# the SHAP explainer), then validate_evaluation_results() on an accuracy threshold. Run only where mlflow is installed.
# Its tracking store is the file store, the cheapest (MLflow 3 refuses it unless MLFLOW_ALLOW_FILE_STORE is set; the
# sqlite store it asks for instead also builds its schema on every fresh runner), so MLflow's figure is a lower bound.
# Exit 0 whether the candidate passed or failed the threshold (it prints which); anything else is a broken run.
MLFLOW = r"""
import os, sys, tempfile
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
import numpy as np, pandas as pd, torch
import mlflow
from mlflow.models import MetricThreshold
from safetensors.torch import load_file
sys.path.insert(0, sys.argv[1])
from examples.digits.model import build_model
art = sys.argv[2]
models = {}
for name in ("candidate_good", "baseline"):
    m = build_model(width=16)
    m.load_state_dict(load_file(f"{art}/{name}.safetensors"))
    models[name] = m.eval()
data = np.load(f"{art}/eval.npz")
images = data["images"]
frame = pd.DataFrame(images.reshape(len(images), -1))
frame["label"] = data["labels"]

def predictor(model):
    def predict(df):
        x = torch.from_numpy(df.to_numpy(dtype=images.dtype).reshape((len(df),) + images.shape[1:]))
        with torch.inference_mode():
            return model(x).argmax(1).numpy()
    return predict

mlflow.set_tracking_uri("file://" + tempfile.mkdtemp())
mlflow.set_experiment("gate-startup")                 # a fresh file store has no default experiment
results = {}
for name, model in models.items():
    with mlflow.start_run():
        results[name] = mlflow.models.evaluate(
            predictor(model), frame, targets="label", model_type="classifier", evaluators=["default"],
            evaluator_config={"default": {"log_model_explainability": False}})
try:
    mlflow.validate_evaluation_results(
        validation_thresholds={"accuracy_score": MetricThreshold(threshold=0.9, greater_is_better=True)},
        candidate_result=results["candidate_good"], baseline_result=results["baseline"])
    print("validated: the candidate passed")
except mlflow.models.evaluation.validation.ModelValidationFailedException:
    print("validated: the candidate failed")
"""

CONFIG = """
version: 1
class_names: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
model: {factory: "examples.digits.model:build_model", kwargs: {width: 16}}
data: {inputs: [images], labels: labels, batch_size: 64}
"""


def child_env() -> dict[str, str]:
    """The environment of the timed processes: bytecode cached as an installed package has it (pip compiles .pyc
    files on install). Any value of PYTHONDONTWRITEBYTECODE, "0" included, stops Python writing them, and the gate's
    own modules would then be compiled from source in every run while torch's come precompiled."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cpu_seconds(cmd: list[str], *, ok: tuple[int, ...] = (0, 1)) -> float:
    """CPU seconds of one run of `cmd`; SystemExit with its stderr's tail if it exits with a code not in `ok`
    (gate: 0 pass, 1 fail; the bare and MLflow scripts: 0 only, since a Python traceback also exits 1)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=child_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in ok:
        raise SystemExit(f"{cmd[:3]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if not (ART / "baseline.safetensors").exists():
        raise SystemExit("run examples/digits/run_example.py first (it trains the checkpoints)")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gate.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        gate = [sys.executable, "-m", "gate", "check", str(ART / "candidate_good.safetensors"),
                "--baseline", str(ART / "baseline.safetensors"), "--data", str(ART / "eval.npz"),
                "--config", str(config), "-q"]
        bare = [sys.executable, "-c", BARE, str(ROOT), str(ART)]
        cpu_seconds(gate), cpu_seconds(bare, ok=(0,))          # warm the page cache and .pyc files
        times: dict[str, list[float]] = {"gate": [], "bare": []}
        for _ in range(args.repeats):
            times["gate"].append(cpu_seconds(gate))
            times["bare"].append(cpu_seconds(bare, ok=(0,)))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"whole process, digits example, default checks, CPU seconds (median of {args.repeats} interleaved pairs)")
    print(f"  bare script (import torch, load both, forward both): {med['bare']:.2f} s")
    print(f"  gate check:                                           {med['gate']:.2f} s")
    ratios = [g / b for g, b in zip(times["gate"], times["bare"])]
    print(f"  ratio gate / bare: {statistics.median(ratios):.2f}x (median of per-pair ratios; goal <= 1.25x)")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("  MLflow: not installed here, not measured (pip install mlflow to add its evaluate + validate)")
        return
    flow = [sys.executable, "-c", MLFLOW, str(ROOT), str(ART)]
    try:
        cpu_seconds(flow, ok=(0,))                       # warm-up, as above
        pairs = [(cpu_seconds(flow, ok=(0,)), cpu_seconds(bare, ok=(0,))) for _ in range(args.repeats)]
    except SystemExit as failed:
        print(f"  MLflow {mlflow.__version__}: its run failed, not measured: {failed}")
        return
    flow_median = statistics.median(p[0] for p in pairs)
    print(f"  MLflow {mlflow.__version__} evaluate x2 + validate_evaluation_results: "
          f"{flow_median:.2f} s, ratio to bare {statistics.median(f / b for f, b in pairs):.2f}x (median of "
          f"per-pair ratios); gate / MLflow {med['gate'] / flow_median:.2f}x (medians)")


if __name__ == "__main__":
    main()
