"""Panoptic FPN (Kirillov et al., CVPR 2019; survey slides): Mask R-CNN and a semantic FPN
branch on one ResNet-FPN, combined by the heuristic merge (instances by score without
overlap, stuff from the semantic branch elsewhere)."""
from __future__ import annotations

from torch import Tensor

from ..config import UPSNetConfig
from .backbone import build_backbone
from .grid import upsample_logits
from .instance_head import build_instance_head
from .preprocess import ImageBatcher
from .proposal_based import ProposalPanopticModel
from .semantic_fpn import SemanticFPNHead
from .semantic_head import semantic_loss
from .targets import check_targets, semantic_at_stride


class PanopticFPN(ProposalPanopticModel):
    """Losses: RPN, box, mask and the semantic cross entropy (on the ``loss_stride`` grid).
    Inference: the heuristic merge only (``merges = ("heuristic",)``)."""

    merges = ("heuristic",)

    def __init__(self, *args, loss_stride: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_stride = loss_stride

    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        batch = self.batcher(images)
        check_targets(targets, batch.image_sizes, self.categories)
        features, levels = self.features(batch)
        losses = self.instance_losses(batch, features, targets)
        logits = upsample_logits(self.semantic_head(levels), self.loss_stride)
        semantic = semantic_at_stride(targets, self.loss_stride, tuple(logits.shape[-2:]))
        losses["loss_semantic"] = semantic_loss(logits, semantic)
        return self.weighted(losses)


def build_panoptic_fpn(config: UPSNetConfig) -> PanopticFPN:
    categories = config.category_set()
    model = config.model
    backbone = build_backbone(model.backbone)
    channels = backbone.out_channels
    head = model.semantic_head
    return PanopticFPN(
        batcher=ImageBatcher(model.input), backbone=backbone,
        instance_head=build_instance_head(model.rpn, model.roi_heads, channels, categories.num_things),
        semantic_head=SemanticFPNHead(channels, head.channels, categories.num_classes,
                                      head.norm_groups),
        categories=categories, loss_weights=model.loss_weights, inference=model.inference,
        loss_stride=model.loss_stride)
