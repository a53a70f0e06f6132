"""Augmentations applied consistently to an image and its target.

Every transform is a callable ``(image, target) -> (image, target)`` with ``image`` float32
``(3, H, W)`` and ``target`` the dict of :mod:`upsnet_core.data.target`. Geometric changes
are applied to the image and to the two label maps (``panoptic``, ``semantic``; nearest
neighbour at pixel centres); masks, boxes, areas and bboxes are then recomputed from the
panoptic map, and instances or segments that vanished are dropped. ``orig_size`` keeps the
size of the file. Random transforms draw from ``generator`` (default: torch's global RNG,
which DataLoader seeds per worker).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .panoptic_dataset import Transform
from .target import refresh_target


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


def resize_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(3, H, W)`` float image in [0, 1] resized to ``size = (h, w)``: bilinear,
    antialiased when shrinking; the same tensor when the size is already right.

    The one image resize of training, evaluation, ``predict`` and the node, so that every
    path gives the network the same pixels for the same image and size.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp_(0, 1)


def resize(image: torch.Tensor, target: dict, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Resize to ``size = (H, W)``: bilinear (antialiased) image, nearest label maps."""
    height, width = image.shape[-2:]
    if (height, width) == tuple(size):
        return image, target
    image = resize_image(image, size)
    rows = _nearest_indices(height, size[0])
    cols = _nearest_indices(width, size[1])
    panoptic = target["panoptic"][rows][:, cols]
    semantic = target["semantic"][rows][:, cols]
    return image, refresh_target(target, panoptic, semantic)


def _nearest_indices(old: int, new: int) -> torch.Tensor:
    """Source index of each output pixel centre: ``floor((i + 0.5) * old / new)``."""
    return (2 * torch.arange(new) + 1) * old // (2 * new)


def _scaled(size: Sequence[int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _short_side_factor(size: Sequence[int], short_side: int, max_size: Optional[int]) -> float:
    factor = short_side / min(size)
    if max_size is not None and max(size) * factor > max_size:
        factor = max_size / max(size)
    return factor


class Resize:
    """Deterministic resize (evaluation): by ``scale``, or so that the short side is
    ``short_side`` with the long side at most ``max_size``."""

    def __init__(self, short_side: Optional[int] = None, max_size: Optional[int] = None,
                 scale: Optional[float] = None):
        if (short_side is None) == (scale is None):
            raise ValueError("Resize needs exactly one of short_side and scale")
        self.short_side, self.max_size, self.scale = short_side, max_size, scale

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        size = image.shape[-2:]
        factor = self.scale if self.scale is not None else _short_side_factor(
            size, self.short_side, self.max_size)
        return resize(image, target, _scaled(size, factor))


class RandomScale:
    """Scale jitter: resize by a factor drawn uniformly from ``[min_scale, max_scale]``."""

    def __init__(self, min_scale: float, max_scale: float,
                 generator: Optional[torch.Generator] = None):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale; got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.generator = min_scale, max_scale, generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        u = torch.rand((), generator=self.generator).item()
        factor = self.min_scale + u * (self.max_scale - self.min_scale)
        return resize(image, target, _scaled(image.shape[-2:], factor))


class RandomShortSide:
    """Scale jitter: short side drawn uniformly from ``sizes``, long side <= ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: Optional[int] = None,
                 generator: Optional[torch.Generator] = None):
        if not sizes:
            raise ValueError("RandomShortSide needs at least one size")
        self.sizes, self.max_size, self.generator = list(sizes), max_size, generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        short = self.sizes[torch.randint(len(self.sizes), (), generator=self.generator).item()]
        size = image.shape[-2:]
        return resize(image, target, _scaled(size, _short_side_factor(size, short,
                                                                      self.max_size)))


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: Optional[torch.Generator] = None):
        self.p, self.generator = p, generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        if torch.rand((), generator=self.generator).item() >= self.p:
            return image, target
        return image.flip(-1), refresh_target(target, target["panoptic"].flip(-1),
                                              target["semantic"].flip(-1))


class RandomCrop:
    """Crop a random ``height x width`` window (each side at most the image's)."""

    def __init__(self, height: int, width: int, generator: Optional[torch.Generator] = None):
        self.size, self.generator = (height, width), generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        full = image.shape[-2:]
        if all(c >= f for c, f in zip(self.size, full)):
            return image, target
        (y, x), (h, w) = self._window(full)
        crop = (slice(y, y + h), slice(x, x + w))
        return (image[(slice(None),) + crop].contiguous(),
                refresh_target(target, target["panoptic"][crop].contiguous(),
                               target["semantic"][crop].contiguous()))

    def _window(self, full: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        h, w = min(self.size[0], full[0]), min(self.size[1], full[1])
        y = torch.randint(full[0] - h + 1, (), generator=self.generator).item()
        x = torch.randint(full[1] - w + 1, (), generator=self.generator).item()
        return (y, x), (h, w)
