"""Turn a training checkpoint into a model file to ship: weights and config only; or its
network into ONNX (and a TensorRT engine where ``tensorrt`` imports).

    python -m upsnet_core.tools.export --checkpoint outputs/small/best.pt --output models/x.pt \
        [--half] [--input-long-side N] [--inference KEY=VALUE ...]
    python -m upsnet_core.tools.export --checkpoint models/x.pt --onnx models/x.onnx \
        [--tensorrt models/x.engine]

The optimizer state and other training bookkeeping are dropped; ``--half`` stores the
weights as float16 (half the size; they load back into a float32 model);
``--input-long-side`` stores the network input size that ``predict`` and the node use by
default (``model.inference.input_long_side``); ``--inference`` sets other fields of
``model.inference`` (e.g. the values ``training.tune_inference`` found). Metrics kept by
the training run under ``extra['metrics']`` are carried over.

``--onnx`` writes the network (backbone, RPN, RoI heads, semantic head; dynamic image
size, float32) for onnxruntime (``Predictor(backend="onnxruntime")``, node parameter
``backend: onnxruntime``); the parameter-free panoptic head and post-processing stay in
PyTorch (see :mod:`upsnet_core.onnx_export`). ``--tensorrt`` builds an fp16 engine from
it, only where TensorRT is installed (NVIDIA GPU machines).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from ..config import parse_setting, with_inference_settings
from ..onnx_export import export_onnx
from ..tensorrt_engine import TensorRTUnavailable, build_engine


def export(checkpoint: Path, output: Path, half: bool,
           inference: dict[str, Any] | None = None) -> Path:
    """Write the shipped model file; ``inference`` overrides fields of ``model.inference``."""
    model, config = load_model(checkpoint)
    if inference:
        config = with_inference_settings(config, inference)
    metrics = read_checkpoint(checkpoint)["extra"].get("metrics")
    return save_checkpoint(output, model, config, {"metrics": metrics} if metrics else None, half=half)


def _wrote(path: Path) -> None:
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--output", type=Path, help="shipped model file (.pt)")
    parser.add_argument("--onnx", type=Path, help="write the network as ONNX to this file")
    parser.add_argument("--tensorrt", type=Path,
                        help="also build a TensorRT engine from the ONNX file (needs tensorrt)")
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--input-long-side", type=int, default=None,
                        help="network input long side stored for predict and the node "
                             "(0: the image's own size; default: keep the checkpoint's)")
    parser.add_argument("--inference", nargs="+", default=[], metavar="KEY=VALUE",
                        help="set model.inference fields, e.g. stuff_area=512 score_threshold=0.4")
    args = parser.parse_args(argv)
    if not (args.output or args.onnx):
        parser.error("give --output (model file) and/or --onnx (network as ONNX)")
    if args.tensorrt and not args.onnx:
        parser.error("--tensorrt builds from the ONNX file: give --onnx too")
    try:
        if args.output:
            inference = dict(parse_setting(text) for text in args.inference)
            if args.input_long_side is not None:
                inference["input_long_side"] = args.input_long_side
            _wrote(export(args.checkpoint, args.output, args.half, inference))
        if args.onnx:
            _wrote(export_onnx(load_model(args.checkpoint)[0], args.onnx))
        if args.tensorrt:
            _wrote(build_engine(args.onnx, args.tensorrt))
    except (CheckpointError, ValueError, TypeError, TensorRTUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
