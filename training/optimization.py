"""SGD with the paper's recipe: linear learning-rate scaling, linear warm-up, step decay
(or a cosine decay, for longer runs from ImageNet weights)."""
from __future__ import annotations

import bisect
import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .settings import TrainingSettings


def scaled_lr(settings: TrainingSettings) -> float:
    """``base_lr * images_per_batch / lr_reference_batch`` (linear scaling rule)."""
    return settings.base_lr * settings.images_per_batch / settings.lr_reference_batch


def build_optimizer(model: nn.Module, settings: TrainingSettings) -> torch.optim.SGD:
    """SGD with momentum over the trainable parameters.

    With ``decay_norm_and_bias`` off, 1-d parameters (biases, normalisation weights) form
    a second group without weight decay.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if settings.decay_norm_and_bias:
        groups = [{"params": trainable}]
    else:
        groups = [{"params": [p for p in trainable if p.ndim > 1]},
                  {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=scaled_lr(settings), momentum=settings.momentum,
                           weight_decay=settings.weight_decay)


def lr_factor(iteration: int, settings: TrainingSettings) -> float:
    """Multiplier of the scaled learning rate at ``iteration`` (0-based step index)."""
    if settings.lr_schedule == "cosine":
        done = max(0, iteration - settings.warmup_iters)
        decay = 0.5 * (1 + math.cos(math.pi * min(1.0, done / max(
            1, settings.max_iters - settings.warmup_iters))))
    else:
        decay = settings.lr_gamma ** bisect.bisect_right(settings.lr_steps, iteration)
    if iteration >= settings.warmup_iters:
        return decay
    progress = iteration / settings.warmup_iters
    return decay * (settings.warmup_factor + (1 - settings.warmup_factor) * progress)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> LambdaLR:
    """Per-iteration schedule of :func:`lr_factor` (call ``step()`` after each iteration).

    The factor is a closure over the config, so a resumed run follows the schedule of the
    config it is started with; the scheduler's state holds only its position.
    """
    return LambdaLR(optimizer, lambda iteration: lr_factor(iteration, settings))
