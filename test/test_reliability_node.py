"""upsnet_node under faults, as its own process over real rclpy + Fast DDS: it exits within
2 s on SIGINT and SIGTERM even while a frame is being segmented, and deactivate/activate
cycles under 30 Hz input leave no subscription, publisher or thread behind.

The node segments with a small random-weight checkpoint; each session has its own
ROS_DOMAIN_ID (from the pid), so parallel sessions on one machine do not see each other.
"""
from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from std_msgs.msg import Header  # noqa: E402

from upsnet_ros.conversions import array_to_image  # noqa: E402
from upsnet_ros.node_process import NodeProcess  # noqa: E402
from upsnet_ros.testing import Probe, process_threads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "upsnet.yaml"
TIMEOUT = 60.0
FRAMES_PER_CYCLE = 10
"""Frames the 30 Hz stream sends after each re-activation before the next cycle."""
_STAMPS = iter(range(1, 10**9))


pytestmark = pytest.mark.usefixtures("ros_context")


def image(height: int, width: int):
    """A random rgb8 Image with a fresh stamp."""
    header = Header(frame_id="camera")
    header.stamp.sec = next(_STAMPS)
    pixels = np.random.default_rng(header.stamp.sec).integers(0, 256, (height, width, 3),
                                                              np.uint8)
    return array_to_image(pixels, "rgb8", header)


@contextlib.contextmanager
def running(namespace: str, log: Path, checkpoint: Path,
            **params) -> Iterator[tuple[NodeProcess, Probe]]:
    """An autostarted node (module command) and a probe, once the node subscribed; both
    are stopped on leaving, whatever happened."""
    node = NodeProcess.with_parameters(
        NodeProcess.module_command(), namespace, log, PARAMS_FILE, checkpoint=checkpoint,
        device="cpu", autostart="true", diagnostics_period=0.2,
        **{"qos.reliability": "reliable", **params})
    probe = Probe(namespace, topics=["panoptic/labels"])
    try:
        active = probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0,
                                  TIMEOUT)
        assert active, f"node did not become active:\n{node.log()}"
        yield node, probe
    finally:
        probe.destroy()
        node.stop()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_node_exits_within_two_seconds_while_a_frame_is_segmented(node_checkpoint, tmp_path,
                                                                  signal_number):
    # input_long_side 0: the 1536x3072 frame is segmented at full size, about 3 s on the
    # 2-core machine, so it is still running when the 1 s shutdown wait ends (a 1024x2048
    # frame takes 1.4 s since session 10 and sometimes finished inside the wait).
    with running(f"/stop_{signal_number}", tmp_path / "node.log", node_checkpoint,
                 input_long_side=0) as (node, probe):
        probe.publish(image(1536, 3072))
        received = probe.wait_for_diagnostics(
            lambda d: int(d.get("frames_received", 0)) >= 1, TIMEOUT)
        assert int(received["frames_received"]) == 1, node.log()
        probe.spin_until(lambda: False, 0.3)  # well inside the inference
        assert not probe.received["panoptic/labels"], "the frame was done before the signal"
        signalled = time.monotonic()
        node.process.send_signal(signal_number)
        code = node.process.wait(10.0)
        elapsed = time.monotonic() - signalled
    log = node.log()
    assert elapsed < 2.0, f"exit took {elapsed:.2f} s\n{log}"
    assert code == 0, log
    assert "the frame is abandoned" in log and "Traceback" not in log, log


def test_deactivate_activate_cycles_under_30_hz_leak_nothing(node_checkpoint, tmp_path):
    labels = "/cycles/panoptic/labels"
    published = []
    with running("/cycles", tmp_path / "node.log", node_checkpoint) as (node, probe):
        def publish() -> None:
            published.append(image(48, 64))
            probe.publish(published[-1])
        probe.node.create_timer(1 / 30, publish)  # runs whenever the probe spins

        def graph(active: bool) -> bool:
            count = 1 if active else 0
            return (probe.image_publisher.get_subscription_count() == count
                    and probe.node.count_publishers(labels) == count)

        probe.spin_until(lambda: len(probe.received["panoptic/labels"]) >= 3, TIMEOUT)
        threads = []
        for _ in range(4):
            assert probe.change_state("deactivate"), node.log()
            assert probe.spin_until(lambda: graph(False), TIMEOUT), node.log()
            assert probe.change_state("activate"), node.log()
            assert probe.spin_until(lambda: graph(True), TIMEOUT), node.log()
            outputs, sent = len(probe.received["panoptic/labels"]), len(published)
            # Segmenting again, with the stream kept up for a third of a second or more: a
            # fixed total count of frames would depend on how fast the cycles went.
            assert probe.spin_until(lambda: len(probe.received["panoptic/labels"]) > outputs
                                    and len(published) >= sent + FRAMES_PER_CYCLE,
                                    TIMEOUT), node.log()
            threads.append(process_threads(node.process.pid))
    code = node.process.returncode
    assert code == 0 and "Traceback" not in node.log(), node.log()
    # The first cycle may start threads that live on (DDS, torch); later ones add none.
    assert threads[1:] == [threads[1]] * (len(threads) - 1), threads
