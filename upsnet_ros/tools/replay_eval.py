"""Replay a ROS 2 bag through upsnet_node and evaluate it: accuracy and latency.

    python -m upsnet_ros.tools.replay_eval --bag BAG --out DIR [--rate 1.0|max]
        [--checkpoint CK] [--params FILE] [--namespace NS] [--running-node]
    python -m upsnet_ros.tools.replay_eval --bag BAG --out DIR --predictions-bag PRED

BAG is an input bag as ``upsnet_ros.tools.make_bag`` writes it (camera images, ground-truth
label images, category map). The tool starts the node (the installed ``upsnet_node``
executable, autostarted with the params file, the checkpoint and the camera topic remapped
onto the bag's; ``--running-node``: use the node already running in ``--namespace``),
publishes the bag's images on their topic at the bag's timing times ``--rate`` (``max``:
each frame once the node's outputs for the previous one arrived, the node's image input
then made reliable so that DDS loses none), records the node's
outputs into ``DIR/predictions`` (a bag), and evaluates that bag: PQ/SQ/RQ (All, Things,
Stuff, per class), mIoU and mask AP with the evaluator of ``training.evaluate``, latency
p50/p90/p99/max, frames processed and dropped, unmatched frames listed. It writes
``DIR/report.json``, ``DIR/report.md`` and PNG plots, and prints a summary.
``--predictions-bag`` evaluates an already recorded output bag the same way, with no node.
Every ROS process must use the same ``FASTDDS_BUILTIN_TRANSPORTS`` (``scripts/env.sh`` sets
``LARGE_DATA``). A damaged input bag (cut off mid-write, corrupt messages) is replayed and
evaluated on its intact frames; what was skipped is printed and listed in ``bag_problems``.
A node started here that dies is restarted (its lost frames count as dropped). Exit status:
0, or 2 with a message naming the bag, topic or stamp (also when nothing usable is left).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from upsnet_core.rosbag_io import BagError, open_reader, open_writer, topics
from upsnet_ros.node_process import NodeProcess
from upsnet_ros.tools.bag_evaluation import Evaluation, evaluate_bags, index_input_bag
from upsnet_ros.tools.report import summary, write_report

PACKAGE = "upsnet_ros"
ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m upsnet_ros.tools.replay_eval",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", required=True, type=Path, help="input bag (make_bag)")
    parser.add_argument("--out", required=True, type=Path, help="report folder (created)")
    parser.add_argument("--rate", default="max", type=_rate,
                        help="factor on the bag's timing (1.0: real time), or max (default)")
    parser.add_argument("--checkpoint", default="", help="node checkpoint (default: the node's)")
    parser.add_argument("--params", type=Path, default=None,
                        help="node params file (default: the installed config/upsnet.yaml)")
    parser.add_argument("--namespace", default="/replay", help="namespace of the node")
    parser.add_argument("--running-node", action="store_true",
                        help="use the upsnet_node already running in --namespace")
    parser.add_argument("--predictions-bag", type=Path, default=None,
                        help="evaluate this recorded output bag; no node, no replay")
    parser.add_argument("--image-topic", default=None,
                        help="camera topic (default /camera/image_raw or .../compressed)")
    parser.add_argument("--startup-timeout", type=float, default=180.0,
                        help="seconds to wait for the node")
    parser.add_argument("--frame-timeout", type=float, default=30.0,
                        help="seconds to wait for one frame's outputs (then it is dropped)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _rate(text: str) -> Optional[float]:
    """``max`` -> None, else a positive factor."""
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate must be > 0 or max, got {text}")
    return value


def share_file(relative: str) -> Path:
    """A file of the installed package's share folder, else of the repository."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / relative
        if installed.is_file():
            return installed
    except (ImportError, PackageNotFoundError, ValueError):
        pass
    return ROOT / relative


def params_file(args: argparse.Namespace) -> Path:
    """``--params``, else the installed (or the repository's) ``config/upsnet.yaml``."""
    return args.params or share_file("config/upsnet.yaml")


def node_arguments(args: argparse.Namespace, image_topic: str) -> list[str]:
    """ROS arguments of the node: namespace, params file, autostart, checkpoint, and the
    camera topic remapped as the launch file does (``image`` and ``image/compressed``).

    With ``--rate max`` the node's image subscription is made reliable: under back-pressure
    a frame DDS loses on a best-effort link (possible while the two sides are still
    matching) would not be replaced by a newer one, so it would cost ``--frame-timeout``
    and count as dropped although the node never saw it. At a bag rate the params file's
    QoS stays, since losses are then part of what is measured."""
    compressed = image_topic.endswith("/compressed")
    camera = image_topic[:-len("/compressed")] if compressed else image_topic
    ros_args = ["-r", f"__ns:={args.namespace}", "--params-file", str(params_file(args)),
                "-p", "autostart:=true",
                "-r", f"image:={camera}", "-r", f"image/compressed:={camera}/compressed"]
    if args.rate is None:
        ros_args += ["-p", "qos.reliability:=reliable"]
    if compressed:
        ros_args += ["-p", "subscribe_compressed:=true"]
    if args.checkpoint:
        ros_args += ["-p", f"checkpoint:={args.checkpoint}"]
    return ros_args


def replay(args: argparse.Namespace, predictions_bag: Path) -> dict:
    """Start (or find) the node, replay the bag, record ``predictions_bag``; the replay's
    settings and figures for the report."""
    import rclpy

    from upsnet_ros.tools.replay import Replayer

    index = index_input_bag(args.bag, args.image_topic)  # fails fast on a bad input bag
    with open_reader(args.bag) as reader:
        msgtype = topics(reader)[index.image_topic]
    process = None
    if not args.running_node:
        process = NodeProcess(NodeProcess.installed_command(),
                              node_arguments(args, index.image_topic), args.out / "node.log")
    rclpy.init()
    try:
        with open_writer(predictions_bag) as writer:
            replayer = Replayer(args.namespace, index.image_topic, msgtype, writer)
            try:
                stats = replayer.run(args.bag, args.rate, args.frame_timeout,
                                     progress=not args.no_progress, process=process,
                                     startup_timeout=args.startup_timeout)
            finally:
                replayer.destroy()
    finally:
        rclpy.try_shutdown()
        exit_code = process.stop() if process is not None else None
    return {"rate": "max" if args.rate is None else args.rate, "namespace": args.namespace,
            "checkpoint": args.checkpoint or "(node default)",
            "params": None if args.running_node else str(params_file(args)),
            "node": "running" if args.running_node else " ".join(NodeProcess.installed_command()),
            "node_log": None if process is None else str(process.log_path),
            "node_exit_code": exit_code, "published": stats.published,
            "seconds": stats.seconds, "timed_out": len(stats.timed_out),
            "node_restarts": len(stats.node_deaths), "node_death_exit_codes": stats.node_deaths,
            "node_input_reliability": stats.input_reliability,
            "fastdds_builtin_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS")}


def run(args: argparse.Namespace) -> Evaluation:
    """Replay (unless ``--predictions-bag``), evaluate, write the report."""
    args.out.mkdir(parents=True, exist_ok=True)
    replay_info = None
    predictions_bag = args.predictions_bag
    if predictions_bag is None:
        predictions_bag = args.out / "predictions"
        if predictions_bag.exists():
            raise BagError(f"{predictions_bag} exists already: choose a new --out folder")
        replay_info = replay(args, predictions_bag)
    evaluation = evaluate_bags(args.bag, predictions_bag, args.image_topic,
                               progress=not args.no_progress)
    evaluation.report["replay"] = replay_info
    write_report(evaluation.report, evaluation.samples, evaluation.categories, args.out)
    return evaluation


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in argv:  # appended by launch_ros; this tool takes no ROS arguments
        argv = argv[:argv.index("--ros-args")]
    args = parse_args(argv)
    try:
        evaluation = run(args)
    except (BagError, RuntimeError) as error:
        print(f"replay_eval: {error}", file=sys.stderr)
        return 2
    print(summary(evaluation.report))
    for bag, problems in evaluation.report["bag_problems"].items():
        if problems:
            print(f"replay_eval: {bag.replace('_', ' ')} is damaged: {len(problems)} problems "
                  "(damage, messages skipped with topic and stamp; all in report.json "
                  "bag_problems):\n  " + "\n  ".join(problems[:10]), file=sys.stderr)
    print(f"report: {args.out / 'report.md'} ({args.out / 'report.json'}, plots in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
