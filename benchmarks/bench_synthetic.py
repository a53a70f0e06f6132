"""Synthetic data generation speed (PNG writing included).

    python benchmarks/bench_synthetic.py [--frames 100] [--height 512] [--width 1024]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from upsnet_core.data.synthetic import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    for style in ("default", "dusk"):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                generate_dataset(folder, "train", args.frames, 0, args.height, args.width, style,
                                 workers)
                seconds = time.perf_counter() - start
            print(f"{args.height}x{args.width} style {style:7s} workers {workers}: "
                  f"{args.frames / seconds:5.1f} frames/s ({seconds:.1f} s for {args.frames})")


if __name__ == "__main__":
    main()
