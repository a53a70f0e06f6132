"""Fleet retraining end to end: bags of two simulated robots (one in the dusk style, one
parked for a while, one corrupt bag) -> ingest -> human and teacher labels -> a short
fine-tune -> gate -> versioned export -> the exported model running in the real node.
Plus: an interrupted ingest, resumed, gives the same bytes as an uninterrupted one.

Real bags (rosbags, mcap and sqlite3), real training and evaluation, a real node process
over Fast DDS; 64x128 frames and two training iterations keep it fast.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from training.fleet.__main__ import main as fleet
from training.fleet.dataset import FleetDataset, FrameRecord
from training.fleet.files import sha256_of
from training.fleet.ingest import ingest
from training.fleet.settings import load_fleet_settings
from training.fleet.simulate import simulate_robot
from upsnet_core.checkpoint import DEFAULT_CHECKPOINT, load_model, save_checkpoint
from upsnet_core.data import build_dataset
from upsnet_core.data.panoptic_dataset import read_rgb
from upsnet_core.data.panoptic_io import write_panoptic_png, write_png
from upsnet_core.data.synthetic import cityscapes_categories, generate_dataset
from upsnet_core.modeling import build_upsnet

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    """alpha (default style): 3 scenes, the first parked for 4 more frames, and a
    truncated copy of its bag; bravo (dusk style): two sqlite3 bags of 2 scenes, PNG
    CompressedImage."""
    root = tmp_path_factory.mktemp("bags")
    simulate_robot(root, "alpha", "default", frames=3, parked=4, height=64, width=128, seed=1)
    simulate_robot(root, "bravo", "dusk", bags=2, frames=2, height=64, width=128, seed=2,
                   storage="sqlite3", compressed=True)
    broken = shutil.copytree(root / "alpha" / "bag_0", root / "alpha" / "bag_broken")
    data = next(broken.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[:100])  # nothing usable left (see test_reliability_fleet)
    return root


def fleet_config(path: Path, bags: Path, work: Path, **sections) -> Path:
    values = {"work_dir": str(work), "ingest": {
        "bags": str(bags), "min_interval": 0.4,
        "topics": ["/camera/image_raw", "/camera/image_raw/compressed"]},
              **sections}
    path.write_text(yaml.safe_dump(values))
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_resumed_ingest_equals_an_uninterrupted_one(tmp_path, bags):
    settings = load_fleet_settings(fleet_config(tmp_path / "f.yaml", bags, tmp_path))
    whole = ingest(settings.ingest, FleetDataset(tmp_path / "whole"))
    assert whole.frames_kept == 7 and not whole.stopped_early
    assert list(whole.failed) == ["alpha/bag_broken"]
    assert "cannot be read" in whole.failed["alpha/bag_broken"]

    resumed = FleetDataset(tmp_path / "resumed")
    first = ingest(settings.ingest, resumed, max_frames=2)   # stops inside alpha/bag_0
    assert first.stopped_early and not first.ingested and not resumed.manifest_path.exists()
    second = ingest(settings.ingest, resumed, max_frames=4)  # redoes alpha, stops in bravo
    assert second.stopped_early and second.ingested == ["alpha/bag_0"]
    last = ingest(settings.ingest, resumed)
    assert last.skipped == ["alpha/bag_0"] and last.ingested == ["bravo/bag_0", "bravo/bag_1"]
    assert tree(resumed.root) == tree(tmp_path / "whole")

    # A crash after a bag's frames were moved into place but before its record was written.
    next(resumed.bookkeeping.glob("bravo-*.json")).unlink()
    assert len(ingest(settings.ingest, resumed).ingested) == 1
    assert tree(resumed.root) == tree(tmp_path / "whole")


def deliver_human_labels(delivery: Path, dataset: FleetDataset) -> tuple[FrameRecord, FrameRecord]:
    """A Cityscapes-layout delivery: the first alpha frame by its name, the first bravo
    frame by a stamp 3 ms off, and one annotation that matches nothing."""
    frames = dataset.read_manifest()
    by_name = next(f for f in frames if f.robot == "alpha")
    by_stamp = next(f for f in frames if f.robot == "bravo")
    entries = [(by_name.image_id, by_name), (f"labelco_000001_{by_stamp.stamp_ns + 3_000_000}",
                                             by_stamp), ("labelco_000002_1234567890123", by_name)]
    annotations, images = [], []
    for image_id, frame in entries:
        rgb = read_rgb(dataset.image_path(frame))
        ids = np.full(rgb.shape[:2], 23, np.int32)       # sky above, road below, one car
        ids[32:] = 7
        ids[36:50, 20:60] = 26000
        city = image_id.rsplit("_", 2)[0]
        (delivery / "leftImg8bit" / "train" / city).mkdir(parents=True, exist_ok=True)
        write_png(delivery / "leftImg8bit" / "train" / city / f"{image_id}_leftImg8bit.png", rgb)
        labels = delivery / "gtFine" / "cityscapes_panoptic_train"
        labels.mkdir(parents=True, exist_ok=True)
        write_panoptic_png(labels / f"{image_id}_gtFine_panoptic.png", ids)
        images.append({"id": image_id, "height": 64, "width": 128,
                       "file_name": f"{image_id}_leftImg8bit.png"})
        annotations.append({"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
                            "segments_info": [
                                {"id": i, "category_id": i // 1000 or i, "iscrowd": 0,
                                 "area": int((ids == i).sum()), "bbox": [0, 0, 1, 1]}
                                for i in (7, 23, 26000)]})
    (delivery / "gtFine" / "cityscapes_panoptic_train.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": cityscapes_categories()}))
    return by_name, by_stamp


@pytest.fixture(scope="module")
def loop(tmp_path_factory, bags) -> dict:
    """Ingest, a human delivery, then ``run``: label, fine-tune, gate, export."""
    root = tmp_path_factory.mktemp("loop")
    generate_dataset(root / "original", "train", 2, seed=0, height=64, width=128)
    # at the default model's own scale (256x512, evaluated at half size), so PQ is not 0
    generate_dataset(root / "regression", "val", 2, seed=9, height=256, width=512)
    config = fleet_config(
        root / "fleet.yaml", bags, root / "work",
        label={"human": [{"root": str(root / "delivery"), "stamp_tolerance_ms": 5.0}],
               "teacher": {"input_long_side": 256, "min_score": 0.5, "min_area": 16,
                           "device": "cpu"}},
        finetune={"base": str(DEFAULT_CHECKPOINT), "new_data_weight": 3.0,
                  "original_data": [{"root": str(root / "original"), "weight": 1.0}],
                  "training": {"max_iters": 2, "images_per_batch": 1, "warmup_iters": 1,
                               "lr_steps": [], "base_lr": 0.01, "log_period": 1,
                               "checkpoint_period": 1, "eval_period": 0},
                  "data": {"num_workers": 0, "train_scale": [0.9, 1.1]}},
        gate={"root": str(root / "regression"), "kind": "synthetic", "split": "val",
              "max_pq_drop": 1.0, "max_class_pq_drop": 1.0, "device": "cpu"},
        export={"registry": str(root / "registry"), "name": "fleet-test", "half": True})
    assert fleet(["ingest", "--config", str(config)]) == 0
    dataset = FleetDataset(root / "work" / "dataset")
    human = deliver_human_labels(root / "delivery", dataset)
    code = fleet(["run", "--config", str(config)])
    return {"root": root, "config": config, "dataset": dataset, "human": human, "code": code}


def test_the_loop_runs_and_exports_a_version(loop):
    assert loop["code"] == 0
    artifact = loop["root"] / "registry" / "upsnet-fleet-test-v1"
    assert sorted(p.name for p in artifact.iterdir()) == [
        "MODEL_CARD.md", "frames.jsonl", "metrics.json", "model.pt", "provenance.json"]
    model, config = load_model(artifact / "model.pt")
    assert config.category_set().category_ids() == model.categories.category_ids()
    provenance = json.loads((artifact / "provenance.json").read_text())
    assert provenance["base"]["sha256"] == sha256_of(DEFAULT_CHECKPOINT)
    assert provenance["data"]["robots"]["alpha"]["frames"] == 3
    assert provenance["data"]["robots"]["bravo"]["bags"] == {"bravo/bag_0": 2, "bravo/bag_1": 2}
    assert provenance["data"]["label_sources"] == {"human": 2, "teacher": 5}
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["accepted"] and set(metrics["per_class"]) >= {"road", "car", "sky"}
    assert "alpha (3 frames, 1 bags)" in (artifact / "MODEL_CARD.md").read_text()
    report = loop["root"] / "work" / "gate"
    assert (report / "report.md").read_text().startswith("# Gate: ACCEPTED")
    assert json.loads((report / "report.json").read_text())["candidate"]["images"] == 2


def test_the_dataset_is_cityscapes_layout_with_provenance(loop):
    dataset = loop["dataset"]
    frames = dataset.read_manifest()
    assert len(frames) == 7 and {f.robot for f in frames} == {"alpha", "bravo"}
    assert {(f.robot, f.topic) for f in frames} == {
        ("alpha", "/camera/image_raw"), ("bravo", "/camera/image_raw/compressed")}
    assert all(f.frame_id == "camera" for f in frames)
    by_name, by_stamp = loop["human"]
    labels = {f.image_id: f.label for f in frames}
    assert labels[by_name.image_id]["matched_by"] == "name"
    assert labels[by_stamp.image_id]["matched_by"] == "stamp"
    teacher = [f.label for f in frames if f.label["source"] == "teacher"]
    assert len(teacher) == 5
    assert {t["teacher_sha256"] for t in teacher} == {sha256_of(DEFAULT_CHECKPOINT)}
    assert all(0 < t["labelled_fraction"] < 1 for t in teacher)  # confident parts only
    model, _ = load_model(DEFAULT_CHECKPOINT)
    loaded = build_dataset("cityscapes", dataset.root, "train", model.categories)
    assert len(loaded) == 7
    _, target = loaded[[r.image_id for r in loaded.records].index(by_name.image_id)]
    assert sorted(s["category_id"] for s in target["segments_info"]) == [7, 23, 26]


def test_rerunning_steps_keeps_labels_and_skips_done_work(loop, capsys):
    dataset, config = loop["dataset"], str(loop["config"])
    before = dataset.manifest_path.read_bytes()
    assert fleet(["ingest", "--config", config]) == 0
    assert '"skipped": [\n    "alpha/bag_0"' in capsys.readouterr().out
    assert dataset.manifest_path.read_bytes() == before
    assert fleet(["label", "--config", config]) == 0
    out = capsys.readouterr().out
    assert '"unchanged": 5' in out and '"teacher": 0' in out and "labelco_000002" in out
    assert dataset.manifest_path.read_bytes() == before


def test_a_rejected_candidate_is_not_exported(loop, tmp_path):
    settings = yaml.safe_load(loop["config"].read_text())
    settings["gate"].update(max_pq_drop=0.0, max_class_pq_drop=0.0)
    settings["work_dir"] = str(tmp_path)
    config = tmp_path / "strict.yaml"
    config.write_text(yaml.safe_dump(settings))
    _, model_config = load_model(DEFAULT_CHECKPOINT)
    torch.manual_seed(0)
    untrained = save_checkpoint(tmp_path / "untrained.pt", build_upsnet(model_config), model_config)
    assert fleet(["gate", "--config", str(config), "--candidate", str(untrained)]) == 3
    report = json.loads((tmp_path / "gate" / "report.json").read_text())
    assert not report["accepted"] and report["reasons"][0].startswith("PQ drops by")
    assert fleet(["export", "--config", str(config), "--candidate", str(untrained)]) == 3
    assert not (loop["root"] / "registry" / "upsnet-fleet-test-v2").exists()


def test_missing_inputs_are_named(tmp_path, capsys):
    config = fleet_config(tmp_path / "f.yaml", tmp_path / "no-bags", tmp_path / "work")
    assert fleet(["ingest", "--config", str(config)]) == 2
    assert "no-bags does not exist" in capsys.readouterr().err
    assert fleet(["label", "--config", str(config)]) == 2
    assert "run ingest first" in capsys.readouterr().err
    assert fleet(["ingest", "--config", str(tmp_path / "nowhere.yaml")]) == 2
    assert "fleet config not found" in capsys.readouterr().err


def test_the_exported_model_runs_in_the_node(loop, tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable: the node step "
                                "needs ROS 2 (source scripts/env.sh)")
    pytest.importorskip("upsnet_ros.msg", reason="upsnet_ros messages are not built "
                        "(make ros; source scripts/env.sh)")
    from upsnet_ros.conversions import array_to_image
    from upsnet_ros.node_process import NodeProcess
    from upsnet_ros.testing import Probe
    from std_msgs.msg import Header

    model = loop["root"] / "registry" / "upsnet-fleet-test-v1" / "model.pt"
    rgb = read_rgb(loop["dataset"].image_path(loop["dataset"].read_manifest()[0]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() + 101) % 200))
        rclpy.init()
        node = NodeProcess(NodeProcess.module_command(),
                           ["-r", "__ns:=/fleet", "-p", f"checkpoint:={model}", "-p", "device:=cpu",
                            "-p", "autostart:=true", "-p", "qos.reliability:=reliable",
                            "-p", "diagnostics_period:=0.2"], tmp_path / "node.log")
        probe = Probe("/fleet")
        try:
            assert probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0,
                                    TIMEOUT), node.log()
            header = Header(frame_id="camera")
            header.stamp.sec = 42
            probe.publish(array_to_image(rgb, "rgb8", header))
            outputs = probe.outputs_for((42, 0), ["panoptic/labels"], TIMEOUT)
            assert "panoptic/labels" in outputs, node.log()
            labels = outputs["panoptic/labels"]
            assert (labels.height, labels.width, labels.encoding) == (64, 128, "32SC1")
            status = probe.wait_for_diagnostics(lambda d: "model" in d, TIMEOUT)
            assert status["model"] == str(model)
        finally:
            probe.destroy()
            code = node.stop()
            rclpy.shutdown()
        assert code == 0 and "Traceback" not in node.log(), node.log()
