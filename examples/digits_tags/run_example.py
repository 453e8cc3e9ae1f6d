"""The multi-label example on real data, end to end: train the digit taggers (once), then gate each candidate.
Expected: the fine-tuned candidate passes (exit 0); the one trained on tags where a 7 is not prime fails, naming
the `prime` tag (exit 1). Exits non-zero otherwise.

Usage: python examples/digits_tags/run_example.py [--force-retrain]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from examples._pairs import run_examples  # noqa: E402

EXPECTED = {"candidate_good": (0, set()), "candidate_forgets_seven": (1, {"prime"})}


if __name__ == "__main__":
    raise SystemExit(run_examples(Path(__file__).resolve().parent, EXPECTED,
                                  suffix=".safetensors", check="multilabel", field="where", exact=True))
