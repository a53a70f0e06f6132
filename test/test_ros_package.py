"""The colcon-built ROS 2 package: generated messages and install layout.

Needs the environment from ``scripts/env.sh`` (``make test`` sets it up):
real rclpy, real generated message bindings from ``install/``, no mocks.
"""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

rclpy_serialization = pytest.importorskip('rclpy.serialization')
serialize_message = rclpy_serialization.serialize_message
deserialize_message = rclpy_serialization.deserialize_message


def _msgs():
    from upsnet_ros.msg import (
        Category,
        CategoryMap,
        PanopticInstance,
        PanopticInstanceArray,
    )

    return Category, CategoryMap, PanopticInstance, PanopticInstanceArray


def test_messages_import_from_install():
    import upsnet_ros.msg as msg_mod

    # The generated package lives in the colcon install tree, not the sources.
    path = Path(msg_mod.__file__).resolve()
    assert (ROOT / 'install').resolve() in path.parents, path
    for cls in _msgs():
        # Load the C type support (raises if its libraries cannot be found).
        cls.__class__.__import_type_support__()
        assert cls._TYPE_SUPPORT is not None  # noqa: SLF001


def test_defaults():
    Category, CategoryMap, PanopticInstance, PanopticInstanceArray = _msgs()
    cmap = CategoryMap()
    assert cmap.void_id == 0
    assert cmap.semantic_unknown == 255
    assert list(cmap.categories) == []
    assert len(Category().color) == 3
    inst = PanopticInstance()
    assert inst.bbox.do_rectify is False
    assert PanopticInstanceArray().instances == []


def _instance(PanopticInstance, i):
    from sensor_msgs.msg import RegionOfInterest

    m = PanopticInstance()
    m.id = 1000 * 26 + i  # a Cityscapes-style panoptic id (category * 1000 + instance)
    m.category_id = 26
    m.category_name = 'car'
    m.is_thing = True
    m.score = 0.875
    m.area = 12345 + i
    m.bbox = RegionOfInterest(x_offset=10 + i, y_offset=20, height=30, width=40, do_rectify=False)
    m.centroid_x = 30.5
    m.centroid_y = 35.25
    return m


def test_panoptic_instance_array_round_trip():
    _, _, PanopticInstance, PanopticInstanceArray = _msgs()
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    arr = PanopticInstanceArray()
    arr.header = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id='camera_optical')
    arr.instances = [_instance(PanopticInstance, i) for i in range(3)]
    stuff = PanopticInstance(id=7, category_id=7, category_name='road', is_thing=False,
                             score=1.0, area=500000)
    arr.instances.append(stuff)

    data = serialize_message(arr)
    assert isinstance(data, bytes) and len(data) > 0
    back = deserialize_message(data, PanopticInstanceArray)

    assert back == arr
    assert back.header.frame_id == 'camera_optical'
    assert back.header.stamp.sec == 1700000000
    assert back.header.stamp.nanosec == 123456789
    assert len(back.instances) == 4
    first = back.instances[0]
    assert (first.id, first.category_id, first.category_name) == (26000, 26, 'car')
    assert first.is_thing is True
    assert first.score == pytest.approx(0.875)
    assert first.area == 12345
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == (10, 20, 40, 30)
    assert (first.centroid_x, first.centroid_y) == (30.5, 35.25)
    assert back.instances[2].bbox.x_offset == 12
    assert back.instances[3].is_thing is False
    assert back.instances[3].score == 1.0


def test_category_map_round_trip():
    Category, CategoryMap, _, _ = _msgs()
    cmap = CategoryMap()
    cmap.header.frame_id = ''
    cmap.categories = [
        Category(id=7, name='road', is_thing=False, color=[128, 64, 128]),
        Category(id=26, name='car', is_thing=True, color=[0, 0, 142]),
    ]
    cmap.void_id = 0
    cmap.semantic_unknown = 255

    back = deserialize_message(serialize_message(cmap), CategoryMap)
    assert back == cmap
    assert [c.name for c in back.categories] == ['road', 'car']
    assert [c.id for c in back.categories] == [7, 26]
    assert [c.is_thing for c in back.categories] == [False, True]
    assert list(back.categories[1].color) == [0, 0, 142]
    assert (back.void_id, back.semantic_unknown) == (0, 255)


def test_installed_share_dir_has_package_xml():
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:  # pragma: no cover - ament_index_python ships with rclpy
        share = ROOT / 'install' / 'upsnet_ros' / 'share' / 'upsnet_ros'
    else:
        share = Path(get_package_share_directory('upsnet_ros'))
    package_xml = share / 'package.xml'
    assert package_xml.is_file(), package_xml
    root = ET.parse(package_xml).getroot()
    assert root.findtext('name') == 'upsnet_ros'
    assert root.findtext('export/build_type') == 'ament_cmake'
    # The message definitions are installed too (other tools read them from there).
    for name in ('Category', 'CategoryMap', 'PanopticInstance', 'PanopticInstanceArray'):
        assert (share / 'msg' / f'{name}.msg').is_file()


def test_node_executable_installed():
    exe = ROOT / 'install' / 'upsnet_ros' / 'lib' / 'upsnet_ros' / 'upsnet_node'
    assert exe.is_file()
    assert os.access(exe, os.X_OK)


def test_large_data_transport_set():
    # Every process must use the same Fast DDS transports or they never connect.
    assert os.environ.get('FASTDDS_BUILTIN_TRANSPORTS') == 'LARGE_DATA'
