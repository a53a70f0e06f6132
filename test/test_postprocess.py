"""Known-answer tests of mask pruning, class assignment and the label image."""
from __future__ import annotations

import torch
from conftest import whole_grid_crops
from hypothesis import given, settings
from hypothesis import strategies as st

from upsnet_core.categories import CategorySet
from upsnet_core.modeling import postprocess as post


def _mask(cells: list[tuple[int, int]], size=(4, 4)) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    for r, c in cells:
        mask[r, c] = True
    return mask


def test_prune_detections_is_class_agnostic_and_strict_on_score():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50.]])
    scores = torch.tensor([0.9, 0.8, 0.6, 0.7])
    keep = post.prune_detections(boxes, scores, nms_iou=0.5, score_threshold=0.6)
    # box 1 overlaps box 0 (IoU 0.81) whatever its class; 0.6 is not > 0.6
    assert keep.tolist() == [0, 3]


def test_mask_pruning_drops_masks_overlapping_more_than_threshold():
    first = _mask([(0, 0), (0, 1), (1, 0), (1, 1)])
    overlaps_one_of_three = _mask([(1, 1), (2, 1), (2, 2)])        # 1/3 > 0.3: dropped
    overlaps_one_of_four = _mask([(1, 0), (3, 0), (3, 1), (3, 2)])  # 1/4 <= 0.3: kept
    masks = torch.stack([first, overlaps_one_of_three, overlaps_one_of_four])
    keep = post.prune_overlapping_masks(whole_grid_crops(masks), torch.tensor([1, 1, 1]), 0.3)
    assert keep.tolist() == [True, False, True]


def test_mask_pruning_uses_one_canvas_per_class_and_drops_empty_masks():
    first = _mask([(0, 0), (0, 1)])
    same_pixels_other_class = _mask([(0, 0), (0, 1)])
    empty = _mask([])
    masks = torch.stack([first, same_pixels_other_class, empty])
    keep = post.prune_overlapping_masks(whole_grid_crops(masks), torch.tensor([1, 2, 1]), 0.3)
    assert keep.tolist() == [True, True, False]


def test_mask_pruning_counts_overlap_with_all_pasted_masks():
    # Each earlier mask alone overlaps the last one by 1/4; together by 2/4 > 0.3.
    a, b = _mask([(0, 0)]), _mask([(0, 1)])
    last = _mask([(0, 0), (0, 1), (1, 0), (1, 1)])
    masks = whole_grid_crops(torch.stack([a, b, last]))
    keep = post.prune_overlapping_masks(masks, torch.tensor([1, 1, 1]), 0.3)
    assert keep.tolist() == [True, True, False]


NUM_STUFF, NUM_CLASSES = 2, 4  # semantic indices: stuff 0, 1; things 2 (label 1), 3 (label 2)


def test_class_assignment_keeps_instance_class_when_consistent():
    channels = torch.tensor([[2, 2], [2, 2]])  # all pixels won by instance 0
    semantic = torch.tensor([[2, 2], [2, 0]])
    classes = post.assign_instance_classes(channels, semantic, torch.tensor([1]), NUM_STUFF, NUM_CLASSES)
    assert classes.tolist() == [2]


def test_class_assignment_takes_stuff_majority_over_half():
    channels = torch.tensor([[2, 2], [2, 2]])
    semantic = torch.tensor([[1, 1], [1, 3]])  # stuff 1 on 3/4 of the pixels
    classes = post.assign_instance_classes(channels, semantic, torch.tensor([1]), NUM_STUFF, NUM_CLASSES)
    assert classes.tolist() == [1]


def test_class_assignment_needs_more_than_half_and_a_stuff_mode():
    channels = torch.tensor([[2, 2], [2, 2], [3, 3], [3, 3]])
    semantic = torch.tensor([[1, 1], [3, 2],    # instance 0: stuff 1 on exactly 1/2: keeps thing
                             [3, 3], [3, 2]])   # instance 1: thing 3 majority: keeps its own class
    classes = post.assign_instance_classes(channels, semantic, torch.tensor([1, 1]), NUM_STUFF, NUM_CLASSES)
    assert classes.tolist() == [2, 2]


def test_channel_ids_number_instances_per_category_and_skip_absent():
    categories = CategorySet.preset("cityscapes")  # 11 stuff; person = index 11, car = 13
    classes = torch.tensor([13, 11, 13, 13, 0])  # car, person, car (absent), car, became road
    present = torch.tensor([True, True, False, True, True])
    ids = post.channel_ids(categories, classes, present)
    assert ids[:11].tolist() == [c.id * 1000 for c in categories.stuff]
    assert ids[11:].tolist() == [26001, 24001, 0, 26002, 7000, 0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 40), st.integers(1, 40), st.integers(0, 10_000))
def test_segment_stats_equal_the_rendered_image(h, w, out_h, out_w, seed):
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, 4, (h, w), generator=generator) * 1000
    input_h, input_w = h * 4 - int(torch.randint(0, 4, (), generator=generator)), w * 4
    rows = post.output_index(out_h, input_h, 4, cells.device)
    cols = post.output_index(out_w, input_w, 4, cells.device)
    stats = post.segment_stats(cells, rows, cols)
    image, _ = post.render(cells, rows, cols)
    present = sorted(set(image.unique().tolist()) - {0})
    assert stats.ids.tolist() == present
    for index, segment in enumerate(present):
        ys, xs = (image == segment).nonzero(as_tuple=True)
        assert int(stats.area[index]) == len(ys)
        assert stats.box[index].tolist() == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert torch.allclose(stats.centroid[index], torch.stack([xs.double().mean(), ys.double().mean()]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 50), st.integers(1, 50),
       st.sampled_from([1, 2, 4]), st.integers(0, 10_000))
def test_lookup_equals_indexing(h, w, out_h, out_w, stride, seed):
    """Up- and downsampling, whole and fractional ratios: the repeats are the indexing."""
    cells = torch.randint(0, 30_000, (h, w), generator=torch.Generator().manual_seed(seed),
                          dtype=torch.int32)
    rows = post.output_index(out_h, h * stride, stride, cells.device)
    cols = post.output_index(out_w, w * stride, stride, cells.device)
    assert torch.equal(post.lookup(cells, rows, cols), cells[rows][:, cols])


def test_small_stuff_segments_become_void():
    cells = torch.tensor([[7000, 7000, 8000], [24001, 7000, 7000]])
    rows, cols = torch.arange(2), torch.arange(3)
    stats = post.segment_stats(cells, rows, cols)
    cells, stats = post.void_small_stuff(cells, stats, min_area=2)
    assert cells.tolist() == [[7000, 7000, 0], [24001, 7000, 7000]]  # thing of area 1 stays
    assert stats.ids.tolist() == [7000, 24001]


def test_stuff_area_threshold_scales_with_image_area():
    from upsnet_core.config import InferenceConfig
    config = InferenceConfig(stuff_area=2048, stuff_area_reference=[1024, 2048])
    assert post.stuff_area_threshold(config, (1024, 2048)) == 2048
    assert post.stuff_area_threshold(config, (512, 1024)) == 512


def test_heuristic_merge_pastes_by_score_and_fills_stuff():
    # semantic: stuff 0 left, thing index 2 right; instance 0 covers the right half,
    # instance 1 overlaps it by 2 of 4 cells (> 0.3): dropped; instance 2 barely overlaps.
    semantic = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 2]])
    first = _mask([(0, 2), (0, 3), (1, 2), (1, 3)], (2, 4))
    second = _mask([(0, 1), (0, 2), (1, 1), (1, 2)], (2, 4))
    third = _mask([(0, 0), (1, 0), (0, 1), (0, 3)], (2, 4))  # 1 of 4 cells taken: pasted
    masks = whole_grid_crops(torch.stack([first, second, third]))
    channels = post.heuristic_channels(masks, semantic, NUM_STUFF, 0.3)
    assert channels.tolist() == [[NUM_STUFF + 2, NUM_STUFF + 2, NUM_STUFF, NUM_STUFF],
                                 [NUM_STUFF + 2, 0, NUM_STUFF, NUM_STUFF]]
