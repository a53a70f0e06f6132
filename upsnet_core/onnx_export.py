"""ONNX export of UPSNet's network, with a dynamic image size.

What goes into the ONNX graph is everything with parameters: ResNet-FPN backbone, RPN,
RoI box head with torchvision's detection post-processing (class-wise NMS, top
``detections_per_img``), mask head (own-class 28x28 mask logits of every detection) and
the semantic head (deformable convs as ``grid_sample``). What stays in PyTorch
(:mod:`upsnet_core.onnx_runtime`, through :meth:`UPSNet.postprocess`) is the
parameter-free rest: pruning (class-agnostic NMS and the score threshold), the panoptic
head, mask-overlap pruning, class assignment and the label image. Why: those steps read
thresholds that the node changes at run time (``score_threshold``...), they loop over
instances in Python (overlap pruning, per-class numbering), their output sizes depend on
the data, and they take a few per cent of the time; kept in PyTorch they are the very
code of :meth:`UPSNet.predict`, so both backends decide pixels identically.

Graph inputs: ``images (1, 3, H_pad, W_pad)`` float32, normalised and padded by the
model's :class:`~upsnet_core.modeling.preprocess.ImageBatcher` (H_pad, W_pad multiples
of ``size_divisibility``), and ``image_size (2,)`` int64, the unpadded ``(H, W)``.
Outputs: ``semantic_logits (1, C, H_pad/4, W_pad/4)``, ``boxes (K, 4)`` xyxy input
pixels, ``scores (K,)``, ``labels (K,)`` int64 thing labels ``1..num_things``,
``mask_logits (K, 28, 28)``.
"""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from .modeling import UPSNet

OPSET = 17
"""GridSample (semantic head) needs opset >= 16; RoIAlign and NonMaxSuppression are older."""

INPUT_NAMES = ["images", "image_size"]
OUTPUT_NAMES = ["semantic_logits", "boxes", "scores", "labels", "mask_logits"]
METADATA_CLASSES = "upsnet.num_classes"
"""Metadata key holding the semantic channel count, checked against the checkpoint on load."""


class NetworkGraph(nn.Module):
    """UPSNet's network for one image, the module that is traced (inputs and outputs as in
    the module docstring)."""

    def __init__(self, model: UPSNet):
        super().__init__()
        if not isinstance(model, UPSNet):
            raise TypeError(f"ONNX export supports UPSNet models only, got {type(model).__name__}")
        self.model = model

    def forward(self, images: Tensor, image_size: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        sizes = [(image_size[0], image_size[1])]
        batch = ImageList(images, sizes)
        features, levels = model.features(batch)
        proposals, _ = model.instance_head.propose(batch, features)
        detections = model.instance_head.detect(features, proposals, sizes)[0]
        boxes, labels = detections["boxes"], detections["labels"]
        masks = model.instance_head.own_class_mask_logits(features, [boxes], labels, sizes)
        return model.semantic_head(levels), boxes, detections["scores"], labels, masks


def example_inputs(model: UPSNet, height: int, width: int) -> tuple[Tensor, Tensor]:
    """The graph's inputs for a random ``height x width`` image (seeded), as the runtime
    builds them."""
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    batch = model.batcher([image])
    return batch.tensors, torch.tensor(batch.image_sizes[0], dtype=torch.int64)


def export_onnx(model: UPSNet, path: str | Path, height: int = 256, width: int = 512) -> Path:
    """Write ``model``'s network (float32, CPU) to ``path``; traced on a ``height x width``
    image, it runs at any image size."""
    graph = NetworkGraph(model).float().cpu().eval()  # the exporter restores this mode
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript-based exporter: torchvision's detection ops (anchors, box clipping,
    # top-k per level, NMS) have tracing-aware code paths for it.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in torchvision
        torch.onnx.export(
            graph, example_inputs(model, height, width), str(path), opset_version=OPSET,
            input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            dynamic_axes={"images": {2: "height", 3: "width"},
                          "semantic_logits": {2: "grid_height", 3: "grid_width"},
                          "boxes": {0: "detections"}, "scores": {0: "detections"},
                          "labels": {0: "detections"}, "mask_logits": {0: "detections"}},
            do_constant_folding=True, **legacy)
    _write_metadata(path, {METADATA_CLASSES: str(model.categories.num_classes)})
    return path


def _write_metadata(path: Path, values: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
