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


def swallowing_batches():
    """slow_batches whose reader swallows the interrupt (as a finaliser run by the garbage collector would: CPython
    prints such an exception as ignored and goes on), so the pass runs to its end."""
    import sys
    import time

    x, y = tm.make_data(120, seed=0)
    for start in range(0, 120, 20):
        if start == 20:
            print("pass started", flush=True)
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        yield torch.from_numpy(x[start:start + 20]), torch.from_numpy(y[start:start + 20])
    sys.stdout.flush()


def slow_batches():
    """Batches that arrive slowly, with a line on stdout once the pass has begun (for the signal tests)."""
    import sys
    import time

    x, y = tm.make_data(600, seed=0)
    for start in range(0, 600, 20):
        if start == 20:
            print("pass started", flush=True)
        time.sleep(0.5)
        yield torch.from_numpy(x[start:start + 20]), torch.from_numpy(y[start:start + 20])
    sys.stdout.flush()
