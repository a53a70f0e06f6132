"""Panoptic FPN's semantic branch (Kirillov et al., CVPR 2019; survey slides, "Semantic
segmentation branch"), and its upsampling stages, which HPS's semantic branch reuses."""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

NUM_LEVELS = 4  # P2, P3, P4, P5

Norm = Callable[[int], nn.Module]
"""Builds the normalisation layer of a given channel count (GroupNorm, BatchNorm2d)."""


def conv_norm_relu(in_channels: int, out_channels: int, norm: Norm, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         norm(out_channels), nn.ReLU(inplace=True))


class Upsample2x(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class UpsamplingStages(nn.Module):
    """P2..P5 to four ``(N, channels, H/4, W/4)`` maps.

    ``P_k`` goes through ``max(1, k - 2)`` stages of 3x3 conv + norm + ReLU, each but P2's
    followed by 2x bilinear upsampling: P2 one stage at 1/4, P3 one stage and one 2x, P4
    two, P5 three; every level then lies on P2's grid.
    """

    def __init__(self, in_channels: int, channels: int, norm: Norm):
        super().__init__()
        self.levels = nn.ModuleList()
        for level in range(NUM_LEVELS):
            stages: list[nn.Module] = []
            for stage in range(max(1, level)):
                stages.append(conv_norm_relu(in_channels if stage == 0 else channels, channels, norm))
                if level > 0:
                    stages.append(Upsample2x())
            self.levels.append(nn.Sequential(*stages))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        if len(features) != NUM_LEVELS:
            raise ValueError(f"the semantic branch takes P2..P5 ({NUM_LEVELS} maps), got {len(features)}")
        return [stages(f) for stages, f in zip(self.levels, features)]


def group_norm(groups: int) -> Norm:
    return lambda channels: nn.GroupNorm(groups, channels)


class SemanticFPNHead(nn.Module):
    """Panoptic FPN's semantic head: the :class:`UpsamplingStages` with GroupNorm, their
    four maps summed element-wise, a 1x1 conv: ``(N, num_classes, H/4, W/4)`` logits."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, norm_groups: int):
        super().__init__()
        self.upsampling = UpsamplingStages(in_channels, channels, group_norm(norm_groups))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.classifier(sum(self.upsampling(features)))
