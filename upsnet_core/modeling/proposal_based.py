"""The part that the proposal-based architectures (UPSNet, Panoptic FPN, HPS) share: a
Mask R-CNN instance branch and a dense semantic branch on one ResNet-FPN, the instance
branch's losses and inference (pruned detections and their mask logits), and the
heuristic merge of Kirillov et al. that Panoptic FPN uses and UPSNet offers as baseline.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..categories import CategorySet
from ..config import InferenceConfig, LossWeights, UPSNetConfig
from ..profiling import Timer, no_timer
from . import postprocess as post
from .backbone import build_backbone
from .grid import HEAD_STRIDE, decision_grid_logits
from .instance_head import InstanceHead, build_instance_head, roi_pool_inputs
from .meta_arch import PanopticModel
from .panoptic_head import paste_mask_logits
from .preprocess import ImageBatcher
from .semantic_head import semantic_loss
from .targets import check_targets, on_loss_grid

SEMANTIC_LEVELS = ("0", "1", "2", "3")
"""Backbone outputs the semantic branches read: P2..P5."""


class ProposalPanopticModel(PanopticModel):
    """A :class:`PanopticModel` with ``instance_head`` (RPN + RoI heads) and ``semantic_head``.

    ``predict`` runs the same stages for every such architecture; a subclass gives its own
    merge (``merges[0]``) in :meth:`merged_result`, and may change how detections are
    classified (:meth:`classify`) and what the semantic head reads (:meth:`semantic_logits`).
    """

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, instance_head: InstanceHead,
                 semantic_head: nn.Module, categories: CategorySet, loss_weights: LossWeights,
                 inference: InferenceConfig, loss_stride: int = HEAD_STRIDE,
                 semantic_class_balance: float = 0.0):
        super().__init__(batcher, backbone, categories, loss_weights, inference)
        self.instance_head = instance_head
        self.semantic_head = semantic_head
        self.loss_stride = loss_stride
        self.semantic_class_balance = semantic_class_balance

    def features(self, batch: ImageList) -> tuple[dict[str, Tensor], list[Tensor]]:
        """All backbone outputs, and P2..P5 ``(N, C, H/2^k, W/2^k)`` for the semantic branch."""
        features = self.backbone(batch.tensors)
        return features, [features[k] for k in SEMANTIC_LEVELS]

    @torch.no_grad()
    def predict(self, images: list[Tensor] | Tensor,
                output_sizes: list[tuple[int, int]] | None = None,
                timer: Timer = no_timer, merge: str | None = None) -> list[post.PanopticResult]:
        """Panoptic results, each at its ``output_sizes`` entry (default: its input size).

        Pass ``output_sizes`` when the images were resized before inference: the label
        image is mapped back (nearest) to the original camera size. ``merge="heuristic"``
        is the baseline merge (instances pasted by score without overlap, stuff from the
        semantic head elsewhere) on the same outputs.
        """
        merge = self.resolve_merge(merge)
        with timer("backbone"):
            batch = self.batcher(images)
            features, levels = self.features(batch)
        sizes = batch.image_sizes
        output_sizes = self.check_output_sizes(output_sizes, sizes)
        kept, mask_logits = self.detections(batch, features, timer)
        with timer("semantic_head"):
            logits = self.semantic_logits(levels, kept, mask_logits)
        with timer("panoptic_postprocess"):
            return self.postprocess(logits, kept, mask_logits, sizes, output_sizes, merge)

    def postprocess(self, logits: Tensor, detections: list[dict[str, Tensor]],
                    mask_logits: list[Tensor], input_sizes: list[tuple[int, int]],
                    output_sizes: list[tuple[int, int]],
                    merge: str | None = None) -> list[post.PanopticResult]:
        """The merge and post-processing of a batch, from the network's outputs.

        ``logits (N, C, H_pad/4, W_pad/4)`` from the semantic branch; per image the pruned
        ``detections`` (:meth:`prune`) and their ``mask_logits (K_i, 28, 28)``;
        ``input_sizes`` the network's unpadded image sizes. Shared by :meth:`predict` and
        runtimes that compute the network elsewhere (``upsnet_core.onnx_runtime``).
        """
        merge = self.resolve_merge(merge)
        return [self._panoptic_result(l, d, m, s, o, merge)
                for l, d, m, s, o in zip(logits, detections, mask_logits, input_sizes, output_sizes)]

    def semantic_logits(self, levels: list[Tensor], detections: list[dict[str, Tensor]],
                        mask_logits: list[Tensor]) -> Tensor:
        """``(N, num_classes, H/4, W/4)`` semantic logits (stuff first) of P2..P5."""
        return self.semantic_head(levels)

    def _panoptic_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                         input_size: tuple[int, int], output_size: tuple[int, int],
                         merge: str) -> post.PanopticResult:
        """Merge semantic and instance outputs of one image into its label image.

        ``logits (C, h_pad, w_pad)`` are cropped to the cells that cover the image and
        upsampled to the decision grid (``inference.decision_stride``), where the mask
        logits are pasted too. Every merge decides one channel per grid cell (stuff index,
        ``num_stuff + i`` for instance ``i``, or the last channel for unknown/void) and
        shares the rendering.
        """
        stride = self.inference_config.decision_stride
        logits = decision_grid_logits(logits.float(), input_size, stride)
        if merge == "heuristic":
            return self.heuristic_result(logits, detections, mask_logits, input_size, output_size,
                                         stride)
        return self.merged_result(logits, detections, mask_logits, input_size, output_size, stride)

    def merged_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                      input_size: tuple[int, int], output_size: tuple[int, int],
                      stride: int) -> post.PanopticResult:
        """The architecture's own merge of one image (see :meth:`_panoptic_result`)."""
        raise NotImplementedError

    def training_step_start(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]
                            ) -> tuple[ImageList, dict[str, Tensor], list[Tensor], dict[str, Tensor]]:
        """The batch (targets checked against it), the backbone outputs, P2..P5 and the
        unweighted RPN, box and mask losses (torchvision's) of a training step."""
        batch = self.batcher(images)
        check_targets(targets, batch.image_sizes, self.categories)
        features, levels = self.features(batch)
        proposals, losses = self.instance_head.propose(batch, features, targets)
        losses.update(self.instance_head.losses(features, proposals, batch.image_sizes, targets))
        return batch, features, levels, losses

    def semantic_loss_on_grid(self, logits: Tensor, targets: list[dict[str, Tensor]]
                              ) -> tuple[Tensor, Tensor, Tensor]:
        """``logits (N, C, H/4, W/4)`` upsampled to the loss grid (``loss_stride``), the
        targets' semantic labels there ``(N, h, w)``, and the semantic cross entropy."""
        grid_logits, semantic = on_loss_grid(logits, targets, self.loss_stride)
        return grid_logits, semantic, semantic_loss(grid_logits, semantic,
                                                    self.semantic_class_balance)

    def detections(self, batch: ImageList, features: dict[str, Tensor],
                   timer: Timer) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
        """Per image: the detections that survive class-agnostic NMS and the score threshold
        (``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``, best first), and their mask
        logits ``(K, 28, 28)`` for the class :meth:`classify` gives them."""
        sizes = batch.image_sizes
        with timer("rpn"):
            proposals, _ = self.instance_head.propose(batch, features)
        with timer("roi_heads"):
            features = roi_pool_inputs(features)
            found = [self.prune(d) for d in self.instance_head.detect(features, proposals, sizes)]
            found = self.classify(features, found, sizes)
            mask_logits = self.instance_head.mask_logits(
                features, [d["boxes"] for d in found], [d["labels"] for d in found], sizes)
        return found, mask_logits

    def classify(self, features: dict[str, Tensor], detections: list[dict[str, Tensor]],
                 image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """The detections with the thing label each instance takes: here the box branch's."""
        return detections

    def prune(self, detections: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every per-detection tensor of ``detections`` indexed by the ones kept:
        class-agnostic NMS, then ``score > score_threshold``, best first."""
        config = self.inference_config
        keep = post.prune_detections(detections["boxes"], detections["scores"],
                                     config.nms_iou, config.score_threshold)
        return {k: v[keep] for k, v in detections.items()}

    def heuristic_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                         input_size: tuple[int, int], output_size: tuple[int, int],
                         stride: int) -> post.PanopticResult:
        """The heuristic merge (instances pasted by score without overlap, stuff from the
        semantic argmax elsewhere) of one image's decision-grid ``logits (C, h, w)`` and its
        detections' ``mask_logits (K, 28, 28)``."""
        pasted = paste_mask_logits(mask_logits.float(), detections["boxes"], logits.shape[-2:],
                                   stride)
        num_stuff = self.categories.num_stuff
        masks = pasted.map(lambda crop: crop > 0)
        channels = post.heuristic_channels(masks, post.argmax(logits), num_stuff,
                                           self.inference_config.mask_overlap_threshold)
        return self.channels_result(channels, num_stuff + detections["labels"] - 1,
                                    detections["scores"], input_size, output_size, stride)


def proposal_parts(config: UPSNetConfig) -> dict:
    """The constructor arguments every :class:`ProposalPanopticModel` takes from ``config``
    (batcher, ResNet-FPN backbone, instance head, categories, loss weights, inference,
    the semantic loss's grid and class balance); the semantic head is the architecture's own."""
    categories = config.category_set()
    model = config.model
    backbone = build_backbone(model.backbone)
    return dict(batcher=ImageBatcher(model.input), backbone=backbone,
                instance_head=build_instance_head(model.rpn, model.roi_heads, backbone.out_channels,
                                                  categories.num_things),
                categories=categories, loss_weights=model.loss_weights, inference=model.inference,
                loss_stride=model.loss_stride, semantic_class_balance=model.semantic_class_balance)
