"""Image message conversions (upsnet_ros.conversions): encodings, padding, byte order,
compressed images, and every malformed message refused with a message naming the problem."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from upsnet_ros.conversions import (ImageConversionError, array_to_image,  # noqa: E402
                                    compressed_to_rgb, image_to_array, image_to_rgb)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 11, 3), dtype=np.uint8)


def image_message(pixels: np.ndarray, encoding: str, padding: int = 0,
                  big_endian: bool = False) -> Image:
    """An Image message of ``pixels`` with ``padding`` extra bytes at the end of each row."""
    height, width = pixels.shape[:2]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    rows = pixels.reshape(height, -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])),
    ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
])
def test_colour_encodings_give_the_same_rgb(encoding, pixels, padding):
    rgb = image_to_rgb(image_message(np.ascontiguousarray(pixels), encoding, padding))
    np.testing.assert_array_equal(rgb, RGB)
    assert rgb.flags.writeable and rgb.dtype == np.uint8


@pytest.mark.parametrize("padding", [0, 3])
def test_mono8_is_grey_rgb(padding):
    grey = RGB[..., 0]
    rgb = image_to_rgb(image_message(grey, "mono8", padding))
    np.testing.assert_array_equal(rgb, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_keeps_the_high_byte_in_either_byte_order(big_endian):
    values = RNG.integers(0, 65536, (5, 9), dtype=np.uint16)
    msg = image_message(values, "mono16", padding=2, big_endian=big_endian)
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], values)
    rgb = image_to_rgb(msg)
    np.testing.assert_array_equal(rgb, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, 2))


def test_odd_size_round_trip_through_array_to_image():
    pixels = RNG.integers(0, 256, (75, 203, 3), dtype=np.uint8)
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    msg = array_to_image(pixels, "rgb8", header)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (75, 203, 609, "rgb8")
    assert msg.header == header
    np.testing.assert_array_equal(image_to_rgb(msg), pixels)


def test_array_to_image_32sc1_and_mono8():
    labels = np.array([[0, 26001], [7000, 26002]], dtype=np.int32)
    msg = array_to_image(labels, "32SC1", Header())
    assert (msg.step, msg.encoding) == (8, "32SC1")
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.int32).reshape(2, 2), labels)
    semantic = array_to_image(np.array([[255, 7]], np.int32), "mono8", Header())
    assert bytes(semantic.data) == bytes([255, 7]) and semantic.step == 2
    with pytest.raises(ValueError, match="does not fit"):
        array_to_image(labels, "rgb8", Header())


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_compressed_images_decode_to_rgb(extension):
    ok, data = cv2.imencode(extension, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    rgb = compressed_to_rgb(CompressedImage(format=extension[1:], data=data.tobytes()))
    assert rgb.shape == RGB.shape
    if extension == ".png":  # lossless
        np.testing.assert_array_equal(rgb, RGB)


def _bad(msg: Image, **changes) -> Image:
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("make, problem", [
    (lambda: _bad(image_message(RGB, "rgb8"), encoding="yuv422"), "unsupported encoding"),
    (lambda: _bad(image_message(RGB, "rgb8"), step=11 * 3 - 1), "smaller than width"),
    (lambda: _bad(image_message(RGB, "rgb8"), data=bytes(7 * 33 - 1)), "fewer than step"),
    (lambda: _bad(image_message(RGB, "rgb8"), width=0, step=0, data=b""), "empty image"),
    (lambda: _bad(image_message(RGB, "rgb8"), height=0, data=b""), "empty image"),
    (lambda: image_message(np.zeros((20, 30, 3), np.uint8), "rgb8"), "max_image_pixels"),
])
def test_bad_images_are_refused_naming_the_problem(make, problem):
    with pytest.raises(ImageConversionError, match=problem):
        image_to_rgb(make(), max_pixels=500)


@pytest.mark.parametrize("data", [b"", b"definitely not an image", bytes(100)])
def test_undecodable_compressed_data_is_refused(data):
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=data))


def test_compressed_image_over_the_pixel_limit_is_refused():
    ok, data = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        compressed_to_rgb(CompressedImage(format="png", data=data.tobytes()), max_pixels=1000)
