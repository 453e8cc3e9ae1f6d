"""A small regressor for scikit-learn's diabetes data (442 real patients, 10 features, bundled offline):
standardise -> Linear(10, 8) -> tanh -> Linear(8, 1) -> back to the target's scale (disease progression one year
after baseline). Factory for gate.yaml: `examples.diabetes.model:build_model`. One architecture for every
checkpoint, so one factory serves them all.
"""
from __future__ import annotations

import torch
from torch import nn

FEATURES = 10


class Regressor(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.body = nn.Sequential(nn.Linear(FEATURES, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 1)
        self.skip = nn.Linear(FEATURES, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        z = self.head(self.body(x)) + self.skip(x)
        return z * self.y_std + self.y_mean          # (batch, 1): one target, in its own units


def build_model(hidden: int = 8) -> Regressor:
    return Regressor(hidden=hidden)
