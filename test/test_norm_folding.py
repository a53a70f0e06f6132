"""Batch norms folded into their convolutions compute what conv + norm computed (float
rounding aside), on torchvision's ResNet and MobileNetV2 bodies (frozen and trainable
norms, with non-trivial statistics) and a DeepLabV3 head; norms in training mode or
after something other than a convolution are left alone."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.segmentation import deeplabv3_resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from upsnet_core.config import BackboneConfig
from upsnet_core.modeling.backbone import build_backbone
from upsnet_core.modeling.norm_folding import NORMS, fold_batch_norms


def randomise_statistics(model: nn.Module) -> nn.Module:
    """Norm statistics and affine parameters far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NORMS):
                for name, low, high in (("running_mean", -1, 1), ("running_var", 0.2, 3),
                                        ("weight", 0.5, 2), ("bias", -1, 1)):
                    tensor = getattr(module, name)
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model.eval()


def norms(model: nn.Module) -> int:
    return sum(isinstance(m, NORMS) for m in model.modules())


@pytest.mark.parametrize("name, depth, norm", [("resnet", 18, "bn"), ("resnet", 50, "frozen_bn"),
                                               ("mobilenet_v2", 18, "frozen_bn")])
def test_folded_backbone_gives_the_same_features(name, depth, norm):
    backbone = randomise_statistics(build_backbone(BackboneConfig(
        name=name, depth=depth, norm=norm, trainable_layers=5, fpn_channels=32)))
    folded = copy.deepcopy(backbone)
    count = norms(backbone)
    assert count > 0 and fold_batch_norms(folded) == count and norms(folded) == 0
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, features = backbone(image), folded(image)
    for level, reference in expected.items():
        torch.testing.assert_close(features[level], reference, rtol=1e-4,
                                   atol=1e-4 * reference.abs().max().item())


def test_a_convolution_bias_and_a_deeplab_head_are_folded_too():
    model = randomise_statistics(deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                    num_classes=5, aux_loss=False))
    block = randomise_statistics(nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4)))
    image = torch.rand(1, 3, 65, 65, generator=torch.Generator().manual_seed(2))
    for module in (model, block):
        folded = copy.deepcopy(module)
        assert fold_batch_norms(folded) == norms(module) and norms(folded) == 0
        with torch.no_grad():
            reference = module(image)
            reference = reference["out"] if isinstance(reference, dict) else reference
            result = folded(image)
            result = result["out"] if isinstance(result, dict) else result
        torch.testing.assert_close(result, reference, rtol=1e-4,
                                   atol=1e-4 * reference.abs().max().item())


def test_norms_in_training_mode_or_not_after_a_convolution_stay():
    training = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    after_relu = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), FrozenBatchNorm2d(4)).eval()
    no_statistics = nn.Sequential(nn.Conv2d(3, 4, 1),
                                  nn.BatchNorm2d(4, track_running_stats=False)).eval()
    for model in (training, after_relu, no_statistics):
        assert fold_batch_norms(model) == 0 and norms(model) == 1
