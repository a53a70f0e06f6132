"""upsnet_core.rosbag_io: bags written and read back with real rosbags files (mcap and
sqlite3, raw and compressed images), this package's CategoryMap, and clear errors for a
missing bag, a corrupt bag, a missing topic and a malformed label image. No ROS needed."""
from __future__ import annotations

import numpy as np
import pytest

from upsnet_core import rosbag_io
from upsnet_core.categories import CategorySet
from upsnet_core.image_messages import ImageConversionError
from upsnet_core.rosbag_io import (COMPRESSED_TOPIC, GT_LABELS_TOPIC, IMAGE_TOPIC, BagError,
                                   Frame)

CATEGORIES = CategorySet.preset("cityscapes")
RNG = np.random.default_rng(0)


def frames(count: int = 3, height: int = 12, width: int = 20) -> list[Frame]:
    labels = np.full((height, width), 7000, np.int32)
    labels[2:6, 3:9] = 26001
    labels[0] = 0
    return [Frame(RNG.integers(0, 256, (height, width, 3), np.uint8), labels + i * 1)
            for i in range(count)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True])
def test_frames_round_trip(tmp_path, storage, compressed):
    written = frames()
    bag = tmp_path / "bag"
    assert rosbag_io.write_frames(bag, written, rate=4.0, storage=storage, compressed=compressed,
                                  categories=CATEGORIES) == 3
    images = list(rosbag_io.iter_images(bag, COMPRESSED_TOPIC if compressed else IMAGE_TOPIC))
    labels = list(rosbag_io.iter_label_images(bag))
    stamps = [rosbag_io.START_NS + i * 250_000_000 for i in range(3)]
    assert [s for s, _, _ in images] == [s for s, _, _ in labels] == stamps
    assert {f for _, f, _ in images} == {f for _, f, _ in labels} == {"camera"}
    for frame, (_, _, rgb), (_, _, label) in zip(written, images, labels):
        np.testing.assert_array_equal(rgb, frame.rgb)  # png: lossless
        np.testing.assert_array_equal(label, frame.labels)
        assert label.dtype == np.int32
    assert rosbag_io.read_categories(bag).to_list() == CATEGORIES.to_list()
    with rosbag_io.open_reader(bag) as reader:
        assert rosbag_io.topics(reader)[GT_LABELS_TOPIC] == "sensor_msgs/msg/Image"


def test_plain_arrays_and_own_stamps(tmp_path):
    rgb = RNG.integers(0, 256, (5, 6, 3), np.uint8)
    rosbag_io.write_frames(tmp_path / "bag", [rgb, Frame(rgb, stamp_ns=rosbag_io.START_NS + 7,
                                                         frame_id="front")])
    read = list(rosbag_io.iter_images(tmp_path / "bag"))
    assert [(s, f) for s, f, _ in read] == [(rosbag_io.START_NS, "camera"), (rosbag_io.START_NS + 7, "front")]
    assert rosbag_io.format_stamp(5 * 10**9 + 7) == "5.000000007"


def test_messages_decode_back():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000
    msg = rosbag_io.label_message(labels, 10**9 + 5, "cam")
    assert (msg.encoding, rosbag_io.stamp_ns(msg), msg.header.frame_id) == ("32SC1", 10**9 + 5, "cam")
    np.testing.assert_array_equal(rosbag_io.decode_label_image(msg), labels)
    bgr = rosbag_io.image_message(np.zeros((3, 4, 3), np.uint8) + [1, 2, 3], "bgr8", 0, "")
    assert rosbag_io.decode_image(bgr)[0, 0].tolist() == [3, 2, 1]
    with pytest.raises(ImageConversionError, match="unsupported encoding 'bgr8'"):
        rosbag_io.decode_label_image(bgr)
    categories = rosbag_io.categories_from_message(rosbag_io.category_map_message(CATEGORIES))
    assert categories.to_list() == CATEGORIES.to_list()


def test_missing_bag_and_topic(tmp_path):
    with pytest.raises(BagError, match=f"bag {tmp_path / 'none'} does not exist"):
        list(rosbag_io.iter_images(tmp_path / "none"))
    rosbag_io.write_frames(tmp_path / "bag", [f.rgb for f in frames(1)])
    with pytest.raises(BagError, match=r"has no topic /other; its topics: /camera/image_raw"):
        list(rosbag_io.iter_images(tmp_path / "bag", "/other"))
    with pytest.raises(BagError, match="has no topic /ground_truth/panoptic/categories"):
        rosbag_io.read_categories(tmp_path / "bag")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_bag_of_which_nothing_can_be_read(tmp_path, storage):
    """Damaged bags that still hold intact messages: test_reliability_bags.py."""
    bag = tmp_path / "bag"
    rosbag_io.write_frames(bag, [f.rgb for f in frames(2)], storage=storage)
    (data,) = [p for p in bag.iterdir() if p.name != "metadata.yaml"]
    data.write_bytes(b"\xab" * data.stat().st_size)
    with pytest.raises(BagError, match=f"bag {bag} cannot be read: .*neither MCAP nor SQLite"):
        list(rosbag_io.iter_images(bag))


def test_existing_output_is_refused(tmp_path):
    rosbag_io.write_frames(tmp_path / "bag", [frames(1)[0]])
    with pytest.raises(BagError, match="cannot write bag"):
        rosbag_io.write_frames(tmp_path / "bag", [frames(1)[0]])


def test_msg_dir_is_the_repositorys():
    assert (rosbag_io.msg_dir() / "CategoryMap.msg").is_file()
