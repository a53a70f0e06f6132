"""Known answers of the semantic (mIoU) and instance (mask AP) metrics."""
import math

import numpy as np
import pytest
import torch

from upsnet_core.categories import CategorySet
from upsnet_core.data import build_dataset
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.evaluation import InstanceEvaluator, SemanticEvaluator, confusion_matrix

CATEGORIES = CategorySet.preset("cityscapes")
CAR = CATEGORIES.thing_label(26)


def test_confusion_matrix_and_miou():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 2]])
    expected = np.zeros((4, 4), int)
    for t, p in ((0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0)):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, target, 4), expected)
    evaluator = SemanticEvaluator(4, class_names=["a", "b", "c", "d"])
    evaluator.update(pred, target)
    evaluator.update(pred, target)  # accumulates; ratios unchanged
    results = evaluator.summarize()
    assert results["per_class_iou"]["a"] == pytest.approx(1 / 3)
    assert results["per_class_iou"]["b"] == pytest.approx(2 / 3)
    assert results["per_class_iou"]["c"] == pytest.approx(1 / 2)
    assert math.isnan(results["per_class_iou"]["d"])  # absent class: left out of the mean
    assert results["miou"] == pytest.approx(0.5)
    assert results["pixel_accuracy"] == pytest.approx(4 / 6)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 4)
    with pytest.raises(ValueError, match="pixels"):
        confusion_matrix(np.array([0, 1, 2]), np.array([0, 1]), 4)
    assert SemanticEvaluator(3).summarize()["miou"] == 0.0


def square(y, x, h, w, size=32):
    mask = np.zeros((1, size, size), np.uint8)
    mask[0, y:y + h, x:x + w] = 1
    return mask


def average_precision(gt, preds, crowd=None):
    """AP of one image: ``preds`` = [(mask, score)] all of class car."""
    evaluator = InstanceEvaluator(CATEGORIES)
    masks = np.concatenate([m for m, _ in preds]) if preds else np.zeros((0, 32, 32), np.uint8)
    evaluator.update(gt, [CAR], masks, [s for _, s in preds], [CAR] * len(preds),
                     None if crowd is None else crowd, None if crowd is None else [CAR])
    return evaluator.summarize()


def test_mask_ap_known_answers():
    gt = square(2, 2, 10, 10)
    perfect = average_precision(gt, [(gt, 0.9)])
    assert (perfect["AP"], perfect["AP50"], perfect["AP75"]) == pytest.approx((1.0, 1.0, 1.0))
    assert perfect["per_class"][26] == pytest.approx(1.0) and perfect["per_class"][24] == -1.0
    partial = average_precision(gt, [(square(2, 2, 9, 8), 0.9)])  # IoU 0.72: 5 of 10 thresholds
    assert (partial["AP"], partial["AP50"], partial["AP75"]) == pytest.approx((0.5, 1.0, 0.0))
    false_positive = square(20, 20, 8, 8)
    assert average_precision(gt, [(gt, 0.8), (false_positive, 0.9)])["AP"] == pytest.approx(0.5)
    assert average_precision(gt, [(gt, 0.9), (false_positive, 0.8)])["AP"] == pytest.approx(1.0)
    crowd = square(18, 18, 12, 12)  # the false positive lies on a crowd region: ignored
    assert average_precision(gt, [(gt, 0.8), (false_positive, 0.9)], crowd)["AP"] == (
        pytest.approx(1.0))
    assert average_precision(gt, [])["AP"] == 0.0


def test_mask_ap_from_dataset_targets(tmp_path):
    generate_dataset(tmp_path, "val", 2, seed=1, height=96, width=192)
    evaluator = InstanceEvaluator(CATEGORIES)
    crowded = 0
    for _, target in build_dataset("cityscapes", tmp_path, "val", CATEGORIES):
        crowded += any(s["iscrowd"] for s in target["segments_info"])
        evaluator.update_from_target(target, target["masks"], torch.ones(len(target["labels"])),
                                     target["labels"])
    assert crowded > 0
    assert evaluator.summarize()["AP"] == pytest.approx(1.0)
