"""The latency check on a GPU: CUDA-event timings of a small CNN, A vs A and against a heavier candidate.

    python benchmarks/gpu_latency_check.py            # about 15 s on a GPU machine; exits 0
    python benchmarks/gpu_latency_check.py --budget 2

Prints what the check measured (per-call percentiles, ratios with their intervals, the noise, peak allocator
memory) and its status for each pair. On a machine without CUDA it says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.latency import LatencyCheck  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.models.base import LoadedModel  # noqa: E402


def cnn(width: int, *, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 10),
    ).eval()


def loaded(role: str, module: torch.nn.Module) -> LoadedModel:
    return LoadedModel(
        role=role, path=f"{role}.pt", format="state_dict", module=module, sha256=None, size_bytes=None,
        parameters=sum(p.numel() for p in module.parameters()), class_names=None, tokenizer=None,
        input_names=None, is_eager=True,
    )


def run_pair(name: str, base: torch.nn.Module, cand: torch.nn.Module, x: torch.Tensor, *, budget: float) -> None:
    from tabulate import tabulate

    config = build_config({
        "device": "cuda",
        "checks": {"latency": {"enabled": True, "devices": ["cuda"], "batch_sizes": [1, 8, 32], "budget_s": budget}},
    })
    models = {"baseline": loaded("baseline", base), "candidate": loaded("candidate", cand)}
    ctx = RunContext(config=config, models=models, class_names=(), device=torch.device("cuda"))
    check = LatencyCheck(config.checks["latency"], ctx)
    check.update(Step(index=0, offset=0, inputs=x, labels=torch.zeros(x.shape[0], dtype=torch.long, device="cuda"),
                      scores={}))
    t0 = time.perf_counter()
    result = check.compute()
    print(f"\n=== {name}: {result.status.upper()} in {time.perf_counter() - t0:.1f} s: {result.summary}")
    for table in result.tables:
        print(f"\n{table.title}")
        print(tabulate(table.rows, headers=table.headers))
    for run in result.details["runs"]:
        mem = run["memory"]
        print(f"bs={run['batch_size']}: peak allocator increase baseline {mem['baseline']['peak_increase_bytes']} B, "
              f"candidate {mem['candidate']['peak_increase_bytes']} B; max_memory_allocated "
              f"{mem['candidate']['max_memory_allocated_bytes']} B")
    for note in result.notes:
        print(f"note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="budget_s per batch size (default 1.0)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to measure on a GPU here (the CPU path is "
              "benchmarks/latency_study.py)")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    x = torch.randn(32, 3, 32, 32, device="cuda")
    base = cnn(64, seed=0).cuda()
    twin = cnn(64, seed=0).cuda()             # same weights, separate instance
    heavier = cnn(128, seed=0).cuda()         # about 4x the convolution work
    run_pair("A vs A (same weights, two instances)", base, twin, x, budget=args.budget)
    run_pair("A vs a CNN twice as wide", base, heavier, x, budget=args.budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
