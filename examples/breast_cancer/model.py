"""A small binary scorer for scikit-learn's breast-cancer data (569 real tumours, 30 features, bundled offline):
standardise -> Linear(30, 8) -> tanh -> Linear(8, 1), one logit for class 1 (benign). Factory for gate.yaml:
`examples.breast_cancer.model:build_model`.

The `scramble` buffer (0 in a trained model) marks the candidate of the AUC example: the same decisions (the sign
of the trained logit), with a confidence drawn from an unrelated projection of the features (`noise`), so accuracy
at 0.5 holds while the ranking goes. One architecture for every checkpoint, so one factory serves them all.
"""
from __future__ import annotations

import torch
from torch import nn

FEATURES = 30


class Scorer(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))
        self.body = nn.Sequential(nn.Linear(FEATURES, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 1)
        self.noise = nn.Linear(FEATURES, 1)
        self.register_buffer("scramble", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        z = self.head(self.body(x))
        if bool(self.scramble):
            z = torch.sign(z) * (0.05 + self.noise(x).abs())
        return z


def build_model(hidden: int = 8) -> Scorer:
    return Scorer(hidden=hidden)
