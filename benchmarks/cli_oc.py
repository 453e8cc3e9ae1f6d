"""The default policy end to end through the real CLI: exit codes of seeded candidates against one baseline.

    python benchmarks/cli_oc.py                  # 60 as good, 40 at 2x, 40 at 3x max_drop; n 1,000 (~2 min)
    python benchmarks/cli_oc.py --as-good 30 --twice 20 --thrice 20

Each realization writes an .npz whose inputs are the two models' one-hot predictions side by side, and two
state_dict checkpoints of a module that reads its own half: the baseline reads the first K columns, the candidate
the next K. So `gate check` runs its whole path (config, loading, the pass, every default check, the reports'
verdict) on predictions with a known truth: K = 10 balanced classes, baseline accuracy 0.9, 4% discordant,
accuracy max_drop 0.01 (the default), true drop 0, 2x or 3x max_drop.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FACTORY = '''\
import torch


class Reader(torch.nn.Module):
    """Logits = one model's one-hot predictions, read from its half of the input."""

    def __init__(self, offset: int, classes: int) -> None:
        super().__init__()
        self.offset, self.classes = offset, classes
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x[:, self.offset:self.offset + self.classes] * self.scale


def make_reader(offset: int = 0, classes: int = 10):
    return Reader(offset, classes)
'''


def predictions(rng: np.random.Generator, n: int, k: int, *, accuracy: float, discordance: float, drop: float):
    p10, p01 = (discordance + drop) / 2, (discordance - drop) / 2
    kind = rng.choice(4, size=n, p=[accuracy - p10, p10, p01, 1 - accuracy - p01])
    y = rng.integers(0, k, n)
    base_ok, cand_ok = kind <= 1, (kind == 0) | (kind == 2)
    pb = np.where(base_ok, y, (y + 1 + rng.integers(0, 2, n)) % k)
    pc = np.where(cand_ok, y, (y + 1 + rng.integers(0, 2, n)) % k)
    return y, pb, pc


def run_once(work: Path, y: np.ndarray, pb: np.ndarray, pc: np.ndarray, k: int) -> tuple[int, list[str]]:
    """The CLI's exit code and the checks its JSON report failed."""
    import json

    from gate.cli import main

    x = np.concatenate([np.eye(k, dtype=np.float32)[pb], np.eye(k, dtype=np.float32)[pc]], axis=1)
    np.savez(work / "eval.npz", x=x, labels=y.astype(np.int64))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["check", str(work / "candidate.pt"), "--baseline", str(work / "baseline.pt"), "--data",
                  str(work / "eval.npz"), "--config", str(work / "gate.yaml"), "--json", str(work / "r.json")])
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
    report = json.loads((work / "r.json").read_text()) if code != 2 else {"checks": []}
    return code, [c["name"] for c in report["checks"] if c["status"] == "fail"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--as-good", type=int, default=60)
    parser.add_argument("--twice", type=int, default=40)
    parser.add_argument("--thrice", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    k, max_drop = 10, 0.01
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "oc_reader.py").write_text(FACTORY, encoding="utf-8")
        (work / "gate.yaml").write_text(
            "version: 1\nmodel:\n  factory: oc_reader:make_reader\n"
            f"  baseline: {{kwargs: {{offset: 0, classes: {k}}}}}\n"
            f"  candidate: {{kwargs: {{offset: {k}, classes: {k}}}}}\n", encoding="utf-8")
        sys.path.insert(0, tmp)
        os.chdir(tmp)
        state = {"scale": torch.ones(())}
        torch.save(state, work / "baseline.pt")
        torch.save(state, work / "candidate.pt")
        rng = np.random.default_rng(args.seed)
        print(f"through the CLI, default config: n {args.samples}, K {k}, baseline accuracy 0.9, 4% discordant, "
              f"accuracy max_drop {max_drop}")
        for label, multiple, reps in (("as good", 0, args.as_good), ("2x max_drop", 2, args.twice),
                                      ("3x max_drop", 3, args.thrice)):
            runs = [run_once(work, *predictions(rng, args.samples, k, accuracy=0.9, discordance=0.04,
                                                  drop=multiple * max_drop), k) for _ in range(reps)]
            codes = [code for code, _ in runs]
            by_check = {name: sum(name in failed for _, failed in runs) for name in ("accuracy", "per_class", "flips")}
            print(f"  {label:12s}: exit 1 in {codes.count(1)} of {reps}, exit 0 in {codes.count(0)}, "
                  f"exit 2 in {codes.count(2)}; failed by check: {by_check}")
    print(f"elapsed: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
