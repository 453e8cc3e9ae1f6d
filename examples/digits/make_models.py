"""Train the example's three checkpoints on scikit-learn's digits (real data, bundled, offline):

- baseline.safetensors            the "production" model
- candidate_good.safetensors      the baseline fine-tuned a few more epochs with input noise: as good
- candidate_regressed.safetensors the baseline fine-tuned the same way on new data where a labelling bug turned most
                                  3s into 5s: overall accuracy moves a few points, class 3's recall collapses
- eval.npz                        the held-out evaluation split (images (N,1,8,8) float32, labels (N,) int64)

Usage: python examples/digits/make_models.py [OUT_DIR]    (default examples/digits/artifacts)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from examples.digits.model import build_model  # noqa: E402


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def train(
    x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int = 30, noise: float = 0.0, lr: float = 2e-3,
    start: torch.nn.Module | None = None,
) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model()
    if start is not None:
        model.load_state_dict(start.state_dict())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            xb = xt[idx] + noise * torch.randn(xt[idx].shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main(out_dir: Path) -> None:
    torch.set_num_threads(min(4, torch.get_num_threads()))
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, x_eval, y_train, y_eval = load_split()
    np.savez(out_dir / "eval.npz", images=x_eval, labels=y_eval)

    baseline = train(x_train, y_train, seed=0)
    good = train(x_train, y_train, seed=1, noise=0.05, epochs=4, lr=5e-4, start=baseline)
    # The regression: a labelling bug in the new training data turned 80% of the 3s into 5s.
    y_bad = y_train.copy()
    threes = np.flatnonzero(y_bad == 3)
    rng = np.random.default_rng(0)
    y_bad[rng.choice(threes, size=int(0.8 * len(threes)), replace=False)] = 5
    regressed = train(x_train, y_bad, seed=1, noise=0.05, epochs=4, lr=5e-4, start=baseline)

    for name, model in (("baseline", baseline), ("candidate_good", good), ("candidate_regressed", regressed)):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / f"{name}.safetensors"))
        with torch.no_grad():
            acc = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
        print(f"{name}: eval accuracy {acc:.4f}")
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "artifacts")
