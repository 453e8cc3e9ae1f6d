"""Handing the cores back after the pass: torch's idle OpenMP workers put to sleep.

After every parallel region (a conv, a matmul on torch's intra-op threads) libgomp's workers spin on their barrier
before they sleep: about 8.5 ms of a core each on this project's 2-core machine (benchmarks/omp_spin.py). The checks'
compute() follows the last forward pass at once, single-threaded numpy on the main thread with the paired bootstrap
drawn on a second thread (gate.checks.classification.DrawnAhead), so for those milliseconds one of the two shares
its core with a worker that does nothing. OpenMP 5.0's `omp_pause_resource_all(omp_pause_soft)` ends them now: in
GNU libgomp (`gomp_pause_host`) the calling thread's own pool of workers, and nothing of any other thread's, so a
caller with torch running on other threads (the Python API inside someone's process) touches only its own. The next
parallel region starts them again (the latency check's warm-up rounds absorb that).

Only libgomp, the runtime torch's Linux wheels bundle, found among the libraries this process loaded (read from
/proc/self/maps): LLVM's and Intel's runtimes pause every thread of the process, which is not the caller's to do.
Anywhere else, or when torch runs one intra-op thread, nothing is done.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from functools import lru_cache

#: OpenMP's omp_pause_soft: the runtime's threads are released, its state kept.
_PAUSE_SOFT = 1
_RUNTIMES = ("libgomp",)


@lru_cache(maxsize=1)
def _pause() -> Callable[[int], int] | None:
    """omp_pause_resource_all of the libgomp loaded in this process, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = {line.rsplit(None, 1)[-1] for line in fh if ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if not os.path.basename(path).startswith(_RUNTIMES):
            continue
        try:
            fn = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):       # not loadable again, or an OpenMP older than 5.0
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    return None


def release_idle_workers() -> bool:
    """Put the calling thread's idle OpenMP workers to sleep now (call it outside any parallel region: between the
    pass and the checks). Returns whether a runtime took the call. A process that has not imported torch (`gate
    merge`) has no workers of its own and does not import it here."""
    torch = sys.modules.get("torch")
    if torch is None or torch.get_num_threads() < 2:
        return False
    pause = _pause()
    return pause is not None and pause(_PAUSE_SOFT) == 0
