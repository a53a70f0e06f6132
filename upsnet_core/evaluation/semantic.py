"""Semantic segmentation metrics (mean IoU) through a confusion matrix."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..categories import IGNORE_INDEX

ArrayLike = np.ndarray | torch.Tensor


def confusion_matrix(pred: ArrayLike, target: ArrayLike, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts, rows = target class, cols = predicted.

    Args:
        pred, target: integer maps of the same shape (any number of dimensions); pixels whose
            target is ``ignore_index`` are left out.
    Raises:
        ValueError: shapes differ, or a class outside ``0 .. num_classes - 1`` is found.
    """
    pred, target = _numpy(pred).ravel(), _numpy(target).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"prediction has {pred.size} pixels but target has {target.size}")
    keep = target != ignore_index
    pred, target = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    for name, values in (("target", target), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} has class {values.min()} .. {values.max()} outside "
                             f"0 .. {num_classes - 1} (ignore index {ignore_index})")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _numpy(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


class SemanticEvaluator:
    """Accumulates a confusion matrix; :meth:`summarize` gives IoU per class and mIoU."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 class_names: Optional[Sequence[str]] = None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names is not None else [
            str(i) for i in range(num_classes)]
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add ``pred`` and ``target`` integer maps (same shape, e.g. ``(H, W)``)."""
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def summarize(self) -> dict:
        """``{"miou", "pixel_accuracy", "per_class_iou": {name: iou}}``.

        A class with no target and no predicted pixel has IoU NaN in ``per_class_iou`` and is
        left out of ``miou`` (as Cityscapes' evaluation does).
        """
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - tp
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        total = self.confusion.sum()
        return {"miou": float(np.nanmean(iou)) if (union > 0).any() else 0.0,
                "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
                "per_class_iou": {name: float(v) for name, v in zip(self.class_names, iou)}}
