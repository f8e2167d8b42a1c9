"""A training sampler whose whole epoch, including every sample's random draws, is a function of (seed, epoch).

basicsr's ``EnlargedSampler`` shuffles by epoch but knows nothing of where an interrupted run stopped inside
an epoch, and the datasets draw their crops and flips from the process-global ``random`` module, whose state
depends on the worker layout and on everything drawn before. :class:`ResumableSampler` instead

* yields :class:`SampleKey` (dataset index, draw seed) pairs, where the draw seed is derived from
  ``(seed, epoch, position in the enlarged epoch)``: the same sample gets the same crop/flip on every rank
  count, worker count and after any resume;
* can start an epoch after the samples a resumed run has already consumed (:meth:`set_start`).

Datasets that understand :class:`SampleKey` wrap their random draws in :func:`seeded_draws`; a plain integer
index keeps the old behaviour (the global ``random`` state).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from basicsr.data.data_sampler import EnlargedSampler


class SampleKey(NamedTuple):
    """What the sampler yields: the dataset index and the seed of that sample's random draws."""

    index: int
    seed: int


def draw_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of one sample's random draws, unique per (seed, epoch, position in the enlarged epoch)."""
    return ((seed & 0xFFFFFFFF) << 64) | ((epoch & 0xFFFFFFFF) << 32) | (position & 0xFFFFFFFF)


def split_key(key: int | SampleKey) -> tuple[int, int | None]:
    """``(index, seed)`` of a sampler key; ``seed`` is ``None`` for a plain integer index."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), None


@contextmanager
def seeded_draws(seed: int | None):
    """Run the block with the global ``random`` module seeded by ``seed``, restoring its state afterwards.

    basicsr's transforms (e.g. ``paired_random_crop``) draw from the global ``random`` module; seeding it per
    sample makes their draws stateless. ``None`` leaves the global state alone (plain integer indices).
    """
    if seed is None:
        yield
        return
    outer = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(outer)


class ResumableSampler(EnlargedSampler):
    """``EnlargedSampler`` with per-sample draw seeds and a start position inside the epoch.

    The epoch's order is ``randperm(total_size)`` seeded by ``seed + epoch`` (``seed`` = the run's
    ``manual_seed``), split over the ranks as in ``EnlargedSampler``.

    Args:
        dataset (Dataset): Dataset used for sampling.
        num_replicas (int): Number of processes (world size).
        rank (int): Rank of this process.
        ratio (int): Dataset enlarge ratio. Default: 1.
        seed (int): Seed of the shuffles and of the per-sample draws. Default: 0.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, ratio: int = 1, seed: int = 0):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.seed = int(seed)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples (of this rank) of the current epoch; reset by :meth:`set_epoch`."""
        self.start = int(start)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.total_size, generator=generator).tolist()
        mine = order[self.rank : self.total_size : self.num_replicas]
        size = len(self.dataset)
        for position in mine[self.start :]:
            yield SampleKey(position % size, draw_seed(self.seed, self.epoch, position))

    def __len__(self) -> int:
        return self.num_samples - self.start
