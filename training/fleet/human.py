"""Human annotations (Cityscapes or COCO panoptic deliveries) matched to fleet frames.

A delivery is read with the project's loaders (:func:`upsnet_core.data.build_dataset`),
so it must be in the layout they read, images included; classes the model does not have
become void. Each annotated image is matched to a frame of the manifest

1. by name: the image file name without ``_leftImg8bit`` and the extension is the frame's
   ``image_id`` (annotators were given the exported frames), else
2. by stamp: the last run of 10 to 19 digits in the file name is a stamp in nanoseconds,
   and exactly one frame lies within ``stamp_tolerance_ms`` of it.

Annotations that match no frame, or several, are reported and not used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from upsnet_core.categories import CategorySet
from upsnet_core.data import build_dataset

from .dataset import FrameRecord
from .settings import HumanLabelSource

_SUFFIXES = ("_leftImg8bit", "_gtFine_panoptic")
_STAMP = re.compile(r"(?<!\d)\d{10,19}(?!\d)")


@dataclass
class HumanLabel:
    """One matched annotation: the frame, its label image (model encoding), segments
    (``id``, ``category_id``, ``iscrowd``) and where it came from."""

    frame: FrameRecord
    panoptic: np.ndarray
    segments: list[dict]
    annotation: str
    matched_by: str


@dataclass
class FrameIndex:
    """Manifest frames by image id and by stamp."""

    by_id: dict[str, FrameRecord]
    stamps: np.ndarray = field(init=False)
    frames: list[FrameRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.frames = sorted(self.by_id.values(), key=lambda r: r.stamp_ns)
        self.stamps = np.asarray([r.stamp_ns for r in self.frames], dtype=np.int64)

    def match(self, name: str, tolerance_ns: int) -> tuple[Optional[FrameRecord], str]:
        """The frame an annotated image file ``name`` belongs to, and how it matched
        (``name``, ``stamp``) or why not."""
        stem = Path(name).stem
        for suffix in _SUFFIXES:
            stem = stem.removesuffix(suffix)
        if stem in self.by_id:
            return self.by_id[stem], "name"
        stamps = _STAMP.findall(stem)
        if not stamps:
            return None, "no frame of that name and no stamp in the name"
        stamp = int(stamps[-1])
        low = np.searchsorted(self.stamps, stamp - tolerance_ns, side="left")
        high = np.searchsorted(self.stamps, stamp + tolerance_ns, side="right")
        candidates = self.frames[int(low):int(high)]
        if len(candidates) != 1:
            return None, f"{len(candidates)} frames within the tolerance of stamp {stamp}"
        return candidates[0], "stamp"


def human_labels(source: HumanLabelSource, frames: FrameIndex, categories: CategorySet,
                 problems: list[str]) -> Iterator[HumanLabel]:
    """The annotations of a delivery that match a frame; the others go to ``problems``."""
    delivery = build_dataset(source.format, source.root, source.split, categories)
    tolerance = round(source.stamp_tolerance_ms * 1e6)
    for position, record in enumerate(delivery.records):
        frame, how = frames.match(record.image_path.name, tolerance)
        if frame is None:
            problems.append(f"{record.panoptic_path}: not used ({how})")
            continue
        _, target = delivery.load(position)
        yield HumanLabel(frame, target["panoptic"].numpy(),
                         [{k: s[k] for k in ("id", "category_id", "iscrowd")}
                          for s in target["segments_info"]],
                         str(record.panoptic_path), how)
