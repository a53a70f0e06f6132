"""Turn a training checkpoint into a model file to ship: weights and config only.

    python -m upsnet_core.tools.export --checkpoint outputs/small/best.pt --output models/x.pt \
        [--half] [--input-long-side N] [--inference KEY=VALUE ...]

The optimizer state and other training bookkeeping are dropped; ``--half`` stores the
weights as float16 (half the size; they load back into a float32 model);
``--input-long-side`` stores the network input size that ``predict`` and the node use by
default (``model.inference.input_long_side``); ``--inference`` sets other fields of
``model.inference`` (e.g. the values ``training.tune_inference`` found). Metrics kept by
the training run under ``extra['metrics']`` are carried over.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from ..config import parse_setting, with_inference_settings


def export(checkpoint: Path, output: Path, half: bool,
           inference: dict[str, Any] | None = None) -> Path:
    """Write the shipped model file; ``inference`` overrides fields of ``model.inference``."""
    model, config = load_model(checkpoint)
    if inference:
        config = with_inference_settings(config, inference)
    metrics = read_checkpoint(checkpoint)["extra"].get("metrics")
    return save_checkpoint(output, model, config, {"metrics": metrics} if metrics else None, half=half)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--input-long-side", type=int, default=None,
                        help="network input long side stored for predict and the node "
                             "(0: the image's own size; default: keep the checkpoint's)")
    parser.add_argument("--inference", nargs="+", default=[], metavar="KEY=VALUE",
                        help="set model.inference fields, e.g. stuff_area=512 score_threshold=0.4")
    args = parser.parse_args(argv)
    try:
        inference = dict(parse_setting(text) for text in args.inference)
        if args.input_long_side is not None:
            inference["input_long_side"] = args.input_long_side
        path = export(args.checkpoint, args.output, args.half, inference)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
