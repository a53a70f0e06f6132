"""The heads' 1/4 grid and the finer grids on which losses and decisions are made."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

HEAD_STRIDE = 4
"""The dense heads work at 1/4 of the input resolution (P2)."""


def decision_grid_logits(logits: Tensor, input_size: tuple[int, int], stride: int) -> Tensor:
    """``logits (C, h_pad, w_pad)`` of the heads' 1/4 grid, cropped to the cells covering an
    ``input_size`` image and upsampled bilinearly to a grid of ``stride`` input pixels:
    ``(C, ceil(H / stride), ceil(W / stride))``.

    With ``align_corners=False`` the centre of fine cell ``j`` lands where it lies in the
    input image, so the upsampled values are the heads' logits interpolated between the
    centres of their cells.
    """
    cells = tuple(-(-side // HEAD_STRIDE) for side in input_size)
    fine = tuple(-(-side // stride) for side in input_size)
    # contiguous: one image of a channels-last batch, viewed as a batch of one, sends
    # interpolate to a generic kernel 3x slower (19x128x256 to 512x1024: 72 against 23 ms)
    crop = logits[None, :, :cells[0], :cells[1]].contiguous()
    return upsample_logits(crop, stride)[0, :, :fine[0], :fine[1]]


def upsample_logits(logits: Tensor, stride: int) -> Tensor:
    """``logits (N, C, h, w)`` of the heads' 1/4 grid upsampled bilinearly to a grid of
    ``stride`` input pixels, ``(N, C, h * 4 / stride, w * 4 / stride)`` (unchanged for 4)."""
    if stride == HEAD_STRIDE:
        return logits
    return F.interpolate(logits, scale_factor=HEAD_STRIDE // stride, mode="bilinear",
                         align_corners=False)
