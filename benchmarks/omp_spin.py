"""How long torch's OpenMP workers keep a core busy after a parallel region, on this machine.

After one conv2d on torch's threads, the main thread sleeps; the process's CPU time during the sleep is what the idle
workers burned spinning (libgomp spins GOMP_SPINCOUNT times before it sleeps). Printed beside the same sleep with no
region before it, and for each sleep length, so the spin's length can be read off. It is why a second thread started
right after the gate's pass (the bootstrap's, gate.checks.classification.DrawnAhead) shares its core.

    python benchmarks/omp_spin.py              # torch's default threads
    GOMP_SPINCOUNT=10000 python benchmarks/omp_spin.py
"""
from __future__ import annotations

import time

import torch


def burned(sleep_s: float, *, after_region: bool) -> float:
    x, w = torch.randn(64, 16, 16, 16), torch.randn(16, 16, 3, 3)
    if after_region:
        torch.conv2d(x, w)
    c0 = time.process_time()
    time.sleep(sleep_s)
    return time.process_time() - c0


def main() -> None:
    x, w = torch.randn(64, 16, 16, 16), torch.randn(16, 16, 3, 3)
    for _ in range(20):                 # the thread pool started and warm
        torch.conv2d(x, w)
    time.sleep(0.5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; process CPU ms burned while the main thread "
          "sleeps (median of 5)")
    print(f"{'sleep ms':>9} {'after a conv2d':>15} {'no region before':>17}")
    for sleep_s in (0.001, 0.005, 0.02, 0.05, 0.2):
        after = sorted(burned(sleep_s, after_region=True) for _ in range(5))[2]
        time.sleep(0.3)
        before = sorted(burned(sleep_s, after_region=False) for _ in range(5))[2]
        print(f"{sleep_s * 1e3:9.0f} {after * 1e3:15.2f} {before * 1e3:17.2f}")


if __name__ == "__main__":
    main()
