"""gate.cpu_threads: the pass's idle OpenMP workers ended before the checks compute, started again by the next
parallel region, outputs unchanged, other threads' workers untouched.

The thread counts are read in a fresh interpreter: in the test process, threads that other tests started (and pools
of threads that ended) would come and go between two counts."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r'''
import json, os, threading
import torch
from gate.cpu_threads import release_idle_workers

def threads():
    return len(os.listdir("/proc/self/task"))

def region():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4_000_000, generator=gen)
    return torch.mul(x, 3.0)            # an elementwise op this large runs on torch's intra-op (OpenMP) threads

out = {}
torch.set_num_threads(2)
alone = threads()
first = region()
out["after_region"] = threads() - alone
out["released"] = release_idle_workers()
out["after_release"] = threads() - alone
again = region()
out["after_next_region"] = threads() - alone
out["same_result"] = bool(torch.equal(first, again))
out["num_threads"] = torch.get_num_threads()
release_idle_workers()
out["second_release"] = release_idle_workers()
out["after_second_release"] = threads() - alone

started, finish = threading.Event(), threading.Event()
def elsewhere():
    region()
    started.set()
    finish.wait(30)
other = threading.Thread(target=elsewhere)
other.start()
started.wait(30)
region()
both = threads()
release_idle_workers()
out["other_thread_kept"] = both - threads()
finish.set()
other.join()

torch.set_num_threads(1)
region()
before = threads()
out["one_thread_released"] = release_idle_workers()
out["one_thread_after"] = threads() - before
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def seen() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_idle_worker_ends_and_the_next_region_starts_it_with_the_same_results(seen):
    assert seen["after_region"] == 1            # a 2-thread team: one OpenMP worker beside the main thread
    assert seen["released"] is True
    assert seen["after_release"] == 0           # it has ended
    assert seen["after_next_region"] == 1       # started again by the next parallel region
    assert seen["same_result"] is True
    assert seen["num_threads"] == 2


def test_a_second_release_with_no_workers_left_is_harmless(seen):
    assert seen["second_release"] is True
    assert seen["after_second_release"] == 0


def test_only_the_calling_threads_workers_end_not_those_of_torch_on_another_thread(seen):
    assert seen["other_thread_kept"] == 1       # this thread's one worker ended, not the other thread's


def test_one_intra_op_thread_has_no_workers_to_release(seen):
    assert seen["one_thread_released"] is False
    assert seen["one_thread_after"] == 0
