"""Shared fixtures: small model configs and hand-made training targets."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch

from upsnet_core.checkpoint import save_checkpoint
from upsnet_core.config import UPSNetConfig, load_config, with_inference_settings
from upsnet_core.modeling import build_upsnet
from upsnet_core.modeling.box_local import BoxCrops

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"


@pytest.fixture(scope="session")
def small_config() -> UPSNetConfig:
    return load_config(CONFIG_DIR / "upsnet_small.yaml")


@pytest.fixture(scope="module")
def ros_context():
    """rclpy initialised for one test module, in a ROS_DOMAIN_ID of this session's own
    (from the pid), so that parallel sessions on one machine do not see each other; node
    processes the module starts inherit it."""
    rclpy = pytest.importorskip("rclpy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))
        rclpy.init()
        yield
        rclpy.shutdown()


@pytest.fixture(scope="module")
def ros_env(request) -> dict[str, str]:
    """The environment of ROS processes a test module starts as subprocesses (tools,
    benchmarks): a domain of this session and module of its own, another than
    :func:`ros_context`'s. Per module, because a process killed with SIGKILL (as the fault
    tests do) leaves Fast DDS shared-memory ports behind that can stall discovery in its
    domain for later processes."""
    module = zlib.crc32(request.module.__name__.encode()) % 50
    return {**os.environ, "ROS_DOMAIN_ID": str(1 + (os.getpid() + 100 + module) % 200)}


@pytest.fixture(scope="session")
def node_checkpoint(small_config, tmp_path_factory) -> Path:
    """A random-weight small checkpoint for node tests, segmenting at long side 256."""
    # The node tests' frames are at most 96x128: the shipped long side (512) would only
    # upsample them 4x and slow every test; 256 keeps a network input larger than the frames.
    config = with_inference_settings(small_config, {"input_long_side": 256})
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("node") / "small.pt", build_upsnet(config),
                           config)


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
