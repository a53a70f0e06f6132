"""PQ, mIoU and mask AP of a model's panoptic results against dataset targets, together."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..categories import CategorySet
from ..modeling import SEMANTIC_UNKNOWN, PanopticResult
from .instance import InstanceEvaluator
from .pq import PanopticEvaluator
from .semantic import SemanticEvaluator

UNKNOWN = "(unknown)"
"""Name of the prediction-only class of unknown pixels in the semantic confusion matrix."""


class PanopticResultEvaluator:
    """PQ, mIoU and mask AP of panoptic results (:class:`PanopticResult`) against dataset
    targets (:mod:`upsnet_core.data.target`): the metrics of ``training.evaluate``, of
    training's periodic evaluation and of rosbag replay evaluation.

    mIoU is that of the prediction's semantic labelling: its unknown pixels form an extra
    prediction-only class, so they count as misses of the true class and the extra class
    itself is left out of the mean. Instances for mask AP are the label image's thing
    segments with their detection scores.
    """

    def __init__(self, categories: CategorySet):
        self.categories = categories
        self.panoptic = PanopticEvaluator(categories)
        names = [c.name for c in categories] + [UNKNOWN]
        self.semantic = SemanticEvaluator(categories.num_classes + 1, class_names=names)
        self.instance = InstanceEvaluator(categories)
        self._index_of_id = np.full(SEMANTIC_UNKNOWN + 1, categories.num_classes, np.int64)
        self._index_of_id[categories.category_ids()] = np.arange(categories.num_classes)

    def update(self, target: dict, result: PanopticResult) -> None:
        """Add one image: ``target`` with ``panoptic``, ``segments_info``, ``semantic``,
        ``image_id`` and the instance fields; ``result`` at the target's size."""
        panoptic = result.panoptic.cpu()
        self.panoptic.update(target["panoptic"].numpy(), target["segments_info"],
                             panoptic.numpy(), result.segments, image_id=target["image_id"])
        self.semantic.update(self._index_of_id[result.semantic.cpu().numpy()], target["semantic"])
        things = [s for s in result.segments if s["isthing"]]
        masks = torch.stack([panoptic == s["id"] for s in things]) if things else \
            torch.zeros((0, *panoptic.shape), dtype=torch.bool)
        self.instance.update_from_target(
            target, masks, [s["score"] for s in things],
            [self.categories.thing_label(s["category_id"]) for s in things])

    def summarize(self) -> dict:
        """``{"pq": PanopticEvaluator.summarize(), "miou", "per_class_iou": {name: iou or
        None}, "pixel_accuracy", "mask_ap": InstanceEvaluator.summarize()}``."""
        semantic = self.semantic.summarize()
        iou = {name: None if math.isnan(v) else v  # None: class neither present nor predicted
               for name, v in semantic["per_class_iou"].items() if name != UNKNOWN}
        known = [v for v in iou.values() if v is not None]
        return {"pq": self.panoptic.summarize(),
                "miou": sum(known) / len(known) if known else 0.0, "per_class_iou": iou,
                "pixel_accuracy": semantic["pixel_accuracy"],
                "mask_ap": self.instance.summarize()}
