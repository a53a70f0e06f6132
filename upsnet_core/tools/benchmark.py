"""Per-stage inference time of a panoptic model (any architecture) on random images.

    python -m upsnet_core.tools.benchmark --config CFG --height H --width W --runs N --json OUT

Prints and writes the median milliseconds of each stage and of the whole inference, with
the device used. JSON: ``stages_ms`` with the stages the architecture runs (UPSNet:
``{backbone,rpn,roi_heads,semantic_head,panoptic_postprocess}``: backbone + FPN, RPN, RoI
heads with pruning and mask logits, semantic head, panoptic head with all post-processing;
every architecture ends with ``panoptic_postprocess``) and ``total_ms``, medians;
``stages_p90_ms`` and ``total_p90_ms``; ``panoptic_share_of_total``. The model runs as
:class:`~upsnet_core.inference.Predictor` runs it (channels-last weights, inference
mode). Without ``--checkpoint`` the weights are random; an untrained detector scores
below the pasting threshold, so pass ``--score-threshold 0`` to push the maximum number
of detections through mask pruning and the panoptic head.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..checkpoint import load_model
from ..config import load_config
from ..inference import device_name, prepare_for_inference, resolve_device
from ..modeling import build_model
from ..profiling import StageTimer

STAGES = ("backbone", "rpn", "roi_heads", "semantic_head", "panoptic_postprocess")
"""UPSNet's stages, in the order it runs them."""


def image_size(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` (``512x1024``) as ``(height, width)``: an argparse type for the
    benchmarks' image sizes."""
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH such as 512x1024, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"image sides must be positive, got {text!r}")
    return height, width


def timed_runs(methods: dict[str, Callable[[StageTimer], Any]], device: torch.device, runs: int,
               warmup: int) -> dict[str, StageTimer]:
    """Each ``method(timer)`` called ``warmup + runs`` times, the methods taking turns run
    by run (a machine that gets busier slows them alike); per method, a timer holding the
    timed runs' milliseconds per stage it reports and under ``total``."""
    timers = {name: StageTimer(device) for name in methods}
    for index in range(warmup + runs):
        for name, method in methods.items():
            timer = timers[name]
            if index == warmup:
                timer.times.clear()
            with timer("total"):
                method(timer)
    return timers


def medians(timer: StageTimer, stages: tuple[str, ...] | None = None) -> dict:
    """``{stages_ms, stages_p90_ms, total_ms, total_p90_ms}`` of a :func:`timed_runs` timer,
    for ``stages`` (default: every stage the method reported, in the order it ran them)."""
    def p90(values: list[float]) -> float:
        return sorted(values)[int(0.9 * (len(values) - 1))]
    times = timer.times
    stages = stages or tuple(s for s in times if s != "total")
    return {"stages_ms": {s: statistics.median(times[s]) for s in stages},
            "stages_p90_ms": {s: p90(times[s]) for s in stages},
            "total_ms": statistics.median(times["total"]), "total_p90_ms": p90(times["total"])}


def run_benchmark(model, device: torch.device, height: int, width: int, runs: int,
                  warmup: int) -> dict:
    """Median and p90 milliseconds per stage over ``runs`` timed inferences."""
    model = prepare_for_inference(model, device)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, height, width, generator=generator).to(device)
    instances = []

    def predict(timer) -> None:
        with torch.inference_mode():
            result = model.predict([image], timer=timer)[0]
        instances.append(sum(s["isthing"] for s in result.segments))

    report = medians(timed_runs({"model": predict}, device, runs, warmup)["model"])
    report["panoptic_share_of_total"] = (report["stages_ms"]["panoptic_postprocess"]
                                         / report["total_ms"])
    report["instances_per_image"] = statistics.median(instances[warmup:])
    return report


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
    for stage, median in report["stages_ms"].items():
        print(f"  {stage:<20} {median:9.1f} ms (p90 {report['stages_p90_ms'][stage]:.1f})")
    print(f"  {'total':<20} {report['total_ms']:9.1f} ms (p90 {report['total_p90_ms']:.1f})")
    print(f"  panoptic head + post-processing: {100 * report['panoptic_share_of_total']:.1f}% of total")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
