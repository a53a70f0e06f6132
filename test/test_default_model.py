"""The shipped default model: within the size limit, loads, and segments a new frame."""
from __future__ import annotations

import numpy as np
import pytest

from upsnet_core.checkpoint import DEFAULT_CHECKPOINT, default_checkpoint
from upsnet_core.data import build_dataset
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.inference import Predictor

MAX_BYTES = 50 * 1024 * 1024


def test_default_model_is_small_enough():
    assert DEFAULT_CHECKPOINT.stat().st_size <= MAX_BYTES


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Four new frames (a seed training never saw) and the model's results on them."""
    root = tmp_path_factory.mktemp("frames")
    predictor = Predictor.from_checkpoint(default_checkpoint(), "cpu")
    assert predictor.input_long_side == 512  # stored in the model: the scale it was trained at
    generate_dataset(root, "val", 4, seed=123, height=256, width=512)
    pairs = []
    for image, target in build_dataset("synthetic", root, "val", predictor.categories):
        rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pairs.append((predictor(rgb), target))
    return pairs


@pytest.mark.parametrize("category_id, name", [(7, "road"), (23, "sky")])
def test_default_model_finds_road_and_sky(frames, category_id, name):
    intersection = union = 0
    for result, target in frames:
        truth = target["panoptic"].numpy() // 1000 == category_id
        predicted = result.semantic.numpy() == category_id
        intersection += (truth & predicted).sum()
        union += (truth | predicted).sum()
    assert union > 0
    assert intersection / union > 0.6, f"{name} IoU {intersection / union:.2f} over 4 frames"
