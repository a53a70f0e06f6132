"""PQ evaluation time: ours against cityscapesscripts' reference, both in one process.

Generates ``--frames`` synthetic frames (Cityscapes layout) in a temporary folder, writes
perturbed ground truth as a COCO-panoptic prediction set, then times:

* the reference: ``pq_compute_single_core`` + ``average_pq`` of
  ``cityscapesscripts.evaluation.evalPanopticSemanticLabeling`` (one process);
* ours, sequential: read both PNGs and ``PanopticEvaluator.update`` in one thread;
* ours, ``evaluate_files`` (PNG decoding in ``--threads`` threads, one process).

With ``--pil-png`` every PNG is first rewritten with PIL's default settings (as
``createPanopticImgs`` and panopticapi write them), which are slower to decode.
``--decoder`` picks our PNG decoder (default: libspng when pyspng is installed, else OpenCV).

    python benchmarks/bench_pq.py [--frames 200] [--height 1024] [--width 2048] [--pil-png]
        [--threads 2] [--decoder spng|opencv]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from upsnet_core.data import panoptic_io
from upsnet_core.data.panoptic_io import PNG_DECODERS, read_panoptic_png
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.evaluation.pq import PanopticEvaluator, evaluate_files
from upsnet_core.evaluation.synthetic_predictions import reference_pq, write_prediction_set


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run_sequential(gt_json: Path, gt_folder: Path, pred_json: Path, pred_folder: Path,
                   decoder: str) -> dict:
    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    predictions = {a["image_id"]: a for a in pred["annotations"]}
    evaluator = PanopticEvaluator(gt["categories"])
    for annotation in gt["annotations"]:
        prediction = predictions[annotation["image_id"]]
        evaluator.update(read_panoptic_png(gt_folder / annotation["file_name"], decoder),
                         annotation["segments_info"],
                         read_panoptic_png(pred_folder / prediction["file_name"], decoder),
                         prediction["segments_info"])
    return evaluator.summarize()


def rewrite_with_pil(folder: Path) -> None:
    for png in folder.glob("*.png"):
        Image.open(png).save(png)


def max_difference(ours: dict, theirs: dict) -> float:
    values = [(ours[g][m], theirs[g][m]) for g in ("All", "Things", "Stuff")
              for m in ("pq", "sq", "rq")]
    values += [(ours["per_class"][c][m], theirs["per_class"][c][m])
               for c in theirs["per_class"] for m in ("pq", "sq", "rq")]
    return max(abs(a - b) for a, b in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pil-png", action="store_true",
                        help="rewrite all PNGs with PIL's default settings first")
    parser.add_argument("--decoder", choices=PNG_DECODERS,
                        default=panoptic_io.default_png_decoder(), help="our PNG decoder")
    args = parser.parse_args()
    how = (" (libspng through ctypes)" if panoptic_io._LIBSPNG is not None
           else " (pyspng.load)") if args.decoder == "spng" else ""
    print(f"our PNG decoder: {args.decoder}{how}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        gt_json, seconds = timed(generate_dataset, root, "val", args.frames, 0, args.height,
                                 args.width, "default", 2)
        print(f"generated {args.frames} frames {args.height}x{args.width} in {seconds:.1f} s")
        gt_folder = root / "gtFine" / "cityscapes_panoptic_val"
        pred_json, pred_folder = root / "pred.json", root / "pred"
        _, seconds = timed(write_prediction_set, gt_json, gt_folder, pred_json, pred_folder)
        print(f"wrote the perturbed predictions in {seconds:.1f} s")
        if args.pil_png:
            rewrite_with_pil(gt_folder)
            rewrite_with_pil(pred_folder)
            print("rewrote all panoptic PNGs with PIL's default settings")
        files = (gt_json, gt_folder, pred_json, pred_folder)
        theirs, t_reference = timed(reference_pq, *files)
        sequential, t_sequential = timed(run_sequential, *files, args.decoder)
        threaded, t_threaded = timed(evaluate_files, *files, threads=args.threads,
                                     decoder=args.decoder)
    per_frame = 1000 / args.frames
    print(f"reference (cityscapesscripts, 1 process): {t_reference:7.2f} s "
          f"({t_reference * per_frame:5.1f} ms/frame)")
    for name, seconds in (("ours, one thread", t_sequential),
                          (f"ours, evaluate_files threads={args.threads}", t_threaded)):
        print(f"{name:41s}: {seconds:7.2f} s ({seconds * per_frame:5.1f} ms/frame), "
              f"{t_reference / seconds:.1f}x faster")
    print(f"PQ All {threaded['All']['pq']:.4f}; largest difference to the reference "
          f"{max(max_difference(sequential, theirs), max_difference(threaded, theirs)):.1e}")


if __name__ == "__main__":
    main()
