"""Reading and writing COCO-panoptic PNGs, and fast per-segment statistics.

A panoptic PNG stores one segment id per pixel as RGB: ``id = R + 256 * G + 256**2 * B``
(COCO panoptic and Cityscapes ``createPanopticImgs``); ``0`` is void.

Per-segment work is done on a *compact index map*: ``0`` for void and ``i + 1`` for the
``i``-th segment of a list, so that areas, boxes and overlaps are a few ``np.bincount``
calls instead of one full-image pass per segment.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

MAX_RGB_ID = 256 ** 3 - 1
"""Largest id an RGB panoptic PNG can hold."""


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` int32 segment ids."""
    return _rgba_to_id(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA))


def _rgba_to_id(rgba: np.ndarray) -> np.ndarray:
    ids = rgba.view("<u4")[..., 0]
    ids &= 0xFFFFFF
    return ids.view(np.int32)


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` integer ids in ``0 .. 2**24 - 1`` -> ``(H, W, 3)`` uint8 RGB."""
    return np.ascontiguousarray(_id_to_rgba(ids)[..., :3])


def _id_to_rgba(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_RGB_ID):
        raise ValueError(f"segment ids must lie in 0 .. {MAX_RGB_ID} to fit an RGB PNG; "
                         f"got {ids.min()} .. {ids.max()}")
    return ids.astype("<u4").view(np.uint8).reshape(ids.shape + (4,))


def load_json(path: str | Path) -> dict:
    """A JSON file's content; a missing file is a FileNotFoundError naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"JSON file {path} does not exist")
    with open(path) as f:
        return json.load(f)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Segment ids of an RGB panoptic PNG as an ``(H, W)`` int32 array."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"panoptic PNG {path} does not exist")
        raise ValueError(f"cannot decode panoptic PNG {path}")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"panoptic PNG {path} must be 8-bit RGB; got shape {bgr.shape}, "
                         f"dtype {bgr.dtype}")
    return _rgba_to_id(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA))


def _png_params(strategy: int, row_filter: str) -> list[int]:
    """Level-1 deflate with one fixed row filter (OpenCV >= 4.10; else libpng's choice)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, strategy]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, f"IMWRITE_PNG_FILTER_{row_filter}")]
    return params


def _write(path: str | Path, bgr: np.ndarray, params: list[int]) -> None:
    ok, data = cv2.imencode(".png", bgr, params)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    Path(path).write_bytes(data.tobytes())


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB photo as PNG (fast, deterministic settings)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    _write(path, bgr, _png_params(cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY, "UP"))


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write ``(H, W)`` integer segment ids as an RGB panoptic PNG.

    Unfiltered rows: label images still compress ~100x and decode ~3x faster than with
    row filters, which matters to every reader (data loading, evaluation).
    """
    bgr = cv2.cvtColor(_id_to_rgba(ids), cv2.COLOR_RGBA2BGR)
    _write(path, bgr, _png_params(cv2.IMWRITE_PNG_STRATEGY_DEFAULT, "NONE"))


class IdIndexer:
    """Turns id maps into compact index maps with a reusable lookup table.

    One table lookup per pixel; the table grows to the largest id seen (at most
    ``2**24`` entries of int16) and is reset after each call, so repeated calls cost
    no allocation.
    """

    def __init__(self) -> None:
        self._table = np.full(1 << 16, -1, dtype=np.int16)

    def __call__(self, id_map: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Compact index map of ``id_map`` with respect to ``ids``.

        Args:
            id_map: ``(H, W)`` non-negative integer ids.
            ids: the distinct non-zero segment ids, in order.
        Returns:
            ``(H, W)`` int16: ``0`` where ``id_map == 0``, ``i + 1`` where ``id_map == ids[i]``
            and ``-1`` where the id is not listed.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) >= np.iinfo(np.int16).max:
            raise ValueError(f"too many segments ({len(ids)}) in one image")
        low = min(int(id_map.min(initial=0)), int(ids.min(initial=0)))
        high = max(int(id_map.max(initial=0)), int(ids.max(initial=0)))
        if low < 0 or high > MAX_RGB_ID:
            raise ValueError(f"segment ids must lie in 0 .. {MAX_RGB_ID}; got {low} .. {high}")
        if high >= len(self._table):
            self._table = np.full(1 << high.bit_length(), -1, dtype=np.int16)
        table = self._table
        table[ids] = np.arange(1, len(ids) + 1, dtype=np.int16)
        table[0] = 0
        index_map = np.take(table, id_map)
        table[ids] = -1
        table[0] = -1
        return index_map


def unlisted_ids(id_map: np.ndarray, index_map: np.ndarray) -> list[int]:
    """The ids of ``id_map`` whose index is ``-1`` (not listed), sorted."""
    return sorted(int(i) for i in np.unique(id_map[index_map < 0]))


def segment_areas_and_boxes(index_map: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and bounding box of every index of a compact index map.

    Args:
        index_map: ``(H, W)`` integers in ``0 .. count - 1``.
        count: number of indices (void included).
    Returns:
        ``areas`` int64 ``(count,)`` and ``boxes`` int64 ``(count, 4)`` as COCO
        ``[x, y, width, height]`` (zeros for absent indices).
    """
    height, width = index_map.shape
    index = index_map.astype(np.int64)
    rows = np.bincount((np.arange(height)[:, None] * count + index).ravel(),
                       minlength=height * count).reshape(height, count)
    cols = np.bincount((np.arange(width)[None, :] * count + index).ravel(),
                       minlength=width * count).reshape(width, count)
    areas = rows.sum(axis=0)
    boxes = np.zeros((count, 4), dtype=np.int64)
    present = areas > 0
    in_row, in_col = rows[:, present] > 0, cols[:, present] > 0
    y0, y1 = in_row.argmax(axis=0), height - in_row[::-1].argmax(axis=0)
    x0, x1 = in_col.argmax(axis=0), width - in_col[::-1].argmax(axis=0)
    boxes[present] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    return areas, boxes
