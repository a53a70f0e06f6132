"""Per-stage wall-clock timing of inference, for the benchmark tool."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator

import torch

Timer = Callable[[str], ContextManager]
"""``with timer('stage'):`` measures one stage; :func:`no_timer` measures nothing."""


def no_timer(stage: str) -> ContextManager:
    return nullcontext()


class StageTimer:
    """Collects milliseconds per stage name over repeated runs.

    CUDA work is asynchronous, so the device is synchronised at each stage boundary;
    that costs a little throughput and is only done while benchmarking.
    """

    def __init__(self, device: torch.device):
        self.synchronize = device.type == "cuda"
        self.times: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.times[stage].append((time.perf_counter() - start) * 1000.0)

    def _sync(self) -> None:
        if self.synchronize:
            torch.cuda.synchronize()
