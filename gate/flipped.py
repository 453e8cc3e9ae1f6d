"""The flipped examples every report lists: a bounded top-N per kind, kept during the one pass.

A negative flip is a sample the baseline got right and the candidate gets wrong; a positive flip the reverse.
Each kind keeps the `cap` flips whose wrong prediction was the most confident (the ones a reviewer should read
first), in a heap: memory is O(cap), never O(samples), and only flipped rows are ever looked at.

Sharded, every shard keeps its own top-`cap` and hands them on as `rows.` state (gate.sharding); the merge offers
the union to a fresh collector, whose top-`cap` is the single run's: the order (confidence, then the earlier
sample) is total, and every sample of the global top-`cap` is in its own shard's top-`cap`.
"""
from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import torch

from gate.report.escape import plain_text
from gate.report.model import FlipExample, FlipExamples

#: How many flips of each kind the JSON report carries, and how many characters of each text.
CAP = 20
TEXT_CHARS = 300

_SOFTMAX_KINDS = ("logits", "binary_logit")   # binary_logit scores are [0, z]: softmax gives [1 - s(z), s(z)]


def confidences(scores: torch.Tensor, kind: str | None) -> torch.Tensor:
    """(B, K) class probabilities from a model's scores: softmax for logits, as they are for probabilities."""
    scores = scores.float()
    return torch.softmax(scores, dim=1) if kind in _SOFTMAX_KINDS or kind is None else scores


def _rank(confidence: float) -> float:
    """A flip's rank key: its wrong model's confidence, or first of all when that is NaN (a model that outputs NaN
    for the sample), so that the heap's order, and the merge of shards' heaps, stay total."""
    return math.inf if math.isnan(confidence) else confidence


class FlipCollector:
    """Top-`cap` negative and positive flips by the wrong model's confidence; ties keep the earlier sample."""

    def __init__(self, class_names: tuple[str, ...], *, cap: int = CAP, text_chars: int = TEXT_CHARS) -> None:
        self.class_names = class_names
        self.cap = cap
        self.text_chars = text_chars
        self.totals = {"negative": 0, "positive": 0}
        # (confidence of the wrong prediction, -sample index, the example, (label, baseline, candidate) classes)
        self._heaps: dict[str, list[tuple[float, int, FlipExample, tuple[int, int, int]]]] = {
            "negative": [], "positive": []}

    def update(self, *, offset: int, labels: np.ndarray, preds: dict[str, np.ndarray],
               scores: dict[str, torch.Tensor], kinds: dict[str, str | None], meta: Any = None) -> None:
        base_ok, cand_ok = preds["baseline"] == labels, preds["candidate"] == labels
        for kind, mask, wrong in (("negative", base_ok & ~cand_ok, "candidate"),
                                  ("positive", ~base_ok & cand_ok, "baseline")):
            rows = np.flatnonzero(mask)
            self.totals[kind] += int(rows.size)
            if rows.size == 0 or self.cap <= 0:
                continue
            index = torch.as_tensor(rows, device=scores["baseline"].device)
            probs = {role: confidences(scores[role].index_select(0, index), kinds.get(role)).cpu().numpy()
                     for role in ("baseline", "candidate")}
            heap = self._heaps[kind]
            for j, row in enumerate(rows.tolist()):
                conf = {role: float(probs[role][j, preds[role][row]]) for role in probs}
                key = (_rank(conf[wrong]), -(offset + row))
                if len(heap) >= self.cap and key <= heap[0][:2]:
                    continue
                example = self._example(kind, offset + row, row, labels, preds, conf, meta)
                classes = (int(labels[row]), int(preds["baseline"][row]), int(preds["candidate"][row]))
                self._offer(kind, (key[0], key[1], example, classes))

    def _offer(self, kind: str, item: tuple[float, int, FlipExample, tuple[int, int, int]]) -> None:
        heap = self._heaps[kind]
        if len(heap) < self.cap:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)

    def state(self) -> dict[str, Any]:
        """The kept flips as `rows.` state (one row per flip, by sample index) and the totals, for gate.sharding."""
        items = [(kind, item) for kind in ("negative", "positive") for item in self._heaps[kind]]
        items.sort(key=lambda t: -t[1][1])
        examples = [item[2] for _, item in items]
        return {
            "totals": np.array([self.totals["negative"], self.totals["positive"]], dtype=np.int64),
            "rows.index": np.array([e.index for e in examples], dtype=np.int64),
            "rows.kind": np.array([kind == "positive" for kind, _ in items], dtype=np.int64),
            "rows.classes": np.array([item[3] for _, item in items], dtype=np.int64).reshape(-1, 3),
            "rows.key": np.array([item[0] for _, item in items], dtype=np.float64),
            "rows.confidence": np.array([[e.baseline_confidence, e.candidate_confidence] for e in examples],
                                        dtype=np.float64).reshape(-1, 2),
            "rows.text": [e.text for e in examples],
            "rows.where": [e.where for e in examples],
        }

    def load_state(self, merged: dict[str, Any]) -> None:
        """The shards' kept flips (merged state()): the top-`cap` of their union, the totals summed."""
        totals = np.asarray(merged["totals"]).reshape(-1)
        if totals.shape != (2,) or bool((totals < 0).any()):
            raise ValueError("examples.totals must be two non-negative counts")
        self.totals = {"negative": int(totals[0]), "positive": int(totals[1])}
        self._heaps = {"negative": [], "positive": []}
        index, kinds, classes = merged["rows.index"], merged["rows.kind"], merged["rows.classes"]
        keys, conf, texts, wheres = merged["rows.key"], merged["rows.confidence"], merged["rows.text"], merged["rows.where"]
        if classes.shape != (index.size, 3) or conf.shape != (index.size, 2) or not set(kinds.tolist()) <= {0, 1}:
            raise ValueError("examples rows: classes (n, 3), confidences (n, 2) and kinds 0/1 expected")
        for j, sample in enumerate(index.tolist()):
            kind = "positive" if kinds[j] else "negative"
            label, base, cand = (int(v) for v in classes[j])
            text, where = texts[j], wheres[j]
            example = FlipExample(
                kind=kind,  # type: ignore[arg-type]
                index=int(sample), label=self._name(label),
                baseline=self._name(base), baseline_confidence=float(conf[j, 0]),
                candidate=self._name(cand), candidate_confidence=float(conf[j, 1]),
                text=plain_text(text, limit=self.text_chars) if text is not None else None,
                where=plain_text(where) if where is not None else None,
            )
            self._offer(kind, (_rank(float(keys[j])), -int(sample), example, (label, base, cand)))

    def _example(self, kind: str, index: int, row: int, labels: np.ndarray, preds: dict[str, np.ndarray],
                 conf: dict[str, float], meta: Any) -> FlipExample:
        texts = getattr(meta, "texts", None)
        where = getattr(meta, "where", None)
        return FlipExample(
            kind=kind,  # type: ignore[arg-type]
            index=index,
            label=self._name(int(labels[row])),
            baseline=self._name(int(preds["baseline"][row])),
            baseline_confidence=round(conf["baseline"], 6),
            candidate=self._name(int(preds["candidate"][row])),
            candidate_confidence=round(conf["candidate"], 6),
            text=plain_text(texts[row], limit=self.text_chars) if texts is not None else None,
            where=plain_text(where[row]) if where is not None else None,
        )

    def _name(self, k: int) -> str:
        return plain_text(self.class_names[k]) if 0 <= k < len(self.class_names) else str(k)

    def result(self) -> FlipExamples:
        def ranked(kind: str) -> tuple[FlipExample, ...]:
            return tuple(item[2] for item in sorted(self._heaps[kind], key=lambda t: (-t[0], -t[1])))

        return FlipExamples(negative=ranked("negative"), positive=ranked("positive"),
                            negative_total=self.totals["negative"], positive_total=self.totals["positive"],
                            cap=self.cap, text_chars=self.text_chars)
