"""Pseudo-labels from a teacher model, keeping only what it is confident about.

The teacher (:class:`upsnet_core.inference.Predictor`, optionally at a larger input size)
segments the frame. A segment is kept when

* it is a thing with a detection score of at least ``min_score`` (stuff segments have no
  score of their own),
* with ``flip_check``, the teacher's segmentation of the mirrored frame, mirrored back,
  gives at least ``min_agreement`` of its pixels the same class; its pixels where the two
  views disagree become void (boundaries and unstable regions),
* and what remains has at least ``min_area`` pixels.

Everything else is void (id 0), which the training losses ignore. The label image uses
the model's encoding (``category_id * 1000 + k``; see :mod:`upsnet_core.categories`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from upsnet_core.data.panoptic_io import IdIndexer
from upsnet_core.inference import Predictor

from .settings import TeacherSettings


@dataclass
class PseudoLabel:
    """``panoptic`` ``(H, W)`` int32 label image (void 0) and its ``segments``
    (``id``, ``category_id``, ``iscrowd``) in label order."""

    panoptic: np.ndarray
    segments: list[dict]

    @property
    def labelled_fraction(self) -> float:
        return float(np.count_nonzero(self.panoptic)) / self.panoptic.size


class Teacher:
    """A predictor plus the confidence rules of :class:`TeacherSettings`."""

    def __init__(self, predictor: Predictor, settings: TeacherSettings):
        self.predictor, self.settings = predictor, settings
        self._indexer = IdIndexer()

    def __call__(self, rgb: np.ndarray) -> PseudoLabel:
        result = self.predictor(rgb)
        panoptic = result.panoptic.cpu().numpy()
        segments = result.segments
        index = self._indexer(panoptic, [s["id"] for s in segments])
        keep = np.asarray([True] + [self._confident(s) for s in segments])
        if self.settings.flip_check:
            keep, pixels = self._flip_agreement(rgb, index, segments, keep)
        else:
            pixels = np.ones(index.shape, dtype=bool)
        kept = keep[index] & pixels
        areas = np.bincount(index[kept], minlength=len(segments) + 1)
        keep &= areas >= max(self.settings.min_area, 1)
        keep[0] = False
        ids = np.asarray([0] + [s["id"] for s in segments], dtype=np.int32)
        labelled = np.where(keep[index] & pixels, np.take(ids, index), 0).astype(np.int32)
        return PseudoLabel(labelled, [{"id": s["id"], "category_id": s["category_id"],
                                       "iscrowd": 0}
                                      for i, s in enumerate(segments, 1) if keep[i]])

    def _confident(self, segment: dict) -> bool:
        return not segment["isthing"] or segment["score"] >= self.settings.min_score

    def _flip_agreement(self, rgb: np.ndarray, index: np.ndarray, segments: list[dict],
                        keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segments still kept after the agreement rule, and the pixels whose class the
        mirrored view confirms."""
        mirrored = self.predictor(np.ascontiguousarray(rgb[:, ::-1]))
        other = mirrored.semantic.cpu().numpy()[:, ::-1]
        category = np.asarray([-1] + [s["category_id"] for s in segments])
        agree = other == np.take(category, index)
        areas = np.bincount(index.ravel(), minlength=len(segments) + 1)
        agreeing = np.bincount(index[agree], minlength=len(segments) + 1)
        agreement = agreeing / np.maximum(areas, 1)
        return keep & (agreement >= self.settings.min_agreement), agree
