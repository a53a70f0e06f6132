"""upsnet_node serves a checkpoint of every architecture: the node runs as its own process
(``python -m upsnet_ros.node``) with a small random-weight checkpoint of UPSNet, Panoptic
FPN, Panoptic-DeepLab or HPS, over real rclpy + Fast DDS, and publishes the same encoding
(label image, semantic image, instance array, overlay) as the in-process predictor."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
from conftest import CONFIG_DIR  # noqa: E402
from test_node import TIMEOUT, TOPICS, check_outputs, frame, labels_of, start_node  # noqa: E402
from upsnet_core.checkpoint import save_checkpoint  # noqa: E402
from upsnet_core.config import load_config, with_inference_settings  # noqa: E402
from upsnet_core.inference import Predictor  # noqa: E402
from upsnet_core.modeling import build_model  # noqa: E402
from upsnet_ros.node_process import NodeProcess  # noqa: E402
from upsnet_ros.testing import Probe  # noqa: E402

ARCHITECTURES = {"upsnet": "upsnet_small", "panoptic_fpn": "panoptic_fpn_small",
                 "panoptic_deeplab": "panoptic_deeplab_small", "hps": "hps_small"}


@pytest.fixture(scope="module", autouse=True)
def ros_context():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() + 100) % 200))
        rclpy.init()
        yield
        rclpy.shutdown()


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def served(request, tmp_path_factory):
    """A random-weight checkpoint of one architecture, a node serving it and a probe."""
    architecture = request.param
    folder = tmp_path_factory.mktemp(architecture)
    # The frames are small (48x64): a 256 long side keeps the network input larger than them.
    config = with_inference_settings(load_config(CONFIG_DIR / f"{ARCHITECTURES[architecture]}.yaml"),
                                     {"input_long_side": 256})
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "model.pt", build_model(config), config)
    namespace = f"/{architecture}"
    node = start_node(NodeProcess.module_command(), namespace, folder / "node.log",
                      checkpoint=checkpoint, device="cpu", autostart="true",
                      **{"qos.reliability": "reliable", "qos.depth": 20})
    probe = Probe(namespace)
    ready = probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0, TIMEOUT)
    assert ready, f"node did not become active:\n{node.log()}"
    yield architecture, checkpoint, node, probe
    probe.destroy()
    assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()


def test_node_serves_the_architecture_in_the_common_encoding(served):
    architecture, checkpoint, node, probe = served
    sent = frame(48, 64, "rgb8")
    probe.publish(sent)
    outputs = probe.outputs_for((sent.header.stamp.sec, 123), TOPICS, TIMEOUT)
    assert sorted(outputs) == sorted(TOPICS), node.log()
    check_outputs(outputs, sent, (48, 64))
    rgb = np.frombuffer(sent.data, np.uint8).reshape(48, 64, 3)
    expected = Predictor.from_checkpoint(checkpoint, device="cpu")(rgb)
    labels = labels_of(outputs["panoptic/labels"])
    np.testing.assert_array_equal(labels, expected.panoptic.numpy(), err_msg=architecture)
