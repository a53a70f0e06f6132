"""Panoptic quality (PQ, SQ, RQ) with the semantics of the COCO / Cityscapes reference.

Command line, on COCO-panoptic-format files (ground truth and predictions)::

    python -m upsnet_core.evaluation.pq --gt-json F --gt-folder D \\
        --pred-json F --pred-folder D [--out results.json]

Semantics (as ``cityscapesscripts.evaluation.evalPanopticSemanticLabeling``): id ``0`` is
void; a ground-truth and a predicted segment of the same category match when their IoU is
strictly above 0.5, the IoU's union leaving out the predicted pixels that lie on void;
ground-truth crowd segments are never matched and are not false negatives; an unmatched
prediction is not a false positive when more than half of it lies on void or on the
(last listed) crowd region of its category. Ground-truth areas are taken from
``segments_info`` when given (as the reference does), predicted areas from the map.

Per image, all overlaps come from histograms of compact index pairs (row block by row
block, so that intermediates stay in cache); no full-image pass per segment.
"""
from __future__ import annotations

import argparse
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import cv2
import numpy as np

from ..categories import CategorySet
from ..data.panoptic_io import IdIndexer, load_json, read_panoptic_png, unlisted_ids

MATCH_IOU = 0.5
IGNORE_FRACTION = 0.5
BLOCK_PIXELS = 1 << 16
"""Overlaps are counted in row blocks of about this many pixels (cache-sized)."""
GROUPS = (("All", None), ("Things", True), ("Stuff", False))


class PanopticEvaluator:
    """Accumulates PQ statistics image by image; :meth:`summarize` gives the metrics.

    ``categories``: a :class:`CategorySet` or COCO-style category dicts (id, name, isthing).
    """

    def __init__(self, categories: CategorySet | Iterable[Mapping]):
        entries = [(c.id, c.name, c.isthing) if not isinstance(c, Mapping)
                   else (int(c["id"]), str(c.get("name", c["id"])), bool(c["isthing"]))
                   for c in categories]
        self.category_ids = np.asarray([e[0] for e in entries], dtype=np.int64)
        self.names = [e[1] for e in entries]
        self.isthing = np.asarray([e[2] for e in entries], dtype=bool)
        self._position = {int(c): i for i, c in enumerate(self.category_ids)}
        self.iou = np.zeros(len(entries))
        self.tp, self.fp, self.fn = (np.zeros(len(entries), dtype=np.int64) for _ in range(3))
        self._indexer = IdIndexer()

    def update(self, gt_panoptic: np.ndarray, gt_segments: Sequence[Mapping],
               pred_panoptic: np.ndarray, pred_segments: Sequence[Mapping], image_id: str = "",
               gt_source: str = "ground truth", pred_source: str = "prediction") -> None:
        """Add one image.

        Args:
            gt_panoptic, pred_panoptic: ``(H, W)`` integer segment ids, ``0`` void.
            gt_segments: dicts with ``id``, ``category_id``, optional ``iscrowd`` and ``area``.
            pred_segments: dicts with at least ``id`` and ``category_id``.
            image_id, gt_source, pred_source: names used in error messages.
        Raises:
            ValueError: sizes differ, an id of a map is not listed in its segments, a listed
                predicted segment is absent from its map, an unknown category, a duplicate id.
        """
        if gt_panoptic.shape != pred_panoptic.shape:
            raise ValueError(f"image {image_id}: size mismatch: {gt_source} is "
                             f"{gt_panoptic.shape} but {pred_source} is {pred_panoptic.shape}")
        gt_ids, gt_cat = self._parse(gt_segments, gt_source, image_id)
        pred_ids, pred_cat = self._parse(pred_segments, pred_source, image_id)
        overlap = np.zeros((len(gt_ids) + 1, len(pred_ids) + 1), dtype=np.int64)
        step = max(1, BLOCK_PIXELS // max(1, gt_panoptic.shape[-1]))
        for top in range(0, gt_panoptic.shape[0], step):
            rows = slice(top, top + step)
            overlap += joint_histogram(
                self._index(gt_panoptic, rows, gt_ids, gt_source, image_id),
                self._index(pred_panoptic, rows, pred_ids, pred_source, image_id),
                len(gt_ids) + 1, len(pred_ids) + 1)
        pred_area = overlap[:, 1:].sum(axis=0)
        if (pred_area == 0).any():
            raise ValueError(f"{pred_source} (image {image_id}): segments "
                             f"{pred_ids[pred_area == 0].tolist()} are listed in segments_info "
                             "but absent from the map")
        gt_area = np.asarray([s.get("area", -1) for s in gt_segments], dtype=np.int64)
        gt_area = np.where(gt_area < 0, overlap[1:, :].sum(axis=1), gt_area)
        crowd = np.asarray([bool(s.get("iscrowd", 0)) for s in gt_segments], dtype=bool)
        self._accumulate(overlap, gt_cat, gt_area, crowd, pred_cat, pred_area)

    def _parse(self, segments: Sequence[Mapping], source: str,
               image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Segment ids and category positions, validated."""
        ids = np.asarray([int(s["id"]) for s in segments], dtype=np.int64)
        if len(np.unique(ids)) != len(ids) or (ids == 0).any():
            raise ValueError(f"{source} (image {image_id}): segment ids must be distinct and "
                             f"non-zero; got {sorted(ids.tolist())}")
        positions = []
        for s in segments:
            category_id = int(s["category_id"])
            if category_id not in self._position:
                raise ValueError(f"{source} (image {image_id}): segment {s['id']} has unknown "
                                 f"category_id {category_id}; known: {self.category_ids.tolist()}")
            positions.append(self._position[category_id])
        return ids, np.asarray(positions, dtype=np.int64)

    def _index(self, panoptic: np.ndarray, rows: slice, ids: np.ndarray, source: str,
               image_id: str) -> np.ndarray:
        """Compact index of ``panoptic[rows]``; an unlisted id anywhere is an error."""
        index = self._indexer(panoptic[rows], ids)
        if (index < 0).any():
            raise ValueError(f"{source} (image {image_id}): ids "
                             f"{unlisted_ids(panoptic, self._indexer(panoptic, ids))} appear in "
                             "the map but not in segments_info")
        return index

    def _accumulate(self, overlap: np.ndarray, gt_cat: np.ndarray, gt_area: np.ndarray,
                    crowd: np.ndarray, pred_cat: np.ndarray, pred_area: np.ndarray) -> None:
        """Matches, TP/FP/FN and IoU sums of one image from its overlap matrix.

        ``overlap[g, p]``: pixels of gt segment ``g - 1`` and predicted segment ``p - 1``
        (index 0: void).
        """
        size = len(self.category_ids)
        inter = overlap[1:, 1:]
        on_void = overlap[0, 1:]
        union = gt_area[:, None] + pred_area[None, :] - inter - on_void[None, :]
        iou = inter / np.maximum(union, 1)
        match = ((inter > 0) & (gt_cat[:, None] == pred_cat[None, :]) & ~crowd[:, None]
                 & (iou > MATCH_IOU))
        gt_matched, pred_matched = match.any(axis=1), match.any(axis=0)
        matched_cat = np.broadcast_to(gt_cat[:, None], match.shape)[match]
        self.tp += np.bincount(matched_cat, minlength=size)
        self.iou += np.bincount(matched_cat, weights=iou[match], minlength=size)
        self.fn += np.bincount(gt_cat[~gt_matched & ~crowd], minlength=size)
        crowd_row = np.full(size, -1)  # row -1: the zero row appended below
        for g in np.flatnonzero(crowd):
            crowd_row[gt_cat[g]] = g  # the last crowd segment of a class wins, as in the reference
        inter_or_zero = np.concatenate([inter, np.zeros((1, inter.shape[1]), inter.dtype)])
        ignored = on_void + inter_or_zero[crowd_row[pred_cat], np.arange(len(pred_cat))]
        false_positive = ~pred_matched & ~(ignored / pred_area > IGNORE_FRACTION)
        self.fp += np.bincount(pred_cat[false_positive], minlength=size)

    def summarize(self) -> dict:
        """``{"All"|"Things"|"Stuff": {pq, sq, rq, n}, "per_class": {category_id: {pq, sq,
        rq}}}`` as fractions; classes with no TP, FP or FN get zeros and are not in ``n``."""
        counted = self.tp + self.fp + self.fn > 0
        denominator = np.where(counted, self.tp + 0.5 * self.fp + 0.5 * self.fn, 1.0)
        pq = np.where(counted, self.iou / denominator, 0.0)
        sq = np.where(self.tp > 0, self.iou / np.maximum(self.tp, 1), 0.0)
        rq = np.where(counted, self.tp / denominator, 0.0)
        results: dict = {}
        for name, isthing in GROUPS:
            chosen = counted if isthing is None else counted & (self.isthing == isthing)
            n = int(chosen.sum())
            results[name] = {"pq": _mean(pq[chosen]), "sq": _mean(sq[chosen]),
                             "rq": _mean(rq[chosen]), "n": n}
        results["per_class"] = {int(c): {"pq": float(pq[i]), "sq": float(sq[i]),
                                         "rq": float(rq[i])}
                                for i, c in enumerate(self.category_ids)}
        return results


def joint_histogram(first: np.ndarray, second: np.ndarray, first_bins: int,
                    second_bins: int) -> np.ndarray:
    """Pixel count of every value pair of two maps.

    Args:
        first, second: same-shape non-negative integer maps, values below ``first_bins``
            and ``second_bins``.
    Returns:
        ``(first_bins, second_bins)`` int64 counts.
    """
    bins = first_bins * second_bins
    if bins <= 1 << 16 and first.size < 1 << 24:
        # uint16 pair codes and OpenCV's histogram: ~3x faster than bincount; exact here
        # (integer bin edges, counts below 2**24 in its float32 output).
        pair = np.multiply(first, second_bins, dtype=np.uint16, casting="unsafe")
        np.add(pair, second, out=pair, casting="unsafe")
        counts = cv2.calcHist([pair], [0], None, [bins], [0, bins]).reshape(-1).astype(np.int64)
    else:
        pair = np.multiply(first, second_bins, dtype=np.intp)
        pair += second
        counts = np.bincount(pair.ravel(), minlength=bins)
    return counts.reshape(first_bins, second_bins)


def _mean(values: np.ndarray) -> float:
    return float(values.sum() / len(values)) if len(values) else 0.0


def evaluate_files(gt_json: str | Path, gt_folder: str | Path, pred_json: str | Path,
                   pred_folder: str | Path, threads: int = 2) -> dict:
    """PQ of a COCO-panoptic prediction set against a ground-truth set.

    Every ground-truth image needs a prediction (matched by ``image_id``). PNGs are decoded
    by ``threads`` threads (decoding releases the GIL), ahead of the statistics, which run
    in the calling thread. See :meth:`PanopticEvaluator.summarize` for the result.
    """
    gt, pred = load_json(Path(gt_json)), load_json(Path(pred_json))
    evaluator = PanopticEvaluator(gt["categories"])
    predictions = {annotation["image_id"]: annotation for annotation in pred["annotations"]}
    pairs = []
    for gt_annotation in gt["annotations"]:
        image_id = gt_annotation["image_id"]
        if image_id not in predictions:
            raise ValueError(f"{pred_json} has no prediction for image {image_id}")
        pairs.append((gt_annotation, predictions[image_id],
                      Path(gt_folder) / gt_annotation["file_name"],
                      Path(pred_folder) / predictions[image_id]["file_name"]))
    paths = [(gt_png, pred_png) for *_, gt_png, pred_png in pairs]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for pair, (gt_ids, pred_ids) in zip(pairs, _decode_ahead(pool, paths)):
            gt_annotation, pred_annotation, gt_png, pred_png = pair
            evaluator.update(gt_ids, gt_annotation["segments_info"], pred_ids,
                             pred_annotation["segments_info"],
                             image_id=str(gt_annotation["image_id"]),
                             gt_source=str(gt_png), pred_source=str(pred_png))
    return evaluator.summarize()


def _decode_ahead(pool: ThreadPoolExecutor,
                  paths: Sequence[tuple[Path, Path]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decoded ``(gt, pred)`` PNG pairs in order, the next pair decoding meanwhile."""
    pending = deque()
    for i in range(len(paths)):
        while len(pending) < 2 and i + len(pending) < len(paths):
            gt_png, pred_png = paths[i + len(pending)]
            pending.append((pool.submit(read_panoptic_png, gt_png),
                            pool.submit(read_panoptic_png, pred_png)))
        gt_future, pred_future = pending.popleft()
        yield gt_future.result(), pred_future.result()


def format_table(results: dict, names: Mapping[int, str]) -> str:
    """Per-class rows then the All / Things / Stuff rows, in percent."""
    lines = [f"{'Category':20s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}"]
    for category_id in sorted(results["per_class"]):
        r = results["per_class"][category_id]
        lines.append(f"{names.get(category_id, str(category_id)):20s}| "
                     f"{100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  {100 * r['rq']:5.1f}")
    lines.append("-" * 47)
    lines.append(f"{'':20s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}  {'N':>4s}")
    for name, _ in GROUPS:
        r = results[name]
        lines.append(f"{name:20s}| {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  "
                     f"{100 * r['rq']:5.1f}  {r['n']:4d}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Panoptic quality of COCO-panoptic "
                                                 "predictions against ground truth.")
    parser.add_argument("--gt-json", required=True, type=Path)
    parser.add_argument("--gt-folder", type=Path, help="default: the JSON path without .json")
    parser.add_argument("--pred-json", required=True, type=Path)
    parser.add_argument("--pred-folder", type=Path, help="default: the JSON path without .json")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=2, help="PNG decoding threads")
    args = parser.parse_args(argv)
    results = evaluate_files(args.gt_json, args.gt_folder or args.gt_json.with_suffix(""),
                             args.pred_json, args.pred_folder or args.pred_json.with_suffix(""),
                             args.threads)
    names = {int(c["id"]): c["name"] for c in load_json(args.gt_json)["categories"]}
    print(format_table(results, names))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
