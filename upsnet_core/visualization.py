"""Colour overlays of panoptic label images, for people to look at."""
from __future__ import annotations

import numpy as np

from .categories import LABEL_DIVISOR, VOID_ID, CategorySet

_ALPHA = 0.55


def _instance_shift(instance_index: np.ndarray) -> np.ndarray:
    """A small deterministic colour offset per instance index, so touching instances of
    one class stay apart."""
    index = instance_index.astype(np.int64)
    offsets = np.stack([(index * 37) % 61, (index * 53) % 61, (index * 71) % 61], axis=-1)
    return np.where(index[..., None] > 0, offsets - 30, 0)


def colorize(panoptic: np.ndarray, categories: CategorySet) -> np.ndarray:
    """``(H, W)`` label image -> ``(H, W, 3)`` uint8 RGB; void is black."""
    ids, inverse = np.unique(panoptic, return_inverse=True)
    palette = np.zeros((len(ids), 3), dtype=np.int64)
    for index, segment_id in enumerate(ids.tolist()):
        category_id = segment_id // LABEL_DIVISOR
        if segment_id != VOID_ID and category_id in categories:
            palette[index] = categories.by_id(category_id).color
    palette += _instance_shift(ids % LABEL_DIVISOR)
    colours = np.clip(palette, 0, 255).astype(np.uint8)
    return colours[inverse.reshape(panoptic.shape)]


def boundaries(panoptic: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour belongs to another segment."""
    edge = np.zeros(panoptic.shape, dtype=bool)
    edge[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
    edge[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
    return edge


def overlay(image: np.ndarray, panoptic: np.ndarray, categories: CategorySet) -> np.ndarray:
    """Blend the colourised label image over an ``(H, W, 3)`` uint8 RGB image, with
    segment boundaries drawn in white."""
    if image.shape[:2] != panoptic.shape:
        raise ValueError(f"image {image.shape[:2]} and label image {panoptic.shape} differ in size")
    blended = image.astype(np.float32) * (1 - _ALPHA) + colorize(panoptic, categories) * _ALPHA
    blended[boundaries(panoptic)] = 255
    return blended.astype(np.uint8)
