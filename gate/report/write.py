"""Report writing: every report is rendered first, then all are written as temp files beside their targets and
renamed into place together. A crash or a bad path leaves no half-written report, and no report of this run at all.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gate.errors import ConfigError

STREAMS = {"/dev/stdout": lambda: sys.stdout, "/dev/stderr": lambda: sys.stderr}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_special(path: Path) -> bool:
    """Anything under /dev or /proc (/dev/stdout, whatever it is redirected to), or a device, FIFO or socket at the
    path itself: written in place, never replaced by a rename and never removed. A link there is not followed."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return _is_special_mode(mode)


def _is_special_mode(mode: int) -> bool:
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def _entry_mode(path: Path, *, follow: bool = False) -> int | None:
    """The mode of what the path names (a link itself unless `follow`); None when nothing is there (no such entry,
    or a file where a folder on the way should be). OSError when the path cannot be looked at: a name too long, a
    link loop on the way, a folder that may not be searched."""
    try:
        return (os.stat(path) if follow else os.lstat(path)).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _prefix(option: str | None) -> str:
    return f"{option}: " if option else ""


def write_reports(texts: dict[str, str], *, options: Mapping[str, str] | None = None) -> None:
    """Write {path: text}: all temp files first, then the renames; on any error nothing new is left behind.

    The report replaces what the path names, a symbolic link included: the link itself, never the file it points
    to, as remove_stale removes the link and not its target (a link committed into a checkout cannot make the gate
    write or remove a file elsewhere). Folders on the way are followed and made. A path that cannot be written (a
    full disk, /dev/full, a folder made read-only during the run, a name too long) is a ConfigError
    `OPTION: cannot write PATH: reason` (`options` maps a path to the option that named it), after this run's temp
    files and renamed reports are removed."""
    staged: list[tuple[str, str, Path]] = []     # (path as given, temp file or text, target)
    renamed: list[Path] = []
    current = ""
    try:
        for raw, text in texts.items():
            current = raw
            if not raw:
                raise ConfigError(f"{_prefix((options or {}).get(raw))}an empty path")
            target = Path(raw)
            if _is_special(target):  # /dev/stdout on a pipe, a FIFO: written in place, as given
                staged.append((raw, text, target))
                continue
            mode = _entry_mode(target)
            if mode is not None and stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "it is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            # the temp file's name stays short: a report name of up to 255 bytes must fit
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=target.parent)
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
                os.replace(source, target)      # a link there is replaced, not written through
                renamed.append(target)
    except BaseException as err:
        for _, source, target in staged:
            if not _is_special(target):
                Path(source).unlink(missing_ok=True)
        for target in renamed:  # all of this run's reports or none
            target.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ConfigError(f"{_prefix((options or {}).get(current))}cannot write {current}: "
                              f"{err.strerror or err}") from err
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """One report, atomically."""
    write_reports({str(path): text})


def check_writable(path: str | Path, *, option: str | None = None) -> None:
    """Fail before the (long) run if a report could not be written there: `OPTION: cannot write PATH: why`."""
    target = Path(path)
    if str(target).startswith(("/dev/", "/proc/")):
        return
    where = f"{_prefix(option)}cannot write {target}"
    if not str(path):
        raise ConfigError(f"{_prefix(option)}an empty path")
    try:
        mode = _entry_mode(target)
        if mode is not None and stat.S_ISDIR(mode):
            raise ConfigError(f"{where}: it is a directory")
        if mode is not None and _is_special_mode(mode):
            return
        probe = target.parent if str(target.parent) else Path(".")
        while (probe_mode := _entry_mode(probe, follow=True)) is None and probe.parent != probe:
            probe = probe.parent
    except OSError as err:
        raise ConfigError(f"{where}: {err.strerror or err}") from err
    if probe_mode is None or not stat.S_ISDIR(probe_mode) or not os.access(probe, os.W_OK):
        raise ConfigError(f"{where}: {probe} is not a writable directory")


def remove_stale(path: str | Path, *, option: str | None = None) -> None:
    """An earlier run's report at this path would be read as this run's if the gate cannot run: remove it.

    A file or a symbolic link named there is removed: a link itself, never the file it points to (the path then
    holds no report, and nothing outside it is touched). A folder (check_writable refuses it), a device, a FIFO or a
    /dev path (a shell redirection) is left alone. A path that cannot be looked at or removed is a ConfigError
    naming the option and the path.
    """
    target = Path(path)
    if not str(path) or str(target).startswith(("/dev/", "/proc/")):
        return
    try:
        mode = _entry_mode(target)
    except OSError as err:     # a name too long, a link loop on the way, a folder it may not search
        raise ConfigError(f"{_prefix(option)}cannot write {path}: {err.strerror or err}") from err
    if mode is None or stat.S_ISDIR(mode) or _is_special_mode(mode):
        return
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(f"{_prefix(option)}cannot remove the report of an earlier run at {path}: "
                          f"{err.strerror or err}") from err
