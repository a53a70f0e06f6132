"""``upsnet_node``: UPSNet panoptic segmentation as a ROS 2 lifecycle node.

configure loads the checkpoint and warms the model up, activate creates the
subscriptions and publishers, deactivate removes them, cleanup frees the model.
Inference runs on a worker thread on the newest frame only (older waiting frames are
dropped and counted), so the executor's callbacks never block; the executor's thread
runs no PyTorch work (see ``on_configure``). Everything about
pixels (resizing, label images, segment statistics, overlays) comes from upsnet_core;
this module converts messages, holds parameters and QoS, and reports diagnostics.

Run: ``python -m upsnet_ros.node --ros-args --params-file config/upsnet.yaml``
(or ``ros2 run upsnet_ros upsnet_node ...``, or ``launch/upsnet.launch.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from upsnet_core.checkpoint import CheckpointError, default_checkpoint
from upsnet_core.inference import Predictor
from upsnet_core.modeling import PanopticResult
from upsnet_core.visualization import overlay
from upsnet_ros.conversions import (ImageConversionError, array_to_image, check_image,
                                    compressed_to_rgb, image_to_rgb)
from upsnet_ros.messages import category_map_message, instances_message
from upsnet_ros.monitor import FrameStats, NewestFrameWorker, RateLimiter
from upsnet_ros.msg import CategoryMap, PanopticInstanceArray
from upsnet_ros.parameters import THRESHOLDS, declare_parameters, parameter_error

PACKAGE = "upsnet_ros"
DEFAULT_MODEL = "models/upsnet_mobilenet_synthetic.pt"
"""The shipped model, relative to the package's share folder (and the repository root)."""
SHUTDOWN_WAIT = 1.0
"""Seconds that shutdown waits for the frame in progress (the node must exit within 2 s)."""


def resolve_checkpoint(path: str) -> Path:
    """``path``, or where empty the shipped model: installed share folder first, then the
    repository's ``models/``. Raises :class:`CheckpointError` when the file does not exist."""
    if path:
        if not Path(path).is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        return Path(path)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / DEFAULT_MODEL
        if installed.is_file():
            return installed
    except (ImportError, PackageNotFoundError, ValueError):
        pass
    return default_checkpoint()


class UPSNetNode(LifecycleNode):
    """The panoptic segmentation lifecycle node (see the module docstring)."""

    def __init__(self, name: str = "upsnet_node", **kwargs: Any):
        super().__init__(name, **kwargs)
        self._predictor: Predictor | None = None
        self._checkpoint = ""
        self._stats = FrameStats()
        self._log_limiter = RateLimiter(5.0)
        self._worker: NewestFrameWorker | None = None
        self._inputs: list = []
        self._outputs: dict[str, Any] = {}
        self._diagnostics_timer = None
        self.add_on_set_parameters_callback(self._validate_parameters)  # also checks overrides
        self.add_post_set_parameters_callback(self._apply_parameters)
        for reason in declare_parameters(self):
            self.get_logger().error(reason)

    # ------------------------------------------------------------------ parameters
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        reasons = [r for p in parameters if (r := parameter_error(p.name, p.value))]
        return SetParametersResult(successful=not reasons, reason="; ".join(reasons))

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        if self._predictor is not None and any(p.name in THRESHOLDS for p in parameters):
            self._apply_thresholds()

    def _apply_thresholds(self) -> None:
        """Set the model's post-processing thresholds from the parameters (-1: keep)."""
        model = self._predictor.model
        overrides = {k: float(self._param(k)) for k in THRESHOLDS if self._param(k) != -1}
        model.inference_config = dataclasses.replace(model.inference_config, **overrides)
        self.get_logger().info(f"inference thresholds: {model.inference_config}")

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            # On a thread that ends when loaded, not the executor's: each thread that runs
            # PyTorch CPU work keeps an OpenMP team, and with two teams on a 2-core
            # machine OpenMP stops spin-waiting (more threads than cores), which made the
            # worker's inference 30 % slower (1024x2048, default model: 106 -> 79 ms).
            with ThreadPoolExecutor(1, thread_name_prefix="upsnet-load") as loader:
                loader.submit(self._load_model).result()
        except (CheckpointError, ValueError, RuntimeError) as error:
            self._predictor = None
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self) -> None:
        """Load the checkpoint onto the device, apply the thresholds and run one warm-up frame."""
        checkpoint = resolve_checkpoint(self._param("checkpoint"))
        long_side = self._param("input_long_side")
        self._predictor = Predictor.from_checkpoint(
            checkpoint, self._param("device"), None if long_side == -1 else long_side,
            self._param("backend"), self._param("onnx_model") or None)
        self._checkpoint = str(checkpoint)
        self._apply_thresholds()
        started = time.perf_counter()
        self._infer(np.zeros((64, 64, 3), dtype=np.uint8))
        onnx = self._predictor.onnx_model
        self.get_logger().info(f"loaded {checkpoint} on {self._predictor.device} "
                               f"({self._predictor.backend}{f' {onnx}' if onnx else ''}), "
                               f"warm-up {(time.perf_counter() - started) * 1e3:.0f} ms")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._create_outputs()
        self._worker = NewestFrameWorker(self._process, lambda _: self._stats.frame_dropped())
        self._inputs = [self.create_subscription(Image, "image", self._on_frame,
                                                 self._input_qos())]
        if self._param("subscribe_compressed"):
            self._inputs.append(self.create_subscription(
                CompressedImage, "image/compressed", self._on_frame, self._input_qos()))
        self._diagnostics_timer = self.create_timer(self._param("diagnostics_period"),
                                                    self._publish_diagnostics)
        self.get_logger().info("active: subscribed to "
                               + ", ".join(sub.topic_name for sub in self._inputs))
        return TransitionCallbackReturn.SUCCESS

    def _create_outputs(self) -> None:
        """The output publishers; the category map is published once, transient-local."""
        outputs = QoSProfile(depth=self._param("qos.depth"), reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._outputs = {
            "labels": self.create_publisher(Image, "panoptic/labels", outputs),
            "semantic": self.create_publisher(Image, "panoptic/semantic", outputs),
            "instances": self.create_publisher(PanopticInstanceArray, "panoptic/instances", outputs),
            "visualization": self.create_publisher(Image, "panoptic/visualization", outputs),
            "categories": self.create_publisher(CategoryMap, "panoptic/categories", latched),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        self._outputs["categories"].publish(category_map_message(
            self._predictor.categories, Header(stamp=self.get_clock().now().to_msg())))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        self._worker.stop()
        self._worker = None
        self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = None
        self._publish_diagnostics()
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the inference worker and free the model, whatever the lifecycle state.

        Used on shutdown (SIGINT, SIGTERM): a frame still being segmented after
        :data:`SHUTDOWN_WAIT` seconds is abandoned (its thread still runs), so that the
        node exits within 2 s whatever the model."""
        if self._worker is not None:
            if not self._worker.stop(SHUTDOWN_WAIT):
                self.get_logger().warning("shutting down while a frame is being segmented: "
                                          "the frame is abandoned")
            self._worker = None
        self._free_model()

    def _free_model(self) -> None:
        """Drop the model; on a GPU also return its cached memory."""
        on_gpu = self._predictor is not None and self._predictor.device.type == "cuda"
        self._predictor = None
        if on_gpu:
            torch.cuda.empty_cache()

    def _input_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self._param("qos.reliability") == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._param("qos.depth"),
                          reliability=reliability, durability=qos_profile_sensor_data.durability)

    # ------------------------------------------------------------------ frames
    def _on_frame(self, msg: Image | CompressedImage) -> None:
        """Executor callback: count the frame and hand it to the worker (never blocks).

        Raw images are checked here, not in the worker: a malformed frame is rejected (and
        counted so) even when a newer frame would have replaced it while it waited. The
        checks read only the message's fields; compressed data is decoded by the worker."""
        self._stats.frame_received()
        if isinstance(msg, Image):
            try:
                check_image(msg, self._param("max_image_pixels"))
            except ImageConversionError as error:
                self._reject(f"frame rejected: {error}")
                return
        self._worker.submit(msg)

    def _to_rgb(self, msg: Image | CompressedImage) -> np.ndarray:
        limit = self._param("max_image_pixels")
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb(msg, limit)
        return image_to_rgb(msg, limit)

    def _infer(self, rgb: np.ndarray) -> PanopticResult:
        """The predictor's result, under fp16 autocast on CUDA when half_precision is set."""
        on_cuda = self._predictor.device.type == "cuda" and self._param("half_precision")
        context = torch.autocast("cuda", dtype=torch.float16) if on_cuda else contextlib.nullcontext()
        with context:
            return self._predictor(rgb)

    def _process(self, msg: Image | CompressedImage) -> None:
        """Worker thread: convert, segment and publish one frame; bad frames are counted."""
        try:
            rgb = self._to_rgb(msg)
        except ImageConversionError as error:
            self._reject(f"frame rejected: {error}")
            return
        started = time.perf_counter()
        try:
            result = self._infer(rgb)
        except Exception as error:  # noqa: BLE001 - e.g. out of GPU memory: keep serving
            self._reject(f"inference failed: {type(error).__name__}: {error}")
            return
        self._stats.frame_processed(time.perf_counter() - started)
        try:
            self._publish_result(msg.header, rgb, result)
        except Exception as error:  # noqa: BLE001 - e.g. shutting down: the worker must live
            self._reject(f"publishing failed: {type(error).__name__}: {error}")

    def _reject(self, reason: str) -> None:
        """Count a frame that could not be processed; warn at most every 5 s per problem."""
        self._stats.frame_rejected(reason)
        if self._log_limiter.ready(re.sub(r"\d+", "#", reason)):  # same problem, other sizes
            self.get_logger().warning(reason)

    def _publish_result(self, header: Header, rgb: np.ndarray, result: PanopticResult) -> None:
        panoptic = result.panoptic.cpu().numpy()
        publishers = self._outputs
        if self._param("publish.labels"):
            publishers["labels"].publish(array_to_image(panoptic, "32SC1", header))
        if self._param("publish.semantic"):
            semantic = result.semantic.cpu().numpy()
            publishers["semantic"].publish(array_to_image(semantic, "mono8", header))
        if self._param("publish.instances"):
            publishers["instances"].publish(
                instances_message(result.segments, self._predictor.categories, header))
        if self._param("publish.visualization") and publishers["visualization"].get_subscription_count():
            image = overlay(rgb, panoptic, self._predictor.categories)
            publishers["visualization"].publish(array_to_image(image, "rgb8", header))

    def _publish_diagnostics(self) -> None:
        predictor = self._predictor
        values = {"model": self._checkpoint,
                  "device": str(predictor.device) if predictor else "none",
                  "backend": predictor.backend if predictor else "none",
                  "input_long_side": predictor.input_long_side if predictor else "none"}
        if predictor is not None:
            config = predictor.model.inference_config
            values.update({name: getattr(config, name) for name in THRESHOLDS})
        status = self._stats.status(f"{self.get_fully_qualified_name()}: panoptic segmentation",
                                    values["device"], values)
        self._outputs["diagnostics"].publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def main(args: list[str] | None = None) -> None:
    """Entry point of ``upsnet_node`` and ``python -m upsnet_ros.node``."""
    import rclpy

    rclpy.init(args=args)
    node = UPSNetNode()
    if (node.get_parameter("autostart").value
            and node.trigger_configure() == TransitionCallbackReturn.SUCCESS):
        node.trigger_activate()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
        # Leave without Python's finalization, whether the frame in progress finished or
        # was abandoned. Finalizing torch and its libraries takes about 0.9 s on the 2-core
        # machine (more with CUDA): after SHUTDOWN_WAIT for a frame that finishes just in
        # time, that broke the 2 s exit. And an abandoned frame's thread is inside the
        # model, where a normal interpreter exit would abort (std::terminate in torch's
        # threads). The node and its DDS entities are destroyed above.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
