"""Deterministic, resumable, sharded sampling of training images.

All processes read one global *stream* of dataset indices: epoch ``e`` is a permutation
of the dataset drawn from ``(seed, e)``, and the stream is the epochs one after another.
Iteration ``t`` consumes stream positions ``[t * B, (t + 1) * B)`` for a global batch
``B``; rank ``r`` of ``R`` takes the ``r``-th of ``R`` equal slices. The data order
therefore depends only on the seed and the global batch (not on the number of
processes or workers), and a run resumes exactly by starting at a stream position.

Augmentations are just as reproducible: the random generator of the transforms is
re-seeded from ``(seed, position)`` before each item is loaded, whichever DataLoader
worker loads it.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_ORDER, _AUGMENTATION = 0, 1  # keep the two uses of the seed independent


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """Order of the dataset's ``size`` items in ``epoch``."""
    return np.random.default_rng([seed, _ORDER, epoch]).permutation(size)


def item_seed(seed: int, position: int) -> int:
    """Seed of the augmentations of the item at stream ``position``."""
    return int(np.random.SeedSequence([seed, _AUGMENTATION, position]).generate_state(
        1, np.uint64)[0])


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's batches for ``iterations`` iterations from stream ``start_position``.

    Each batch is a list of ``(dataset index, stream position)`` pairs, the input of
    :class:`PositionSeededDataset`.
    """

    def __init__(self, dataset_size: int, global_batch: int, rank: int, world_size: int,
                 seed: int, start_position: int, iterations: int):
        if dataset_size <= 0:
            raise ValueError("the training set is empty")
        if global_batch % world_size:
            raise ValueError(f"training.images_per_batch ({global_batch}) must be divisible "
                             f"by the number of processes ({world_size})")
        self.size, self.global_batch, self.seed = dataset_size, global_batch, seed
        self.per_rank = global_batch // world_size
        self.offset = rank * self.per_rank
        self.start, self.iterations = start_position, iterations
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.iterations):
            first = self.start + iteration * self.global_batch + self.offset
            yield [(self._index(p), p) for p in range(first, first + self.per_rank)]

    def _index(self, position: int) -> int:
        epoch, within = divmod(position, self.size)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_permutation(self.seed, epoch, self.size)
        return int(self._order[within])


class PositionSeededDataset(Dataset):
    """``dataset[index]`` with ``generator`` seeded from the item's stream position.

    ``generator`` is the one the dataset's random transforms draw from. Items are
    addressed by ``(index, position)`` pairs from :class:`StreamBatchSampler`.
    """

    def __init__(self, dataset: Dataset, generator: torch.Generator, seed: int):
        self.dataset, self.generator, self.seed = dataset, generator, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, position = key
        self.generator.manual_seed(item_seed(self.seed, position))
        return self.dataset[index]
