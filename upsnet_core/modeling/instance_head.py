"""Mask R-CNN instance head built from torchvision's RPN and RoI heads.

torchvision's ``RoIHeads`` turns mask logits into probabilities at inference; the
panoptic head needs the logits themselves, so this module runs the box branch through
torchvision and the mask branch through :meth:`InstanceHead.mask_logits`, which serves
both training (ground-truth boxes for the panoptic head) and inference (pruned
detections only, so no mask is computed for a detection that pruning drops).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from ..config import RoIHeadsConfig, RPNConfig

MASK_SIZE = 28
"""Side of the mask logits (Mask R-CNN): the mask head sees 14x14 RoI features."""

_ROI_FEATURES = ["0", "1", "2", "3"]  # P2..P5; P6 only feeds the RPN

_TORCHVISION_LOSS_NAMES = {
    "loss_objectness": "loss_rpn_objectness",
    "loss_rpn_box_reg": "loss_rpn_box",
    "loss_classifier": "loss_box_cls",
    "loss_box_reg": "loss_box_reg",
    "loss_mask": "loss_mask",
}


def build_rpn(config: RPNConfig, channels: int) -> RegionProposalNetwork:
    sizes = tuple((s,) for s in config.anchor_sizes)
    ratios = (tuple(config.aspect_ratios),) * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    return RegionProposalNetwork(
        anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
        config.fg_iou_thresh, config.bg_iou_thresh, config.batch_size_per_image,
        config.positive_fraction,
        dict(training=config.pre_nms_top_n_train, testing=config.pre_nms_top_n_test),
        dict(training=config.post_nms_top_n_train, testing=config.post_nms_top_n_test),
        config.nms_thresh)


def build_roi_heads(config: RoIHeadsConfig, channels: int, num_things: int) -> RoIHeads:
    """Box and mask branches for ``num_things`` classes plus background."""
    box_pool = MultiScaleRoIAlign(_ROI_FEATURES, output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(channels * 7 * 7, config.representation_size)
    mask_head = MaskRCNNHeads(channels, config.mask_head_layers, 1)
    return RoIHeads(
        box_pool, box_head, FastRCNNPredictor(config.representation_size, num_things + 1),
        config.fg_iou_thresh, config.bg_iou_thresh, config.batch_size_per_image,
        config.positive_fraction, None, config.score_thresh, config.nms_thresh,
        config.detections_per_img,
        mask_roi_pool=MultiScaleRoIAlign(_ROI_FEATURES, output_size=14, sampling_ratio=2),
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(config.mask_head_layers[-1], 256, num_things + 1))


class InstanceHead(nn.Module):
    """RPN + RoI heads. Boxes are ``(K, 4)`` xyxy in input-image pixels."""

    def __init__(self, rpn: RegionProposalNetwork, roi_heads: RoIHeads):
        super().__init__()
        self.rpn = rpn
        self.roi_heads = roi_heads

    def propose(self, images: ImageList, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Region proposals per image, and the RPN losses when training."""
        proposals, losses = self.rpn(images, features, targets)
        return proposals, _rename(losses)

    def losses(self, features: dict[str, Tensor], proposals: list[Tensor],
               image_sizes: list[tuple[int, int]], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Box classification, box regression and mask losses (torchvision's)."""
        _, losses = self.roi_heads(features, proposals, image_sizes, targets)
        return _rename(losses)

    def detect(self, features: dict[str, Tensor], proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Box branch at inference: per image ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``."""
        heads = self.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        boxes, scores, labels = heads.postprocess_detections(class_logits, box_regression,
                                                             proposals, image_sizes)
        return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(boxes, scores, labels)]

    def class_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                     image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """The box classifier's logits ``(K_i, num_things + 1)`` (background first) of
        given boxes, per image."""
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            classes = self.roi_heads.box_predictor.cls_score.out_features
            return [features["0"].new_zeros((0, classes)) for _ in boxes]
        heads = self.roi_heads
        logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, boxes, image_sizes)))
        return list(logits.split(counts))

    def mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor], labels: list[Tensor],
                    image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Mask logits ``(K_i, 28, 28)`` of each box's own class, per image."""
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            reference = features["0"]
            return [reference.new_zeros((0, MASK_SIZE, MASK_SIZE)) for _ in boxes]
        return list(self.own_class_mask_logits(features, boxes, torch.cat(labels),
                                               image_sizes).split(counts))

    def own_class_mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                              labels: Tensor, image_sizes: list[tuple[int, int]]) -> Tensor:
        """Mask logits ``(K, 28, 28)`` of all images' boxes together (``labels (K,)`` in
        image order); no Python-side shapes, so it also traces for ONNX export."""
        heads = self.roi_heads
        pooled = heads.mask_roi_pool(features, boxes, image_sizes)
        logits = heads.mask_predictor(heads.mask_head(pooled))  # (K, num_things + 1, 28, 28)
        index = labels.view(-1, 1, 1, 1).expand(-1, 1, *logits.shape[-2:])
        return logits.gather(1, index)[:, 0]


def roi_pool_inputs(features: dict[str, Tensor]) -> dict[str, Tensor]:
    """The maps the RoI pools read (P2..P5), contiguous: torchvision's ``roi_align`` makes
    its input contiguous on every call, so channels-last maps would be copied by the box
    pool and again by the mask pool (P2 of a 512x1024 image: 36 ms each on 2 cores)."""
    return {level: features[level].contiguous() for level in _ROI_FEATURES}


def _rename(losses: dict[str, Tensor]) -> dict[str, Tensor]:
    return {_TORCHVISION_LOSS_NAMES[k]: v for k, v in losses.items()}


def build_instance_head(rpn_config: RPNConfig, roi_config: RoIHeadsConfig, channels: int,
                        num_things: int) -> InstanceHead:
    return InstanceHead(build_rpn(rpn_config, channels),
                        build_roi_heads(roi_config, channels, num_things))
