"""Input checks, normalisation and batching of images of different sizes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from ..config import InputConfig


def check_image(image: Tensor, index: int = 0) -> None:
    """Raise a clear error unless ``image`` is a finite float ``(3, H, W)`` tensor with H, W > 0."""
    where = f"image {index}"
    if not isinstance(image, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{where}: expected a float tensor with values in [0, 1], got dtype "
                        f"{image.dtype} (convert with image.float() / 255)")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{where}: expected shape (3, H, W) RGB, got {tuple(image.shape)}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"{where}: image is empty ({tuple(image.shape)})")
    if not torch.isfinite(image).all():
        raise ValueError(f"{where}: image contains NaN or infinite values")


class ImageBatcher(nn.Module):
    """Normalises RGB images in [0, 1] and pads them (bottom/right) into one batch.

    Input: a list of ``(3, H_i, W_i)`` tensors or an ``(N, 3, H, W)`` tensor. Output: an
    ``ImageList`` whose tensor is ``(N, 3, H_pad, W_pad)`` with sizes a multiple of
    ``size_divisibility`` and whose ``image_sizes`` are the original ``(H_i, W_i)``.
    """

    def __init__(self, config: InputConfig):
        super().__init__()
        self.register_buffer("mean", torch.tensor(config.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.pixel_std).view(3, 1, 1), persistent=False)
        self.size_divisibility = config.size_divisibility

    def forward(self, images: list[Tensor] | Tensor) -> ImageList:
        if isinstance(images, Tensor) and images.dim() == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or not images:
            raise ValueError("expected a non-empty list of (3, H, W) images or an (N, 3, H, W) tensor")
        for index, image in enumerate(images):
            check_image(image, index)
        sizes = [(int(i.shape[1]), int(i.shape[2])) for i in images]
        height = self._padded(max(s[0] for s in sizes))
        width = self._padded(max(s[1] for s in sizes))
        batch = torch.stack([
            F.pad((image.to(self.mean.dtype) - self.mean) / self.std,
                  (0, width - image.shape[2], 0, height - image.shape[1]))
            for image in images])
        return ImageList(batch, sizes)

    def _padded(self, size: int) -> int:
        return int(math.ceil(size / self.size_divisibility) * self.size_divisibility)
