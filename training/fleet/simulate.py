"""Simulated robot bags of synthetic street scenes, for tests, demos and the measured example.

    python -m training.fleet.simulate --out data/fleet/bags --robot dusk-01 --style dusk \\
        --bags 2 --frames 50 --seed 3 --height 256 --width 512 [--parked 20] \\
        [--storage sqlite3] [--compressed]

writes ``<out>/<robot>/bag_<i>/`` (rosbag2 through :mod:`upsnet_core.rosbag_io`): ``--frames``
scenes of :mod:`upsnet_core.data.synthetic` in the given style at ``--rate`` Hz on
``/camera/image_raw`` (or as PNG ``CompressedImage`` on ``/camera/image_raw/compressed``),
the first one followed by ``--parked`` near copies of itself (a parked robot: the same
scene with fresh sensor noise). Scene ``j`` of bag ``i`` depends only on
``(seed, style, i, j)``. With ``--annotations DIR``, the ground truth of every
``--annotate-every``-th scene goes to ``DIR`` as a human-annotation delivery in the
Cityscapes panoptic layout, named ``<robot>_<bag>_<stamp_ns>`` (matched to the ingested
frames by stamp).
"""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from upsnet_core.data.panoptic_io import write_panoptic_png, write_png
from upsnet_core.data.synthetic import (FrameRenderer, SyntheticFrame, cityscapes_categories,
                                        frame_rng)
from upsnet_core.rosbag_io import START_NS, Frame, write_frames

from .dataset import robot_city

PARKED_NOISE = 1.5
"""Standard deviation (0..255 scale) of the sensor noise of parked frames."""


class Delivery:
    """Ground truth of every ``every``-th scene as an annotation delivery (Cityscapes
    panoptic layout, split ``train``); several robots may write into one delivery."""

    def __init__(self, root: Path, robot: str, every: int):
        self.root, self.city, self.every = root, robot_city(robot), every
        self.json_path = root / "gtFine" / "cityscapes_panoptic_train.json"
        self.data = json.loads(self.json_path.read_text()) if self.json_path.is_file() else {
            "images": [], "annotations": [], "categories": cityscapes_categories()}

    def add(self, index: int, scene: SyntheticFrame, bag: int, stamp: int) -> None:
        if index % self.every:
            return
        image_id = f"{self.city}_{bag:06d}_{stamp}"
        images = self.root / "leftImg8bit" / "train" / self.city
        labels = self.root / "gtFine" / "cityscapes_panoptic_train"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        write_png(images / f"{image_id}_leftImg8bit.png", scene.image)
        write_panoptic_png(labels / f"{image_id}_gtFine_panoptic.png", scene.ids)
        height, width = scene.ids.shape
        self.data["images"].append({"id": image_id, "height": height, "width": width,
                                    "file_name": f"{image_id}_leftImg8bit.png"})
        self.data["annotations"].append({"image_id": image_id,
                                         "file_name": f"{image_id}_gtFine_panoptic.png",
                                         "segments_info": scene.segments_info})

    def write(self) -> None:
        self.json_path.write_text(json.dumps(self.data, indent=1))


def _frames(renderer: FrameRenderer, seed: int, style: str, bag: int, count: int,
            parked: int, rate: float, start_ns: int,
            delivery: Optional[Delivery]) -> Iterator[Frame]:
    noise = np.random.default_rng([seed, bag])
    for index in range(count):
        scene = renderer.render(frame_rng(seed, f"fleet-bag{bag}", style, index))
        image = scene.image
        if delivery is not None:
            delivery.add(index, scene, bag, start_ns)
        copies = 1 + (parked if index == 0 else 0)
        for _ in range(copies):
            shaken = image + noise.normal(0, PARKED_NOISE, image.shape) if copies > 1 else image
            yield Frame(np.clip(shaken, 0, 255).astype(np.uint8), stamp_ns=start_ns)
            start_ns += round(1e9 / rate)


def simulate_robot(out: str | Path, robot: str, style: str = "default", bags: int = 1,
                   frames: int = 10, seed: int = 0, height: int = 256, width: int = 512,
                   parked: int = 0, rate: float = 2.0, storage: str = "mcap",
                   compressed: bool = False, annotations: Optional[Path] = None,
                   annotate_every: int = 5) -> list[Path]:
    """Write the bags of one robot (and its annotation delivery; see the module
    docstring); the bags' paths.

    Stamps start at a robot-specific offset from :data:`~upsnet_core.rosbag_io.START_NS`
    (so robots' stamps differ) and bags follow each other by an hour.
    """
    renderer = FrameRenderer(height, width, style)
    start = START_NS + (zlib.crc32(robot.encode()) % 10**6) * 10**6
    delivery = Delivery(Path(annotations), robot, annotate_every) if annotations else None
    paths = []
    for bag in range(bags):
        path = Path(out) / robot / f"bag_{bag}"
        write_frames(path, _frames(renderer, seed, style, bag, frames, parked, rate,
                                   start + bag * 3600 * 10**9, delivery), storage=storage,
                     compressed=compressed)
        paths.append(path)
    if delivery is not None:
        delivery.write()
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
    parser.add_argument("--compressed", action="store_true", help="PNG CompressedImage")
    parser.add_argument("--annotations", type=Path, default=None,
                        help="write the ground truth of some scenes here as a human delivery")
    parser.add_argument("--annotate-every", type=int, default=5)
    args = parser.parse_args(argv)
    paths = simulate_robot(args.out, args.robot, args.style, args.bags, args.frames, args.seed,
                           args.height, args.width, args.parked, args.rate, args.storage,
                           args.compressed, args.annotations, args.annotate_every)
    print(f"wrote {len(paths)} bags of robot {args.robot}: {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
