"""UPSNet meta-architecture: composes injected backbone, heads and post-processing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..categories import IGNORE_INDEX, LABEL_DIVISOR, CategorySet
from ..config import InferenceConfig, LossWeights, UPSNetConfig
from ..profiling import Timer, no_timer
from . import postprocess as post
from .backbone import build_backbone
from .instance_head import InstanceHead, build_instance_head
from .panoptic_head import PanopticHead, panoptic_loss, paste_mask_logits
from .preprocess import ImageBatcher
from .semantic_head import SemanticHead, semantic_loss, semantic_roi_loss
from .targets import check_targets, labels_at_stride, panoptic_target, sample_unknown

HEAD_STRIDE = 4
"""The semantic and panoptic heads work at 1/4 of the input resolution (P2)."""

_SEMANTIC_LEVELS = ("0", "1", "2", "3")  # P2..P5


class UPSNet(nn.Module):
    """Unified panoptic segmentation network.

    ``forward(images, targets)`` in training mode returns the eight weighted losses;
    in eval mode it returns one :class:`~upsnet_core.modeling.postprocess.PanopticResult`
    per image (same as :meth:`predict`). Images are ``(3, H, W)`` float RGB in [0, 1].
    """

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, instance_head: InstanceHead,
                 semantic_head: SemanticHead, panoptic_head: PanopticHead,
                 categories: CategorySet, loss_weights: LossWeights, inference: InferenceConfig,
                 unknown_fraction: float, loss_stride: int = HEAD_STRIDE):
        super().__init__()
        self.batcher = batcher
        self.backbone = backbone
        self.instance_head = instance_head
        self.semantic_head = semantic_head
        self.panoptic_head = panoptic_head
        self.categories = categories
        self.loss_weights = loss_weights
        self.inference_config = inference
        self.unknown_fraction = unknown_fraction
        self.loss_stride = loss_stride

    def forward(self, images: list[Tensor] | Tensor,
                targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets (use model.eval() for inference)")
            return self.losses(images, targets)
        return self.predict(images)

    def _features(self, batch: ImageList) -> tuple[dict[str, Tensor], list[Tensor]]:
        features = self.backbone(batch.tensors)
        return features, [features[k] for k in _SEMANTIC_LEVELS]

    # ------------------------------------------------------------------ training
    def losses(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The eight losses, each multiplied by its weight from the config."""
        batch = self.batcher(images)
        check_targets(targets, batch.image_sizes, self.categories)
        features, levels = self._features(batch)
        proposals, losses = self.instance_head.propose(batch, features, targets)
        losses.update(self.instance_head.losses(features, proposals, batch.image_sizes, targets))
        logits = self.semantic_head(levels)
        stride = self.loss_stride
        grid_logits = upsample_logits(logits, stride)
        size = tuple(grid_logits.shape[-2:])
        semantic = torch.stack([labels_at_stride(t["semantic"], stride, size, IGNORE_INDEX)
                                for t in targets])
        boxes = [t["boxes"] for t in targets]
        losses["loss_semantic"] = semantic_loss(grid_logits, semantic)
        losses["loss_semantic_roi"] = semantic_roi_loss(
            logits, boxes, [t["semantic"] for t in targets], HEAD_STRIDE)
        mask_logits = self.instance_head.mask_logits(
            features, boxes, [t["labels"] for t in targets], batch.image_sizes)
        losses["loss_panoptic"] = self._panoptic_loss(grid_logits, semantic, targets, mask_logits,
                                                      stride)
        return {name: value * getattr(self.loss_weights, name[len("loss_"):])
                for name, value in losses.items()}

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
    @torch.no_grad()
    def predict(self, images: list[Tensor] | Tensor,
                output_sizes: list[tuple[int, int]] | None = None,
                timer: Timer = no_timer, merge: str = "upsnet") -> list[post.PanopticResult]:
        """Panoptic results, each at its ``output_sizes`` entry (default: its input size).

        Pass ``output_sizes`` when the images were resized before inference: the label
        image is mapped back (nearest) to the original camera size. ``merge="heuristic"``
        replaces the panoptic head with the paper's baseline (instances pasted by score
        without overlap, stuff from the semantic head elsewhere) on the same outputs.
        """
        with timer("backbone"):
            batch = self.batcher(images)
            features, levels = self._features(batch)
        sizes = batch.image_sizes
        output_sizes = output_sizes or sizes
        if len(output_sizes) != len(sizes):
            raise ValueError(f"got {len(output_sizes)} output sizes for {len(sizes)} images")
        with timer("rpn"):
            proposals, _ = self.instance_head.propose(batch, features)
        with timer("roi_heads"):
            detections = self.instance_head.detect(features, proposals, sizes)
            kept = [self.prune(d) for d in detections]
            mask_logits = self.instance_head.mask_logits(
                features, [d["boxes"] for d in kept], [d["labels"] for d in kept], sizes)
        with timer("semantic_head"):
            logits = self.semantic_head(levels)
        with timer("panoptic_postprocess"):
            return self.postprocess(logits, kept, mask_logits, sizes, output_sizes, merge)

    def postprocess(self, logits: Tensor, detections: list[dict[str, Tensor]],
                    mask_logits: list[Tensor], input_sizes: list[tuple[int, int]],
                    output_sizes: list[tuple[int, int]], merge: str = "upsnet") -> list[post.PanopticResult]:
        """The panoptic head and post-processing of a batch, from the network's outputs.

        ``logits (N, C, H_pad/4, W_pad/4)`` from the semantic head; per image the pruned
        ``detections`` (:meth:`prune`) and their own-class ``mask_logits (K_i, 28, 28)``;
        ``input_sizes`` the network's unpadded image sizes. Shared by :meth:`predict` and
        runtimes that compute the network elsewhere (``upsnet_core.onnx_runtime``).
        """
        return [self._panoptic_result(l, d, m, s, o, merge)
                for l, d, m, s, o in zip(logits, detections, mask_logits, input_sizes, output_sizes)]

    def prune(self, detections: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every per-detection tensor of ``detections`` indexed by the ones kept:
        class-agnostic NMS, then ``score > score_threshold``, best first."""
        config = self.inference_config
        keep = post.prune_detections(detections["boxes"], detections["scores"],
                                     config.nms_iou, config.score_threshold)
        return {k: v[keep] for k, v in detections.items()}

    def _panoptic_result(self, logits: Tensor, detections: dict[str, Tensor], mask_logits: Tensor,
                         input_size: tuple[int, int], output_size: tuple[int, int],
                         merge: str) -> post.PanopticResult:
        """Merge semantic and instance outputs of one image into its label image.

        ``logits (C, h_pad, w_pad)`` are cropped to the cells that cover the image and
        upsampled to the decision grid (``inference.decision_stride``), where the mask
        logits are pasted too. Both merges decide one channel per grid cell (stuff index,
        ``num_stuff + i`` for instance ``i``, or the last channel for unknown/void) and
        share the rendering.
        """
        stride = self.inference_config.decision_stride
        logits = decision_grid_logits(logits.float(), input_size, stride)
        size = tuple(logits.shape[-2:])
        labels, scores = detections["labels"], detections["scores"]
        pasted = paste_mask_logits(mask_logits.float(), detections["boxes"], size, stride)
        num_stuff, overlap = self.categories.num_stuff, self.inference_config.mask_overlap_threshold
        # max(dim).indices is argmax (first maximum on ties) at a quarter of the CPU time.
        semantic_argmax = logits.max(dim=0).indices
        masks = pasted.map(lambda crop: crop > 0)
        if merge == "upsnet":
            keep = post.prune_overlapping_masks(masks, labels, overlap)
            labels, scores, pasted = labels[keep], scores[keep], pasted.select(keep)
            channels = self.panoptic_head.channels(logits, labels, pasted)
            instance_classes = post.assign_instance_classes(
                channels, semantic_argmax, labels, num_stuff, self.categories.num_classes)
        elif merge == "heuristic":
            channels = post.heuristic_channels(masks, semantic_argmax, num_stuff, overlap)
            instance_classes = num_stuff + labels - 1
        else:
            raise ValueError(f"merge must be 'upsnet' or 'heuristic', got {merge!r}")
        won = torch.bincount(channels.flatten(), minlength=num_stuff + len(labels) + 1)
        ids = post.channel_ids(self.categories, instance_classes, won[num_stuff:-1] > 0)
        instance_scores = {i: s for i, s in zip(ids[num_stuff:-1].tolist(), scores.tolist())
                           if i % LABEL_DIVISOR}
        return self._render(ids[channels], instance_scores, input_size, output_size, stride)

    def _render(self, cell_ids: Tensor, instance_scores: dict[int, float],
                input_size: tuple[int, int], output_size: tuple[int, int],
                stride: int) -> post.PanopticResult:
        """Label image at ``output_size`` from the label ids of the decision grid's cells."""
        rows = post.output_index(output_size[0], input_size[0], stride, cell_ids.device)
        cols = post.output_index(output_size[1], input_size[1], stride, cell_ids.device)
        stats = post.segment_stats(cell_ids, rows, cols)
        cell_ids, stats = post.void_small_stuff(
            cell_ids, stats, post.stuff_area_threshold(self.inference_config, output_size))
        panoptic, semantic = post.render(cell_ids, rows, cols)
        return post.PanopticResult(panoptic, semantic,
                                   post.segments_info(stats, self.categories, instance_scores))


def decision_grid_logits(logits: Tensor, input_size: tuple[int, int], stride: int) -> Tensor:
    """``logits (C, h_pad, w_pad)`` of the heads' 1/4 grid, cropped to the cells covering an
    ``input_size`` image and upsampled bilinearly to a grid of ``stride`` input pixels:
    ``(C, ceil(H / stride), ceil(W / stride))``.

    With ``align_corners=False`` the centre of fine cell ``j`` lands where it lies in the
    input image, so the upsampled values are the heads' logits interpolated between the
    centres of their cells.
    """
    cells = tuple(-(-side // HEAD_STRIDE) for side in input_size)
    fine = tuple(-(-side // stride) for side in input_size)
    return upsample_logits(logits[None, :, :cells[0], :cells[1]], stride)[0, :, :fine[0], :fine[1]]


def upsample_logits(logits: Tensor, stride: int) -> Tensor:
    """``logits (N, C, h, w)`` of the heads' 1/4 grid upsampled bilinearly to a grid of
    ``stride`` input pixels, ``(N, C, h * 4 / stride, w * 4 / stride)`` (unchanged for 4)."""
    if stride == HEAD_STRIDE:
        return logits
    return F.interpolate(logits, scale_factor=HEAD_STRIDE // stride, mode="bilinear",
                         align_corners=False)


def build_upsnet(config: UPSNetConfig) -> UPSNet:
    """Build an (untrained, or backbone-initialised) UPSNet from a config."""
    categories = config.category_set()
    model = config.model
    backbone = build_backbone(model.backbone)
    channels = backbone.out_channels
    head = model.semantic_head
    return UPSNet(
        batcher=ImageBatcher(model.input),
        backbone=backbone,
        instance_head=build_instance_head(model.rpn, model.roi_heads, channels, categories.num_things),
        semantic_head=SemanticHead(channels, head.channels, head.num_deform_layers,
                                   categories.num_classes, head.norm_groups),
        panoptic_head=PanopticHead(categories.num_stuff),
        categories=categories,
        loss_weights=model.loss_weights,
        inference=model.inference,
        unknown_fraction=model.unknown_fraction,
        loss_stride=model.loss_stride,
    )
