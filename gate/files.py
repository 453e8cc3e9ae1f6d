"""Small file helpers shared by the checkpoint and data readers."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so memory stays flat for multi-GB checkpoints and data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: What a reader says when `link_escape` finds a link out (after the path; the target is not quoted).
LINK_OUT = ("a symbolic link leads out of its directory (the file, or a directory on its way inside the working "
            "directory); pass the file's real path (a link committed in a pull request could point at a secret)")


def link_escape(path: str | Path) -> str | None:
    """Where `path` leads when a symbolic link on its way leaves where it may lead, else None: the file itself a
    link out of its own directory, or a directory on its way, inside the working directory (the checkout a CI job
    runs in), a link to outside the working directory.

    A file from a pull request may be a committed symlink to a secret (an SSH key, /proc/self/environ), or sit in
    a committed directory link (`models -> ~/.ssh`); the readers then refuse it rather than parse it and quote its
    first bytes in an error message. Links above the working directory are the machine's own (a mounted data disk)
    and are followed."""
    p = Path(path)
    out = _directory_link_out(p)
    if out is not None:
        return out
    if not p.is_symlink():
        return None
    try:
        target = p.resolve()
    except (OSError, RuntimeError):         # a link to itself: nothing to read, the reader says so
        return None
    return None if target.is_relative_to(p.parent.resolve()) else str(target)


def _directory_link_out(path: Path) -> str | None:
    """The target of the first directory link on the way to `path` that lies inside the working directory and
    leads out of it; the way walked as the kernel walks it (a link followed before a `..` after it)."""
    cwd = Path(os.getcwd())
    parts = path.parts[:-1]
    if not parts:
        return None
    current = Path(parts[0]) if path.is_absolute() else cwd
    for part in parts[1:] if path.is_absolute() else parts:
        if part == "..":
            current = current.parent
            continue
        current = current / part
        if not current.is_symlink():
            continue
        inside = current.is_relative_to(cwd)
        try:
            target = current.resolve()
        except (OSError, RuntimeError):     # a loop or an unreadable link: the reader's own "no such file" follows
            return None
        if inside and not target.is_relative_to(cwd):
            return str(target)
        current = target
    return None
