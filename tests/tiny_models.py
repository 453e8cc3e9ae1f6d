"""Tiny seeded models and data for the tests: a 'teacher' MLP labels Gaussian inputs, with 10% label noise.

- baseline: the teacher itself (about 90% accurate against the noisy labels);
- good candidate: the teacher with tiny weight noise (a retrain that barely changed);
- regressed candidate: the teacher with class 1's logit pushed down, so class 1's recall collapses.
The factory `tests.tiny_models:build_mlp` rebuilds the module for state_dict checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

IN_FEATURES, HIDDEN, NUM_CLASSES = 8, 16, 3


class TinyMLP(nn.Module):
    def __init__(self, in_features: int = IN_FEATURES, hidden: int = HIDDEN, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_mlp(in_features: int = IN_FEATURES, hidden: int = HIDDEN, num_classes: int = NUM_CLASSES) -> TinyMLP:
    return TinyMLP(in_features, hidden, num_classes)


def teacher(seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    return build_mlp().eval()


def good_candidate(seed: int = 0, scale: float = 1e-3) -> TinyMLP:
    model = teacher(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def regressed_candidate(seed: int = 0, broken_class: int = 1, push: float = 3.0) -> TinyMLP:
    model = teacher(seed)
    with torch.no_grad():
        model.head.bias[broken_class] -= push
    return model


def make_data(n: int = 600, *, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, IN_FEATURES)).astype(np.float32)
    with torch.no_grad():
        y = teacher(seed)(torch.from_numpy(x)).argmax(1).numpy().astype(np.int64)
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, NUM_CLASSES, flip.sum())
    return x, y


@dataclass(frozen=True)
class World:
    dir: Path
    baseline: Path
    good: Path
    regressed: Path
    data: Path


def save_state_dict(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def make_world(directory: Path, *, n: int = 600, seed: int = 0) -> World:
    """state_dict checkpoints (.pt) for the three models and an .npz eval set with `x` and `labels`."""
    directory.mkdir(parents=True, exist_ok=True)
    x, y = make_data(n, seed=seed)
    np.savez(directory / "eval.npz", x=x, labels=y)
    return World(
        dir=directory,
        baseline=save_state_dict(teacher(seed), directory / "baseline.pt"),
        good=save_state_dict(good_candidate(seed), directory / "good.pt"),
        regressed=save_state_dict(regressed_candidate(seed), directory / "regressed.pt"),
        data=directory / "eval.npz",
    )
