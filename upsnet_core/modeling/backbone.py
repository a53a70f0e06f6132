"""ResNet + FPN backbone (torchvision), with the paper's optional res5 global context."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ..config import BackboneConfig

FEATURE_NAMES = ("0", "1", "2", "3", "pool")
"""Keys of the backbone output: P2, P3, P4, P5 (strides 4..32) and P6 (stride 64)."""


class GlobalContextFPN(FeaturePyramidNetwork):
    """FPN whose top lateral (from res5) also receives globally average-pooled res5 features.

    The pooled vector is projected to the FPN width and broadcast-added before the 3x3
    output conv of P5, so P5 and everything the top-down path derives from it see
    image-level context.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int):
        super().__init__(in_channels_list, out_channels, extra_blocks=LastLevelMaxPool())
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                     nn.Conv2d(in_channels_list[-1], out_channels, 1))

    def get_result_from_inner_blocks(self, x: Tensor, idx: int) -> Tensor:
        lateral = super().get_result_from_inner_blocks(x, idx)
        if idx in (-1, len(self.inner_blocks) - 1):
            lateral = lateral + self.context(x)
        return lateral


def _load_resnet_weights(model: nn.Module, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {file}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {file} must be a torchvision ResNet state dict")
    state = state.get("state_dict", state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The classifier is not part of the backbone; everything else must match.
    missing = [k for k in missing if not k.startswith("fc.")]
    unexpected = [k for k in unexpected if not k.startswith("fc.") and "num_batches_tracked" not in k]
    if missing or unexpected:
        raise ValueError(f"backbone weights {file} do not fit resnet: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def build_backbone(config: BackboneConfig) -> BackboneWithFPN:
    """ResNet-FPN returning ``{'0': P2, '1': P3, '2': P4, '3': P5, 'pool': P6}``.

    Input ``(N, 3, H, W)`` with H, W multiples of 32; ``P_k`` is ``(N, C, H/2^k, W/2^k)``
    with ``C = config.fpn_channels``.
    """
    norm_layer = FrozenBatchNorm2d if config.norm == "frozen_bn" else nn.BatchNorm2d
    body = resnet.__dict__[f"resnet{config.depth}"](weights=None, norm_layer=norm_layer)
    if config.weights:
        _load_resnet_weights(body, config.weights)
    backbone = _resnet_fpn_extractor(body, config.trainable_layers)
    in_channels_list = [backbone.fpn.inner_blocks[i][0].in_channels for i in range(4)]
    if config.global_context:
        backbone.fpn = GlobalContextFPN(in_channels_list, config.fpn_channels)
    elif config.fpn_channels != backbone.out_channels:
        backbone.fpn = FeaturePyramidNetwork(in_channels_list, config.fpn_channels,
                                             extra_blocks=LastLevelMaxPool())
    backbone.out_channels = config.fpn_channels
    return backbone
