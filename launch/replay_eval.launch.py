"""Replay a bag through upsnet_node and evaluate accuracy and latency.

    ros2 launch upsnet_ros replay_eval.launch.py bag:=/data/drive_bag out:=/tmp/report \
        rate:=max [checkpoint:=model.pt] [params_file:=my.yaml] [namespace:=replay] \
        [running_node:=false]

Starts the `replay_eval` tool (upsnet_ros.tools.replay_eval), which starts upsnet_node
itself (the installed executable, params file, camera topic remapped onto the bag's),
publishes the bag's images, records the node's outputs into <out>/predictions and writes
<out>/report.json, report.md and plots; the launch ends when the tool does.
With running_node:=true it uses the node already running in `namespace` (for example one
started by upsnet.launch.py with camera_topic:=/camera/image_raw).

Arguments:
  bag           input bag (python -m upsnet_ros.tools.make_bag)
  out           report folder
  rate          factor on the bag's timing (1.0: real time) or max (as fast as the node
                keeps up, with back-pressure)
  checkpoint    node checkpoint; empty: the node's default model
  params_file   ROS params file of upsnet_node (default: the installed config/upsnet.yaml)
  namespace     namespace of the node and of its output topics
  running_node  true: do not start a node, use the one running in `namespace`
Works with the launch/launch_ros of ROS 2 Humble, Jazzy and Kilted.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def replay_node(running_node: bool) -> Node:
    """The replay_eval executable, with or without --running-node."""
    arguments = ['--bag', LaunchConfiguration('bag'), '--out', LaunchConfiguration('out'),
                 '--rate', LaunchConfiguration('rate'),
                 '--checkpoint', LaunchConfiguration('checkpoint'),
                 '--params', LaunchConfiguration('params_file'),
                 '--namespace', LaunchConfiguration('namespace')]
    condition = IfCondition if running_node else UnlessCondition
    return Node(
        package='upsnet_ros',
        executable='replay_eval',
        output='screen',
        arguments=arguments + (['--running-node'] if running_node else []),
        condition=condition(LaunchConfiguration('running_node')),
    )


def generate_launch_description() -> LaunchDescription:
    """The launch arguments, the replay_eval process and a shutdown when it exits."""
    default_params = PathJoinSubstitution([FindPackageShare('upsnet_ros'), 'config', 'upsnet.yaml'])
    arguments = [
        DeclareLaunchArgument('bag', description='input bag (make_bag)'),
        DeclareLaunchArgument('out', description='report folder'),
        DeclareLaunchArgument('rate', default_value='max',
                              description="factor on the bag's timing, or max"),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="node checkpoint; empty: the node's default model"),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS params file of upsnet_node'),
        DeclareLaunchArgument('namespace', default_value='/replay',
                              description='namespace of the node and its topics'),
        DeclareLaunchArgument('running_node', default_value='false',
                              description='true: use the upsnet_node running in namespace'),
    ]
    replays = [replay_node(False), replay_node(True)]
    shutdown = [RegisterEventHandler(OnProcessExit(target_action=r, on_exit=[EmitEvent(event=Shutdown())]))
                for r in replays]
    return LaunchDescription([*arguments, *replays, *shutdown])
