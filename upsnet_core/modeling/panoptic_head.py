"""The parameter-free panoptic head of UPSNet (paper, section 3.1).

For one image with semantic logits ``X`` (stuff channels first, then things) and ``K``
instances with boxes ``B_i``, thing labels ``C_i`` and 28x28 mask logits ``Y_i``::

    Z = [ X_stuff ;  X_mask_i + Y_mask_i  (i = 1..K) ;  max(X_thing) - max_i(X_mask_i) ]

``X_mask_i`` is the channel of class ``C_i`` inside box ``B_i`` (zero outside) and
``Y_mask_i`` the mask logits resized bilinearly into the box (zero outside). The last
channel is the unknown class. Everything here works on one image on a grid of stride
``stride`` input pixels, ``(h, w) = (H/stride, W/stride)``: the heads' own 1/4 grid in
training, a finer one (upsampled logits) at inference. The dense ``Z`` (the panoptic
loss, differentiable) and inference's per-cell decision (its first maximum, computed box
by box) are two evaluations of the same function (:class:`PanopticHead`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..categories import IGNORE_INDEX
from .box_local import BoxCrops, Region, box_cells, cell_centres


def _interpolation_weights(index: Tensor, stride: int, low: Tensor, high: Tensor, size: int) -> Tensor:
    """``(K, n, size)`` linear interpolation weights from a ``size``-cell mask axis spanning
    ``[low_k, high_k)`` (input pixels) to the centres of grid cells ``index (K, n)``.

    Sample positions follow ``align_corners=False`` (mask cell j covers
    ``[low + j*len/size, low + (j+1)*len/size)``), clamped at the border.
    """
    centres = cell_centres(index, stride)
    length = (high - low).clamp(min=1e-6)
    position = (centres - low[:, None]) / length[:, None] * size - 0.5
    lower = position.floor()
    fraction = position - lower
    lower = lower.long()
    weights = centres.new_zeros(*centres.shape, size)
    weights.scatter_add_(2, lower.clamp(0, size - 1)[..., None], (1 - fraction)[..., None])
    weights.scatter_add_(2, (lower + 1).clamp(0, size - 1)[..., None], fraction[..., None])
    return weights


def paste_mask_logits(mask_logits: Tensor, boxes: Tensor, size: tuple[int, int],
                      stride: int) -> BoxCrops:
    """Resize ``mask_logits (K, M, M)`` bilinearly into ``boxes (K, 4)`` (input pixels, xyxy)
    on a stride grid of ``size (h, w)``: the values on the cells whose centre lies in each
    box (zero elsewhere: ``.dense(dtype)`` gives ``(K, h, w)``); differentiable.

    Every caller (the loss's dense head, the box-local decision) reads these same crops,
    so the two see the same floats.
    """
    cells = box_cells(boxes, size, stride)
    heights = (cells[:, 1] - cells[:, 0]).clamp(min=0)
    widths = (cells[:, 3] - cells[:, 2]).clamp(min=0)
    longest = (int(heights.max()), int(widths.max())) if len(boxes) else (0, 0)
    steps = [torch.arange(n, device=boxes.device) for n in longest]
    x1, y1, x2, y2 = boxes.float().unbind(1)
    cell_size = mask_logits.shape[1]
    rows = _interpolation_weights(cells[:, :1] + steps[0], stride, y1, y2, cell_size)
    cols = _interpolation_weights(cells[:, 2:3] + steps[1], stride, x1, x2, cell_size)
    masks = mask_logits.float()
    # (rows @ mask) @ cols^T on the box's cells only: two small products per instance
    crops = [(rows[k, :h] @ masks[k] @ cols[k, :w].T).to(mask_logits.dtype)
             for k, (h, w) in enumerate(zip(heights.tolist(), widths.tolist()))]
    return BoxCrops(cells, crops, size)


class PanopticHead(nn.Module):
    """Builds the panoptic logits ``Z (num_stuff + K + 1, h, w)``; it has no parameters.

    ``forward`` computes ``Z`` densely (the panoptic loss needs the logits); ``channels``
    evaluates ``Z.max(dim=0).indices`` of the same ``Z`` box by box, which is what
    inference needs, at the cost of the boxes' area instead of ``K * h * w``.
    """

    def __init__(self, num_stuff: int):
        super().__init__()
        self.num_stuff = num_stuff

    def forward(self, semantic_logits: Tensor, thing_labels: Tensor, pasted: BoxCrops) -> Tensor:
        """
        Args:
            semantic_logits: ``(num_classes, h, w)``, stuff channels first, on a grid of
                ``stride`` input pixels.
            thing_labels: ``(K,)`` int64 in ``1..num_things``.
            pasted: the ``K`` instances' mask logits from :func:`paste_mask_logits` on that
                grid (their cells are the boxes' cells).
        Returns:
            ``(num_stuff + K + 1, h, w)``: stuff, one channel per instance, unknown last.
        """
        dtype = semantic_logits.dtype
        stuff = semantic_logits[: self.num_stuff]
        things = semantic_logits[self.num_stuff:]
        inside = pasted.inside(dtype)
        x_mask = things[thing_labels - 1] * inside
        # Outside every box X_mask is zero, so with no instance max(X_mask) is zero too.
        max_mask = x_mask.max(dim=0).values if len(pasted) else torch.zeros_like(things[0])
        unknown = things.max(dim=0).values - max_mask
        return torch.cat([stuff, x_mask + pasted.dense(dtype), unknown[None]], dim=0)

    def channels(self, semantic_logits: Tensor, thing_labels: Tensor, pasted: BoxCrops,
                 unknown: bool = True) -> Tensor:
        """``(h, w)`` int64: ``forward(...).max(dim=0).indices`` (the first maximum on ties,
        as ``argmax``) of the same arguments, computed without the ``(K, h, w)`` tensors;
        ``unknown=False`` leaves the unknown channel out of the maximum.

        A running best value and channel per cell start from the stuff channels' maximum
        and are raised channel by channel, in channel order, only where a channel is
        strictly greater: that keeps the first maximum. Instance channel ``i`` is
        ``X_mask_i + Y_mask_i`` inside box ``i`` (the same floats as the dense ``Z``: the
        same crops, ``X`` times 1 is ``X``) and exactly 0 outside it. The inside part is
        box-local. The 0 outside needs care: it can raise the best only where the best is
        still negative, and after any instance channel has offered 0 at a cell the best
        there is >= 0 for good. So channel ``i``'s 0 matters only on cells inside every
        earlier box (``i = 0``: the whole grid) and outside box ``i``; those cells shrink
        to the intersection of the boxes, a rectangle, after the first instance. The
        unknown channel ``max(X_thing) - max_i X_mask_i`` comes last: ``max_i X_mask_i``
        is the maximum of ``X_mask_i`` over the boxes holding the cell and of 0 when some
        box misses it (or without instances): it starts at 0, at ``-inf`` on the cells
        inside every box, and takes the maximum with ``X_mask_i`` in each box. A zero of
        either sign compares equal, so the channels are those of the dense maximum.
        """
        stuff = semantic_logits[: self.num_stuff]
        things = semantic_logits[self.num_stuff:]
        best, channel = stuff.max(dim=0)
        max_mask = torch.zeros_like(best)
        common = pasted.common_region()
        if common is not None:
            max_mask[common] = float("-inf")
        within = (0, best.shape[0], 0, best.shape[1])  # inside every box so far
        instances = zip(pasted.regions(), pasted.crops, thing_labels.tolist())
        for index, (region, crop, label) in enumerate(instances):
            x_mask = things[label - 1][region]
            max_mask[region] = torch.maximum(max_mask[region], x_mask)
            _raise(best, channel, region, x_mask + crop, self.num_stuff + index)
            within = _raise_outside_box(best, channel, within, region, self.num_stuff + index)
        if unknown:
            _raise(best, channel, (slice(None), slice(None)), things.max(dim=0).values - max_mask,
                   self.num_stuff + len(pasted))
        return channel


def _raise(best: Tensor, channel: Tensor, region: Region, value: Tensor, index: int,
           where: Tensor | None = None) -> None:
    """Where ``value > best`` on ``region`` (and ``where``), set best to value and channel
    to ``index``, in place."""
    best_here = best[region]
    better = value > best_here
    if where is not None:
        better &= where
    best_here.copy_(torch.where(better, value, best_here))
    channel[region].masked_fill_(better, index)


def _raise_outside_box(best: Tensor, channel: Tensor, within: tuple[int, int, int, int],
                       region: Region, index: int) -> tuple[int, int, int, int]:
    """Offer instance channel ``index``'s value 0 on the cells of the rectangle ``within``
    (``row0, row1, col0, col1``) outside its box ``region``; returns ``within`` narrowed to
    the box (see :meth:`PanopticHead.channels`)."""
    r0, r1, c0, c1 = within
    rows, cols = region
    inner = (max(r0, rows.start), min(r1, rows.stop), max(c0, cols.start), min(c1, cols.stop))
    if r1 > r0 and c1 > c0:
        outside = torch.ones(r1 - r0, c1 - c0, dtype=torch.bool, device=best.device)
        box_rows = slice(inner[0] - r0, max(inner[0], inner[1]) - r0)
        outside[box_rows, inner[2] - c0:max(inner[2], inner[3]) - c0] = False
        _raise(best, channel, (slice(r0, r1), slice(c0, c1)), best.new_zeros(()), index, outside)
    return inner


def panoptic_loss(logits: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Mean over images of the pixel-wise cross entropy of ``Z (1, ch_i, h, w)`` against
    ``targets (h, w)`` (IGNORE_INDEX ignored); each image has its own channel count."""
    terms = [F.cross_entropy(z[None], t[None], ignore_index=IGNORE_INDEX)
             for z, t in zip(logits, targets) if (t != IGNORE_INDEX).any()]
    if not terms:
        return sum(z.sum() for z in logits) * 0.0
    return torch.stack(terms).mean()
