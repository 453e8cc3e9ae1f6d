"""The score-metrics example on real data, end to end: train the breast-cancer scorers (once), then gate each
candidate. Expected: the fine-tuned candidate passes (exit 0); the overconfident one (every decision unchanged)
fails on log loss; the scrambled one (every decision unchanged) fails on ROC-AUC. Exits non-zero otherwise.

Usage: python examples/breast_cancer/run_example.py [--force-retrain]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from examples._pairs import run_examples  # noqa: E402

EXPECTED = {"candidate_good": (0, set()), "candidate_overconfident": (1, {"log_loss"}),
            "candidate_scrambled": (1, {"roc_auc"})}


if __name__ == "__main__":
    raise SystemExit(run_examples(Path(__file__).resolve().parent, EXPECTED,
                                  suffix=".pt", check="scores"))
