"""Panoptic FPN (Kirillov et al., CVPR 2019; survey slides): Mask R-CNN and a semantic FPN
branch on one ResNet-FPN, combined by the heuristic merge (instances by score without
overlap, stuff from the semantic branch elsewhere)."""
from __future__ import annotations

from torch import Tensor, nn

from ..categories import CategorySet
from ..config import InferenceConfig, LossWeights, UPSNetConfig
from .instance_head import InstanceHead
from .preprocess import ImageBatcher
from .proposal_based import ProposalPanopticModel, proposal_parts
from .semantic_fpn import SemanticFPNHead


class PanopticFPN(ProposalPanopticModel):
    """Losses: RPN, box, mask and the semantic cross entropy (on the ``loss_stride`` grid).
    Inference: the heuristic merge only (``merges = ("heuristic",)``)."""

    merges = ("heuristic",)

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, instance_head: InstanceHead,
                 semantic_head: SemanticFPNHead, categories: CategorySet,
                 loss_weights: LossWeights, inference: InferenceConfig, **common):
        super().__init__(batcher, backbone, instance_head, semantic_head, categories,
                         loss_weights, inference, **common)

    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        _, _, levels, losses = self.training_step_start(images, targets)
        _, _, losses["loss_semantic"] = self.semantic_loss_on_grid(self.semantic_head(levels),
                                                                   targets)
        return self.weighted(losses)


def build_panoptic_fpn(config: UPSNetConfig) -> PanopticFPN:
    parts = proposal_parts(config)
    head = config.model.semantic_head
    return PanopticFPN(
        **parts,
        semantic_head=SemanticFPNHead(parts["backbone"].out_channels, head.channels,
                                      parts["categories"].num_classes, head.norm_groups))
