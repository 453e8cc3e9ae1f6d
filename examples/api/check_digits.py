"""The Python API on the digits example, cell by cell as in a notebook (each `# %%` is a cell in VS Code/Jupyter).

Run `python examples/digits/run_example.py` once first (it trains the checkpoints), then:

    python examples/api/check_digits.py [OUT_DIR]          # default examples/api/out

Exits 0 when the gate tells the two candidates apart (the good one passes, the regressed one fails), like the
CLI example does.
"""
# %% Imports: gate.check is the whole API; the rest builds the inputs.
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))           # so examples.digits.model:build_model imports, as it does from the CLI

import gate  # noqa: E402
from examples.digits.model import build_model  # noqa: E402

ARTIFACTS = ROOT / "examples" / "digits" / "artifacts"
CONFIG = ROOT / "examples" / "digits" / "gate.yaml"


def main(out: Path) -> int:
    if not (ARTIFACTS / "candidate_regressed.safetensors").exists():
        print(f"no checkpoints in {ARTIFACTS}: run python examples/digits/run_example.py first", file=sys.stderr)
        return 2

    # %% The data, as a training script already has it: a DataLoader over the held-out split.
    with np.load(ARTIFACTS / "eval.npz") as arrays:
        images, labels = torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"])
    loader = DataLoader(TensorDataset(images, labels), batch_size=64)

    # %% A candidate straight from the checkpoint file, against the production baseline file, with gate.yaml.
    good = gate.check(ARTIFACTS / "candidate_good.safetensors", ARTIFACTS / "baseline.safetensors", loader,
                      config=CONFIG)
    print(repr(good))                   # <gate.Report PASS with warnings: accuracy, per_class> (540 samples decide less)

    # %% The model you just trained, in memory: no checkpoint to write, no trust to give (it is your own object).
    candidate = build_model()
    candidate.load_state_dict(load_file(str(ARTIFACTS / "candidate_regressed.safetensors")))
    report = gate.check(candidate, ARTIFACTS / "baseline.safetensors", loader, config=CONFIG,
                        enable=["drift"], seed=0)

    # %% What failed, and by how much: every failing finding with its reason.
    print(report.verdict, report.exit_code)
    for failure in report.failures:
        print(f"  {failure.check:<10} {failure.label:<24} {failure.reason}")
    print(report.checks["drift"].details["first_drifting_layer"])    # where the candidate starts to differ

    # %% The reports, written together (atomically): open the HTML in a browser.
    out.mkdir(parents=True, exist_ok=True)
    report.write(html=out / "regressed.html", json=out / "regressed.json", markdown=out / "regressed.md")
    print(f"reports in {out}")

    # %% The console report, as `gate check` prints it.
    print(report)

    # %% A setup problem is a GateError with the message the CLI prints after `error: `.
    try:
        gate.check(candidate, ARTIFACTS / "baseline.safetensors", loader, config=CONFIG, enable=["dirft"])
    except gate.GateError as err:
        print(f"error: {err}")

    return 0 if good.passed and report.verdict == "fail" else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "out"))
