"""Batching of differently sized images: the model pads itself."""
from __future__ import annotations

from typing import Sequence

import torch


def collate_panoptic(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor],
                                                                            list[dict]]:
    """``[(image, target), ...]`` -> ``(images, targets)`` lists, unpadded."""
    return [image for image, _ in batch], [target for _, target in batch]
