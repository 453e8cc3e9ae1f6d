"""Train the breast-cancer baseline from a fixed seed and derive the candidates of the example:

- `candidate_good`: the baseline fine-tuned a few more steps (as good);
- `candidate_overconfident`: the baseline with its logit multiplied by 8: every decision, so accuracy, identical;
  log loss and calibration much worse;
- `candidate_scrambled`: the same decisions, confidences from an unrelated projection: ROC-AUC collapses.

    python examples/breast_cancer/make_models.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.breast_cancer.model import build_model  # noqa: E402

SEED = 0
TRAIN = 300


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / evaluation split of the real data (300 / 269 tumours), fixed by `seed`."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    tr, ev = order[:TRAIN], order[TRAIN:]
    return x[tr], y[tr], x[ev], y[ev]


def train(x: np.ndarray, y: np.ndarray, *, steps: int = 300, seed: int = SEED, start=None) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model()
    if start is not None:
        model.load_state_dict(start.state_dict())
    else:
        model.mean.copy_(torch.from_numpy(x.mean(axis=0)))
        model.std.copy_(torch.from_numpy(x.std(axis=0) + 1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=0.02 if start is None else 0.002, weight_decay=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).float()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt).reshape(-1), yt)
        loss.backward()
        opt.step()
    return model.eval()


def make(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_ev, y_ev = split()
    np.savez(out / "eval.npz", x=x_ev, labels=y_ev)
    base = train(x_tr, y_tr)
    good = train(x_tr, y_tr, steps=20, seed=1, start=base)
    over = build_model()
    over.load_state_dict(base.state_dict())
    with torch.no_grad():
        over.head.weight *= 8.0
        over.head.bias *= 8.0
    torch.manual_seed(SEED + 2)
    scrambled = build_model()
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("noise.")}
    scrambled.load_state_dict(state, strict=False)
    scrambled.scramble.fill_(1.0)
    paths = {}
    for name, model in (("baseline", base), ("candidate_good", good), ("candidate_overconfident", over),
                        ("candidate_scrambled", scrambled)):
        paths[name] = out / f"{name}.pt"
        torch.save(model.state_dict(), paths[name])
    paths["data"] = out / "eval.npz"
    return paths


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "artifacts")
