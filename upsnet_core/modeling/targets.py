"""Training targets at the heads' resolution, derived from the dataset's full-size targets."""
from __future__ import annotations

import torch
from torch import Tensor

from ..categories import IGNORE_INDEX, CategorySet
from .grid import upsample_logits


def labels_at_stride(labels: Tensor, stride: int, size: tuple[int, int], fill: int) -> Tensor:
    """Nearest-sample ``labels (..., H, W)`` onto the stride grid of ``size (h, w)``.

    Cell ``(r, c)`` covers input pixels ``[stride*r, stride*(r+1))``; it takes the label at
    its centre (clamped into the image for the last, partial cell). Cells wholly outside
    the image (batch padding) get ``fill``.
    """
    height, width = labels.shape[-2:]
    rows = torch.arange(size[0], device=labels.device) * stride + stride // 2
    cols = torch.arange(size[1], device=labels.device) * stride + stride // 2
    sampled = labels[..., rows.clamp(max=height - 1), :][..., cols.clamp(max=width - 1)]
    outside_rows = rows - stride // 2 >= height
    outside_cols = cols - stride // 2 >= width
    outside = outside_rows[:, None] | outside_cols[None, :]
    return sampled.masked_fill(outside, fill)


def semantic_at_stride(targets: list[dict[str, Tensor]], stride: int,
                       size: tuple[int, int]) -> Tensor:
    """The targets' ``semantic`` maps on the stride grid of ``size (h, w)``: ``(N, h, w)``
    int64, IGNORE_INDEX outside the images."""
    return torch.stack([labels_at_stride(t["semantic"], stride, size, IGNORE_INDEX)
                        for t in targets])


def on_loss_grid(logits: Tensor, targets: list[dict[str, Tensor]],
                 stride: int) -> tuple[Tensor, Tensor]:
    """``logits (N, C, H/4, W/4)`` upsampled to the loss grid of ``stride`` input pixels,
    and the targets' semantic labels on that grid ``(N, h, w)``."""
    grid_logits = upsample_logits(logits, stride)
    return grid_logits, semantic_at_stride(targets, stride, tuple(grid_logits.shape[-2:]))


def sample_labels_in_boxes(labels: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Labels at the ``size x size`` bin centres of each box: ``(K, size, size)``.

    ``labels (H, W)``; ``boxes (K, 4)`` xyxy in pixels. These are the points where
    ``roi_align(..., aligned=True)`` samples, so logits and labels line up.
    """
    height, width = labels.shape
    steps = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size
    x1, y1, x2, y2 = boxes.float().unbind(1)
    ys = (y1[:, None] + steps[None] * (y2 - y1)[:, None]).floor().long().clamp(0, height - 1)
    xs = (x1[:, None] + steps[None] * (x2 - x1)[:, None]).floor().long().clamp(0, width - 1)
    return labels[ys[:, :, None], xs[:, None, :]]


def sample_unknown(num_instances: int, fraction: float, device: torch.device) -> Tensor:
    """Bool ``(K,)``: which ground-truth instances the panoptic head must call unknown.

    ``fraction * K`` instances, rounded stochastically so that the expected fraction is
    exact even for images with one or two instances.
    """
    count = int(fraction * num_instances + torch.rand(()).item())
    chosen = torch.zeros(num_instances, dtype=torch.bool, device=device)
    chosen[torch.randperm(num_instances, device=device)[:count]] = True
    return chosen


def panoptic_target(semantic: Tensor, masks: Tensor, unknown: Tensor, num_stuff: int) -> Tensor:
    """Per-pixel channel of the panoptic logits, ``(h, w)`` int64.

    ``semantic (h, w)``: semantic index or IGNORE_INDEX; ``masks (K, h, w)`` bool, ground
    truth in ground-truth order; ``unknown (K,)`` bool. Stuff pixels keep their stuff
    index; instance ``i`` (the i-th not marked unknown) becomes ``num_stuff + i``; unknown
    instances become the last channel ``num_stuff + K_known``. Thing pixels that no
    instance covers (crowd regions) are ignored.
    """
    target = semantic.clone()
    target[(semantic >= num_stuff) & (semantic != IGNORE_INDEX)] = IGNORE_INDEX
    known = (~unknown).nonzero().flatten()
    for channel, index in enumerate(known.tolist()):
        target[masks[index]] = num_stuff + channel
    unknown_channel = num_stuff + len(known)
    for index in unknown.nonzero().flatten().tolist():
        target[masks[index]] = unknown_channel
    return target


def check_targets(targets: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]],
                  categories: CategorySet) -> None:
    """Raise an error naming the image and field when a training target is malformed.

    Each target needs ``boxes (K, 4)`` float xyxy with x2 > x1 and y2 > y1, ``labels (K,)``
    int64 thing labels in ``1..num_things``, ``masks (K, H, W)`` and ``semantic (H, W)``
    int64 semantic indices (or IGNORE_INDEX), at the image's size ``(H, W)``.
    """
    if len(targets) != len(image_sizes):
        raise ValueError(f"got {len(targets)} targets for {len(image_sizes)} images")
    for index, (target, size) in enumerate(zip(targets, image_sizes)):
        where = f"target {index}"
        missing = {"boxes", "labels", "masks", "semantic"} - set(target)
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        boxes, labels, masks, semantic = (target[k] for k in ("boxes", "labels", "masks", "semantic"))
        count = len(boxes)
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"{where}: boxes must be float (K, 4), got {boxes.dtype} {tuple(boxes.shape)}")
        if count and ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise ValueError(f"{where}: boxes need x2 > x1 and y2 > y1")
        if labels.dtype != torch.int64 or labels.shape != (count,):
            raise ValueError(f"{where}: labels must be int64 ({count},), got {labels.dtype} {tuple(labels.shape)}")
        if count and (labels.min() < 1 or labels.max() > categories.num_things):
            raise ValueError(f"{where}: thing labels must be in 1..{categories.num_things}, "
                             f"got {sorted(set(labels.tolist()))}")
        if tuple(masks.shape) != (count, *size):
            raise ValueError(f"{where}: masks must be ({count}, {size[0]}, {size[1]}), got {tuple(masks.shape)}")
        if tuple(semantic.shape) != tuple(size) or semantic.dtype != torch.int64:
            raise ValueError(f"{where}: semantic must be int64 {tuple(size)}, got {semantic.dtype} "
                             f"{tuple(semantic.shape)}")
        valid = semantic[semantic != IGNORE_INDEX]
        if len(valid) and (valid.min() < 0 or valid.max() >= categories.num_classes):
            raise ValueError(f"{where}: semantic indices must be in 0..{categories.num_classes - 1} "
                             f"or {IGNORE_INDEX}")
