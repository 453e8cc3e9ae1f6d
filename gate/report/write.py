"""Atomic report writing: a temp file in the target directory, then rename. A crash leaves no half-written report."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gate.errors import ConfigError


def write_atomic(path: str | Path, text: str) -> None:
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise ConfigError(f"{target}: cannot write report: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> None:
    """Fail before the (long) run if a report could not be written there."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target}: report path is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{target}: cannot write report: directory {probe} is not writable")
