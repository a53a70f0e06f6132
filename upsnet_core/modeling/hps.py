"""HPS: holistic end-to-end panoptic segmentation with inter-task relations (Kniewasser et
al.; the seeds' 002 text), on Panoptic FPN's ResNet-FPN and Mask R-CNN (its section 3.1).

- Semantic branch (3.1): each of P2..P5 through the upsampling modules (3x3 conv + batch
  norm + ReLU + 2x bilinear) to ``(N, 128, H/4, W/4)``, concatenated. Without the ISI a
  1x1 conv gives the class logits (3.1); with it (3.2) the ISI ``(N, #things, H/4, W/4)``
  is concatenated, then four 3x3 conv + BN + ReLU blocks and one 1x1 conv + BN + ReLU
  block reduce to the classes. The paper then upsamples bilinearly to the input; here the
  logits are upsampled to the loss / decision grid (``loss_stride``, ``decision_stride``).
- Fusion (3.1, :mod:`.hps_fusion`): soft-argmax class per detection, its mask logits on
  empty canvases, same-class canvases with high mask IoU merged, stacked after the stuff
  logits; the argmax over ``#stuff + #instances`` channels is the panoptic output.
- Training (3.1, "reorder the detected instances to match the order of the ground truth
  instances"): the fusion and the ISI are built from the ground-truth boxes in
  ground-truth order with their classes (the paper's lookup table reorders detections to
  exactly that order), and the panoptic cross entropy is added to the Mask R-CNN and
  semantic losses; all parameters are trained jointly.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..categories import CategorySet
from ..config import HPSConfig, InferenceConfig, LossWeights, UPSNetConfig
from . import postprocess as post
from .grid import HEAD_STRIDE
from .hps_fusion import (canvas_collection, fused_logits, initial_segmentation_image,
                         merge_canvases, soft_argmax)
from .instance_head import InstanceHead
from .panoptic_head import panoptic_loss
from .preprocess import ImageBatcher
from .proposal_based import ProposalPanopticModel, proposal_parts
from .semantic_fpn import NUM_LEVELS, UpsamplingStages, conv_norm_relu
from .targets import labels_at_stride, panoptic_target


class HPSSemanticHead(nn.Module):
    """``forward(levels, isi)``: P2..P5 and, when built with ``num_things > 0``, the ISI
    ``(N, num_things, H/4, W/4)``; returns ``(N, num_classes, H/4, W/4)`` logits."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_things: int,
                 refine_blocks: int):
        super().__init__()
        self.upsampling = UpsamplingStages(in_channels, channels, nn.BatchNorm2d)
        concatenated = NUM_LEVELS * channels
        if num_things:
            blocks = [conv_norm_relu(concatenated + num_things if i == 0 else channels, channels,
                                     nn.BatchNorm2d) for i in range(refine_blocks)]
            blocks.append(conv_norm_relu(channels, num_classes, nn.BatchNorm2d, kernel=1))
            self.classifier = nn.Sequential(*blocks)
        else:
            self.classifier = nn.Conv2d(concatenated, num_classes, 1)
        self.uses_isi = num_things > 0

    def forward(self, levels: list[Tensor], isi: Tensor | None) -> Tensor:
        maps = self.upsampling(levels)
        if self.uses_isi:
            maps.append(isi.to(maps[0].dtype))
        return self.classifier(torch.cat(maps, dim=1))


class HPS(ProposalPanopticModel):
    """Losses: RPN, box, mask, semantic and panoptic cross entropy. Inference: the HPS
    fusion (``merge="hps"``) or the heuristic merge on the same outputs."""

    merges = ("hps", "heuristic")

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, instance_head: InstanceHead,
                 semantic_head: HPSSemanticHead, categories: CategorySet,
                 loss_weights: LossWeights, inference: InferenceConfig, hps: HPSConfig,
                 **common):
        super().__init__(batcher, backbone, instance_head, semantic_head, categories,
                         loss_weights, inference, **common)
        self.beta = hps.soft_argmax_beta

    # ------------------------------------------------------------------ training
    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        batch, features, levels, losses = self.training_step_start(images, targets)
        boxes, labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
        mask_logits = self.instance_head.mask_logits(features, boxes, labels, batch.image_sizes)
        weights = [torch.ones(len(b), device=b.device) for b in boxes]
        logits = self._semantic(levels, boxes, labels, weights, mask_logits)
        stride = self.loss_stride
        grid_logits, semantic, losses["loss_semantic"] = self.semantic_loss_on_grid(logits, targets)
        size = tuple(grid_logits.shape[-2:])
        num_stuff = self.categories.num_stuff
        fused, panoptic = [], []
        for image_logits, image_semantic, target, masks_logits in zip(grid_logits, semantic, targets,
                                                                      mask_logits):
            canvases = canvas_collection(masks_logits, target["boxes"], size, stride)
            fused.append(fused_logits(image_logits[:num_stuff], canvases))
            masks = labels_at_stride(target["masks"], stride, size, 0).bool()
            none_unknown = torch.zeros(len(masks), dtype=torch.bool, device=masks.device)
            panoptic.append(panoptic_target(image_semantic, masks, none_unknown, num_stuff))
        losses["loss_panoptic"] = panoptic_loss(fused, panoptic)
        return self.weighted(losses)

    def _semantic(self, levels: list[Tensor], boxes: list[Tensor], labels: list[Tensor],
                  weights: list[Tensor], mask_logits: list[Tensor]) -> Tensor:
        isi = None
        if self.semantic_head.uses_isi:
            size = tuple(levels[0].shape[-2:])
            isi = torch.stack([
                initial_segmentation_image(m.float(), b, l, w, self.categories.num_things, size,
                                           HEAD_STRIDE)
                for m, b, l, w in zip(mask_logits, boxes, labels, weights)])
        return self.semantic_head(levels, isi)

    # ----------------------------------------------------------------- inference
    def classify(self, features: dict[str, Tensor], detections: list[dict[str, Tensor]],
                 image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Each detection's class by the soft-argmax (HPS eq. 1) of the box classifier's
        thing logits on its final box."""
        logits = self.instance_head.class_logits(features, [d["boxes"] for d in detections],
                                                 image_sizes)
        return [{**d, "labels": soft_argmax(l[:, 1:], self.beta)} for d, l in zip(detections, logits)]

    def semantic_logits(self, levels: list[Tensor], detections: list[dict[str, Tensor]],
                        mask_logits: list[Tensor]) -> Tensor:
        return self._semantic(levels, [d["boxes"] for d in detections],
                              [d["labels"] for d in detections],
                              [d["scores"] for d in detections], mask_logits)

    def merged_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                      input_size: tuple[int, int], output_size: tuple[int, int],
                      stride: int) -> post.PanopticResult:
        """The HPS fusion of one image on the decision grid (module docstring)."""
        num_stuff = self.categories.num_stuff
        canvases = canvas_collection(mask_logits, detections["boxes"], tuple(logits.shape[-2:]),
                                     stride)
        canvases, keep = merge_canvases(canvases, detections["labels"],
                                        self.inference_config.canvas_merge_iou)
        channels = post.argmax(fused_logits(logits[:num_stuff], canvases))
        return self.channels_result(channels, num_stuff + detections["labels"][keep] - 1,
                                    detections["scores"][keep], input_size, output_size, stride)


def build_hps(config: UPSNetConfig) -> HPS:
    parts = proposal_parts(config)
    categories, model = parts["categories"], config.model
    hps = model.hps
    return HPS(
        **parts,
        semantic_head=HPSSemanticHead(parts["backbone"].out_channels, model.semantic_head.channels,
                                      categories.num_classes,
                                      categories.num_things if hps.initial_segmentation_image else 0,
                                      hps.refine_blocks),
        hps=hps)
