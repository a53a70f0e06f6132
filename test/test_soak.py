"""The soak benchmark (benchmarks/soak_node.py) in its 20-second CI version: the node
(its own process, shipped model, real DDS) takes 30 Hz of 640x480 and 1024x2048 rgb8 with
10 % malformed frames; it must not crash, must receive every frame and reject exactly the
malformed ones. The RSS and latency figures are printed, not asserted (see README.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

ROOT = Path(__file__).resolve().parents[1]


def test_twenty_second_soak(tmp_path, ros_env):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak_node.py"), "--duration", "20",
         "--warmup", "5", "--out", str(tmp_path)],
        cwd=ROOT, env=ros_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "soak.json").read_text())
    frames = summary["frames"]
    assert summary["checks"] == {"no_crash": True, "every_frame_received": True,
                                 "rejected_equals_malformed_sent": True}
    assert frames["sent"] >= 500 and frames["malformed_sent"] == frames["sent"] // 10
    assert frames["processed"] >= 1
    assert frames["processed"] + frames["dropped"] + frames["rejected"] == frames["received"]
    assert summary["node_exit_code"] == 0
    assert len(summary["samples"]) >= 15 and (tmp_path / "soak.png").stat().st_size > 0
    assert "node RSS MiB: start" in result.stdout and "checks:" in result.stdout
