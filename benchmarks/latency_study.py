"""How often does the latency check cry wolf, and how often does it catch a real slowdown?

Runs the real LatencyCheck (gate.checks.latency) many times on this machine, on three pairs of models, with the
scenarios interleaved repetition by repetition so machine load hits all three alike:

* A vs A: the same MLP twice, as two separate module instances with the same weights. Any `fail` is a false
  alarm (goal: under 1%).
* +10%: the candidate is the same MLP wrapped with an extra matmul sized to cost about 10%, judged with
  max_slowdown p50 0.05 (a 10% slowdown is 4.8% above the 1.05x limit): it should fail (goal: at least 95%).
* +25%: the same with an extra matmul costing about 25%, judged with the default max_slowdown p50 0.10.

The extra matmul is calibrated on this machine first, and the true slowdown of each wrapper in isolation is then
measured with many interleaved calls and printed, so the power figures can be read against the real effect.
The p90 limit is the p50 limit + 0.05, as in the defaults (p50 0.10, p90 0.15).

    python benchmarks/latency_study.py            # 100 repetitions per scenario, 1 s budget per decision
    python benchmarks/latency_study.py --quick    # 20 repetitions, to try it out

Numbers depend on the machine and on whatever else runs on it; the interesting part is the side-by-side.
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.latency import LatencyCheck  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.models.base import LoadedModel  # noqa: E402


class ExtraMatmul(torch.nn.Module):
    """The wrapped model, plus a matmul of the inputs with a (features, width) matrix whose result is thrown away."""

    def __init__(self, model: torch.nn.Module, *, features: int, width: int) -> None:
        super().__init__()
        self.model = model
        self.extra = torch.nn.Parameter(torch.randn(features, width) / math.sqrt(features), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.mm(x, self.extra)
        return self.model(x)


def mlp(hidden: int, *, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    ).eval()


def digits_batch(batch_size: int) -> torch.Tensor:
    """The first samples of scikit-learn's digits (8x8 images, 64 features), or Gaussian noise without sklearn."""
    try:
        from sklearn.datasets import load_digits

        x = load_digits().data[:batch_size] / 16.0
        return torch.tensor(x, dtype=torch.float32)
    except ImportError:
        return torch.randn(batch_size, 64)


def paired_ratio(base: torch.nn.Module, cand: torch.nn.Module, x: torch.Tensor, *, rounds: int) -> float:
    """Median of per-round candidate/baseline time ratios over interleaved calls: the slowdown in isolation."""
    ratios = []
    with torch.inference_mode():
        for _ in range(20):
            base(x)
            cand(x)
        for i in range(rounds):
            order = (base, cand) if i % 2 == 0 else (cand, base)
            times = []
            for model in order:
                t0 = time.perf_counter_ns()
                model(x)
                times.append(time.perf_counter_ns() - t0)
            tb, tc = (times[0], times[1]) if i % 2 == 0 else (times[1], times[0])
            ratios.append(tc / tb)
    return float(np.median(ratios))


def calibrate_width(base: torch.nn.Module, x: torch.Tensor, *, target: float, rounds: int) -> int:
    """The extra matmul's width that costs about `target` (0.10 = 10%), by bisection on measured ratios."""
    lo, hi = 1, 4096
    def cost(width: int) -> float:
        return paired_ratio(base, ExtraMatmul(base, features=x.shape[1], width=width), x, rounds=rounds) - 1

    while cost(hi) < target and hi < 65536:
        hi *= 2
    for _ in range(8):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) < target else (lo, mid)
    return (lo + hi) // 2


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate: torch.nn.Module
    max_slowdown: float
    true_slowdown: float


def loaded(role: str, module: torch.nn.Module) -> LoadedModel:
    return LoadedModel(
        role=role, path=f"{role}.pt", format="state_dict", module=module, sha256=None, size_bytes=None,
        parameters=sum(p.numel() for p in module.parameters()), class_names=None, tokenizer=None,
        input_names=None, is_eager=True,
    )


def decide_once(base: torch.nn.Module, sc: Scenario, x: torch.Tensor, *, budget: float, seed: int) -> dict:
    """One run of the check at one batch size: status, wall time, rounds, noise."""
    ms = sc.max_slowdown
    config = build_config({
        "seed": seed,
        "checks": {"latency": {
            "enabled": True, "batch_sizes": [x.shape[0]], "budget_s": budget, "threads": 1,
            "max_slowdown": {"p50": ms, "p90": ms + 0.05},
        }},
    })
    models = {"baseline": loaded("baseline", base), "candidate": loaded("candidate", sc.candidate)}
    ctx = RunContext(config=config, models=models, class_names=(), device=torch.device("cpu"))
    check = LatencyCheck(config.checks["latency"], ctx)
    check.update(Step(index=0, offset=0, inputs=x, labels=torch.zeros(x.shape[0], dtype=torch.long), scores={}))
    t0 = time.perf_counter()
    result = check.compute()
    seconds = time.perf_counter() - t0
    run = result.details["runs"][0]
    return {
        "status": result.status, "seconds": seconds, "rounds": run["rounds"], "noise": run["noise_log_ratio_sd"],
        "p50_ratio": run["ratios"]["p50"]["ratio"],
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 repetitions instead of 100")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per scenario")
    parser.add_argument("--budget", type=float, default=1.0, help="budget_s of each decision (default 1.0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512, help="MLP width (default 512: about 0.2 ms per call)")
    args = parser.parse_args()
    reps = args.reps or (20 if args.quick else 100)
    torch.set_num_threads(1)
    x = digits_batch(args.batch_size)
    base = mlp(args.hidden, seed=0)
    twin = copy.deepcopy(base)                      # same weights, separate instance (own memory)

    started = time.perf_counter()
    print(f"model: MLP 64-{args.hidden}-{args.hidden}-10, batch {x.shape[0]}, 1 thread; "
          "calibrating the extra matmul...")
    cal_rounds = 300 if args.quick else 600
    widths = {t: calibrate_width(base, x, target=t, rounds=cal_rounds) for t in (0.10, 0.25)}
    slower = {t: ExtraMatmul(copy.deepcopy(base), features=x.shape[1], width=w) for t, w in widths.items()}
    check_rounds = 1000 if args.quick else 3000
    true = {
        "A vs A": paired_ratio(base, twin, x, rounds=check_rounds) - 1,
        **{t: paired_ratio(base, m, x, rounds=check_rounds) - 1 for t, m in slower.items()},
    }
    for t, w in widths.items():
        print(f"  extra matmul width {w} -> true slowdown in isolation {true[t]:+.1%} (target {t:+.0%})")
    print(f"  A vs A in isolation: {true['A vs A']:+.1%}")
    scenarios = [
        Scenario("A vs A (limit p50 0.05)", twin, 0.05, true["A vs A"]),
        Scenario("A vs A (limit p50 0.10)", twin, 0.10, true["A vs A"]),
        Scenario(f"+{true[0.10]:.0%} (limit p50 0.05)", slower[0.10], 0.05, true[0.10]),
        Scenario(f"+{true[0.25]:.0%} (limit p50 0.10)", slower[0.25], 0.10, true[0.25]),
    ]
    results: dict[str, list[dict]] = {sc.name: [] for sc in scenarios}
    print(f"running {reps} decisions per scenario, budget {args.budget:g} s each, interleaved...")
    for rep in range(reps):
        for sc in scenarios:
            results[sc.name].append(decide_once(base, sc, x, budget=args.budget, seed=rep))
        if (rep + 1) % max(1, reps // 10) == 0:
            print(f"  {rep + 1}/{reps}", flush=True)

    from tabulate import tabulate

    rows = []
    for sc in scenarios:
        rs = results[sc.name]
        status = [r["status"] for r in rs]
        secs = [r["seconds"] for r in rs]
        rows.append((
            sc.name, f"{sc.true_slowdown:+.1%}", len(rs),
            f"{status.count('fail') / len(rs):.0%}", f"{status.count('pass') / len(rs):.0%}",
            f"{status.count('warn') / len(rs):.0%}",
            f"{statistics.median(secs):.2f}", f"{pct(secs, 90):.2f}",
            int(statistics.median(r["rounds"] for r in rs)),
            f"{statistics.median(r['noise'] for r in rs):.1%}",
            f"{statistics.median(r['p50_ratio'] for r in rs):.3f}",
        ))
    print()
    print(tabulate(rows, headers=("scenario", "true slowdown", "runs", "fail", "pass", "inconclusive",
                                  "s median", "s p90", "rounds", "noise", "p50 ratio")))
    fail_rate = {sc.name: [r["status"] for r in results[sc.name]].count("fail") / reps for sc in scenarios}
    a_fail = max(fail_rate[sc.name] for sc in scenarios[:2])
    power10, power25 = fail_rate[scenarios[2].name], fail_rate[scenarios[3].name]
    print()
    print(f"false alarms (A vs A fails): {a_fail:.0%}  goal < 1%   {'ok' if a_fail < 0.01 else 'MISSED'}")
    print(f"power, +10% vs limit 0.05:   {power10:.0%}  goal >= 95% {'ok' if power10 >= 0.95 else 'MISSED'}")
    print(f"power, +25% vs limit 0.10:   {power25:.0%}  goal >= 95% {'ok' if power25 >= 0.95 else 'MISSED'}")
    print(f"study took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
