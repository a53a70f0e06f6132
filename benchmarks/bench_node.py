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
Both are loaded and run on one worker thread, the only thread of this process that runs
PyTorch work, as in the node (each thread that does keeps an OpenMP team, and two teams
on a 2-core machine slow each other), and the baseline's label image is compared with
the Predictor's. Their CPU time (all threads of this
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
Reference (``--reference REV``): the repository at git revision ``REV`` (its
``upsnet_core`` and its default model, unpacked with ``git archive``) in a process of
its own, its ``Predictor`` called on the same frame in the same rounds (median), as its
node called it: loaded and warmed up on the main thread, called on a worker thread. That
is the node's inference as it was at ``REV`` (without its message handling), measured in
this run. ``b53865b`` is the code the speed issue
(#14) was filed against ("today ~270-300 ms"), with the ResNet-18 default model.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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


def timed(thread: ThreadPoolExecutor, function: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds (all of this process's threads) taken by ``function()`` on
    ``thread``, and its result."""
    def run() -> tuple[float, float, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        return time.perf_counter() - wall, time.process_time() - cpu, result
    return thread.submit(run).result()


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


REFERENCE_SERVER = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from upsnet_core.checkpoint import default_checkpoint
from upsnet_core.inference import Predictor
image = np.load(sys.argv[1])
predictor = Predictor.from_checkpoint(default_checkpoint(), "cpu")
predictor(np.zeros((64, 64, 3), dtype=np.uint8))
worker = ThreadPoolExecutor(1)
print("ready", flush=True)
for _ in sys.stdin:
    wall, cpu = time.perf_counter(), time.process_time()
    worker.submit(predictor, image).result()
    print(time.perf_counter() - wall, time.process_time() - cpu, flush=True)
"""


@contextlib.contextmanager
def reference_process(revision: str, image: np.ndarray,
                      folder: Path) -> Iterator[Callable[[], tuple[float, float, None]]]:
    """``call()`` timing one ``Predictor`` call of git revision ``revision`` (its code and
    default model, module docstring) on ``image``: wall and CPU seconds."""
    tree = folder / "reference"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "upsnet_core", "models"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    np.save(folder / "frame.npy", image)
    env = dict(os.environ, PYTHONPATH=str(tree))
    process = subprocess.Popen([sys.executable, "-c", REFERENCE_SERVER, str(folder / "frame.npy")],
                               cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the reference process of {revision} did not start")

    def call() -> tuple[float, float, None]:
        process.stdin.write("\n")
        process.stdin.flush()
        wall, cpu = process.stdout.readline().split()
        return float(wall), float(cpu), None
    try:
        yield call
    finally:
        process.stdin.close()
        process.wait(30)


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
    parser.add_argument("--reference", metavar="REV",
                        help="also time the node's inference at git revision REV (docstring)")
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    times: dict[str, list[float]] = {name: [] for name in (
        "baseline", "model", "reference", "end_to_end", "baseline_cpu", "model_cpu",
        "reference_cpu")}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        checkpoint = benchmark_checkpoint(args.checkpoint, Path(folder))
        print(f"checkpoint {checkpoint}, {args.height}x{args.width} rgb8, CPU, "
              f"{torch.get_num_threads()} threads, {args.frames} frames, "
              f"input_long_side {args.input_long_side}, backend {args.backend}")
        # One thread runs all of this process's PyTorch work, loading included, as the
        # node's worker does (node.py, on_configure: a second OpenMP team slows both).
        torch_thread = ThreadPoolExecutor(1, thread_name_prefix="bench-torch")
        calls = {"baseline": torch_thread.submit(plain_call, checkpoint, image,
                                                 args.input_long_side).result(),
                 "model": torch_thread.submit(predictor_call, checkpoint, image,
                                              args.input_long_side, args.backend).result()}
        if args.reference:
            reference = stack.enter_context(reference_process(args.reference, image, Path(folder)))
        results: dict[str, PanopticResult] = {}
        with running_node(checkpoint, args.input_long_side, args.backend,
                          Path(folder) / "node.log") as probe:
            # Interleaved frame by frame, so that a busy machine slows all three alike;
            # the first round is a warm-up.
            for index in range(args.frames + 1):
                for name, call in calls.items():
                    seconds, cpu, results[name] = timed(torch_thread, call)
                    times[name].append(seconds)
                    times[name + "_cpu"].append(cpu)
                if args.reference:
                    seconds, cpu, _ = reference()
                    times["reference"].append(seconds)
                    times["reference_cpu"].append(cpu)
                times["end_to_end"].append(end_to_end(probe, image, index))
            diagnostics = probe.wait_for_diagnostics(bool, 10)
    baseline, model, reference, e2e, baseline_cpu, model_cpu, reference_cpu = (
        statistics.median(times[k][1:]) if times[k] else 0.0 for k in times)
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
    if args.reference:
        print(f"reference {args.reference} (its Predictor):  {reference * 1e3:8.1f} ms "
              f"(CPU time {reference_cpu * 1e3:.1f} ms)")
        print(f"end to end / reference:                 {e2e / reference:8.2f}")
    print(f"node overhead (end to end - model):     {(e2e - model) * 1e3:8.1f} ms")
    print(f"node overhead (end to end - node p50):  {e2e * 1e3 - node_p50:8.1f} ms")


if __name__ == "__main__":
    main()
