"""Turn a training checkpoint into a model file to ship: weights and config only.

    python -m upsnet_core.tools.export --checkpoint outputs/small/best.pt --output models/x.pt [--half]

The optimizer state and other training bookkeeping are dropped; ``--half`` stores the
weights as float16 (half the size; they load back into a float32 model). Metrics kept
by the training run under ``extra['metrics']`` are carried over.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint


def export(checkpoint: Path, output: Path, half: bool) -> Path:
    model, config = load_model(checkpoint)
    metrics = read_checkpoint(checkpoint)["extra"].get("metrics")
    return save_checkpoint(output, model, config, {"metrics": metrics} if metrics else None, half=half)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    args = parser.parse_args(argv)
    try:
        path = export(args.checkpoint, args.output, args.half)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
