"""sensor_msgs images <-> numpy arrays for the node, with every malformed message refused.

The pixel work (encodings, validation, row padding, byte order, compressed decoding) is
:mod:`upsnet_core.image_messages`, shared with the bag tools; this module adds the rclpy
message type and ROS 2's ``cv_bridge`` where it is installed (pip-only set-ups do without:
the numpy path gives the same result). Messages are validated first in both cases, so a
bad message always raises :class:`ImageConversionError`.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from upsnet_core.image_messages import (ENCODINGS, INPUT_ENCODINGS, ImageConversionError,
                                        check_image, check_size, compressed_to_rgb,
                                        image_fields, image_to_array, to_rgb)
from upsnet_core.image_messages import image_to_rgb as _numpy_image_to_rgb

try:  # ROS 2's cv_bridge (not on PyPI); the numpy path is its equivalent.
    from cv_bridge import CvBridge
except ImportError:  # pragma: no cover - depends on the installation
    CvBridge = None

_BRIDGE = CvBridge() if CvBridge is not None else None

__all__ = ["ENCODINGS", "INPUT_ENCODINGS", "ImageConversionError", "array_to_image",
           "check_image", "check_size", "compressed_to_rgb", "image_to_array", "image_to_rgb",
           "to_rgb"]


def image_to_rgb(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """A validated Image message as ``(H, W, 3)`` uint8 RGB."""
    if _BRIDGE is not None:  # pragma: no cover - cv_bridge is not installable here
        check_image(msg, max_pixels)
        return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    return _numpy_image_to_rgb(msg, max_pixels)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """An Image message holding ``array`` (``(H, W)`` or ``(H, W, C)`` matching ``encoding``),
    in native byte order, without padding."""
    return Image(header=header, **image_fields(array, encoding))
