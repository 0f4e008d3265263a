"""The deterministic batch plan and a thread-pool loader (for the Flax path and the benchmarks).

Data order is a function of (seed, epoch) only, so step k of any run, resumed or not, on any
number of ranks, reads the same videos. The torch path feeds the same plan to a DataLoader as
its batch sampler.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .dataset import collate


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


class BatchPlan:
    """Steps `start`..`stop` of a run as lists of dataset keys (epoch, video).

    A global batch of `batch` videos is split over `world` ranks (rank r takes every world-th);
    epochs drop their last partial batch.
    """

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank=0, world=1):
        if n < batch:
            raise ValueError(f"{n} videos cannot fill a batch of {batch}")
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.steps_per_epoch = n // batch

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def keys(self, step: int) -> list[tuple[int, int]]:
        epoch, b = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.seed, epoch, self.n)[b * self.batch : (b + 1) * self.batch]
        return [(epoch, int(i)) for i in order[self.rank :: self.world]]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.keys(step)


def threaded_batches(dataset, key_lists, workers: int = 2, prefetch: int = 2, collate_fn=collate):
    """Batches of `dataset[key]` for each key list, in order, decoded by a thread pool.

    PyAV releases the GIL while decoding, so threads overlap decoding with the training step.
    """
    key_lists = iter(key_lists)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()

        def submit() -> bool:
            keys = next(key_lists, None)
            if keys is None:
                return False
            pending.append([pool.submit(dataset.__getitem__, k) for k in keys])
            return True

        for _ in range(prefetch + 1):
            if not submit():
                break
        while pending:
            futures = pending.popleft()
            submit()
            yield collate_fn([f.result() for f in futures])
