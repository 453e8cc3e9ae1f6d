"""Small file helpers shared by the checkpoint and data readers."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so memory stays flat for multi-GB checkpoints and data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def link_escape(path: str | Path) -> str | None:
    """Where `path` leads when it is a symbolic link out of its own directory, else None.

    A file from a pull request may be a committed symlink to a secret (an SSH key, /proc/self/environ); the readers
    then refuse it rather than parse it and quote its first bytes in an error message."""
    p = Path(path)
    if not p.is_symlink():
        return None
    target = p.resolve()
    return None if target.is_relative_to(p.parent.resolve()) else str(target)
