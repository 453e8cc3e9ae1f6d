"""Train the digit-tag baseline from a fixed seed and derive the candidates of the example:

- `candidate_good`: the baseline fine-tuned a few more steps on the same tags (as good);
- `candidate_forgets_seven`: trained from scratch on tags in which a 7 is not prime (a labelling bug in its
  training data): the `prime` tag loses about a quarter of its positives, every other tag is as good.

    python examples/digits_tags/make_models.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.digits_tags.model import TAGS, build_model, tags_of  # noqa: E402

SEED = 0
TRAIN = 1000


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / evaluation split of the real digits (1,000 / 797 images) and their digits, fixed by `seed`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, d = data.data.astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(d))
    tr, ev = order[:TRAIN], order[TRAIN:]
    return x[tr], d[tr], x[ev], d[ev]


def train(x: np.ndarray, tags: np.ndarray, *, steps: int = 400, seed: int = SEED, start=None) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model()
    if start is not None:
        model.load_state_dict(start.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=0.01 if start is None else 0.001, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(tags).float()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


def make(out: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    torch.set_num_threads(1)            # tiny matrices: threads only contend
    out.mkdir(parents=True, exist_ok=True)
    x_tr, d_tr, x_ev, d_ev = split()
    tags_tr = np.array(tags_of(d_tr), dtype=np.int64)
    np.savez(out / "eval.npz", x=x_ev, labels=np.array(tags_of(d_ev), dtype=np.int64))
    base = train(x_tr, tags_tr)
    good = train(x_tr, tags_tr, steps=30, seed=1, start=base)
    buggy = tags_tr.copy()
    buggy[d_tr == 7, TAGS.index("prime")] = 0
    forgets = train(x_tr, buggy, seed=2)
    paths = {}
    for name, model in (("baseline", base), ("candidate_good", good), ("candidate_forgets_seven", forgets)):
        paths[name] = out / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths[name]))
    paths["data"] = out / "eval.npz"
    return paths


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "artifacts")
