"""Tiny seeded models as they ship in practice, for the output-kind and dtype tests: a sigmoid binary classifier
(one probability column), and float16 checkpoints of tests.tiny_models' MLP. Factories are importable by name:
`tests.shipped_models:build_sigmoid`, `tests.shipped_models:build_half`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tests import tiny_models as tm


class SigmoidMLP(nn.Module):
    """Linear -> ReLU -> Linear(1) -> sigmoid: the positive class's probability, shape (B, 1)."""

    def __init__(self, in_features: int = tm.IN_FEATURES, hidden: int = tm.HIDDEN) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(x)))


def build_sigmoid() -> SigmoidMLP:
    return SigmoidMLP()


def build_half() -> nn.Module:
    """A factory that returns its module in float16, as some serving code does."""
    return tm.build_mlp().half()


def sigmoid_world(n: int = 600, *, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray, SigmoidMLP]:
    """Inputs, labels (the teacher's decisions with `noise` flipped) and the teacher, centred so both classes occur."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, tm.IN_FEATURES)).astype(np.float32)
    torch.manual_seed(seed)
    teacher = build_sigmoid().eval()
    with torch.no_grad():
        z = teacher.head(teacher.body(torch.from_numpy(x))).reshape(-1)
        teacher.head.bias -= z.median() + 1e-3
        y = (teacher(torch.from_numpy(x)).reshape(-1) > 0.5).numpy().astype(np.int64)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    return x, y, teacher


def shifted(model: nn.Module, by: float) -> nn.Module:
    """A copy of a sigmoid model with its logit shifted by `by` (negative: class 1 recall collapses)."""
    out = build_sigmoid()
    out.load_state_dict(model.state_dict())
    with torch.no_grad():
        out.head.bias += by
    return out.eval()


class TinyCNN(nn.Module):
    """Conv2d -> ReLU -> mean over the image -> Linear: convolutions in the checkpoint's dtype."""

    def __init__(self, channels: int = 4, num_classes: int = tm.NUM_CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def build_cnn() -> TinyCNN:
    return TinyCNN()


def overflowing(model: nn.Module, scale: float = 300.0) -> nn.Module:
    """The MLP with its logits multiplied by scale**2 exactly (ReLU is positively homogeneous): the same decisions
    in float32, logits far beyond float16's 65504 (its largest finite value) once run in float16."""
    out = tm.build_mlp()
    out.load_state_dict(model.state_dict())
    with torch.no_grad():
        out.body[0].weight *= scale
        out.body[0].bias *= scale
        out.head.weight *= scale
        out.head.bias *= scale * scale
    return out.eval()
