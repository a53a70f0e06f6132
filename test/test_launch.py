"""launch/upsnet.launch.py and launch/replay_eval.launch.py.

Where ``launch`` and ``launch_ros`` are importable (a ROS 2 installation), upsnet.launch.py
is run for real: it must start the node from the ament index with a params file, in a
namespace, on a remapped camera topic, and the node must segment a frame. Everywhere
(these packages are not on PyPI), the files are checked statically: every executable,
parameter file, parameter, command-line option and launch argument they name exists.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from upsnet_ros.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "upsnet.launch.py"
REPLAY_LAUNCH_FILE = ROOT / "launch" / "replay_eval.launch.py"
PARAMS_FILE = ROOT / "config" / "upsnet.yaml"
INSTALL_SHARE = ROOT / "install" / "upsnet_ros" / "share" / "upsnet_ros"
ARGUMENTS = {"camera_topic", "params_file", "device", "namespace", "autostart"}
REPLAY_ARGUMENTS = {"bag", "out", "rate", "checkpoint", "params_file", "namespace",
                    "running_node"}
NODE_TOPICS = {"image", "image/compressed"}


def calls(name: str, launch_file: Path = LAUNCH_FILE) -> list[ast.Call]:
    """Every call of ``name(...)`` in ``launch_file``."""
    tree = ast.parse(launch_file.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


def literal_strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def flatten(mapping: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves of a nested dict (ROS parameter names)."""
    names = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        names += flatten(value, name + ".") if isinstance(value, dict) else [name]
    return names


def test_every_launch_argument_is_declared_and_used():
    declared = {c.args[0].value for c in calls("DeclareLaunchArgument")}
    used = {c.args[0].value for c in calls("LaunchConfiguration")}
    assert declared == used == ARGUMENTS


def test_node_executable_and_parameter_file_exist():
    (node,) = calls("Node")
    fields = keywords(node)
    assert (fields["package"].value, fields["executable"].value) == ("upsnet_ros", "upsnet_node")
    executable = ROOT / "install" / "upsnet_ros" / "lib" / "upsnet_ros" / "upsnet_node"
    assert executable.is_file() and os.access(executable, os.X_OK)
    (share,) = calls("PathJoinSubstitution")
    package, *parts = share.args[0].elts
    assert literal_strings(package) == ["upsnet_ros"]  # FindPackageShare('upsnet_ros')
    relative = Path(*(part.value for part in parts))
    assert (ROOT / relative).is_file() and (INSTALL_SHARE / relative).is_file(), relative
    assert ROOT / relative == PARAMS_FILE


def test_node_parameters_and_remappings_are_the_nodes():
    fields = keywords(calls("Node")[0])
    (overrides,) = [n for n in ast.walk(fields["parameters"]) if isinstance(n, ast.Dict)]
    assert {k.value for k in overrides.keys} <= set(PARAMETERS)
    remapped = {pair.elts[0].value for pair in fields["remappings"].elts}
    assert remapped == NODE_TOPICS


def test_replay_launch_arguments_are_declared_and_used():
    declared = {c.args[0].value for c in calls("DeclareLaunchArgument", REPLAY_LAUNCH_FILE)}
    used = {c.args[0].value for c in calls("LaunchConfiguration", REPLAY_LAUNCH_FILE)}
    assert declared == used == REPLAY_ARGUMENTS


def test_replay_launch_executable_params_and_options_exist():
    from upsnet_ros.tools.replay_eval import parse_args

    (node,) = calls("Node", REPLAY_LAUNCH_FILE)
    fields = keywords(node)
    assert (fields["package"].value, fields["executable"].value) == ("upsnet_ros", "replay_eval")
    executable = ROOT / "install" / "upsnet_ros" / "lib" / "upsnet_ros" / "replay_eval"
    assert executable.is_file() and os.access(executable, os.X_OK)
    assert (INSTALL_SHARE / "launch" / REPLAY_LAUNCH_FILE.name).is_file()
    (share,) = calls("PathJoinSubstitution", REPLAY_LAUNCH_FILE)
    assert ROOT / Path(*(part.value for part in share.args[0].elts[1:])) == PARAMS_FILE
    tree = ast.parse(REPLAY_LAUNCH_FILE.read_text())
    options = [o for o in literal_strings(tree) if o.startswith("--")]
    assert len(options) == 7
    argv = [a for o in options for a in ([o] if o == "--running-node" else [o, "max"])]
    parsed = parse_args(argv)  # every option the launch file passes is the tool's
    assert parsed.running_node and parsed.rate is None


def test_params_file_names_only_declared_parameters():
    content = yaml.safe_load(PARAMS_FILE.read_text())
    assert set(flatten(content["/**"]["ros__parameters"])) == set(PARAMETERS)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed (not on PyPI); checked statically above")
def test_launch_file_starts_the_node(tmp_path, small_config, monkeypatch):
    import rclpy
    import torch
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from upsnet_core.checkpoint import save_checkpoint
    from upsnet_core.modeling import build_upsnet
    from upsnet_ros.conversions import array_to_image
    from upsnet_ros.testing import RELIABLE, Probe, stamp_key

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "small.pt", build_upsnet(small_config), small_config)
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["/**"]["ros__parameters"].update(checkpoint=str(checkpoint), qos={"reliability": "reliable",
                                                                             "depth": 5})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = {**os.environ, "ROS_DOMAIN_ID": str(1 + (os.getpid() + 100) % 200)}
    runner = ("import sys; from launch import LaunchDescription, LaunchService; "
              "from launch.actions import IncludeLaunchDescription; "
              "from launch.launch_description_sources import PythonLaunchDescriptionSource; "
              "service = LaunchService(); service.include_launch_description(LaunchDescription("
              "[IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]), "
              "launch_arguments=[a.split(':=', 1) for a in sys.argv[2:]])])); "
              "sys.exit(service.run())")
    launch = subprocess.Popen(
        [sys.executable, "-c", runner, str(LAUNCH_FILE), "namespace:=/launched",
         "camera_topic:=/camera/color", f"params_file:={params_file}", "device:=cpu",
         "autostart:=true"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    monkeypatch.setenv("ROS_DOMAIN_ID", env["ROS_DOMAIN_ID"])
    rclpy.init()
    probe = Probe("/launched")
    try:
        camera = probe.node.create_publisher(Image, "/camera/color", RELIABLE)
        assert probe.spin_until(lambda: camera.get_subscription_count() > 0, 60)
        header = Header(frame_id="camera_color_optical")
        header.stamp.sec = 42
        sent = array_to_image(torch.randint(0, 255, (30, 50, 3), dtype=torch.uint8).numpy(),
                              "rgb8", header)
        camera.publish(sent)
        labels = probe.outputs_for(stamp_key(sent), ["panoptic/labels"], 60)
        assert labels["panoptic/labels"].header == sent.header
        assert probe.get_parameter("device") == "cpu"
    finally:
        probe.destroy()
        rclpy.shutdown()
        launch.send_signal(signal.SIGINT)
        output = launch.communicate(timeout=30)[0]
    assert launch.returncode == 0, output
