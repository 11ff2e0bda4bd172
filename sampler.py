"""An infinite, reshuffling sampler for the training loaders."""
from typing import Iterator

import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler[int]):
    """Yields dataset indexes forever, in a fresh random order each pass.

    Each pass ("epoch") ``e`` is a permutation drawn from a generator seeded with
    ``seed + e``, so a run is reproducible and can resume mid-pass. With ``num_replicas`` > 1
    (distributed training) rank ``r`` takes every ``num_replicas``-th index of the same
    permutation starting at ``r``, so ranks draw different images.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, num_replicas: int = 1, start: int = 0):
        if size < 1:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, num_replicas
        self.start = start  # number of indexes this rank has already consumed (for resuming)

    def __iter__(self) -> Iterator[int]:
        per_rank = -(-self.size // self.num_replicas)  # every rank gets the same count per pass
        epoch, offset = divmod(self.start, per_rank)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            padded = torch.cat([order] * -(-per_rank * self.num_replicas // self.size))
            mine = padded[self.rank:per_rank * self.num_replicas:self.num_replicas]
            yield from mine[offset:].tolist()
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        return 2 ** 31
