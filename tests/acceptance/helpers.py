"""Drive the real CLI in-process (fast) and capture exit code, stdout and stderr."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from gate.cli import main


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> Outcome:
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(code=int(stop.value.code or 0), out=captured.out, err=captured.err)
