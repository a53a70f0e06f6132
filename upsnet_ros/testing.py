"""Helpers for tests and benchmarks that drive a real upsnet_node process over DDS.

``Probe`` is an rclpy node in the calling process that publishes images, collects the
outputs of a node (started with :class:`upsnet_ros.node_process.NodeProcess`) by input
stamp and calls its lifecycle and parameter services. No mocks: both sides use
real rclpy and the RMW of the environment (Fast DDS).
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from upsnet_ros.msg import CategoryMap, PanopticInstanceArray

NODE_NAME = "upsnet_node"
OUTPUTS = {"panoptic/labels": Image, "panoptic/semantic": Image,
           "panoptic/instances": PanopticInstanceArray, "panoptic/visualization": Image}
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE,
               "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE,
               "cleanup": Transition.TRANSITION_CLEANUP}


def malformed_frames(make_header: Callable[[], Header],
                     max_pixels: int) -> list[tuple[Image | CompressedImage, str]]:
    """One frame of every kind the node rejects, each with a fresh header from
    ``make_header`` and the words its rejection reason contains; ``max_pixels`` is the
    node's ``max_image_pixels`` (> 0). Every frame is small (at most a few kB)."""
    rgb_row = 30 * 3
    return [
        (Image(header=make_header(), height=20, width=30, encoding="yuv422", step=60,
               data=bytes(1200)), "unsupported encoding"),
        (Image(header=make_header(), height=20, width=30, encoding="rgb8", step=rgb_row - 1,
               data=bytes((rgb_row - 1) * 20)), "smaller than width"),
        (Image(header=make_header(), height=20, width=30, encoding="rgb8", step=rgb_row,
               data=bytes(rgb_row * 20 - 1)), "fewer than step"),
        (Image(header=make_header(), height=20, width=0, encoding="rgb8"), "empty image"),
        (Image(header=make_header(), height=0, width=30, encoding="rgb8", step=rgb_row),
         "empty image"),
        (Image(header=make_header(), height=1, width=max_pixels + 1, encoding="rgb8",
               step=3 * (max_pixels + 1)), "max_image_pixels"),
        (CompressedImage(header=make_header(), format="jpeg", data=b"not a jpeg"),
         "cannot decode"),
    ]


def process_threads(pid: int) -> int:
    """Number of threads of process ``pid`` (Linux ``/proc``)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def process_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def spin_until(executor: Executor, predicate: Callable[[], bool], timeout: float,
               period: float = 0.05) -> bool:
    """Spin ``executor`` (at most ``period`` seconds a wait) until ``predicate()`` holds;
    False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=period)
    return True


def stamp_key(msg: Any) -> tuple[int, int]:
    """(sec, nanosec) of a message's header stamp."""
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class Probe:
    """A client node in namespace ``namespace`` talking to ``<namespace>/upsnet_node``."""

    def __init__(self, namespace: str, name: str = "upsnet_probe", topics: list[str] | None = None):
        """Subscribes to ``topics`` of :data:`OUTPUTS` (all by default) and /diagnostics."""
        self.node = rclpy.create_node(name, namespace=namespace)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, dict[tuple[int, int], Any]] = defaultdict(dict)
        self.arrival: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
        self.diagnostics: list[DiagnosticArray] = []
        for topic in topics or OUTPUTS:
            self.node.create_subscription(OUTPUTS[topic], topic, self._collector(topic), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self.image_publisher = self.node.create_publisher(Image, "image", RELIABLE)
        self.compressed_publisher = self.node.create_publisher(CompressedImage, "image/compressed",
                                                               RELIABLE)
        service = f"{NODE_NAME}/"
        self._clients = {
            "change_state": self.node.create_client(ChangeState, service + "change_state"),
            "get_state": self.node.create_client(GetState, service + "get_state"),
            "set_parameters": self.node.create_client(SetParameters, service + "set_parameters"),
            "get_parameters": self.node.create_client(GetParameters, service + "get_parameters"),
        }

    def _collector(self, topic: str) -> Callable[[Any], None]:
        def collect(msg: Any) -> None:
            self.arrival[topic][stamp_key(msg)] = time.perf_counter()
            self.received[topic][stamp_key(msg)] = msg
        return collect

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` holds; False after ``timeout`` seconds."""
        return spin_until(self.executor, predicate, timeout)

    def publish(self, msg: Image | CompressedImage) -> None:
        publisher = self.compressed_publisher if isinstance(msg, CompressedImage) else self.image_publisher
        publisher.publish(msg)

    def outputs_for(self, stamp: tuple[int, int], topics: list[str], timeout: float) -> dict[str, Any]:
        """The messages of ``topics`` whose header stamp is ``stamp`` (missing ones left out)."""
        self.spin_until(lambda: all(stamp in self.received[t] for t in topics), timeout)
        return {t: self.received[t][stamp] for t in topics if stamp in self.received[t]}

    def latest_diagnostics(self) -> dict[str, str]:
        """The key/values of the node's newest diagnostics status ({} before the first)."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if NODE_NAME in status.name and self.node.get_namespace().rstrip("/") in status.name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def wait_for_diagnostics(self, predicate: Callable[[dict[str, str]], bool],
                             timeout: float) -> dict[str, str]:
        """Spin until diagnostics published from now on satisfy ``predicate``; the last seen."""
        self.diagnostics.clear()
        self.spin_until(lambda: predicate(self.latest_diagnostics()), timeout)
        return self.latest_diagnostics()

    def category_map(self, timeout: float) -> CategoryMap | None:
        """Subscribe now (a late subscriber) to the transient-local category map."""
        maps: list[CategoryMap] = []
        subscription = self.node.create_subscription(CategoryMap, "panoptic/categories",
                                                     maps.append, LATCHED)
        self.spin_until(lambda: bool(maps), timeout)
        self.node.destroy_subscription(subscription)
        return maps[0] if maps else None

    def call(self, service: str, request: Any, timeout: float = 60.0) -> Any:
        """Call one of the node's services and wait for the response."""
        client = self._clients[service]
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"no response from {client.srv_name}")
        return future.result()

    def change_state(self, transition: str, timeout: float = 60.0) -> bool:
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition]
        return self.call("change_state", request, timeout).success

    def state(self) -> str:
        return self.call("get_state", GetState.Request()).current_state.label

    def set_parameters(self, **values: Any) -> list[Any]:
        """Results (successful, reason) of setting each parameter, in order."""
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(self.call("set_parameters", request).results)

    def get_parameter(self, name: str) -> Any:
        value = self.call("get_parameters", GetParameters.Request(names=[name])).values[0]
        return parameter_value_to_python(value)

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
