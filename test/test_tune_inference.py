"""Tuning the post-processing settings on a split, and storing them with export."""
from __future__ import annotations

import json

import pytest
import torch

from training import tune_inference
from training.settings import data_settings
from training.validation import evaluate_model, headline
from upsnet_core.checkpoint import default_checkpoint, load_model
from upsnet_core.config import parse_setting, with_inference_settings
from upsnet_core.data import build_dataset
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.tools import export

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tune_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    generate_dataset(root, "tune", 2, seed=5, height=128, width=256)
    return root


def test_grid_parsing():
    assert parse_setting("score_threshold=0.4") == ("score_threshold", 0.4)
    assert tune_inference.parse_grid(["stuff_area=0,512", "score_threshold=0.5"]) == {
        "stuff_area": [0, 512], "score_threshold": [0.5]}
    assert tune_inference.combinations({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3},
                                                                   {"a": 2, "b": 3}]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_setting("stuff_area")


def test_every_combination_is_evaluated_as_evaluate_does(tune_root):
    model, config = load_model(default_checkpoint())
    data = data_settings(config)
    dataset = build_dataset("synthetic", tune_root, "tune", model.categories)
    original = model.inference_config
    rows = tune_inference.tune(model, config, dataset, data, CPU,
                               {"stuff_area": [0.0, 1e12], "score_threshold": [0.5]})
    assert model.inference_config is original
    assert [row["pq"] for row in rows] == sorted((row["pq"] for row in rows), reverse=True)
    by_area = {row["settings"]["stuff_area"]: row for row in rows}
    assert set(by_area) == {0.0, 1e12}
    # a threshold above any image's area turns every stuff region into unknown
    assert by_area[1e12]["pq_stuff"] == 0.0 < by_area[0.0]["pq_stuff"]
    model.inference_config = with_inference_settings(config, by_area[0.0]["settings"]).model.inference
    assert headline(evaluate_model(model, dataset, data, CPU)) == {
        k: v for k, v in by_area[0.0].items() if k != "settings"}


def test_cli_prints_the_best_and_how_to_store_it(tune_root, tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert tune_inference.main(["--checkpoint", str(default_checkpoint()), "--data", str(tune_root),
                                "--grid", "stuff_area=0,1e12", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["settings"] == {"stuff_area": 0}
    printed = capsys.readouterr().out
    assert "best: stuff_area=0" in printed and "--inference stuff_area=0" in printed


def test_cli_names_a_bad_setting(tune_root, capsys):
    assert tune_inference.main(["--checkpoint", str(default_checkpoint()), "--data", str(tune_root),
                                "--grid", "stuf_area=0"]) == 2
    assert "stuf_area" in capsys.readouterr().err
    assert tune_inference.main(["--checkpoint", str(default_checkpoint()), "--data", str(tune_root),
                                "--grid", "score_threshold=high"]) == 2
    assert "model.inference.score_threshold" in capsys.readouterr().err


def test_export_stores_inference_settings(tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    assert export.main(["--checkpoint", str(default_checkpoint()), "--output", str(out),
                        "--inference", "stuff_area=512", "score_threshold=0.4",
                        "--input-long-side", "320"]) == 0
    inference = load_model(out)[1].model.inference
    assert (inference.stuff_area, inference.score_threshold, inference.input_long_side) == (
        512.0, 0.4, 320)
    assert export.main(["--checkpoint", str(default_checkpoint()), "--output", str(out),
                        "--inference", "decision_stride=3"]) == 2
    assert "decision_stride" in capsys.readouterr().err
