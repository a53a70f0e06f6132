"""Where a training step's time goes: data loading, the forward pass by part, backward, update.

    PYTHONPATH=. python benchmarks/profile_train_step.py --config config/upsnet_small.yaml --steps 12

Runs ``--steps`` steps of the config's recipe (its data, crops, batch, optimizer) after
``--warmup`` unmeasured ones, exactly as ``training.train`` steps, and prints the median
milliseconds of: ``data`` (waiting for the batch), the forward pass of each top-level part
(``backbone``, ``rpn``, ``roi_heads``, ``semantic_head``, ``panoptic_head`` where the
architecture has them; a part called several times is summed), ``losses_other`` (the rest
of the forward pass: targets, pasting, the loss functions), ``backward`` and ``optimizer``
(clipping and the update). ``--json`` writes the same figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from training.data import training_loader
from training.distributed import DistributedContext
from training.optimization import build_optimizer, build_scheduler
from training.rng import seed_everything
from training.settings import data_settings, training_settings
from training.train import MODEL_TARGET_KEYS
from upsnet_core.config import load_config
from upsnet_core.modeling.build import build_model

PARTS = ("backbone", "instance_head.rpn", "instance_head.roi_heads", "semantic_head",
         "panoptic_head")


def time_parts(model: nn.Module, times: dict[str, float]) -> None:
    """Add each part's forward wall time (ms) of a step to ``times[short name]``."""
    for name in PARTS:
        try:
            part = model.get_submodule(name)
        except AttributeError:
            continue
        short = name.rsplit(".", 1)[-1]
        starts: list[float] = []
        part.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter()))
        part.register_forward_hook(
            lambda *_, s=starts, n=short: times.__setitem__(
                n, times.get(n, 0.0) + (time.perf_counter() - s.pop()) * 1000.0))


def profile(config_path: Path, steps: int, warmup: int) -> dict[str, float]:
    """Median ms per stage over ``steps`` measured steps."""
    config = load_config(config_path)
    training, data = training_settings(config), data_settings(config)
    seed_everything(training.seed)
    model = build_model(config).train()
    optimizer = build_optimizer(model, training)
    scheduler = build_scheduler(optimizer, training)
    context = DistributedContext(0, 1, 0, torch.device("cpu"))
    loader = iter(training_loader(data, training, config.category_set(), context, 0,
                                  steps + warmup))
    step_times: dict[str, float] = {}
    time_parts(model, step_times)
    samples: dict[str, list[float]] = defaultdict(list)
    for step in range(steps + warmup):
        step_times.clear()
        mark = time.perf_counter()
        images, targets = next(loader)
        targets = [{k: t[k] for k in MODEL_TARGET_KEYS} for t in targets]
        stages = {"data": _since(mark)}
        mark = time.perf_counter()
        total = sum(model(images, targets).values())
        forward = _since(mark)
        mark = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        stages["backward"] = _since(mark)
        mark = time.perf_counter()
        if training.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), training.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        stages["optimizer"] = _since(mark)
        stages.update(step_times)
        stages["losses_other"] = forward - sum(step_times.values())
        if step >= warmup:
            for name, value in stages.items():
                samples[name].append(value)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    medians["step_total"] = statistics.median(
        sum(values[i] for values in samples.values()) for i in range(steps))
    return medians


def _since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    medians = profile(args.config, args.steps, args.warmup)
    print(f"{args.config}: median ms per training step over {args.steps} steps "
          f"({torch.get_num_threads()} threads)")
    for name, value in medians.items():
        print(f"  {name:>14}: {value:8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"config": str(args.config), "steps": args.steps,
                                         "threads": torch.get_num_threads(),
                                         "median_ms": medians}, indent=2))


if __name__ == "__main__":
    main()
