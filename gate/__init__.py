"""gate: a model-regression gate for PyTorch checkpoints."""
from __future__ import annotations

__version__ = "0.1.0"
REPORT_SCHEMA_VERSION = "1.2"
