"""A dataset of images with COCO-panoptic annotations (PNG + JSON), as the target dict.

The file's segment ids (any RGB-encoded id; Cityscapes numbers its first instance ``0``)
are converted to the label-image encoding of :mod:`upsnet_core.data.target`: thing
instances are numbered ``1, 2, ...`` per class in ``segments_info`` order; segments whose
category is not in the model's :class:`CategorySet` become void.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..categories import LABEL_DIVISOR, CategorySet
from .panoptic_io import IdIndexer, read_panoptic_png, unlisted_ids
from .target import target_from_index

Transform = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]


@dataclass(frozen=True)
class PanopticRecord:
    """One image of a panoptic annotation file."""

    image_id: str
    image_path: Path
    panoptic_path: Path
    segments_info: list[dict]


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an image file."""
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


class PanopticDataset(Dataset):
    """Items ``(image, target)``: ``image`` float32 ``(3, H, W)`` RGB in [0, 1], ``target``
    the dict of :mod:`upsnet_core.data.target`, after ``transforms(image, target)``."""

    def __init__(self, records: list[PanopticRecord], file_categories: list[dict],
                 categories: CategorySet, transforms: Optional[Transform], source: Path):
        self.records, self.categories, self.transforms = records, categories, transforms
        self.file_category_ids = {int(c["id"]) for c in file_categories}
        self.source = source
        self._indexer = IdIndexer()
        missing = [p for r in records for p in (r.image_path, r.panoptic_path) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} files listed by {source} are missing, "
                                    f"e.g. {missing[0]}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def load(self, index: int) -> tuple[torch.Tensor, dict]:
        """Item ``index`` without transforms."""
        record = self.records[index]
        pixels = read_rgb(record.image_path)
        file_ids = read_panoptic_png(record.panoptic_path)
        if file_ids.shape != pixels.shape[:2]:
            raise ValueError(f"size mismatch: image {record.image_path} is "
                             f"{pixels.shape[0]}x{pixels.shape[1]} but panoptic PNG "
                             f"{record.panoptic_path} is {file_ids.shape[0]}x{file_ids.shape[1]}")
        remap, segments = self._convert_segments(record)
        listed = [int(s["id"]) for s in record.segments_info]
        if len(set(listed)) != len(listed):
            raise ValueError(f"{self.source}: image {record.image_id} lists segment ids "
                             f"{sorted({i for i in listed if listed.count(i) > 1})} twice")
        file_index = self._indexer(file_ids, listed)
        if (file_index < 0).any():
            raise ValueError(f"{record.panoptic_path}: ids {unlisted_ids(file_ids, file_index)} "
                             f"appear in the PNG but not in the segments_info of image "
                             f"{record.image_id} in {self.source}")
        target = target_from_index(np.take(remap, file_index), segments, self.categories,
                                   record.image_id, pixels.shape[:2])
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)
        return image, target

    def _convert_segments(self, record: PanopticRecord) -> tuple[np.ndarray, list[dict]]:
        """Label-image segments of ``record`` and ``remap``: file segment ``i`` -> index.

        ``remap[i + 1]`` is ``0`` (void) or ``j + 1`` for the returned ``segments[j]``;
        several file segments may merge into one (e.g. two crowd regions of a class).
        """
        remap = np.zeros(len(record.segments_info) + 1, dtype=np.int16)
        segments: list[dict] = []
        position: dict[int, int] = {}
        counters: dict[int, int] = {}
        for i, entry in enumerate(record.segments_info):
            segment_id = self._label_image_id(record, entry, counters)
            if segment_id == 0:
                continue
            if segment_id not in position:
                position[segment_id] = len(segments)
                segments.append({"id": segment_id, "category_id": int(entry["category_id"]),
                                 "iscrowd": int(entry.get("iscrowd", 0))})
            remap[i + 1] = position[segment_id] + 1
        return remap, segments

    def _label_image_id(self, record: PanopticRecord, entry: dict, counters: dict) -> int:
        category_id = int(entry["category_id"])
        if category_id not in self.file_category_ids:
            raise ValueError(f"{self.source}: image {record.image_id}: segment {entry['id']} has "
                             f"category_id {category_id}, which is not in its categories list")
        if category_id not in self.categories:
            return 0
        if not self.categories.by_id(category_id).isthing or entry.get("iscrowd", 0):
            return category_id * LABEL_DIVISOR
        counters[category_id] = k = counters.get(category_id, 0) + 1
        if k >= LABEL_DIVISOR:
            raise ValueError(f"image {record.image_id} has more than {LABEL_DIVISOR - 1} "
                             f"instances of category {category_id}")
        return category_id * LABEL_DIVISOR + k
