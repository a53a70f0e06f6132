"""Start upsnet_node (panoptic segmentation) on a camera topic.

    ros2 launch upsnet_ros upsnet.launch.py camera_topic:=/camera/image_raw \
        device:=cuda namespace:=front autostart:=true [params_file:=my.yaml]

Arguments:
  camera_topic  sensor_msgs/Image input, remapped onto the node's `image` topic
                (and <camera_topic>/compressed onto `image/compressed`)
  params_file   ROS params file (default: the installed config/upsnet.yaml)
  device        auto | cpu | cuda | cuda:N (overrides the params file)
  namespace     namespace of the node and of its output topics
  autostart     true: the node configures and activates itself at start-up;
                false: it stays unconfigured for a lifecycle manager
Works with the launch/launch_ros of ROS 2 Humble, Jazzy and Kilted.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """The launch arguments and the upsnet_node action."""
    camera_topic = LaunchConfiguration('camera_topic')
    default_params = PathJoinSubstitution([FindPackageShare('upsnet_ros'), 'config', 'upsnet.yaml'])
    arguments = [
        DeclareLaunchArgument('camera_topic', default_value='image',
                              description='input image topic (sensor_msgs/Image)'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS params file of upsnet_node'),
        DeclareLaunchArgument('device', default_value='auto',
                              description='auto | cpu | cuda | cuda:N'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its topics'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate the lifecycle node at start-up'),
    ]
    node = Node(
        package='upsnet_ros',
        executable='upsnet_node',
        name='upsnet_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        parameters=[
            LaunchConfiguration('params_file'),
            {'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
             'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool)},
        ],
        remappings=[('image', camera_topic),
                    ('image/compressed', [camera_topic, '/compressed'])],
    )
    return LaunchDescription([*arguments, node])
