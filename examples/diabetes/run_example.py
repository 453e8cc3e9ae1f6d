"""The regression example on real data, end to end: train the diabetes regressors (once), then gate each
candidate. Expected: the candidate retrained from another seed passes (exit 0); the one with noise in its weights
fails on MAE and RMSE (exit 1). Exits non-zero otherwise.

Usage: python examples/diabetes/run_example.py [--force-retrain]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from examples._pairs import run_examples  # noqa: E402

EXPECTED = {"candidate_good": (0, set()), "candidate_noisy": (1, {"mae", "rmse"})}


if __name__ == "__main__":
    raise SystemExit(run_examples(Path(__file__).resolve().parent, EXPECTED,
                                  suffix=".pt", check="regression"))
