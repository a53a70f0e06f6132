"""upsnet_node end to end: the node runs as its own process (installed executable or
``python -m upsnet_ros.node``) with config/upsnet.yaml and a small random-weight
checkpoint; this process talks to it over real rclpy + Fast DDS.

Each test session uses its own ROS_DOMAIN_ID (from the pid), so parallel sessions on
one machine do not see each other.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from upsnet_core.checkpoint import DEFAULT_CHECKPOINT, CheckpointError  # noqa: E402
from upsnet_ros.conversions import array_to_image  # noqa: E402
from upsnet_ros.node import DEFAULT_MODEL, resolve_checkpoint  # noqa: E402
from upsnet_ros.node_process import NodeProcess  # noqa: E402
from upsnet_ros.testing import Probe, malformed_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "upsnet.yaml"
EXECUTABLE = ROOT / "install" / "upsnet_ros" / "lib" / "upsnet_ros" / "upsnet_node"
MAX_PIXELS = 40_000
TOPICS = ["panoptic/labels", "panoptic/semantic", "panoptic/instances", "panoptic/visualization"]
TIMEOUT = 60.0  # generous: CI machines may be busy; the tests normally take seconds


pytestmark = pytest.mark.usefixtures("ros_context")


def start_node(command: list[str], namespace: str, log: Path, **params) -> NodeProcess:
    return NodeProcess.with_parameters(command, namespace, log, PARAMS_FILE, **params)


@pytest.fixture(scope="module")
def active(node_checkpoint, tmp_path_factory):
    """An autostarted node from the installed executable, and a probe in its namespace."""
    log = tmp_path_factory.mktemp("node") / "active.log"
    node = start_node([str(EXECUTABLE)], "/active", log, checkpoint=node_checkpoint, device="cpu",
                      autostart="true", subscribe_compressed="true", diagnostics_period=0.2,
                      max_image_pixels=MAX_PIXELS, **{"qos.reliability": "reliable",
                                                      "qos.depth": 20})
    probe = Probe("/active")
    ready = probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0
                             and probe.compressed_publisher.get_subscription_count() > 0, TIMEOUT)
    assert ready, f"node did not become active:\n{node.log()}"
    yield node, probe
    probe.destroy()
    assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()


_STAMPS = iter(range(1, 1_000_000))


def header() -> Header:
    """A header with a fresh stamp (so outputs can be matched to their input)."""
    result = Header(frame_id="camera_optical")
    result.stamp.sec, result.stamp.nanosec = next(_STAMPS), 123
    return result


def with_padding(msg: Image, padding: int) -> Image:
    """``msg`` with ``padding`` bytes added at the end of every row."""
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    padded = np.concatenate([rows, np.full((msg.height, padding), 7, np.uint8)], axis=1)
    msg.step, msg.data = padded.shape[1], padded.tobytes()
    return msg


def frame(height: int, width: int, encoding: str, padding: int = 0) -> Image | CompressedImage:
    """A random image message of the given size and encoding (``png``/``jpeg``: compressed)."""
    rng = np.random.default_rng(height * width)
    if encoding in ("png", "jpeg"):
        ok, data = cv2.imencode("." + encoding, rng.integers(0, 256, (height, width, 3), np.uint8))
        assert ok
        return CompressedImage(header=header(), format=encoding, data=data.tobytes())
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1}[encoding]
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype)
    msg = array_to_image(pixels.squeeze(-1) if channels == 1 else pixels, encoding, header())
    return with_padding(msg, padding)


def labels_of(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.int32).reshape(msg.height, msg.width)


def check_outputs(outputs: dict, sent: Image | CompressedImage, size: tuple[int, int]) -> None:
    """Every output has the input's header and size; the instance array matches the labels."""
    height, width = size
    for topic, msg in outputs.items():
        assert msg.header == sent.header, topic
    labels_msg, semantic_msg = outputs["panoptic/labels"], outputs["panoptic/semantic"]
    overlay_msg = outputs["panoptic/visualization"]
    assert (labels_msg.encoding, labels_msg.height, labels_msg.width) == ("32SC1", height, width)
    assert (semantic_msg.encoding, semantic_msg.height, semantic_msg.width) == ("mono8", height, width)
    assert (overlay_msg.encoding, overlay_msg.height, overlay_msg.width) == ("rgb8", height, width)
    labels = labels_of(labels_msg)
    semantic = np.frombuffer(semantic_msg.data, np.uint8).reshape(height, width)
    np.testing.assert_array_equal(semantic, np.where(labels == 0, 255, labels // 1000))
    ids, counts = np.unique(labels[labels != 0], return_counts=True)
    instances = outputs["panoptic/instances"].instances
    assert sorted(i.id for i in instances) == ids.tolist()
    for instance in instances:
        assert instance.area == counts[ids.tolist().index(instance.id)]
        assert instance.category_id == instance.id // 1000
        assert instance.is_thing == (instance.id % 1000 != 0)
        rows, cols = np.nonzero(labels == instance.id)
        box = instance.bbox
        assert (box.x_offset, box.y_offset) == (cols.min(), rows.min())
        assert (box.width, box.height) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        assert instance.centroid_x == pytest.approx(cols.mean(), abs=1e-2)


@pytest.mark.parametrize("height, width, encoding, padding", [
    (48, 64, "rgb8", 0), (75, 203, "bgr8", 3), (33, 47, "rgba8", 0), (40, 40, "bgra8", 5),
    (61, 90, "mono8", 1), (50, 70, "mono16", 2), (45, 77, "png", 0), (64, 48, "jpeg", 0),
])
def test_outputs_for_sizes_and_encodings(active, height, width, encoding, padding):
    node, probe = active
    sent = frame(height, width, encoding, padding)
    probe.publish(sent)
    outputs = probe.outputs_for((sent.header.stamp.sec, 123), TOPICS, TIMEOUT)
    assert sorted(outputs) == sorted(TOPICS), node.log()
    check_outputs(outputs, sent, (height, width))


def test_category_map_reaches_a_late_subscriber(active, small_config):
    _, probe = active
    category_map = probe.category_map(TIMEOUT)
    assert category_map is not None
    expected = small_config.resolved().categories
    assert [(c.id, c.name, c.is_thing) for c in category_map.categories] == [
        (c["id"], c["name"], bool(c["isthing"])) for c in expected]
    assert (category_map.void_id, category_map.semantic_unknown) == (0, 255)


def test_bad_input_is_rejected_and_counted_then_a_good_frame_is_processed(active):
    node, probe = active
    rejected = int(probe.wait_for_diagnostics(bool, TIMEOUT)["frames_rejected"])
    for msg, problem in malformed_frames(header, MAX_PIXELS):
        probe.publish(msg)
        rejected += 1
        status = probe.wait_for_diagnostics(
            lambda d, n=rejected: int(d.get("frames_rejected", 0)) >= n, TIMEOUT)
        assert int(status["frames_rejected"]) == rejected
        assert problem in status["last_rejection"]
    good = frame(30, 41, "bgr8")
    probe.publish(good)
    outputs = probe.outputs_for((good.header.stamp.sec, 123), TOPICS, TIMEOUT)
    check_outputs(outputs, good, (30, 41))
    assert node.process.poll() is None
    assert "unsupported encoding 'yuv422'" in node.log()


def test_only_the_newest_frame_is_processed_and_drops_are_counted(active):
    node, probe = active
    before = probe.wait_for_diagnostics(bool, TIMEOUT)
    burst = [frame(96, 128, "rgb8") for _ in range(8)]
    for msg in burst:
        probe.publish(msg)
    newest = (burst[-1].header.stamp.sec, 123)
    assert "panoptic/labels" in probe.outputs_for(newest, ["panoptic/labels"], TIMEOUT)

    def settled(d: dict) -> bool:
        done = sum(int(d.get(k, 0)) - int(before[k])
                   for k in ("frames_processed", "frames_dropped", "frames_rejected"))
        return int(d.get("frames_received", 0)) - int(before["frames_received"]) == done == 8
    after = probe.wait_for_diagnostics(settled, TIMEOUT)
    assert settled(after), (before, after)
    assert int(after["frames_dropped"]) > int(before["frames_dropped"])
    for key in ("model", "device", "input_rate_hz", "inference_ms_p50", "inference_ms_p95"):
        assert after[key], key
    assert after["device"] == "cpu" and float(after["inference_ms_p95"]) > 0


def test_thresholds_change_at_run_time_and_bad_values_are_refused(active):
    _, probe = active
    results = probe.set_parameters(score_threshold=1.5)
    assert not results[0].successful and "score_threshold" in results[0].reason
    assert probe.get_parameter("score_threshold") == -1.0
    assert not probe.set_parameters(stuff_area=-5.0)[0].successful
    assert not probe.set_parameters(mask_overlap_threshold="high")[0].successful

    sent = frame(64, 96, "rgb8")
    probe.publish(sent)
    before = probe.outputs_for((sent.header.stamp.sec, 123), ["panoptic/labels"], TIMEOUT)
    assert all(r.successful for r in probe.set_parameters(score_threshold=0.0, stuff_area=0.0))
    assert probe.get_parameter("score_threshold") == 0.0
    status = probe.wait_for_diagnostics(lambda d: d.get("score_threshold") == "0.0", TIMEOUT)
    assert status["stuff_area"] == "0.0"
    again = header()
    probe.publish(Image(header=again, height=sent.height, width=sent.width, encoding="rgb8",
                        step=sent.step, data=sent.data))
    after = probe.outputs_for((again.stamp.sec, 123), ["panoptic/labels"], TIMEOUT)
    # No stuff-area filter and no score filter: fewer pixels left void.
    assert (labels_of(after["panoptic/labels"]) == 0).sum() < \
        (labels_of(before["panoptic/labels"]) == 0).sum()
    assert all(r.successful for r in probe.set_parameters(score_threshold=-1.0, stuff_area=-1.0))


def test_lifecycle_transitions_and_checkpoint_errors(node_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    node = start_node(NodeProcess.module_command(), "/managed", tmp_path / "managed.log",
                      checkpoint=tmp_path / "missing.pt", device="cpu", autostart="false",
                      input_long_side=24, **{"qos.reliability": "reliable"})
    probe = Probe("/managed")
    try:
        assert probe.state() == "unconfigured"
        assert not probe.change_state("configure")
        assert probe.state() == "unconfigured"
        assert "checkpoint not found" in node.log()
        assert probe.set_parameters(checkpoint=str(corrupt))[0].successful
        assert not probe.change_state("configure")
        assert "cannot read checkpoint" in node.log()

        assert probe.set_parameters(checkpoint=str(node_checkpoint))[0].successful
        assert probe.change_state("configure") and probe.state() == "inactive"
        assert probe.image_publisher.get_subscription_count() == 0

        assert probe.change_state("activate") and probe.state() == "active"
        assert probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0, TIMEOUT)
        sent = frame(32, 40, "rgb8")  # segmented at 19x24 (input_long_side), outputs at 32x40
        probe.publish(sent)
        outputs = probe.outputs_for((sent.header.stamp.sec, 123), TOPICS, TIMEOUT)
        check_outputs(outputs, sent, (32, 40))

        assert probe.change_state("deactivate") and probe.state() == "inactive"
        assert probe.spin_until(lambda: probe.image_publisher.get_subscription_count() == 0, TIMEOUT)
        assert probe.change_state("cleanup") and probe.state() == "unconfigured"
    finally:
        probe.destroy()
        assert node.stop() == 0, node.log()
        assert "Traceback" not in node.log()


def test_empty_checkpoint_means_the_shipped_model_installed_or_in_the_repository(tmp_path):
    installed = ROOT / "install" / "upsnet_ros" / "share" / "upsnet_ros" / DEFAULT_MODEL
    if installed.is_file():
        assert resolve_checkpoint("") == installed
    elif DEFAULT_CHECKPOINT.is_file():
        assert resolve_checkpoint("") == DEFAULT_CHECKPOINT
    else:
        with pytest.raises(CheckpointError, match="no default model"):
            resolve_checkpoint("")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        resolve_checkpoint(str(tmp_path / "missing.pt"))
