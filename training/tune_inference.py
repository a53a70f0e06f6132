"""Choose the panoptic post-processing settings of a trained model on a tuning split.

    python -m training.tune_inference --checkpoint CK --data DIR --split tune \\
        --grid stuff_area=0,512,2048 score_threshold=0.3,0.5 [--merge upsnet] \\
        [--max-images N] [--out results.json]

Every combination of the grid's values of ``model.inference`` fields is evaluated as
``training.evaluate`` does (same code) and printed by PQ, best first, followed by the
``export`` command that stores the best combination in a model file. The thresholds of
the post-processing (which detections are pasted, how small a stuff region may be) depend
on the data's object sizes and on how sure the model is; choose them on a split of their
own, not on the split whose figures are reported.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from upsnet_core.config import UPSNetConfig, parse_value, split_setting, with_inference_settings
from upsnet_core.data import PanopticDataset
from upsnet_core.modeling import MERGES, UPSNet

from .evaluate import load_evaluation
from .settings import DataSettings
from .validation import evaluate_model, headline


def parse_grid(texts: list[str]) -> dict[str, list[Any]]:
    """``["stuff_area=0,512", "score_threshold=0.5"]`` -> ``{"stuff_area": [0, 512], ...}``."""
    grid = {}
    for text in texts:
        key, values = split_setting(text)
        grid[key] = [parse_value(value) for value in values.split(",")]
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as ``{key: value}``."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def tune(model: UPSNet, config: UPSNetConfig, dataset: PanopticDataset, data: DataSettings,
         device: torch.device, grid: dict[str, list[Any]], merge: str | None = None,
         max_images: Optional[int] = None) -> list[dict[str, Any]]:
    """``[{"settings": {...}, **headline metrics}]`` for every combination, best PQ first.

    The combinations are validated (as config values) before anything is evaluated; the
    model's own inference settings are restored afterwards.
    """
    candidates = [(settings, with_inference_settings(config, settings).model.inference)
                  for settings in combinations(grid)]
    original = model.inference_config
    rows = []
    try:
        for settings, inference in candidates:
            model.inference_config = inference
            results = evaluate_model(model, dataset, data, device, merge=merge,
                                     max_images=max_images)
            rows.append({"settings": settings, **headline(results)})
    finally:
        model.inference_config = original
    return sorted(rows, key=lambda row: row["pq"], reverse=True)


def format_rows(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0]["settings"]) if rows else []
    lines = ["  ".join(f"{k:>16}" for k in keys) + "      PQ  things   stuff    mIoU"]
    for row in rows:
        lines.append("  ".join(f"{row['settings'][k]!s:>16}" for k in keys)
                     + "".join(f"{100 * row[m]:8.1f}" for m in ("pq", "pq_things", "pq_stuff", "miou")))
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.tune_inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument("--split", default="tune", help="the tuning split (not the reported one)")
    parser.add_argument("--grid", required=True, nargs="+", metavar="KEY=V1,V2,...",
                        help="model.inference fields and the values to try")
    parser.add_argument("--merge", choices=MERGES, default=None,
                        help="default: the architecture's own merge")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        run = load_evaluation(args.checkpoint, args.data, args.split, args.device)
        rows = tune(run.model, run.config, run.dataset, run.data, run.device, grid, args.merge,
                    args.max_images)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    best = " ".join(f"{k}={v}" for k, v in rows[0]["settings"].items())
    print(f"best: {best}\nstore it: python -m upsnet_core.tools.export --checkpoint "
          f"{args.checkpoint} --output MODEL.pt --inference {best}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
