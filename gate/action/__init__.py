"""The GitHub Action around `gate check`: INPUT_* env vars in; step summary, outputs, annotations, PR comment out.

`python -m gate.action.entrypoint` is the container's entrypoint. Nothing here imports torch: the gate runs in a
subprocess of the same interpreter, so its exit code (0 pass, 1 failed, 2 could not run) passes through unchanged.
"""
from __future__ import annotations
