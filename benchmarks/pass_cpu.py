"""CPU time of the pass (gate.runner.evaluate) on 2,000 one-sample batches of the tiny test MLP, default
classification checks without sanity: the per-batch overhead of the runner itself, magnified, in CPU seconds
(process time), which a shared machine's load disturbs far less than wall time.

Compare two checkouts by running it from each, alternately:

    (cd /tmp && PYTHONPATH=/path/to/checkout-a python /path/to/benchmarks/pass_cpu.py a)
    (cd /tmp && PYTHONPATH=/path/to/checkout-b python /path/to/benchmarks/pass_cpu.py b)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import gate.runner as runner
from gate.checks.base import RunContext
from gate.config import build_config
from gate.data import open_data
from gate.models.memory import in_memory_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import tiny_models as tm  # noqa: E402


def main(label: str, repeats: int = 5) -> None:
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    x, y = tm.make_data(2000)
    batches = [(torch.from_numpy(x[i:i + 1]), torch.from_numpy(y[i:i + 1])) for i in range(len(x))]
    times = []
    for _ in range(repeats):
        config = build_config({"checks": {"sanity": {"enabled": False}}})
        models = {role: in_memory_model(m, role=role, device=cpu)
                  for role, m in (("baseline", tm.teacher()), ("candidate", tm.good_candidate()))}
        models, alignment = runner.align_models(config, models)
        ctx = RunContext(config=config, models=models, class_names=(), device=cpu, classes=alignment)
        data = open_data(batches, options=config.data, class_names=None, tokenizer=None)
        checks = runner.build_checks(config, ctx)
        start = time.process_time()
        runner.evaluate(ctx, data, checks)
        times.append(time.process_time() - start)
    times.sort()
    print(f"{label}: evaluate CPU s min {times[0]:.3f} median {times[len(times) // 2]:.3f} ({runner.__file__})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gate")
