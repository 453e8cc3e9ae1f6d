"""A small multi-label tagger for scikit-learn's digits (1,797 real 8x8 handwritten digits, bundled offline): four
tags per image, each read off its digit: even, prime, greater_than_4, has_loop (0, 6, 8, 9). Scaled pixels ->
Linear(64, 32) -> ReLU -> Linear(32, 4): one logit per tag (independent sigmoids). Factory for gate.yaml:
`examples.digits_tags.model:build_model`.
"""
from __future__ import annotations

import torch
from torch import nn

TAGS = ("even", "prime", "greater_than_4", "has_loop")
PIXELS = 64


def tags_of(digits: "torch.Tensor | list[int]") -> list[list[int]]:
    """The 0/1 tags of each digit, in TAGS order."""
    out = []
    for d in [int(v) for v in digits]:
        out.append([int(d % 2 == 0), int(d in (2, 3, 5, 7)), int(d > 4), int(d in (0, 6, 8, 9))])
    return out


class Tagger(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, len(TAGS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x / 16.0))       # digits' pixels are 0..16


def build_model(hidden: int = 32) -> Tagger:
    return Tagger(hidden=hidden)
