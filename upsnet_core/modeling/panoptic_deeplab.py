"""Panoptic-DeepLab (Cheng et al., CVPR 2020; survey slides): bottom-up panoptic
segmentation without boxes.

- Backbone: the same ResNet-FPN as the other architectures. Panoptic-DeepLab's own encoder
  is a ResNet at output stride 16 whose decoders fuse 1/8 and 1/4 features; the FPN's P4
  (1/16, with P5's context through the top-down path), P3 and P2 give exactly those inputs,
  so one backbone module (and the same small backbone in comparisons) serves all four.
- Two decoupled decoders (:class:`ASPPDecoder`): ASPP on P4, upsampled 2x and fused with
  P3, upsampled 2x and fused with P2, to ``(N, C, H/4, W/4)``; one for the semantic head,
  one for the class-agnostic instance heads (centre heatmap ``(N, 1, H/4, W/4)``, offsets
  ``(N, 2, H/4, W/4)`` in input pixels ``(dy, dx)``).
- Losses (:mod:`.deeplab_targets`): semantic cross entropy with small-instance weights and
  hard-pixel mining, MSE of the heatmap, L1 of the offsets.
- Inference (:mod:`.center_grouping`): centres by max-pooling NMS, threshold and top-k;
  thing pixels grouped to the nearest centre through their offsets; each instance's class
  by majority vote of the semantic prediction; stuff from the semantic argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from ..categories import CategorySet
from ..config import InferenceConfig, LossWeights, PanopticDeepLabConfig, UPSNetConfig
from ..profiling import Timer, no_timer
from . import postprocess as post
from .backbone import build_backbone
from .center_grouping import find_centers, group_pixels, majority_vote, panoptic_channels
from .deeplab_targets import center_loss, hard_pixel_loss, instance_targets, offset_loss
from .grid import decision_grid_logits
from .meta_arch import PanopticModel
from .preprocess import ImageBatcher
from .semantic_fpn import conv_norm_relu, group_norm
from .targets import check_targets, on_loss_grid

_DECODER_LEVELS = ("0", "1", "2")  # P2 (1/4), P3 (1/8), P4 (1/16)


def batch_norms_to_group_norms(module: nn.Module, groups: int) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a GroupNorm of ``groups`` groups.

    torchvision's ASPP normalises its image-pooling branch, a ``(N, C, 1, 1)`` map, with
    batch norm, which cannot train on one image per process; group norm can, and matches
    the other heads here."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(groups, child.num_features))
        else:
            batch_norms_to_group_norms(child, groups)
    return module


class ASPPDecoder(nn.Module):
    """``[P2, P3, P4]`` to ``(N, channels, H/4, W/4)``: ASPP on P4, then twice 2x bilinear
    upsampling, concatenation with the 1x1-projected finer level and a 3x3 conv + GN + ReLU
    (Panoptic-DeepLab's decoder with 3x3 instead of 5x5 depthwise-separable convs)."""

    def __init__(self, in_channels: int, aspp_channels: int, rates: list[int], channels: int,
                 norm_groups: int):
        super().__init__()
        norm = group_norm(norm_groups)
        self.aspp = batch_norms_to_group_norms(ASPP(in_channels, rates, aspp_channels), norm_groups)
        low = max(norm_groups, channels // 4)
        self.project = nn.ModuleList([conv_norm_relu(in_channels, low, norm, kernel=1)
                                      for _ in range(2)])  # P3, P2
        self.fuse = nn.ModuleList([conv_norm_relu(aspp_channels + low, channels, norm),
                                   conv_norm_relu(channels + low, channels, norm)])

    def forward(self, levels: list[Tensor]) -> Tensor:
        p2, p3, p4 = levels
        x = self.aspp(p4)
        for finer, project, fuse in zip((p3, p2), self.project, self.fuse):
            x = F.interpolate(x, size=finer.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, project(finer)], dim=1))
        return x


class PredictionHead(nn.Sequential):
    """3x3 conv + GN + ReLU, then a 1x1 conv to ``out_channels``."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, norm_groups: int):
        super().__init__(conv_norm_relu(in_channels, channels, group_norm(min(norm_groups, channels))),
                         nn.Conv2d(channels, out_channels, 1))


class PanopticDeepLab(PanopticModel):
    """Losses: ``loss_semantic``, ``loss_center``, ``loss_offset``. Inference: centre
    grouping (``merge="center_grouping"``)."""

    merges = ("center_grouping",)

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, semantic_decoder: ASPPDecoder,
                 instance_decoder: ASPPDecoder, semantic_head: PredictionHead,
                 center_head: PredictionHead, offset_head: PredictionHead,
                 categories: CategorySet, loss_weights: LossWeights, inference: InferenceConfig,
                 settings: PanopticDeepLabConfig, loss_stride: int):
        super().__init__(batcher, backbone, categories, loss_weights, inference)
        self.semantic_decoder = semantic_decoder
        self.instance_decoder = instance_decoder
        self.semantic_head = semantic_head
        self.center_head = center_head
        self.offset_head = offset_head
        self.settings = settings
        self.loss_stride = loss_stride

    def levels(self, images: Tensor) -> list[Tensor]:
        """P2, P3, P4 of the backbone for ``images (N, 3, H, W)``."""
        features = self.backbone(images)
        return [features[k] for k in _DECODER_LEVELS]

    def heads(self, levels: list[Tensor]) -> Tensor:
        """``(N, num_classes + 3, H/4, W/4)``: semantic logits, centre heatmap, offsets (dy, dx)."""
        semantic = self.semantic_head(self.semantic_decoder(levels))
        instance = self.instance_decoder(levels)
        return torch.cat([semantic, self.center_head(instance), self.offset_head(instance)], dim=1)

    # ------------------------------------------------------------------ training
    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        batch = self.batcher(images)
        check_targets(targets, batch.image_sizes, self.categories)
        stride = self.loss_stride
        outputs, semantic = on_loss_grid(self.heads(self.levels(batch.tensors)), targets, stride)
        size = tuple(outputs.shape[-2:])
        settings = self.settings
        per_image = [instance_targets(t["masks"], s, self.categories.num_stuff, size, stride,
                                      settings.center_sigma, settings.small_instance_area,
                                      settings.small_instance_weight)
                     for t, s in zip(targets, semantic)]
        stacked = {field: torch.stack([getattr(t, field) for t in per_image])
                   for field in ("heatmap", "offsets", "instance", "pixel_weight", "center_valid")}
        num_classes = self.categories.num_classes
        losses = {
            "loss_semantic": hard_pixel_loss(outputs[:, :num_classes], semantic,
                                             stacked["pixel_weight"], settings.hard_pixel_fraction),
            "loss_center": center_loss(outputs[:, num_classes], stacked["heatmap"],
                                       stacked["center_valid"]),
            "loss_offset": offset_loss(outputs[:, num_classes + 1:], stacked["offsets"],
                                       stacked["instance"]),
        }
        return self.weighted(losses)

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, images: list[Tensor] | Tensor,
                output_sizes: list[tuple[int, int]] | None = None,
                timer: Timer = no_timer, merge: str | None = None) -> list[post.PanopticResult]:
        """Panoptic results, each at its ``output_sizes`` entry (default: its input size)."""
        self.resolve_merge(merge)
        with timer("backbone"):
            batch = self.batcher(images)
            levels = self.levels(batch.tensors)
        sizes = batch.image_sizes
        output_sizes = self.check_output_sizes(output_sizes, sizes)
        with timer("decoders_and_heads"):
            outputs = self.heads(levels)
        with timer("panoptic_postprocess"):
            return [self._panoptic_result(o, s, out) for o, s, out in zip(outputs, sizes, output_sizes)]

    def _panoptic_result(self, outputs: Tensor, input_size: tuple[int, int],
                         output_size: tuple[int, int]) -> post.PanopticResult:
        config = self.inference_config
        stride = config.decision_stride
        outputs = decision_grid_logits(outputs.float(), input_size, stride)
        num_stuff, num_classes = self.categories.num_stuff, self.categories.num_classes
        semantic = post.argmax(outputs[:num_classes])
        cells, scores = find_centers(outputs[num_classes], config.center_threshold,
                                     config.center_kernel, config.center_top_k)
        centers = (cells.float() + 0.5) * stride
        instance = group_pixels(centers, outputs[num_classes + 1:], semantic >= num_stuff, stride)
        classes = majority_vote(instance, semantic, len(cells), num_classes)
        classes = torch.where(classes >= 0, classes, num_stuff)  # no cells: never rendered
        channels = panoptic_channels(semantic, instance, num_stuff, len(cells))
        return self.channels_result(channels, classes, scores, input_size, output_size, stride)


def build_panoptic_deeplab(config: UPSNetConfig) -> PanopticDeepLab:
    categories = config.category_set()
    model = config.model
    settings = model.panoptic_deeplab
    backbone = build_backbone(model.backbone)
    channels = backbone.out_channels
    groups = settings.norm_groups

    def decoder(width: int) -> ASPPDecoder:
        return ASPPDecoder(channels, settings.aspp_channels, settings.atrous_rates, width, groups)

    semantic_width, instance_width = settings.semantic_decoder_channels, settings.instance_decoder_channels
    return PanopticDeepLab(
        batcher=ImageBatcher(model.input), backbone=backbone,
        semantic_decoder=decoder(semantic_width), instance_decoder=decoder(instance_width),
        semantic_head=PredictionHead(semantic_width, settings.head_channels, categories.num_classes, groups),
        center_head=PredictionHead(instance_width, settings.head_channels, 1, groups),
        offset_head=PredictionHead(instance_width, settings.head_channels, 2, groups),
        categories=categories, loss_weights=model.loss_weights, inference=model.inference,
        settings=settings, loss_stride=model.loss_stride)
