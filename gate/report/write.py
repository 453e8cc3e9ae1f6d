"""Report writing: every report is rendered first, then all are written as temp files beside their targets and
renamed into place together. A crash or a bad path leaves no half-written report, and no report of this run at all.
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from gate.errors import ConfigError


STREAMS = {"/dev/stdout": lambda: sys.stdout, "/dev/stderr": lambda: sys.stderr}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_special(path: Path) -> bool:
    """A device, FIFO or socket, or anything under /dev or /proc (/dev/stdout, whatever it is redirected to):
    written in place, never replaced by a rename and never removed."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def write_reports(texts: dict[str, str]) -> None:
    """Write {path: text}: all temp files first, then the renames; on any error nothing new is left behind."""
    staged: list[tuple[str, Path]] = []
    renamed: list[Path] = []
    try:
        for raw, text in texts.items():
            if _is_special(Path(raw)):  # /dev/stdout on a pipe, a FIFO: written in place, as given
                staged.append((text, Path(raw)))
                continue
            target = Path(raw).resolve()  # through symlinks: the link stays, its target gets the report
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as err:
                raise ConfigError(f"{raw}: cannot write report: {err.strerror or err}") from err
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            staged.append((tmp, target))
        for source, target in staged:
            if str(target) in STREAMS:  # through Python's own stream, so it does not clash with the console
                stream = STREAMS[str(target)]()
                stream.write(source)
                stream.flush()
            elif _is_special(target):
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(source)
            else:
                os.replace(source, target)
                renamed.append(target)
    except BaseException:
        for source, target in staged:
            if not _is_special(target):
                Path(source).unlink(missing_ok=True)
        for target in renamed:  # all of this run's reports or none
            target.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """One report, atomically."""
    write_reports({str(path): text})


def check_writable(path: str | Path) -> None:
    """Fail before the (long) run if a report could not be written there."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target}: report path is a directory")
    if _is_special(target):
        return
    parent = target.parent if str(target.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"{target}: cannot write report: {probe} is not a writable directory")


def remove_stale(path: str | Path) -> None:
    """An earlier run's report at this path would be read as this run's if the gate cannot run: remove it.

    Only a plain file named directly: a symlink, a device or a /dev path (a shell redirection) is left alone.
    """
    target = Path(path)
    if not _is_special(target) and target.is_file() and not target.is_symlink():
        target.unlink()
