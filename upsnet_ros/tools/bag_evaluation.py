"""Evaluation of the node's recorded outputs against a bag's ground truth (no ROS needed).

Inputs: the *input bag* (``make_bag``: camera images, ground-truth label images and the
category map) and a *predictions bag* (what ``replay_eval`` records, or any recording
holding one node's ``<ns>/panoptic/labels``, ideally with ``<ns>/panoptic/instances``,
``<ns>/panoptic/categories`` and the camera topic as published). Outputs and ground truth
are matched by header stamp; frames that cannot be matched are counted and listed, never
skipped silently:

* ``images_without_ground_truth`` / ``ground_truth_without_image``: input-bag stamps with
  only one of the two;
* ``dropped``: images of the input bag for which the node published no labels;
* ``predictions_without_image``: node outputs whose stamp is no image of the input bag.

Damaged bags (cut off mid-write, corrupt messages) are read as far as they are intact
(:class:`upsnet_core.rosbag_io.BagReader`); what was skipped, with topic and stamp or log
time, is listed in ``bag_problems`` (``input_bag``, ``predictions_bag``). A bag in which
no image with ground truth remains is a BagError naming the first problems.

Metrics are those of ``training.evaluate`` computed by the same code (PQ/SQ/RQ All, Things,
Stuff and per class, mIoU, mask AP); latency is the labels' log time minus the log time of
the image with the same stamp in the predictions bag (the moment it was published).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from upsnet_core.evaluation import PanopticResultEvaluator
from upsnet_core.categories import LABEL_DIVISOR, VOID_ID, CategorySet
from upsnet_core.data.target import index_label_image, target_from_index
from upsnet_core.modeling import SEMANTIC_UNKNOWN, PanopticResult
from upsnet_core.image_messages import LABEL_ENCODING, ImageConversionError, check_image
from upsnet_core.rosbag_io import (COMPRESSED_TOPIC, COMPRESSED_TYPE, GT_CATEGORIES_TOPIC,
                                   GT_LABELS_TOPIC, IMAGE_TOPIC, IMAGE_TYPE, BagError,
                                   SkippedMessage, categories_from_message, decode_image,
                                   decode_label_image, format_stamp, iter_messages, open_reader,
                                   stamp_ns, topics)

LABELS_SUFFIX = "panoptic/labels"
SAMPLE_FRAMES = 4


# ---------------------------------------------------------------- input bag
@dataclass
class InputIndex:
    """Stamps (nanoseconds) and ``(H, W)`` sizes of an input bag's images and ground truth."""

    bag: Path
    image_topic: str
    images: dict[int, tuple[int, int]]
    ground_truth: dict[int, tuple[int, int]]
    categories: CategorySet
    problems: list[str] = field(default_factory=list)
    """Damage found in the bag and the messages skipped (topic, stamp or log time, why)."""

    @property
    def evaluable(self) -> list[int]:
        """Stamps with both an image and ground truth, sorted."""
        return sorted(self.images.keys() & self.ground_truth.keys())


def find_image_topic(reader: Any, image_topic: Optional[str] = None) -> str:
    """``image_topic``, else :data:`IMAGE_TOPIC` or :data:`COMPRESSED_TOPIC`, else the one
    Image/CompressedImage topic that is not ground truth; BagError when there is none."""
    available = topics(reader)
    if image_topic is not None:
        if image_topic not in available:
            raise BagError(f"bag {reader.path} has no topic {image_topic}; its topics: "
                           f"{', '.join(sorted(available))}")
        return image_topic
    for topic in (IMAGE_TOPIC, COMPRESSED_TOPIC):
        if topic in available:
            return topic
    cameras = [t for t, kind in available.items()
               if kind in (IMAGE_TYPE, COMPRESSED_TYPE) and not t.endswith(LABELS_SUFFIX)]
    if len(cameras) != 1:
        raise BagError(f"bag {reader.path}: no camera topic {IMAGE_TOPIC} or {COMPRESSED_TOPIC}"
                       f"{' and several candidates ' + str(cameras) if cameras else ''}; pass "
                       f"--image-topic (its topics: {', '.join(sorted(available)) or 'none'})")
    return cameras[0]


def _image_size(msg: Any) -> tuple[int, int]:
    """``(H, W)`` of a camera Image or CompressedImage (only the latter is decoded);
    ImageConversionError when malformed."""
    if hasattr(msg, "format"):
        return decode_image(msg).shape[:2]
    check_image(msg)
    return int(msg.height), int(msg.width)


def _label_size(msg: Any) -> tuple[int, int]:
    """``(H, W)`` of a ``32SC1`` label image; ImageConversionError when malformed."""
    check_image(msg, encodings=(LABEL_ENCODING,))
    return int(msg.height), int(msg.width)


def _sizes(reader: Any, topic: str, size_of: Callable[[Any], tuple[int, int]]
           ) -> dict[int, tuple[int, int]]:
    """``{stamp: (H, W)}`` of the messages of an image topic that are well formed (the
    others are added to ``reader.skipped``); duplicate stamps are a BagError."""
    sizes: dict[int, tuple[int, int]] = {}
    for _, msg in iter_messages(reader, topic):
        stamp = stamp_ns(msg)
        if stamp in sizes:
            raise BagError(f"bag {reader.path}, topic {topic}: two messages with stamp "
                           f"{format_stamp(stamp)}; stamps must be unique to match frames")
        try:
            sizes[stamp] = size_of(msg)
        except ImageConversionError as error:
            reader.skipped.append(SkippedMessage(topic, str(error), stamp_ns=stamp))
    return sizes


def index_input_bag(bag: str | Path, image_topic: Optional[str] = None) -> InputIndex:
    """Read the stamps and sizes of ``bag``'s images and ground truth, and its categories.

    Raises:
        BagError: missing or corrupt bag, a missing topic, duplicate stamps, or ground
            truth whose size differs from the image of the same stamp (naming the stamp).
    """
    bag = Path(bag)
    with open_reader(bag) as reader:
        topic = find_image_topic(reader, image_topic)
        images = _sizes(reader, topic, _image_size)
        ground_truth = _sizes(reader, GT_LABELS_TOPIC, _label_size)
        maps = [msg for _, msg in iter_messages(reader, GT_CATEGORIES_TOPIC)]
        problems = reader.problems()
    if not maps:
        raise BagError(f"bag {bag}: topic {GT_CATEGORIES_TOPIC} holds no CategoryMap message"
                       + _listed(problems))
    if not images.keys() & ground_truth.keys():
        raise BagError(f"bag {bag}: nothing to evaluate: {len(images)} images and "
                       f"{len(ground_truth)} ground-truth label images, none with the same "
                       f"stamp" + _listed(problems))
    for stamp in sorted(images.keys() & ground_truth.keys()):
        if images[stamp] != ground_truth[stamp]:
            (h, w), (gh, gw) = images[stamp], ground_truth[stamp]
            raise BagError(f"bag {bag}, stamp {format_stamp(stamp)}: ground truth on "
                           f"{GT_LABELS_TOPIC} is {gw}x{gh} but the image on {topic} is {w}x{h}")
    return InputIndex(bag, topic, images, ground_truth, categories_from_message(maps[-1]),
                      problems)


def _listed(problems: list[str], most: int = 5) -> str:
    """The first ``most`` problems of a bag, for an error message ('' when none)."""
    if not problems:
        return ""
    more = f"\n  ... and {len(problems) - most} more" if len(problems) > most else ""
    return "; the bag is damaged:\n  " + "\n  ".join(problems[:most]) + more


# ---------------------------------------------------------------- predictions bag
@dataclass
class Predictions:
    """A predictions bag's content by stamp (nanoseconds)."""

    bag: Path
    labels_topic: str
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    segments: dict[int, list[dict]] = field(default_factory=dict)
    output_ns: dict[int, int] = field(default_factory=dict)
    published_ns: dict[int, int] = field(default_factory=dict)
    categories: Optional[CategorySet] = None
    diagnostics: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def find_labels_topic(reader: Any) -> str:
    """The one ``.../panoptic/labels`` topic of a node's outputs (not the ground truth)."""
    found = [t for t in topics(reader) if t.endswith("/" + LABELS_SUFFIX) and t != GT_LABELS_TOPIC]
    if len(found) != 1:
        raise BagError(f"bag {reader.path}: expected the labels topic of one node (<ns>/"
                       f"{LABELS_SUFFIX}); found {found or 'none'} among its topics "
                       f"{', '.join(sorted(topics(reader))) or 'none'}")
    return found[0]


def read_predictions(bag: str | Path, image_topic: str) -> Predictions:
    """Label images, instances, categories, output and publish log times and the node's
    last diagnostics of a predictions bag (topics next to its labels topic)."""
    bag = Path(bag)
    with open_reader(bag) as reader:
        labels_topic = find_labels_topic(reader)
        result = Predictions(bag, labels_topic)
        prefix = labels_topic[:-len("labels")]  # <ns>/panoptic/
        available = topics(reader)
        for log_ns, msg in iter_messages(reader, labels_topic):
            stamp = stamp_ns(msg)
            try:
                result.labels[stamp] = decode_label_image(msg)
            except ImageConversionError as error:
                reader.skipped.append(SkippedMessage(labels_topic, str(error), stamp_ns=stamp))
                continue
            result.output_ns[stamp] = log_ns
        if prefix + "instances" in available:
            for _, msg in iter_messages(reader, prefix + "instances"):
                result.segments[stamp_ns(msg)] = [
                    {"id": int(i.id), "category_id": int(i.category_id),
                     "isthing": bool(i.is_thing), "score": float(i.score)} for i in msg.instances]
        if prefix + "categories" in available:
            for _, msg in iter_messages(reader, prefix + "categories"):
                result.categories = categories_from_message(msg)
        if image_topic in available:
            result.published_ns = {stamp_ns(msg): log_ns
                                   for log_ns, msg in iter_messages(reader, image_topic)}
        if "/diagnostics" in available:
            result.diagnostics = _node_diagnostics(reader, prefix)
        result.problems = reader.problems()
    return result


def _node_diagnostics(reader: Any, prefix: str) -> dict[str, str]:
    """Key/values of the last /diagnostics status of the node whose outputs are
    ``prefix`` (``<ns>/panoptic/``); {} when none."""
    node = prefix[:-len("panoptic/")]
    values: dict[str, str] = {}
    for _, msg in iter_messages(reader, "/diagnostics"):
        for status in msg.status:
            if status.name.startswith(node):
                values = {kv.key: kv.value for kv in status.values}
    return values


# ---------------------------------------------------------------- evaluation
def ground_truth_target(labels: np.ndarray, categories: CategorySet, image_id: str) -> dict:
    """The dataset-style target of a ground-truth label image.

    ``labels``: ``(H, W)`` int32 in the node's encoding; a thing category with ``k = 0`` is
    a crowd region. Classes outside ``categories`` become void, as in the dataset loaders.
    """
    ids = np.unique(labels)
    ids = ids[ids != VOID_ID]
    known = np.isin(ids // LABEL_DIVISOR, categories.category_ids())
    if not known.all():
        labels = np.where(np.isin(labels, ids[~known]), VOID_ID, labels)
    segments = []
    for segment_id in ids[known].tolist():
        category = categories.by_id(segment_id // LABEL_DIVISOR)
        segments.append({"id": segment_id, "category_id": category.id,
                         "iscrowd": int(category.isthing and segment_id % LABEL_DIVISOR == 0)})
    index_map = index_label_image(labels, segments, f"ground truth at stamp {image_id}")
    return target_from_index(index_map, segments, categories, image_id, labels.shape)


def prediction_result(labels: np.ndarray, segments: Optional[list[dict]],
                      categories: CategorySet) -> PanopticResult:
    """A :class:`PanopticResult` of the node's label image and instances (without the
    instances message: segments from the label image, score 1)."""
    if segments is None:
        ids = np.unique(labels)
        segments = [{"id": i, "category_id": i // LABEL_DIVISOR,
                     "isthing": categories.by_id(i // LABEL_DIVISOR).isthing, "score": 1.0}
                    for i in ids[ids != VOID_ID].tolist()]
    semantic = np.where(labels == VOID_ID, SEMANTIC_UNKNOWN, labels // LABEL_DIVISOR)
    return PanopticResult(panoptic=torch.from_numpy(labels), semantic=torch.from_numpy(semantic),
                          segments=segments)


def _sample_stamps(stamps: list[int], count: int = SAMPLE_FRAMES) -> list[int]:
    if len(stamps) <= count:
        return list(stamps)
    return [stamps[round(i * (len(stamps) - 1) / (count - 1))] for i in range(count)]


def _latency(index: InputIndex, predictions: Predictions) -> dict:
    """Latency statistics (ms) and the per-frame series, over frames with a publish time."""
    stamps = sorted(s for s in predictions.output_ns if s in predictions.published_ns
                    and s in index.images)
    if not stamps:
        return {"latency_ms": None, "throughput_fps": None, "per_frame": []}
    start = min(predictions.published_ns.values())
    values = np.asarray([(predictions.output_ns[s] - predictions.published_ns[s]) / 1e6
                         for s in stamps])
    p50, p90, p99 = np.percentile(values, [50, 90, 99]).tolist()
    span = (max(predictions.output_ns[s] for s in stamps) - start) / 1e9
    return {"latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": float(values.max()),
                           "mean": float(values.mean()), "count": len(values)},
            "throughput_fps": len(stamps) / span if span > 0 else None,
            "per_frame": [{"stamp": format_stamp(s),
                           "published_s": (predictions.published_ns[s] - start) / 1e9,
                           "latency_ms": float(v)} for s, v in zip(stamps, values)]}


def _check_size(stamp: int, gt: np.ndarray, pred: np.ndarray, index: InputIndex,
                predictions: Predictions) -> None:
    if gt.shape != pred.shape:
        raise BagError(f"stamp {format_stamp(stamp)}: ground truth ({GT_LABELS_TOPIC} in "
                       f"{index.bag}) is {gt.shape[1]}x{gt.shape[0]} but the prediction "
                       f"({predictions.labels_topic} in {predictions.bag}) is "
                       f"{pred.shape[1]}x{pred.shape[0]}")


@dataclass
class Evaluation:
    """:func:`evaluate_bags`' result: the report dict, sample frames and the categories."""

    report: dict
    samples: list[dict]
    categories: CategorySet


def evaluate_bags(input_bag: str | Path, predictions_bag: str | Path,
                  image_topic: Optional[str] = None, progress: bool = True) -> Evaluation:
    """Evaluate a predictions bag against the input bag's ground truth.

    Returns:
        an :class:`Evaluation`: the report dict (module docstring; ``pq``, ``miou``,
        ``per_class_iou``, ``pixel_accuracy``, ``mask_ap`` and ``class_names`` as
        ``training.evaluate`` writes them, plus ``frames``, ``unmatched``, ``latency_ms``,
        ``throughput_fps``, ``per_frame``, ``node_diagnostics``) and up to
        :data:`SAMPLE_FRAMES` sample frames ``{stamp, image (H, W, 3) uint8, ground_truth
        (H, W) int32, prediction (H, W) int32}``, and the evaluated categories (the node's,
        else the input bag's).
    Raises:
        BagError: unreadable bags, missing topics, size mismatches, no frame to evaluate.
    """
    index = index_input_bag(input_bag, image_topic)
    predictions = read_predictions(predictions_bag, index.image_topic)
    categories = predictions.categories or index.categories
    evaluated = [s for s in index.evaluable if s in predictions.labels]
    if not evaluated:
        raise BagError(f"no frame to evaluate: none of the {len(index.evaluable)} images with "
                       f"ground truth in {index.bag} has a prediction in {predictions.bag} "
                       f"({predictions.labels_topic})")
    evaluators = PanopticResultEvaluator(categories)
    samples = {s: {"stamp": format_stamp(s)} for s in _sample_stamps(evaluated)}
    wanted = set(evaluated)
    with open_reader(index.bag) as reader:
        messages = iter_messages(reader, GT_LABELS_TOPIC)
        for _, msg in tqdm(messages, total=len(index.ground_truth), desc="evaluate",
                           disable=not progress):
            stamp = stamp_ns(msg)
            if stamp not in wanted:  # includes ground truth that does not decode (indexed)
                continue
            gt, pred = decode_label_image(msg), predictions.labels[stamp]
            _check_size(stamp, gt, pred, index, predictions)
            evaluators.update(ground_truth_target(gt, categories, format_stamp(stamp)),
                              prediction_result(pred, predictions.segments.get(stamp), categories))
            if stamp in samples:
                samples[stamp].update(ground_truth=gt, prediction=pred)
        for _, msg in iter_messages(reader, index.image_topic):
            if stamp_ns(msg) in samples:
                samples[stamp_ns(msg)]["image"] = decode_image(msg)
    report = {"input_bag": str(index.bag), "predictions_bag": str(predictions.bag),
              "image_topic": index.image_topic, "labels_topic": predictions.labels_topic,
              **evaluators.summarize(), "class_names": {c.id: c.name for c in categories},
              "frames": _frame_counts(index, predictions, evaluated),
              "unmatched": _unmatched(index, predictions),
              "bag_problems": {"input_bag": index.problems,
                               "predictions_bag": predictions.problems},
              "node_diagnostics": predictions.diagnostics, **_latency(index, predictions)}
    return Evaluation(report, [samples[s] for s in sorted(samples)], categories)


def _frame_counts(index: InputIndex, predictions: Predictions, evaluated: list[int]) -> dict:
    processed = [s for s in index.images if s in predictions.labels]
    return {"images": len(index.images), "ground_truth": len(index.ground_truth),
            "published": (len(predictions.published_ns.keys() & index.images.keys())
                          if predictions.published_ns else None),
            "processed": len(processed), "dropped": len(index.images) - len(processed),
            "evaluated": len(evaluated)}


def _unmatched(index: InputIndex, predictions: Predictions) -> dict[str, list[str]]:
    def listed(stamps: set[int]) -> list[str]:
        return [format_stamp(s) for s in sorted(stamps)]
    images, ground_truth, outputs = (set(index.images), set(index.ground_truth),
                                     set(predictions.labels))
    return {"images_without_ground_truth": listed(images - ground_truth),
            "ground_truth_without_image": listed(ground_truth - images),
            "dropped": listed(images - outputs),
            "predictions_without_image": listed(outputs - images)}
