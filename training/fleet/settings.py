"""The fleet-retraining config (``config/fleet.yaml``), typed and validated.

One YAML file describes the whole loop: where the bags are, how frames are picked, where
labels come from, how the model is fine-tuned, the regression gate and the model
registry. Unknown keys are errors naming the key (the same schema machinery as the model
config, :func:`upsnet_core.config.build_section`). Relative paths are taken from the
working directory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from upsnet_core.config import build_section
from upsnet_core.data import DATASET_KINDS

from ..settings import MixSource


@dataclass
class IngestSettings:
    """Bags -> frames (:mod:`training.fleet.ingest`)."""

    bags: Optional[str] = None
    """Folder of ``<robot id>/<bag>`` (a bag: a folder with ``metadata.yaml``, or a lone
    ``.mcap``/``.db3`` file)."""
    topics: list[str] = field(default_factory=lambda: ["/camera/image_raw"])
    """Image topics (``sensor_msgs/Image`` or ``CompressedImage``) to extract."""
    split: str = "train"
    min_interval: float = 0.5
    """Seconds of stamp time between two kept frames of one topic of one bag."""
    duplicate_threshold: float = 2.0
    """A frame whose grey thumbnail differs from the last kept one's by less than this
    (mean absolute difference, 0..255) is a near duplicate and dropped; 0: keep all."""


@dataclass
class HumanLabelSource:
    """A delivery of human annotations (:mod:`training.fleet.human`)."""

    root: str
    format: str = "cityscapes"
    """``cityscapes`` (createPanopticImgs layout) or ``coco`` (COCO panoptic)."""
    split: str = "train"
    stamp_tolerance_ms: float = 0.0
    """An annotation whose file name carries a stamp (ns) matches the frame of that stamp
    within this tolerance when no frame has its name."""


@dataclass
class TeacherSettings:
    """Pseudo-labels from a teacher model (:mod:`training.fleet.teacher`)."""

    checkpoint: Optional[str] = None
    """Teacher model; null: ``finetune.base`` (the current model)."""
    device: str = "auto"
    input_long_side: Optional[int] = None
    """Long side of the image the teacher sees; null: the model's own
    (``model.inference.input_long_side``), 0: the frame's size."""
    min_score: float = 0.7
    """Thing segments with a lower detection score become void."""
    flip_check: bool = True
    """Also segment the mirrored frame; pixels the two views disagree on become void."""
    min_agreement: float = 0.8
    """Segments whose pixels the mirrored view labels alike less often become void."""
    min_area: int = 64
    """Segments smaller than this (pixels at the frame's size) become void."""


@dataclass
class LabelSettings:
    """Label sources; human labels win over the teacher's."""

    human: list[HumanLabelSource] = field(default_factory=list)
    teacher: Optional[TeacherSettings] = field(default_factory=TeacherSettings)
    """null: human labels only (unlabelled frames stay out of the training set)."""


@dataclass
class FinetuneSettings:
    """Fine-tuning with :mod:`training.train` (:mod:`training.fleet.finetune`)."""

    base: str = "models/upsnet_mobilenet_synthetic.pt"
    """The current model: initial weights, model config, and the teacher by default."""
    new_data_weight: float = 1.0
    """Share of the fleet data in the training stream, relative to ``original_data``."""
    original_data: list[MixSource] = field(default_factory=list)
    """Datasets mixed in at their weights (typically the data the base model saw)."""
    training: dict = field(default_factory=dict)
    """Overrides of the base checkpoint's ``training:`` section (schedule, lr, ...)."""
    data: dict = field(default_factory=dict)
    """Overrides of the base checkpoint's ``data:`` section (augmentation, workers, ...)."""


@dataclass
class GateSettings:
    """The regression gate (:mod:`training.fleet.gate`)."""

    root: Optional[str] = None
    """The fixed regression set (a dataset folder)."""
    kind: str = "cityscapes"
    split: str = "val"
    max_images: Optional[int] = None
    max_pq_drop: float = 0.0
    """Largest accepted drop of overall PQ (fraction: 0.01 is one PQ point)."""
    max_class_pq_drop: float = 0.05
    """Largest accepted drop of any class's PQ."""
    device: str = "auto"


@dataclass
class ExportSettings:
    """The model registry (:mod:`training.fleet.registry`)."""

    registry: str = "outputs/registry"
    name: str = "fleet"
    """Artifacts are ``<registry>/upsnet-<name>-v<N>/``."""
    half: bool = True
    """Store the weights as float16."""


@dataclass
class FleetSettings:
    """The whole loop; everything it writes goes under ``work_dir`` and the registry."""

    work_dir: str = "outputs/fleet"
    ingest: IngestSettings = field(default_factory=IngestSettings)
    label: LabelSettings = field(default_factory=LabelSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    export: ExportSettings = field(default_factory=ExportSettings)

    @property
    def dataset(self) -> Path:
        """The ingested and labelled dataset (Cityscapes layout + manifest)."""
        return Path(self.work_dir) / "dataset"

    @property
    def teacher_checkpoint(self) -> Path:
        teacher = self.label.teacher
        return Path(teacher.checkpoint if teacher and teacher.checkpoint else self.finetune.base)


def fleet_settings(values: dict[str, Any]) -> FleetSettings:
    """Validated settings from a mapping; errors name the key."""
    settings = build_section(FleetSettings, values, "")
    _check(settings)
    return settings


def load_fleet_settings(path: str | Path) -> FleetSettings:
    """Read a fleet YAML file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fleet config not found: {path}")
    try:
        return fleet_settings(yaml.safe_load(path.read_text()) or {})
    except (ValueError, yaml.YAMLError) as error:
        raise ValueError(f"invalid fleet config {path}: {error}") from error


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"config key '{key}' {message}")


def _check(s: FleetSettings) -> None:
    _require(bool(s.ingest.topics), "ingest.topics", "must name at least one image topic")
    _require(s.ingest.min_interval >= 0, "ingest.min_interval", "must be >= 0")
    _require(s.ingest.duplicate_threshold >= 0, "ingest.duplicate_threshold", "must be >= 0")
    for i, source in enumerate(s.label.human):
        _require(source.format in ("cityscapes", "coco"), f"label.human[{i}].format",
                 f"must be 'cityscapes' or 'coco', got {source.format!r}")
        _require(source.stamp_tolerance_ms >= 0, f"label.human[{i}].stamp_tolerance_ms",
                 "must be >= 0")
    teacher = s.label.teacher
    if teacher is not None:
        for name in ("min_score", "min_agreement"):
            _require(0 <= getattr(teacher, name) <= 1, f"label.teacher.{name}",
                     "must be in [0, 1]")
        _require(teacher.input_long_side is None or teacher.input_long_side >= 0,
                 "label.teacher.input_long_side", "must be >= 0 or null")
        _require(teacher.min_area >= 0, "label.teacher.min_area", "must be >= 0")
    _require(s.finetune.new_data_weight > 0, "finetune.new_data_weight", "must be > 0")
    _require(s.gate.kind in DATASET_KINDS, "gate.kind",
             f"must be one of {sorted(DATASET_KINDS)}, got {s.gate.kind!r}")
    for name in ("max_pq_drop", "max_class_pq_drop"):
        _require(0 <= getattr(s.gate, name) <= 1, f"gate.{name}", "must be in [0, 1]")
    _require(s.export.name.replace("-", "").replace("_", "").isalnum(), "export.name",
             f"must be letters, digits, '-' and '_', got {s.export.name!r}")
