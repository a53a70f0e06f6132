"""Deformable convolution (Dai et al. 2017) from stock operators.

The result is that of :func:`torchvision.ops.deform_conv2d` (stride 1, no modulation
mask; ``test/test_deform_conv.py`` checks the two against each other). Why not
torchvision's operator: its CPU kernel is a single-threaded scalar loop; on the semantic
head of the small CPU config (``(4, 64, 32, 64)`` input, 32 outputs) forward + backward
took 611 ms there against 49 ms with ``grid_sample``, and its backward was 38% of a
training step.

Each output pixel reads ``k*k`` deformed samples, each the bilinear mix of 4 input
pixels. :func:`torch.nn.functional.embedding_bag` gathers and mixes them in one fused
pass over channels-last pixel rows, and the weights are one matrix product. Sampling is
linear, so the product may come first: when the output has fewer channels than the
input, the input is projected onto each tap's weights and the ``O``-channel projections
are sampled and summed, which reads half the data for the semantic head's first layer.
On the ResNet-50 head's P2 at 512x1024 (``(1, 256, 128, 256)``, channels-last) this takes
258 ms for the 256->128 layer and 187 ms for the 128->128 one on one thread (140 and
100 ms on two), against 469 and 230 ms (395 and 199) with ``grid_sample`` and a 1x1
convolution (``benchmarks/bench_deform_conv.py``). Training gains too: with this and the
semantic head's per-level classifier, the default model's training step went from 1094
to 960 ms on two threads (``benchmarks/profile_train_step.py --config
config/upsnet_mobilenet.yaml``).

ONNX has no fused gather-and-sum (``embedding_bag`` exports as a loop over bags), so the
exported graph keeps that ``grid_sample`` form, which its ``GridSample`` runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CORNERS = 4
"""Input pixels mixed by one bilinear sample."""


def deform_conv2d(inputs: Tensor, offset: Tensor, weight: Tensor,
                  bias: Tensor | None = None) -> Tensor:
    """Deformable ``k x k`` convolution, stride 1, ``k // 2`` zero padding (output size = input size).

    ``inputs (N, C, H, W)``; ``offset (N, 2*k*k, H, W)`` holding for each kernel tap, in
    row-major order, the (dy, dx) displacement in pixels (torchvision's layout);
    ``weight (O, C, k, k)``; returns ``(N, O, H, W)``. A sample outside the image reads
    zeros; bilinear interpolation toward the border mixes in those zeros.
    """
    if torch.onnx.is_in_onnx_export():
        output = _sampled_by_grid_sample(inputs, offset, weight)
    else:
        output = _gathered(inputs, offset, weight)
    return output if bias is None else output + bias[:, None, None]


def _gathered(inputs: Tensor, offset: Tensor, weight: Tensor) -> Tensor:
    """The convolution by ``embedding_bag`` gathers (module docstring); channels-last output."""
    n, channels, height, width = inputs.shape
    outputs, k = weight.shape[0], weight.shape[-1]
    pixel, mix = _bilinear_corners(offset, k)  # (N, H, W, k*k, 4) each
    # (N*H*W, C) pixel rows: a view of channels-last inputs
    rows = inputs.permute(0, 2, 3, 1).reshape(n * height * width, channels)
    # the bilinear weights take the gathered table's dtype: under autocast the product
    # gives float16 (bfloat16 on the CPU) while the offsets may stay float32
    if outputs < channels:
        # project first: row p*k*k + t of `projected` is pixel p times tap t's weights
        projected = rows @ weight.permute(1, 2, 3, 0).reshape(channels, k * k * outputs)
        tap = torch.arange(k * k, dtype=pixel.dtype, device=inputs.device)[:, None]
        bags = n * height * width  # one per output pixel: k*k taps x 4 corners
        rows_read = (pixel * (k * k) + tap).view(bags, -1)
        result = F.embedding_bag(rows_read, projected.view(-1, outputs), mode="sum",
                                 per_sample_weights=mix.to(projected.dtype).view(bags, -1))
    else:
        samples = F.embedding_bag(pixel.view(-1, CORNERS), rows, mode="sum",
                                  per_sample_weights=mix.to(rows.dtype).view(-1, CORNERS))
        result = (samples.view(n * height * width, k * k * channels)
                  @ weight.permute(2, 3, 1, 0).reshape(k * k * channels, outputs))
    return result.view(n, height, width, outputs).permute(0, 3, 1, 2)


def _sampling_positions(offset: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The input row and column each output pixel's taps sample, ``(N, H, W, k*k)`` each:
    the pixel's own position, the tap's shift and the learned offset. In at least float32:
    in float16 (autocast) a 512-pixel axis has half-pixel steps."""
    n, _, height, width = offset.shape
    dtype, device = torch.promote_types(offset.dtype, torch.float32), offset.device
    shifts = torch.arange(k, dtype=dtype, device=device) - k // 2
    displacement = offset.to(dtype).permute(0, 2, 3, 1).reshape(n, height, width, k * k, 2)
    y = (torch.arange(height, dtype=dtype, device=device)[:, None, None]
         + shifts.repeat_interleave(k) + displacement[..., 0])
    x = (torch.arange(width, dtype=dtype, device=device)[:, None]
         + shifts.repeat(k) + displacement[..., 1])
    return y, x


def _bilinear_corners(offset: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """For every output pixel, tap and corner, ``(N, H, W, k*k, 4)`` each: the input pixel
    read (flat int32 index over ``N*H*W``) and its bilinear weight, 0 for a pixel outside
    the image (its index is clamped to a valid one).

    Rows and columns are worked out on ``(N, H, W, k*k)`` tensors and only their outer
    sum and product make the four corners.
    """
    n, _, height, width = offset.shape
    y, x = _sampling_positions(offset, k)
    rows, row_weights = _linear_neighbours(y, height)
    cols, col_weights = _linear_neighbours(x, width)
    image = torch.arange(n, dtype=torch.int32, device=offset.device).view(n, 1, 1, 1, 1)
    pixel = ((image * height + rows) * width)[..., :, None] + cols[..., None, :]
    mix = row_weights[..., :, None] * col_weights[..., None, :]
    return pixel.flatten(-2), mix.flatten(-2)


def _linear_neighbours(position: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The two pixels around each ``position`` along an axis of ``size`` pixels and their
    linear weights, ``(..., 2)`` each: int32 indices clamped into the axis, weight 0 for a
    pixel outside it."""
    low = position.floor()
    high_weight = position - low
    low = low.to(torch.int32)
    indices = torch.stack((low, low + 1), dim=-1)
    weights = torch.stack((1 - high_weight, high_weight), dim=-1)
    inside = (indices >= 0) & (indices < size)
    return indices.clamp(0, size - 1), weights * inside


def _sampled_by_grid_sample(inputs: Tensor, offset: Tensor, weight: Tensor) -> Tensor:
    """The convolution as ``grid_sample`` of the ``k*k`` taps and a 1x1 convolution (the
    exported form: ONNX ``GridSample`` + ``Conv``)."""
    n, channels, height, width = inputs.shape
    k = weight.shape[-1]
    y, x = _sampling_positions(offset, k)
    # grid_sample's normalised coordinates (align_corners=False): pixel i <-> (2i + 1) / size - 1
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    grid = grid.permute(0, 3, 1, 2, 4).reshape(n, k * k * height, width, 2)  # taps first
    samples = F.grid_sample(inputs, grid.to(inputs.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (N, C, k*k*H, W)
    samples = samples.view(n, channels * k * k, height, width)
    # flatten, not a reshape to sizes read from the input: the weight's shape stays
    # static in a traced graph (ONNX export needs the kernel's shape)
    return F.conv2d(samples, weight.flatten(1)[:, :, None, None])


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
