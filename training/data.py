"""Datasets and loaders of a training run, built from the ``data:`` settings.

The checks here turn the usual set-up mistakes into messages that say what is wrong: a
missing data folder, or a dataset whose classes differ from the config's.
"""
from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from upsnet_core.categories import CategorySet
from upsnet_core.data import PanopticDataset, build_dataset, collate_panoptic
from upsnet_core.data.panoptic_dataset import Transform
from upsnet_core.data.transforms import (Compose, RandomCrop, RandomHorizontalFlip,
                                         RandomScale, RandomShortSide)

from .distributed import DistributedContext
from .mixing import MixedDataset
from .sampling import PositionSeededDataset, StreamBatchSampler
from .settings import DataSettings, TrainingSettings


class DatasetMismatchError(ValueError):
    """The dataset's classes are not the ones the config describes."""


def load_split(settings: DataSettings, split: str, categories: CategorySet,
               transforms: Optional[Transform] = None,
               root: Optional[str | Path] = None) -> PanopticDataset:
    """Split ``split`` of the dataset at ``root`` (default ``settings.root``), checked
    against ``categories`` (see :func:`check_categories`)."""
    root = root if root is not None else settings.root
    if root is None:
        raise ValueError("no dataset folder: set data.root in the config")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist (data.root / --data)")
    dataset = build_dataset(settings.kind, root, split, categories, transforms)
    check_categories(dataset, categories, settings.unlisted_classes)
    return dataset


def check_categories(dataset: PanopticDataset, categories: CategorySet, unlisted: str) -> None:
    """Raise :class:`DatasetMismatchError` naming the ids when the config's classes are
    not all in the dataset, or (``unlisted == "error"``) the dataset has classes the
    config lacks."""
    in_data = set(dataset.file_category_ids)
    in_config = set(categories.category_ids())
    missing = sorted(in_config - in_data)
    extra = sorted(in_data - in_config) if unlisted == "error" else []
    if missing or extra:
        parts = []
        if missing:
            names = [categories.by_id(i).name for i in missing]
            parts.append(f"config classes missing from the dataset: ids {missing} ({names})")
        if extra:
            parts.append(f"dataset classes not in the config: ids {extra} (set "
                         "data.unlisted_classes: void to train without them)")
        raise DatasetMismatchError(f"{dataset.source} does not match the config's categories: "
                                   + "; ".join(parts))


def training_set(settings: DataSettings, categories: CategorySet,
                 transforms: Optional[Transform] = None) -> PanopticDataset | MixedDataset:
    """The training split, or the mix of ``data.train_mix`` when it is set (each source
    checked like :func:`load_split`)."""
    if settings.train_mix is None:
        return load_split(settings, settings.train_split, categories, transforms)
    sources = [load_split(replace(settings, kind=source.kind or settings.kind), source.split,
                          categories, transforms, root=source.root)
               for source in settings.train_mix]
    return MixedDataset(sources, [source.weight for source in settings.train_mix])


def training_transforms(settings: DataSettings, generator: torch.Generator) -> Compose:
    """Scale jitter, random crop and horizontal flip, all drawing from ``generator``."""
    steps: list[Transform] = []
    if settings.train_scale is not None:
        steps.append(RandomScale(*settings.train_scale, generator=generator))
    if settings.train_short_side is not None:
        steps.append(RandomShortSide(settings.train_short_side, settings.max_size, generator))
    if settings.crop is not None:
        steps.append(RandomCrop(*settings.crop, generator=generator))
    if settings.flip_prob > 0:
        steps.append(RandomHorizontalFlip(settings.flip_prob, generator))
    return Compose(steps)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops cleanly
    and shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def training_loader(data: DataSettings, training: TrainingSettings, categories: CategorySet,
                    context: DistributedContext, start_position: int,
                    iterations: int) -> DataLoader:
    """Batches ``(images, targets)`` of this rank for ``iterations`` iterations, starting at
    stream position ``start_position`` (see :mod:`training.sampling`)."""
    generator = torch.Generator()
    dataset = training_set(data, categories, training_transforms(data, generator))
    sampler = StreamBatchSampler(len(dataset), training.images_per_batch, context.rank,
                                 context.world_size, training.seed, start_position, iterations)
    return DataLoader(PositionSeededDataset(dataset, generator, training.seed),
                      batch_sampler=sampler, collate_fn=collate_panoptic,
                      num_workers=data.num_workers, worker_init_fn=_ignore_stop_signals,
                      pin_memory=context.device.type == "cuda",
                      # the loader's own seed draw must not consume the global generator
                      generator=torch.Generator().manual_seed(training.seed))
