"""Shared fixtures: small model configs and hand-made training targets."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from upsnet_core.config import UPSNetConfig, load_config
from upsnet_core.modeling.box_local import BoxCrops

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"


@pytest.fixture(scope="session")
def small_config() -> UPSNetConfig:
    return load_config(CONFIG_DIR / "upsnet_small.yaml")


def box_target(height: int, width: int, boxes: list[list[int]], labels: list[int],
               num_stuff: int = 11, stuff: int = 0) -> dict[str, torch.Tensor]:
    """A training target with one rectangular instance per box on a single stuff class.

    ``labels`` are thing labels (1-based); the top 3 rows are void.
    """
    semantic = torch.full((height, width), stuff, dtype=torch.int64)
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for index, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels)):
        masks[index, y1:y2, x1:x2] = 1
        semantic[y1:y2, x1:x2] = num_stuff + label - 1
    semantic[:3] = 255
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": masks, "semantic": semantic}


def whole_grid_crops(maps: torch.Tensor) -> BoxCrops:
    """``maps (K, h, w)`` as box crops that each span the whole grid: the dense layout,
    for the post-processing functions that take :class:`BoxCrops`."""
    size = tuple(maps.shape[-2:])
    cells = torch.tensor([[0, size[0], 0, size[1]]] * len(maps), dtype=torch.int64).view(-1, 4)
    return BoxCrops(cells, list(maps), size)
