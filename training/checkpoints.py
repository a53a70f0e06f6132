"""Checkpoints of a training run: periodic files, ``last.pt``, ``best.pt`` and exact resume.

Layout of the output folder::

    model_0001000.pt   periodic checkpoints (the newest ``keep_last`` are kept)
    last.pt            the newest checkpoint (what ``--resume`` reads)
    best.pt            the checkpoint with the highest validation PQ so far

Every file is complete or absent: :func:`upsnet_core.checkpoint.save_checkpoint` writes a
temporary file and renames it, and ``last.pt``/``best.pt`` are then replaced by a hard
link (or copy) made under a temporary name and renamed in the same way. A crash or
SIGKILL at any moment leaves the previous ``last.pt`` readable.

The training state rides in the checkpoint's ``extra`` (tensors and plain data only):
``iteration``, ``data_position`` (stream position of the next image, see
:mod:`training.sampling`), ``optimizer``, ``scheduler``, ``scaler``, ``rng`` (one entry
per rank), ``world_size``, ``best_pq`` and ``metrics`` (the last evaluation).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from upsnet_core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from upsnet_core.config import UPSNetConfig

from .distributed import DistributedContext
from .rng import capture_rng_state

log = logging.getLogger(__name__)

PERIODIC = re.compile(r"model_(\d{7,})\.pt")
TRAINING_KEYS = ("iteration", "data_position", "optimizer", "scheduler", "scaler", "rng",
                 "world_size")


@dataclass
class Progress:
    """Where a run stands: iterations done, stream position of the next image, the best
    PQ so far and the last evaluation's metrics. ``rng_state`` is this rank's saved
    generator state, for the training loop to restore just before its first step."""

    iteration: int = 0
    data_position: int = 0
    best_pq: Optional[float] = None
    metrics: dict = field(default_factory=dict)
    rng_state: Optional[dict] = None


@dataclass
class Trainables:
    """Everything whose state a checkpoint restores besides the random generators."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


class CheckpointDirectory:
    """The checkpoint files of one output folder (see the module docstring)."""

    def __init__(self, directory: str | Path, keep_last: int):
        self.directory, self.keep_last = Path(directory), keep_last

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best(self) -> Path:
        return self.directory / "best.pt"

    def remove_temporaries(self) -> None:
        """Delete temporary files that an interrupted save left behind."""
        for path in self.directory.glob(".*.pt.*.tmp"):
            path.unlink(missing_ok=True)

    def periodic(self) -> list[Path]:
        """Periodic checkpoint files, oldest first."""
        found = [p for p in self.directory.glob("model_*.pt") if PERIODIC.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(PERIODIC.fullmatch(p.name).group(1)))

    def write(self, model: nn.Module, config: UPSNetConfig, extra: dict, iteration: int,
              is_best: bool) -> Path:
        """Write the checkpoint of ``iteration``, point ``last.pt`` (and ``best.pt`` when
        ``is_best``) at it and drop periodic files beyond ``keep_last``."""
        path = save_checkpoint(self.directory / f"model_{iteration:07d}.pt", model, config, extra)
        _replace_with_link(path, self.last)
        if is_best:
            _replace_with_link(path, self.best)
        periodic = self.periodic()
        for old in periodic[:max(0, len(periodic) - self.keep_last)]:
            old.unlink(missing_ok=True)
        return path


def _replace_with_link(source: Path, destination: Path) -> None:
    """Atomically make ``destination`` a hard link to (or, failing that, a copy of) ``source``."""
    temporary = destination.parent / f".{destination.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    try:
        try:
            os.link(source, temporary)
        except OSError:  # file systems without hard links
            shutil.copyfile(source, temporary)
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(destination.parent)


def _sync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_training_checkpoint(directory: CheckpointDirectory, trainables: Trainables,
                             config: UPSNetConfig, progress: Progress,
                             context: DistributedContext, is_best: bool = False) -> None:
    """Collective: every rank contributes its RNG state, rank 0 writes the files."""
    rng = context.gather(capture_rng_state())
    if context.is_main:
        extra = {"iteration": progress.iteration, "data_position": progress.data_position,
                 "best_pq": progress.best_pq, "metrics": progress.metrics,
                 "optimizer": trainables.optimizer.state_dict(),
                 "scheduler": trainables.scheduler.state_dict(),
                 "scaler": trainables.scaler.state_dict(),
                 "rng": rng, "world_size": context.world_size}
        path = directory.write(trainables.model, config, extra, progress.iteration, is_best)
        log.info("saved %s (iteration %d)", path, progress.iteration)
    context.barrier()


def resume_training(path: Path, trainables: Trainables, config: UPSNetConfig,
                    context: DistributedContext) -> Progress:
    """Restore weights, optimizer, scheduler and scaler from the checkpoint at ``path``;
    returns the run's progress, with this rank's generator state (None when the number of
    processes changed).

    Raises:
        CheckpointError: unreadable file, another model or categories than ``config``,
            or a checkpoint without training state.
    """
    contents = read_checkpoint(path)
    _check_same_model(path, contents["config"], config)
    extra = contents["extra"]
    absent = [k for k in TRAINING_KEYS if k not in extra]
    if absent:
        raise CheckpointError(f"{path} holds no training state (missing {absent}); it can "
                              "initialise a model but not resume a run")
    try:
        trainables.model.load_state_dict(contents["model"])
        trainables.optimizer.load_state_dict(extra["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this model or optimizer: "
                              f"{str(error).splitlines()[0]}") from error
    trainables.scheduler.load_state_dict(extra["scheduler"])
    trainables.scaler.load_state_dict(extra["scaler"])
    return Progress(extra["iteration"], extra["data_position"], extra.get("best_pq"),
                    extra.get("metrics", {}), _rng_state(path, extra, context))


FREE_WHEN_FINE_TUNING = ("model.loss_weights", "model.loss_stride", "model.unknown_fraction",
                         "model.semantic_class_balance", "model.inference")
"""Model keys that set how a network is trained or decides, not which weights it has: a run
that starts from another run's weights (``training.init_weights``) may change them, e.g.
fine-tune the shipped model (whose file stores tuned post-processing) with another loss."""


def initialise_weights(path: Path, model: nn.Module, config: UPSNetConfig) -> None:
    """Load only the weights of the checkpoint at ``path`` into ``model`` (the start of a
    fine-tuning run).

    Raises:
        CheckpointError: unreadable file, or another model or categories than ``config``.
    """
    contents = read_checkpoint(path)
    _check_same_model(path, contents["config"], config, ignored=FREE_WHEN_FINE_TUNING)
    model.load_state_dict(contents["model"])


def _rng_state(path: Path, extra: dict, context: DistributedContext) -> Optional[dict]:
    if extra["world_size"] == context.world_size:
        return extra["rng"][context.rank]
    if context.is_main:
        log.warning("%s was written by %d processes, this run has %d: random generators are "
                    "seeded afresh (data order is unaffected; losses will not replay exactly)",
                    path, extra["world_size"], context.world_size)
    return None


def _check_same_model(path: Path, saved: UPSNetConfig, config: UPSNetConfig,
                      ignored: tuple[str, ...] = ()) -> None:
    """Raise unless the categories and model configs agree, but for the ``ignored`` keys
    (dotted, with everything below them)."""
    saved_values, values = saved.resolved().to_dict(), config.resolved().to_dict()
    differences = [key for section in ("categories", "model")
                   for key in _differences(saved_values[section], values[section], section)
                   if not any(key == i or key.startswith(i + ".") for i in ignored)]
    if differences:
        raise CheckpointError(f"{path} was trained with another model config: it differs at "
                              f"{differences[:10]}; resume with the config it was trained with")


def _differences(a: Any, b: Any, key: str) -> list[str]:
    """Dotted keys at which two nested configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _differences(a.get(k), b.get(k), f"{key}.{k}")]
    return [] if a == b else [key]
