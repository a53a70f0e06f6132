"""Our PQ equals cityscapesscripts' reference implementation on imperfect predictions."""
import json

import numpy as np
import pytest

from upsnet_core.data.panoptic_io import read_panoptic_png, write_panoptic_png
from upsnet_core.data.synthetic import generate_dataset
from upsnet_core.evaluation.pq import PanopticEvaluator, evaluate_files
from upsnet_core.evaluation.synthetic_predictions import reference_pq, write_prediction_set


def assert_same_results(ours, theirs):
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == theirs[group]["n"]
        for metric in ("pq", "sq", "rq"):
            assert ours[group][metric] == pytest.approx(theirs[group][metric], abs=1e-9)
    assert set(ours["per_class"]) == set(theirs["per_class"])
    for category_id, values in theirs["per_class"].items():
        for metric in ("pq", "sq", "rq"):
            assert ours["per_class"][category_id][metric] == pytest.approx(values[metric],
                                                                           abs=1e-9)


@pytest.mark.parametrize("style, seed", [("default", 0), ("dusk", 1)])
def test_generated_frames_with_perturbed_predictions(tmp_path, style, seed):
    gt_json = generate_dataset(tmp_path, "val", 6, seed=seed, height=128, width=256, style=style)
    gt_folder = tmp_path / "gtFine" / "cityscapes_panoptic_val"
    pred_json, pred_folder = tmp_path / "pred.json", tmp_path / "pred"
    write_prediction_set(gt_json, gt_folder, pred_json, pred_folder, seed=seed)
    theirs = reference_pq(gt_json, gt_folder, pred_json, pred_folder)
    assert 0.2 < theirs["All"]["pq"] < 0.95  # imperfect, not degenerate
    assert_same_results(evaluate_files(gt_json, gt_folder, pred_json, pred_folder), theirs)
    assert_same_results(evaluate_files(gt_json, gt_folder, pred_json, pred_folder, threads=1),
                        theirs)


def random_rectangles(rng, shape, count, first_id, categories, crowd_p):
    """Random overlapping rectangles on void; returns (ids, segments_info)."""
    ids = np.zeros(shape, np.int32)
    entries = {}
    for i in range(count):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        h, w = rng.integers(2, shape[0] // 2), rng.integers(2, shape[1] // 2)
        segment_id = first_id + int(rng.integers(1, 10 ** 6))
        ids[y:y + h, x:x + w] = segment_id
        category = categories[rng.integers(len(categories))]
        entries[segment_id] = {"id": segment_id, "category_id": category["id"],
                               "iscrowd": int(category["isthing"] and rng.random() < crowd_p)}
    present = set(np.unique(ids).tolist())
    return ids, [e for e in entries.values() if e["id"] in present]


def test_random_maps_with_several_crowd_regions_per_class(tmp_path):
    """COCO-style ground truth (arbitrary ids, several crowd regions of a class)."""
    rng = np.random.default_rng(7)
    categories = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 1},
                  {"id": 3, "name": "c", "isthing": 0}, {"id": 4, "name": "d", "isthing": 0}]
    gt_annotations, pred_annotations = [], []
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    evaluator = PanopticEvaluator(categories)
    for image in range(30):
        gt_ids, gt_segments = random_rectangles(rng, (24, 32), 12, 0, categories, 0.3)
        for s in gt_segments:
            s["area"] = int((gt_ids == s["id"]).sum())
        pred_ids, pred_segments = random_rectangles(rng, (24, 32), 10, 2 * 10 ** 6, categories,
                                                    0.0)
        pred_ids = np.where((rng.random(gt_ids.shape) < 0.7) & (gt_ids > 0),
                            gt_ids + 4 * 10 ** 6, pred_ids)  # mostly copy the ground truth
        present = set(np.unique(pred_ids).tolist())
        pred_segments = [s for s in pred_segments if s["id"] in present] + [
            {"id": s["id"] + 4 * 10 ** 6, "category_id": s["category_id"]}
            for s in gt_segments if s["id"] + 4 * 10 ** 6 in present]
        name = f"{image}.png"
        write_panoptic_png(tmp_path / "gt" / name, gt_ids)
        write_panoptic_png(tmp_path / "pred" / name, pred_ids)
        gt_annotations.append({"image_id": str(image), "file_name": name,
                               "segments_info": gt_segments})
        pred_annotations.append({"image_id": str(image), "file_name": name,
                                 "segments_info": pred_segments})
        evaluator.update(read_panoptic_png(tmp_path / "gt" / name), gt_segments,
                         read_panoptic_png(tmp_path / "pred" / name), pred_segments)
    crowd_classes = [[s["category_id"] for s in a["segments_info"] if s["iscrowd"]]
                     for a in gt_annotations]
    assert sum(len(c) > len(set(c)) for c in crowd_classes) >= 3  # the rule is exercised
    gt_json, pred_json = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_json.write_text(json.dumps({"annotations": gt_annotations, "categories": categories}))
    pred_json.write_text(json.dumps({"annotations": pred_annotations}))
    theirs = reference_pq(gt_json, tmp_path / "gt", pred_json, tmp_path / "pred")
    assert_same_results(evaluate_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "pred"),
                        theirs)
    assert_same_results(evaluator.summarize(), theirs)
