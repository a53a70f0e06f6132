"""Which frames of a camera stream to keep: sub-sampling by time and near-duplicate removal.

A robot records at camera rate, and a parked robot records the same scene for minutes.
:class:`FrameSelector` keeps a frame only when at least ``min_interval`` seconds of stamp
time passed since the last kept frame and its grey thumbnail differs from that frame's by
at least ``duplicate_threshold`` (mean absolute difference on the 0..255 scale): small
enough to ignore sensor noise, large enough to catch a parked robot.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

THUMBNAIL = (32, 32)
"""Width and height of the thumbnails that are compared."""


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """``THUMBNAIL``-sized float32 grey version of an ``(H, W, 3)`` uint8 RGB image."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)


class FrameSelector:
    """Decides frame by frame, in stream order (one selector per topic of a bag)."""

    def __init__(self, min_interval: float, duplicate_threshold: float):
        self.min_interval_ns = round(min_interval * 1e9)
        self.duplicate_threshold = duplicate_threshold
        self._last_stamp: Optional[int] = None
        self._last_thumbnail: Optional[np.ndarray] = None

    def keep(self, stamp_ns: int, rgb: np.ndarray) -> bool:
        """Whether to keep this frame (and remember it as the last kept one)."""
        if self._last_stamp is not None and (
                stamp_ns <= self._last_stamp or stamp_ns - self._last_stamp < self.min_interval_ns):
            return False
        small = thumbnail(rgb)
        if (self._last_thumbnail is not None and self.duplicate_threshold > 0
                and float(np.abs(small - self._last_thumbnail).mean()) < self.duplicate_threshold):
            return False
        self._last_stamp, self._last_thumbnail = stamp_ns, small
        return True
