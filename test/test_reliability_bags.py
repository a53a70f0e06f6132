"""Damaged bags: real rosbags bags (mcap and sqlite3) cut off at several byte offsets, as
when a robot powers down mid-write, or holding a corrupt message. Every intact message is
read, the rest is reported with topic and stamp or log time. No ROS needed."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from upsnet_core import rosbag_io
from upsnet_core.rosbag_io import GT_LABELS_TOPIC, IMAGE_TOPIC, BagError, Frame

FRAMES = 12
HEIGHT, WIDTH = 96, 128


def storage_file(bag: Path) -> Path:
    (data,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    return data


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def intact(request, tmp_path_factory) -> tuple[Path, list[Frame]]:
    rng = np.random.default_rng(3)
    frames = [Frame(rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8),
                    np.full((HEIGHT, WIDTH), 7000 + i, np.int32)) for i in range(FRAMES)]
    bag = tmp_path_factory.mktemp(request.param) / "bag"
    rosbag_io.write_frames(bag, frames, storage=request.param)
    return bag, frames


def copy_cut(bag: Path, destination: Path, fraction: float) -> Path:
    """A copy of ``bag`` whose storage file is cut to ``fraction`` of its bytes."""
    shutil.copytree(bag, destination)
    data = storage_file(destination)
    content = data.read_bytes()
    data.write_bytes(content[:int(len(content) * fraction)])
    return destination


@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.7, 0.95, 0.999])
def test_a_bag_cut_mid_write_gives_every_intact_message(intact, tmp_path, fraction):
    bag, frames = intact
    cut = copy_cut(bag, tmp_path / "cut", fraction)
    problems: list[str] = []
    images = list(rosbag_io.iter_images(cut, IMAGE_TOPIC, problems))
    labels = list(rosbag_io.iter_label_images(cut, GT_LABELS_TOPIC, problems))
    stamps = [rosbag_io.START_NS + round(i * 1e8) for i in range(FRAMES)]
    # What is read is exactly the written frames, in order, up to where the file ends.
    assert [s for s, _, _ in images] == stamps[:len(images)]
    assert [s for s, _, _ in labels] == stamps[:len(labels)]
    for (_, _, rgb), (_, _, label), frame in zip(images, labels, frames):
        np.testing.assert_array_equal(rgb, frame.rgb)
        np.testing.assert_array_equal(label, frame.labels)
    # MCAP: every frame in the bytes that remain, but the one being written. SQLite keeps
    # the rows' index on pages written as the table grows: frames whose index page is lost
    # are gone with it (the first 20 % of the file holds none), the others are kept.
    if storage_file(bag).suffix == ".mcap":
        assert len(images) >= int(fraction * FRAMES) - 1, (len(images), problems)
    elif fraction > 0.9:
        assert len(images) >= FRAMES - 2, (len(images), problems)
    assert len(images) < FRAMES or fraction > 0.99
    text = "\n".join(problems)
    assert "rosbags cannot read it" in text or "rosbags failed reading" in text
    assert "cut off at byte" in text
    # Every frame not read is accounted for: listed with its log time, or counted missing.
    listed = sum(p.startswith(f"{IMAGE_TOPIC} log time") for p in problems)
    missing = FRAMES - len(images) - listed
    if missing:
        assert f"{missing} of the {FRAMES} messages of {IMAGE_TOPIC} listed in metadata.yaml" \
            in text, problems
    else:
        assert f"messages of {IMAGE_TOPIC} listed in metadata.yaml" not in text


def test_a_bag_cut_before_its_first_message_names_what_is_missing(intact, tmp_path):
    bag, _ = intact
    cut = copy_cut(bag, tmp_path / "cut", 0.0005)  # the first page / the header only
    with pytest.raises(BagError, match=f"bag {cut}"):
        list(rosbag_io.iter_images(cut))


def corrupt_one_image(bag: Path, index: int) -> int:
    """Make image ``index`` undecodable (its header's frame_id length becomes huge) in
    the bag's storage file; its log time."""
    with rosbag_io.open_reader(bag) as reader:
        log_ns, data, _ = list(rosbag_io.iter_raw(reader, IMAGE_TOPIC))[index]
    broken = bytearray(data)
    broken[12:16] = b"\xf0\xff\xff\x7f"  # CDR: 4 encapsulation + 8 stamp, then the length
    file = storage_file(bag)
    if file.suffix == ".db3":
        with sqlite3.connect(file) as connection:
            connection.execute("UPDATE messages SET data = ? WHERE data = ?", (bytes(broken), data))
    else:
        content = file.read_bytes()
        assert content.count(data) == 1
        file.write_bytes(content.replace(data, bytes(broken)))
    return log_ns


def test_a_corrupt_message_is_skipped_and_reported(intact, tmp_path):
    bag, frames = intact
    copy = shutil.copytree(bag, tmp_path / "corrupt")
    log_ns = corrupt_one_image(copy, 4)
    problems: list[str] = []
    images = list(rosbag_io.iter_images(copy, IMAGE_TOPIC, problems))
    assert len(images) == FRAMES - 1
    assert [s for s, _, _ in images] == [rosbag_io.START_NS + round(i * 1e8)
                                         for i in range(FRAMES) if i != 4]
    for (_, _, rgb), frame in zip(images, frames[:4] + frames[5:]):
        np.testing.assert_array_equal(rgb, frame.rgb)
    assert problems == [f"{IMAGE_TOPIC} log time {rosbag_io.format_stamp(log_ns)}: cannot be "
                        f"decoded as sensor_msgs/msg/Image" + problems[0].split("Image", 1)[1]]
    assert len(list(rosbag_io.iter_label_images(copy))) == FRAMES


def test_an_undecodable_image_is_skipped_with_its_stamp(tmp_path):
    good = np.zeros((4, 5, 3), np.uint8)
    bag = tmp_path / "bag"
    with rosbag_io.open_writer(bag) as writer:
        for index, encoding in enumerate(["rgb8", "yuv422", "rgb8"]):
            msg = rosbag_io.image_message(good, "rgb8", rosbag_io.START_NS + index, "camera")
            msg.encoding = encoding
            writer.write(IMAGE_TOPIC, msg, rosbag_io.START_NS + index)
    problems: list[str] = []
    read = list(rosbag_io.iter_images(bag, IMAGE_TOPIC, problems))
    assert [s for s, _, _ in read] == [rosbag_io.START_NS, rosbag_io.START_NS + 2]
    assert problems == [f"{IMAGE_TOPIC} stamp {rosbag_io.format_stamp(rosbag_io.START_NS + 1)}: "
                        "unsupported encoding 'yuv422' (supported: rgb8, bgr8, rgba8, bgra8, "
                        "mono8, mono16)"]


def test_unreadable_metadata_and_a_lone_storage_file_are_read(intact, tmp_path):
    bag, _ = intact
    copy = shutil.copytree(bag, tmp_path / "bag")
    (copy / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    problems: list[str] = []
    assert len(list(rosbag_io.iter_images(copy, IMAGE_TOPIC, problems))) == FRAMES
    assert any("metadata.yaml cannot be used" in p for p in problems)
    assert len(list(rosbag_io.iter_images(storage_file(copy)))) == FRAMES
