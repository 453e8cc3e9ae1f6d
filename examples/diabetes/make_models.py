"""Train the diabetes baseline from a fixed seed and derive the candidates of the example:

- `candidate_good`: the same recipe retrained from another seed (as good);
- `candidate_noisy`: the baseline with noise added to its weights (a careless compression step): its predictions
  scatter more, so MAE and RMSE grow well beyond 5%.

    python examples/diabetes/make_models.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.diabetes.model import build_model  # noqa: E402

SEED = 0
TRAIN = 242
#: Noise added to every weight of the noisy candidate, as a fraction of that tensor's mean absolute value.
NOISE = 1.0


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / evaluation split of the real data (242 / 200 patients), fixed by `seed`."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    x, y = data.data.astype(np.float32), data.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    tr, ev = order[:TRAIN], order[TRAIN:]
    return x[tr], y[tr], x[ev], y[ev]


def train(x: np.ndarray, y: np.ndarray, *, seed: int, steps: int = 500) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model()
    model.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    model.std.copy_(torch.from_numpy(x.std(axis=0) + 1e-6))
    model.y_mean.fill_(float(y.mean()))
    model.y_std.fill_(float(y.std()))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy((y - y.mean()) / y.std())
    for _ in range(steps):
        opt.zero_grad()
        z = (model(xt).reshape(-1) - model.y_mean) / model.y_std
        loss = torch.nn.functional.mse_loss(z, yt)
        loss.backward()
        opt.step()
    return model.eval()


def noisy(base: torch.nn.Module, *, seed: int = SEED + 2, scale: float = NOISE) -> torch.nn.Module:
    model = build_model()
    model.load_state_dict(base.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * param.abs().mean() * torch.randn(param.shape, generator=gen))
    return model.eval()


def make(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_ev, y_ev = split()
    np.savez(out / "eval.npz", x=x_ev, labels=y_ev)
    base = train(x_tr, y_tr, seed=SEED)
    good = train(x_tr, y_tr, seed=SEED + 1)
    paths = {}
    for name, model in (("baseline", base), ("candidate_good", good), ("candidate_noisy", noisy(base))):
        paths[name] = out / f"{name}.pt"
        torch.save(model.state_dict(), paths[name])
    paths["data"] = out / "eval.npz"
    return paths


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "artifacts")
