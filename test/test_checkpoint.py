"""Checkpoints: round trip, and clear refusals of anything that is not one."""
from __future__ import annotations

import pickle

import pytest
import torch

from upsnet_core.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from upsnet_core.config import config_from_dict
from upsnet_core.modeling import build_upsnet


@pytest.fixture(scope="module")
def saved(small_config, tmp_path_factory):
    torch.manual_seed(1)
    model = build_upsnet(small_config).eval()
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "model.pt", model, small_config,
                           extra={"iteration": 7})
    return model, path


def test_round_trip_gives_identical_predictions(saved):
    model, path = saved
    loaded, config = load_model(path)
    image = torch.rand(3, 64, 96)
    assert torch.equal(model([image])[0].panoptic, loaded([image])[0].panoptic)
    assert config.category_set().category_ids() == model.categories.category_ids()
    assert isinstance(config.categories, list)  # self-contained: no preset lookup needed
    assert read_checkpoint(path)["extra"] == {"iteration": 7}


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found.*nope.pt"):
        load_model(tmp_path / "nope.pt")


def test_truncated_checkpoint(saved, tmp_path):
    _, path = saved
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint.*broken.pt"):
        load_model(broken)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        pickle.dump({"format": "upsnet-checkpoint", "model": _Payload()}, stream)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not an UPSNet checkpoint"):
        load_model(path)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    model, _ = saved
    values = read_checkpoint(saved[1])["config"].to_dict()
    values["model"]["semantic_head"]["channels"] = 16
    path = save_checkpoint(tmp_path / "mismatch.pt", model, config_from_dict(values))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model(path)


def test_failed_save_keeps_the_previous_file(saved, tmp_path, monkeypatch):
    model, path = saved
    target = tmp_path / "keep.pt"
    target.write_bytes(path.read_bytes())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    config = read_checkpoint(path)["config"]
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model, config)
    monkeypatch.undo()
    load_model(target)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]  # no temporary left behind
