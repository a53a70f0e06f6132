"""Running a trained model on camera-style images (numpy RGB), at a chosen input size."""
from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_model
from .data.transforms import resize_image
from .config import UPSNetConfig
from .modeling import PanopticModel, PanopticResult, UPSNet
from .modeling.norm_folding import fold_batch_norms
from .onnx_export import export_onnx
from .onnx_runtime import OnnxRuntimeNetwork


def resolve_device(device: str) -> torch.device:
    """``auto`` picks the first GPU when there is one, else the CPU; ``cpu``/``cuda[:N]`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available")
    return resolved


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU with its architecture and torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def scaled_size(height: int, width: int, long_side: int | None) -> tuple[int, int]:
    """The size with the long side set to ``long_side`` (aspect ratio kept); unchanged when None."""
    if not long_side:
        return height, width
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_rgb_image(image: np.ndarray) -> None:
    """Raise a clear error unless ``image`` is a non-empty ``(H, W, 3)`` uint8 array."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty ({image.shape})")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float in [0, 1]."""
    check_rgb_image(image)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` (changed in place, for inference only) on ``device`` in eval mode, its
    batch norms folded into the convolutions before them and its convolution weights
    channels-last.

    Folding (:func:`~upsnet_core.modeling.norm_folding.fold_batch_norms`) removes two
    full-size elementwise passes per norm; the channels-last layout makes oneDNN's CPU
    convolutions (and cuDNN's fp16 ones) take their fastest kernels (ResNet-18-FPN at
    256x512 on 2 CPU cores: 130 -> 76 ms). Both change the floats only by rounding
    (test/test_inference.py: same label images).
    """
    model = model.to(device).eval()
    fold_batch_norms(model)
    return model.to(memory_format=torch.channels_last)


BACKENDS = ("torch", "onnxruntime")
"""What runs the network: PyTorch, or onnxruntime on the CPU from an exported ONNX file
(post-processing is PyTorch's in both)."""


class Predictor:
    """Model + device + input size: ``predictor(rgb_uint8)`` gives a result at the image's size.

    ``input_long_side`` resizes the image (long side, aspect kept, :func:`resize_image`)
    before the network: ``None`` takes the model's ``inference.input_long_side``, ``0``
    keeps the image's own size. The label image is mapped back to the original size
    (nearest), with segment areas and boxes computed for that size.

    ``backend="onnxruntime"`` runs the network from ``onnx_model`` (exported from this
    model into a temporary folder when None) on the CPU; the model still supplies the
    categories and the post-processing thresholds. ONNX export covers UPSNet checkpoints;
    other architectures run with ``backend="torch"``.

    With ``backend="torch"`` the model is prepared in place (:func:`prepare_for_inference`:
    its batch norms are folded away), so pass a copy of a model that will be trained on.
    """

    def __init__(self, model: PanopticModel, config: UPSNetConfig, device: str = "auto",
                 input_long_side: int | None = None, backend: str = "torch",
                 onnx_model: str | Path | None = None):
        if input_long_side is not None and input_long_side < 0:
            raise ValueError(f"input_long_side must be >= 0 (0: the image's own size) or None "
                             f"(the model's), got {input_long_side}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.device = resolve_device(device)
        self.backend = backend
        self.config = config
        self.input_long_side = (config.model.inference.input_long_side
                                if input_long_side is None else input_long_side)
        if backend == "onnxruntime":
            if self.device.type != "cpu":
                raise ValueError(f"backend onnxruntime runs on the CPU (device {device!r} asked); "
                                 "on a GPU use backend torch or a TensorRT engine")
            self.model = model.cpu().eval()
            self.onnx_model = Path(onnx_model) if onnx_model else _export_to_temporary(self.model)
            self.network = OnnxRuntimeNetwork(self.onnx_model, self.model).predict
        else:
            self.model = prepare_for_inference(model, self.device)
            self.onnx_model = None
            self.network = self.model.predict

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        input_long_side: int | None = None, backend: str = "torch",
                        onnx_model: str | Path | None = None) -> "Predictor":
        model, config = load_model(path)
        return cls(model, config, device, input_long_side, backend, onnx_model)

    @property
    def categories(self):
        return self.model.categories

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> PanopticResult:
        check_rgb_image(image)
        height, width = image.shape[:2]
        size = scaled_size(height, width, self.input_long_side)
        tensor = resize_image(image_to_tensor(image).to(self.device), size)
        return self.network([tensor], output_sizes=[(height, width)])[0]


def _export_to_temporary(model: UPSNet) -> Path:
    """The model's network exported to ONNX in a new temporary folder (left for the OS)."""
    return export_onnx(model, Path(tempfile.mkdtemp(prefix="upsnet_onnx_")) / "network.onnx")
