"""Datasets, augmentations and synthetic data for panoptic segmentation.

``build_dataset(kind, root, split, categories, transforms)`` returns a
``torch.utils.data.Dataset`` of ``(image, target)`` items (see :mod:`.target`); batch it
with :func:`collate_panoptic`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..categories import CategorySet
from .cityscapes import CityscapesPanoptic
from .coco import CocoPanoptic
from .collate import collate_panoptic
from .panoptic_dataset import PanopticDataset, Transform

DATASET_KINDS = {"cityscapes": CityscapesPanoptic, "synthetic": CityscapesPanoptic,
                 "coco": CocoPanoptic}
"""``synthetic`` data is written in the Cityscapes layout."""


def build_dataset(kind: str, root: str | Path, split: str, categories: CategorySet,
                  transforms: Optional[Transform] = None) -> PanopticDataset:
    """The ``split`` of the dataset of ``kind`` (``cityscapes``, ``synthetic``, ``coco``)."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {sorted(DATASET_KINDS)}")
    return DATASET_KINDS[kind](root, split, categories, transforms)


__all__ = ["build_dataset", "collate_panoptic", "CityscapesPanoptic", "CocoPanoptic",
           "PanopticDataset", "DATASET_KINDS"]
