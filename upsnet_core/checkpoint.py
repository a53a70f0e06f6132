"""Checkpoint files: one file with the weights, the config and the class metadata.

Files are read with ``torch.load(..., weights_only=True)``, which refuses arbitrary
pickled objects, so a checkpoint can only carry tensors and plain containers. Writes go
to a temporary file that is renamed into place, so a crash while saving never leaves a
truncated checkpoint behind.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomic
from .config import UPSNetConfig, config_from_dict
from .modeling import PanopticModel, build_model

FORMAT = "upsnet-checkpoint"
FORMAT_VERSION = 1

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "upsnet_mobilenet_synthetic.pt"
"""The default model shipped in the repository (see models/MODEL_CARD.md)."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of another format or does not fit the model."""


def save_checkpoint(path: str | Path, model: nn.Module, config: UPSNetConfig,
                    extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Atomically write ``model``'s weights with ``config`` (categories resolved inline).

    ``extra`` holds plain data (tensors, numbers, strings, lists, dicts) such as
    optimizer state or metrics; it is returned by :func:`read_checkpoint`. ``half``
    stores floating-point weights as float16 (half the file; loading converts them back
    to the model's dtype) for shipping a model, not for resuming training.
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    weights = model.state_dict()
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "config": config.resolved().to_dict(),
               "model": weights, "extra": extra or {}}
    return write_atomic(path, lambda stream: torch.save(payload, stream))


def default_checkpoint() -> Path:
    """Path of the shipped default model; a clear error where it is not installed."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(f"no default model at {DEFAULT_CHECKPOINT} (it ships with the "
                              "repository, not with `pip install .`); pass a checkpoint path")
    return DEFAULT_CHECKPOINT


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, validated: ``config`` (UPSNetConfig), ``model`` (state
    dict) and ``extra``. Raises :class:`CheckpointError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: it is corrupt, truncated, or holds "
                              f"objects other than tensors and plain data ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an UPSNet checkpoint (no '{FORMAT}' format marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {payload.get('format_version')}, "
                              f"this code reads version {FORMAT_VERSION}")
    try:
        config = config_from_dict(payload["config"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{path} holds an invalid config: {error}") from error
    return {"config": config, "model": payload["model"], "extra": payload.get("extra", {})}


def without_backbone_weights(config: UPSNetConfig) -> UPSNetConfig:
    """A copy of ``config`` that builds its backbone without ``model.backbone.weights``:
    a checkpoint's own weights replace them, so a robot needs neither the file nor the
    package that ships it."""
    config = copy.deepcopy(config)
    config.model.backbone.weights = None
    return config


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[PanopticModel, UPSNetConfig]:
    """Build the model (of the architecture its config names) described by a checkpoint and
    load its weights (in eval mode)."""
    contents = read_checkpoint(path, map_location)
    config = contents["config"]
    model = build_model(without_backbone_weights(config))
    try:
        model.load_state_dict(contents["model"])
    except RuntimeError as error:
        raise CheckpointError(f"weights in {path} do not fit the model its config describes: "
                              f"{str(error).splitlines()[0]}") from error
    return model.to(map_location).eval(), config
