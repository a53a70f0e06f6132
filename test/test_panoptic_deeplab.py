"""Panoptic-DeepLab's centre finding, grouping, voting and training targets on hand-built
inputs whose answers are worked out by hand below."""
from __future__ import annotations

import math

import torch

from upsnet_core.categories import IGNORE_INDEX
from upsnet_core.modeling.center_grouping import (find_centers, group_pixels, majority_vote,
                                                  panoptic_channels)
from upsnet_core.modeling.deeplab_targets import hard_pixel_loss, instance_targets


def test_centers_are_window_maxima_above_threshold_best_first_and_capped():
    heatmap = torch.zeros(5, 7)
    heatmap[1, 1] = 0.9   # a peak
    heatmap[1, 2] = 0.8   # inside the 3x3 window of (1, 1): suppressed
    heatmap[3, 5] = 0.5   # a second peak, 4 columns away
    heatmap[4, 0] = 0.05  # a peak below the threshold 0.1
    cells, scores = find_centers(heatmap, threshold=0.1, kernel=3, top_k=10)
    assert cells.tolist() == [[1, 1], [3, 5]]
    assert torch.allclose(scores, torch.tensor([0.9, 0.5]))
    cells, _ = find_centers(heatmap, threshold=0.1, kernel=3, top_k=1)
    assert cells.tolist() == [[1, 1]]
    # A 9x9 window (half-width 4) around (3, 5) spans columns 1..9 and reaches (1, 1),
    # whose 0.9 suppresses the 0.5 peak.
    cells, _ = find_centers(heatmap, threshold=0.1, kernel=9, top_k=10)
    assert cells.tolist() == [[1, 1]]


def test_thing_pixels_join_the_centre_their_offset_points_nearest_to():
    # Stride 2: cell (r, c) has its centre at ((r + 0.5) * 2, (c + 0.5) * 2) = (2r + 1, 2c + 1).
    # Centres at (1, 1) (cell 0,0) and (1, 7) (cell 0,3). One row of 4 thing cells
    # (x = 1, 3, 5, 7) with offsets chosen by hand:
    #   cell 1 (x=3) offset +4 -> points at x=7: joins centre 1 though it is nearer centre 0;
    #   cell 2 (x=5) offset -4 -> points at x=1: joins centre 0;
    #   cells 0 and 3 offset 0 -> stay with the centre they sit on.
    centers = torch.tensor([[1.0, 1.0], [1.0, 7.0]])
    offsets = torch.zeros(2, 1, 4)
    offsets[1, 0, 1], offsets[1, 0, 2] = 4.0, -4.0
    thing = torch.ones(1, 4, dtype=torch.bool)
    assert group_pixels(centers, offsets, thing, stride=2).tolist() == [[0, 1, 0, 1]]
    # Stuff cells are never grouped; with no centre nothing is.
    thing[0, 3] = False
    assert group_pixels(centers, offsets, thing, stride=2).tolist() == [[0, 1, 0, -1]]
    assert group_pixels(centers[:0], offsets, thing, stride=2).tolist() == [[-1, -1, -1, -1]]


def test_instance_class_is_the_majority_of_its_pixels_semantic_classes():
    # Instance 0 has cells of classes 12, 12, 13 -> 12; instance 1 has 13, 14, 14, 14 -> 14;
    # instance 2 has a tie 13, 12 -> the lower index 12; instance 3 has no cell -> -1.
    instance = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2, -1]])
    semantic = torch.tensor([[12, 12, 13, 13, 14, 14, 14, 13, 12, 5]])
    assert majority_vote(instance, semantic, num_instances=4, num_classes=19).tolist() == [12, 14, 12, -1]


def test_panoptic_channels_put_stuff_instances_and_ungrouped_things_apart():
    # 11 stuff classes, 2 instances: stuff cells keep their class, grouped cells become
    # 11 + k, a thing cell no instance took becomes the void channel 11 + 2 = 13.
    semantic = torch.tensor([[0, 3, 12, 12, 15]])
    instance = torch.tensor([[-1, -1, 0, 1, -1]])
    assert panoptic_channels(semantic, instance, num_stuff=11, num_instances=2).tolist() == [[0, 3, 11, 12, 13]]


def test_instance_targets_heatmap_offsets_and_weights():
    # One 2x2 instance at rows 0-1, columns 2-3 of a 4x6 image, stride 1: its centre of mass
    # is (1.0, 3.0) in pixel-centre coordinates (mean row 0.5 + 0.5, mean column 2.5 + 0.5).
    masks = torch.zeros(1, 4, 6, dtype=torch.uint8)
    masks[0, 0:2, 2:4] = 1
    semantic = torch.zeros(4, 6, dtype=torch.int64)
    semantic[0:2, 2:4] = 12
    semantic[3, 0] = 13            # a thing pixel without instance: crowd
    semantic[3, 5] = IGNORE_INDEX  # unlabelled
    targets = instance_targets(masks, semantic, num_stuff=11, size=(4, 6), stride=1, sigma=1.0,
                               small_area=5, small_weight=3.0)
    # Pixel (0, 2) has its centre at (0.5, 2.5): offset to (1, 3) is (+0.5, +0.5); the
    # heatmap there is exp(-(0.25 + 0.25) / 2).
    assert targets.offsets[:, 0, 2].tolist() == [0.5, 0.5]
    assert targets.offsets[:, 1, 3].tolist() == [-0.5, -0.5]
    assert targets.offsets[:, 3, 3].tolist() == [0.0, 0.0]
    assert math.isclose(float(targets.heatmap[0, 2]), math.exp(-0.25), rel_tol=1e-6)
    assert targets.instance.sum() == 4
    # Area 4 < 5: the instance's pixels weigh 3 in the semantic loss.
    assert targets.pixel_weight[0, 2] == 3.0 and targets.pixel_weight[2, 2] == 1.0
    assert not targets.center_valid[3, 0] and not targets.center_valid[3, 5]
    assert targets.center_valid[0, 0] and targets.center_valid[0, 2]


def test_hard_pixel_loss_averages_only_the_worst_fraction():
    # Four labelled pixels whose cross entropies are ln 2 (two equal logits) for three of
    # them and about 0 for the fourth; with weights 1, 1, 3, 1 and the worst 50 % (2 pixels)
    # the loss is (3 ln 2 + ln 2) / 2 = 2 ln 2.
    logits = torch.zeros(1, 2, 1, 5)
    logits[0, 0, 0, 3] = 50.0  # pixel 3 is confidently class 0 (its label): loss ~0
    semantic = torch.tensor([[[0, 1, 0, 0, IGNORE_INDEX]]])
    weights = torch.tensor([[[1.0, 1.0, 3.0, 1.0, 1.0]]])
    loss = hard_pixel_loss(logits, semantic, weights, fraction=0.5)
    assert math.isclose(float(loss), 2 * math.log(2), rel_tol=1e-6)
