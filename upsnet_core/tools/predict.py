"""Panoptic segmentation of one image or a folder of images.

    python -m upsnet_core.tools.predict [--checkpoint CK] --input IMAGE_OR_DIR --output DIR

Without ``--checkpoint`` the default model shipped in ``models/`` is used.

Writes, in COCO panoptic format, ``DIR/panoptic/<name>.png`` (RGB-encoded segment ids)
and ``DIR/predictions.json`` (annotations with segments_info, and the categories), plus
``DIR/overlay/<name>.png`` for people to look at.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..checkpoint import default_checkpoint
from ..data.panoptic_dataset import read_rgb
from ..data.panoptic_io import write_panoptic_png, write_png
from ..inference import Predictor
from ..modeling import PanopticResult
from ..visualization import overlay

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}


def find_images(path: Path) -> list[Path]:
    """The image itself, or the images in a folder (recursively, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return images
    raise FileNotFoundError(f"input not found: {path}")


def annotation(name: str, result: PanopticResult) -> dict:
    """COCO panoptic annotation entry (segments keep our extra fields: isthing, score, centroid)."""
    segments = [{**segment, "iscrowd": 0} for segment in result.segments]
    return {"image_id": name, "file_name": f"{name}.png", "segments_info": segments}


def predict_images(predictor: Predictor, images: list[Path], output: Path) -> dict:
    """Run the predictor on every image and write PNGs, overlays and the JSON."""
    (output / "panoptic").mkdir(parents=True, exist_ok=True)
    (output / "overlay").mkdir(parents=True, exist_ok=True)
    annotations, failures = [], []
    for path in tqdm(images, desc="predict", unit="image", disable=len(images) < 2):
        try:
            rgb = read_rgb(path)
        except (ValueError, OSError) as error:  # PIL: UnidentifiedImageError is an OSError
            failures.append(f"{path}: {error}")
            continue
        result = predictor(rgb)
        panoptic = result.panoptic.cpu().numpy()
        write_panoptic_png(output / "panoptic" / f"{path.stem}.png", panoptic)
        write_png(output / "overlay" / f"{path.stem}.png", overlay(rgb, panoptic, predictor.categories))
        annotations.append(annotation(path.stem, result))
    predictions = {"annotations": annotations, "categories": predictor.categories.to_list()}
    (output / "predictions.json").write_text(json.dumps(predictions, indent=1))
    for failure in failures:
        print(f"skipped: {failure}", file=sys.stderr)
    return predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model checkpoint (default: the shipped default model)")
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--input-long-side", type=int, default=None,
                        help="resize so the long side has this many pixels before inference "
                             "(default: the model's inference.input_long_side; 0: no resize)")
    args = parser.parse_args(argv)
    try:
        checkpoint = args.checkpoint or default_checkpoint()
        predictor = Predictor.from_checkpoint(checkpoint, args.device, args.input_long_side)
        images = find_images(args.input)
    except (FileNotFoundError, ValueError) as error:  # CheckpointError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    predictions = predict_images(predictor, images, args.output)
    print(f"{len(predictions['annotations'])}/{len(images)} images segmented into {args.output}")
    return 0 if len(predictions["annotations"]) == len(images) else 1


if __name__ == "__main__":
    sys.exit(main())
