"""A batch sampler whose batch size can change while an epoch runs, sharded across ranks.

The DataLoader asks the sampler for the indices of each batch as it goes; this sampler reads
:attr:`LiveBatchSampler.batch_size` every time it cuts a batch, so a new batch size needs no new
DataLoader and no new worker processes. The boundary is exact and the same on every rank:

* ``boundary="iteration"`` (default): a change applied by the training loop before it fetches
  batch ``n`` is used from the next batch the loader cuts. With ``num_workers=0`` that is batch
  ``n``; with workers the loader has already cut ``num_workers * prefetch_factor`` batches ahead,
  so the new size starts that many batches later (the same count on every rank).
* ``boundary="epoch"``: the size is read once when an epoch starts, so the epoch in progress
  finishes with the old size.

Each epoch is one seeded permutation (the same on every rank), padded so that every rank gets
an equally long shard (as ``DistributedSampler`` does) and therefore the same number of
batches: no rank waits forever in a collective at the end of an epoch.

Example::

    >>> sampler = LiveBatchSampler(10, batch_size=4, shuffle=False)
    >>> it = iter(sampler)
    >>> next(it)
    [0, 1, 2, 3]
    >>> sampler.batch_size = 2
    >>> list(it)
    [[4, 5], [6, 7], [8, 9]]
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class LiveBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; ``batch_size`` may be changed at any time.

    Args:
        dataset_size: number of samples.
        batch_size: per-rank batch size.
        shuffle: a new seeded permutation each epoch (call :meth:`set_epoch`).
        seed: permutation seed, identical on every rank.
        rank, world_size: this process's shard of every epoch.
        drop_last: drop a last batch smaller than the batch size.
        boundary: ``"iteration"`` or ``"epoch"`` (see the module docstring).
    """

    def __init__(self, dataset_size: int, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 boundary: str = "iteration") -> None:
        if dataset_size <= 0:
            raise ValueError("empty dataset")
        if boundary not in ("iteration", "epoch"):
            raise ValueError(f"boundary must be 'iteration' or 'epoch', got {boundary!r}")
        self.dataset_size = dataset_size
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.boundary = boundary
        self.epoch = 0
        self.start = 0  # samples of this rank's shard already trained on (resume mid-epoch)

    @property
    def shard_size(self) -> int:
        """Samples per rank and epoch (the dataset padded to a multiple of world_size)."""
        return -(-self.dataset_size // self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of ``epoch``; skip the first ``start`` samples of the shard."""
        self.epoch = epoch
        self.start = start

    def _shard(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=gen).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.shard_size * self.world_size
        order += order[: total - len(order)]
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        shard = self._shard()
        position = min(self.start, len(shard))
        self.start = 0
        epoch_size = self.batch_size
        while position < len(shard):
            size = epoch_size if self.boundary == "epoch" else self.batch_size
            batch = shard[position:position + size]
            if len(batch) < size and self.drop_last:
                return
            position += len(batch)
            yield batch

    def __len__(self) -> int:
        """Batches in an epoch at the current batch size (changes when it does)."""
        remaining = self.shard_size - min(self.start, self.shard_size)
        if self.drop_last:
            return remaining // self.batch_size
        return -(-remaining // self.batch_size)
