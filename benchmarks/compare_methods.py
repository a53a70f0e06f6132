"""UPSNet, Panoptic FPN, Panoptic-DeepLab and HPS trained and evaluated the same way.

    PYTHONPATH=. python benchmarks/compare_methods.py --iterations 120 --output outputs/compare
    PYTHONPATH=. python benchmarks/compare_methods.py --checkpoints upsnet=A.pt panoptic_fpn=B.pt ...

Each method's small config (``config/<method>_small.yaml``: the same ResNet-18-FPN, data,
crops and batch) is copied with the training budget set to ``--iterations`` (the
learning-rate schedule and warm-up scaled to it; no evaluation during training) and trained
by the one training command, ``python -m training.train --config CFG --output DIR``; a
run that already finished (``DIR/last.pt`` at the budget) is not trained again. Every
``last.pt`` is then evaluated by ``training.validation.evaluate_model`` (the code of
``python -m training.evaluate``) on the same first ``--val-images`` frames of the
validation split, each method with its own merge. Prints (and writes to
``OUTPUT/comparison.{json,md}``) PQ / PQ things / PQ stuff / mIoU and the median CPU
milliseconds per frame of that evaluation run.

The data must exist first (the default model's seeds and sizes, models/MODEL_CARD.md):

    python -m upsnet_core.data.synthetic --out data/synthetic --split train --num 2000 --seed 0 --height 256 --width 512 --workers 2
    python -m upsnet_core.data.synthetic --out data/synthetic --split val --num 100 --seed 1 --height 256 --width 512
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from training.evaluate import load_evaluation
from training.validation import evaluate_model, headline
from upsnet_core.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"upsnet": "UPSNet", "panoptic_fpn": "Panoptic FPN",
           "panoptic_deeplab": "Panoptic-DeepLab", "hps": "HPS"}


def budget_config(method: str, iterations: int, data_root: Path, folder: Path) -> Path:
    """``config/<method>_small.yaml`` with ``iterations`` training steps, written to ``folder``."""
    values = yaml.safe_load((ROOT / "config" / f"{method}_small.yaml").read_text())
    training = values["training"]
    scale = iterations / training["max_iters"]
    training.update(
        max_iters=iterations,
        lr_steps=[max(1, round(step * scale)) for step in training.get("lr_steps", [])],
        warmup_iters=round(training.get("warmup_iters", 0) * scale),
        checkpoint_period=iterations, eval_period=0, log_period=min(20, iterations))
    values["data"].update(root=str(data_root), val_split=None)  # evaluated below, on all methods alike
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def trained_iterations(checkpoint: Path) -> int:
    if not checkpoint.is_file():
        return 0
    return int(read_checkpoint(checkpoint)["extra"].get("iteration", 0))


def train(method: str, iterations: int, data_root: Path, output: Path) -> tuple[Path, float]:
    """``last.pt`` of the method's run and the seconds its training took (0 when reused)."""
    run = output / method
    checkpoint = run / "last.pt"
    if trained_iterations(checkpoint) >= iterations:
        return checkpoint, 0.0
    config = budget_config(method, iterations, data_root, output)
    command = [sys.executable, "-m", "training.train", "--config", str(config), "--output",
               str(run), "--resume"]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return checkpoint, time.perf_counter() - start


def evaluate(checkpoint: Path, data_root: Path, images: int) -> dict:
    run = load_evaluation(checkpoint, data_root, "val", "cpu")
    results = evaluate_model(run.model, run.dataset, run.data, run.device, max_images=images)
    return {**headline(results), "median_ms": results["timing"]["median_ms"],
            "merge": results["merge"], "images": results["images"],
            "backbone_depth": run.config.model.backbone.depth}


def table(rows: dict[str, dict], iterations: int | None) -> str:
    budget = f"{iterations} iterations each" if iterations else "given checkpoints"
    lines = [f"| method ({budget}) | PQ | PQ things | PQ stuff | mIoU | CPU ms / frame (median) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for method, row in rows.items():
        lines.append(f"| {METHODS[method]} | {100 * row['pq']:.1f} | {100 * row['pq_things']:.1f} | "
                     f"{100 * row['pq_stuff']:.1f} | {100 * row['miou']:.1f} | {row['median_ms']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=120, help="training budget of every method")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "synthetic")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "compare")
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--checkpoints", nargs="+", metavar="METHOD=CHECKPOINT", default=None,
                        help="evaluate these instead of training")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.checkpoints:
        given = dict(item.split("=", 1) for item in args.checkpoints)
        unknown = sorted(set(given) - set(METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
        checkpoints = {m: (Path(p), 0.0) for m, p in given.items()}
    else:
        checkpoints = {m: train(m, args.iterations, args.data, args.output) for m in args.methods}
    rows = {}
    for method, (checkpoint, seconds) in checkpoints.items():
        rows[method] = {**evaluate(checkpoint, args.data, args.val_images),
                        "checkpoint": str(checkpoint), "train_seconds": seconds}
        print(method, json.dumps(rows[method]), flush=True)
    iterations = None if args.checkpoints else args.iterations
    text = table(rows, iterations)
    print(text)
    (args.output / "comparison.md").write_text(text + "\n")
    (args.output / "comparison.json").write_text(json.dumps(
        {"iterations": iterations, "val_images": args.val_images, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
