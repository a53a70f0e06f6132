"""Training on several datasets at fixed proportions (``data.train_mix``).

A :class:`MixedDataset` is one index space over several datasets in which source ``i``
takes the share ``weight_i / sum(weights)`` of the indices. Its length is the smallest
for which every source contributes at least all of its items; a source that needs more
indices than it has items repeats (index ``j`` of source ``i`` is its item
``j % len(source_i)``). The training stream of :mod:`training.sampling` permutes these
indices, so each epoch holds the sources in the configured proportions (up to rounding),
and resume stays exact.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Sequence

from torch.utils.data import Dataset


def mixed_counts(sizes: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Indices per source of a mix: proportional to ``weights``, each at least its size."""
    if len(sizes) != len(weights) or not sizes:
        raise ValueError(f"need one weight per dataset, got {len(sizes)} datasets and "
                         f"{len(weights)} weights")
    if min(weights) <= 0:
        raise ValueError(f"mix weights must be > 0, got {list(weights)}")
    if min(sizes) <= 0:
        raise ValueError(f"every dataset of a mix needs items; sizes {list(sizes)}")
    total = sum(weights)
    length = max(math.ceil(size * total / weight) for size, weight in zip(sizes, weights))
    return [max(size, round(length * weight / total)) for size, weight in zip(sizes, weights)]


class MixedDataset(Dataset):
    """``datasets`` mixed at proportions ``weights`` (see the module docstring)."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float]):
        self.datasets = list(datasets)
        self.counts = mixed_counts([len(d) for d in self.datasets], weights)
        self._starts = [sum(self.counts[:i]) for i in range(len(self.counts))]

    def __len__(self) -> int:
        return sum(self.counts)

    def source_of(self, index: int) -> tuple[int, int]:
        """``(source, item)`` that mixed index ``index`` reads."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mix of {len(self)}")
        source = bisect_right(self._starts, index) - 1
        return source, (index - self._starts[source]) % len(self.datasets[source])

    def __getitem__(self, index: int):
        source, item = self.source_of(index)
        return self.datasets[source][item]
