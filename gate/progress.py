"""Progress of the one pass, on stderr: a bar with rate and ETA on a terminal, a line every ~10% or ~30 s in a CI
log (stderr not a terminal), nothing with -q. Short runs print nothing in a log: the first line waits `quiet_s`,
so a run that fails early still leaves exactly one `error:` line."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

MODES = ("auto", "bar", "log", "off")


def _eta(done: int, total: int | None, rate: float) -> str:
    if not total or rate <= 0 or done >= total:
        return ""
    seconds = int((total - done) / rate)
    return f", ETA {seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Call update(samples_done) after each batch and close() at the end (also on errors)."""

    def __init__(self, total: int | None, *, mode: str = "auto", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float = 30.0, quiet_s: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.total, self.clock = mode, total, clock
        self.every_s, self.quiet_s = every_s, quiet_s
        self.start = clock()
        self.last_draw = -1.0
        self.last_line = self.start
        self.next_tenth = 1
        self.drawn = False

    def update(self, done: int) -> None:
        if self.mode == "off":
            return
        now = self.clock()
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        if self.mode == "bar":
            if now - self.last_draw >= 0.2:
                self.last_draw = now
                self._bar(done, rate)
            return
        share = done / self.total if self.total else 0.0
        due = (self.total and done * 10 >= self.next_tenth * self.total) or now - self.last_line >= self.every_s
        if due and elapsed >= self.quiet_s:
            self.last_line = now
            while self.total and done * 10 >= self.next_tenth * self.total:
                self.next_tenth += 1
            of = f"/{self.total} ({share:.0%})" if self.total else ""
            self.stream.write(f"gate: {done}{of} samples, {rate:.1f} samples/s{_eta(done, self.total, rate)}\n")
            self.stream.flush()

    def _bar(self, done: int, rate: float) -> None:
        if self.total:
            width = 30
            filled = min(width, int(width * done / self.total))
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}"
        else:
            bar = f"{done} samples"
        self.stream.write(f"\rgate: {bar}  {rate:.1f} samples/s{_eta(done, self.total, rate)}\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.mode == "bar" and self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
