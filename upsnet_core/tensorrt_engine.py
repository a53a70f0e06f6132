"""TensorRT engine from the exported ONNX network, on machines where ``tensorrt`` imports.

``tensorrt`` is optional: its wheels download from NVIDIA's own index and need an NVIDIA
GPU, so CI and CPU machines do not have it; there :func:`build_engine` raises
:class:`TensorRTUnavailable` with that reason (the ONNX file runs in onnxruntime). The
engine has one optimisation profile for the image size (``images`` input); RoIAlign and
NonMaxSuppression are parsed by TensorRT's ONNX parser (TensorRT >= 8.6). Not yet run on
a GPU in this project: no GPU machine was lent to the task that wrote it.
"""
from __future__ import annotations

from pathlib import Path


class TensorRTUnavailable(RuntimeError):
    """``tensorrt`` cannot be imported here."""


def _tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailable(
            "TensorRT is not installed (the `tensorrt` Python package, NVIDIA GPU machines "
            f"only: {error}); run the ONNX file with onnxruntime (node: backend onnxruntime)"
        ) from error
    return tensorrt


def build_engine(onnx_path: str | Path, engine_path: str | Path, fp16: bool = True,
                 min_size: tuple[int, int] = (128, 128), opt_size: tuple[int, int] = (512, 1024),
                 max_size: tuple[int, int] = (1024, 2048), workspace_gib: float = 4.0) -> Path:
    """Build and write a serialized engine; sizes are ``(H_pad, W_pad)`` of the ``images``
    input (multiples of the model's ``size_divisibility``)."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, *min_size), (1, 3, *opt_size), (1, 3, *max_size))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see its log)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path
