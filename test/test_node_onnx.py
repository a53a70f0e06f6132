"""upsnet_node with ``backend: onnxruntime``: the node (its own process, installed
executable, config/upsnet.yaml) exports the checkpoint's network on configure and runs it
in onnxruntime; its labels agree with PyTorch's on >= 99.9 % of pixels. A missing ONNX
file fails configure with the reason and the node keeps running.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
from std_msgs.msg import Header  # noqa: E402
# The node test module's node launcher (config/upsnet.yaml plus the test's parameters).
from test_node import EXECUTABLE, start_node  # noqa: E402

from upsnet_core.checkpoint import save_checkpoint  # noqa: E402
from upsnet_core.config import with_inference_settings  # noqa: E402
from upsnet_core.inference import Predictor  # noqa: E402
from upsnet_core.modeling import build_upsnet  # noqa: E402
from upsnet_ros.conversions import array_to_image  # noqa: E402
from upsnet_ros.testing import Probe, stamp_key  # noqa: E402

pytestmark = pytest.mark.usefixtures("ros_context")

TIMEOUT = 120.0  # configure exports the network (about 10 s on an idle 2-core machine)


@pytest.fixture(scope="module")
def checkpoint(small_config, tmp_path_factory) -> Path:
    # Score threshold 0: every detection of the random-weight model reaches the panoptic head.
    config = with_inference_settings(small_config, {"input_long_side": 0, "score_threshold": 0.0})
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("node_onnx") / "small.pt", build_upsnet(config),
                           config)


def start_onnx_node(namespace: str, log: Path, **params):
    return start_node([str(EXECUTABLE)], namespace, log, **{
        "device": "cpu", "autostart": "true", "backend": "onnxruntime", "diagnostics_period": 0.2,
        "qos.reliability": "reliable", **params})


def test_onnxruntime_backend_labels_agree_with_pytorch(checkpoint, tmp_path):
    node = start_onnx_node("/onnx", tmp_path / "onnx.log", checkpoint=checkpoint)
    probe = Probe("/onnx", topics=["panoptic/labels"])
    try:
        assert probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0,
                                TIMEOUT), f"node did not become active:\n{node.log()}"
        image = np.random.default_rng(5).integers(0, 256, (72, 120, 3), np.uint8)
        header = Header(frame_id="camera")
        header.stamp.sec = 7
        msg = array_to_image(image, "rgb8", header)
        probe.publish(msg)
        outputs = probe.outputs_for(stamp_key(msg), ["panoptic/labels"], TIMEOUT)
        assert outputs, node.log()
        labels_msg = outputs["panoptic/labels"]
        labels = np.frombuffer(labels_msg.data, np.int32).reshape(72, 120)
        expected = Predictor.from_checkpoint(checkpoint, "cpu")(image).panoptic.numpy()
        assert (expected % 1000 > 0).any(), "the test needs instances"
        assert (labels == expected).mean() >= 0.999
        status = probe.wait_for_diagnostics(lambda d: "backend" in d, TIMEOUT)
        assert status["backend"] == "onnxruntime"
        assert "onnxruntime" in node.log() and "network.onnx" in node.log()
    finally:
        probe.destroy()
        assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()


def test_missing_onnx_file_fails_configure_and_the_node_keeps_running(checkpoint, tmp_path):
    missing = tmp_path / "missing.onnx"
    node = start_onnx_node("/onnx_missing", tmp_path / "missing.log", checkpoint=checkpoint,
                      onnx_model=missing)
    probe = Probe("/onnx_missing", topics=[])
    try:
        assert probe.spin_until(lambda: f"ONNX model not found: {missing}" in node.log(),
                                TIMEOUT), node.log()
        assert probe.state() == "unconfigured"
        assert node.process.poll() is None
    finally:
        probe.destroy()
        assert node.stop() == 0, node.log()
