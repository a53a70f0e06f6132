"""Simulated robot bags of synthetic street scenes, for tests, demos and the measured example.

    python -m training.fleet.simulate --out data/fleet/bags --robot dusk-01 --style dusk \\
        --bags 2 --frames 50 --seed 3 --height 256 --width 512 [--parked 20] [--storage sqlite3]

writes ``<out>/<robot>/bag_<i>/`` (rosbag2 through :mod:`upsnet_core.rosbag_io`): ``--frames``
scenes of :mod:`upsnet_core.data.synthetic` in the given style on ``/camera/image_raw`` at
``--rate`` Hz, the first one followed by ``--parked`` near copies of itself (a parked
robot: the same scene with fresh sensor noise). Scene ``j`` of bag ``i`` depends only on
``(seed, style, i, j)``.
"""
from __future__ import annotations

import argparse
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from upsnet_core.data.synthetic import FrameRenderer, frame_rng
from upsnet_core.rosbag_io import START_NS, Frame, write_frames

PARKED_NOISE = 1.5
"""Standard deviation (0..255 scale) of the sensor noise of parked frames."""


def _frames(renderer: FrameRenderer, seed: int, style: str, bag: int, count: int,
            parked: int, rate: float, start_ns: int) -> Iterator[Frame]:
    noise = np.random.default_rng([seed, bag])
    for index in range(count):
        image = renderer.render(frame_rng(seed, f"fleet-bag{bag}", style, index)).image
        copies = 1 + (parked if index == 0 else 0)
        for _ in range(copies):
            shaken = image + noise.normal(0, PARKED_NOISE, image.shape) if copies > 1 else image
            yield Frame(np.clip(shaken, 0, 255).astype(np.uint8), stamp_ns=start_ns)
            start_ns += round(1e9 / rate)


def simulate_robot(out: str | Path, robot: str, style: str = "default", bags: int = 1,
                   frames: int = 10, seed: int = 0, height: int = 256, width: int = 512,
                   parked: int = 0, rate: float = 2.0, storage: str = "mcap") -> list[Path]:
    """Write the bags of one robot (see the module docstring); their paths.

    Stamps start at a robot-specific offset from :data:`~upsnet_core.rosbag_io.START_NS`
    (so robots' stamps differ) and bags follow each other by an hour.
    """
    renderer = FrameRenderer(height, width, style)
    start = START_NS + (zlib.crc32(robot.encode()) % 10**6) * 10**6
    paths = []
    for bag in range(bags):
        path = Path(out) / robot / f"bag_{bag}"
        write_frames(path, _frames(renderer, seed, style, bag, frames, parked, rate,
                                   start + bag * 3600 * 10**9), storage=storage)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="bags folder")
    parser.add_argument("--robot", required=True)
    parser.add_argument("--style", default="default")
    parser.add_argument("--bags", type=int, default=1)
    parser.add_argument("--frames", type=int, default=10, help="scenes per bag")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--parked", type=int, default=0,
                        help="near copies of each bag's first scene (a parked robot)")
    parser.add_argument("--rate", type=float, default=2.0, help="frames per second")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    args = parser.parse_args(argv)
    paths = simulate_robot(args.out, args.robot, args.style, args.bags, args.frames, args.seed,
                           args.height, args.width, args.parked, args.rate, args.storage)
    print(f"wrote {len(paths)} bags of robot {args.robot}: {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
