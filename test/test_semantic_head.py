"""UPSNet's semantic head: its per-level classifier against the paper's formulation."""
import pytest
import torch
import torch.nn.functional as F

from upsnet_core.modeling.semantic_head import SemanticHead


def test_logits_are_the_classifier_of_the_concatenated_upsampled_maps():
    """The head applies its 1x1 classifier to each level before upsampling; the paper
    concatenates the upsampled maps and classifies them: the same logits."""
    torch.manual_seed(0)
    head = SemanticHead(in_channels=8, channels=6, num_layers=2, num_classes=5, norm_groups=2)
    torch.nn.init.normal_(head.classifier.bias)
    features = [torch.randn(2, 8, 20 // 2 ** level, 36 // 2 ** level) for level in range(4)]
    maps = [head.subnet(f) for f in features]
    size = maps[0].shape[-2:]
    upsampled = [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                 for m in maps[1:]]
    expected = head.classifier(torch.cat([maps[0], *upsampled], dim=1))
    logits = head(features)
    assert logits.shape == (2, 5, 20, 36)
    torch.testing.assert_close(logits, expected)


def test_levels_other_than_four_are_refused():
    head = SemanticHead(in_channels=4, channels=4, num_layers=1, num_classes=3, norm_groups=2)
    with pytest.raises(ValueError, match="P2..P5"):
        head([torch.randn(1, 4, 8, 8)] * 3)
