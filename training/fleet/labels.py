"""Label step: human annotations where there are some, teacher pseudo-labels elsewhere.

Writes each label as a panoptic PNG of the split's ``gtFine`` folder, the split's JSON
(the labelled frames; classes: the base model's), and the ``label`` of every frame in the
manifest (:mod:`training.fleet.dataset`):

* ``{"source": "human", "annotation": <delivered PNG>, "matched_by": "name"|"stamp"}``
  (:mod:`training.fleet.human`); human labels win and are kept by later runs;
* ``{"source": "teacher", "teacher": <checkpoint>, "teacher_sha256": ..., "settings":
  {...}, "labelled_fraction": ...}`` (:mod:`training.fleet.teacher`).

Re-running skips frames whose label already came from the same teacher file with the
same settings, so labelling new bags only costs the new frames.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from upsnet_core.categories import CategorySet
from upsnet_core.checkpoint import read_checkpoint
from upsnet_core.data.panoptic_dataset import read_rgb
from upsnet_core.data.panoptic_io import (IdIndexer, load_json, segment_areas_and_boxes,
                                          write_panoptic_png)
from upsnet_core.inference import Predictor

from .dataset import FleetDataset, FrameRecord
from .files import sha256_of, write_json_atomic
from .human import FrameIndex, human_labels
from .settings import FleetSettings, HumanLabelSource
from .teacher import Teacher

log = logging.getLogger(__name__)

PROGRESS_PERIOD = 25
"""Frames between progress messages of the teacher."""


@dataclass
class LabelReport:
    """What one label run did."""

    human: int = 0
    teacher: int = 0
    unchanged: int = 0
    """Frames whose teacher label was already up to date."""
    problems: list[str] = field(default_factory=list)


class SplitAnnotations:
    """The panoptic JSON of one split of the fleet dataset, updated frame by frame."""

    def __init__(self, dataset: FleetDataset, split: str):
        self.dataset, self.split = dataset, split
        path = dataset.json_path(split)
        data = load_json(path) if path.is_file() else {"images": [], "annotations": []}
        self.images = {str(i["id"]): i for i in data["images"]}
        self.annotations = {str(a["image_id"]): a for a in data["annotations"]}
        self._indexer = IdIndexer()

    def has(self, frame: FrameRecord) -> bool:
        return frame.image_id in self.annotations and self.dataset.label_path(frame).is_file()

    def put(self, frame: FrameRecord, panoptic: np.ndarray, segments: list[dict]) -> None:
        """Write the label PNG of ``frame`` and its JSON entries (empty segments dropped)."""
        path = self.dataset.label_path(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_panoptic_png(path, panoptic)
        index = self._indexer(panoptic, [s["id"] for s in segments])
        areas, boxes = segment_areas_and_boxes(index, len(segments) + 1)
        height, width = panoptic.shape
        self.images[frame.image_id] = {"id": frame.image_id, "height": height, "width": width,
                                       "file_name": self.dataset.image_path(frame).name}
        self.annotations[frame.image_id] = {
            "image_id": frame.image_id, "file_name": path.name,
            "segments_info": [{**s, "area": int(areas[i]), "bbox": [int(v) for v in boxes[i]]}
                              for i, s in enumerate(segments, 1) if areas[i] > 0]}

    def write(self, frames: list[FrameRecord], categories: CategorySet) -> None:
        """The JSON of the split's labelled frames among ``frames``, sorted by image id."""
        ids = sorted(f.image_id for f in frames
                     if f.split == self.split and f.label and f.image_id in self.annotations)
        write_json_atomic(self.dataset.json_path(self.split), {
            "images": [self.images[i] for i in ids],
            "annotations": [self.annotations[i] for i in ids],
            "categories": categories.to_list()})


class Labeller:
    """One label run over the manifest of a fleet dataset."""

    def __init__(self, settings: FleetSettings, dataset: FleetDataset):
        self.settings, self.dataset = settings, dataset
        self.frames = dataset.read_manifest()
        if not self.frames:
            raise FileNotFoundError(f"no frames in {dataset.manifest_path}: run ingest first")
        self.categories = read_checkpoint(settings.finetune.base)["config"].category_set()
        self.splits = {split: SplitAnnotations(dataset, split)
                       for split in sorted({f.split for f in self.frames})}
        self.report = LabelReport()

    def run(self) -> LabelReport:
        for source in self.settings.label.human:
            self._human(source)
        if self.settings.label.teacher is not None:
            self._teacher()
        for split in self.splits.values():
            split.write(self.frames, self.categories)
        self.dataset.write_manifest(self.frames)
        return self.report

    def _human(self, source: HumanLabelSource) -> None:
        index = FrameIndex({f.image_id: f for f in self.frames})
        for human in human_labels(source, index, self.categories, self.report.problems):
            self.splits[human.frame.split].put(human.frame, human.panoptic, human.segments)
            human.frame.label = {"source": "human", "annotation": human.annotation,
                                 "matched_by": human.matched_by}
            self.report.human += 1

    def _teacher(self) -> None:
        provenance = self._teacher_provenance()
        teacher: Optional[Teacher] = None
        for frame in self.frames:
            label = frame.label or {}
            if label.get("source") == "human" and self.splits[frame.split].has(frame):
                continue
            if _same_teacher(label, provenance) and self.splits[frame.split].has(frame):
                self.report.unchanged += 1
                continue
            teacher = teacher or self._load_teacher()
            pseudo = teacher(read_rgb(self.dataset.image_path(frame)))
            self.splits[frame.split].put(frame, pseudo.panoptic, pseudo.segments)
            frame.label = {**provenance, "labelled_fraction": round(pseudo.labelled_fraction, 4)}
            self.report.teacher += 1
            if self.report.teacher % PROGRESS_PERIOD == 0:
                log.info("teacher labels: %d frames", self.report.teacher)

    def _teacher_provenance(self) -> dict:
        path = self.settings.teacher_checkpoint
        settings = asdict(self.settings.label.teacher)
        settings.pop("checkpoint")
        settings.pop("device")
        return {"source": "teacher", "teacher": str(path), "teacher_sha256": sha256_of(path),
                "settings": settings}

    def _load_teacher(self) -> Teacher:
        teacher_settings = self.settings.label.teacher
        predictor = Predictor.from_checkpoint(self.settings.teacher_checkpoint,
                                              teacher_settings.device,
                                              teacher_settings.input_long_side)
        if predictor.categories.category_ids() != self.categories.category_ids():
            raise ValueError(f"teacher {self.settings.teacher_checkpoint} has other classes "
                             f"than the base model {self.settings.finetune.base}")
        return Teacher(predictor, teacher_settings)


def _same_teacher(label: dict, provenance: dict) -> bool:
    return all(label.get(k) == provenance[k] for k in ("source", "teacher_sha256", "settings"))


def label(settings: FleetSettings, dataset: Optional[FleetDataset] = None) -> LabelReport:
    """Run the label step on ``settings.dataset`` (see the module docstring)."""
    return Labeller(settings, dataset or FleetDataset(settings.dataset)).run()
