"""A Cityscapes-format panoptic folder (real or synthetic) to a ROS 2 bag.

    python -m upsnet_ros.tools.make_bag --data DIR --split val --out BAG \\
        [--rate HZ] [--storage mcap|sqlite3] [--compressed [png|jpeg]] [--num N]

The bag holds, per frame and with the same header (stamp ``START + i / rate``, frame id
``camera``): the image on ``/camera/image_raw`` (``rgb8``), or on
``/camera/image_raw/compressed`` with ``--compressed`` (PNG: lossless, the default; JPEG:
what cameras send), and the ground truth on ``/ground_truth/panoptic/labels`` as a ``32SC1``
label image in the node's encoding (``category_id * 1000 + k`` for thing instance
``k >= 1``, ``category_id * 1000`` for stuff and for crowd regions of thing classes, 0 for
void). ``/ground_truth/panoptic/categories`` holds the dataset's categories once
(``upsnet_ros/msg/CategoryMap``). Needs no ROS installation (``rosbags``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from upsnet_core.categories import CategorySet
from upsnet_core.data import build_dataset
from upsnet_core.data.panoptic_dataset import PanopticDataset
from upsnet_core.rosbag_io import STORAGES, BagError, Frame, write_frames

FRAME_ID = "camera"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m upsnet_ros.tools.make_bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="Cityscapes-format folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", required=True, type=Path, help="bag folder to create")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (stamps)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    parser.add_argument("--compressed", nargs="?", const="png", choices=("png", "jpeg"),
                        default=None, help="CompressedImage instead of Image (default png)")
    parser.add_argument("--num", type=int, default=None, help="only the first N frames")
    return parser.parse_args(argv)


def dataset_frames(dataset: PanopticDataset, count: int) -> Iterator[Frame]:
    """The first ``count`` items as bag frames: ``(H, W, 3)`` uint8 image and the target's
    ``(H, W)`` int32 label image (crowd regions ``category_id * 1000``)."""
    for index in tqdm(range(count), desc="make_bag", unit="frame"):
        image, target = dataset.load(index)
        rgb = image.mul(255).round_().byte().permute(1, 2, 0).numpy()
        yield Frame(rgb, target["panoptic"].numpy(), frame_id=FRAME_ID)


def make_bag(data: Path, split: str, out: Path, rate: float = 10.0, storage: str = "mcap",
             compressed: Optional[str] = None, num: Optional[int] = None) -> int:
    """Write the bag (see the module docstring); the number of frames."""
    json_path = data / "gtFine" / f"cityscapes_panoptic_{split}.json"
    if not json_path.is_file():
        raise FileNotFoundError(f"{json_path} does not exist: --data must be a Cityscapes-format "
                                "panoptic folder (gtFine/cityscapes_panoptic_<split>.json)")
    categories = CategorySet.from_json_file(json_path)
    dataset = build_dataset("cityscapes", data, split, categories)
    count = len(dataset) if num is None else min(num, len(dataset))
    if count == 0:
        raise ValueError(f"{json_path} lists no images")
    return write_frames(out, dataset_frames(dataset, count), rate=rate, storage=storage,
                        compressed=compressed is not None, image_format=compressed or "png",
                        categories=categories)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        count = make_bag(args.data, args.split, args.out, args.rate, args.storage,
                         args.compressed, args.num)
    except (BagError, FileNotFoundError, ValueError) as error:
        print(f"make_bag: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} frames of {args.data} ({args.split}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
