"""HPS's fusion and initial segmentation image on hand-built inputs whose answers are
worked out by hand below."""
from __future__ import annotations

import math

import torch

from upsnet_core.modeling.hps_fusion import (EMPTY_LOGIT, canvas_collection, fused_logits,
                                             initial_segmentation_image, merge_canvases,
                                             soft_argmax)


def test_soft_argmax_gives_the_one_based_index_of_the_largest_logit():
    # beta 100 squashes softmax to one-hot: row 0 -> class 2 (logit 5), row 1 -> class 3.
    logits = torch.tensor([[1.0, 5.0, 2.0], [0.0, 0.1, 0.3]])
    assert soft_argmax(logits, beta=100.0).tolist() == [2, 3]
    # A near tie at beta 1 rounds no weight to 1 (0.5 / 0.5 / ~0): the argmax decides (1).
    assert soft_argmax(torch.tensor([[3.0, 3.0, -10.0]]), beta=1.0).tolist() == [1]


def test_canvas_holds_the_pasted_logits_inside_the_box_and_is_empty_outside():
    # A constant 2.0 mask in the box x 2..6, y 0..4 on a 4x8 stride-1 grid.
    canvases = canvas_collection(torch.full((1, 28, 28), 2.0), torch.tensor([[2.0, 0.0, 6.0, 4.0]]),
                                 (4, 8), stride=1)
    assert torch.allclose(canvases[0, :, 2:6], torch.tensor(2.0))
    assert (canvases[0, :, :2] == EMPTY_LOGIT).all() and (canvases[0, :, 6:] == EMPTY_LOGIT).all()


def test_fusion_argmax_gives_instances_their_box_and_stuff_the_rest():
    # Stuff logits: class 0 everywhere at 1.0, class 1 at 3.0 in column 0. One instance with
    # mask logit 2.0 in columns 2..5: it beats stuff 1.0 there (channel 2 = 2 stuff + 0);
    # column 0 is stuff 1 and columns 1, 6, 7 stuff 0.
    stuff = torch.ones(2, 1, 8)
    stuff[0] = 1.0
    stuff[1] = 0.0
    stuff[1, 0, 0] = 3.0
    canvases = canvas_collection(torch.full((1, 28, 28), 2.0), torch.tensor([[2.0, 0.0, 6.0, 1.0]]),
                                 (1, 8), stride=1)
    channels = fused_logits(stuff, canvases).argmax(dim=0)
    assert channels.tolist() == [[1, 0, 2, 2, 2, 2, 0, 0]]


def test_same_class_canvases_with_high_mask_iou_merge_into_the_better_one():
    # Canvases on a 1x6 grid, best first. 0 (class 1) covers columns 0-3; 1 (class 1) covers
    # columns 1-3: IoU 3/4 > 0.5 -> merged into 0 by the cell-wise maximum. 2 (class 2) has
    # the same mask as 1 but another class -> kept. 3 (class 1) covers columns 4-5: IoU 0.
    canvases = torch.full((4, 1, 6), -1.0)
    canvases[0, 0, 0:4] = 1.0
    canvases[1, 0, 1:4] = 5.0
    canvases[2, 0, 1:4] = 4.0
    canvases[3, 0, 4:6] = 2.0
    merged, keep = merge_canvases(canvases, torch.tensor([1, 1, 2, 1]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3]
    assert merged[0, 0].tolist() == [1.0, 5.0, 5.0, 5.0, -1.0, -1.0]
    assert torch.equal(merged[1], canvases[2]) and torch.equal(merged[2], canvases[3])


def test_initial_segmentation_image_is_the_score_weighted_average_per_class():
    # 3 thing classes on a 1x4 grid (stride 1). Two class-1 instances with mask logit 0
    # (probability 0.5) in columns 0-1 (score 0.9) and logit +inf-like (probability 1) in
    # columns 1-2 (score 0.3): column 0 -> 0.5 (only the first covers it), column 1 ->
    # (0.9 * 0.5 + 0.3 * 1) / (0.9 + 0.3) = 0.625, column 2 -> 1, column 3 -> 0 (no box).
    # Class 2 has no instance: an empty layer. One class-3 instance, logit -inf-like, column 3.
    mask_logits = torch.stack([torch.zeros(28, 28), torch.full((28, 28), 30.0),
                               torch.full((28, 28), -30.0)])
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0], [3.0, 0.0, 4.0, 1.0]])
    isi = initial_segmentation_image(mask_logits, boxes, torch.tensor([1, 1, 3]),
                                     torch.tensor([0.9, 0.3, 0.8]), num_things=3, size=(1, 4),
                                     stride=1)
    assert isi.shape == (3, 1, 4)
    expected = [0.5, (0.9 * 0.5 + 0.3 * 1.0) / 1.2, 1.0, 0.0]
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(isi[0, 0].tolist(), expected))
    assert (isi[1] == 0).all()
    assert torch.allclose(isi[2, 0], torch.tensor([0.0, 0.0, 0.0, 0.0]), atol=1e-6)
