"""Metrics of a run: ``metrics.jsonl`` (one JSON object per line) and TensorBoard scalars.

Each line is ``{"type": "train"|"eval", "iteration": N, ...values}``; ``iteration`` is
the number of optimizer steps done. Values are logged at full precision, so two runs can
be compared exactly. TensorBoard events go to ``DIR/tensorboard``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from torch.utils.tensorboard import SummaryWriter

from upsnet_core.atomic import write_atomic

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to ``directory/metrics.jsonl`` and TensorBoard.

    When resuming from iteration ``start``, records after ``start`` (written by the
    interrupted run after its last checkpoint) are dropped from both, so the files describe
    exactly one history.
    """

    def __init__(self, directory: str | Path, start: int = 0):
        self.path = Path(directory) / METRICS_FILE
        self._drop_after(start)
        self.stream = open(self.path, "a")
        self.writer = SummaryWriter(str(Path(directory) / "tensorboard"), purge_step=start + 1)

    def _drop_after(self, iteration: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _iteration(line) <= iteration]
        if len(kept) != len(lines):
            text = "".join(kept).encode()
            write_atomic(self.path, lambda stream: stream.write(text))

    def log(self, kind: str, iteration: int, values: Mapping[str, float]) -> None:
        """One record; TensorBoard tags are ``<kind>/<name>``."""
        self.stream.write(json.dumps({"type": kind, "iteration": iteration, **values}) + "\n")
        self.stream.flush()
        for name, value in values.items():
            self.writer.add_scalar(f"{kind}/{name}", value, iteration)

    def close(self) -> None:
        self.stream.close()
        self.writer.close()


def _iteration(line: str) -> float:
    """Iteration of a record; infinite for a line cut short by a crash (dropped)."""
    try:
        return json.loads(line)["iteration"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")
