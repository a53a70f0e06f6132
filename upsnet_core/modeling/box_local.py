"""Per-instance maps stored inside their boxes only.

On the decision grid ``(h, w)`` (cells of ``stride`` input pixels) an instance's pasted
mask logits, its ``X_mask`` and its binary mask are zero outside the cells whose centre
lies in its box. Those cells form a rectangle; :class:`BoxCrops` keeps each instance's
map on its rectangle only, so that the panoptic head's decision and the mask pruning cost
the boxes' area instead of ``K * h * w``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def cell_centres(index: Tensor, stride: int) -> Tensor:
    """Input-pixel coordinate of the centre of each cell ``index`` (any shape) of a stride grid."""
    return (index.float() + 0.5) * stride


def box_cells(boxes: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """``(K, 4)`` int64 ``row0, row1, col0, col1``: the half-open cell ranges of a grid of
    ``size (h, w)`` whose centres lie in ``[y1, y2) x [x1, x2)`` of ``boxes (K, 4)`` (xyxy,
    input pixels); ``row1 <= row0`` (or ``col1 <= col0``) for a box that holds no centre.

    The centres increase along each axis, so the first cell with centre ``>= low`` is a
    sorted search, and the cells of ``[low, high)`` run from it to the first one ``>= high``.
    """
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    rows = cell_centres(torch.arange(size[0], device=boxes.device), stride)
    cols = cell_centres(torch.arange(size[1], device=boxes.device), stride)
    first = [torch.searchsorted(centres, side.contiguous())
             for centres, side in ((rows, y1), (rows, y2), (cols, x1), (cols, x2))]
    return torch.stack(first, 1)


Region = tuple[slice, slice]


@dataclass
class BoxCrops:
    """``K`` per-instance maps of a grid ``size (h, w)``, each stored on its box's cells.

    Attributes:
        cells: ``(K, 4)`` int64 ``row0, row1, col0, col1`` from :func:`box_cells`.
        crops: ``K`` tensors, crop ``k`` of shape ``(row1 - row0, col1 - col0)`` (clamped
            at zero); the map is zero (False) outside it.
        size: ``(h, w)`` of the grid.
    """

    cells: Tensor
    crops: list[Tensor]
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.crops)

    def regions(self) -> list[Region]:
        """The slices of the grid that each crop covers (empty for an empty box)."""
        return [(slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
                for r0, r1, c0, c1 in self.cells.tolist()]

    def common_region(self) -> Region | None:
        """The cells inside every box (their rectangles' intersection); ``None`` without
        instances."""
        if not len(self):
            return None
        r0, c0 = self.cells[:, 0].max().item(), self.cells[:, 2].max().item()
        r1, c1 = self.cells[:, 1].min().item(), self.cells[:, 3].min().item()
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def select(self, keep: Tensor) -> BoxCrops:
        """The instances flagged by ``keep (K,)`` bool, in order."""
        indices = keep.nonzero().flatten().tolist()
        return BoxCrops(self.cells[indices], [self.crops[i] for i in indices], self.size)

    def map(self, function) -> BoxCrops:
        """The same boxes with ``function`` applied to each crop (e.g. ``crop > 0``); the
        function must keep zero (False) at zero for the maps to stay zero outside."""
        return BoxCrops(self.cells, [function(crop) for crop in self.crops], self.size)

    def dense(self, dtype: torch.dtype) -> Tensor:
        """``(K, h, w)`` maps of ``dtype``, zero outside the boxes; differentiable in the crops."""
        maps = torch.zeros(len(self), *self.size, dtype=dtype, device=self.cells.device)
        for index, (region, crop) in enumerate(zip(self.regions(), self.crops)):
            maps[index][region] = crop
        return maps

    def inside(self, dtype: torch.dtype) -> Tensor:
        """``(K, h, w)`` of ``dtype``: 1 (True) on each box's cells, 0 elsewhere."""
        return self.map(torch.ones_like).dense(dtype)
