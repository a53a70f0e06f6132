"""The process group: one process per device, started by ``torchrun`` (or alone).

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the run is a
single process. NCCL is used when the processes have GPUs, gloo on CPUs.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
"""Generous: the other ranks wait at a barrier while rank 0 evaluates."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of ``values`` over all processes (a new tensor)."""
        values = values.detach().clone()
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def max(self, value: int) -> int:
        """The largest of the processes' ``value``."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order, on every rank (picklable values)."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def _device(local_rank: int) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"local rank {local_rank} has no GPU: this machine has "
                           f"{torch.cuda.device_count()}; start at most that many processes "
                           "per node (torchrun --nproc_per_node)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def distributed_context() -> Iterator[DistributedContext]:
    """Join the process group described by torchrun's environment (or run alone) and leave
    it on exit."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(local_rank)
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=COLLECTIVE_TIMEOUT)
    try:
        yield DistributedContext(rank, world_size, local_rank, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
