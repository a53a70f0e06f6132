"""ONNX export: onnxruntime (CPU) against PyTorch on random and synthetic images.

Tolerances (float32 on both sides; onnxruntime fuses and reorders sums): semantic logits
and scores within 1e-4 absolute, boxes within 1e-2 input pixels, mask logits within 1e-3,
labels and detection counts equal; the final label images agree on >= 99.9 % of pixels.
The model is the small config with random weights and ``score_threshold 0``, so that
every detection reaches mask pruning and the panoptic head.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from upsnet_core.checkpoint import load_model, save_checkpoint
from upsnet_core.config import with_inference_settings
from upsnet_core.data.synthetic import FrameRenderer, frame_rng
from upsnet_core.inference import Predictor
from upsnet_core.modeling import build_upsnet
from upsnet_core.onnx_export import METADATA_CLASSES, NetworkGraph, export_onnx
from upsnet_core.onnx_runtime import OnnxRuntimeNetwork
from upsnet_core.tensorrt_engine import TensorRTUnavailable, build_engine
from upsnet_core.tools import export as export_tool

SIZES = [(96, 192), (75, 130)]


@pytest.fixture(scope="module")
def checkpoint(small_config, tmp_path_factory):
    config = with_inference_settings(small_config, {"score_threshold": 0.0,
                                                    "input_long_side": 0})
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("onnx") / "small.pt", build_upsnet(config),
                           config)


@pytest.fixture(scope="module")
def model_and_config(checkpoint):
    model, config = load_model(checkpoint)
    return model.eval(), config


@pytest.fixture(scope="module")
def onnx_file(checkpoint):
    """Written by the export tool, as a user would."""
    path = checkpoint.with_suffix(".onnx")
    assert export_tool.main(["--checkpoint", str(checkpoint), "--onnx", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def predictors(model_and_config, onnx_file) -> tuple[Predictor, Predictor]:
    """PyTorch and onnxruntime predictors of the same model (sessions load once)."""
    model, config = model_and_config
    return (Predictor(copy.deepcopy(model), config, "cpu"),
            Predictor(model, config, "cpu", backend="onnxruntime", onnx_model=onnx_file))


def random_image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)


def synthetic_image(height: int, width: int) -> np.ndarray:
    return FrameRenderer(height, width).render(frame_rng(3, "onnx", "default", 0)).image


@pytest.mark.parametrize("make_image", [random_image, synthetic_image])
@pytest.mark.parametrize("height, width", SIZES + [(128, 64)])
def test_raw_outputs_match_pytorch(model_and_config, onnx_file, make_image, height, width):
    model, _ = model_and_config
    runtime = OnnxRuntimeNetwork(onnx_file, model)
    image = torch.from_numpy(make_image(height, width)).permute(2, 0, 1).float() / 255
    semantic, detections, size = runtime.network(image)
    batch = model.batcher([image])
    with torch.no_grad():
        expected = NetworkGraph(model).eval()(batch.tensors, torch.tensor(batch.image_sizes[0]))
    assert size == (height, width)
    assert len(detections["boxes"]) > 0
    assert detections["labels"].tolist() == expected[3].tolist()
    torch.testing.assert_close(semantic, expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(detections["boxes"], expected[1], atol=1e-2, rtol=0)
    torch.testing.assert_close(detections["scores"], expected[2], atol=1e-4, rtol=0)
    torch.testing.assert_close(detections["mask_logits"], expected[4], atol=1e-3, rtol=0)


@pytest.mark.parametrize("make_image", [random_image, synthetic_image])
@pytest.mark.parametrize("height, width", SIZES)
def test_label_images_agree_with_pytorch(predictors, make_image, height, width):
    image = make_image(height, width)
    torch_result, onnx_result = (predictor(image) for predictor in predictors)
    assert onnx_result.panoptic.shape == (height, width)
    assert any(s["isthing"] for s in torch_result.segments), "the test needs instances"
    agreement = (onnx_result.panoptic == torch_result.panoptic).float().mean().item()
    assert agreement >= 0.999
    assert (onnx_result.semantic == torch_result.semantic).float().mean().item() >= 0.999


def test_export_refuses_other_architectures(tmp_path):
    with pytest.raises(TypeError, match="UPSNet models only"):
        export_onnx(nn.Conv2d(3, 3, 1), tmp_path / "conv.onnx")


def test_onnx_file_of_another_model_is_refused(model_and_config, onnx_file, tmp_path):
    proto = onnx.load(str(onnx_file))
    for entry in proto.metadata_props:
        if entry.key == METADATA_CLASSES:
            entry.value = "7"
    other = tmp_path / "other.onnx"
    onnx.save(proto, str(other))
    with pytest.raises(ValueError, match="has 7 semantic classes, the checkpoint 19"):
        OnnxRuntimeNetwork(other, model_and_config[0])
    with pytest.raises(ValueError, match="ONNX model not found"):
        OnnxRuntimeNetwork(tmp_path / "missing.onnx", model_and_config[0])


def test_predictor_refuses_unknown_backends_and_onnxruntime_on_a_gpu(model_and_config, onnx_file):
    model, config = model_and_config
    with pytest.raises(ValueError, match="backend"):
        Predictor(model, config, "cpu", backend="tensorflow")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="runs on the CPU"):
            Predictor(model, config, "cuda", backend="onnxruntime", onnx_model=onnx_file)


def test_export_tool_needs_an_output(checkpoint, capsys):
    with pytest.raises(SystemExit):
        export_tool.main(["--checkpoint", str(checkpoint)])
    assert "--onnx" in capsys.readouterr().err


def test_tensorrt_engine(onnx_file, tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
            build_engine(onnx_file, tmp_path / "small.engine")
        pytest.skip("tensorrt is not installed (NVIDIA GPU machines only): engine build not run; "
                    "the clear error was checked instead")
    engine = build_engine(onnx_file, tmp_path / "small.engine", min_size=(64, 64),
                          opt_size=(128, 192), max_size=(256, 256))
    assert engine.stat().st_size > 0
