"""Bags of many robots -> frames of the fleet dataset, resumable and robust to bad bags.

The bags folder holds one folder per robot, each with its bags (a folder with
``metadata.yaml``, mcap or sqlite3, or a lone ``.mcap``/``.db3`` file) at any depth::

    <bags>/<robot id>/<bag>/...

Every configured image topic of a bag is read through :mod:`upsnet_core.rosbag_io`
(Image or CompressedImage), sub-sampled and freed of near duplicates
(:mod:`training.fleet.selection`), and the kept frames are written as PNGs in the
Cityscapes layout (:mod:`training.fleet.dataset`).

Resumable, bag by bag: a bag's frames are written to a staging folder, moved into place,
and only then is the bag's record (its manifest lines) written, atomically, to
``.ingest/<bag key>.json``; the temporary files of atomic writes that a killed run left
are removed when the next run starts. A bag with a record is skipped on the next run; a bag without
one (never seen, or interrupted at any point) is ingested again from its start, which
rewrites the same bytes. The manifest is rebuilt from all records at the end of a run,
keeping the labels of frames that already have one, so an interrupted run that is resumed
gives the same dataset and manifest as an uninterrupted one.

A damaged bag (cut off mid-write when the robot powered down, a corrupt or malformed
message) gives every intact frame; what was skipped (topic and stamp or log time) is
listed in the bag's record and in the run's report (``damaged``). A bag of which nothing
usable is left (no configured topic, no intact image) is reported in ``failed`` and
skipped; it is tried again on the next run.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from upsnet_core.atomic import remove_interrupted_writes
from upsnet_core.data.panoptic_io import write_png
from upsnet_core.rosbag_io import BagError, iter_images, open_reader, topics

from .dataset import FleetDataset, FrameRecord, robot_city
from .files import short_hash, write_json_atomic
from .selection import FrameSelector
from .settings import IngestSettings

log = logging.getLogger(__name__)

BAG_FILE_SUFFIXES = (".mcap", ".db3")


@dataclass
class BagRef:
    """One bag: its robot and its path (relative to the bags folder, for provenance)."""

    robot: str
    path: Path
    relative: str

    @property
    def key(self) -> str:
        """Name of the bag's record and staging folder."""
        return f"{robot_city(self.robot)}-{short_hash(self.relative)}"


@dataclass
class IngestReport:
    """What one ingest run did."""

    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Bags ingested by an earlier run."""
    failed: dict[str, str] = field(default_factory=dict)
    """Bag -> why nothing of it could be used."""
    damaged: dict[str, list[str]] = field(default_factory=dict)
    """Bag ingested from its intact part -> what was damaged or skipped."""
    frames_read: int = 0
    frames_kept: int = 0
    stopped_early: bool = False
    """``max_frames`` was reached: the run stopped like a crash would, mid-bag."""


class _FrameLimit(Exception):
    """Raised to stop a run after ``max_frames`` kept frames."""


def find_bags(root: Path) -> list[BagRef]:
    """The bags under ``root/<robot>/``, sorted by robot and path."""
    if not root.is_dir():
        raise FileNotFoundError(f"bags folder {root} does not exist (ingest.bags)")
    bags = []
    for robot in sorted(p for p in root.iterdir() if p.is_dir()):
        bags += [BagRef(robot.name, path, path.relative_to(root).as_posix())
                 for path in _bags_below(robot)]
    return bags


def _bags_below(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.iterdir()):
        if path.is_dir() and (path / "metadata.yaml").is_file():
            yield path
        elif path.is_dir():
            yield from _bags_below(path)
        elif path.suffix in BAG_FILE_SUFFIXES:
            yield path


def image_id(bag: BagRef, topic: str, stamp_ns: int) -> str:
    """``<robot>_<stream>_<stamp_ns>`` (see :mod:`training.fleet.dataset`)."""
    return f"{robot_city(bag.robot)}_{short_hash(bag.relative + '|' + topic, 8)}_{stamp_ns}"


class Ingest:
    """One run over a bags folder into a fleet dataset."""

    def __init__(self, settings: IngestSettings, dataset: FleetDataset,
                 max_frames: Optional[int] = None):
        if settings.bags is None:
            raise ValueError("no bags folder: set ingest.bags in the fleet config")
        self.settings, self.dataset, self.max_frames = settings, dataset, max_frames
        self.report = IngestReport()

    def run(self) -> IngestReport:
        """Ingest every bag without a record, then rebuild the manifest (not when stopped
        by ``max_frames``)."""
        bags = find_bags(Path(self.settings.bags))
        self.dataset.bookkeeping.mkdir(parents=True, exist_ok=True)
        for folder in {self.dataset.bookkeeping, self.dataset.manifest_path.parent}:
            for path in remove_interrupted_writes(folder):  # a run killed mid-write
                log.info("removed %s, left by an interrupted run", path)
        try:
            for bag in bags:
                self._bag(bag)
        except _FrameLimit:
            self.report.stopped_early = True
            return self.report
        self._write_manifest()
        return self.report

    def _record_path(self, bag: BagRef) -> Path:
        return self.dataset.bookkeeping / f"{bag.key}.json"

    def _bag(self, bag: BagRef) -> None:
        if self._record_path(bag).is_file():
            self.report.skipped.append(bag.relative)
            return
        staging = self.dataset.bookkeeping / f"{bag.key}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        problems: list[str] = []
        try:
            records = self._extract(bag, staging, problems)
        except BagError as error:
            shutil.rmtree(staging, ignore_errors=True)
            self.report.failed[bag.relative] = str(error)
            log.warning("skipping bag %s: %s", bag.relative, error)
            return
        self._commit(bag, records, staging, problems)
        self.report.ingested.append(bag.relative)
        if problems:
            self.report.damaged[bag.relative] = problems
            log.warning("bag %s is damaged, its intact frames are kept; skipped:\n  %s",
                        bag.relative, "\n  ".join(problems))
        log.info("bag %s: %d frames kept", bag.relative, len(records))

    def _commit(self, bag: BagRef, records: list[FrameRecord], staging: Path,
                problems: list[str]) -> None:
        """Move the staged frames into place, then write the bag's record."""
        for record in records:
            destination = self.dataset.image_path(record)
            destination.parent.mkdir(parents=True, exist_ok=True)
            (staging / destination.name).replace(destination)
        write_json_atomic(self._record_path(bag), {
            "bag": bag.relative, "robot": bag.robot, "frames": [asdict(r) for r in records],
            "problems": problems})
        shutil.rmtree(staging)

    def _extract(self, bag: BagRef, staging: Path, problems: list[str]) -> list[FrameRecord]:
        """The bag's kept frames, written to ``staging``; its problems go to ``problems``.
        BagError when it has no configured topic or no intact image at all."""
        with open_reader(bag.path) as reader:
            present = [t for t in self.settings.topics if t in topics(reader)]
            damage = reader.damage
        if not present:
            damaged = f"; damaged: {'; '.join(damage)}" if damage else ""
            raise BagError(f"bag {bag.path} has none of the image topics "
                           f"{self.settings.topics}{damaged}")
        records, read = [], 0
        for topic in present:
            selector = FrameSelector(self.settings.min_interval,
                                     self.settings.duplicate_threshold)
            for stamp, frame_id, rgb in iter_images(bag.path, topic, problems):
                read += 1
                self.report.frames_read += 1
                if not selector.keep(stamp, rgb):
                    continue
                record = FrameRecord(image_id(bag, topic, stamp), self.settings.split,
                                     bag.robot, bag.relative, topic, stamp, frame_id)
                write_png(staging / self.dataset.image_path(record).name, rgb)
                records.append(record)
                self._count_kept()
        if not read:
            raise BagError(f"bag {bag.path}: no intact image on {', '.join(present)}; "
                           + "; ".join(problems or ["the topics are empty"]))
        return records

    def _count_kept(self) -> None:
        self.report.frames_kept += 1
        if self.max_frames is not None and self.report.frames_kept >= self.max_frames:
            raise _FrameLimit

    def _write_manifest(self) -> None:
        """All bags' records, with the labels the current manifest has for them."""
        labels = {r.image_id: r.label for r in self.dataset.read_manifest()}
        records = []
        for path in sorted(self.dataset.bookkeeping.glob("*.json")):
            for frame in json.loads(path.read_text())["frames"]:
                records.append(FrameRecord(**{**frame, "label": labels.get(frame["image_id"])}))
        self.dataset.write_manifest(records)


def ingest(settings: IngestSettings, dataset: FleetDataset,
           max_frames: Optional[int] = None) -> IngestReport:
    """Run ingest (see the module docstring); the report of what it did."""
    return Ingest(settings, dataset, max_frames).run()
