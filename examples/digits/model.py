"""The example's model: a small CNN for scikit-learn's 8x8 handwritten digits (10 classes)."""
from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.conv2(self.conv1(x))))


def build_model(width: int = 16, num_classes: int = 10) -> DigitsCNN:
    """The factory `gate` calls to rebuild the module before loading a state_dict into it."""
    return DigitsCNN(width=width, num_classes=num_classes)
