"""The flipped examples every report lists: a bounded top-N per kind, kept during the one pass.

A negative flip is a sample the baseline got right and the candidate gets wrong; a positive flip the reverse.
Each kind keeps the `cap` flips whose wrong prediction was the most confident (the ones a reviewer should read
first), in a heap: memory is O(cap), never O(samples), and only flipped rows are ever looked at.
"""
from __future__ import annotations

import heapq
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


class FlipCollector:
    """Top-`cap` negative and positive flips by the wrong model's confidence; ties keep the earlier sample."""

    def __init__(self, class_names: tuple[str, ...], *, cap: int = CAP, text_chars: int = TEXT_CHARS) -> None:
        self.class_names = class_names
        self.cap = cap
        self.text_chars = text_chars
        self.totals = {"negative": 0, "positive": 0}
        self._heaps: dict[str, list[tuple[float, int, FlipExample]]] = {"negative": [], "positive": []}

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
                key = (conf[wrong], -(offset + row))
                if len(heap) >= self.cap and key <= heap[0][:2]:
                    continue
                example = self._example(kind, offset + row, row, labels, preds, conf, meta)
                item = (key[0], key[1], example)
                if len(heap) < self.cap:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)

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
