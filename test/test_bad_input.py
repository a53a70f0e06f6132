"""Bad input raises an error that says what is wrong."""
from __future__ import annotations

import pytest
import torch

from conftest import CONFIG_DIR, box_target
from upsnet_core.config import config_from_dict, load_config, parse_setting
from upsnet_core.modeling import build_upsnet


@pytest.fixture(scope="module")
def model(small_config):
    return build_upsnet(small_config).eval()


@pytest.mark.parametrize("image, error, message", [
    (torch.rand(1, 32, 32), ValueError, r"shape \(3, H, W\)"),
    (torch.rand(4, 32, 32), ValueError, r"shape \(3, H, W\)"),
    (torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8), TypeError, "float tensor"),
    (torch.rand(3, 0, 32), ValueError, "empty"),
    (torch.full((3, 16, 16), float("nan")), ValueError, "NaN"),
])
def test_bad_images_are_refused_with_the_reason(model, image, error, message):
    with pytest.raises(error, match=message):
        model([image])


def test_no_images(model):
    with pytest.raises(ValueError, match="non-empty list"):
        model([])


def test_training_without_targets(small_config):
    model = build_upsnet(small_config).train()
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 32, 32)])


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(labels=torch.tensor([9])), r"thing labels must be in 1\.\.8"),
    (lambda t: t.update(boxes=torch.tensor([[10.0, 10.0, 5.0, 20.0]])), "x2 > x1"),
    (lambda t: t.update(semantic=t["semantic"][:10]), "semantic must be int64"),
    (lambda t: t.update(masks=t["masks"][:, :10]), "masks must be"),
    (lambda t: t.pop("masks"), "missing"),
])
def test_bad_targets_name_the_field(small_config, change, message):
    model = build_upsnet(small_config).train()
    target = box_target(40, 40, [[2, 2, 20, 20]], [1])
    change(target)
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 40, 40)], [target])


def test_config_naming_unknown_classes(small_config):
    values = small_config.to_dict()
    values["categories"] = {"preset": "cityscapes", "classes": ["road", "car", "unicorn"]}
    with pytest.raises(ValueError, match="unknown class names.*unicorn"):
        config_from_dict(values)


@pytest.mark.parametrize("key, value, message", [
    ("decision_stride", 3, "decision_stride must be 1, 2 or 4"),
    ("input_long_side", -5, "input_long_side must be >= 0"),
])
def test_config_with_bad_inference_values(small_config, key, value, message):
    values = small_config.to_dict()
    values["model"]["inference"][key] = value
    with pytest.raises(ValueError, match=message):
        config_from_dict(values)


def test_config_with_bad_loss_stride(small_config):
    values = small_config.to_dict()
    values["model"]["loss_stride"] = 3
    with pytest.raises(ValueError, match="loss_stride must be 1, 2 or 4"):
        config_from_dict(values)


def test_config_with_negative_class_balance(small_config):
    values = small_config.to_dict()
    values["model"]["semantic_class_balance"] = -0.5
    with pytest.raises(ValueError, match="semantic_class_balance must be >= 0"):
        config_from_dict(values)


@pytest.mark.parametrize("settings, message", [
    ({"model.semantic_head.chanels": 64}, r"unknown config key.*chanels.*model.semantic_head"),
    ({"model.unknown_fraction": "many"}, r"model.unknown_fraction' must be float"),
    ({"model.loss_stride.x": 1}, r"cannot set 'model.loss_stride.x'.*'loss_stride' is not a section"),
])
def test_settings_over_a_config_file_are_checked_like_it(tmp_path, settings, message):
    path = tmp_path / "base.yaml"
    path.write_text("model:\n  loss_stride: 1\n")
    with pytest.raises(ValueError, match=message):
        load_config(path, settings)


def test_setting_needs_key_and_value():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_setting("model.unknown_fraction")


def test_config_with_unknown_preset_or_key(small_config, tmp_path):
    values = small_config.to_dict()
    values["categories"] = "kitti"
    with pytest.raises(ValueError, match="unknown category preset 'kitti'"):
        config_from_dict(values)
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  semantic_head:\n    chanels: 64\n")
    with pytest.raises(ValueError, match=r"typo.yaml.*unknown config key.*chanels.*model.semantic_head"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="no_such.yaml"):
        load_config(tmp_path / "no_such.yaml")


def test_class_subset_builds_a_smaller_model(small_config):
    values = small_config.to_dict()
    values["categories"] = {"preset": "cityscapes", "classes": ["road", "sky", "car", "person"]}
    model = build_upsnet(config_from_dict(values)).eval()
    assert model.semantic_head.classifier.out_channels == 4
    result = model([torch.rand(3, 40, 60)])[0]
    assert {s["category_id"] for s in result.segments} <= {7, 23, 24, 26}


def test_shipped_configs_load():
    for path in CONFIG_DIR.glob("upsnet_*.yaml"):
        load_config(path)
