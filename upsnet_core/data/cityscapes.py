"""Cityscapes panoptic dataset (the layout of Cityscapes' ``createPanopticImgs``).

``root/leftImg8bit/<split>/<city>/<image_id>_leftImg8bit.png`` images,
``root/gtFine/cityscapes_panoptic_<split>.json`` and PNGs in
``root/gtFine/cityscapes_panoptic_<split>/``; ``image_id`` is ``<city>_<seq>_<frame>``.
Works on the real dataset and on :mod:`upsnet_core.data.synthetic` output. Classes of the
file that are not in the given :class:`CategorySet` become void.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..categories import CategorySet
from .panoptic_dataset import PanopticDataset, PanopticRecord, Transform
from .panoptic_io import load_json


class CityscapesPanoptic(PanopticDataset):
    """``(image, target)`` items of one Cityscapes split (see :class:`PanopticDataset`)."""

    def __init__(self, root: str | Path, split: str, categories: CategorySet,
                 transforms: Optional[Transform] = None):
        root = Path(root)
        json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
        data = load_json(json_path)
        records = [_record(root, split, annotation, json_path)
                   for annotation in data["annotations"]]
        super().__init__(records, data["categories"], categories, transforms, json_path)


def _record(root: Path, split: str, annotation: dict, json_path: Path) -> PanopticRecord:
    image_id = str(annotation["image_id"])
    parts = image_id.rsplit("_", 2)
    if len(parts) != 3:
        raise ValueError(f"{json_path}: image_id {image_id!r} is not <city>_<seq>_<frame>")
    return PanopticRecord(
        image_id=image_id,
        image_path=root / "leftImg8bit" / split / parts[0] / f"{image_id}_leftImg8bit.png",
        panoptic_path=root / "gtFine" / f"cityscapes_panoptic_{split}" / annotation["file_name"],
        segments_info=annotation["segments_info"])
