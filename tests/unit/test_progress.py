"""Progress on stderr: a bar on a terminal, sparse lines in a CI log, nothing with -q, nothing for a short run."""
from __future__ import annotations

import io

import pytest

from gate.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(progress: Progress, clock: Clock, *, total: int, per_batch: int, seconds_per_batch: float) -> None:
    done = 0
    while done < total:
        clock.now += seconds_per_batch
        done = min(total, done + per_batch)
        progress.update(done)
    progress.close()


def test_a_ci_log_gets_a_line_every_tenth_with_rate_and_eta():
    clock, log = Clock(), io.StringIO()
    run(Progress(10_000, stream=log, clock=clock), clock, total=10_000, per_batch=100, seconds_per_batch=1.0)
    lines = log.getvalue().splitlines()
    # 100 s in all: nothing in the first 10 s, then one line per 10% (10%, 20%, ... 100%).
    assert [line.split(" samples")[0] for line in lines] == [f"gate: {n}/10000 ({n // 100}%)" for n in range(1000, 10_001, 1000)]
    assert "100.0 samples/s" in lines[0] and "ETA 1:30" in lines[0]
    assert "ETA" not in lines[-1]


def test_an_unknown_total_gets_a_line_every_30_seconds():
    clock, log = Clock(), io.StringIO()
    run(Progress(None, stream=log, clock=clock), clock, total=1000, per_batch=10, seconds_per_batch=1.0)
    lines = log.getvalue().splitlines()
    assert [line.split(" samples")[0] for line in lines] == ["gate: 300", "gate: 600", "gate: 900"]


def test_a_short_run_prints_nothing_in_a_log_so_an_early_error_stays_one_line():
    clock, log = Clock(), io.StringIO()
    run(Progress(600, stream=log, clock=clock), clock, total=600, per_batch=60, seconds_per_batch=0.5)
    assert log.getvalue() == ""


def test_a_terminal_gets_a_redrawn_bar_that_is_erased_at_the_end():
    clock, term = Clock(), Terminal()
    run(Progress(1000, stream=term, clock=clock), clock, total=1000, per_batch=100, seconds_per_batch=1.0)
    out = term.getvalue()
    assert out.count("\r") >= 10 and "\n" not in out
    assert "[###############...............] 500/1000" in out and "ETA" in out
    assert out.endswith("\r\033[K")


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_off_prints_nothing(stream):
    clock = Clock()
    run(Progress(1000, mode="off", stream=stream, clock=clock), clock, total=1000, per_batch=10, seconds_per_batch=5)
    assert stream.getvalue() == ""
