"""Per-stage inference time of UPSNet on random images.

    python -m upsnet_core.tools.benchmark --config CFG --height H --width W --runs N --json OUT

Prints and writes the median milliseconds of each stage (backbone+FPN, RPN, RoI heads,
semantic head, panoptic head with all post-processing) and of the whole inference,
with the device used. Without ``--checkpoint`` the weights are random; an untrained
detector scores below the pasting threshold, so pass ``--score-threshold 0`` to push
the maximum number of detections through mask pruning and the panoptic head.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ..checkpoint import load_model
from ..config import load_config
from ..inference import device_name, resolve_device
from ..modeling import build_model
from ..profiling import StageTimer

def run_benchmark(model, device: torch.device, height: int, width: int, runs: int,
                  warmup: int) -> dict:
    """Median and p90 milliseconds per stage over ``runs`` timed inferences."""
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator).to(device)
    timer = StageTimer(device)
    instances = []
    for index in range(warmup + runs):
        if index == warmup:
            timer.times.clear()
        with timer("total"):
            result = model.predict([image], timer=timer)[0]
        instances.append(sum(s["isthing"] for s in result.segments))
    stages = {}
    for stage, values in timer.times.items():  # the architecture's stages, then "total"
        stages[stage] = {"median_ms": statistics.median(values),
                         "p90_ms": sorted(values)[int(0.9 * (len(values) - 1))]}
    post = stages["panoptic_postprocess"]["median_ms"]
    return {"stages": stages, "panoptic_share_of_total": post / stages["total"]["median_ms"],
            "instances_per_image": statistics.median(instances[warmup:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path)
    source.add_argument("--checkpoint", type=Path)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="override the pasting threshold (0: every detection)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.checkpoint:
        model, config = load_model(args.checkpoint)
    else:
        config = load_config(args.config)
        torch.manual_seed(0)
        model = build_model(config)
    if args.score_threshold is not None:
        model.inference_config.score_threshold = args.score_threshold
    device = resolve_device(args.device)
    report = run_benchmark(model, device, args.height, args.width, args.runs, args.warmup)
    report.update({
        "config": str(args.config or args.checkpoint), "height": args.height, "width": args.width,
        "runs": args.runs, "device": device_name(device),
        "torch": torch.__version__, "score_threshold": model.inference_config.score_threshold,
        "date": time.strftime("%Y-%m-%d"),
    })
    print(f"{report['config']} at {args.height}x{args.width} on {report['device']} "
          f"({args.runs} runs, median instances {report['instances_per_image']}):")
    for stage, values in report["stages"].items():
        print(f"  {stage:<14} {values['median_ms']:9.1f} ms (p90 {values['p90_ms']:.1f})")
    print(f"  panoptic head + post-processing: {100 * report['panoptic_share_of_total']:.1f}% of total")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
