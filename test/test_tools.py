"""The predict and benchmark command-line tools, run as a user runs them."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import CONFIG_DIR, ROOT
from upsnet_core.checkpoint import load_model, save_checkpoint
from upsnet_core.data.panoptic_io import read_panoptic_png
from upsnet_core.inference import Predictor, image_to_tensor
from upsnet_core.modeling import build_upsnet
from upsnet_core.tools import benchmark, predict


@pytest.fixture(scope="module")
def checkpoint(small_config, tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "small.pt", build_upsnet(small_config),
                           small_config)


def _write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        cv2.imwrite(str(folder / f"frame{index}.png"), rng.integers(0, 255, (height, width, 3), np.uint8))


def test_predict_folder_writes_coco_panoptic_and_overlays(checkpoint, tmp_path):
    sizes = [(75, 123), (64, 64)]
    _write_images(tmp_path / "in", sizes)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                         "--output", str(tmp_path / "out"), "--device", "cpu"]) == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [c["id"] for c in predictions["categories"]][:2] == [7, 8]
    assert len(predictions["annotations"]) == 2
    for entry, size in zip(predictions["annotations"], sizes):
        ids = read_panoptic_png(tmp_path / "out" / "panoptic" / entry["file_name"])
        assert ids.shape == size
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in entry["segments_info"]}
        for segment in entry["segments_info"]:
            assert int((ids == segment["id"]).sum()) == segment["area"]
        overlay = cv2.imread(str(tmp_path / "out" / "overlay" / entry["file_name"]))
        assert overlay.shape == (*size, 3)


def test_predict_single_image_as_a_user_runs_it(checkpoint, tmp_path):
    _write_images(tmp_path, [(40, 60)])
    completed = subprocess.run(
        [sys.executable, "-m", "upsnet_core.tools.predict", "--checkpoint", str(checkpoint),
         "--input", str(tmp_path / "frame0.png"), "--output", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "1/1 images segmented" in completed.stdout


def test_predict_reports_missing_checkpoint_and_input(checkpoint, tmp_path, capsys):
    assert predict.main(["--checkpoint", str(tmp_path / "none.pt"), "--input", str(tmp_path),
                         "--output", str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "missing"),
                         "--output", str(tmp_path / "out")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_predictor_resizes_and_maps_back(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", input_long_side=64)
    image = np.random.default_rng(1).integers(0, 255, (90, 160, 3), np.uint8)
    result = predictor(image)
    assert tuple(result.panoptic.shape) == (90, 160)
    with pytest.raises(ValueError, match="empty"):
        predictor(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor(np.zeros((10, 10), np.uint8))


def test_predictor_feeds_the_network_what_evaluation_feeds_it(checkpoint, small_config):
    """Without ``input_long_side`` the Predictor takes the model's; the network then gets
    exactly the pixels that ``training.evaluate`` gives it for the same image and size."""
    from training.settings import DataSettings
    from training.validation import network_size
    from upsnet_core.data.transforms import resize_image

    model, config = load_model(checkpoint)
    predictor = Predictor(model, config, "cpu")
    long_side = small_config.model.inference.input_long_side
    assert long_side > 0 and predictor.input_long_side == long_side
    image = np.random.default_rng(2).integers(0, 255, (90, 160, 3), np.uint8)
    size = network_size(90, 160, DataSettings(), long_side)
    assert max(size) == long_side
    expected = model.predict([resize_image(image_to_tensor(image), size)],
                             output_sizes=[(90, 160)])[0]
    result = predictor(image)
    assert torch.equal(result.panoptic, expected.panoptic)
    assert result.segments == expected.segments
    assert Predictor(model, config, "cpu", input_long_side=0).input_long_side == 0
    with pytest.raises(ValueError, match="input_long_side must be >= 0"):
        Predictor(model, config, "cpu", input_long_side=-1)


def test_benchmark_reports_every_stage(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--config", str(CONFIG_DIR / "upsnet_small.yaml"), "--height", "64",
                           "--width", "96", "--runs", "2", "--warmup", "1", "--device", "cpu",
                           "--score-threshold", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["stages_ms"]) == {"backbone", "rpn", "roi_heads", "semantic_head",
                                        "panoptic_postprocess"}
    stage_sum = sum(report["stages_ms"].values())
    assert 0 < stage_sum <= report["total_ms"] * 1.05
    assert report["device"].startswith("cpu")
    assert "panoptic head + post-processing" in capsys.readouterr().out


def test_benchmark_image_sizes_are_height_by_width_and_checked():
    assert benchmark.image_size("512x1024") == (512, 1024)
    assert benchmark.image_size("64X96") == (64, 96)
    for bad in ("512", "512x", "ax1024", "512x1024x3", "0x1024"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            benchmark.image_size(bad)


def test_export_drops_training_state_and_halves_weights(checkpoint, tmp_path):
    from upsnet_core.checkpoint import read_checkpoint
    from upsnet_core.tools import export
    out = tmp_path / "shipped.pt"
    assert export.main(["--checkpoint", str(checkpoint), "--output", str(out), "--half"]) == 0
    assert out.stat().st_size < 0.6 * checkpoint.stat().st_size
    original, _ = load_model(checkpoint)
    shipped, _ = load_model(out)
    weight = "semantic_head.classifier.weight"
    assert shipped.state_dict()[weight].dtype == torch.float32
    assert torch.equal(shipped.state_dict()[weight], original.state_dict()[weight].half().float())
    assert read_checkpoint(out)["extra"] == {}
    assert export.main(["--checkpoint", str(tmp_path / "none.pt"), "--output", str(out)]) == 2
    assert export.main(["--checkpoint", str(checkpoint), "--output", str(out),
                        "--input-long-side", "320"]) == 0
    assert load_model(out)[1].model.inference.input_long_side == 320
    assert export.main(["--checkpoint", str(checkpoint), "--output", str(out),
                        "--input-long-side", "-2"]) == 2
