"""gate: a model-regression gate for PyTorch checkpoints.

    import gate
    report = gate.check(candidate_model, "prod.safetensors", val_loader, config="gate.yaml")

`check`, `Report` and `Failure` live in gate.api and are imported on first use, so `import gate` (and
`gate --help`) stays free of torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gate.errors import CheckpointError, ConfigError, DataError, GateError, MissingExtraError, ModelError

__version__ = "0.2.0"
REPORT_SCHEMA_VERSION = "1.5"

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "Failure", "GateError", "MissingExtraError", "ModelError",
    "Report", "check",
]

if TYPE_CHECKING:
    from gate.api import Failure, Report, check

_API = ("check", "Report", "Failure")


def __getattr__(name: str) -> Any:
    if name in _API:
        from gate import api

        return getattr(api, name)
    raise AttributeError(f"module 'gate' has no attribute {name!r}")
