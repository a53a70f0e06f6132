"""Panoptic-DeepLab's training targets and losses (Cheng et al., CVPR 2020; survey slides).

Targets are derived from the dataset's targets (``masks``, ``semantic``) on a grid of
``stride`` input pixels: a centre heatmap (a Gaussian around each instance's centre of
mass), per-cell offsets to the own instance's centre, and the loss weights. Losses:
semantic cross entropy weighted for small instances with hard-pixel mining, MSE for the
heatmap, L1 for the offsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..categories import IGNORE_INDEX
from .center_grouping import cell_positions
from .targets import labels_at_stride


@dataclass
class InstanceTargets:
    """One image's instance targets on the stride grid ``(h, w)``."""

    heatmap: Tensor
    """``(h, w)`` max over instances of ``exp(-d^2 / (2 sigma^2))``, d the distance from
    the cell centre to the instance centre (input pixels)."""
    offsets: Tensor
    """``(2, h, w)`` ``centre - position`` ``(dy, dx)`` for instance cells, 0 elsewhere."""
    instance: Tensor
    """``(h, w)`` bool: cells of some instance (the offset loss's pixels)."""
    pixel_weight: Tensor
    """``(h, w)`` semantic-loss weight: ``small_weight`` on instances smaller than
    ``small_area`` input pixels, 1 elsewhere."""
    center_valid: Tensor
    """``(h, w)`` bool: labelled cells outside crowd regions (thing pixels no instance
    covers), where the heatmap is supervised."""


def instance_targets(masks: Tensor, semantic: Tensor, num_stuff: int, size: tuple[int, int],
                     stride: int, sigma: float, small_area: int, small_weight: float) -> InstanceTargets:
    """Targets of one image from ``masks (K, H, W)`` and ``semantic`` already on the grid
    ``(h, w)`` (IGNORE_INDEX where unlabelled)."""
    device = semantic.device
    positions = cell_positions(size, stride, device)  # (2, h, w)
    full = masks.bool()
    areas = full.flatten(1).sum(1)
    grid_masks = labels_at_stride(masks, stride, size, 0).bool()  # (K, h, w)
    heatmap = torch.zeros(size, device=device)
    offsets = torch.zeros(2, *size, device=device)
    weight = torch.ones(size, device=device)
    for mask, grid_mask, area in zip(full, grid_masks, areas.tolist()):
        if area == 0:
            continue
        rows, cols = mask.nonzero(as_tuple=True)
        centre = torch.stack([rows.float().mean(), cols.float().mean()]) + 0.5
        distance2 = ((positions - centre[:, None, None]) ** 2).sum(0)
        heatmap = torch.maximum(heatmap, torch.exp(-distance2 / (2 * sigma ** 2)))
        offsets[:, grid_mask] = (centre[:, None, None] - positions)[:, grid_mask]
        if area < small_area:
            weight[grid_mask] = small_weight
    instance = grid_masks.any(0) if len(grid_masks) else torch.zeros(size, dtype=torch.bool,
                                                                      device=device)
    labelled = semantic != IGNORE_INDEX
    crowd = labelled & (semantic >= num_stuff) & ~instance
    return InstanceTargets(heatmap, offsets, instance, weight, labelled & ~crowd)


def hard_pixel_loss(logits: Tensor, semantic: Tensor, weights: Tensor, fraction: float) -> Tensor:
    """Weighted cross entropy averaged over the hardest ``fraction`` of the labelled pixels.

    ``logits (N, C, h, w)``, ``semantic (N, h, w)`` (IGNORE_INDEX ignored), ``weights
    (N, h, w)``. Zero (with a gradient path) when no pixel is labelled.
    """
    labelled = semantic != IGNORE_INDEX
    count = int(labelled.sum())
    if count == 0:
        return logits.sum() * 0.0
    losses = F.cross_entropy(logits, semantic, ignore_index=IGNORE_INDEX, reduction="none")
    losses = (losses * weights)[labelled]
    hardest = losses.topk(max(1, int(fraction * count))).values
    return hardest.mean()


def center_loss(predicted: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error of the heatmap ``(N, h, w)`` on the ``valid`` cells."""
    if not valid.any():
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[valid], target[valid])


def offset_loss(predicted: Tensor, target: Tensor, instance: Tensor) -> Tensor:
    """Mean L1 distance (both components summed) of ``(N, 2, h, w)`` offsets on instance cells."""
    if not instance.any():
        return predicted.sum() * 0.0
    cells = instance[:, None].expand_as(predicted)
    return (predicted[cells] - target[cells]).abs().sum() / int(instance.sum())
