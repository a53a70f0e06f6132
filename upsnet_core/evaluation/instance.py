"""Instance segmentation mask AP (COCO protocol) through pycocotools."""
from __future__ import annotations

import contextlib
import io
from typing import Optional

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..categories import CategorySet

ArrayLike = np.ndarray | torch.Tensor
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _numpy(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _encode(masks: ArrayLike) -> list[dict]:
    """RLEs of ``(N, H, W)`` binary masks."""
    masks = _numpy(masks).astype(bool)
    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


class InstanceEvaluator:
    """Accumulates instance predictions and ground truth; :meth:`summarize` runs COCOeval.

    Labels are thing labels ``1 .. num_things`` of ``categories``.
    """

    def __init__(self, categories: CategorySet):
        self.categories = categories
        self._images: list[dict] = []
        self._gt: list[dict] = []
        self._dt: list[dict] = []

    def update(self, gt_masks: ArrayLike, gt_labels: ArrayLike, pred_masks: ArrayLike,
               pred_scores: ArrayLike, pred_labels: ArrayLike,
               gt_crowd_masks: Optional[ArrayLike] = None,
               gt_crowd_labels: Optional[ArrayLike] = None) -> None:
        """Add one image.

        Args:
            gt_masks: ``(N, H, W)`` binary; gt_labels: ``(N,)`` thing labels.
            pred_masks: ``(M, H, W)`` binary (threshold soft masks first);
                pred_scores: ``(M,)`` float; pred_labels: ``(M,)`` thing labels.
            gt_crowd_masks, gt_crowd_labels: crowd regions (``(C, H, W)``, ``(C,)``):
                detections on them are ignored, not false positives.
        """
        height, width = _numpy(gt_masks).shape[-2:]
        if _numpy(pred_masks).shape[-2:] != (height, width) and len(pred_masks):
            raise ValueError(f"prediction masks are {tuple(_numpy(pred_masks).shape[-2:])}, "
                             f"ground truth masks {(height, width)}")
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        groups = [(gt_masks, gt_labels, 0)]
        if gt_crowd_masks is not None:
            groups.append((gt_crowd_masks, gt_crowd_labels, 1))
        for masks, labels, iscrowd in groups:
            for rle, label in zip(_encode(masks), _numpy(labels).tolist()):
                self._gt.append({"id": len(self._gt) + 1, "image_id": image_id,
                                 "category_id": int(label), "segmentation": rle,
                                 "area": float(mask_utils.area(rle)),
                                 "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": iscrowd})
        for rle, score, label in zip(_encode(pred_masks), _numpy(pred_scores).tolist(),
                                     _numpy(pred_labels).tolist()):
            self._dt.append({"image_id": image_id, "category_id": int(label),
                             "segmentation": rle, "score": float(score)})

    def update_from_target(self, target: dict, pred_masks: ArrayLike, pred_scores: ArrayLike,
                           pred_labels: ArrayLike) -> None:
        """Add one image whose ground truth is a dataset target (crowd regions included)."""
        crowd = [s for s in target["segments_info"] if s["iscrowd"]
                 and s["category_id"] in self.categories
                 and self.categories.by_id(s["category_id"]).isthing]
        panoptic = target["panoptic"]
        crowd_masks = (torch.stack([panoptic == s["id"] for s in crowd]) if crowd
                       else torch.zeros((0,) + tuple(panoptic.shape), dtype=torch.bool))
        crowd_labels = [self.categories.thing_label(s["category_id"]) for s in crowd]
        self.update(target["masks"], target["labels"], pred_masks, pred_scores, pred_labels,
                    crowd_masks, crowd_labels)

    def summarize(self) -> dict:
        """``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` and ``per_class`` AP by category id,
        as fractions (``-1`` where COCOeval has nothing to average); all zero without
        predictions."""
        if not self._dt:
            return {**{m: 0.0 for m in METRICS},
                    "per_class": {c.id: 0.0 for c in self.categories.things}}
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = self._run_cocoeval()
        precision = evaluation.eval["precision"]  # (iou, recall, class, area, max dets)
        per_class = {}
        for k, category in enumerate(self.categories.things):
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            per_class[category.id] = float(values.mean()) if values.size else -1.0
        return {**{m: float(v) for m, v in zip(METRICS, evaluation.stats[:6])},
                "per_class": per_class}

    def _run_cocoeval(self) -> COCOeval:
        gt = COCO()
        gt.dataset = {"images": self._images, "annotations": self._gt,
                      "categories": [{"id": t, "name": c.name} for t, c in
                                     enumerate(self.categories.things, start=1)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(self._dt), iouType="segm")
        evaluation.params.catIds = list(range(1, self.categories.num_things + 1))
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        return evaluation
