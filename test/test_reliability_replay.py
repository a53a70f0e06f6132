"""replay_eval under faults, end to end (real node processes, real DDS, real bags): the
node killed with SIGKILL mid-replay is restarted and the frames it lost are reported as
dropped; a bag cut off mid-write is evaluated on its intact frames, and one of which
nothing is left fails with a clear message (exit 2)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from upsnet_core.data.synthetic import generate_dataset  # noqa: E402
from upsnet_ros.tools import replay_eval  # noqa: E402
from upsnet_ros.tools.make_bag import make_bag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 30
TIMEOUT = 600  # generous: the node loads torch and the model on a busy 2-core machine


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """30 frames of 64x128 at 10 Hz (mcap): more than the node keeps up with."""
    root = tmp_path_factory.mktemp("replay_faults")
    generate_dataset(root / "data", "val", FRAMES, seed=5, height=64, width=128)
    assert make_bag(root / "data", "val", root / "bag", rate=10.0) == FRAMES
    return root / "bag"


def node_pids(namespace: str) -> list[int]:
    """Processes whose command line is an upsnet_node in ``namespace`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"__ns:={namespace}".encode() in argv and any(b"upsnet_node" in a or
                                                          b"upsnet_ros.node" in a for a in argv):
            pids.append(int(entry.name))
    return pids


def wait_for_line(tool: subprocess.Popen, prefix: str) -> list[str]:
    """The tool's output lines up to and including the first that starts with ``prefix``
    (all of it if the tool exits first). Read from its pipe: no DDS discovery here."""
    lines = []
    for line in tool.stdout:
        lines.append(line)
        if line.startswith(prefix):
            break
    return lines


def test_node_killed_mid_replay_is_restarted_and_lost_frames_count_as_dropped(
        bag, ros_env, node_checkpoint, tmp_path):
    out, namespace = tmp_path / "report", "/replay_kill"
    tool = subprocess.Popen(
        [sys.executable, "-m", "upsnet_ros.tools.replay_eval", "--bag", str(bag), "--out",
         str(out), "--rate", "0.5", "--checkpoint", str(node_checkpoint), "--namespace",
         namespace, "--frame-timeout", "30", "--no-progress"],
        cwd=ROOT, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = out / "node.log"
        started = wait_for_line(tool, "replay: node ready, publishing")
        assert started[-1].startswith("replay: node ready"), "".join(started)
        # Killed 1 s into the 6 s of frames (3 s at 10 Hz, replayed at half speed): mid-replay,
        # not while the node starts. The frames due while it restarts then come in a burst,
        # more than it keeps up with, so some are lost.
        time.sleep(1.0)
        (pid,) = node_pids(namespace)
        os.kill(pid, signal.SIGKILL)
        output, _ = tool.communicate(timeout=TIMEOUT)
    finally:
        tool.kill()
    assert tool.returncode == 0, output
    report = json.loads((out / "report.json").read_text())
    replay, frames = report["replay"], report["frames"]
    assert replay["node_restarts"] == 1 and replay["node_death_exit_codes"] == [-signal.SIGKILL]
    assert replay["node_exit_code"] == 0
    assert f"replay: the node exited with code {-signal.SIGKILL}; restarted it" in output
    assert frames["images"] == FRAMES and frames["processed"] + frames["dropped"] == FRAMES
    assert frames["dropped"] >= 1 and len(report["unmatched"]["dropped"]) == frames["dropped"]
    # The restarted node segments the rest: the last frame is always processed.
    last = report["per_frame"][-1]["stamp"]
    assert last == "1700000002.900000000", report["per_frame"][-3:]
    assert log.read_text().count("active:") == 2


def test_a_bag_cut_mid_write_is_evaluated_on_its_intact_frames(bag, ros_env, node_checkpoint,
                                                               tmp_path):
    cut = shutil.copytree(bag, tmp_path / "cut")
    (data,) = cut.glob("*.mcap")
    content = data.read_bytes()
    data.write_bytes(content[:len(content) * 6 // 10])
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "upsnet_ros.tools.replay_eval", "--bag", str(cut), "--out",
         str(out), "--rate", "max", "--checkpoint", str(node_checkpoint), "--namespace",
         "/replay_cut", "--no-progress"],
        cwd=ROOT, env=ros_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    frames, problems = report["frames"], report["bag_problems"]["input_bag"]
    assert FRAMES * 0.5 <= frames["images"] < FRAMES and frames["dropped"] == 0
    assert frames["evaluated"] == min(frames["images"], frames["ground_truth"])
    assert any("cut off at byte" in p for p in problems)
    assert any(p.startswith(f"{FRAMES - frames['images']} of the {FRAMES} messages of "
                            "/camera/image_raw") for p in problems) or \
        any(p.startswith("/camera/image_raw log time") for p in problems), problems
    assert "skipped" in result.stderr


def test_a_bag_with_nothing_usable_left_fails_with_a_clear_message(bag, tmp_path, capsys):
    cut = shutil.copytree(bag, tmp_path / "cut")
    (data,) = cut.glob("*.mcap")
    data.write_bytes(data.read_bytes()[:30_000])  # the first image, no ground truth
    assert replay_eval.main(["--bag", str(cut), "--out", str(tmp_path / "out"),
                             "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert f"bag {cut}: nothing to evaluate: 1 images and 0 ground-truth label images" in error
    assert "the bag is damaged" in error and "cut off at byte" in error
