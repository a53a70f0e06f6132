"""The parameter-free panoptic head of UPSNet (paper, section 3.1).

For one image with semantic logits ``X`` (stuff channels first, then things) and ``K``
instances with boxes ``B_i``, thing labels ``C_i`` and 28x28 mask logits ``Y_i``::

    Z = [ X_stuff ;  X_mask_i + Y_mask_i  (i = 1..K) ;  max(X_thing) - max_i(X_mask_i) ]

``X_mask_i`` is the channel of class ``C_i`` inside box ``B_i`` (zero outside) and
``Y_mask_i`` the mask logits resized bilinearly into the box (zero outside). The last
channel is the unknown class. Everything here works on one image on a grid of stride
``stride`` input pixels, ``(h, w) = (H/stride, W/stride)``: the heads' own 1/4 grid in
training, a finer one (upsampled logits) at inference; it is differentiable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..categories import IGNORE_INDEX


def _cell_centres(count: int, stride: int, device: torch.device) -> Tensor:
    """Input-pixel coordinate of the centre of each of ``count`` cells of a stride grid."""
    return (torch.arange(count, device=device, dtype=torch.float32) + 0.5) * stride


def _inside(centres: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``(K, n)`` bool: cell centre within ``[low_k, high_k)``."""
    return (centres[None] >= low[:, None]) & (centres[None] < high[:, None])


def _interpolation_weights(centres: Tensor, low: Tensor, high: Tensor, size: int) -> Tensor:
    """``(K, n, size)`` linear interpolation weights from a ``size``-cell mask axis spanning
    ``[low_k, high_k)`` to the cell centres; rows outside the span are zero.

    Sample positions follow ``align_corners=False`` (mask cell j covers
    ``[low + j*len/size, low + (j+1)*len/size)``), clamped at the border.
    """
    length = (high - low).clamp(min=1e-6)
    position = (centres[None] - low[:, None]) / length[:, None] * size - 0.5
    lower = position.floor()
    fraction = position - lower
    lower = lower.long()
    weights = centres.new_zeros(len(low), len(centres), size)
    weights.scatter_add_(2, lower.clamp(0, size - 1)[..., None], (1 - fraction)[..., None])
    weights.scatter_add_(2, (lower + 1).clamp(0, size - 1)[..., None], fraction[..., None])
    return weights * _inside(centres, low, high)[..., None]


def paste_mask_logits(mask_logits: Tensor, boxes: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """Resize ``mask_logits (K, M, M)`` bilinearly into ``boxes (K, 4)`` (input pixels, xyxy)
    on a stride grid of ``size (h, w)``: ``(K, h, w)``, zero outside each box."""
    device = mask_logits.device
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    rows = _interpolation_weights(_cell_centres(size[0], stride, device), y1, y2, mask_logits.shape[1])
    cols = _interpolation_weights(_cell_centres(size[1], stride, device), x1, x2, mask_logits.shape[2])
    # (rows @ masks) @ cols^T: einsum's own contraction order, without its output copy
    pasted = torch.bmm(torch.bmm(rows, mask_logits.float()), cols.transpose(1, 2))
    return pasted.to(mask_logits.dtype)


def box_masks(boxes: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """``(K, h, w)`` bool: which cells of the stride grid have their centre inside each box."""
    device = boxes.device
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    inside_rows = _inside(_cell_centres(size[0], stride, device), y1, y2)
    inside_cols = _inside(_cell_centres(size[1], stride, device), x1, x2)
    return inside_rows[:, :, None] & inside_cols[:, None, :]


class PanopticHead(nn.Module):
    """Builds the panoptic logits ``Z (num_stuff + K + 1, h, w)``; it has no parameters."""

    def __init__(self, num_stuff: int):
        super().__init__()
        self.num_stuff = num_stuff

    def forward(self, semantic_logits: Tensor, boxes: Tensor, thing_labels: Tensor,
                pasted_mask_logits: Tensor, stride: int) -> Tensor:
        """
        Args:
            semantic_logits: ``(num_classes, h, w)``, stuff channels first, on a grid of
                ``stride`` input pixels.
            boxes: ``(K, 4)`` xyxy in input pixels.
            thing_labels: ``(K,)`` int64 in ``1..num_things``.
            pasted_mask_logits: ``(K, h, w)`` from :func:`paste_mask_logits` on that grid.
        Returns:
            ``(num_stuff + K + 1, h, w)``: stuff, one channel per instance, unknown last.
        """
        size = semantic_logits.shape[-2:]
        stuff = semantic_logits[: self.num_stuff]
        things = semantic_logits[self.num_stuff:]
        inside = box_masks(boxes, size, stride).to(semantic_logits.dtype)
        x_mask = things[thing_labels - 1] * inside
        # Outside every box X_mask is zero, so with no instance max(X_mask) is zero too.
        max_mask = x_mask.max(dim=0).values if len(boxes) else torch.zeros_like(things[0])
        unknown = things.max(dim=0).values - max_mask
        return torch.cat([stuff, x_mask + pasted_mask_logits, unknown[None]], dim=0)


def panoptic_loss(logits: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Mean over images of the pixel-wise cross entropy of ``Z (1, ch_i, h, w)`` against
    ``targets (h, w)`` (IGNORE_INDEX ignored); each image has its own channel count."""
    terms = [F.cross_entropy(z[None], t[None], ignore_index=IGNORE_INDEX)
             for z, t in zip(logits, targets) if (t != IGNORE_INDEX).any()]
    if not terms:
        return sum(z.sum() for z in logits) * 0.0
    return torch.stack(terms).mean()
