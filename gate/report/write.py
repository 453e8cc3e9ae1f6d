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
    """Write {path: text}: all temp files first, then the renames; on any error nothing new is left behind.

    A path that cannot be written (a full disk, /dev/full, a folder made read-only during the run) is a ConfigError
    `cannot write PATH: reason`, after this run's temp files and renamed reports are removed."""
    staged: list[tuple[str, str, Path]] = []     # (path as given, temp file or text, target)
    renamed: list[Path] = []
    current = ""
    try:
        for raw, text in texts.items():
            current = raw
            if _is_special(Path(raw)):  # /dev/stdout on a pipe, a FIFO: written in place, as given
                staged.append((raw, text, Path(raw)))
                continue
            target = _resolved(raw)  # through symlinks: the link stays, its target gets the report
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((raw, tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
        for raw, source, target in staged:
            current = raw
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
    except BaseException as err:
        for _, source, target in staged:
            if not _is_special(target):
                Path(source).unlink(missing_ok=True)
        for target in renamed:  # all of this run's reports or none
            target.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ConfigError(f"cannot write {current}: {err.strerror or err}") from err
        raise


def _resolved(raw: str) -> Path:
    try:
        return Path(raw).resolve()
    except RuntimeError as err:     # a symlink loop (Python < 3.13 raises RuntimeError for it)
        raise OSError(f"{err}") from err


def write_atomic(path: str | Path, text: str) -> None:
    """One report, atomically."""
    write_reports({str(path): text})


def check_writable(path: str | Path) -> None:
    """Fail before the (long) run if a report could not be written there."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"cannot write {target}: it is a directory")
    if _is_special(target):
        return
    parent = target.parent if str(target.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"cannot write {target}: {probe} is not a writable directory")


def remove_stale(path: str | Path) -> None:
    """An earlier run's report at this path would be read as this run's if the gate cannot run: remove it.

    Only a plain file named directly: a symlink, a device or a /dev path (a shell redirection) is left alone.
    """
    target = Path(path)
    if _is_special(target) or target.is_symlink() or not target.is_file():
        return
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(f"{path}: cannot remove the report of an earlier run there: {err.strerror or err}") from err
