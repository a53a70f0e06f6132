"""Training pipeline end to end on tiny synthetic data: torchrun with two processes, exact
resume, crash-safe checkpoints, graceful stop, clear errors, and evaluation.

Real processes, real torch.distributed (gloo), real files. Images are 64x128.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.models import resnet18

from training import evaluate, train
from training.data import DatasetMismatchError
from training.optimization import lr_factor, scaled_lr
from training.sampling import StreamBatchSampler
from training.settings import TrainingSettings, data_settings, training_settings
from upsnet_core.checkpoint import CheckpointError, load_model, read_checkpoint
from upsnet_core.config import config_from_dict
from upsnet_core.data.synthetic import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = yaml.safe_load((ROOT / "config" / "upsnet_small.yaml").read_text())["model"]
LOSSES = ("loss", "loss_rpn_objectness", "loss_rpn_box", "loss_box_cls", "loss_box_reg",
          "loss_mask", "loss_semantic", "loss_semantic_roi", "loss_panoptic")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, "train", 4, seed=0, height=64, width=128)
    generate_dataset(root, "val", 2, seed=1, height=64, width=128)
    return root


def write_config(path: Path, data_root: Path, categories="cityscapes", training=None,
                 data=None, model=None) -> Path:
    """A small-model config training on ``data_root`` with every period at 1 iteration."""
    values = {
        "categories": categories,
        "model": model or SMALL_MODEL,
        "training": {"base_lr": 0.02, "images_per_batch": 1, "max_iters": 4,
                     "warmup_iters": 2, "log_period": 1, "checkpoint_period": 1,
                     "eval_period": 0, "keep_last": 1, "clip_grad_norm": 10.0,
                     **(training or {})},
        "data": {"kind": "synthetic", "root": str(data_root), "num_workers": 0,
                 "train_scale": [0.75, 1.25], "crop": [56, 112], **(data or {})},
    }
    path.write_text(yaml.safe_dump(values))
    return path


def records(run: Path, kind: str = "train") -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def start_training(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def wait_until(condition, timeout: float = 120.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root) -> Path:
    """Four iterations in one go (evaluation only at the end)."""
    run = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(run / "config_in.yaml", data_root)
    assert train.main(["--config", str(config), "--output", str(run / "out")]) == 0
    return run / "out"


def test_torchrun_two_processes(tmp_path, data_root):
    config = write_config(tmp_path / "c.yaml", data_root, data={"num_workers": 1},
                          training={"eval_period": 2, "images_per_batch": 2})
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "training.train", "--config", str(config), "--output", str(out),
         "--max-iters", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    extra = read_checkpoint(out / "last.pt")["extra"]
    assert (extra["iteration"], extra["world_size"], len(extra["rng"])) == (3, 2, 2)
    assert extra["data_position"] == 6
    model, _ = load_model(out / "last.pt")
    assert [r["iteration"] for r in records(out)] == [1, 2, 3]
    assert [r["iteration"] for r in records(out, "eval")] == [2, 3]
    assert (out / "best.pt").is_file() and list((out / "tensorboard").iterdir())


def test_resume_replays_the_same_losses(tmp_path, data_root, uninterrupted):
    config = write_config(tmp_path / "c.yaml", data_root)
    out = str(tmp_path / "out")
    assert train.main(["--config", str(config), "--output", out, "--max-iters", "2"]) == 0
    assert train.main(["--config", str(config), "--output", out, "--resume"]) == 0
    expected, resumed = records(uninterrupted), records(Path(out))
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(expected, resumed):
        for name in (*LOSSES, "lr"):
            assert abs(a[name] - b[name]) <= 1e-6, (a["iteration"], name, a[name], b[name])
    weights_a = read_checkpoint(uninterrupted / "last.pt")["model"]
    weights_b = read_checkpoint(Path(out) / "last.pt")["model"]
    for name, value in weights_a.items():
        assert torch.allclose(value.float(), weights_b[name].float(), atol=1e-6), name


def test_runs_from_a_checkpoint_do_not_read_the_initial_backbone_weights(tmp_path, data_root):
    """Resuming, or fine-tuning from ``init_weights``, takes every weight from the
    checkpoint: the run's initial backbone file need no longer exist."""
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), weights)
    model = {**SMALL_MODEL, "backbone": {**SMALL_MODEL["backbone"], "weights": str(weights)}}
    config = write_config(tmp_path / "c.yaml", data_root, model=model)
    out = tmp_path / "out"
    assert train.main(["--config", str(config), "--output", str(out), "--max-iters", "2"]) == 0
    weights.unlink()
    assert train.main(["--config", str(config), "--output", str(out), "--resume"]) == 0
    fine_tune = write_config(tmp_path / "f.yaml", data_root, model=model,
                             training={"init_weights": str(out / "last.pt"), "max_iters": 1})
    assert train.main(["--config", str(fine_tune), "--output", str(tmp_path / "fine")]) == 0
    with pytest.raises(FileNotFoundError, match="resnet18.pth"):
        train.main(["--config", str(config), "--output", str(tmp_path / "new")])


def _saving(out: Path) -> bool:
    """A checkpoint is being written (its temporary file exists) after a first one exists."""
    return (out / "last.pt").is_file() and any(p.name.endswith(".tmp") for p in out.iterdir())


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path, data_root):
    config = write_config(tmp_path / "c.yaml", data_root, data={"val_split": None},
                          training={"max_iters": 1000})
    out = tmp_path / "out"
    chance = random.Random(0)
    iterations = []
    for round_ in range(3):
        process = start_training("--config", str(config), "--output", str(out), "--resume")
        try:
            wait_until(lambda: _saving(out), interval=0.001)
            time.sleep(chance.uniform(0.0, 0.1) * round_)
        finally:
            process.kill()
            process.communicate()
        iterations.append(read_checkpoint(out / "last.pt")["extra"]["iteration"])
        load_model(out / "last.pt")
    assert iterations == sorted(iterations)
    final = str(iterations[-1] + 1)
    assert train.main(["--config", str(config), "--output", str(out), "--resume",
                       "--max-iters", final]) == 0
    assert read_checkpoint(out / "last.pt")["extra"]["iteration"] == int(final)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # records the killed runs wrote after their last checkpoint were dropped on resume
    assert [r["iteration"] for r in records(out)] == list(range(1, int(final) + 1))


@pytest.mark.parametrize("number, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_saves_and_exits(tmp_path, data_root, number, code):
    config = write_config(tmp_path / "c.yaml", data_root, data={"val_split": None},
                          training={"max_iters": 1000, "checkpoint_period": 1000})
    out = tmp_path / "out"
    process = start_training("--config", str(config), "--output", str(out))
    try:
        wait_until(lambda: (out / "metrics.jsonl").is_file() and records(out))
        process.send_signal(number)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, output[-3000:]
    assert f"signal {int(number)}: saving" in output
    logged = records(out)[-1]["iteration"]
    assert read_checkpoint(out / "last.pt")["extra"]["iteration"] == logged


def test_dataset_classes_must_match_the_config(tmp_path, data_root):
    subset = {"preset": "cityscapes", "classes": ["road", "sky", "car", "person"]}
    config = write_config(tmp_path / "subset.yaml", data_root, categories=subset)
    with pytest.raises(DatasetMismatchError, match=r"not in the config: ids \[8, 11,"):
        train.main(["--config", str(config), "--output", str(tmp_path / "a")])
    extra_class = [{"id": 7, "name": "road", "isthing": 0}, {"id": 26, "name": "car", "isthing": 1},
                   {"id": 99, "name": "dragon", "isthing": 1}]
    config = write_config(tmp_path / "dragon.yaml", data_root, categories=extra_class,
                          data={"unlisted_classes": "void"})
    with pytest.raises(DatasetMismatchError, match=r"missing from the dataset: ids \[99\]"):
        train.main(["--config", str(config), "--output", str(tmp_path / "b")])


def test_missing_data_folder(tmp_path, data_root):
    config = write_config(tmp_path / "c.yaml", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data folder .*nowhere does not exist"):
        train.main(["--config", str(config), "--output", str(tmp_path / "out")])


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path, data_root, uninterrupted):
    out = tmp_path / "out"
    out.mkdir()
    (out / "last.pt").write_bytes((uninterrupted / "last.pt").read_bytes()[:5000])
    config = write_config(tmp_path / "c.yaml", data_root)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*last.pt"):
        train.main(["--config", str(config), "--output", str(out), "--resume"])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        evaluate.main(["--checkpoint", str(out / "last.pt"), "--data", str(data_root)])
    (out / "last.pt").write_bytes((uninterrupted / "last.pt").read_bytes())
    other = {**SMALL_MODEL, "semantic_head": {**SMALL_MODEL["semantic_head"], "channels": 16}}
    config = write_config(tmp_path / "other.yaml", data_root, model=other)
    with pytest.raises(CheckpointError, match="model.semantic_head.channels"):
        train.main(["--config", str(config), "--output", str(out), "--resume"])


def test_set_writes_values_over_the_config_file(tmp_path, data_root):
    config = write_config(tmp_path / "config_in.yaml", data_root)
    out = tmp_path / "out"
    assert train.main(["--config", str(config), "--output", str(out), "--set",
                       "training.max_iters=2", "model.unknown_fraction=0"]) == 0
    assert [r["iteration"] for r in records(out)] == [1, 2]
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["model"]["unknown_fraction"] == 0.0 and stored["training"]["max_iters"] == 2
    _, model_config = load_model(out / "last.pt")
    assert model_config.model.unknown_fraction == 0.0


def test_existing_run_needs_resume(tmp_path, data_root, uninterrupted):
    config = write_config(tmp_path / "c.yaml", data_root)
    with pytest.raises(FileExistsError, match="--resume"):
        train.main(["--config", str(config), "--output", str(uninterrupted)])


@pytest.mark.parametrize("merge", ["upsnet", "heuristic"])
def test_evaluate_writes_results(tmp_path, data_root, uninterrupted, merge):
    out = tmp_path / "results.json"
    assert evaluate.main(["--checkpoint", str(uninterrupted / "last.pt"), "--data",
                          str(data_root), "--split", "val", "--merge", merge,
                          "--out", str(out)]) == 0
    results = json.loads(out.read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN
    for group in ("All", "Things", "Stuff"):
        assert set(results["pq"][group]) >= {"pq", "sq", "rq"}
    assert 0.0 <= results["miou"] <= 1.0 and "AP" in results["mask_ap"]
    assert results["timing"]["median_ms"] > 0 and results["timing"]["device"]
    assert results["merge"] == merge and results["images"] == 2


def test_data_order_does_not_depend_on_the_number_of_processes():
    def stream(world_size: int, start: int, iterations: int) -> list[int]:
        ranks = [list(StreamBatchSampler(5, 4, r, world_size, 7, start, iterations))
                 for r in range(world_size)]
        return [item for batches in zip(*ranks) for batch in batches for item, _ in batch]
    whole = stream(1, 0, 6)
    assert whole == stream(2, 0, 6) == stream(4, 0, 6)
    assert whole[8:] == stream(2, 8, 4)  # resuming at stream position 8
    assert sorted(whole[:5]) == sorted(whole[5:10]) == list(range(5))  # epochs are permutations


def test_learning_rate_recipe():
    settings = TrainingSettings(base_lr=0.02, images_per_batch=8, warmup_iters=10,
                                warmup_factor=0.1, lr_steps=[20, 30], lr_gamma=0.1)
    assert scaled_lr(settings) == pytest.approx(0.01)
    factors = [lr_factor(i, settings) for i in (0, 5, 10, 19, 20, 30)]
    assert factors == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.1, 0.01])


def test_cosine_learning_rate_recipe():
    settings = TrainingSettings(warmup_iters=10, warmup_factor=0.1, max_iters=30,
                                lr_schedule="cosine")
    factors = [lr_factor(i, settings) for i in (0, 5, 10, 15, 20, 25, 30)]
    # Warm-up as the step schedule; then cos from 1 (iteration 10) to 0 (iteration 30).
    assert factors == pytest.approx([0.1, 0.55, 1.0, 0.8535534, 0.5, 0.1464466, 0.0])


@pytest.mark.parametrize("section, values, message", [
    ("training", {"max_iter": 5}, r"unknown config key\(s\) \['max_iter'\] in section 'training'"),
    ("training", {"base_lr": "fast"}, "'training.base_lr' must be float"),
    ("training", {"lr_steps": [30, 20]}, "'training.lr_steps' must be increasing"),
    ("training", {"lr_schedule": "linear"}, "'training.lr_schedule' must be one of"),
    ("training", {"lr_schedule": "cosine", "lr_steps": [20]}, "only applies to lr_schedule: step"),
    ("data", {"kind": "kitti"}, "'data.kind' must be one of"),
    ("data", {"crop": [64]}, r"'data.crop' must be \[height, width\]"),
])
def test_settings_errors_name_the_key(section, values, message):
    config = config_from_dict({section: values})
    with pytest.raises(ValueError, match=message):
        (training_settings if section == "training" else data_settings)(config)
