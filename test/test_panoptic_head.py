"""Known-answer tests of the parameter-free panoptic head on hand-made logits."""
from __future__ import annotations

import torch

from upsnet_core.modeling.box_local import box_cells
from upsnet_core.modeling.panoptic_head import PanopticHead, paste_mask_logits

STRIDE = 4
NUM_STUFF = 2  # channels: stuff0, stuff1, thing1, thing2


def _logits(values: dict[int, torch.Tensor], size=(4, 6)) -> torch.Tensor:
    logits = torch.zeros(4, *size)
    for channel, value in values.items():
        logits[channel] = value
    return logits


def test_stuff_only_gives_stuff_and_unknown_channels():
    logits = _logits({0: torch.tensor(1.0), 1: torch.tensor(2.0), 2: torch.tensor(5.0), 3: torch.tensor(3.0)})
    none = paste_mask_logits(torch.zeros(0, 28, 28), torch.zeros(0, 4), (4, 6), STRIDE)
    z = PanopticHead(NUM_STUFF)(logits, torch.zeros(0, dtype=torch.long), none)
    assert z.shape == (NUM_STUFF + 1, 4, 6)
    assert torch.equal(z[:2], logits[:2])
    # unknown = max(X_thing) - max(X_mask) with no instance = 5 - 0
    assert torch.allclose(z[2], torch.full((4, 6), 5.0))


def test_one_box_takes_thing_logits_inside_and_zero_outside():
    logits = _logits({0: torch.tensor(0.5), 2: torch.tensor(3.0), 3: torch.tensor(1.0)})
    box = torch.tensor([[4.0, 0.0, 12.0, 8.0]])  # cells with centres x in {6, 10}, y in {2, 6}
    pasted = paste_mask_logits(torch.full((1, 28, 28), 2.0), box, (4, 6), STRIDE)
    z = PanopticHead(NUM_STUFF)(logits, torch.tensor([1]), pasted)
    inside = torch.zeros(4, 6, dtype=torch.bool)
    inside[0:2, 1:3] = True
    assert torch.allclose(z[2][inside], torch.tensor(5.0))  # X_thing1 + Y = 3 + 2
    assert (z[2][~inside] == 0).all()
    # unknown = max(X_thing) - max(X_mask): 3 - 3 inside the box, 3 - 0 outside
    assert torch.allclose(z[3][inside], torch.tensor(0.0))
    assert torch.allclose(z[3][~inside], torch.tensor(3.0))
    channel = z.argmax(0)
    assert (channel[inside] == 2).all() and (channel[~inside] == 3).all()


def _two_overlapping_instances():
    """Thing 2 is strong everywhere; instance 1 (thing 1, mask +1) covers columns 0..3,
    instance 2 (thing 2, mask -1) columns 2..5."""
    logits = _logits({0: torch.tensor(-5.0), 2: torch.tensor(1.0), 3: torch.tensor(4.0)})
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 0.0, 24.0, 16.0]])
    mask = torch.stack([torch.full((28, 28), 1.0), torch.full((28, 28), -1.0)])
    pasted = paste_mask_logits(mask, boxes, (4, 6), STRIDE)
    return PanopticHead(NUM_STUFF)(logits, torch.tensor([1, 2]), pasted)


def test_overlapping_boxes_pixel_goes_to_higher_sum():
    z = _two_overlapping_instances()
    # overlap (columns 2..3): instance 1 scores 1 + 1 = 2, instance 2 scores 4 - 1 = 3
    assert torch.allclose(z[NUM_STUFF][:, 2:4], torch.tensor(2.0))
    assert torch.allclose(z[NUM_STUFF + 1][:, 2:4], torch.tensor(3.0))
    assert (z.argmax(0)[:, 2:6] == NUM_STUFF + 1).all()


def test_unknown_channel_wins_where_a_strong_thing_has_no_instance():
    z = _two_overlapping_instances()
    # columns 0..1: thing 2 logit 4 but only instance 1 (X_mask = 1) is there:
    # unknown = 4 - 1 = 3 beats instance 1 (2) and the stuff logits (-5, 0)
    assert torch.allclose(z[-1][:, 0:2], torch.tensor(3.0))
    assert (z.argmax(0)[:, 0:2] == NUM_STUFF + 2).all()


def test_paste_is_bilinear_inside_the_box():
    # A 2x2 mask over an 8x8-pixel box on a stride-4 grid: the cell centres fall exactly
    # on the mask cell centres, so the pasted values are the mask values.
    mask = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    box = torch.tensor([[4.0, 4.0, 12.0, 12.0]])
    pasted = paste_mask_logits(mask, box, (4, 4), STRIDE).dense(torch.float32)
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = mask[0]
    assert torch.allclose(pasted[0], expected)
    # A 16-pixel box: centres at mask coordinates 0.25 and 0.75 of the way between cells
    box = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    pasted = paste_mask_logits(mask, box, (2, 4), STRIDE).dense(torch.float32)
    assert torch.allclose(pasted[0, 0], torch.tensor([1.0, 1.25, 1.75, 2.0]))


def test_paste_is_differentiable():
    mask = torch.randn(2, 28, 28, requires_grad=True)
    pasted = paste_mask_logits(mask, torch.tensor([[0.0, 0.0, 20.0, 20.0], [5.0, 5.0, 30.0, 18.0]]),
                               (8, 8), STRIDE).dense(torch.float32)
    pasted.sum().backward()
    assert mask.grad.abs().sum() > 0


def test_box_cells_use_cell_centres():
    cells = box_cells(torch.tensor([[2.0, 2.0, 10.0, 6.0], [-9.0, 3.0, 1.0, 4.0]]), (3, 3), STRIDE)
    # centres at 2, 6, 10: x in [2, 10) -> columns 0, 1; y in [2, 6) -> row 0;
    # the second box holds no centre (x < 2 and y in [3, 4)): an empty range
    assert cells[0].tolist() == [0, 1, 0, 2]
    r0, r1, c0, c1 = cells[1].tolist()
    assert r1 <= r0 and c1 <= c0


def test_dense_maps_are_the_crops_and_zero_outside():
    mask = torch.randn(2, 28, 28)
    boxes = torch.tensor([[3.0, 5.0, 21.0, 11.0], [-4.0, 6.0, 40.0, 100.0]])
    pasted = paste_mask_logits(mask, boxes, (6, 8), STRIDE)
    dense = pasted.dense(torch.float32)
    for index, (region, crop) in enumerate(zip(pasted.regions(), pasted.crops)):
        assert torch.equal(dense[index][region], crop)
        outside = torch.ones(6, 8, dtype=torch.bool)
        outside[region] = False
        assert (dense[index][outside] == 0).all()
    assert pasted.regions()[1] == (slice(1, 6), slice(0, 8))  # clipped at the grid's border
