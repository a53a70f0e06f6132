"""The fleet dataset on disk: the Cityscapes panoptic layout plus a provenance manifest.

::

    <dataset>/leftImg8bit/<split>/<robot>/<image_id>_leftImg8bit.png    frames (ingest)
    <dataset>/gtFine/cityscapes_panoptic_<split>/<image_id>_gtFine_panoptic.png   (label)
    <dataset>/gtFine/cityscapes_panoptic_<split>.json    the labelled frames of the split
    <dataset>/manifest.jsonl                             one frame per line (provenance)
    <dataset>/.ingest/                                   ingest bookkeeping (per bag)

``image_id`` is ``<robot>_<stream>_<stamp_ns>`` (Cityscapes' ``<city>_<seq>_<frame>``):
the robot id (letters, digits and ``-``), a short hash of the bag and topic, and the
header stamp in nanoseconds. So the existing loaders
(``upsnet_core.data.build_dataset("cityscapes", ...)``), ``training.train`` and
``training.evaluate`` read the dataset unchanged; frames without a label are in the
manifest but not in the split's JSON.

A manifest line holds ``image_id``, ``split``, ``robot`` (as named by its bag folder),
``bag`` (path under the bags folder), ``topic``, ``stamp_ns``, ``frame_id`` and ``label``:
``null`` (unlabelled), ``{"source": "human", "annotation": ...}`` or ``{"source":
"teacher", "teacher": ..., "teacher_sha256": ..., ...}``.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

from .files import write_text_atomic

MANIFEST = "manifest.jsonl"


def robot_city(robot: str) -> str:
    """The Cityscapes city name of a robot id: characters other than letters, digits and
    ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9-]", "-", robot) or "robot"


@dataclass
class FrameRecord:
    """One frame of the dataset (a manifest line)."""

    image_id: str
    split: str
    robot: str
    bag: str
    topic: str
    stamp_ns: int
    frame_id: str
    label: Optional[dict] = None

    @property
    def city(self) -> str:
        return self.image_id.rsplit("_", 2)[0]

    def sort_key(self) -> tuple:
        return self.robot, self.bag, self.topic, self.stamp_ns


class FleetDataset:
    """Paths and manifest of a fleet dataset folder (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def bookkeeping(self) -> Path:
        """Ingest's folder of per-bag records and staging folders."""
        return self.root / ".ingest"

    def image_path(self, record: FrameRecord) -> Path:
        return (self.root / "leftImg8bit" / record.split / record.city
                / f"{record.image_id}_leftImg8bit.png")

    def label_path(self, record: FrameRecord) -> Path:
        return self.label_folder(record.split) / f"{record.image_id}_gtFine_panoptic.png"

    def label_folder(self, split: str) -> Path:
        return self.root / "gtFine" / f"cityscapes_panoptic_{split}"

    def json_path(self, split: str) -> Path:
        return self.root / "gtFine" / f"cityscapes_panoptic_{split}.json"

    def read_manifest(self) -> list[FrameRecord]:
        """The frames of the manifest ([] when there is none yet)."""
        if not self.manifest_path.is_file():
            return []
        return read_records(self.manifest_path.read_text())

    def write_manifest(self, records: Iterable[FrameRecord]) -> None:
        """Replace the manifest atomically; lines sorted by robot, bag, topic and stamp."""
        write_text_atomic(self.manifest_path, records_text(records))


def records_text(records: Iterable[FrameRecord]) -> str:
    """JSON lines of ``records`` in manifest order (same records, same bytes)."""
    ordered = sorted(records, key=FrameRecord.sort_key)
    return "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in ordered)


def read_records(text: str) -> list[FrameRecord]:
    """Records of JSON-lines text written by :func:`records_text`."""
    return [FrameRecord(**json.loads(line)) for line in text.splitlines() if line.strip()]
