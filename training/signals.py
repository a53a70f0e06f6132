"""Graceful stop on SIGINT/SIGTERM: the training loop finishes its step, saves and exits.

The first signal is only recorded; the previous handlers are then back in place, so a
second Ctrl-C (or SIGTERM) interrupts at once. Checkpoints are written atomically, so
even that never leaves a broken ``last.pt``.
"""
from __future__ import annotations

import signal
from types import FrameType
from typing import Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that records the first SIGINT/SIGTERM in :attr:`signal_number`."""

    def __init__(self) -> None:
        self.signal_number: Optional[int] = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _handle(self, number: int, frame: Optional[FrameType]) -> None:
        self.signal_number = number
        self._restore()

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequest":
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()
