"""What every panoptic meta-architecture shares: the training/inference entry points, the
loss weighting, and the rendering of per-cell panoptic channels into a PanopticResult.

Each architecture (UPSNet, Panoptic FPN, Panoptic-DeepLab, HPS) subclasses
:class:`PanopticModel`, is composed from injected parts (batcher, backbone, heads) and
implements ``losses`` and ``predict``; tools only use this interface:

- ``model(images, targets)`` / ``model.losses(images, targets)`` in training mode: a dict
  of weighted losses ``loss_<name>`` (weight ``model.loss_weights.<name>``);
- ``model.predict(images, output_sizes=None, timer=no_timer, merge=None)``: one
  :class:`~upsnet_core.modeling.postprocess.PanopticResult` per image; ``merge`` names one
  of ``model.merges`` (None: the architecture's own, ``merges[0]``);
- ``model.categories``, ``model.inference_config``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..categories import LABEL_DIVISOR, CategorySet
from ..config import InferenceConfig, LossWeights
from ..profiling import Timer, no_timer
from . import postprocess as post
from .preprocess import ImageBatcher


class PanopticModel(nn.Module):
    """Base of the panoptic meta-architectures (see the module docstring)."""

    merges: tuple[str, ...] = ()
    """Names of the merges ``predict`` accepts; the first is the architecture's own."""

    def __init__(self, batcher: ImageBatcher, backbone: nn.Module, categories: CategorySet,
                 loss_weights: LossWeights, inference: InferenceConfig):
        super().__init__()
        self.batcher = batcher
        self.backbone = backbone
        self.categories = categories
        self.loss_weights = loss_weights
        self.inference_config = inference

    def forward(self, images: list[Tensor] | Tensor,
                targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets (use model.eval() for inference)")
            return self.losses(images, targets)
        return self.predict(images)

    def losses(self, images: list[Tensor] | Tensor,
               targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, images: list[Tensor] | Tensor,
                output_sizes: list[tuple[int, int]] | None = None,
                timer: Timer = no_timer, merge: str | None = None) -> list[post.PanopticResult]:
        raise NotImplementedError

    def weighted(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each ``loss_<name>`` multiplied by ``loss_weights.<name>``."""
        return {name: value * getattr(self.loss_weights, name[len("loss_"):])
                for name, value in losses.items()}

    def resolve_merge(self, merge: str | None) -> str:
        """``merge`` checked against :attr:`merges`; None gives the architecture's own."""
        if merge is None:
            return self.merges[0]
        if merge not in self.merges:
            raise ValueError(f"merge must be one of {list(self.merges)} for "
                             f"{type(self).__name__}, got {merge!r}")
        return merge

    @staticmethod
    def check_output_sizes(output_sizes: list[tuple[int, int]] | None,
                           sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        output_sizes = output_sizes or sizes
        if len(output_sizes) != len(sizes):
            raise ValueError(f"got {len(output_sizes)} output sizes for {len(sizes)} images")
        return output_sizes

    def channels_result(self, channels: Tensor, instance_classes: Tensor, scores: Tensor,
                        input_size: tuple[int, int], output_size: tuple[int, int],
                        stride: int) -> post.PanopticResult:
        """The result of one image from its decision grid's panoptic channels.

        ``channels (h, w)`` int64: a stuff index (``< num_stuff``), ``num_stuff + i`` for
        instance ``i`` (``i < K``) or ``num_stuff + K`` for unknown/void;
        ``instance_classes (K,)`` the semantic index each instance takes (a stuff index
        merges it into that stuff segment); ``scores (K,)`` instance confidences, best
        first (instances are numbered per category in this order).
        """
        num_stuff = self.categories.num_stuff
        won = torch.bincount(channels.flatten(), minlength=num_stuff + len(instance_classes) + 1)
        ids = post.channel_ids(self.categories, instance_classes, won[num_stuff:-1] > 0)
        instance_scores = {i: s for i, s in zip(ids[num_stuff:-1].tolist(), scores.tolist())
                           if i % LABEL_DIVISOR}
        return self.render(ids[channels], instance_scores, input_size, output_size, stride)

    def render(self, cell_ids: Tensor, instance_scores: dict[int, float],
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
