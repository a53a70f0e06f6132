"""Every upsnet_node parameter set to a value of the wrong type or out of range, at
start-up (params YAML) and at run time (set_parameters service): refused with a reason,
and the node keeps its previous value (at start-up: the default) and keeps running.

Real node processes (``python -m upsnet_ros.node``, unconfigured: no model is loaded) and
real rclpy + Fast DDS, with a ROS_DOMAIN_ID of this session's own.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from upsnet_ros.node_process import NodeProcess  # noqa: E402
from upsnet_ros.parameters import PARAMETERS, parameter_error  # noqa: E402
from upsnet_ros.testing import Probe  # noqa: E402

TIMEOUT = 60.0
KEEP = object()
"""No out-of-range value exists for this parameter (any value of its type is valid)."""

CASES: dict[str, tuple[object, object]] = {
    # parameter: (value of a wrong type, out-of-range value)
    "checkpoint": (5, KEEP),
    "device": (3, "gpu"),
    "backend": (1, "tensorflow"),
    "onnx_model": (2.0, KEEP),
    "half_precision": ("maybe", KEEP),
    "input_long_side": (1.5, -5),
    "max_image_pixels": ("big", -1),
    "score_threshold": ("high", 1.5),
    "mask_overlap_threshold": (True, -0.5),
    "stuff_area": ("large", -2.0),
    "qos.reliability": (1, "fast"),
    "qos.depth": (2.5, 0),
    "subscribe_compressed": (1, KEEP),
    "publish.labels": ("nah", KEEP),
    "publish.semantic": (0.5, KEEP),
    "publish.instances": ("nope", KEEP),
    "publish.visualization": (7, KEEP),
    "diagnostics_period": ("fast", 0.0),
    "autostart": ("soon", KEEP),
}
OUT_OF_RANGE = {k: v for k, (_, v) in CASES.items() if v is not KEEP}


pytestmark = pytest.mark.usefixtures("ros_context")


def params_file(path: Path, values: dict[str, object]) -> Path:
    """A ROS 2 params file setting ``values`` (dotted names nested, as in config/)."""
    nested: dict = {}
    for name, value in values.items():
        *groups, key = name.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[key] = value
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": nested}}))
    return path


def started(namespace: str, params: Path, log: Path) -> tuple[NodeProcess, Probe]:
    node = NodeProcess(NodeProcess.module_command(),
                       ["-r", f"__ns:={namespace}", "--params-file", str(params)], log)
    probe = Probe(namespace, topics=["panoptic/labels"])
    assert probe.state() == "unconfigured", node.log()  # waits for the node's services
    return node, probe


def test_the_table_covers_every_parameter_and_its_defaults_are_valid():
    assert set(CASES) == set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert parameter_error(name, spec.default) == "", name
        wrong, out_of_range = CASES[name]
        assert name in parameter_error(name, wrong)
        if out_of_range is not KEEP:
            assert name in parameter_error(name, out_of_range)


@pytest.mark.parametrize("kind", ["wrong_type", "out_of_range"])
def test_bad_values_at_start_up_are_refused_and_the_defaults_kept(tmp_path, kind):
    values = ({k: wrong for k, (wrong, _) in CASES.items()} if kind == "wrong_type"
              else OUT_OF_RANGE)
    node, probe = started(f"/start_{kind}", params_file(tmp_path / "bad.yaml", values),
                          tmp_path / "node.log")
    try:
        for name in values:
            assert probe.get_parameter(name) == PARAMETERS[name].default, name
        assert probe.state() == "unconfigured"  # autostart kept its default: false
        assert node.process.poll() is None
    finally:
        probe.destroy()
        code = node.stop()
    log = node.log()
    assert code == 0 and "Traceback" not in log, log
    for name, value in values.items():
        assert f"parameter {name} refused at start-up" in log, (name, log)
        line = next(line for line in log.splitlines() if f"parameter {name} refused" in line)
        assert f"it keeps its default {PARAMETERS[name].default!r}" in line
        assert str(value) in line or type(value).__name__.upper() in line.upper(), line


def test_bad_values_at_run_time_are_refused_and_the_previous_value_kept(tmp_path):
    node, probe = started("/runtime", params_file(tmp_path / "ok.yaml", {"score_threshold": 0.7}),
                          tmp_path / "node.log")
    previous = {name: spec.default for name, spec in PARAMETERS.items()}
    previous["score_threshold"] = 0.7
    try:
        for name, (wrong, out_of_range) in CASES.items():
            for value in (wrong, out_of_range):
                if value is KEEP:
                    continue
                (result,) = probe.set_parameters(**{name: value})
                assert not result.successful and name in result.reason, (name, value, result)
                assert probe.get_parameter(name) == previous[name], (name, value)
        (result,) = probe.set_parameters(score_threshold=0.25)  # a good value still applies
        assert result.successful and probe.get_parameter("score_threshold") == 0.25
        assert node.process.poll() is None
    finally:
        probe.destroy()
        code = node.stop()
    assert code == 0 and "Traceback" not in node.log(), node.log()
