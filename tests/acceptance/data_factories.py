"""A data factory for the acceptance tests: a torch Dataset over the world's samples."""
from __future__ import annotations

import torch

from tests import tiny_models as tm


class _Pairs(torch.utils.data.Dataset):
    def __init__(self) -> None:
        x, y = tm.make_data(600, seed=0)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def tiny_dataset() -> torch.utils.data.Dataset:
    return _Pairs()
