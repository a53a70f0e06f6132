"""Rosbag replay evaluation end to end: a tiny synthetic Cityscapes-format split becomes a
bag (make_bag), ``python -m upsnet_ros.tools.replay_eval`` runs as its own process, starts
the real node process with the shipped default model and talks to it over real rclpy and
Fast DDS; its report must hold every field, and with no frame dropped its PQ must equal
that of ``training.evaluate`` on the same frames. Bad inputs (missing, corrupt, missing
topic, ground truth of another size, unmatched stamps) are checked without a node.

Each test session uses its own ROS_DOMAIN_ID (from the pid), as test_node.py does.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from training.evaluate import evaluate_checkpoint  # noqa: E402
from upsnet_core import rosbag_io  # noqa: E402
from upsnet_core.categories import CategorySet  # noqa: E402
from upsnet_core.checkpoint import default_checkpoint  # noqa: E402
from upsnet_core.data import build_dataset  # noqa: E402
from upsnet_core.data.synthetic import generate_dataset  # noqa: E402
from upsnet_core.rosbag_io import GT_LABELS_TOPIC, IMAGE_TOPIC, Frame  # noqa: E402
from upsnet_ros.node_process import NodeProcess  # noqa: E402
from upsnet_ros.tools import replay_eval  # noqa: E402
from upsnet_ros.tools.make_bag import make_bag  # noqa: E402
from upsnet_ros.tools.replay import back_pressure_warning  # noqa: E402
from upsnet_ros.tools.report import PLOTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# 256x512: the size the default model is made for. The node resizes to the model's
# input_long_side (256), training.evaluate by the config's data.test_scale (0.5): the two
# give the same network input only at this size.
FRAMES, HEIGHT, WIDTH = 3, 256, 512
CATEGORIES = CategorySet.preset("cityscapes")
TIMEOUT = 600  # generous: the node loads torch and the model on a busy 2-core machine


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """This process's environment with a domain id of its own (not test_node.py's)."""
    return {**os.environ, "ROS_DOMAIN_ID": str(1 + (os.getpid() + 50) % 200)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replay") / "data"
    generate_dataset(root, "val", FRAMES, seed=11, height=HEIGHT, width=WIDTH)
    return root


@pytest.fixture(scope="module")
def bag(data) -> Path:
    out = data.parent / "bag"
    assert make_bag(data, "val", out, rate=5.0) == FRAMES
    return out


def run_tool(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "upsnet_ros.tools.replay_eval", *args,
                           "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.fixture(scope="module")
def replayed(bag, env) -> tuple[Path, dict]:
    """replay_eval at max rate with the default model and the default params file."""
    out = bag.parent / "report"
    result = run_tool(["--bag", str(bag), "--out", str(out), "--rate", "max"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"report: {out / 'report.md'}" in result.stdout
    return out, json.loads((out / "report.json").read_text())


def test_make_bag_holds_images_and_ground_truth_of_the_dataset(data, bag):
    dataset = build_dataset("cityscapes", data, "val", CATEGORIES)
    images = list(rosbag_io.iter_images(bag, IMAGE_TOPIC))
    labels = list(rosbag_io.iter_label_images(bag, GT_LABELS_TOPIC))
    assert [s for s, _, _ in images] == [s for s, _, _ in labels] == \
        [rosbag_io.START_NS + i * 200_000_000 for i in range(FRAMES)]
    assert {f for _, f, _ in images + labels} == {"camera"}
    crowd = 0
    for index, ((_, _, rgb), (_, _, label)) in enumerate(zip(images, labels)):
        image, target = dataset.load(index)
        np.testing.assert_array_equal(rgb, image.mul(255).round().byte().permute(1, 2, 0).numpy())
        np.testing.assert_array_equal(label, target["panoptic"].numpy())
        crowd += sum(s["iscrowd"] for s in target["segments_info"])
        for segment in target["segments_info"]:  # crowd: a thing class with k = 0
            is_thing = CATEGORIES.by_id(segment["category_id"]).isthing
            assert bool(segment["iscrowd"]) == (is_thing and segment["id"] % 1000 == 0)
    assert crowd > 0, "the synthetic frames should include crowd regions"
    assert rosbag_io.read_categories(bag).to_list() == CATEGORIES.to_list()


def test_report_has_every_field(replayed):
    out, report = replayed
    for group in ("All", "Things", "Stuff"):
        assert set(report["pq"][group]) == {"pq", "sq", "rq", "n"}
    assert set(report["pq"]["per_class"]) == {str(c.id) for c in CATEGORIES}
    assert 0 < report["pq"]["All"]["pq"] <= 1 and 0 < report["miou"] <= 1
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max", "mean", "count"}
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["frames"] == {"images": FRAMES, "ground_truth": FRAMES, "published": FRAMES,
                                "processed": FRAMES, "dropped": 0, "evaluated": FRAMES}, \
        (report["replay"], report["node_diagnostics"])  # what a failure needs to be read
    assert all(stamps == [] for stamps in report["unmatched"].values())
    assert len(report["per_frame"]) == FRAMES and report["throughput_fps"] > 0
    assert report["replay"]["node_exit_code"] == 0 and report["replay"]["timed_out"] == 0
    # back-pressure: the node's best-effort default input is made reliable, nothing is lost
    assert report["replay"]["node_input_reliability"] == ["reliable"]
    assert report["node_diagnostics"]["device"] == "cpu"
    assert set(report["plots"]) == set(PLOTS)
    for file in [*report["plots"].values(), "report.md", "node.log"]:
        assert (out / file).stat().st_size > 0, file
    assert "Traceback" not in (out / "node.log").read_text()
    with rosbag_io.open_reader(out / "predictions") as reader:
        recorded = rosbag_io.topics(reader)
    assert {IMAGE_TOPIC, "/replay/panoptic/labels", "/replay/panoptic/instances",
            "/replay/panoptic/categories", "/diagnostics"} <= set(recorded)


def test_replay_pq_equals_offline_evaluation(replayed, data):
    _, report = replayed
    offline = evaluate_checkpoint(argparse.Namespace(
        checkpoint=default_checkpoint(), data=data, split="val", kind=None, device="cpu",
        merge="upsnet", max_images=None))
    assert report["frames"]["dropped"] == 0
    for group in ("All", "Things", "Stuff"):
        assert report["pq"][group] == pytest.approx(offline["pq"][group], abs=1e-9), group
    for category_id, values in offline["pq"]["per_class"].items():
        assert report["pq"]["per_class"][str(category_id)] == pytest.approx(values, abs=1e-9)
    assert report["miou"] == pytest.approx(offline["miou"], abs=1e-9)
    # instances (scores) and category map come from the node's own topics
    assert report["mask_ap"]["AP"] == pytest.approx(offline["mask_ap"]["AP"], abs=1e-6)


def test_predictions_bag_is_evaluated_the_same_without_a_node(replayed, bag, tmp_path):
    out, report = replayed
    assert replay_eval.main(["--bag", str(bag), "--out", str(tmp_path),
                             "--predictions-bag", str(out / "predictions"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "report.json").read_text())
    for key in ("pq", "miou", "mask_ap", "frames", "unmatched", "latency_ms"):
        assert again[key] == report[key], key
    assert again["replay"] is None


def test_running_node_compressed_bag_at_bag_rate(data, env, tmp_path):
    """--running-node: a node started beforehand (as a launch file would), a PNG
    CompressedImage bag in sqlite3 storage, replayed at 2x the bag's timing."""
    bag = tmp_path / "bag"
    make_bag(data, "val", bag, rate=5.0, storage="sqlite3", compressed="png")
    node = NodeProcess(NodeProcess.module_command(), replay_eval.node_arguments(
        argparse.Namespace(namespace="/robot", params=None, checkpoint="", rate=2.0),
        rosbag_io.COMPRESSED_TOPIC), tmp_path / "node.log", env=env)
    try:
        result = run_tool(["--bag", str(bag), "--out", str(tmp_path / "out"), "--rate", "2.0",
                           "--namespace", "/robot", "--running-node"], env)
    finally:
        assert node.stop() == 0, node.log()
    assert result.returncode == 0, result.stdout + result.stderr + node.log()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["image_topic"] == rosbag_io.COMPRESSED_TOPIC
    assert report["replay"]["rate"] == 2.0 and report["replay"]["node"] == "running"
    assert report["replay"]["node_input_reliability"] == ["best_effort"]  # the params file's
    frames = report["frames"]
    assert frames["processed"] + frames["dropped"] == FRAMES and frames["processed"] >= 1
    assert len(report["unmatched"]["dropped"]) == frames["dropped"]


def test_back_pressure_to_a_best_effort_node_is_warned():
    """--rate max against a best-effort image subscription (a --running-node started with
    the default params) names the risk and the setting; reliable input or a bag rate not."""
    warning = back_pressure_warning(None, ["best_effort"], 30.0)
    assert "best_effort" in warning and "30 s" in warning
    assert "qos.reliability:=reliable" in warning
    assert back_pressure_warning(None, ["reliable"], 30.0) is None
    assert back_pressure_warning(2.0, ["best_effort"], 30.0) is None


# ---------------------------------------------------------------- bad input (no node)
def tool_error(args: list[str], capsys) -> str:
    assert replay_eval.main([*args, "--no-progress"]) == 2
    return capsys.readouterr().err


def test_missing_and_corrupt_bag(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert f"bag {missing} does not exist" in tool_error(
        ["--bag", str(missing), "--out", str(tmp_path / "out")], capsys)
    rosbag_io.write_frames(tmp_path / "bag", [np.zeros((4, 6, 3), np.uint8)])
    (tmp_path / "bag" / "metadata.yaml").write_text("not: [a bag")
    # The damaged metadata is reported; the intact images are read, and lack ground truth.
    error = tool_error(["--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "out")], capsys)
    assert f"bag {tmp_path / 'bag'} has no topic {GT_LABELS_TOPIC}" in error
    assert "the bag is damaged: rosbags cannot read it" in error


def test_missing_ground_truth_topic(tmp_path, capsys):
    rosbag_io.write_frames(tmp_path / "bag", [np.zeros((4, 6, 3), np.uint8)],
                           categories=CATEGORIES)
    error = tool_error(["--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "out")], capsys)
    assert f"bag {tmp_path / 'bag'} has no topic {GT_LABELS_TOPIC}" in error


def test_ground_truth_of_another_size(tmp_path, capsys):
    frame = Frame(np.zeros((4, 6, 3), np.uint8), np.full((4, 5), 7000, np.int32))
    rosbag_io.write_frames(tmp_path / "bag", [frame], categories=CATEGORIES)
    error = tool_error(["--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "out")], capsys)
    assert (f"bag {tmp_path / 'bag'}, stamp 1700000000.000000000: ground truth on "
            f"{GT_LABELS_TOPIC} is 5x4 but the image on {IMAGE_TOPIC} is 6x4") in error


def ground_truth(height: int = 8, width: int = 10) -> np.ndarray:
    """Road, a car, a crowd of cars and void."""
    labels = np.full((height, width), 7000, np.int32)
    labels[2:5, 1:4] = 26001
    labels[5:7, 6:9] = 26000
    labels[0] = 0
    return labels


def write_stamped(bag: Path, images: list[int], labels: dict[int, np.ndarray],
                  categories: CategorySet | None, label_topic: str) -> None:
    """A bag with images at ``images`` stamps and label images at ``labels``' stamps."""
    with rosbag_io.open_writer(bag) as writer:
        if categories is not None:
            topic = label_topic.replace("labels", "categories")
            writer.write(topic, rosbag_io.category_map_message(categories), 0)
        for stamp in sorted(set(images) | set(labels)):
            if stamp in images:
                rgb = np.zeros((*ground_truth().shape, 3), np.uint8)
                writer.write(IMAGE_TOPIC, rosbag_io.image_message(rgb, "rgb8", stamp, "cam"), stamp)
            if stamp in labels:
                writer.write(label_topic, rosbag_io.label_message(labels[stamp], stamp, "cam"),
                             stamp + 1000)


def test_unmatched_frames_are_counted_and_listed(tmp_path, capsys):
    a, b, c, d = (rosbag_io.START_NS + i * 10**8 for i in range(4))
    write_stamped(tmp_path / "in", [a, b, c], {b: ground_truth(), c: ground_truth(),
                                               d: ground_truth()}, CATEGORIES, GT_LABELS_TOPIC)
    write_stamped(tmp_path / "pred", [a, b, c], {b: ground_truth(), a: ground_truth()}, None,
                  "/cam/panoptic/labels")
    assert replay_eval.main(["--bag", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                             "--predictions-bag", str(tmp_path / "pred"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["unmatched"] == {
        "images_without_ground_truth": [rosbag_io.format_stamp(a)],
        "ground_truth_without_image": [rosbag_io.format_stamp(d)],
        "dropped": [rosbag_io.format_stamp(c)],
        "predictions_without_image": []}
    assert report["frames"] == {"images": 3, "ground_truth": 3, "published": 3, "processed": 2,
                                "dropped": 1, "evaluated": 1}
    # The prediction is the ground truth: PQ 1 on road and car, the crowd neither matched
    # nor a false positive (as in the reference evaluation).
    assert report["pq"]["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    assert report["latency_ms"]["max"] == pytest.approx(1000 / 1e6)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"dropped: 1: {rosbag_io.format_stamp(c)}" in markdown


def test_prediction_of_another_size(tmp_path, capsys):
    stamp = rosbag_io.START_NS
    write_stamped(tmp_path / "in", [stamp], {stamp: ground_truth()}, CATEGORIES, GT_LABELS_TOPIC)
    write_stamped(tmp_path / "pred", [], {stamp: ground_truth(8, 9)}, None, "/x/panoptic/labels")
    error = tool_error(["--bag", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                        "--predictions-bag", str(tmp_path / "pred")], capsys)
    assert (f"stamp {rosbag_io.format_stamp(stamp)}: ground truth ({GT_LABELS_TOPIC} in "
            f"{tmp_path / 'in'}) is 10x8 but the prediction (/x/panoptic/labels in "
            f"{tmp_path / 'pred'}) is 9x8") in error


def test_predictions_bag_without_node_outputs(tmp_path, capsys):
    stamp = rosbag_io.START_NS
    write_stamped(tmp_path / "in", [stamp], {stamp: ground_truth()}, CATEGORIES, GT_LABELS_TOPIC)
    error = tool_error(["--bag", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                        "--predictions-bag", str(tmp_path / "in")], capsys)
    assert "expected the labels topic of one node (<ns>/panoptic/labels); found none" in error
