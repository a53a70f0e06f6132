"""sensor_msgs/Image and CompressedImage payloads <-> numpy arrays, without ROS.

Works on duck-typed message objects: anything with the fields of ``sensor_msgs/Image``
(``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``) or of
``sensor_msgs/CompressedImage`` (``format``, ``data``). Both rclpy messages and the
dataclasses of the ``rosbags`` library have them, so the node (``upsnet_ros.conversions``),
the bag tools (:mod:`upsnet_core.rosbag_io`) and fleet ingest share this one implementation.

Every malformed message raises :class:`ImageConversionError` naming the problem: an
unsupported encoding, zero width or height, more pixels than allowed, a ``step`` smaller
than a row, fewer data bytes than ``step * height``, compressed data that does not decode.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import cv2
import numpy as np

ENCODINGS: dict[str, tuple[np.dtype, int, int | None]] = {
    "rgb8": (np.dtype(np.uint8), 3, None),
    "bgr8": (np.dtype(np.uint8), 3, cv2.COLOR_BGR2RGB),
    "rgba8": (np.dtype(np.uint8), 4, cv2.COLOR_RGBA2RGB),
    "bgra8": (np.dtype(np.uint8), 4, cv2.COLOR_BGRA2RGB),
    "mono8": (np.dtype(np.uint8), 1, cv2.COLOR_GRAY2RGB),
    "mono16": (np.dtype(np.uint16), 1, cv2.COLOR_GRAY2RGB),
    "8UC1": (np.dtype(np.uint8), 1, None),
    "32SC1": (np.dtype(np.int32), 1, None),
}
"""encoding -> (numpy dtype, channels, OpenCV conversion to RGB or None). All of them can
be written (:func:`image_fields`); :data:`INPUT_ENCODINGS` are the camera encodings read as RGB."""

INPUT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
LABEL_ENCODING = "32SC1"
"""Encoding of panoptic label images (``category_id * 1000 + k``, see upsnet_core.categories)."""

BIG_ENDIAN_HOST = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an array; the text names the problem."""


def check_size(height: int, width: int, max_pixels: int) -> None:
    """Refuse empty images and images with more than ``max_pixels`` pixels (0: no limit)."""
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height})")
    if max_pixels and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} has {height * width} pixels, more "
                                   f"than max_image_pixels={max_pixels}")


def check_image(msg: Any, max_pixels: int = 0,
                encodings: Sequence[str] = INPUT_ENCODINGS) -> None:
    """Raise :class:`ImageConversionError` naming the first problem of an Image message:
    an encoding not in ``encodings``, empty or too large, step too small, data too short."""
    if msg.encoding not in encodings:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r} "
                                   f"(supported: {', '.join(encodings)})")
    check_size(int(msg.height), int(msg.width), max_pixels)
    dtype, channels, _ = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ImageConversionError(f"step {msg.step} is smaller than width*pixel size "
                                   f"({msg.width}*{channels * dtype.itemsize} = {row_bytes})")
    if len(msg.data) < msg.step * msg.height:
        raise ImageConversionError(f"data has {len(msg.data)} bytes, fewer than step*height "
                                   f"({msg.step}*{msg.height} = {msg.step * msg.height})")


def image_to_array(msg: Any, max_pixels: int = 0,
                   encodings: Sequence[str] = INPUT_ENCODINGS) -> np.ndarray:
    """The pixels of a valid Image message as ``(H, W, C)`` in the encoding's dtype: step
    padding removed, byte order made native (a view of the message buffer where possible)."""
    check_image(msg, max_pixels, encodings)
    dtype, channels, _ = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    rows = np.frombuffer(msg.data, dtype=np.uint8)[:step * height].reshape(height, step)
    row_bytes = width * channels * dtype.itemsize
    pixels = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype).reshape(height, width, channels)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != BIG_ENDIAN_HOST:
        pixels = pixels.byteswap()
    return pixels


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """``(H, W, C)`` pixels of one of :data:`INPUT_ENCODINGS` -> ``(H, W, 3)`` uint8 RGB.

    16-bit images are scaled to 8 bits (``value >> 8``), as cv_bridge does.
    """
    _, _, code = ENCODINGS[encoding]
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if code is None:  # rgb8: a writable copy (the message buffer is read-only)
        return pixels if pixels.flags.writeable else pixels.copy()
    return cv2.cvtColor(pixels, code)


def image_to_rgb(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """A validated Image message of a camera encoding as ``(H, W, 3)`` uint8 RGB."""
    return to_rgb(image_to_array(msg, max_pixels), msg.encoding)


def compressed_to_rgb(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """A CompressedImage (JPEG, PNG, ... as OpenCV reads them) as ``(H, W, 3)`` uint8 RGB."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, "
                                   f"{data.size} bytes)")
    check_size(bgr.shape[0], bgr.shape[1], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def label_image_to_array(msg: Any) -> np.ndarray:
    """A ``32SC1`` label image message as an ``(H, W)`` int32 array (a copy)."""
    return image_to_array(msg, encodings=(LABEL_ENCODING,))[..., 0].copy()


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """The Image message fields (all but ``header``) holding ``array`` (``(H, W)`` or
    ``(H, W, C)`` matching ``encoding``), in native byte order, without padding.

    ``data`` is a ``bytes`` object: assigning it is about 50 times faster than assigning a
    numpy array to an rclpy message for camera-sized images.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    dtype, channels, _ = ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != (2 if channels == 1 else 3) or array.ndim == 3 and array.shape[2] != channels:
        raise ValueError(f"array of shape {array.shape} does not fit encoding {encoding}")
    height, width = array.shape[:2]
    return {"height": height, "width": width, "encoding": encoding,
            "is_bigendian": int(BIG_ENDIAN_HOST), "step": width * channels * dtype.itemsize,
            "data": array.tobytes()}


def encode_compressed(rgb: np.ndarray, image_format: str = "png") -> bytes:
    """``(H, W, 3)`` uint8 RGB as the bytes of a ``png`` or ``jpeg`` CompressedImage."""
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"compressed format must be png or jpeg, got {image_format!r}")
    ok, data = cv2.imencode("." + image_format, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{image_format} encoding of a {rgb.shape} image failed")
    return data.tobytes()
