"""A tiny text world whose errors we place by hand: a keyword 'tokenizer', a linear model on its features, and
reviews from two sources, so a regression can be confined to one slice.

Features of a text: f = count("good") - count("bad"), m = 1 if "glitch" is in it, and f * m. The baseline's
logits are (-f, f): it reads the keywords. The regressed candidate adds (2 f m, -2 f m): on a text with "glitch"
it says the opposite. Only texts from the `rare` source carry "glitch", so the candidate is wrong exactly there.
Labels follow f, with a few flipped (label noise) so that the baseline is not perfect and flips go both ways.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASS_NAMES = ("negative", "positive")
CALLS = {"tokenizer": 0, "build": 0}     # how often the run loaded a tokenizer / built a model


def features(texts: list[str]) -> dict[str, torch.Tensor]:
    rows = []
    for text in texts:
        words = text.lower().replace(",", " ").replace(".", " ").split()
        f = float(words.count("good") - words.count("bad"))
        m = 1.0 if "glitch" in words else 0.0
        rows.append((f, m, f * m))
    return {"x": torch.tensor(rows, dtype=torch.float32)}


def tokenizer():
    """data.tokenizer: tests.slice_world:tokenizer (called once, returns texts -> dict of tensors)."""
    CALLS["tokenizer"] += 1
    return features


class KeywordNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def build() -> KeywordNet:
    """model.factory: tests.slice_world:build."""
    CALLS["build"] += 1
    return KeywordNet()


def baseline() -> KeywordNet:
    net = build()
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    return net.eval()


def regressed(strength: float = 2.0) -> KeywordNet:
    net = baseline()
    with torch.no_grad():
        net.head.weight[:, 2] += torch.tensor([strength, -strength])
    return net.eval()


def predict(net: nn.Module, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return net(features(texts)["x"]).argmax(1).numpy()


@dataclass(frozen=True)
class TextWorld:
    dir: Path
    baseline: Path
    regressed: Path
    data: Path
    rows: list[dict]


def review(rng: np.random.Generator, *, positive: bool, glitch: bool) -> str:
    strength = int(rng.integers(1, 4))
    word = "good" if positive else "bad"
    filler = ["the", "film", "was", "plot", "acting", "<b>", "|", "@team"]
    words = [word] * strength + list(rng.choice(filler, size=int(rng.integers(2, 12))))
    if glitch:
        words.append("glitch")
    rng.shuffle(words)
    return " ".join(words)


def make_rows(n: int, *, rare_share: float, glitch_share: float, noise: float, seed: int) -> list[dict]:
    """Rows {text, label, source, id}: `rare_share` of them from source 'rare', `glitch_share` of those with glitch."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        source = "rare" if rng.random() < rare_share else "common"
        positive = bool(rng.random() < 0.5)
        glitch = source == "rare" and bool(rng.random() < glitch_share)
        text = review(rng, positive=positive, glitch=glitch)
        label = positive if rng.random() >= noise else not positive
        rows.append({"text": text, "label": CLASS_NAMES[int(label)], "source": source, "id": i})
    return rows


def make_text_world(directory: Path, *, n: int = 2000, rare_share: float = 0.05, glitch_share: float = 0.6,
                    noise: float = 0.05, seed: int = 0) -> TextWorld:
    directory.mkdir(parents=True, exist_ok=True)
    rows = make_rows(n, rare_share=rare_share, glitch_share=glitch_share, noise=noise, seed=seed)
    data = directory / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    torch.save(baseline().state_dict(), directory / "baseline.pt")
    torch.save(regressed().state_dict(), directory / "regressed.pt")
    return TextWorld(directory, directory / "baseline.pt", directory / "regressed.pt", data, rows)
