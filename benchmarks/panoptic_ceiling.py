"""How far a dataset lets any model get: PQ of the ground truth itself, degraded the way a
model's output is.

    PYTHONPATH=. python benchmarks/panoptic_ceiling.py --data data/synthetic --split val \\
        --factors 1 2 4 8 --stuff-area 0 256 2048

Each label image is known only on a grid ``f`` times coarser than the file (the pixel at
the centre of each ``f x f`` cell, spread back over the cell), and stuff regions smaller
than ``stuff_area`` (pixels at 1024x2048, scaled to the image, as
``model.inference.stuff_area``) become unknown, as the post-processing does. A model whose
decision grid is ``f`` times coarser than the ground truth, with that threshold, scores at
most about this PQ (bilinear logits draw boundaries finer than its cells, so slightly more
is possible).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from upsnet_core.categories import LABEL_DIVISOR, CategorySet
from upsnet_core.data import build_dataset
from upsnet_core.evaluation import PanopticEvaluator

REFERENCE_AREA = 1024 * 2048
"""The image area at which ``model.inference.stuff_area`` is given (its default reference)."""


def coarse(panoptic: np.ndarray, factor: int) -> np.ndarray:
    """``panoptic (H, W)`` as known on a grid ``factor`` times coarser (nearest, cell centres)."""
    height, width = panoptic.shape
    rows = np.minimum(np.arange(height) // factor * factor + factor // 2, height - 1)
    cols = np.minimum(np.arange(width) // factor * factor + factor // 2, width - 1)
    return panoptic[rows][:, cols]


def void_small_stuff(panoptic: np.ndarray, min_area: float) -> np.ndarray:
    """Stuff segments (instance part 0) smaller than ``min_area`` pixels become void (0)."""
    ids, counts = np.unique(panoptic, return_counts=True)
    small = ids[(ids % LABEL_DIVISOR == 0) & (ids != 0) & (counts < min_area)]
    return np.where(np.isin(panoptic, small), 0, panoptic)


def ceiling(dataset, categories: CategorySet, factor: int, stuff_area: float) -> dict:
    evaluator = PanopticEvaluator(categories)
    for index in range(len(dataset)):
        _, target = dataset[index]
        truth = target["panoptic"].numpy()
        segments = target["segments_info"]
        degraded = void_small_stuff(coarse(truth, factor),
                                    stuff_area * truth.size / REFERENCE_AREA)
        present = set(np.unique(degraded).tolist())
        evaluator.update(truth, segments, degraded, [s for s in segments if s["id"] in present],
                         image_id=target["image_id"])
    return evaluator.summarize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--kind", default="synthetic")
    parser.add_argument("--categories", default="cityscapes")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--stuff-area", type=float, nargs="+", default=[0.0, 2048.0])
    args = parser.parse_args(argv)
    categories = CategorySet.from_config(args.categories)
    dataset = build_dataset(args.kind, args.data, args.split, categories)
    print(f"{len(dataset)} images of {args.data} {args.split}: PQ (things, stuff) of the ground "
          "truth on a coarser grid, small stuff regions unknown")
    print("factor  stuff_area      PQ  things   stuff")
    for factor in args.factors:
        for area in args.stuff_area:
            pq = ceiling(dataset, categories, factor, area)
            print(f"{factor:6d}  {area:10.0f}" + "".join(
                f"{100 * pq[group]['pq']:8.1f}" for group in ("All", "Things", "Stuff")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
