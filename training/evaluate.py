"""Evaluate a checkpoint on a dataset split.

    python -m training.evaluate --checkpoint CK --data DIR --split val \\
        [--merge upsnet|heuristic|hps|center_grouping] [--out results.json] [--device auto] [--max-images N]

Prints and writes PQ/SQ/RQ (All, Things, Stuff and per class), mIoU, mask AP (COCO
protocol, from the label image's thing segments and their scores) and the median
inference time per image with the device. The dataset kind, test size and class handling come from
the ``data:`` section of the config stored in the checkpoint (``--kind`` overrides the
kind). Runs the same code as the periodic evaluation of ``training.train``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from upsnet_core.checkpoint import load_model
from upsnet_core.config import UPSNetConfig
from upsnet_core.data import DATASET_KINDS, PanopticDataset
from upsnet_core.evaluation.pq import format_table
from upsnet_core.inference import resolve_device
from upsnet_core.modeling import MERGES, UPSNet

from .data import load_split
from .settings import DataSettings, data_settings
from .validation import evaluate_model


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--kind", choices=sorted(DATASET_KINDS), default=None,
                        help="dataset kind (default: data.kind of the checkpoint's config)")
    parser.add_argument("--merge", choices=MERGES, default=None,
                        help="default: the architecture's own (UPSNet: its panoptic head); "
                             "heuristic: the baseline merge, for the proposal-based models")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    return parser.parse_args(argv)


@dataclass
class Evaluation:
    """A checkpoint's model on its device, its config and data settings, and a split."""

    model: UPSNet
    config: UPSNetConfig
    data: DataSettings
    dataset: PanopticDataset
    device: torch.device


def load_evaluation(checkpoint: Path, data_root: Path, split: str, device: str = "auto",
                    kind: Optional[str] = None) -> Evaluation:
    """The model of ``checkpoint`` on ``device`` and split ``split`` of ``data_root``, read
    with the ``data:`` settings stored in the checkpoint (``kind`` overrides the dataset kind)."""
    model, config = load_model(checkpoint)
    data = data_settings(config)
    if kind is not None:
        data.kind = kind
    dataset = load_split(data, split, model.categories, root=data_root)
    resolved = resolve_device(device)
    return Evaluation(model.to(resolved), config, data, dataset, resolved)


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    """The results of :func:`training.validation.evaluate_model` plus what was evaluated."""
    run = load_evaluation(args.checkpoint, args.data, args.split, args.device, args.kind)
    results = evaluate_model(run.model, run.dataset, run.data, run.device, merge=args.merge,
                             max_images=args.max_images, progress=True)
    results.update(checkpoint=str(args.checkpoint), data=str(args.data), split=args.split)
    return results


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    results = evaluate_checkpoint(args)
    print(format_table(results["pq"], results["class_names"]))
    print(f"mIoU {100 * results['miou']:.1f}, mask AP {100 * results['mask_ap']['AP']:.1f}")
    timing = results["timing"]
    print(f"inference: median {timing['median_ms']:.1f} ms per image on {timing['device']} "
          f"({results['images']} images, merge {results['merge']})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
