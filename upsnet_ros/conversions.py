"""sensor_msgs images <-> numpy arrays, with every malformed message refused clearly.

``image_to_rgb`` and ``compressed_to_rgb`` turn incoming camera messages into the
``(H, W, 3)`` uint8 RGB arrays that :class:`upsnet_core.inference.Predictor` takes;
``array_to_image`` builds outgoing ``sensor_msgs/Image`` messages. Where ROS 2's
``cv_bridge`` is installed it converts the pixels; where it is not (pip-only set-ups),
the numpy conversion below gives the same result. Messages are validated first in
both cases, so a bad message always raises :class:`ImageConversionError`.

``msg.data = array.tobytes()`` is used on purpose: assigning a numpy array to a
message's ``data`` field is about 50 times slower for camera-sized images.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

try:  # ROS 2's cv_bridge (not on PyPI); the numpy path below is its equivalent.
    from cv_bridge import CvBridge
except ImportError:  # pragma: no cover - depends on the installation
    CvBridge = None

# encoding -> (numpy dtype, channels, OpenCV conversion to RGB or None)
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
"""Encodings :func:`array_to_image` writes; the first six (:data:`INPUT_ENCODINGS`) are also read."""

INPUT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")

_BIG_ENDIAN_HOST = sys.byteorder == "big"
_BRIDGE = CvBridge() if CvBridge is not None else None


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array; the text names the problem."""


def check_size(height: int, width: int, max_pixels: int) -> None:
    """Refuse empty images and images with more than ``max_pixels`` pixels (0: no limit)."""
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height})")
    if max_pixels and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} has {height * width} pixels, more "
                                   f"than max_image_pixels={max_pixels}")


def check_image(msg: Image, max_pixels: int = 0) -> None:
    """Raise :class:`ImageConversionError` naming the first problem of an Image message:
    unsupported encoding, empty or too large, step too small, data too short."""
    if msg.encoding not in INPUT_ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r} "
                                   f"(supported: {', '.join(INPUT_ENCODINGS)})")
    check_size(int(msg.height), int(msg.width), max_pixels)
    dtype, channels, _ = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ImageConversionError(f"step {msg.step} is smaller than width*pixel size "
                                   f"({msg.width}*{channels * dtype.itemsize} = {row_bytes})")
    if len(msg.data) < msg.step * msg.height:
        raise ImageConversionError(f"data has {len(msg.data)} bytes, fewer than step*height "
                                   f"({msg.step}*{msg.height} = {msg.step * msg.height})")


def image_to_array(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """The pixels of a valid Image message as ``(H, W, C)`` in the encoding's dtype (a view
    where possible): step padding removed, byte order made native."""
    check_image(msg, max_pixels)
    dtype, channels, _ = ENCODINGS[msg.encoding]
    height, width = int(msg.height), int(msg.width)
    rows = np.frombuffer(msg.data, dtype=np.uint8)[:msg.step * height].reshape(height, msg.step)
    row_bytes = width * channels * dtype.itemsize
    pixels = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype).reshape(height, width, channels)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _BIG_ENDIAN_HOST:
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


def image_to_rgb(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """A validated Image message as ``(H, W, 3)`` uint8 RGB."""
    if _BRIDGE is not None:  # pragma: no cover - cv_bridge is not installable here
        check_image(msg, max_pixels)
        return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    return to_rgb(image_to_array(msg, max_pixels), msg.encoding)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = 0) -> np.ndarray:
    """A CompressedImage (JPEG, PNG, ... as OpenCV reads them) as ``(H, W, 3)`` uint8 RGB."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, "
                                   f"{data.size} bytes)")
    check_size(bgr.shape[0], bgr.shape[1], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """An Image message holding ``array`` (``(H, W)`` or ``(H, W, C)`` matching ``encoding``),
    in native byte order, without padding."""
    dtype, channels, _ = ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != (2 if channels == 1 else 3) or array.ndim == 3 and array.shape[2] != channels:
        raise ValueError(f"array of shape {array.shape} does not fit encoding {encoding}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding,
                is_bigendian=int(_BIG_ENDIAN_HOST), step=width * channels * dtype.itemsize)
    msg.data = array.tobytes()
    return msg
