"""Soak test of upsnet_node: hours-long behaviour in minutes, over real DDS.

    source scripts/env.sh
    python benchmarks/soak_node.py [--duration 600] [--rate 30] [--sizes 640x480,1024x2048]
        [--malformed 0.1] [--checkpoint CK] [--device cpu] [--out outputs/soak]

The node runs as its own process (installed executable, config/upsnet.yaml, the shipped
model unless ``--checkpoint``; input QoS reliable with depth 50 so that DDS loses no
frame and every count below is exact). This process publishes ``rgb8`` frames at
``--rate`` Hz, cycling through ``--sizes``; every ``1 / --malformed``-th frame is instead
a malformed one, cycling through every kind of raw image the node rejects
(:func:`upsnet_ros.testing.malformed_frames`). Frames the node cannot keep up with are
dropped by its newest-frame worker: expected, and counted.

Printed and written to ``OUT/soak.json`` (with one sample per ``--sample-period``):
the node's RSS at the start, at the end, its peak, and its growth from ``--warmup`` seconds
to the end; the frames sent (malformed among them) and the node's received, processed,
dropped and rejected counts (``/diagnostics``); the node's inference time p50/p99 (its
last 100 frames) and the end-to-end latency p50/p99 (publish to labels received) over
time; the node's thread count; whether the node crashed. ``OUT/soak.png`` plots RSS and
latencies over time. Exit status 1 when the node crashed, did not receive every frame, or
its rejected count differs from the malformed frames sent; the RSS growth is a figure
(with its verdict against ``--max-rss-growth``), not part of the exit status.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from upsnet_core.rosbag_io import cdr_stamp_ns
from upsnet_ros.conversions import array_to_image
from upsnet_ros.node_process import NodeProcess
from upsnet_ros.testing import (NODE_NAME, malformed_frames, process_rss_mb, process_threads,
                                spin_until)

ROOT = Path(__file__).resolve().parents[1]
QUEUE = 50
MAX_PIXELS = 16_777_216
COUNTS = ("frames_received", "frames_processed", "frames_dropped", "frames_rejected")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of input")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--sizes", default="640x480,1024x2048",
                        help="WIDTHxHEIGHT list, frames cycle through it")
    parser.add_argument("--malformed", type=float, default=0.1,
                        help="fraction of frames that are malformed (0 to 0.5)")
    parser.add_argument("--checkpoint", default="", help="node checkpoint (default: shipped)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="RSS growth is measured from this second to the end")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent")
    parser.add_argument("--sample-period", type=float, default=1.0, help="seconds")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "soak")
    args = parser.parse_args(argv)
    args.sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    if not 0 <= args.malformed <= 0.5:
        parser.error(f"--malformed must be in [0, 0.5], got {args.malformed}")
    return args


@dataclass
class Sample:
    """The figures at ``time_s`` seconds after the first frame."""

    time_s: float
    rss_mb: float
    threads: int
    sent: int
    counts: dict[str, int]
    inference_ms_p50: float
    inference_ms_p99: float
    latency_ms_p50: Optional[float]
    latency_ms_p99: Optional[float]


class Driver:
    """The rclpy side: publishes frames, receives the labels' stamps (raw: no 8 MB
    deserialization) and the node's diagnostics."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.published: dict[int, float] = {}
        self.latencies: list[float] = []
        self.diagnostics: dict[str, str] = {}
        self.node = rclpy.create_node("upsnet_soak", namespace=namespace)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=QUEUE, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, "image", reliable)
        self.node.create_subscription(Image, "panoptic/labels", self._labels, reliable, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)

    def _labels(self, data: bytes) -> None:
        sent = self.published.pop(cdr_stamp_ns(data), None)
        if sent is not None:
            self.latencies.append((time.perf_counter() - sent) * 1e3)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.namespace}/{NODE_NAME}"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def publish(self, msg: Image, good: bool) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if good:
            self.published[stamp] = time.perf_counter()
        self.publisher.publish(msg)

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout, period=0.005)

    def counts(self) -> dict[str, int]:
        return {key: int(self.diagnostics.get(key, 0)) for key in COUNTS}


class Frames:
    """Good frames cycling through the sizes, every ``period``-th one malformed."""

    def __init__(self, sizes: list[tuple[int, int]], malformed: float):
        rng = np.random.default_rng(0)
        self._pixels = [rng.integers(0, 256, (h, w, 3), np.uint8) for w, h in sizes]
        self._templates = [array_to_image(p, "rgb8", Header()) for p in self._pixels]
        self._stamps = itertools.count(1)
        self.period = round(1 / malformed) if malformed else 0
        self._bad = itertools.cycle(
            [m for m, _ in malformed_frames(self._header, MAX_PIXELS) if isinstance(m, Image)])
        self._good = itertools.cycle(self._templates)
        self.sent = self.malformed = 0

    def _header(self) -> Header:
        header = Header(frame_id="camera")
        stamp = next(self._stamps)
        header.stamp.sec, header.stamp.nanosec = 1_700_000_000 + stamp // 1000, stamp % 1000
        return header

    def next(self) -> tuple[Image, bool]:
        """The next frame and whether it is a good one."""
        self.sent += 1
        if self.period and self.sent % self.period == 0:
            self.malformed += 1
            bad = next(self._bad)
            bad.header = self._header()
            return bad, False
        template = next(self._good)
        return Image(header=self._header(), height=template.height, width=template.width,
                     encoding=template.encoding, step=template.step, data=template.data), True


def percentiles(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    p50, p99 = np.percentile(np.asarray(values), [50, 99]).tolist()
    return p50, p99


def sample(driver: Driver, frames: Frames, node: NodeProcess, started: float) -> Sample:
    p50, p99 = percentiles(driver.latencies)
    driver.latencies.clear()
    return Sample(time.monotonic() - started, process_rss_mb(node.process.pid),
                  process_threads(node.process.pid), frames.sent, driver.counts(),
                  float(driver.diagnostics.get("inference_ms_p50", 0)),
                  float(driver.diagnostics.get("inference_ms_p99", 0)), p50, p99)


def drive(args: argparse.Namespace, driver: Driver,
          node: NodeProcess) -> tuple[list[Sample], Frames]:
    """Publish at the rate for the duration, sampling; stops early if the node dies.
    The samples and the frames sent."""
    frames = Frames(args.sizes, args.malformed)
    started = time.monotonic()
    samples = [sample(driver, frames, node, started)]
    for index in itertools.count():
        due = started + index / args.rate
        if due - started >= args.duration or node.process.poll() is not None:
            break
        driver.spin_until(lambda: time.monotonic() >= due, args.duration)
        driver.publish(*frames.next())
        if time.monotonic() - started >= len(samples) * args.sample_period:
            samples.append(sample(driver, frames, node, started))

    def settled() -> bool:  # the node finished its last frame and reported every frame
        counts = driver.counts()
        return (sum(counts[k] for k in COUNTS[1:]) == counts["frames_received"] == frames.sent
                or node.process.poll() is not None)
    driver.spin_until(settled, 30.0)
    samples.append(sample(driver, frames, node, started))
    return samples, frames


def summarize(args: argparse.Namespace, samples: list[Sample], sent: int, malformed: int,
              crashed: bool, exit_code: Optional[int]) -> dict:
    rss = [s.rss_mb for s in samples]
    warm = next((s for s in samples if s.time_s >= args.warmup), samples[0])
    growth = (samples[-1].rss_mb - warm.rss_mb) / warm.rss_mb * 100
    counts = samples[-1].counts
    inference = [s.inference_ms_p50 for s in samples if s.inference_ms_p50]
    checks = {"no_crash": not crashed,
              "every_frame_received": counts["frames_received"] == sent,
              "rejected_equals_malformed_sent": counts["frames_rejected"] == malformed}
    return {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "rss_mb": {"start": rss[0], "end": rss[-1], "peak": max(rss),
                       "at_warmup": warm.rss_mb, "warmup_s": warm.time_s},
            "rss_growth_percent": growth,
            "rss_growth_below_limit": growth < args.max_rss_growth,
            "frames": {"sent": sent, "malformed_sent": malformed,
                       **{k.removeprefix("frames_"): v for k, v in counts.items()}},
            "node_inference_ms_p50_median": float(np.median(inference)) if inference else None,
            "node_exit_code": exit_code, "checks": checks, "ok": all(checks.values()),
            "samples": [asdict(s) for s in samples]}


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s.time_s for s in samples]
    figure, (memory, latency) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    memory.plot(times, [s.rss_mb for s in samples])
    memory.set_ylabel("node RSS (MiB)")
    for name, values in (("inference p50", [s.inference_ms_p50 for s in samples]),
                         ("inference p99", [s.inference_ms_p99 for s in samples]),
                         ("end to end p50", [s.latency_ms_p50 for s in samples]),
                         ("end to end p99", [s.latency_ms_p99 for s in samples])):
        latency.plot(times, [np.nan if v is None else v for v in values], label=name)
    latency.set_ylabel("ms")
    latency.set_xlabel("seconds")
    latency.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def print_summary(summary: dict) -> None:
    rss, frames = summary["rss_mb"], summary["frames"]
    print(f"node RSS MiB: start {rss['start']:.0f}, end {rss['end']:.0f}, peak {rss['peak']:.0f};"
          f" growth {summary['rss_growth_percent']:+.2f}% from {rss['warmup_s']:.0f} s "
          f"({'below' if summary['rss_growth_below_limit'] else 'ABOVE'} the limit)")
    print("frames: " + ", ".join(f"{k} {v}" for k, v in frames.items()))
    print("time s | RSS MiB | inference p50/p99 ms | end-to-end p50/p99 ms")
    samples = summary["samples"]
    step = max(1, len(samples) // 20)
    for s in samples[:-1:step] + samples[-1:]:
        e2e = ("-" if s["latency_ms_p50"] is None
               else f"{s['latency_ms_p50']:.0f}/{s['latency_ms_p99']:.0f}")
        print(f"{s['time_s']:6.0f} | {s['rss_mb']:7.0f} | "
              f"{s['inference_ms_p50']:.0f}/{s['inference_ms_p99']:.0f} | {e2e}")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}"
                                 for k, v in summary["checks"].items()))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))
    namespace = "/soak"
    node = NodeProcess.with_parameters(
        NodeProcess.installed_command(), namespace, args.out / "node.log",
        ROOT / "config" / "upsnet.yaml", device=args.device, autostart="true",
        max_image_pixels=MAX_PIXELS, **{"qos.reliability": "reliable", "qos.depth": QUEUE},
        **({"checkpoint": args.checkpoint} if args.checkpoint else {}))
    rclpy.init()
    driver = Driver(namespace)
    try:
        if not driver.spin_until(lambda: driver.publisher.get_subscription_count() > 0
                                 and bool(driver.diagnostics), args.startup_timeout):
            print(f"the node did not start:\n{node.log()[-3000:]}", file=sys.stderr)
            return 1
        samples, frames = drive(args, driver, node)
        crashed = node.process.poll() is not None
        summary = summarize(args, samples, frames.sent, frames.malformed, crashed, node.stop())
        (args.out / "soak.json").write_text(json.dumps(summary, indent=1))
        plot(samples, args.out / "soak.png")
        print_summary(summary)
        print(f"written: {args.out / 'soak.json'}, {args.out / 'soak.png'}, node log "
              f"{args.out / 'node.log'}", flush=True)
        return 0 if summary["ok"] else 1
    finally:  # the figures are out before the DDS participant is destroyed
        node.stop()
        driver.node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
