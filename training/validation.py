"""Evaluation of a model on a dataset split: the one code path of ``train.py``'s periodic
evaluation and of ``evaluate.py``.

Images go through the network at the ``data:`` settings' test size and the label image is
mapped back to the file's full size, so metrics are always measured against the
full-resolution ground truth.
"""
from __future__ import annotations

import statistics
from typing import Optional

import torch
from tqdm import tqdm

from upsnet_core.data import PanopticDataset
from upsnet_core.data.transforms import resize_image
from upsnet_core.evaluation import PanopticResultEvaluator
from upsnet_core.inference import device_name, scaled_size
from upsnet_core.modeling import UPSNet
from upsnet_core.profiling import StageTimer

from .rng import preserved_rng_state
from .settings import DataSettings

def network_size(height: int, width: int, data: DataSettings,
                 model_long_side: int = 0) -> tuple[int, int]:
    """Input size of the network for a ``height x width`` image: the long side at the
    model's ``inference.input_long_side`` (``model_long_side``) when it has one, as the
    node and ``predict`` do; else ``test_scale`` times the size, or the short side at
    ``test_short_side`` with the long side at most ``max_size``; else unchanged."""
    if model_long_side:
        return scaled_size(height, width, model_long_side)
    if data.test_scale is not None:
        factor = data.test_scale
    elif data.test_short_side is not None:
        factor = data.test_short_side / min(height, width)
        if data.max_size is not None:
            factor = min(factor, data.max_size / max(height, width))
    else:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def evaluate_model(model: UPSNet, dataset: PanopticDataset, data: DataSettings,
                   device: torch.device, merge: str | None = None,
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
    merge = model.resolve_merge(merge)  # None: the architecture's own
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    if count == 0:
        raise ValueError(f"no images to evaluate in {dataset.source}")
    evaluators = PanopticResultEvaluator(model.categories)
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
