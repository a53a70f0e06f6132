"""Panoptic-DeepLab's post-processing (Cheng et al., CVPR 2020; survey slides, "Simple
instance representation / grouping"): instance centres from the centre heatmap, pixels
grouped to their nearest centre through the predicted offsets, and each instance's class
by majority vote of the semantic prediction.

Everything works on one image on a grid of ``stride`` input pixels; positions and offsets
are in input pixels, ``(y, x)``; cell ``(r, c)`` has its centre at ``((r+0.5)*stride,
(c+0.5)*stride)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def find_centers(heatmap: Tensor, threshold: float, kernel: int, top_k: int) -> tuple[Tensor, Tensor]:
    """Centre keypoints of ``heatmap (h, w)``: cells equal to the maximum of their
    ``kernel x kernel`` window (max-pooling NMS) and above ``threshold``, the ``top_k``
    highest. Returns cells ``(K, 2)`` int64 ``(row, col)`` and scores ``(K,)``, best first."""
    pooled = F.max_pool2d(heatmap[None, None], kernel, stride=1, padding=kernel // 2)[0, 0]
    peaks = (heatmap == pooled) & (heatmap > threshold)
    cells = peaks.nonzero()
    scores = heatmap[peaks]
    order = scores.argsort(descending=True, stable=True)[:top_k]
    return cells[order], scores[order]


def cell_positions(size: tuple[int, int], stride: int, device: torch.device) -> Tensor:
    """``(2, h, w)`` input-pixel position ``(y, x)`` of each cell's centre."""
    rows = (torch.arange(size[0], device=device, dtype=torch.float32) + 0.5) * stride
    cols = (torch.arange(size[1], device=device, dtype=torch.float32) + 0.5) * stride
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))


def group_pixels(centers: Tensor, offsets: Tensor, thing: Tensor, stride: int) -> Tensor:
    """Instance index of every cell, ``(h, w)`` int64, -1 where not grouped.

    ``centers (K, 2)`` are centre positions (input pixels), ``offsets (2, h, w)`` each
    cell's predicted vector to its instance centre, ``thing (h, w)`` bool the cells the
    semantic prediction calls a thing class. A thing cell joins the centre nearest to
    ``position + offset``; with no centre, or off the thing cells, it stays -1.
    """
    index = torch.full(thing.shape, -1, dtype=torch.int64, device=thing.device)
    if len(centers) == 0:
        return index
    pointed = cell_positions(tuple(thing.shape), stride, thing.device) + offsets.float()
    pointed = pointed[:, thing].T  # (P, 2)
    distances = torch.cdist(pointed, centers.float())  # (P, K)
    index[thing] = distances.argmin(dim=1)
    return index


def majority_vote(instance_index: Tensor, semantic_argmax: Tensor, num_instances: int,
                  num_classes: int) -> Tensor:
    """``(K,)`` the most frequent ``semantic_argmax`` class among each instance's cells
    (``instance_index == k``); ties go to the lower class index. An instance without
    cells gets class -1."""
    grouped = instance_index >= 0
    pairs = instance_index[grouped] * num_classes + semantic_argmax[grouped]
    histogram = torch.bincount(pairs, minlength=num_instances * num_classes)
    histogram = histogram.view(num_instances, num_classes)
    votes, classes = histogram.max(dim=1)
    return torch.where(votes > 0, classes, -1)


def panoptic_channels(semantic_argmax: Tensor, instance_index: Tensor, num_stuff: int,
                      num_instances: int) -> Tensor:
    """The panoptic channel of each cell (stuff index, ``num_stuff + k`` for instance k,
    ``num_stuff + K`` for thing cells no instance took)."""
    void = num_stuff + num_instances
    channels = torch.where(semantic_argmax < num_stuff, semantic_argmax, void)
    return torch.where(instance_index >= 0, num_stuff + instance_index, channels)
