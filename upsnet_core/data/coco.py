"""COCO panoptic dataset.

``panoptic_<split>2017.json`` and the PNG folder ``panoptic_<split>2017/`` (looked up in
``root/annotations/``, as COCO ships them, else in ``root/``) and the images in
``root/<split>2017/``. ``image_id`` in targets is the COCO image id as a string. Classes
of the file that are not in the given :class:`CategorySet` become void.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..categories import CategorySet
from .panoptic_dataset import PanopticDataset, PanopticRecord, Transform
from .panoptic_io import load_json


class CocoPanoptic(PanopticDataset):
    """``(image, target)`` items of one COCO panoptic split (see :class:`PanopticDataset`)."""

    def __init__(self, root: str | Path, split: str, categories: CategorySet,
                 transforms: Optional[Transform] = None):
        root = Path(root)
        annotations = root / "annotations"
        base = annotations if (annotations / f"panoptic_{split}2017.json").is_file() else root
        json_path = base / f"panoptic_{split}2017.json"
        data = load_json(json_path)
        images = {image["id"]: image for image in data["images"]}
        records = []
        for annotation in data["annotations"]:
            if annotation["image_id"] not in images:
                raise ValueError(f"{json_path}: annotation {annotation['file_name']} refers to "
                                 f"image id {annotation['image_id']}, not in 'images'")
            records.append(PanopticRecord(
                image_id=str(annotation["image_id"]),
                image_path=root / f"{split}2017" / images[annotation["image_id"]]["file_name"],
                panoptic_path=base / f"panoptic_{split}2017" / annotation["file_name"],
                segments_info=annotation["segments_info"]))
        super().__init__(records, data["categories"], categories, transforms, json_path)
