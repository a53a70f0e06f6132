"""The ``training:`` and ``data:`` sections of a config, typed and validated.

:class:`upsnet_core.config.UPSNetConfig` keeps both sections as plain mappings; the
training pipeline owns their schema. Every key has a default except ``data.root`` (needed
to train), unknown keys are errors, and every error names the offending key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from upsnet_core.config import UPSNetConfig, build_section
from upsnet_core.data import DATASET_KINDS


LR_SCHEDULES = ("step", "cosine")


@dataclass
class TrainingSettings:
    """SGD recipe, schedule and bookkeeping periods (iterations count optimizer steps)."""

    base_lr: float = 0.02
    """Learning rate for ``lr_reference_batch`` images; scaled linearly with the global batch."""
    lr_reference_batch: int = 16
    momentum: float = 0.9
    weight_decay: float = 0.0001
    decay_norm_and_bias: bool = True
    """False: no weight decay on biases and normalisation weights (1-d parameters)."""
    images_per_batch: int = 16
    """Global batch: summed over all processes (each process gets an equal share)."""
    max_iters: int = 90000
    lr_schedule: str = "step"
    """After the warm-up: ``step`` (the paper's: x ``lr_gamma`` at each of ``lr_steps``) or
    ``cosine`` (half a cosine from 1 at the end of the warm-up to 0 at ``max_iters``)."""
    lr_steps: list[int] = field(default_factory=list)
    """Iterations at which the learning rate is multiplied by ``lr_gamma`` (``step``)."""
    lr_gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    """Learning-rate fraction at iteration 0; rises linearly to 1 at ``warmup_iters``."""
    clip_grad_norm: Optional[float] = None
    """Maximum global L2 norm of the gradients; null: no clipping."""
    init_weights: Optional[str] = None
    """Checkpoint whose weights start a new run (fine-tuning; not its optimizer state). Its
    model and categories must be the config's. A resumed run continues from ``last.pt``."""
    amp: bool = True
    """Mixed precision (float16 autocast + gradient scaling) on GPUs; never on the CPU."""
    seed: int = 0
    log_period: int = 20
    checkpoint_period: int = 1000
    eval_period: int = 1000
    """Evaluate on ``data.val_split`` every this many iterations (0: only at the end)."""
    keep_last: int = 3
    """Periodic checkpoints kept besides ``last.pt`` and ``best.pt``."""


@dataclass
class MixSource:
    """One dataset of ``data.train_mix``."""

    root: Optional[str] = None
    """Dataset folder (required)."""
    weight: float = 1.0
    """Share of the training stream, relative to the other sources' weights."""
    split: str = "train"
    kind: Optional[str] = None
    """Dataset kind; null: ``data.kind``."""


@dataclass
class DataSettings:
    """Dataset location, splits and augmentation."""

    kind: str = "cityscapes"
    """``cityscapes``, ``synthetic`` (Cityscapes layout) or ``coco``."""
    root: Optional[str] = None
    """Dataset folder (relative paths are taken from the working directory)."""
    train_split: str = "train"
    train_mix: Optional[list[MixSource]] = None
    """Train on these datasets at the proportions of their weights (:mod:`training.mixing`)
    instead of ``root``/``train_split``; validation still reads ``root``/``val_split``."""
    val_split: Optional[str] = "val"
    """Split for periodic evaluation; null: no evaluation during training."""
    max_val_images: Optional[int] = None
    """Evaluate during training on the first N validation images only."""
    num_workers: int = 2
    train_scale: Optional[list[float]] = None
    """Scale jitter ``[min, max]``: resize by a factor drawn uniformly from the range."""
    train_short_side: Optional[list[int]] = None
    """Scale jitter: short side drawn from this list (long side at most ``max_size``)."""
    max_size: Optional[int] = None
    crop: Optional[list[int]] = None
    """Random crop ``[height, width]`` after scaling; null: no crop."""
    flip_prob: float = 0.5
    test_scale: Optional[float] = None
    """Evaluation: resize the image by this factor (results are mapped back to full size)."""
    test_short_side: Optional[int] = None
    """Evaluation: resize so that the short side is this (long side at most ``max_size``)."""
    unlisted_classes: str = "error"
    """``error``: the dataset's classes must equal the config's; ``void``: dataset classes
    absent from the config are treated as void (training on a subset of classes)."""


def training_settings(config: UPSNetConfig) -> TrainingSettings:
    """The validated ``training:`` section of ``config``."""
    settings = build_section(TrainingSettings, config.training, "training")
    _check_training(settings)
    return settings


def data_settings(config: UPSNetConfig) -> DataSettings:
    """The validated ``data:`` section of ``config``."""
    settings = build_section(DataSettings, config.data, "data")
    _check_data(settings)
    return settings


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"config key '{key}' {message}")


def _check_training(s: TrainingSettings) -> None:
    _require(s.base_lr > 0, "training.base_lr", "must be > 0")
    _require(s.lr_reference_batch > 0, "training.lr_reference_batch", "must be > 0")
    _require(s.images_per_batch > 0, "training.images_per_batch", "must be > 0")
    _require(s.max_iters > 0, "training.max_iters", "must be > 0")
    _require(s.lr_schedule in LR_SCHEDULES, "training.lr_schedule",
             f"must be one of {list(LR_SCHEDULES)}, got {s.lr_schedule!r}")
    _require(s.lr_schedule == "step" or not s.lr_steps, "training.lr_steps",
             "only applies to lr_schedule: step")
    _require(s.lr_steps == sorted(s.lr_steps) and all(v > 0 for v in s.lr_steps),
             "training.lr_steps", f"must be increasing positive iterations, got {s.lr_steps}")
    _require(s.warmup_iters >= 0, "training.warmup_iters", "must be >= 0")
    _require(0 < s.warmup_factor <= 1, "training.warmup_factor", "must be in (0, 1]")
    _require(s.clip_grad_norm is None or s.clip_grad_norm > 0, "training.clip_grad_norm",
             "must be > 0 or null")
    for name in ("log_period", "checkpoint_period"):
        _require(getattr(s, name) > 0, f"training.{name}", "must be > 0")
    _require(s.eval_period >= 0, "training.eval_period", "must be >= 0 (0: only at the end)")
    _require(s.keep_last >= 0, "training.keep_last", "must be >= 0")


def _check_data(s: DataSettings) -> None:
    _require(s.kind in DATASET_KINDS, "data.kind",
             f"must be one of {sorted(DATASET_KINDS)}, got {s.kind!r}")
    _require(s.train_scale is None or s.train_short_side is None, "data.train_scale",
             "and data.train_short_side are alternatives; set at most one")
    _require(s.train_scale is None or (len(s.train_scale) == 2
                                       and 0 < s.train_scale[0] <= s.train_scale[1]),
             "data.train_scale", f"must be [min, max] with 0 < min <= max, got {s.train_scale}")
    _require(s.train_short_side is None or (s.train_short_side and min(s.train_short_side) > 0),
             "data.train_short_side", "must be a non-empty list of positive sizes")
    _require(s.crop is None or (len(s.crop) == 2 and min(s.crop) > 0), "data.crop",
             f"must be [height, width], got {s.crop}")
    _require(0 <= s.flip_prob <= 1, "data.flip_prob", "must be in [0, 1]")
    _require(s.test_scale is None or s.test_short_side is None, "data.test_scale",
             "and data.test_short_side are alternatives; set at most one")
    _require(s.test_scale is None or s.test_scale > 0, "data.test_scale", "must be > 0")
    _require(s.test_short_side is None or s.test_short_side > 0, "data.test_short_side",
             "must be > 0")
    _require(s.max_size is None or s.max_size > 0, "data.max_size", "must be > 0")
    _require(s.max_val_images is None or s.max_val_images > 0, "data.max_val_images",
             "must be > 0")
    _require(s.num_workers >= 0, "data.num_workers", "must be >= 0")
    for i, source in enumerate(s.train_mix or []):
        _require(source.root is not None, f"data.train_mix[{i}].root", "must be set")
        _require(source.weight > 0, f"data.train_mix[{i}].weight", "must be > 0")
        _require(source.kind is None or source.kind in DATASET_KINDS,
                 f"data.train_mix[{i}].kind", f"must be one of {sorted(DATASET_KINDS)}")
    _require(s.train_mix is None or len(s.train_mix) > 0, "data.train_mix",
             "must list at least one dataset, or be null")
    _require(s.unlisted_classes in ("error", "void"), "data.unlisted_classes",
             f"must be 'error' or 'void', got {s.unlisted_classes!r}")
