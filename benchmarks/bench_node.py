"""upsnet_node latency on the CPU: model inference, end to end, and the node's overhead,
against the plain ``model.predict`` path measured in the same run.

    source scripts/env.sh
    python benchmarks/bench_node.py [--checkpoint CK] [--height 1024] [--width 2048] [--frames 10]
        [--input-long-side N] [--backend torch|onnxruntime]

Baseline: ``UPSNet.predict`` called as the node called it before its speed-ups (weights
in the default memory layout, autograd off with ``no_grad``), on the same frame after the
same conversion and resize (median).
Model inference: ``Predictor`` (channels-last weights, inference mode, or onnxruntime
with ``--backend onnxruntime``) called in this process on the same rgb8 frame (median).
Both run on a worker thread of their own, as in the node (PyTorch's CPU threading
differs between the main thread and others, a lot on a busy machine), and the baseline's
label image is compared with the Predictor's. Their CPU time (all threads of this
process) is printed too: on a machine shared with other jobs it varies far less than
the wall-clock time.
End to end: one frame published at a time to the node (its own process, installed
executable, config/upsnet.yaml, device cpu), timed from ``publish`` to the arrival of
its ``panoptic/labels`` message (median). Overhead = end to end - model inference
(conversion, DDS transport both ways, message building). The node's own inference
figure from /diagnostics is printed too. Without ``--checkpoint`` the shipped default
model is used, or a random-weight ``config/upsnet_small.yaml`` model where it is absent.
``--input-long-side`` is the node parameter (-1, default: the checkpoint's network input
size; 0: the full frame), used for all measurements.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rclpy
import torch
from std_msgs.msg import Header

from upsnet_core.checkpoint import CheckpointError, load_model, save_checkpoint
from upsnet_core.config import load_config
from upsnet_core.data.transforms import resize_image
from upsnet_core.inference import BACKENDS, Predictor, image_to_tensor, scaled_size
from upsnet_core.modeling import PanopticResult, build_upsnet
from upsnet_ros.conversions import array_to_image
from upsnet_ros.node import resolve_checkpoint
from upsnet_ros.node_process import NodeProcess
from upsnet_ros.testing import Probe, stamp_key

ROOT = Path(__file__).resolve().parents[1]
EXECUTABLE = ROOT / "install" / "upsnet_ros" / "lib" / "upsnet_ros" / "upsnet_node"


def benchmark_checkpoint(path: str | None, folder: Path) -> Path:
    """``path``, else the shipped default model where the node finds it (installed share
    folder, then the repository), else a random-weight small model."""
    if path:
        return Path(path)
    try:
        return resolve_checkpoint("")
    except CheckpointError:
        config = load_config(ROOT / "config" / "upsnet_small.yaml")
        return save_checkpoint(folder / "random_small.pt", build_upsnet(config), config)


def on_thread(function: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds (all of this process's threads) taken by ``function()`` on
    a thread of its own, as in the node, and its result."""
    outcome: list[Any] = []

    def run() -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        outcome[:] = [time.perf_counter() - wall, time.process_time() - cpu, result]
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0], outcome[1], outcome[2]


def predictor_call(checkpoint: Path, image: np.ndarray, long_side: int,
                   backend: str) -> Callable[[], PanopticResult]:
    """One ``Predictor`` call on ``image``."""
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", None if long_side == -1 else long_side,
                                          backend)
    return lambda: predictor(image)


def plain_call(checkpoint: Path, image: np.ndarray, long_side: int) -> Callable[[], PanopticResult]:
    """One call of the baseline (module docstring) on ``image``."""
    model, config = load_model(checkpoint)
    model.eval()
    if long_side == -1:
        long_side = config.model.inference.input_long_side
    height, width = image.shape[:2]
    size = scaled_size(height, width, long_side)

    def call() -> PanopticResult:
        with torch.no_grad():
            tensor = resize_image(image_to_tensor(image), size)
            return model.predict([tensor], output_sizes=[(height, width)])[0]
    return call


@contextlib.contextmanager
def running_node(checkpoint: Path, long_side: int, backend: str,
                 log: Path) -> Iterator[Probe]:
    """The node (own process, device cpu) and a probe in its namespace, once it listens."""
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
    params = ["--params-file", str(ROOT / "config" / "upsnet.yaml"), "-r", "__ns:=/bench"]
    for key, value in {"checkpoint": checkpoint, "device": "cpu", "qos.reliability": "reliable",
                       "max_image_pixels": 0, "diagnostics_period": 0.5,
                       "input_long_side": long_side, "backend": backend}.items():
        params += ["-p", f"{key}:={value}"]
    node = NodeProcess([str(EXECUTABLE)], params, log)
    rclpy.init()
    probe = Probe("/bench", topics=["panoptic/labels"])
    try:
        if not probe.spin_until(lambda: probe.image_publisher.get_subscription_count() > 0, 300):
            raise RuntimeError(f"node did not start:\n{node.log()}")
        yield probe
    except RuntimeError:
        print(node.log())
        raise
    finally:
        probe.destroy()
        rclpy.shutdown()
        node.stop()


def end_to_end(probe: Probe, image: np.ndarray, index: int) -> float:
    """Seconds from publishing frame ``index`` to the arrival of its labels."""
    header = Header(frame_id="camera")
    header.stamp.sec = index + 1
    msg = array_to_image(image, "rgb8", header)
    start = time.perf_counter()
    probe.publish(msg)
    if not probe.outputs_for(stamp_key(msg), ["panoptic/labels"], 300):
        raise RuntimeError(f"no labels for frame {index}")
    return probe.arrival["panoptic/labels"][stamp_key(msg)] - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--input-long-side", type=int, default=-1,
                        help="network input long side (-1: the checkpoint's, 0: full frame)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    times: dict[str, list[float]] = {"baseline": [], "model": [], "end_to_end": [],
                                     "baseline_cpu": [], "model_cpu": []}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = benchmark_checkpoint(args.checkpoint, Path(folder))
        print(f"checkpoint {checkpoint}, {args.height}x{args.width} rgb8, CPU, "
              f"{torch.get_num_threads()} threads, {args.frames} frames, "
              f"input_long_side {args.input_long_side}, backend {args.backend}")
        calls = {"baseline": plain_call(checkpoint, image, args.input_long_side),
                 "model": predictor_call(checkpoint, image, args.input_long_side, args.backend)}
        results: dict[str, PanopticResult] = {}
        with running_node(checkpoint, args.input_long_side, args.backend,
                          Path(folder) / "node.log") as probe:
            # Interleaved frame by frame, so that a busy machine slows all three alike;
            # the first round is a warm-up.
            for index in range(args.frames + 1):
                for name, call in calls.items():
                    seconds, cpu, results[name] = on_thread(call)
                    times[name].append(seconds)
                    times[name + "_cpu"].append(cpu)
                times["end_to_end"].append(end_to_end(probe, image, index))
            diagnostics = probe.wait_for_diagnostics(bool, 10)
    baseline, model, e2e, baseline_cpu, model_cpu = (statistics.median(times[k][1:])
                                                     for k in times)
    latency = times["end_to_end"][1:]
    node_p50 = float(diagnostics["inference_ms_p50"])
    agreement = (results["model"].panoptic == results["baseline"].panoptic).double().mean().item()
    print(f"baseline: plain model.predict (median): {baseline * 1e3:8.1f} ms "
          f"(CPU time {baseline_cpu * 1e3:.1f} ms)")
    print(f"model inference (Predictor, median):    {model * 1e3:8.1f} ms "
          f"(CPU time {model_cpu * 1e3:.1f} ms; label pixels equal to the baseline's: "
          f"{100 * agreement:.3f}%)")
    print(f"node inference  (/diagnostics p50):     {node_p50:8.1f} ms")
    print(f"end to end (publish -> labels, median): {e2e * 1e3:8.1f} ms "
          f"(min {min(latency) * 1e3:.1f}, max {max(latency) * 1e3:.1f})")
    print(f"end to end / baseline:                  {e2e / baseline:8.2f}")
    print(f"node overhead (end to end - model):     {(e2e - model) * 1e3:8.1f} ms")
    print(f"node overhead (end to end - node p50):  {e2e * 1e3 - node_p50:8.1f} ms")


if __name__ == "__main__":
    main()
