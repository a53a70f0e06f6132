"""Backbone construction: local torchvision weights, global context, output levels."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from upsnet_core.config import BackboneConfig
from upsnet_core.modeling.backbone import GlobalContextFPN, build_backbone


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
