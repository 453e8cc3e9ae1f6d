"""A-vs-A latency beside CPU-bound processes: how often the latency check fails, is inconclusive, or passes.

The same MLP is timed against itself (the latency check's own code path, default pinned threads) on a quiet machine
and then beside one busy-loop process per available core, and once more under load with contention detection off
(`max_cpu_loss: 1.0`) to show what it guards against. Prints the findings per status and the timing thread's lost
fraction (1 - CPU / wall) that the check measured.

    python benchmarks/latency_contention.py [--runs 10] [--budget 0.4]
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate.config import build_config  # noqa: E402
from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.latency import LatencyCheck  # noqa: E402
from gate.models.base import LoadedModel  # noqa: E402

BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def loaded(role: str, module: torch.nn.Module) -> LoadedModel:
    return LoadedModel(role=role, path=f"{role}.pt", format="state_dict", module=module, sha256=None, size_bytes=None,
                       parameters=None, class_names=None, tokenizer=None, input_names=None, is_eager=True)


def a_vs_a(model: torch.nn.Module, *, runs: int, budget: float, **latency) -> tuple[collections.Counter, list[float]]:
    statuses: collections.Counter = collections.Counter()
    lost: list[float] = []
    twin = type(model)(*list(model))
    for _ in range(runs):
        section = {"enabled": True, "batch_sizes": [1, 16], "budget_s": budget, "warmup": 3, **latency}
        config = build_config({"checks": {"latency": section}, "decision": {"bootstrap_resamples": 200}})
        ctx = RunContext(config=config, models={"baseline": loaded("baseline", model), "candidate": loaded("candidate", twin)},
                         class_names=(), device=torch.device("cpu"))
        check = LatencyCheck(config.checks["latency"], ctx)
        x = torch.randn(16, 64)
        check.update(Step(index=0, offset=0, inputs=x, labels=torch.zeros(16, dtype=torch.long), scores={}))
        result = check.compute()
        for f in result.findings:
            statuses[f"{f.status}{' (contended)' if 'contended' in f.reason else ''}"] += 1
        lost += [max(r["contention"]["lost_fraction"].values()) for r in result.details["runs"]]
    return statuses, lost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--budget", type=float, default=0.4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 4)).eval()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} CPUs available; load average {os.getloadavg()[0]:.1f}")

    def show(label: str, stats: collections.Counter, lost: list[float]) -> None:
        print(f"{label:38s} findings {dict(stats)}; lost fraction {min(lost):.2f}-{max(lost):.2f}")

    show("quiet (as the machine is)", *a_vs_a(model, runs=args.runs, budget=args.budget))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=600)]) for _ in range(cores)]
    try:
        show(f"beside {cores} busy loops", *a_vs_a(model, runs=args.runs, budget=args.budget))
        show(f"beside {cores} busy loops, detection off",
             *a_vs_a(model, runs=args.runs, budget=args.budget, max_cpu_loss=1.0))
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()


if __name__ == "__main__":
    main()
