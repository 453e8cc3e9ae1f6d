"""User-facing errors: every one becomes a single `error: ...` line and exit code 2."""
from __future__ import annotations


class GateError(Exception):
    """The gate could not run. The message says what was expected, what was found, and where."""

    exit_code = 2


class ConfigError(GateError):
    """Bad gate.yaml / CLI option: unknown key, wrong type, impossible value."""


class CheckpointError(GateError):
    """A checkpoint is missing, truncated, corrupt, unsafe, or of an unknown format."""


class DataError(GateError):
    """Evaluation data is missing, empty, malformed, or does not fit the models."""


class ModelError(GateError):
    """A model cannot be run on the data (forward fails, outputs unusable, classes mismatch)."""


class MissingExtraError(GateError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'pytorch-gate[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, *, extra: str, purpose: str):
    """Import an optional dependency or raise MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(module, extra, purpose) from err
