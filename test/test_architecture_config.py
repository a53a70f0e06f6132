"""``model.architecture``: unknown names and keys of another architecture stop with an
error that says so; every architecture's config round-trips through a checkpoint."""
from __future__ import annotations

import pytest
import torch
import yaml

from conftest import CONFIG_DIR
from upsnet_core.checkpoint import load_model, read_checkpoint, save_checkpoint
from upsnet_core.config import ARCHITECTURES, load_config
from upsnet_core.modeling import build_model
from upsnet_core.modeling.build import BUILDERS

SMALL = {"upsnet": "upsnet_small", "panoptic_fpn": "panoptic_fpn_small",
         "panoptic_deeplab": "panoptic_deeplab_small", "hps": "hps_small"}


def _write(tmp_path, values: dict):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_every_configurable_architecture_has_a_builder():
    assert set(BUILDERS) == set(ARCHITECTURES) == set(SMALL)


def test_unknown_architecture_is_named_with_the_known_ones(tmp_path):
    path = _write(tmp_path, {"model": {"architecture": "mask_former"}})
    with pytest.raises(ValueError, match=r"unknown model.architecture 'mask_former'.*'panoptic_deeplab'"):
        load_config(path)


@pytest.mark.parametrize("architecture, model, key", [
    ("panoptic_deeplab", {"rpn": {"nms_thresh": 0.6}}, "model.rpn"),
    ("panoptic_deeplab", {"inference": {"score_threshold": 0.3}}, "model.inference.score_threshold"),
    ("panoptic_fpn", {"unknown_fraction": 0.2}, "model.unknown_fraction"),
    ("panoptic_fpn", {"semantic_head": {"num_deform_layers": 2}}, "model.semantic_head.num_deform_layers"),
    ("hps", {"loss_weights": {"semantic_roi": 0.2}}, "model.loss_weights.semantic_roi"),
    ("upsnet", {"panoptic_deeplab": {"center_sigma": 4.0}}, "model.panoptic_deeplab"),
    ("upsnet", {"hps": {"refine_blocks": 2}}, "model.hps"),
    ("upsnet", {"inference": {"center_top_k": 100}}, "model.inference.center_top_k"),
])
def test_key_of_another_architecture_is_refused_naming_its_owners(tmp_path, architecture, model, key):
    path = _write(tmp_path, {"model": {"architecture": architecture, **model}})
    with pytest.raises(ValueError, match=rf"'{key}' belongs to architecture\(s\) .*not to "
                                         rf"model.architecture '{architecture}'"):
        load_config(path)


@pytest.mark.parametrize("architecture", sorted(SMALL))
def test_checkpoint_stores_only_its_architecture_keys_and_rebuilds_it(architecture, tmp_path):
    config = load_config(CONFIG_DIR / f"{SMALL[architecture]}.yaml")
    torch.manual_seed(0)
    model = build_model(config)
    path = save_checkpoint(tmp_path / "model.pt", model, config)
    stored = torch.load(path, weights_only=True)["config"]["model"]
    assert stored["architecture"] == architecture
    assert ("rpn" in stored) == (architecture != "panoptic_deeplab")
    assert ("panoptic_deeplab" in stored) == (architecture == "panoptic_deeplab")
    assert ("hps" in stored) == (architecture == "hps")
    assert read_checkpoint(path)["config"] == config.resolved()
    loaded, _ = load_model(path)
    assert type(loaded) is type(model)
    image = torch.rand(3, 40, 60)
    assert torch.equal(loaded([image])[0].panoptic, model.eval()([image])[0].panoptic)
