"""The two training hooks fleet retraining needs: ``data.train_mix`` (several datasets at
fixed proportions) and ``training.init_weights`` (fine-tuning from a checkpoint's weights).

Real datasets on disk (tiny synthetic frames), real training runs of one iteration.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from training import train
from training.data import training_set
from training.mixing import MixedDataset, mixed_counts
from training.settings import data_settings
from upsnet_core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from upsnet_core.config import config_from_dict
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.modeling import build_upsnet

ROOT = Path(__file__).resolve().parents[1]
SMALL = yaml.safe_load((ROOT / "config" / "upsnet_small.yaml").read_text())


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> tuple[Path, Path]:
    day, dusk = tmp_path_factory.mktemp("day"), tmp_path_factory.mktemp("dusk")
    generate_dataset(day, "train", 2, seed=0, height=64, width=128)
    generate_dataset(dusk, "train", 5, seed=1, height=64, width=128, style="dusk")
    return day, dusk


def small_config(data: dict, training: dict | None = None) -> dict:
    return {"categories": "cityscapes", "model": SMALL["model"],
            "training": {"base_lr": 0.02, "images_per_batch": 1, "max_iters": 1,
                         "warmup_iters": 1, "log_period": 1, "checkpoint_period": 1,
                         "eval_period": 0, **(training or {})},
            "data": {"kind": "synthetic", "num_workers": 0, "val_split": None,
                     "crop": [56, 112], **data}}


@pytest.mark.parametrize("sizes, weights, counts", [
    ([3, 10], [1, 1], [10, 10]),     # the small set repeats to match the large one
    ([3, 10], [3, 1], [30, 10]),     # 3:1 for the small set: 30 of its indices per epoch
    ([5], [2.0], [5]),
    ([4, 4, 2], [1, 1, 2], [4, 4, 8]),
])
def test_mixed_counts_follow_the_weights_and_cover_every_item(sizes, weights, counts):
    assert mixed_counts(sizes, weights) == counts


@pytest.mark.parametrize("sizes, weights, message", [
    ([3, 0], [1, 1], "needs items"), ([3, 4], [1, 0], "must be > 0"), ([3], [1, 1], "one weight")])
def test_mixed_counts_refuse_bad_input(sizes, weights, message):
    with pytest.raises(ValueError, match=message):
        mixed_counts(sizes, weights)


def test_mixed_dataset_reads_each_source_at_its_share():
    mix = MixedDataset([["a0", "a1"], ["b0", "b1", "b2", "b3", "b4", "b5"]], [1, 3])
    assert len(mix) == 8 and mix.counts == [2, 6]
    items = [mix[i] for i in range(len(mix))]
    assert items == ["a0", "a1", "b0", "b1", "b2", "b3", "b4", "b5"]
    mix = MixedDataset([["a0", "a1"], ["b0", "b1", "b2"]], [3, 1])
    shares = Counter(item[0] for item in (mix[i] for i in range(len(mix))))
    assert shares == {"a": 9, "b": 3} and mix.source_of(8) == (0, 0)
    with pytest.raises(IndexError):
        mix.source_of(len(mix))


def test_train_mix_builds_the_mixed_training_set(two_datasets):
    day, dusk = two_datasets
    config = config_from_dict(small_config({"root": str(day), "train_mix": [
        {"root": str(day), "weight": 1.0},
        {"root": str(dusk), "weight": 1.0, "kind": "cityscapes"}]}))
    dataset = training_set(data_settings(config), config.category_set())
    assert isinstance(dataset, MixedDataset) and dataset.counts == [5, 5]
    image_ids = {dataset[i][1]["image_id"].split("_")[0] for i in range(len(dataset))}
    assert image_ids == {"synthdefault", "synthdusk"}


@pytest.mark.parametrize("mix, message", [
    ([{"root": "x", "weight": 0.0}], r"'data.train_mix\[0\].weight' must be > 0"),
    ([{"root": "x", "weight": 1.0, "kind": "kitti"}], r"'data.train_mix\[0\].kind' must be"),
    ([{"root": "x", "weight": 1.0, "ratio": 2}], r"unknown config key\(s\) \['ratio'\]"),
    ([{"weight": 1.0}], r"'data.train_mix\[0\].root' must be set"),
    ([], "must list at least one dataset"),
])
def test_train_mix_errors_name_the_key(mix, message):
    with pytest.raises(ValueError, match=message):
        data_settings(config_from_dict({"data": {"train_mix": mix}}))


def test_a_missing_mix_dataset_is_named(tmp_path, two_datasets):
    config = config_from_dict(small_config({"root": str(two_datasets[0]), "train_mix": [
        {"root": str(tmp_path / "nowhere"), "weight": 1.0}]}))
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        training_set(data_settings(config), config.category_set())


def test_init_weights_starts_from_the_checkpoint_not_from_scratch(tmp_path, two_datasets):
    base_config = config_from_dict(small_config({"root": str(two_datasets[1])}))
    torch.manual_seed(123)
    base = save_checkpoint(tmp_path / "base.pt", build_upsnet(base_config), base_config)
    day, dusk = (str(d) for d in two_datasets)
    values = small_config({"root": dusk, "train_mix": [{"root": day}, {"root": dusk}]},
                          {"init_weights": str(base), "base_lr": 1e-6, "seed": 5})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    assert train.main(["--config", str(tmp_path / "c.yaml"), "--output",
                       str(tmp_path / "run")]) == 0
    start = read_checkpoint(base)["model"]
    tuned = read_checkpoint(tmp_path / "run" / "last.pt")["model"]
    key = "backbone.body.conv1.weight"
    assert key in start and torch.allclose(start[key], tuned[key], atol=1e-4)
    values["training"].pop("init_weights")
    (tmp_path / "scratch.yaml").write_text(yaml.safe_dump(values))
    assert train.main(["--config", str(tmp_path / "scratch.yaml"), "--output",
                       str(tmp_path / "scratch")]) == 0
    scratch = read_checkpoint(tmp_path / "scratch" / "last.pt")["model"]
    assert not torch.allclose(start[key], scratch[key], atol=1e-2)


def test_init_weights_of_another_model_is_refused(tmp_path, two_datasets):
    other = small_config({"root": str(two_datasets[0])})
    other["model"] = {**SMALL["model"], "semantic_head": {**SMALL["model"]["semantic_head"],
                                                          "channels": 16}}
    other_config = config_from_dict(other)
    base = save_checkpoint(tmp_path / "other.pt", build_upsnet(other_config), other_config)
    values = small_config({"root": str(two_datasets[0])}, {"init_weights": str(base)})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(CheckpointError, match="model.semantic_head.channels"):
        train.main(["--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "run")])


def test_init_weights_may_change_losses_and_post_processing(tmp_path, two_datasets):
    """The shipped model's file stores tuned post-processing: fine-tuning it with the
    recipe's config, or with another loss, starts from its weights."""
    base_values = small_config({"root": str(two_datasets[0])})
    base_values["model"] = {**SMALL["model"], "inference": {"score_threshold": 0.3,
                                                            "stuff_area": 1024}}
    base_config = config_from_dict(base_values)
    base = save_checkpoint(tmp_path / "base.pt", build_upsnet(base_config), base_config)
    values = small_config({"root": str(two_datasets[0])}, {"init_weights": str(base)})
    values["model"] = {**SMALL["model"], "semantic_class_balance": 0.5, "unknown_fraction": 0.1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    assert train.main(["--config", str(tmp_path / "c.yaml"), "--output",
                       str(tmp_path / "run")]) == 0
    stored = read_checkpoint(tmp_path / "run" / "last.pt")["config"].model
    assert stored.semantic_class_balance == 0.5 and stored.unknown_fraction == 0.1
