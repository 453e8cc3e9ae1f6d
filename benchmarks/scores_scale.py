"""The scores check at scale: CPU seconds in update() over the pass and in compute(), and the peak RSS, exact mode.

Synthetic float32 logits of both models (the candidate the baseline plus noise) from a fixed seed, fed in batches of
256, with a ROC-AUC and a log-loss rule, as docs/checks/scores.md's "Memory" section quotes it:

    OMP_NUM_THREADS=1 python benchmarks/scores_scale.py [--samples 20000] [--classes 1000]

The peak RSS is the process's (ru_maxrss), so run it in a fresh process. With `--before REV` it runs the workload
again, each run in a fresh process: on the `gate` package of each git revision REV given (extracted with git archive
into a temporary folder) and on this tree's, and prints the memory of compute() side by side (RSS just before it, the
process's peak after it, and the rise between):

    OMP_NUM_THREADS=1 python benchmarks/scores_scale.py --samples 200000 --classes 100 --before b011c0c a6d4b84
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# --tree DIR (the child runs of --before) imports gate from DIR instead of this tree
TREE = Path(sys.argv[sys.argv.index("--tree") + 1]) if "--tree" in sys.argv else ROOT
sys.path.insert(0, str(TREE))

from gate.checks.base import RunContext, Step  # noqa: E402
from gate.checks.scores import ScoresCheck  # noqa: E402
from gate.config import build_config  # noqa: E402


def rss_gib() -> float:
    """The process's resident set now (Linux /proc), GiB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30


def memory_of(tree: Path, n: int, k: int) -> dict[str, float]:
    """compute()'s memory on the gate package under `tree`, from a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--samples", str(n), "--classes", str(k), "--tree", str(tree)],
                         check=True, capture_output=True, text=True).stdout
    return {key: float(v) for key, v in (item.split("=") for item in out.split("\n")[-2].split())}


def side_by_side(revs: list[str], n: int, k: int) -> None:
    """compute()'s memory at each git revision in `revs` and in this tree, each in a fresh process."""
    runs = {}
    for rev in revs:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "gate"], check=True,
                                     capture_output=True).stdout
            Path(tmp, "gate.tar").write_bytes(archive)
            with tarfile.open(Path(tmp, "gate.tar")) as tar:
                tar.extractall(tmp, filter="data")
            runs[rev] = memory_of(Path(tmp), n, k)
    runs["this tree"] = memory_of(ROOT, n, k)
    print(f"compute() memory, {n} samples x {k} classes, GiB (ratio: this tree / {revs[-1]})")
    print(f"  {'':<20}" + "".join(f"{name:>12}" for name in runs) + f"{'ratio':>8}")
    for key, label in (("before", "RSS before compute"), ("peak", "peak RSS"), ("rise", "rise in compute")):
        print(f"  {label:<20}" + "".join(f"{run[key]:>12.3f}" for run in runs.values())
              + f"{runs['this tree'][key] / runs[revs[-1]][key]:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--before", metavar="REV", nargs="+",
                        help="compare compute()'s memory with that of git revision(s) REV instead")
    parser.add_argument("--settle-first", action="store_true",
                        help="turn the kept logits into log-odds before measuring compute() (its rise without that)")
    parser.add_argument("--tree", metavar="DIR", help="import gate from DIR instead of this tree")
    args = parser.parse_args()
    n, k = args.samples, args.classes
    if args.before:
        side_by_side(args.before, n, k)
        return
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    zb = rng.standard_normal((n, k)).astype(np.float32)
    zb[np.arange(n), y] += 3.0
    zc = (zb + 0.3 * rng.standard_normal((n, k))).astype(np.float32)
    config = build_config({"checks": {"scores": {"enabled": True, "roc_auc": {"max_drop": 0.01},
                                                 "log_loss": {"max_increase": 0.05}}}})
    models = {r: SimpleNamespace(output="logits") for r in ("baseline", "candidate")}
    check = ScoresCheck(config.check("scores"), RunContext(config=config, models=models,
                                                           class_names=tuple(map(str, range(k))), device=None))
    t0 = time.process_time()
    for i, start in enumerate(range(0, n, 256)):
        sl = slice(start, start + 256)
        check.update(Step(index=i, offset=start, inputs=None, labels=torch.from_numpy(y[sl]),
                          scores={"baseline": torch.from_numpy(zb[sl]), "candidate": torch.from_numpy(zc[sl])}))
    spent_update = time.process_time() - t0
    del zb, zc                                          # the check holds its own copies
    if args.settle_first:
        check._rows()                                   # settles the kept logits (exact mode), copies nothing
    start = rss_gib()
    t0 = time.process_time()
    result = check.compute()
    spent_compute = time.process_time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"{n} samples x {k} classes: update {spent_update:.2f} CPU s, compute {spent_compute:.2f} CPU s, "
          f"kept {result.details['kept_per_sample']['bytes'] / 2 ** 20:.0f} MiB, peak RSS {peak:.2f} GiB")
    print(f"before={start:.4f} peak={peak:.4f} rise={peak - start:.4f}")


if __name__ == "__main__":
    main()
