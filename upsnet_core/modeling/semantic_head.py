"""Semantic head: shared deformable-conv subnet over P2..P5, concatenated at 1/4 scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..categories import IGNORE_INDEX
from .deform_conv import DeformConv2d
from .instance_head import MASK_SIZE
from .targets import sample_labels_in_boxes

NUM_LEVELS = 4  # P2, P3, P4, P5


class DeformConvBlock(nn.Module):
    """3x3 deformable convolution whose offsets a plain 3x3 conv predicts, then GN + ReLU.

    The offset conv starts at zero, so training begins from a regular convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int):
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 2 * 3 * 3, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(in_channels, out_channels, 3, bias=False)
        self.norm = nn.GroupNorm(norm_groups, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x, self.offset(x))))


class SemanticHead(nn.Module):
    """Semantic logits over all classes (stuff first, then things).

    Each of P2..P5 ``(N, C_in, H/2^k, W/2^k)`` goes through the same (weight-shared) stack
    of deformable convs, is upsampled to the size of P2, and the four maps are
    concatenated; a 1x1 conv gives ``(N, num_classes, H/4, W/4)``.

    The 1x1 conv of the concatenation is computed as the sum of its four per-map parts,
    each applied before upsampling: both steps are linear, so the logits are the same,
    and ``num_classes`` channels are upsampled instead of ``channels`` (no concatenation).
    """

    def __init__(self, in_channels: int, channels: int, num_layers: int, num_classes: int,
                 norm_groups: int = 32):
        super().__init__()
        if num_layers < 1:
            raise ValueError("the semantic head needs at least one deformable conv layer")
        blocks = [DeformConvBlock(in_channels if i == 0 else channels, channels, norm_groups)
                  for i in range(num_layers)]
        self.subnet = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(NUM_LEVELS * channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        if len(features) != NUM_LEVELS:
            raise ValueError(f"the semantic head takes P2..P5 ({NUM_LEVELS} maps), got {len(features)}")
        size = features[0].shape[-2:]
        parts = self.classifier.weight.chunk(NUM_LEVELS, dim=1)
        logits = [F.conv2d(self.subnet(f), part) for f, part in zip(features, parts)]
        upsampled = [F.interpolate(level, size=size, mode="bilinear", align_corners=False)
                     for level in logits[1:]]
        return torch.stack([logits[0], *upsampled]).sum(0) + self.classifier.bias[:, None, None]


def semantic_loss(logits: Tensor, targets: Tensor, class_balance: float = 0.0) -> Tensor:
    """Pixel-wise cross entropy on the loss grid.

    ``logits (N, C, h, w)``; ``targets (N, h, w)`` int64 with IGNORE_INDEX for no label.
    ``class_balance`` p weights each pixel by ``n_c ** -p``, ``n_c`` the batch's labelled
    pixels of its class, and divides by the weights' sum: 0 is the plain mean, 1 the mean
    of the classes' mean losses, so that thin classes (poles, signs) are not outvoted by
    road and sky. Zero (with a gradient path) when no pixel is labelled.
    """
    labelled = targets != IGNORE_INDEX
    if not labelled.any():
        return logits.sum() * 0.0
    if class_balance == 0.0:
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    counts = torch.bincount(targets[labelled], minlength=logits.shape[1]).to(logits.dtype)
    weights = counts.clamp(min=1.0).pow(-class_balance)
    pixel_losses = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    pixel_weights = weights[targets.masked_fill(~labelled, 0)] * labelled
    return (pixel_losses * pixel_weights).sum() / pixel_weights.sum()


def semantic_roi_loss(logits: Tensor, boxes: list[Tensor], full_targets: list[Tensor],
                      stride: int) -> Tensor:
    """The paper's RoI loss: cross entropy over 28x28 crops of the logits in ground-truth boxes.

    ``logits (N, C, h, w)`` at ``1/stride``; ``boxes[i] (K_i, 4)`` in input pixels;
    ``full_targets[i] (H_i, W_i)`` semantic labels at input resolution, sampled at the
    same 28x28 bin centres as the logits.
    """
    if sum(len(b) for b in boxes) == 0:
        return logits.sum() * 0.0
    crops = roi_align(logits, [b.to(logits.dtype) for b in boxes], MASK_SIZE,
                      spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
    labels = torch.cat([sample_labels_in_boxes(t, b, MASK_SIZE)
                        for t, b in zip(full_targets, boxes)])
    return semantic_loss(crops, labels)
