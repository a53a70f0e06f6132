"""One shared set of model tests, run over every architecture and variant we ship."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from conftest import CONFIG_DIR, box_target
from upsnet_core.categories import IGNORE_INDEX
from upsnet_core.checkpoint import load_model, save_checkpoint
from upsnet_core.config import config_from_dict, load_config
from upsnet_core.modeling import SEMANTIC_UNKNOWN, build_model
from upsnet_core.modeling.grid import decision_grid_logits
from upsnet_core.modeling.semantic_head import semantic_loss

_MASK_RCNN_LOSSES = {"loss_rpn_objectness", "loss_rpn_box", "loss_box_cls", "loss_box_reg",
                     "loss_mask", "loss_semantic"}
EXPECTED_LOSSES = {
    "upsnet": _MASK_RCNN_LOSSES | {"loss_semantic_roi", "loss_panoptic"},
    "panoptic_fpn": _MASK_RCNN_LOSSES,
    "hps": _MASK_RCNN_LOSSES | {"loss_panoptic"},
    "panoptic_deeplab": {"loss_semantic", "loss_center", "loss_offset"},
}


def _variant(name: str):
    if name == "small_global_context":
        values = load_config(CONFIG_DIR / "upsnet_small.yaml").to_dict()
        values["model"]["backbone"].update(global_context=True, norm="frozen_bn", trainable_layers=3)
        return config_from_dict(values)
    return load_config(CONFIG_DIR / f"{name}.yaml")


VARIANTS = ["upsnet_small", "small_global_context", "upsnet_mobilenet", "upsnet_cityscapes_r50", "upsnet_coco_r50",
            "panoptic_fpn_small", "panoptic_fpn_cityscapes_r50", "hps_small",
            "hps_cityscapes_r50", "panoptic_deeplab_small", "panoptic_deeplab_cityscapes_r50"]


@pytest.fixture(scope="module", params=VARIANTS)
def config(request):
    return _variant(request.param)


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return build_model(config)


def _architecture(model) -> str:
    return {"UPSNet": "upsnet", "PanopticFPN": "panoptic_fpn", "HPS": "hps",
            "PanopticDeepLab": "panoptic_deeplab"}[type(model).__name__]


def _with_inference(model, **settings):
    """A copy of the model's inference settings with ``settings`` changed."""
    return dataclasses.replace(model.inference_config, **settings)


def _no_instance_can_pass(model):
    if _architecture(model) == "panoptic_deeplab":
        return _with_inference(model, center_threshold=math.inf)
    return _with_inference(model, score_threshold=1.0)


def _every_instance_passes(model, **settings):
    if _architecture(model) == "panoptic_deeplab":
        return _with_inference(model, center_threshold=-math.inf, **settings)
    return _with_inference(model, score_threshold=0.0, **settings)


def _targets(model, sizes):
    num_stuff = model.categories.num_stuff
    first = box_target(*sizes[0], [[8, 12, 40, 50], [30, 20, 70, 60]], [1, 3], num_stuff)
    second = box_target(*sizes[1], [[5, 5, 30, 25]], [2], num_stuff)
    return [first, second]


def test_forward_backward_all_losses_finite(model):
    model.train()
    sizes = [(75, 99), (64, 90)]  # not multiples of 32, different sizes in one batch
    images = [torch.rand(3, *s) for s in sizes]
    losses = model(images, _targets(model, sizes))
    assert set(losses) == EXPECTED_LOSSES[_architecture(model)]
    for name, value in losses.items():
        assert torch.isfinite(value), name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_panoptic_loss_reaches_semantic_head_mask_head_and_backbone(model):
    if "loss_panoptic" not in EXPECTED_LOSSES[_architecture(model)]:
        pytest.skip("this architecture has no panoptic loss (its merge is not trained)")
    model.train()
    sizes = [(64, 96), (64, 96)]
    losses = model([torch.rand(3, *s) for s in sizes], _targets(model, sizes))
    parts = {
        "semantic head": list(model.semantic_head.parameters())[-1],
        "mask head": model.instance_head.roi_heads.mask_predictor.mask_fcn_logits.weight,
        "backbone": model.backbone.fpn.layer_blocks[0][0].weight,
    }
    grads = torch.autograd.grad(losses["loss_panoptic"], list(parts.values()), allow_unused=True)
    for (name, _), grad in zip(parts.items(), grads):
        assert grad is not None and grad.abs().sum() > 0, f"no panoptic gradient in the {name}"


def test_training_on_image_without_instances(model):
    model.train()
    target = box_target(70, 100, [], [], model.categories.num_stuff)
    losses = model([torch.rand(3, 70, 100)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.zero_grad()


def test_inference_sizes_and_encoding(model):
    model.eval()
    sizes = [(75, 123), (50, 64)]
    results = model([torch.rand(3, *s) for s in sizes])
    for result, size in zip(results, sizes):
        assert tuple(result.panoptic.shape) == size and result.panoptic.dtype == torch.int32
        assert tuple(result.semantic.shape) == size
        ids = set(result.panoptic.unique().tolist()) - {0}
        assert ids == {s["id"] for s in result.segments}
        for segment in result.segments:
            pixels = result.panoptic == segment["id"]
            assert int(pixels.sum()) == segment["area"]
            assert segment["category_id"] == segment["id"] // 1000
            assert (result.semantic[pixels] == segment["category_id"]).all()
        assert (result.semantic[result.panoptic == 0] == SEMANTIC_UNKNOWN).all()


def test_inference_with_zero_detections(model):
    model.eval()
    original, model.inference_config = model.inference_config, _no_instance_can_pass(model)
    try:
        result = model([torch.rand(3, 64, 80)])[0]
    finally:
        model.inference_config = original
    assert all(not s["isthing"] for s in result.segments)
    assert all(s["id"] % 1000 == 0 for s in result.segments)


def test_inference_on_blank_image(model):
    model.eval()
    result = model([torch.zeros(3, 48, 48)])[0]
    assert tuple(result.panoptic.shape) == (48, 48)


def test_evaluation_is_deterministic(model):
    model.eval()
    image = torch.rand(3, 64, 96)
    first, second = model([image])[0], model([image])[0]
    assert torch.equal(first.panoptic, second.panoptic)
    assert first.segments == second.segments


def test_output_size_maps_labels_back(model):
    model.eval()
    image = torch.rand(3, 48, 80)
    result = model.predict([image], output_sizes=[(96, 160)])[0]
    assert tuple(result.panoptic.shape) == (96, 160)
    for segment in result.segments:
        assert int((result.panoptic == segment["id"]).sum()) == segment["area"]


def test_every_merge_gives_a_valid_label_image(model):
    model.eval()
    original, model.inference_config = model.inference_config, _every_instance_passes(model)
    try:
        for merge in model.merges:
            result = model.predict([torch.rand(3, 64, 96)], merge=merge)[0]
            assert {s["id"] for s in result.segments} == set(result.panoptic.unique().tolist()) - {0}
            assert any(s["isthing"] for s in result.segments), merge
    finally:
        model.inference_config = original
    with pytest.raises(ValueError, match="merge must be one of"):
        model.predict([torch.rand(3, 32, 32)], merge="average")


def test_checkpoint_exported_in_half_precision_rebuilds_its_architecture(model, config, tmp_path):
    """The export path (``save_checkpoint(half=True)``) of every architecture: the file
    holds float16 weights and names its architecture; it loads back into a float32 model
    of the same class whose weights are the originals rounded to float16, and which gives
    a label image of the output contract."""
    model.eval()
    path = save_checkpoint(tmp_path / "half.pt", model, config, half=True)
    weights = torch.load(path, weights_only=True)["model"]
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    loaded, loaded_config = load_model(path)
    assert type(loaded) is type(model)
    assert loaded_config.model.architecture == config.model.architecture
    for name, value in loaded.state_dict().items():
        original = model.state_dict()[name]
        expected = original.half().float() if original.is_floating_point() else original
        assert torch.equal(value, expected), name
    result = loaded([torch.rand(3, 40, 56)])[0]
    assert {s["id"] for s in result.segments} == set(result.panoptic.unique().tolist()) - {0}


@pytest.mark.parametrize("stride", [2, 4])
def test_decision_stride_sets_the_grid_of_the_label_image(model, stride):
    model.eval()
    original = model.inference_config
    model.inference_config = _every_instance_passes(model, decision_stride=stride)
    try:
        result = model([torch.rand(3, 64, 96)])[0]
    finally:
        model.inference_config = original
    blocks = result.panoptic.reshape(64 // stride, stride, 96 // stride, stride)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert {s["id"] for s in result.segments} == set(result.panoptic.unique().tolist()) - {0}
    for segment in result.segments:
        assert int((result.panoptic == segment["id"]).sum()) == segment["area"]


def test_decision_grid_logits_interpolate_between_cell_centres():
    """A logit equal to the x position of its cell's centre (input pixels) becomes, on the
    stride-1 grid, the x position of each pixel's centre (away from the border cells)."""
    cell_centres = (torch.arange(6) + 0.5) * 4
    logits = cell_centres.expand(1, 5, 6).clone()  # 8 padded rows beyond the image
    fine = decision_grid_logits(logits, (12, 24), 1)
    assert fine.shape == (1, 12, 24)
    assert torch.allclose(fine[0, :, 2:22], (torch.arange(24.0) + 0.5)[2:22].expand(12, 20))
    assert decision_grid_logits(logits, (12, 24), 4).shape == (1, 3, 6)


# Not Panoptic-DeepLab: its semantic loss averages only the hardest 15 % of the pixels, so
# one line of pixels need not enter it on either grid.
@pytest.mark.parametrize("name", ["upsnet_small", "panoptic_fpn_small", "hps_small"])
@pytest.mark.parametrize("loss_stride, sees_line", [(4, False), (1, True)])
def test_loss_stride_sets_which_pixels_supervise_the_heads(name, loss_stride, sees_line):
    """A one-pixel line between the 1/4 grid's cell centres (columns 2, 6, 10, ...) changes
    the semantic and panoptic losses only when they are computed on the input grid."""
    values = load_config(CONFIG_DIR / f"{name}.yaml").to_dict()
    values["model"]["loss_stride"] = loss_stride
    torch.manual_seed(0)
    model = build_model(config_from_dict(values)).train()
    image = torch.rand(3, 64, 96)
    plain = box_target(64, 96, [[40, 20, 70, 50]], [1], model.categories.num_stuff)
    with_line = copy.deepcopy(plain)
    with_line["semantic"][3:, 5] = 5  # a pole-like stuff line in column 5
    losses = []
    for target in (plain, with_line):
        torch.manual_seed(1)  # same proposals sampled, same unknown instances
        losses.append(model([image], [target]))
    for loss in {"loss_semantic", "loss_panoptic"} & set(losses[0]):
        assert (losses[0][loss] != losses[1][loss]) == sees_line, loss


def test_semantic_class_balance_weighs_classes_by_pixel_count():
    """p = 0 is the plain mean; p = 1 is the mean of the classes' mean losses, worked out
    here class by class; ignored pixels count in neither."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    targets = torch.randint(0, 3, (2, 5, 6))
    targets[0, 0, :4] = IGNORE_INDEX
    pixel = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX,
                                              reduction="none")
    labelled = targets != IGNORE_INDEX
    assert semantic_loss(logits, targets, 0.0) == pytest.approx(pixel[labelled].mean().item())
    per_class = [pixel[targets == c].mean().item() for c in range(3)]
    assert semantic_loss(logits, targets, 1.0).item() == pytest.approx(sum(per_class) / 3, rel=1e-6)


@pytest.mark.parametrize("name", ["upsnet_small", "panoptic_fpn_small", "hps_small"])
def test_semantic_class_balance_changes_only_the_semantic_loss(name):
    values = load_config(CONFIG_DIR / f"{name}.yaml").to_dict()
    losses = []
    for balance in (0.0, 1.0):
        values["model"]["semantic_class_balance"] = balance
        torch.manual_seed(0)
        model = build_model(config_from_dict(values)).train()
        target = box_target(64, 96, [[40, 20, 70, 50]], [1], model.categories.num_stuff)
        target["semantic"][3:, 5] = 5  # a thin stuff class the balance lifts
        torch.manual_seed(1)
        losses.append(model([torch.rand(3, 64, 96)], [target]))
    changed = {k for k in losses[0] if not torch.equal(losses[0][k], losses[1][k])}
    assert changed == {"loss_semantic"}
