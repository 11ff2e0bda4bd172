"""Infinite, reshuffling, rank-aware samplers for the training loaders.

The data order is a pure function of ``(seed, rank, number of ranks, position)``: nothing
depends on hidden RNG state, so a resumed run (``start`` = draws already consumed) sees exactly
the images, and the crops, that an uninterrupted run would have seen.
"""
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler[int]):
    """Yields dataset indexes forever, in a fresh random order each pass.

    Each pass ("epoch") ``e`` is a permutation drawn from a generator seeded from
    ``(seed, e)``, so a run is reproducible and can resume mid-pass. With ``num_replicas`` > 1
    (distributed training) rank ``r`` takes every ``num_replicas``-th index of the same
    permutation starting at ``r``, so ranks draw different images; the permutation is padded
    by wrapping round so every rank gets the same count per pass.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, num_replicas: int = 1, start: int = 0):
        if size < 1:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, num_replicas
        self.start = start  # number of indexes this rank has already consumed (for resuming)

    @property
    def per_rank(self) -> int:
        """Indexes each rank draws per pass."""
        return -(-self.size // self.num_replicas)

    def epoch_indexes(self, epoch: int) -> torch.Tensor:
        """This rank's indexes for pass ``epoch``, in order."""
        generator = torch.Generator().manual_seed(mixed_seed(self.seed, epoch, EPOCH_STREAM))
        order = torch.randperm(self.size, generator=generator)
        padded = torch.cat([order] * -(-self.per_rank * self.num_replicas // self.size))
        return padded[self.rank:self.per_rank * self.num_replicas:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            yield from self.epoch_indexes(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        return 2 ** 31


# Tags that keep the seed streams apart (a pass order, a draw's crop, an iteration's anchors).
EPOCH_STREAM, DRAW_STREAM, ITERATION_STREAM = 1, 2, 3


def mixed_seed(seed: int, *numbers: int) -> int:
    """A well-mixed 63-bit seed from ``seed`` and non-negative ``numbers`` (end them with a
    stream tag): nearby inputs give unrelated seeds."""
    entropy = [seed % 2 ** 64, *numbers]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def draw_seed(seed: int, rank: int, position: int) -> int:
    """The seed for the random augmentation of this rank's ``position``-th draw."""
    return mixed_seed(seed, rank, position, DRAW_STREAM)


class SeededSampler(Sampler[tuple[int, int]]):
    """An ``InfiniteSampler`` whose keys carry a seed: ``(index, draw_seed)``.

    The dataset seeds its random crop from that seed, so crops do not depend on which loader
    worker (or which process) decodes the image, and a resumed run redraws the same crops.
    """

    def __init__(self, indexes: InfiniteSampler):
        self.indexes = indexes

    def __iter__(self) -> Iterator[tuple[int, int]]:
        s = self.indexes
        for position, index in enumerate(s, start=s.start):
            yield index, draw_seed(s.seed, s.rank, position)

    def __len__(self) -> int:
        return len(self.indexes)
