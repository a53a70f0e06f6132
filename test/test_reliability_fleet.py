"""Fleet ingest under faults, on real bags and real processes: bags cut off mid-write or
holding a corrupt message give their intact frames (exit 0, what was skipped listed);
bags of which nothing is usable fail with a clear message (exit 2); and an ingest killed
with SIGKILL at random points, then rerun, ends byte-identical to an uninterrupted one."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from training.fleet.dataset import FleetDataset
from training.fleet.settings import load_fleet_settings
from training.fleet.simulate import simulate_robot
from upsnet_core import rosbag_io
from upsnet_core.data.panoptic_dataset import read_rgb

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["/camera/image_raw", "/camera/image_raw/compressed"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    """alpha: one mcap bag of 8 raw frames; bravo: one sqlite3 bag of 8 PNG frames."""
    root = tmp_path_factory.mktemp("fleet_faults") / "bags"
    simulate_robot(root, "alpha", "default", frames=8, height=64, width=128, seed=1)
    simulate_robot(root, "bravo", "dusk", frames=8, height=64, width=128, seed=2,
                   storage="sqlite3", compressed=True)
    return root


def fleet_config(path: Path, bags: Path, work: Path) -> Path:
    path.write_text(yaml.safe_dump({"work_dir": str(work), "ingest": {
        "bags": str(bags), "min_interval": 0.0, "duplicate_threshold": 0.0, "topics": TOPICS}}))
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_ingest(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.fleet", "ingest", "--config",
                           str(config)], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def test_damaged_bags_give_their_intact_frames(bags, tmp_path):
    damaged = shutil.copytree(bags, tmp_path / "bags")
    for robot in ("alpha", "bravo"):  # each robot's bag cut at 70 %
        data = storage_file(damaged / robot / "bag_0")
        data.write_bytes(data.read_bytes()[:data.stat().st_size * 7 // 10])
    config = fleet_config(tmp_path / "fleet.yaml", damaged, tmp_path / "work")
    result = run_ingest(config)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.split("ingest: ", 1)[1])
    assert sorted(report["ingested"]) == ["alpha/bag_0", "bravo/bag_0"] and not report["failed"]
    assert sorted(report["damaged"]) == ["alpha/bag_0", "bravo/bag_0"]
    assert 2 <= report["frames_kept"] < 16
    for problems in report["damaged"].values():
        assert any("cut off at byte" in p for p in problems), problems
    # The kept frames are the intact bags' own frames, pixel for pixel.
    dataset = FleetDataset(load_fleet_settings(config).dataset)
    for record in dataset.read_manifest():
        original = bags / record.bag
        (stamp, _, rgb), = [f for f in rosbag_io.iter_images(original, record.topic)
                            if f[0] == record.stamp_ns]
        assert (read_rgb(dataset.image_path(record)) == rgb).all()
    record = json.loads(next(dataset.bookkeeping.glob("alpha-*.json")).read_text())
    assert record["problems"] == report["damaged"]["alpha/bag_0"]


def test_no_usable_bag_fails_with_a_clear_message(bags, tmp_path):
    unusable = shutil.copytree(bags / "alpha", tmp_path / "bags" / "alpha")
    data = storage_file(unusable / "bag_0")
    data.write_bytes(data.read_bytes()[:1000])
    result = run_ingest(fleet_config(tmp_path / "fleet.yaml", tmp_path / "bags", tmp_path / "w"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: no usable bag in" in result.stderr
    assert "alpha/bag_0: bag" in result.stderr
    assert "no intact image on /camera/image_raw" in result.stderr
    assert "/camera/image_raw log time 1700000" in result.stderr  # the one cut off


def test_ingest_killed_at_random_points_then_rerun_equals_an_uninterrupted_one(bags, tmp_path):
    whole = fleet_config(tmp_path / "whole.yaml", bags, tmp_path / "whole")
    assert run_ingest(whole).returncode == 0
    expected = tree(tmp_path / "whole")
    frames = sum(name.endswith(".png") for name in expected)

    config = fleet_config(tmp_path / "killed.yaml", bags, tmp_path / "killed")
    root = tmp_path / "killed"
    kills, killed = random.Random(16).sample(range(1, frames + 1), 3), 0
    for written in sorted(kills):  # kill once this many PNG files exist (staged or in place)
        process = subprocess.Popen([sys.executable, "-m", "training.fleet", "ingest",
                                    "--config", str(config)], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if sum(1 for _ in root.rglob("*.png")) >= written:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        killed += process.wait() == -signal.SIGKILL
    assert killed == len(kills)  # each run was killed before it finished
    assert run_ingest(config).returncode == 0
    assert tree(root) == expected  # same frames, same manifest and records: none twice
