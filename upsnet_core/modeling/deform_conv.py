"""Deformable convolution (Dai et al. 2017) as bilinear sampling followed by a 1x1 product.

The result is that of :func:`torchvision.ops.deform_conv2d` (stride 1, no modulation
mask; ``test/test_deform_conv.py`` checks the two against each other). It is computed from two
stock operators instead: :func:`torch.nn.functional.grid_sample` gathers the ``k*k``
deformed samples of every output pixel, and a 1x1 convolution applies the weights.
Why not torchvision's operator: its CPU kernel is a single-threaded scalar loop; on the
semantic head of the small CPU config (``(4, 64, 32, 64)`` input, 32 outputs) forward +
backward took 611 ms there against 49 ms here, and its backward was 38% of a training step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def deform_conv2d(inputs: Tensor, offset: Tensor, weight: Tensor,
                  bias: Tensor | None = None) -> Tensor:
    """Deformable ``k x k`` convolution, stride 1, ``k // 2`` zero padding (output size = input size).

    ``inputs (N, C, H, W)``; ``offset (N, 2*k*k, H, W)`` holding for each kernel tap, in
    row-major order, the (dy, dx) displacement in pixels (torchvision's layout);
    ``weight (O, C, k, k)``; returns ``(N, O, H, W)``. A sample outside the image reads
    zeros; bilinear interpolation toward the border mixes in those zeros.
    """
    n, channels, height, width = inputs.shape
    k = weight.shape[-1]
    taps = torch.arange(k, dtype=inputs.dtype, device=inputs.device) - k // 2
    rows = torch.arange(height, dtype=inputs.dtype, device=inputs.device)
    cols = torch.arange(width, dtype=inputs.dtype, device=inputs.device)
    offset = offset.view(n, k, k, 2, height, width)
    y = rows[:, None] + taps[:, None, None, None] + offset[:, :, :, 0]  # (N, k, k, H, W)
    x = cols[None, :] + taps[None, :, None, None] + offset[:, :, :, 1]
    # grid_sample's normalised coordinates (align_corners=False): pixel i <-> (2i + 1) / size - 1
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    samples = F.grid_sample(inputs, grid.view(n, k * k * height, width, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (N, C, k*k*H, W)
    samples = samples.view(n, channels * k * k, height, width)
    # flatten, not a reshape to sizes read from the input: the weight's shape stays
    # static in a traced graph (ONNX export needs the kernel's shape)
    return F.conv2d(samples, weight.flatten(1)[:, :, None, None], bias)


class DeformConv2d(nn.Module):
    """``k x k`` deformable convolution module (stride 1, same-size output).

    Its parameters (``weight (O, C, k, k)``, optional ``bias (O,)``) are laid out as in
    :class:`torchvision.ops.DeformConv2d`, so the state dicts of either load in the other.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's initialisation

    def forward(self, inputs: Tensor, offset: Tensor) -> Tensor:
        return deform_conv2d(inputs, offset, self.weight, self.bias)
