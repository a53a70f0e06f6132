"""UPSNet meta-architecture: composes injected backbone, heads and post-processing."""
from __future__ import annotations

from torch import Tensor, nn

from ..categories import CategorySet
from ..config import InferenceConfig, LossWeights, UPSNetConfig
from . import postprocess as post
from .grid import HEAD_STRIDE
from .instance_head import InstanceHead
from .panoptic_head import PanopticHead, panoptic_loss, paste_mask_logits
from .preprocess import ImageBatcher
from .proposal_based import ProposalPanopticModel, proposal_parts
from .semantic_head import SemanticHead, semantic_roi_loss
from .targets import labels_at_stride, panoptic_target, sample_unknown


class UPSNet(ProposalPanopticModel):
    """Unified panoptic segmentation network.

    ``forward(images, targets)`` in training mode returns the eight weighted losses;
    in eval mode it returns one :class:`~upsnet_core.modeling.postprocess.PanopticResult`
    per image (same as :meth:`predict`). Images are ``(3, H, W)`` float RGB in [0, 1].
    """

    merges = ("upsnet", "heuristic")

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, instance_head: InstanceHead,
                 semantic_head: SemanticHead, panoptic_head: PanopticHead,
                 categories: CategorySet, loss_weights: LossWeights, inference: InferenceConfig,
                 unknown_fraction: float, **common):
        super().__init__(batcher, backbone, instance_head, semantic_head, categories,
                         loss_weights, inference, **common)
        self.panoptic_head = panoptic_head
        self.unknown_fraction = unknown_fraction

    # ------------------------------------------------------------------ training
    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The eight losses, each multiplied by its weight from the config."""
        batch, features, levels, losses = self.training_step_start(images, targets)
        logits = self.semantic_head(levels)
        grid_logits, semantic, losses["loss_semantic"] = self.semantic_loss_on_grid(logits, targets)
        boxes = [t["boxes"] for t in targets]
        losses["loss_semantic_roi"] = semantic_roi_loss(
            logits, boxes, [t["semantic"] for t in targets], HEAD_STRIDE)
        mask_logits = self.instance_head.mask_logits(
            features, boxes, [t["labels"] for t in targets], batch.image_sizes)
        losses["loss_panoptic"] = self._panoptic_loss(grid_logits, semantic, targets, mask_logits,
                                                      self.loss_stride)
        return self.weighted(losses)

    def _panoptic_loss(self, logits: Tensor, semantic: Tensor, targets: list[dict[str, Tensor]],
                       mask_logits: list[Tensor], stride: int) -> Tensor:
        """Panoptic cross entropy with ground-truth boxes and classes, in ground-truth order,
        on the grid of ``stride`` input pixels of ``logits (N, C, h, w)`` and ``semantic
        (N, h, w)``; a random ``unknown_fraction`` of instances is left out of the logits
        and labelled unknown, which is what teaches the unknown channel to flag missed
        instances."""
        size = tuple(logits.shape[-2:])
        all_logits, all_targets = [], []
        for image_logits, image_semantic, target, masks_logits in zip(logits, semantic, targets, mask_logits):
            boxes, labels = target["boxes"], target["labels"]
            unknown = sample_unknown(len(boxes), self.unknown_fraction, boxes.device)
            known = ~unknown
            pasted = paste_mask_logits(masks_logits[known], boxes[known], size, stride)
            all_logits.append(self.panoptic_head(image_logits, labels[known], pasted))
            masks = labels_at_stride(target["masks"], stride, size, 0).bool()
            all_targets.append(panoptic_target(image_semantic, masks, unknown,
                                               self.categories.num_stuff))
        return panoptic_loss(all_logits, all_targets)

    # ----------------------------------------------------------------- inference
    def merged_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                      input_size: tuple[int, int], output_size: tuple[int, int],
                      stride: int) -> post.PanopticResult:
        """The panoptic head's merge of one image (``merge="upsnet"``): mask pruning, the
        panoptic logits' argmax per decision-grid cell, then the class-assignment rule."""
        size = tuple(logits.shape[-2:])
        labels, scores = detections["labels"], detections["scores"]
        pasted = paste_mask_logits(mask_logits.float(), detections["boxes"], size, stride)
        num_stuff, overlap = self.categories.num_stuff, self.inference_config.mask_overlap_threshold
        masks = pasted.map(lambda crop: crop > 0)
        keep = post.prune_overlapping_masks(masks, labels, overlap)
        labels, scores, pasted = labels[keep], scores[keep], pasted.select(keep)
        channels = self.panoptic_head.channels(logits, labels, pasted,
                                               self.inference_config.unknown_channel)
        instance_classes = post.assign_instance_classes(
            channels, post.argmax(logits), labels, num_stuff, self.categories.num_classes)
        return self.channels_result(channels, instance_classes, scores, input_size, output_size,
                                    stride)


def build_upsnet(config: UPSNetConfig) -> UPSNet:
    """Build an (untrained, or backbone-initialised) UPSNet from a config."""
    parts = proposal_parts(config)
    model = config.model
    head = model.semantic_head
    return UPSNet(
        **parts,
        semantic_head=SemanticHead(parts["backbone"].out_channels, head.channels,
                                   head.num_deform_layers, parts["categories"].num_classes,
                                   head.norm_groups),
        panoptic_head=PanopticHead(parts["categories"].num_stuff),
        unknown_fraction=model.unknown_fraction,
    )
