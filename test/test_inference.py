"""The speed-ups leave outputs unchanged, on the shipped model with synthetic street
scenes at camera size and on a random-weight model whose detections all reach the
panoptic head: the Predictor's folded batch norms, channels-last weights and inference
mode give the label image, semantic image and segments (scores to 1e-5: float32 sums in
another order) of the plain path (``no_grad``, norms, default weight layout); the
box-local panoptic decision gives exactly those of the dense panoptic logits' maximum, at
decision strides 1, 2 and 4."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from upsnet_core.checkpoint import CheckpointError, default_checkpoint, load_model
from upsnet_core.config import with_inference_settings
from upsnet_core.data.synthetic import FrameRenderer, frame_rng
from upsnet_core.data.transforms import resize_image
from upsnet_core.inference import Predictor, image_to_tensor, scaled_size
from upsnet_core.modeling import build_upsnet
from upsnet_core.modeling.norm_folding import NORMS
from upsnet_core.modeling.panoptic_head import PanopticHead


def plain_result(model, image: np.ndarray, long_side: int):
    height, width = image.shape[:2]
    tensor = resize_image(image_to_tensor(image), scaled_size(height, width, long_side))
    with torch.no_grad():
        return model.eval().predict([tensor], output_sizes=[(height, width)])[0]


def without_scores(segments: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "score"} for s in segments]


def assert_same_outputs(model, config, images: list[np.ndarray]) -> None:
    plain = copy.deepcopy(model)
    predictor = Predictor(model, config, "cpu")
    first_conv = next(m for m in predictor.model.backbone.body.modules()
                      if isinstance(m, torch.nn.Conv2d))  # conv1 of a ResNet, features.0 of a MobileNet
    weight = first_conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert not any(isinstance(m, NORMS) for m in predictor.model.modules())  # all folded
    instances = 0
    for image in images:
        expected = plain_result(plain, image, predictor.input_long_side)
        result = predictor(image)
        assert torch.equal(result.panoptic, expected.panoptic)
        assert torch.equal(result.semantic, expected.semantic)
        # Scores come from float32 sums taken in another order: equal to ~1e-6.
        assert [s["score"] for s in result.segments] == pytest.approx(
            [s["score"] for s in expected.segments], abs=1e-5)
        assert without_scores(result.segments) == without_scores(expected.segments)
        instances += sum(s["isthing"] for s in result.segments)
    assert instances > 0, "the test needs instances"


class DensePanopticHead(PanopticHead):
    """Decides on the dense panoptic logits ``Z`` (as the loss sees them): the reference
    of the box-local :meth:`PanopticHead.channels`."""

    def channels(self, semantic_logits, thing_labels, pasted, unknown=True):
        logits = self(semantic_logits, thing_labels, pasted)
        return (logits if unknown else logits[:-1]).max(dim=0).indices


def assert_box_local_equals_dense(model, config, images: list[torch.Tensor]) -> None:
    """Same label images, semantic images and segments (scores included) with the dense
    decision, at every decision stride."""
    box_local = copy.deepcopy(model).eval()
    dense = copy.deepcopy(box_local)
    dense.panoptic_head = DensePanopticHead(box_local.panoptic_head.num_stuff)
    instances = 0
    for stride in (1, 2, 4):
        settings = with_inference_settings(config, {"decision_stride": stride}).model.inference
        box_local.inference_config = dense.inference_config = settings
        with torch.no_grad():
            expected, results = dense.predict(images), box_local.predict(images)
        for result, reference in zip(results, expected):
            assert torch.equal(result.panoptic, reference.panoptic)
            assert torch.equal(result.semantic, reference.semantic)
            assert result.segments == reference.segments
            instances += sum(s["isthing"] for s in result.segments)
    assert instances > 0, "the test needs instances"


def test_shipped_model_outputs_unchanged_on_street_scenes():
    try:
        model, config = load_model(default_checkpoint())
    except CheckpointError:
        pytest.skip("the shipped model is not in this checkout")
    renderer = FrameRenderer(256, 512)
    frames = [renderer.render(frame_rng(11, "speed", "default", i)).image for i in range(2)]
    # Camera size 512x1024 -> the network's 256x512 and back (nearest), as in the node.
    camera = [np.ascontiguousarray(f.repeat(2, 0).repeat(2, 1)) for f in frames]
    assert_same_outputs(model, config, camera)
    assert_box_local_equals_dense(model, config, [image_to_tensor(f) for f in frames])


def test_random_model_outputs_unchanged_with_every_detection(small_config):
    config = with_inference_settings(small_config, {"score_threshold": 0.0, "input_long_side": 0})
    torch.manual_seed(3)
    model = build_upsnet(config)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 144, 3), np.uint8),
              FrameRenderer(96, 160).render(frame_rng(12, "speed", "default", 0)).image]
    assert_same_outputs(model, config, images)
    assert_box_local_equals_dense(model, config, [image_to_tensor(i) for i in images])
