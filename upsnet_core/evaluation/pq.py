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

Per image, all overlaps come from one histogram of (gt, pred) index pair codes, each code
the sum of two table lookups (row block by row block, so that intermediates stay in cache);
no full-image pass per segment.
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
from ..data.panoptic_io import MAX_RGB_ID, PNG_DECODERS, load_json, read_panoptic_png

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
        self._lookup_tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}

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
        overlap = self._overlap(gt_panoptic, gt_ids, pred_panoptic, pred_ids, image_id,
                                gt_source, pred_source)
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

    def _overlap(self, gt_panoptic: np.ndarray, gt_ids: np.ndarray, pred_panoptic: np.ndarray,
                 pred_ids: np.ndarray, image_id: str, gt_source: str,
                 pred_source: str) -> np.ndarray:
        """``(len(gt_ids) + 1, len(pred_ids) + 1)`` pixel counts of (gt, pred) index pairs,
        index 0 being void; an id of a map that its segments do not list is an error.

        Each map goes through one lookup table, id -> index code (``0`` for unlisted ids,
        ``1`` for void, ``i + 2`` for the ``i``-th listed id; the ground-truth codes
        premultiplied by the number of predicted codes), so that a pixel's pair code is the
        sum of two lookups and the overlaps are one histogram of pair codes.
        """
        gt_codes = _lookup_keys(gt_panoptic, gt_source, image_id)
        pred_codes = _lookup_keys(pred_panoptic, pred_source, image_id)
        gt_bins, pred_bins = len(gt_ids) + 2, len(pred_ids) + 2
        small = gt_bins * pred_bins <= 1 << 16 and gt_panoptic.size < 1 << 24
        gt_table, pred_table = self._tables(np.uint16 if small else np.intp)
        try:
            gt_table[gt_ids] = np.arange(2, gt_bins) * pred_bins
            gt_table[0] = pred_bins
            pred_table[pred_ids] = np.arange(2, pred_bins)
            pred_table[0] = 1
            counts = _pair_histogram(gt_codes, gt_table, pred_codes, pred_table,
                                     gt_bins * pred_bins, small)
            counts = counts.reshape(gt_bins, pred_bins)
            for panoptic, codes, table, unlisted, source in (
                    (gt_panoptic, gt_codes, gt_table, counts[0].sum(), gt_source),
                    (pred_panoptic, pred_codes, pred_table, counts[:, 0].sum(), pred_source)):
                if unlisted:
                    ids = np.unique(panoptic[np.take(table, codes, mode="clip") == 0])
                    raise ValueError(f"{source} (image {image_id}): ids "
                                     f"{ids.astype(np.int64).tolist()} appear in the map but "
                                     "not in segments_info")
        finally:
            gt_table[gt_ids], gt_table[0] = 0, 0
            pred_table[pred_ids], pred_table[0] = 0, 0
        return counts[1:, 1:]

    def _tables(self, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """Two all-zero lookup tables over ``0 .. MAX_RGB_ID + 1`` (the last entry, for
        larger keys, stays 0); allocated once (zeroed pages cost memory only when used)."""
        key = np.dtype(dtype).name
        if key not in self._lookup_tables:
            self._lookup_tables[key] = tuple(np.zeros(MAX_RGB_ID + 2, dtype=dtype)
                                             for _ in range(2))
        return self._lookup_tables[key]

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


def _pair_histogram(gt_codes: np.ndarray, gt_table: np.ndarray, pred_codes: np.ndarray,
                    pred_table: np.ndarray, bins: int, small: bool) -> np.ndarray:
    """Counts of ``gt_table[gt_codes] + pred_table[pred_codes]`` over ``0 .. bins - 1``.

    Row block by row block (intermediates stay in cache). ``small`` (uint16 tables, fewer
    than ``2**24`` pixels): OpenCV's histogram, exact there (integer bin edges, counts below
    ``2**24`` in its float32 accumulator) and ~3x faster than ``np.bincount``.
    """
    height = gt_codes.shape[0]
    step = max(1, BLOCK_PIXELS // max(1, gt_codes[0].size if height else 1))
    if small:
        histogram = np.zeros((bins, 1), np.float32)
        for top in range(0, height, step):
            pairs = np.take(gt_table, gt_codes[top:top + step], mode="clip")
            pairs += np.take(pred_table, pred_codes[top:top + step], mode="clip")
            histogram = cv2.calcHist([pairs], [0], None, [bins], [0, bins], hist=histogram,
                                     accumulate=True)
        return histogram.reshape(-1).astype(np.int64)
    counts = np.zeros(bins, np.int64)
    for top in range(0, height, step):
        pairs = np.take(gt_table, gt_codes[top:top + step], mode="clip")
        pairs += np.take(pred_table, pred_codes[top:top + step], mode="clip")
        counts += np.bincount(pairs.ravel(), minlength=bins)
    return counts


def evaluate_files(gt_json: str | Path, gt_folder: str | Path, pred_json: str | Path,
                   pred_folder: str | Path, threads: int = 2,
                   decoder: Optional[str] = None) -> dict:
    """PQ of a COCO-panoptic prediction set against a ground-truth set.

    Every ground-truth image needs a prediction (matched by ``image_id``). PNGs are decoded
    by ``threads`` threads (decoding releases the GIL), ahead of the statistics, which run
    in the calling thread; ``decoder``: see :func:`read_panoptic_png`. See
    :meth:`PanopticEvaluator.summarize` for the result.
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
        for pair, (gt_ids, pred_ids) in zip(pairs, _decode_ahead(pool, paths, decoder)):
            gt_annotation, pred_annotation, gt_png, pred_png = pair
            evaluator.update(gt_ids, gt_annotation["segments_info"], pred_ids,
                             pred_annotation["segments_info"],
                             image_id=str(gt_annotation["image_id"]),
                             gt_source=str(gt_png), pred_source=str(pred_png))
    return evaluator.summarize()


def _decode_ahead(pool: ThreadPoolExecutor, paths: Sequence[tuple[Path, Path]],
                  decoder: Optional[str] = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decoded ``(gt, pred)`` PNG pairs in order, the next pair decoding meanwhile."""
    pending = deque()
    for i in range(len(paths)):
        while len(pending) < 2 and i + len(pending) < len(paths):
            gt_png, pred_png = paths[i + len(pending)]
            pending.append((pool.submit(read_panoptic_png, gt_png, decoder),
                            pool.submit(read_panoptic_png, pred_png, decoder)))
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
