"""The bound on what a zip archive from a pull request may inflate to, shared by the checkpoint sniffer and the data
readers: checked on the zip directory before any member is inflated.

The directory's sizes are declarations, not facts: every reader that inflates a member after this check reads it
through Python's zipfile (which stops at the declared size and then fails the member's CRC-32) or torch's miniz
(which inflates into a buffer of the declared size), so a member that inflates beyond what it declares is an error,
never more memory.
"""
from __future__ import annotations

import zipfile

MAX_INFLATION = 64          # deflate rarely beats 10x on weights or features; beyond 64x is a bomb or sparse data


def inflation_refusal(archive: zipfile.ZipFile, *, size: int, allowance: int) -> str | None:
    """Why the archive may not be inflated: its members declare more than MAX_INFLATION x the file's `size` bytes
    plus `allowance`; None when they do not. The sentence names the total and the largest member."""
    members = archive.infolist()
    declared = sum(info.file_size for info in members)
    if declared <= MAX_INFLATION * size + allowance:
        return None
    largest = max(members, key=lambda info: info.file_size)
    return (f"the zip archive's members declare {declared} bytes inflated from a {size}-byte file (more than "
            f"{MAX_INFLATION}x its size plus {allowance >> 20} MiB; the largest, {largest.filename!r}, "
            f"{largest.file_size} bytes): refusing to inflate it")
