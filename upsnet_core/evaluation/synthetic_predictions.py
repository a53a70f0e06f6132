"""Imperfect panoptic predictions made from ground truth, to test and time evaluators.

Each ground-truth segment is kept, eroded, dilated, shifted, given another class of the
same kind, split in two or dropped; a few spurious segments are added. Predicted ids are
random RGB ids (as panopticapi writes them) and every listed segment is in the map.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from ..data.panoptic_io import MAX_RGB_ID, load_json, read_panoptic_png, write_panoptic_png

ACTIONS = ("keep", "erode", "dilate", "shift", "swap", "split", "drop")
ACTION_P = (0.40, 0.15, 0.10, 0.12, 0.08, 0.07, 0.08)


def perturb_panoptic(gt_ids: np.ndarray, segments: Sequence[Mapping],
                     categories: Sequence[Mapping],
                     rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """An imperfect prediction of a ground truth.

    Args:
        gt_ids: ``(H, W)`` ground-truth segment ids (0 void).
        segments: its ``segments_info`` (id, category_id).
        categories: COCO-style dicts (id, isthing) from which swapped/added classes are drawn.
    Returns:
        ``(H, W)`` int32 predicted ids and their ``segments_info`` (id, category_id).
    """
    pred = np.zeros(gt_ids.shape, dtype=np.int32)
    painted: list[tuple[int, int]] = []  # (label, category_id); label = index + 1
    for segment in segments:
        mask = gt_ids == segment["id"]
        category_id = int(segment["category_id"])
        action = ACTIONS[rng.choice(len(ACTIONS), p=ACTION_P)]
        if action == "drop":
            continue
        if action == "swap":
            category_id = _other_category(categories, category_id, rng)
        for part in _alter(mask, action, rng):
            painted.append((len(painted) + 1, category_id))
            pred[part] = len(painted)
    for _ in range(int(rng.integers(0, 4))):
        painted.append((len(painted) + 1, int(rng.choice([c["id"] for c in categories]))))
        pred[_random_blob(gt_ids.shape, rng)] = len(painted)
    return _assign_random_ids(pred, painted, rng)


def _alter(mask: np.ndarray, action: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The predicted mask(s) of one ground-truth mask under ``action``."""
    kernel = np.ones((2 * int(rng.integers(1, 6)) + 1,) * 2, dtype=np.uint8)
    if action == "erode":
        return [cv2.erode(mask.view(np.uint8), kernel).astype(bool)]
    if action == "dilate":
        return [cv2.dilate(mask.view(np.uint8), kernel).astype(bool)]
    if action == "shift":
        dy, dx = rng.integers(-mask.shape[0] // 20, mask.shape[0] // 20 + 1, 2)
        return [np.roll(mask, (int(dy), int(dx)), axis=(0, 1))]
    if action == "split":
        columns = np.flatnonzero(mask.any(axis=0))
        if len(columns) < 2:
            return [mask]
        left = np.arange(mask.shape[1]) < columns[len(columns) // 2]
        return [mask & left, mask & ~left]
    return [mask]


def _other_category(categories: Sequence[Mapping], category_id: int,
                    rng: np.random.Generator) -> int:
    kind = next(c["isthing"] for c in categories if c["id"] == category_id)
    choices = [c["id"] for c in categories if c["isthing"] == kind and c["id"] != category_id]
    return int(rng.choice(choices)) if choices else category_id


def _random_blob(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    blob = np.zeros(shape, dtype=np.uint8)
    center = (int(rng.integers(shape[1])), int(rng.integers(shape[0])))
    axes = (int(rng.integers(3, shape[1] // 8 + 4)), int(rng.integers(3, shape[0] // 8 + 4)))
    cv2.ellipse(blob, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return blob.astype(bool)


def _assign_random_ids(pred: np.ndarray, painted: list[tuple[int, int]],
                       rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    present = np.zeros(len(painted) + 1, dtype=bool)
    present[np.unique(pred)] = True
    ids = np.zeros(len(painted) + 1, dtype=np.int32)
    ids[1:] = rng.choice(MAX_RGB_ID, size=len(painted), replace=False) + 1
    segments = [{"id": int(ids[label]), "category_id": category_id}
                for label, category_id in painted if present[label]]
    return ids[pred], segments


def write_prediction_set(gt_json: str | Path, gt_folder: str | Path, out_json: str | Path,
                         out_folder: str | Path, seed: int = 0) -> None:
    """Perturb every ground-truth image of a COCO-panoptic set into a prediction set."""
    gt = load_json(gt_json)
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for i, annotation in enumerate(gt["annotations"]):
        rng = np.random.default_rng([seed, i])
        ids, segments = perturb_panoptic(
            read_panoptic_png(Path(gt_folder) / annotation["file_name"]),
            annotation["segments_info"], gt["categories"], rng)
        write_panoptic_png(out_folder / annotation["file_name"], ids)
        annotations.append({"image_id": annotation["image_id"],
                            "file_name": annotation["file_name"], "segments_info": segments})
    Path(out_json).write_text(json.dumps({"annotations": annotations,
                                          "categories": gt["categories"]}))


def reference_pq(gt_json: Path, gt_folder: Path, pred_json: Path, pred_folder: Path) -> dict:
    """cityscapesscripts' own single-process PQ on COCO-panoptic files, for the tests and
    benchmarks that compare against it (cityscapesscripts is imported only here)."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as reference

    gt, pred = json.loads(Path(gt_json).read_text()), json.loads(Path(pred_json).read_text())
    categories = {c["id"]: c for c in gt["categories"]}
    predictions = {a["image_id"]: a for a in pred["annotations"]}
    pairs = [(a, predictions[a["image_id"]]) for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = reference.pq_compute_single_core(0, pairs, str(gt_folder), str(pred_folder),
                                                categories)
    return reference.average_pq(stat, categories)
