"""Turn a training checkpoint into a model file to ship: weights and config only.

    python -m upsnet_core.tools.export --checkpoint outputs/small/best.pt --output models/x.pt \
        [--half] [--input-long-side N]

The optimizer state and other training bookkeeping are dropped; ``--half`` stores the
weights as float16 (half the size; they load back into a float32 model);
``--input-long-side`` stores the network input size that ``predict`` and the node use by
default (``model.inference.input_long_side``). Metrics kept by the training run under
``extra['metrics']`` are carried over.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint


def export(checkpoint: Path, output: Path, half: bool, input_long_side: int | None = None) -> Path:
    model, config = load_model(checkpoint)
    if input_long_side is not None:
        if input_long_side < 0:
            raise ValueError(f"--input-long-side must be >= 0, got {input_long_side}")
        config.model.inference.input_long_side = input_long_side
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
    args = parser.parse_args(argv)
    try:
        path = export(args.checkpoint, args.output, args.half, args.input_long_side)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
