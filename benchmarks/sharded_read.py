"""What a shard's reader costs next to the unsharded read: readers seek to their shard (gate.data, `owns=`).

Each rank of N used to read, decode and tokenize every batch and drop the others' (a ratio of 1.0 per rank);
now a text reader only counts the other shards' lines (JSON Lines: not even decoded; CSV: split into records,
not checked) and tokenizes its own, and a tensor file yields the others' batches unsliced. The goal is a per-rank
read time near 1/N of the unsharded read.

    python benchmarks/sharded_read.py [--samples 40000] [--shards 4] [--repeats 3]

Workload: JSON Lines and CSV reviews of 20-80 words tokenized by a real Hugging Face fast tokenizer (WordLevel,
5,000 words, padding to the batch's longest, batch 64), and an .npz of (200,000, 64) float32 with a group field.
Times are the median of `--repeats` full passes in this process (the same file, read cold by each pass's reader).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gate.data import Skipped, open_data  # noqa: E402
from gate.sharding import Shard  # noqa: E402


def make_tokenizer(folder: Path, words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
         "model_max_length": 512}))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def make_files(folder: Path, samples: int) -> tuple[Path, Path, Path, list[str]]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    rows = [{"text": " ".join(rng.choice(words, size=int(rng.integers(20, 80)))), "label": int(rng.integers(0, 3)),
             "source": f"s{int(rng.integers(0, 4))}"} for _ in range(samples)]
    jsonl = folder / "eval.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path_csv = folder / "eval.csv"
    with path_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "source"])
        writer.writerows([r["text"], r["label"], r["source"]] for r in rows)
    npz = folder / "eval.npz"
    n = samples * 5
    np.savez(npz, x=rng.normal(size=(n, 64)).astype(np.float32), labels=rng.integers(0, 3, n),
             group=rng.integers(0, 5, n))
    return jsonl, path_csv, npz, words


def read_seconds(path: Path, *, tokenizer, shard: Shard | None, repeats: int) -> tuple[float, int]:
    """Median seconds of a whole pass, and the samples this shard got."""
    times, mine = [], 0
    options = {"batch_size": 64, "inputs": ["x"]} if path.suffix == ".npz" else {"batch_size": 64}
    for _ in range(repeats):
        data = open_data(str(path), options=options, class_names=None, tokenizer=tokenizer)
        t0 = time.perf_counter()
        mine = 0
        for inputs, labels, _ in data.batches_with_meta(owns=shard.owns if shard else None):
            if not isinstance(inputs, Skipped):
                mine += int(labels.shape[0])
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-sharded-read-") as tmp:
        folder = Path(tmp)
        jsonl, path_csv, npz, words = make_files(folder, args.samples)
        tokenizer = make_tokenizer(folder, words)
        print(f"{'file':<12} {'samples':>8} {'unsharded s':>12} {'per-rank s (min..max)':>24} "
              f"{'ratio (max rank)':>17} {'ideal 1/N':>10}")
        for path in (jsonl, path_csv, npz):
            whole, total = read_seconds(path, tokenizer=tokenizer, shard=None, repeats=args.repeats)
            ranks = [read_seconds(path, tokenizer=tokenizer, shard=Shard(r, args.shards), repeats=args.repeats)
                     for r in range(args.shards)]
            assert sum(m for _, m in ranks) == total
            low, high = min(t for t, _ in ranks), max(t for t, _ in ranks)
            print(f"{path.name:<12} {total:>8} {whole:>12.3f} {f'{low:.3f}..{high:.3f}':>24} "
                  f"{high / whole:>17.3f} {1 / args.shards:>10.3f}")
        print("before this change every rank read, decoded and tokenized every batch: a ratio of 1.0 per rank")


if __name__ == "__main__":
    main()
