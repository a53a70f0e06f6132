"""The parameters of ``upsnet_node``: one table of defaults, descriptions and valid values,
and their declaration with the same refusal at start-up as at run time.

Every parameter has the type of its default and :func:`parameter_error` checks it along
with the ranges and choices. The parameters are declared with ROS 2's dynamic typing so
that this one check runs for every value: rclpy's own type check would refuse first, with
a reason that names neither the parameter nor the types (``Wrong parameter type, expected
'4' got '2'``). A value that is refused is never applied and the parameter keeps its
previous value, whether it comes from ``ros2 param set`` (the reason goes back to the
caller) or from the params file at start-up. As in ROS 2, an integer is no double
(``diagnostics_period: 2`` is refused; write ``2.0``).

At start-up the previous value is the default: :func:`declare_parameters` declares a
refused parameter with its default and returns the reasons, which the node logs as
errors. The node starts rather than exits because that is what a robot needs from a
node under a launch system: one mistyped value in a large params file must not make the
perception stack crash-loop (a respawning launch file would restart it forever with the
same file), and the outcome is the one a run-time ``ros2 param set`` of that value gets.
Parameters that cannot work with their default (a missing ``checkpoint``) still fail
*configure* with a reason of their own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from upsnet_core.inference import BACKENDS

THRESHOLDS = ("score_threshold", "mask_overlap_threshold", "stuff_area")
"""Parameters that change the running model's post-processing (-1: the checkpoint's value)."""

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _any(value: Any) -> bool:
    return True


def _fraction_or_keep(value: float) -> bool:
    return value == -1 or 0.0 <= value <= 1.0


@dataclass(frozen=True)
class ParameterSpec:
    """Default (whose type is the parameter's type), description, and the valid values:
    ``valid(value)`` and the text that describes them (used in refusal reasons)."""

    default: Any
    description: str
    valid: Callable[[Any], bool] = _any
    expected: str = ""


PARAMETERS: dict[str, ParameterSpec] = {
    "checkpoint": ParameterSpec(
        "", "checkpoint file; empty: the shipped default model (read on configure)"),
    "device": ParameterSpec(
        "auto", "auto | cpu | cuda | cuda:N (read on configure)",
        lambda v: DEVICE_PATTERN.fullmatch(v) is not None, "auto, cpu, cuda or cuda:N"),
    "backend": ParameterSpec(
        "torch", "what runs the network: torch | onnxruntime (CPU; read on configure)",
        lambda v: v in BACKENDS, " or ".join(BACKENDS)),
    "onnx_model": ParameterSpec(
        "", "ONNX file of the checkpoint's network for backend onnxruntime (python -m "
            "upsnet_core.tools.export --onnx); empty: exported on configure (read on configure)"),
    "half_precision": ParameterSpec(
        True, "fp16 autocast around inference on CUDA (ignored on the CPU)"),
    "input_long_side": ParameterSpec(
        -1, "network input long side in pixels; -1: the checkpoint's "
            "(inference.input_long_side), 0: the image's own size; outputs are always at the "
            "input size (read on configure)",
        lambda v: v >= -1, ">= 0, or -1 (the checkpoint's)"),
    "max_image_pixels": ParameterSpec(
        16_777_216, "larger images are rejected (0: no limit)", lambda v: v >= 0, ">= 0"),
    "score_threshold": ParameterSpec(
        -1.0, "detections at or below this score are dropped; 0..1, -1: checkpoint's",
        _fraction_or_keep, "in [0, 1], or -1 (the checkpoint's)"),
    "mask_overlap_threshold": ParameterSpec(
        -1.0, "max overlap of a mask with kept masks; 0..1, -1: checkpoint's",
        _fraction_or_keep, "in [0, 1], or -1 (the checkpoint's)"),
    "stuff_area": ParameterSpec(
        -1.0, "smaller stuff segments (pixels at 1024x2048) become unknown; >= 0, -1: "
              "checkpoint's",
        lambda v: v == -1 or v >= 0, ">= 0, or -1 (the checkpoint's)"),
    "qos.reliability": ParameterSpec(
        "best_effort", "input QoS reliability: best_effort | reliable (on activate)",
        lambda v: v in ("best_effort", "reliable"), "best_effort or reliable"),
    "qos.depth": ParameterSpec(
        5, "input and output QoS history depth (on activate)", lambda v: v >= 1, ">= 1"),
    "subscribe_compressed": ParameterSpec(
        False, "also subscribe to image/compressed (on activate)"),
    "publish.labels": ParameterSpec(True, "publish panoptic/labels (32SC1)"),
    "publish.semantic": ParameterSpec(True, "publish panoptic/semantic (mono8)"),
    "publish.instances": ParameterSpec(True, "publish panoptic/instances"),
    "publish.visualization": ParameterSpec(
        True, "publish panoptic/visualization while subscribed"),
    "diagnostics_period": ParameterSpec(
        1.0, "seconds between /diagnostics messages (on activate)", lambda v: v > 0, "> 0"),
    "autostart": ParameterSpec(False, "configure and activate at start-up (for plain ros2 run)"),
}


ROS_TYPES = {str: "string", int: "integer", float: "double", bool: "bool"}


def parameter_error(name: str, value: Any) -> str:
    """Why ``value`` is not valid for parameter ``name`` ('' when it is, or when ``name``
    is not one of :data:`PARAMETERS`): its type, then its range or choices."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return ""
    expected = type(spec.default)
    if type(value) is not expected:  # as ROS 2: an int is no float, a bool no int
        return (f"{name} must be of type {ROS_TYPES[expected]}, got {value!r} "
                f"({ROS_TYPES.get(type(value), type(value).__name__)})")
    if not spec.valid(value):
        return f"{name} must be {spec.expected}, got {value!r}"
    return ""


def declare_parameters(node: Node) -> list[str]:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` with its override (params
    file, ``-p``); an override refused by the node's set-parameters callback (which must be
    added before, and check :func:`parameter_error`) is replaced by the default.

    Returns:
        one reason per refused override, naming the parameter, the value and the default.
    """
    refused = []
    for name, spec in PARAMETERS.items():
        descriptor = ParameterDescriptor(
            description=f"{spec.description} [{ROS_TYPES[type(spec.default)]}]",
            dynamic_typing=True)
        try:
            node.declare_parameter(name, spec.default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            node.declare_parameter(name, spec.default, descriptor, ignore_override=True)
            refused.append(f"parameter {name} refused at start-up ({error}); "
                           f"it keeps its default {spec.default!r}")
    return refused
