"""Evaluation of a model on a dataset split: the one code path of ``train.py``'s periodic
evaluation and of ``evaluate.py``.

Images go through the network at the ``data:`` settings' test size and the label image is
mapped back to the file's full size, so metrics are always measured against the
full-resolution ground truth.
"""
from __future__ import annotations

import math
import statistics
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from upsnet_core.categories import CategorySet
from upsnet_core.data import PanopticDataset
from upsnet_core.evaluation import InstanceEvaluator, PanopticEvaluator, SemanticEvaluator
from upsnet_core.data.transforms import resize_image
from upsnet_core.inference import device_name, scaled_size
from upsnet_core.modeling import SEMANTIC_UNKNOWN, PanopticResult, UPSNet
from upsnet_core.profiling import StageTimer

from .rng import preserved_rng_state
from .settings import DataSettings

UNKNOWN = "(unknown)"
"""Name of the prediction-only class of unknown pixels in the semantic confusion matrix."""


def network_size(height: int, width: int, data: DataSettings,
                 model_long_side: int = 0) -> tuple[int, int]:
    """Input size of the network for a ``height x width`` image: ``test_scale`` times the
    size, or the short side at ``test_short_side`` with the long side at most ``max_size``;
    when neither is set, the long side at the model's ``inference.input_long_side``
    (``model_long_side``, 0: unchanged) as the node and ``predict`` do."""
    if data.test_scale is not None:
        factor = data.test_scale
    elif data.test_short_side is not None:
        factor = data.test_short_side / min(height, width)
        if data.max_size is not None:
            factor = min(factor, data.max_size / max(height, width))
    else:
        return scaled_size(height, width, model_long_side)
    return max(1, round(height * factor)), max(1, round(width * factor))


class _Evaluators:
    """PQ, mIoU and mask AP of panoptic results against dataset targets.

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
        semantic = self.semantic.summarize()
        iou = {name: None if math.isnan(v) else v  # None: class neither present nor predicted
               for name, v in semantic["per_class_iou"].items() if name != UNKNOWN}
        known = [v for v in iou.values() if v is not None]
        return {"pq": self.panoptic.summarize(),
                "miou": sum(known) / len(known) if known else 0.0, "per_class_iou": iou,
                "pixel_accuracy": semantic["pixel_accuracy"],
                "mask_ap": self.instance.summarize()}


def evaluate_model(model: UPSNet, dataset: PanopticDataset, data: DataSettings,
                   device: torch.device, merge: str = "upsnet",
                   max_images: Optional[int] = None, progress: bool = False) -> dict:
    """PQ (All/Things/Stuff and per class), mIoU, mask AP and inference time of ``model``
    on the first ``max_images`` (default all) items of ``dataset`` (loaded without
    transforms).

    The model is put in eval mode for the duration and the global random generators are
    left untouched, so evaluating in the middle of training does not change training.

    Returns:
        ``{"pq": PanopticEvaluator.summarize(), "miou": float, "per_class_iou": {name:
        iou}, "pixel_accuracy": float, "mask_ap": InstanceEvaluator.summarize(),
        "timing": {"median_ms", "mean_ms", "device"}, "images": N, "merge": merge,
        "class_names": {category_id: name}}``.
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    if count == 0:
        raise ValueError(f"no images to evaluate in {dataset.source}")
    evaluators = _Evaluators(model.categories)
    timer = StageTimer(device)
    was_training = model.training
    model.eval()
    try:
        with preserved_rng_state():
            for index in tqdm(range(count), desc="evaluate", disable=not progress):
                image, target = dataset[index]
                size = network_size(*image.shape[-2:], data,
                                    model.inference_config.input_long_side)
                network_input = resize_image(image, size)
                network_input = network_input.to(device)
                output_size = tuple(image.shape[-2:])
                if index == 0:  # warm-up: one-time initialisation is not inference time
                    model.predict([network_input], output_sizes=[output_size], merge=merge)
                with timer("predict"):
                    result = model.predict([network_input], output_sizes=[output_size],
                                           merge=merge)[0]
                evaluators.update(target, result)
    finally:
        model.train(was_training)
    return {**evaluators.summarize(), "merge": merge, "images": count,
            "class_names": {c.id: c.name for c in model.categories},
            "timing": {"median_ms": statistics.median(timer.times["predict"]),
                       "mean_ms": statistics.fmean(timer.times["predict"]),
                       "device": device_name(device)}}


def headline(results: dict) -> dict[str, float]:
    """Flat scalars of :func:`evaluate_model`'s results, for logs and TensorBoard:
    ``pq, sq, rq`` (All), ``pq_things, ..., rq_stuff``, ``miou`` and ``mask_ap``."""
    values = {"miou": results["miou"], "mask_ap": results["mask_ap"]["AP"]}
    for group, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for metric in ("pq", "sq", "rq"):
            values[metric + suffix] = results["pq"][group][metric]
    return values
