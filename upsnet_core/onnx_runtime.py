"""UPSNet inference with the network in onnxruntime and the rest in PyTorch.

The ONNX file (:mod:`upsnet_core.onnx_export`) computes the network's outputs; pruning,
the panoptic head and the label image are :meth:`UPSNet.prune` and
:meth:`UPSNet.postprocess`, the code that :meth:`UPSNet.predict` runs, read from the
checkpoint's model (its categories and inference thresholds, changeable at run time).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .modeling import PanopticResult, UPSNet
from .onnx_export import METADATA_CLASSES, OUTPUT_NAMES
from .profiling import Timer, no_timer


class OnnxRuntimeNetwork:
    """``predict(images, output_sizes)`` as :meth:`UPSNet.predict`, with the network run by
    onnxruntime on the CPU from ``path``; ``model`` (on the CPU) supplies the rest.

    ``threads`` sets onnxruntime's intra-op threads (default: torch's CPU thread count);
    its worker threads do not spin while idle, so that they leave the cores to the other
    threads of a node (image conversion, DDS).
    """

    def __init__(self, path: str | Path, model: UPSNet, threads: int | None = None):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ONNX model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for unreadable files
            raise ValueError(f"cannot load ONNX model {path}: {error}") from error
        classes = self.session.get_modelmeta().custom_metadata_map.get(METADATA_CLASSES)
        if classes != str(model.categories.num_classes):
            raise ValueError(f"ONNX model {path} has {classes} semantic classes, the checkpoint "
                             f"{model.categories.num_classes}: export it from this checkpoint "
                             f"(python -m upsnet_core.tools.export --onnx)")
        self.model = model.cpu().eval()
        self.path = path

    def network(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor], tuple[int, int]]:
        """One ``(3, H, W)`` image -> ``semantic_logits (1, C, H_pad/4, W_pad/4)``, the
        detections with their ``mask_logits`` (``(K, ...)`` each, before pruning) and the
        unpadded size the network saw."""
        batch = self.model.batcher([image.cpu()])
        size = batch.image_sizes[0]
        outputs = self.session.run(OUTPUT_NAMES, {
            "images": batch.tensors.numpy(), "image_size": np.array(size, dtype=np.int64)})
        semantic, boxes, scores, labels, masks = (torch.from_numpy(o) for o in outputs)
        return semantic, {"boxes": boxes, "scores": scores, "labels": labels,
                          "mask_logits": masks}, size

    def predict(self, images: list[Tensor], output_sizes: list[tuple[int, int]] | None = None,
                timer: Timer = no_timer, merge: str = "upsnet") -> list[PanopticResult]:
        """Panoptic results of ``(3, H, W)`` float RGB images in [0, 1], one at a time (the
        graph takes one image), each at its ``output_sizes`` entry (default: its size)."""
        if output_sizes is not None and len(output_sizes) != len(images):
            raise ValueError(f"got {len(output_sizes)} output sizes for {len(images)} images")
        results = []
        for index, image in enumerate(images):
            with timer("network"):
                semantic, detections, size = self.network(image)
            with timer("panoptic_postprocess"):
                kept = self.model.prune(detections)
                masks = kept.pop("mask_logits")
                output_size = output_sizes[index] if output_sizes else size
                results += self.model.postprocess(semantic, [kept], [masks], [size], [output_size],
                                                  merge)
        return results
