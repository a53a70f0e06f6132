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

Per image, all overlaps come from one pass over the pixels (a compiled loop, see
:func:`count_pairs`) that counts (gt, pred) index pair codes, each code the sum of two
table lookups; no full-image pass per segment. :func:`evaluate_files` decodes and counts
whole images in threads (the loop and the PNG decoder release the GIL).
"""
from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numba
import numpy as np

from ..categories import CategorySet
from ..data.panoptic_io import MAX_RGB_ID, PNG_DECODERS, load_json, read_panoptic_png

MATCH_IOU = 0.5
IGNORE_FRACTION = 0.5
GROUPS = (("All", None), ("Things", True), ("Stuff", False))
TABLE_SIZE = MAX_RGB_ID + 2
"""Entries of a lookup table: every RGB id, and one last entry (always 0) for larger keys."""


@dataclass
class ImageOverlap:
    """What PQ needs of one image: ``overlap[g, p]`` pixels of gt segment ``g`` and predicted
    segment ``p`` (void not included), categories (positions), areas and crowd flags."""

    overlap: np.ndarray
    on_void: np.ndarray
    """``(P,)`` pixels of each predicted segment lying on ground-truth void."""
    gt_cat: np.ndarray
    gt_area: np.ndarray
    crowd: np.ndarray
    pred_cat: np.ndarray
    pred_area: np.ndarray


_TABLES = threading.local()


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
        self.add(self.image_overlap(gt_panoptic, gt_segments, pred_panoptic, pred_segments,
                                    image_id, gt_source, pred_source))

    def image_overlap(self, gt_panoptic: np.ndarray, gt_segments: Sequence[Mapping],
                      pred_panoptic: np.ndarray, pred_segments: Sequence[Mapping],
                      image_id: str = "", gt_source: str = "ground truth",
                      pred_source: str = "prediction") -> ImageOverlap:
        """The statistics of one image that :meth:`add` accumulates (arguments and errors
        as :meth:`update`). Changes nothing: threads may call it in parallel."""
        if gt_panoptic.shape != pred_panoptic.shape:
            raise ValueError(f"image {image_id}: size mismatch: {gt_source} is "
                             f"{gt_panoptic.shape} but {pred_source} is {pred_panoptic.shape}")
        gt_ids, gt_cat = self._parse(gt_segments, gt_source, image_id)
        pred_ids, pred_cat = self._parse(pred_segments, pred_source, image_id)
        counts = _overlap(gt_panoptic, gt_ids, pred_panoptic, pred_ids, image_id,
                          gt_source, pred_source)
        pred_area = counts[:, 1:].sum(axis=0)
        if (pred_area == 0).any():
            raise ValueError(f"{pred_source} (image {image_id}): segments "
                             f"{pred_ids[pred_area == 0].tolist()} are listed in segments_info "
                             "but absent from the map")
        gt_area = np.asarray([s.get("area", -1) for s in gt_segments], dtype=np.int64)
        gt_area = np.where(gt_area < 0, counts[1:, 1:].sum(axis=1), gt_area)
        crowd = np.asarray([bool(s.get("iscrowd", 0)) for s in gt_segments], dtype=bool)
        return ImageOverlap(counts[1:, 1:], counts[0, 1:], gt_cat, gt_area, crowd, pred_cat,
                            pred_area)

    def _parse(self, segments: Sequence[Mapping], source: str,
               image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Segment ids and category positions, validated."""
        ids = np.asarray([int(s["id"]) for s in segments], dtype=np.int64)
        if len(np.unique(ids)) != len(ids) or (ids == 0).any():
            raise ValueError(f"{source} (image {image_id}): segment ids must be distinct and "
                             f"non-zero; got {sorted(ids.tolist())}")
        if len(ids) and (ids.min() < 0 or ids.max() > MAX_RGB_ID):
            raise ValueError(f"{source} (image {image_id}): segment ids must lie in 1 .. "
                             f"{MAX_RGB_ID}; got {ids.min()} .. {ids.max()}")
        positions = []
        for s in segments:
            category_id = int(s["category_id"])
            if category_id not in self._position:
                raise ValueError(f"{source} (image {image_id}): segment {s['id']} has unknown "
                                 f"category_id {category_id}; known: {self.category_ids.tolist()}")
            positions.append(self._position[category_id])
        return ids, np.asarray(positions, dtype=np.int64)

    def add(self, image: ImageOverlap) -> None:
        """Matches, TP/FP/FN and IoU sums of one image (from :meth:`image_overlap`)."""
        size = len(self.category_ids)
        inter, on_void, gt_cat, gt_area, crowd, pred_cat, pred_area = (
            image.overlap, image.on_void, image.gt_cat, image.gt_area, image.crowd,
            image.pred_cat, image.pred_area)
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


def _mean(values: np.ndarray) -> float:
    return float(values.sum() / len(values)) if len(values) else 0.0


def _lookup_keys(panoptic: np.ndarray, source: str, image_id: str) -> np.ndarray:
    """``panoptic`` as non-negative integer keys for a lookup table of ``MAX_RGB_ID + 2``
    entries in ``"clip"`` mode: negative int32 ids become keys above the table, as ids above
    ``MAX_RGB_ID`` are; no copy for int32 and unsigned maps."""
    if panoptic.dtype.kind not in "iu":
        raise ValueError(f"{source} (image {image_id}): segment ids must be integers; got "
                         f"dtype {panoptic.dtype}")
    if panoptic.dtype == np.int32:
        return panoptic.view(np.uint32)
    if panoptic.dtype.kind == "u" and panoptic.dtype.itemsize <= 4:
        return panoptic
    if panoptic.size and panoptic.min() < 0:
        raise ValueError(f"{source} (image {image_id}): segment ids must be non-negative; "
                         f"got {panoptic.min()}")
    return np.minimum(panoptic, MAX_RGB_ID + 1).astype(np.intp)


def _overlap(gt_panoptic: np.ndarray, gt_ids: np.ndarray, pred_panoptic: np.ndarray,
             pred_ids: np.ndarray, image_id: str, gt_source: str, pred_source: str) -> np.ndarray:
    """``(len(gt_ids) + 1, len(pred_ids) + 1)`` pixel counts of (gt, pred) index pairs,
    index 0 being void; an id of a map that its segments do not list is an error.

    Each map goes through one lookup table, id -> index code (``0`` for unlisted ids,
    ``1`` for void, ``i + 2`` for the ``i``-th listed id; the ground-truth codes
    premultiplied by the number of predicted codes), so that a pixel's pair code is the
    sum of two lookups and the overlaps are one count of pair codes.
    """
    gt_keys = _lookup_keys(gt_panoptic, gt_source, image_id)
    pred_keys = _lookup_keys(pred_panoptic, pred_source, image_id)
    gt_bins, pred_bins = len(gt_ids) + 2, len(pred_ids) + 2
    gt_table, pred_table = _lookup_tables()
    try:
        gt_table[gt_ids] = np.arange(2, gt_bins) * pred_bins
        gt_table[0] = pred_bins
        pred_table[pred_ids] = np.arange(2, pred_bins)
        pred_table[0] = 1
        counts = np.zeros(gt_bins * pred_bins, np.int64)
        count_pairs(gt_keys.reshape(-1), gt_table, pred_keys.reshape(-1), pred_table, counts)
        counts = counts.reshape(gt_bins, pred_bins)
        for panoptic, keys, table, unlisted, source in (
                (gt_panoptic, gt_keys, gt_table, counts[0].sum(), gt_source),
                (pred_panoptic, pred_keys, pred_table, counts[:, 0].sum(), pred_source)):
            if unlisted:
                ids = np.unique(panoptic[np.take(table, keys, mode="clip") == 0])
                raise ValueError(f"{source} (image {image_id}): ids "
                                 f"{ids.astype(np.int64).tolist()} appear in the map but "
                                 "not in segments_info")
    finally:
        gt_table[gt_ids], gt_table[0] = 0, 0
        pred_table[pred_ids], pred_table[0] = 0, 0
    return counts[1:, 1:]


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """This thread's two all-zero int64 lookup tables of :data:`TABLE_SIZE` entries,
    allocated once (zeroed pages cost memory only where an id was written)."""
    if not hasattr(_TABLES, "pair"):
        _TABLES.pair = (np.zeros(TABLE_SIZE, np.int64), np.zeros(TABLE_SIZE, np.int64))
    return _TABLES.pair


@numba.njit(nogil=True, cache=True)
def count_pairs(first_keys: np.ndarray, first_table: np.ndarray, second_keys: np.ndarray,
                second_table: np.ndarray, counts: np.ndarray) -> None:  # pragma: no cover - compiled
    """``counts[first_table[a] + second_table[b]] += 1`` for every pixel's key pair
    ``(a, b)`` of two flat same-length non-negative key arrays; keys beyond a table read
    its last entry. One pass; within runs of equal keys (most of a label image) the tables
    are not read again. Compiled (numba), without the GIL.
    """
    first_last, second_last = len(first_table) - 1, len(second_table) - 1
    previous_first, previous_second = -1, -1
    first_code = second_code = 0
    for i in range(len(first_keys)):
        a, b = first_keys[i], second_keys[i]
        if a != previous_first:
            previous_first, first_code = a, first_table[min(a, first_last)]
        if b != previous_second:
            previous_second, second_code = b, second_table[min(b, second_last)]
        counts[first_code + second_code] += 1


def evaluate_files(gt_json: str | Path, gt_folder: str | Path, pred_json: str | Path,
                   pred_folder: str | Path, threads: int = 2,
                   decoder: Optional[str] = None) -> dict:
    """PQ of a COCO-panoptic prediction set against a ground-truth set.

    Every ground-truth image needs a prediction (matched by ``image_id``). ``threads``
    threads each decode an image's two PNGs and count its overlaps (both release the GIL);
    the calling thread adds the images' statistics in order, so the result does not
    depend on ``threads``. ``decoder``: see :func:`read_panoptic_png`. See
    :meth:`PanopticEvaluator.summarize` for the result.
    """
    gt, pred = load_json(Path(gt_json)), load_json(Path(pred_json))
    evaluator = PanopticEvaluator(gt["categories"])
    predictions = {annotation["image_id"]: annotation for annotation in pred["annotations"]}
    images = []
    for gt_annotation in gt["annotations"]:
        image_id = gt_annotation["image_id"]
        if image_id not in predictions:
            raise ValueError(f"{pred_json} has no prediction for image {image_id}")
        images.append((gt_annotation, predictions[image_id],
                       Path(gt_folder) / gt_annotation["file_name"],
                       Path(pred_folder) / predictions[image_id]["file_name"]))

    def image_overlap(image: tuple[dict, dict, Path, Path]) -> ImageOverlap:
        gt_annotation, pred_annotation, gt_png, pred_png = image
        return evaluator.image_overlap(
            read_panoptic_png(gt_png, decoder), gt_annotation["segments_info"],
            read_panoptic_png(pred_png, decoder), pred_annotation["segments_info"],
            image_id=str(gt_annotation["image_id"]), gt_source=str(gt_png),
            pred_source=str(pred_png))

    threads = max(1, threads)
    with ThreadPoolExecutor(threads) as pool:
        for overlap in _in_order(pool, image_overlap, images, ahead=2 * threads):
            evaluator.add(overlap)
    return evaluator.summarize()


def _in_order(pool: ThreadPoolExecutor, function, items: Sequence,
              ahead: int) -> Iterator:
    """``function(item)`` for each item, computed in ``pool`` with at most ``ahead`` items
    in flight (bounded memory), yielded in the items' order."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


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
    parser.add_argument("--png-decoder", choices=PNG_DECODERS,
                        help="default: spng when pyspng is installed, else opencv")
    args = parser.parse_args(argv)
    results = evaluate_files(args.gt_json, args.gt_folder or args.gt_json.with_suffix(""),
                             args.pred_json, args.pred_folder or args.pred_json.with_suffix(""),
                             args.threads, args.png_decoder)
    names = {int(c["id"]): c["name"] for c in load_json(args.gt_json)["categories"]}
    print(format_table(results, names))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
