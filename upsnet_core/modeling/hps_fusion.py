"""HPS's differentiable fusion and initial segmentation image (Kniewasser et al., "HPS:
Holistic End-to-End Panoptic Segmentation Network with Interrelations"; the seeds'
002 text). Every function works on one image on a grid of ``stride`` input pixels.

- :func:`soft_argmax`: section 3.1, eq. (1), the class of each detected instance.
- :func:`canvas_collection`: section 3.1, mask logits resized into their boxes on empty
  canvas layers; :func:`merge_canvases`: 3.1, layers of one class with high mask IoU merged.
- :func:`fused_logits`: 3.1, stuff logits of the semantic branch stacked with the canvas
  collection, ``#stuff + #instances`` channels whose softmax/argmax is the panoptic output.
- :func:`initial_segmentation_image`: 3.2, same-class canvases merged by weighted average,
  empty layers for classes without instances, ``(#things, h, w)``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .panoptic_head import paste_mask_logits

EMPTY_LOGIT = -1e4
"""Logit of an empty canvas cell (outside the instance's box): it never wins a cell, so an
instance cannot take pixels outside its box where every stuff logit happens to be low. It
fits float16."""


def soft_argmax(logits: Tensor, beta: float) -> Tensor:
    """HPS eq. (1): ``sum_i round(softmax(beta * z)_i) * i`` over the thing classes.

    ``logits (K, N)`` class logits of the N thing classes; returns ``(K,)`` int64 thing
    labels in ``1..N``. With a large ``beta`` the softmax is one-hot at the maximum and the
    sum is its (1-based) index. Where two logits nearly tie, no term rounds to 1 and the
    sum is not a class; such rows take the plain argmax.
    """
    weights = torch.softmax(logits.float() * beta, dim=1).round()
    index = torch.arange(1, logits.shape[1] + 1, device=logits.device, dtype=weights.dtype)
    labels = (weights * index).sum(dim=1).long()
    valid = weights.sum(dim=1) == 1
    return torch.where(valid, labels, logits.argmax(dim=1) + 1)


def canvas_collection(mask_logits: Tensor, boxes: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """``mask_logits (K, M, M)`` resized bilinearly into ``boxes (K, 4)`` on canvases of the
    stride grid ``size (h, w)``: ``(K, h, w)``, :data:`EMPTY_LOGIT` outside each box."""
    pasted = paste_mask_logits(mask_logits.float(), boxes, size, stride)
    inside = pasted.inside(torch.bool)
    return torch.where(inside, pasted.dense(torch.float32), EMPTY_LOGIT)


def merge_canvases(canvases: Tensor, labels: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """Canvases ``(K, h, w)`` (best first) of one class whose masks (logit > 0) overlap by
    more than ``iou_threshold`` IoU are merged into the better one (cell-wise maximum).

    Returns the merged canvases ``(K', h, w)`` and the indices ``(K',)`` of the instances
    they keep (their box, class and score).
    """
    masks = canvases > 0
    areas = masks.flatten(1).sum(1)
    kept: list[int] = []
    merged = canvases.clone()
    for index in range(len(canvases)):
        into = next((k for k in kept if labels[k] == labels[index]
                     and _iou(masks[k], masks[index], areas[k], areas[index]) > iou_threshold), None)
        if into is None:
            kept.append(index)
        else:
            merged[into] = torch.maximum(merged[into], canvases[index])
    keep = torch.tensor(kept, dtype=torch.int64, device=canvases.device)
    return merged[keep], keep


def _iou(first: Tensor, second: Tensor, first_area: Tensor, second_area: Tensor) -> float:
    intersection = int((first & second).sum())
    union = int(first_area + second_area) - intersection
    return intersection / union if union else 0.0


def fused_logits(stuff_logits: Tensor, canvases: Tensor) -> Tensor:
    """``(num_stuff + K, h, w)``: the semantic branch's stuff logits, then one canvas per
    instance (HPS 3.1, "concatenated with the stuff class logits")."""
    return torch.cat([stuff_logits, canvases.to(stuff_logits.dtype)], dim=0)


def initial_segmentation_image(mask_logits: Tensor, boxes: Tensor, labels: Tensor, weights: Tensor,
                               num_things: int, size: tuple[int, int], stride: int) -> Tensor:
    """HPS 3.2: ``(num_things, h, w)`` coarse thing segmentation from the instances.

    Each instance's canvas holds its mask probabilities (sigmoid of the pasted logits)
    inside its box. Layer ``c`` is the average of the canvases of class ``c`` weighted by
    ``weights (K,)`` (detection scores; 1 for ground truth) over the instances whose box
    covers the cell, and zero (an empty layer) where none does.
    """
    pasted = paste_mask_logits(mask_logits, boxes, size, stride)
    inside = pasted.inside(mask_logits.dtype)
    probabilities = pasted.map(torch.sigmoid).dense(mask_logits.dtype)  # 0 outside them
    weights = weights.to(mask_logits.dtype)[:, None, None]
    numerator = mask_logits.new_zeros((num_things, *size))
    denominator = mask_logits.new_zeros((num_things, *size))
    numerator.index_add_(0, labels - 1, weights * probabilities)
    denominator.index_add_(0, labels - 1, weights * inside)
    return numerator / denominator.clamp(min=1e-6)
