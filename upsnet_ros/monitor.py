"""Frame statistics for /diagnostics, rate-limited logging, and the newest-frame worker."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class FrameStats:
    """Thread-safe counters and recent timings of the frames a node receives and processes."""

    def __init__(self, window: int = 100):
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque(maxlen=window)
        self._inference: deque[float] = deque(maxlen=window)
        self.received = self.processed = self.dropped = self.rejected = 0
        self.last_rejection = ""

    def frame_received(self) -> None:
        with self._lock:
            self.received += 1
            self._arrivals.append(time.monotonic())

    def frame_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def frame_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_rejection = reason

    def frame_processed(self, inference_seconds: float) -> None:
        with self._lock:
            self.processed += 1
            self._inference.append(inference_seconds)

    def input_rate(self, horizon: float = 5.0) -> float:
        """Frames per second over the arrivals of the last ``horizon`` seconds (0 with fewer
        than two)."""
        with self._lock:
            recent = [t for t in self._arrivals if time.monotonic() - t <= horizon]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def inference_ms(self, percentile: float) -> float:
        """A percentile of the recent inference times in milliseconds (0 before the first)."""
        with self._lock:
            if not self._inference:
                return 0.0
            return float(np.percentile(np.asarray(self._inference), percentile)) * 1e3

    def status(self, name: str, hardware_id: str, values: dict[str, Any]) -> DiagnosticStatus:
        """A DiagnosticStatus with ``values`` and the frame figures; WARN once frames were rejected."""
        figures = {"input_rate_hz": f"{self.input_rate():.2f}",
                   "inference_ms_p50": f"{self.inference_ms(50):.1f}",
                   "inference_ms_p95": f"{self.inference_ms(95):.1f}",
                   "inference_ms_p99": f"{self.inference_ms(99):.1f}",
                   "frames_received": self.received, "frames_processed": self.processed,
                   "frames_dropped": self.dropped, "frames_rejected": self.rejected,
                   "last_rejection": self.last_rejection}
        level = DiagnosticStatus.WARN if self.rejected else DiagnosticStatus.OK
        message = f"{self.rejected} frames rejected" if self.rejected else "ok"
        return DiagnosticStatus(
            level=level, name=name, message=message, hardware_id=hardware_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in {**values, **figures}.items()])


class RateLimiter:
    """``ready(key)`` is true at most once per ``period`` seconds for each key."""

    def __init__(self, period: float):
        self.period = period
        self._last: dict[str, float] = {}

    def ready(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -float("inf")) < self.period:
            return False
        self._last[key] = now
        return True


class NewestFrameWorker:
    """Runs ``process(frame)`` on a thread of its own, always on the newest submitted frame.

    ``submit`` never blocks: a frame still waiting when a newer one arrives is replaced
    and passed to ``on_drop``.
    """

    def __init__(self, process: Callable[[Any], None], on_drop: Callable[[Any], None]):
        self._process = process
        self._on_drop = on_drop
        self._condition = threading.Condition()
        self._pending: Any = None
        self._running = True
        self._thread = threading.Thread(target=self._run, name="upsnet-inference", daemon=True)
        self._thread.start()

    def submit(self, frame: Any) -> None:
        with self._condition:
            replaced, self._pending = self._pending, frame
            self._condition.notify()
        if replaced is not None:
            self._on_drop(replaced)

    def stop(self, timeout: float | None = None) -> bool:
        """Discard a waiting frame and end the thread once the frame in progress is done;
        wait at most ``timeout`` seconds (None: until it is). Whether the thread ended."""
        with self._condition:
            self._running = False
            self._pending = None
            self._condition.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next(self) -> Any:
        with self._condition:
            while self._running and self._pending is None:
                self._condition.wait()
            frame, self._pending = self._pending, None
            return frame if self._running else None

    def _run(self) -> None:
        while (frame := self._next()) is not None:
            self._process(frame)
