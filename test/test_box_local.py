"""The box-local evaluations give exactly the dense results.

``PanopticHead.channels`` against ``PanopticHead.forward(...).argmax(0)`` (the dense
panoptic logits the loss uses), and mask pruning / the heuristic merge on box crops
against the same functions on crops that span the whole grid (the dense masks), on
random logits and boxes: overlapping boxes, boxes across the border, empty boxes, no
instance, all-negative stuff logits (where an instance channel's 0 outside its box wins)
and integer logits (ties everywhere).
"""
from __future__ import annotations

import pytest
import torch
from conftest import whole_grid_crops

from upsnet_core.modeling import postprocess as post
from upsnet_core.modeling.panoptic_head import PanopticHead, paste_mask_logits

NUM_STUFF, NUM_THINGS = 3, 3
SIZE = (11, 17)


def random_case(seed: int, stride: int, count: int, ties: bool, negative_stuff: bool):
    """Semantic logits on a ``SIZE`` grid of ``stride`` pixels, ``count`` instances with
    labels, boxes (some across the border, some holding no cell centre) and mask logits."""
    generator = torch.Generator().manual_seed(seed)
    height, width = SIZE[0] * stride, SIZE[1] * stride
    if ties:  # integers, and masks of zeros: equal values between every kind of channel
        logits = torch.randint(-2, 3, (NUM_STUFF + NUM_THINGS, *SIZE), generator=generator).float()
        masks = torch.zeros(count, 28, 28)
    else:
        logits = torch.randn(NUM_STUFF + NUM_THINGS, *SIZE, generator=generator) * 2
        masks = torch.randn(count, 28, 28, generator=generator) * 3
    if negative_stuff:
        logits[:NUM_STUFF] = -logits[:NUM_STUFF].abs() - 0.5
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 1.2 - 8
    extent = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.7
    boxes = torch.cat([corner, corner + extent], 1)
    if count > 1:
        boxes[1, 2:] = boxes[1, :2] + 0.1  # holds no cell centre
    labels = torch.randint(1, NUM_THINGS + 1, (count,), generator=generator)
    return logits, boxes, labels, masks


CASES = [(seed, stride, count, ties, negative)
         for seed, (stride, count, ties, negative) in enumerate(
             [(s, k, t, n) for s in (1, 4) for k in (0, 1, 2, 7) for t in (False, True)
              for n in (False, True)])]


@pytest.mark.parametrize("seed, stride, count, ties, negative_stuff", CASES)
def test_box_local_channels_equal_dense_argmax(seed, stride, count, ties, negative_stuff):
    logits, boxes, labels, masks = random_case(seed, stride, count, ties, negative_stuff)
    head = PanopticHead(NUM_STUFF)
    pasted = paste_mask_logits(masks, boxes, SIZE, stride)
    dense = head(logits, labels, pasted).argmax(dim=0)
    assert torch.equal(head.channels(logits, labels, pasted), dense)
    without_unknown = head(logits, labels, pasted)[:-1].argmax(dim=0)
    assert torch.equal(head.channels(logits, labels, pasted, unknown=False), without_unknown)


def test_the_zero_outside_boxes_and_ties_are_exercised():
    """The cases above reach the delicate parts: an instance channel winning with its
    0 outside its box, and ties between channels."""
    zero_wins, tied = 0, 0
    for seed, stride, count, ties, negative_stuff in CASES:
        logits, boxes, labels, masks = random_case(seed, stride, count, ties, negative_stuff)
        pasted = paste_mask_logits(masks, boxes, SIZE, stride)
        z = PanopticHead(NUM_STUFF)(logits, labels, pasted)
        channel = z.argmax(dim=0)
        inside = pasted.inside(torch.bool)
        instance = (channel - NUM_STUFF).clamp(0, max(count - 1, 0))
        won_by_instance = (channel >= NUM_STUFF) & (channel < NUM_STUFF + count)
        if count:
            outside_own_box = ~inside.gather(0, instance[None])[0]
            zero_wins += int((won_by_instance & outside_own_box).sum())
        tied += int(((z == z.max(dim=0).values).sum(dim=0) > 1).sum())
    assert zero_wins > 0 and tied > 0


@pytest.mark.parametrize("seed, stride, count, ties, negative_stuff",
                         [c for c in CASES if not c[3]])
def test_box_local_pruning_and_heuristic_merge_equal_dense(seed, stride, count, ties, negative_stuff):
    logits, boxes, labels, mask_logits = random_case(seed, stride, count, ties, negative_stuff)
    masks = paste_mask_logits(mask_logits + 1, boxes, SIZE, stride).map(lambda crop: crop > 0)
    dense = whole_grid_crops(masks.dense(torch.bool))
    # same class for all: the overlaps between boxes decide
    for classes in (labels, torch.ones_like(labels)):
        for threshold in (0.0, 0.3):
            assert torch.equal(post.prune_overlapping_masks(masks, classes, threshold),
                               post.prune_overlapping_masks(dense, classes, threshold))
    semantic = logits.argmax(dim=0)
    for threshold in (0.0, 0.3, 1.0):
        assert torch.equal(post.heuristic_channels(masks, semantic, NUM_STUFF, threshold),
                           post.heuristic_channels(dense, semantic, NUM_STUFF, threshold))
