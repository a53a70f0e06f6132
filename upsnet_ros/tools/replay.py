"""Replay a bag's camera topic through a running upsnet_node and record its outputs.

Real rclpy and DDS: the bag's serialized image messages are published as they are
(``publish(bytes)``, like ``ros2 bag play``) on their own topic, and the node's outputs are
received serialized (``raw=True``) and written to the output bag with their reception time,
next to each image as published (log time = publish time), so that the output bag alone
gives the latency. ``rate``: a factor on the bag's timing, or ``None`` for as fast as the
node keeps up: each frame is published when the outputs of the previous one arrived (or
``frame_timeout`` passed: that frame counts as dropped), so that it measures throughput,
not drops. A node process started by the caller that dies is restarted (at most
:data:`MAX_RESTARTS` times) before the next frame; the frames it had are lost (dropped).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from tqdm import tqdm

from upsnet_core.rosbag_io import (COMPRESSED_TYPE, BagWriter, cdr_stamp_ns, iter_raw,
                                   open_reader)
from upsnet_ros.node_process import NodeProcess

FRAME_OUTPUTS = {"panoptic/labels": "sensor_msgs/msg/Image",
                 "panoptic/instances": "upsnet_ros/msg/PanopticInstanceArray"}
"""Per-frame outputs recorded (and awaited with back-pressure)."""
CATEGORIES = ("panoptic/categories", "upsnet_ros/msg/CategoryMap")
DIAGNOSTICS = ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ReplayError(RuntimeError):
    """The node could not be reached or stopped while replaying."""


MAX_RESTARTS = 3
"""Restarts of a node started by the replay that died, before the replay gives up."""


@dataclass
class ReplayStats:
    """What the replay did: frames published, seconds, frames whose outputs timed out, the
    exit status of each death of the node it restarted, and the reliability QoS of the image
    subscriptions it published to (``reliable`` / ``best_effort``, as discovered)."""

    published: int = 0
    seconds: float = 0.0
    timed_out: list[int] = field(default_factory=list)
    node_deaths: list[int] = field(default_factory=list)
    input_reliability: list[str] = field(default_factory=list)


def _full(namespace: str, topic: str) -> str:
    return topic if topic.startswith("/") else f"{namespace.rstrip('/')}/{topic}"


class Recorder:
    """Raw subscriptions to the node's outputs in ``namespace``, written to ``writer`` at
    their reception time; remembers which stamps arrived per output."""

    def __init__(self, node: Any, namespace: str, writer: BagWriter):
        self.writer = writer
        self.arrived: dict[str, set[int]] = {topic: set() for topic in FRAME_OUTPUTS}
        self.categories_received = False
        self.topics = {t: _full(namespace, t) for t in [*FRAME_OUTPUTS, CATEGORIES[0]]}
        for topic, msgtype in FRAME_OUTPUTS.items():
            node.create_subscription(_message_class(msgtype), self.topics[topic],
                                     self._callback(topic, msgtype), RELIABLE, raw=True)
        node.create_subscription(_message_class(CATEGORIES[1]), self.topics[CATEGORIES[0]],
                                 self._callback(*CATEGORIES), LATCHED, raw=True)
        node.create_subscription(_message_class(DIAGNOSTICS[1]), DIAGNOSTICS[0],
                                 self._callback(*DIAGNOSTICS), RELIABLE, raw=True)

    def _callback(self, topic: str, msgtype: str) -> Callable[[bytes, Any], None]:
        full = self.topics.get(topic, topic)

        def record(data: bytes, info: Any) -> None:
            received = info.get("received_timestamp") if isinstance(info, dict) else None
            self.writer.write_raw(full, msgtype, data, received or time.time_ns())
            if topic in self.arrived:
                self.arrived[topic].add(cdr_stamp_ns(data))
            elif topic == CATEGORIES[0]:
                self.categories_received = True
        return record

    def done(self, stamp: int) -> bool:
        """Whether every per-frame output of ``stamp`` arrived."""
        return all(stamp in stamps for stamps in self.arrived.values())


def _message_class(msgtype: str) -> type:
    package, _, name = msgtype.split("/")
    module = __import__(f"{package}.msg", fromlist=[name])
    return getattr(module, name)


def back_pressure_warning(rate: Optional[float], input_reliability: list[str],
                          frame_timeout: float) -> Optional[str]:
    """The warning for a back-pressure replay (``rate`` None) to a best-effort image
    subscription, else None: a frame DDS loses there is not followed by a newer one."""
    if rate is not None or "best_effort" not in input_reliability:
        return None
    return (f"the node's image subscription is best_effort: at rate max a frame DDS loses "
            f"waits {frame_timeout:.0f} s and counts as dropped (start the node with "
            "qos.reliability:=reliable)")


class Replayer:
    """An rclpy node publishing a bag's images and recording the node's outputs."""

    def __init__(self, namespace: str, image_topic: str, msgtype: str, writer: BagWriter):
        self.node = rclpy.create_node("upsnet_replay")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.image_topic, self.msgtype, self.writer = image_topic, msgtype, writer
        kind = CompressedImage if msgtype == COMPRESSED_TYPE else Image
        self.publisher = self.node.create_publisher(kind, image_topic, RELIABLE)
        self.recorder = Recorder(self.node, namespace, writer)

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(remaining, 0.02))
        return True

    def wait_for_node(self, timeout: float, process: Optional[NodeProcess],
                      stats: ReplayStats) -> None:
        """Until the node subscribes to the images, publishes labels and its categories
        arrived; ReplayError (with the node's log when it was started here) otherwise. A
        node started here that dies meanwhile is restarted too (``_node_alive``): a kill
        can come while the node is still starting."""
        labels = self.recorder.topics["panoptic/labels"]
        self.recorder.categories_received = False  # a restarted node sends them again

        def ready() -> bool:
            if process is not None and process.process.poll() is not None:
                if not self._restart(process, stats):
                    raise ReplayError(f"the node exited with code {process.process.returncode}"
                                      f":\n{process.log()[-3000:]}")
                self.recorder.categories_received = False
                return False
            return (self.publisher.get_subscription_count() > 0
                    and self.node.count_publishers(labels) > 0
                    and self.recorder.categories_received)
        if not self.spin_until(ready, timeout):
            log = f"\nnode log:\n{process.log()[-3000:]}" if process is not None else ""
            raise ReplayError(f"no upsnet_node subscribed to {self.image_topic} and published "
                              f"{labels} with its categories within {timeout:.0f} s{log}")
        stats.input_reliability = sorted(
            {info.qos_profile.reliability.name.lower()
             for info in self.node.get_subscriptions_info_by_topic(self.image_topic)})

    def publish(self, data: bytes) -> None:
        """Publish serialized image bytes and record them at the publish time."""
        published = time.time_ns()
        self.publisher.publish(data)
        self.writer.write_raw(self.image_topic, self.msgtype, data, published)

    def _node_alive(self, process: Optional[NodeProcess], stats: ReplayStats,
                    startup_timeout: float) -> bool:
        """Whether the node can take the next frame: a node started here that died is
        restarted (its frames meanwhile are lost, and count as dropped) up to
        :data:`MAX_RESTARTS` times; False once it is past that."""
        if process is None or process.process.poll() is None:
            return True
        if not self._restart(process, stats):
            return False
        self.wait_for_node(startup_timeout, process, stats)
        return True

    @staticmethod
    def _restart(process: NodeProcess, stats: ReplayStats) -> bool:
        """Restart the dead node ``process`` and record its exit status; False (and no
        restart) once it has died :data:`MAX_RESTARTS` times."""
        if len(stats.node_deaths) >= MAX_RESTARTS:
            return False
        stats.node_deaths.append(process.restart())
        print(f"replay: the node exited with code {stats.node_deaths[-1]}; restarted it "
              "(the frames it loses count as dropped)", file=sys.stderr, flush=True)
        return True

    def run(self, bag: Any, rate: Optional[float], frame_timeout: float,
            progress: bool = True, process: Optional[NodeProcess] = None,
            startup_timeout: float = 180.0) -> ReplayStats:
        """Wait for the node (:meth:`wait_for_node`), then publish every image of ``bag``'s
        image topic (see the module docstring); a node ``process`` started here that dies is
        restarted (``_node_alive``)."""
        stats = ReplayStats()
        self.wait_for_node(startup_timeout, process, stats)
        warning = back_pressure_warning(rate, stats.input_reliability, frame_timeout)
        if warning:
            print(f"replay: {warning}", file=sys.stderr, flush=True)
        started = time.monotonic()

        def outputs_or_death(stamp: int) -> Callable[[], bool]:
            return lambda: self.recorder.done(stamp) or (
                process is not None and process.process.poll() is not None)
        with open_reader(bag) as reader:
            total = reader.count(self.image_topic)
            first_stamp = None
            # The one line a caller (or a test injecting faults) can wait on without DDS.
            print(f"replay: node ready, publishing {total} frames of {self.image_topic}",
                  file=sys.stderr, flush=True)
            bar = tqdm(total=total, desc="replay", unit="frame", disable=not progress)
            for _, data, _ in iter_raw(reader, self.image_topic):
                stamp = cdr_stamp_ns(data)
                first_stamp = stamp if first_stamp is None else first_stamp
                if rate is not None:
                    due = started + (stamp - first_stamp) / 1e9 / rate
                    self.spin_until(lambda: time.monotonic() >= due, max(0.0, due - time.monotonic()))
                if not self._node_alive(process, stats, startup_timeout):
                    break
                self.publish(data)
                stats.published += 1
                if rate is None and not self.spin_until(outputs_or_death(stamp), frame_timeout):
                    stats.timed_out.append(stamp)
                bar.update()
                bar.set_postfix(outputs=len(self.recorder.arrived["panoptic/labels"]))
            if rate is not None and stats.published:  # the newest frame is always processed
                self.spin_until(outputs_or_death(stamp), frame_timeout)
            bar.close()
        self.spin_until(lambda: False, 0.5)  # stragglers: instances, diagnostics
        stats.seconds = time.monotonic() - started
        return stats

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
