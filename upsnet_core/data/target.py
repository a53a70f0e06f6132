"""The training/evaluation target of one image, shared by loaders and transforms.

A target is a dict:

* ``boxes`` float32 ``(N, 4)`` xyxy pixels (``x2`` = last column + 1);
* ``labels`` int64 ``(N,)`` thing labels ``1 .. num_things``;
* ``masks`` uint8 ``(N, H, W)``;
* ``semantic`` int64 ``(H, W)`` semantic index, :data:`IGNORE_INDEX` for void;
* ``panoptic`` int32 ``(H, W)``: ``category_id * 1000 + k`` for thing instance ``k >= 1``,
  ``category_id * 1000`` for stuff and crowd regions, ``0`` for void;
* ``segments_info`` list of ``{id, category_id, iscrowd, area, bbox}`` (``id`` = value in
  ``panoptic``, ``bbox`` = ``[x, y, w, h]``), segments absent from the map dropped;
* ``image_id`` str and ``orig_size`` ``(H, W)``.

Instance ``i`` (row ``i`` of boxes/labels/masks) is the ``i``-th entry of ``segments_info``
whose id is not a multiple of 1000; crowd regions are not instances.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from ..categories import IGNORE_INDEX, LABEL_DIVISOR, CategorySet
from .panoptic_io import IdIndexer, segment_areas_and_boxes, unlisted_ids

_local = threading.local()


def _indexer() -> IdIndexer:
    if not hasattr(_local, "indexer"):
        _local.indexer = IdIndexer()
    return _local.indexer


def is_instance_id(segment_id: int) -> bool:
    """True for a thing instance in the label-image encoding (not stuff, crowd or void)."""
    return segment_id % LABEL_DIVISOR != 0


def target_from_index(index_map: np.ndarray, segments: Sequence[dict], categories: CategorySet,
                      image_id: str, orig_size: tuple[int, int]) -> dict:
    """Target of an image given as a compact index map.

    Args:
        index_map: ``(H, W)`` integers, ``0`` void and ``i + 1`` for ``segments[i]``.
        segments: ``{id, category_id, iscrowd}`` in the label-image encoding, ids distinct,
            categories in ``categories``.
    """
    semantic = [IGNORE_INDEX] + [categories.semantic_index(s["category_id"]) for s in segments]
    labels = [0] + [categories.thing_label(s["category_id"]) if is_instance_id(s["id"]) else 0
                    for s in segments]
    semantic_map = torch.from_numpy(np.take(np.asarray(semantic, dtype=np.int64), index_map))
    return _assemble(index_map, segments, semantic_map, np.asarray(labels, dtype=np.int64),
                     image_id, orig_size)


def refresh_target(target: dict, panoptic: torch.Tensor, semantic: torch.Tensor) -> dict:
    """The target after a geometric change (resize, flip, crop) of its two label maps.

    ``panoptic`` and ``semantic`` are the transformed maps (same segment ids, sampled at the
    same pixels); masks, boxes, areas and bboxes are recomputed and emptied segments and
    instances dropped.
    """
    segments = target["segments_info"]
    index_map = _indexer()(panoptic.numpy(), [s["id"] for s in segments])
    labels = np.zeros(len(segments) + 1, dtype=np.int64)
    positions = [i + 1 for i, s in enumerate(segments) if is_instance_id(s["id"])]
    labels[positions] = target["labels"].numpy()
    return _assemble(index_map, segments, semantic, labels, target["image_id"],
                     target["orig_size"])


def index_label_image(panoptic: np.ndarray, segments: Sequence[dict], source: str) -> np.ndarray:
    """Compact index map of ``panoptic`` w.r.t. ``segments``; ``source`` names it in errors."""
    index_map = _indexer()(panoptic, [s["id"] for s in segments])
    if (index_map < 0).any():
        raise ValueError(f"{source}: ids {unlisted_ids(panoptic, index_map)} appear in the "
                         "panoptic map but not in segments_info")
    return index_map


def _assemble(index_map: np.ndarray, segments: Sequence[dict], semantic: torch.Tensor,
              labels: np.ndarray, image_id: str, orig_size: tuple[int, int]) -> dict:
    """Build the target dict; ``labels[i + 1]`` is segment ``i``'s thing label or 0."""
    areas, boxes = segment_areas_and_boxes(index_map, len(segments) + 1)
    ids = np.asarray([0] + [s["id"] for s in segments], dtype=np.int32)
    kept = [i for i in range(1, len(segments) + 1) if areas[i] > 0]
    instances = np.asarray([i for i in kept if labels[i] > 0], dtype=np.int64)
    xywh = boxes[instances]
    return {
        "boxes": torch.from_numpy(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
                                                 axis=1).astype(np.float32)).reshape(-1, 4),
        "labels": torch.from_numpy(labels[instances]),
        "masks": torch.from_numpy((index_map[None] == instances[:, None, None]).astype(np.uint8)),
        "semantic": semantic,
        "panoptic": torch.from_numpy(np.take(ids, index_map)),
        "segments_info": [{"id": int(ids[i]), "category_id": segments[i - 1]["category_id"],
                           "iscrowd": int(segments[i - 1].get("iscrowd", 0)),
                           "area": int(areas[i]), "bbox": [int(v) for v in boxes[i]]}
                          for i in kept],
        "image_id": image_id,
        "orig_size": tuple(orig_size),
    }
