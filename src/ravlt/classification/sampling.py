"""The order of a training epoch and the augmentation of each sample, made resumable at any batch.

Each sample's augmentation is drawn from its own seed, a function of the run's seed, the epoch, the
process rank and the sample's position in that process's epoch. It therefore does not depend on how many
dataloader workers there are, which worker loads the sample, or where the run was interrupted; and the
augmentations draw nothing from the main process's random streams (DropPath, Mixup), which checkpoints
restore. With the epoch's position, which the DataModule keeps in every checkpoint, a run resumed from a
mid-epoch checkpoint continues with the next batch of that epoch.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, position]).generate_state(1)[0])


@contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's global random streams seeded with ``seed`` inside the block, and as
    they were before it afterwards."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class SeededPositions(Sampler):
    """Wraps one process's sampler: yields ``(index, seed)``, the sample and the seed of its augmentation
    (:func:`sample_seed`), and can begin an epoch part way through (:meth:`start_at`)."""

    def __init__(self, sampler: Sampler, seed: int, rank: int):
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch = 0
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def start_at(self, epoch: int, position: int) -> None:
        """The next pass runs ``epoch`` from its ``position``-th sample on; later passes from the start."""
        self.set_epoch(epoch)
        self._start = position

    def __len__(self) -> int:
        return len(self.sampler)  # the whole epoch's: Lightning counts the skipped batches as done

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self._start = self._start, 0
        for position, index in enumerate(self.sampler):
            if position >= start:
                yield index, sample_seed(self.seed, self.epoch, self.rank, position)
