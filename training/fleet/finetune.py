"""Fine-tune step: :mod:`training.train` from the current model on fleet + original data.

The training config is generated from the base checkpoint's own config (its categories and
model, its ``training:`` and ``data:`` sections as the recipe to start from) with the fleet
config's overrides, and:

* ``training.init_weights``: the base checkpoint (weights only; a fresh optimizer);
* ``data.train_mix``: the fleet dataset's labelled split at ``new_data_weight`` and each of
  ``original_data`` at its weight (:mod:`training.mixing`);
* ``data.root``: the fleet dataset and ``data.val_split: null`` (no periodic evaluation;
  the gate evaluates), unless ``finetune.data`` says otherwise.

It is written to ``<work_dir>/finetune.yaml`` and trained into ``<work_dir>/finetune/``
with ``--resume``, so a stopped or requeued job continues where it was. On many processes
or machines, every process runs the same command under ``torchrun`` (see
training/README.md, "Fleet retraining").
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import yaml

from upsnet_core.checkpoint import read_checkpoint
from upsnet_core.config import config_from_dict

from .. import train
from ..settings import data_settings, training_settings
from .files import write_text_atomic
from .settings import FleetSettings


def run_folder(settings: FleetSettings) -> Path:
    """Where the fine-tuning run writes its checkpoints (``last.pt`` is the candidate)."""
    return Path(settings.work_dir) / "finetune"


def config_path(settings: FleetSettings) -> Path:
    return Path(settings.work_dir) / "finetune.yaml"


def finetune_config(settings: FleetSettings) -> dict:
    """The training config of the fine-tuning run, validated (see the module docstring)."""
    base = Path(settings.finetune.base)
    values = read_checkpoint(base)["config"].resolved().to_dict()
    fleet_data = {"root": str(settings.dataset), "split": settings.ingest.split,
                  "weight": settings.finetune.new_data_weight, "kind": "cityscapes"}
    values["training"] = {**values["training"], **settings.finetune.training,
                          "init_weights": str(base.resolve())}
    values["data"] = {**values["data"], "root": str(settings.dataset), "val_split": None,
                      **settings.finetune.data,
                      "train_mix": [fleet_data, *map(asdict, settings.finetune.original_data)]}
    config = config_from_dict(values)
    training_settings(config)
    data_settings(config)
    return values


def write_finetune_config(settings: FleetSettings) -> Path:
    """Write the generated config (atomically: every process of a torchrun job writes the
    same bytes)."""
    text = yaml.safe_dump(finetune_config(settings), sort_keys=False)
    return write_text_atomic(config_path(settings), text)


def finetune(settings: FleetSettings, max_iters: Optional[int] = None) -> int:
    """Generate the config and run :func:`training.train.main` with it; its exit code."""
    path = write_finetune_config(settings)
    args = ["--config", str(path), "--output", str(run_folder(settings)), "--resume"]
    if max_iters is not None:
        args += ["--max-iters", str(max_iters)]
    return train.main(args)
