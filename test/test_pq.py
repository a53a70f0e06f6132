"""Known answers of the PQ evaluator: matching threshold, void and crowd rules, errors."""
import json

import numpy as np
import pytest

from upsnet_core.categories import CategorySet
from upsnet_core.data.panoptic_io import write_panoptic_png
from upsnet_core.evaluation.pq import PanopticEvaluator, count_pairs, evaluate_files, main

ROAD, SKY, CAR, PERSON = 7, 23, 26, 24
CATEGORIES = CategorySet.preset("cityscapes")


def segment(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def evaluate(gt, gt_segments, pred, pred_segments):
    evaluator = PanopticEvaluator(CATEGORIES)
    evaluator.update(np.asarray(gt), gt_segments, np.asarray(pred), pred_segments)
    return evaluator.summarize()


def scene():
    """8x8: road below, sky above, two cars (ids 2, 3) on the road."""
    gt = np.full((8, 8), 1)
    gt[:4] = 4
    gt[5:7, 0:2] = 2
    gt[5:7, 4:8] = 3
    return gt, [segment(1, ROAD), segment(2, CAR), segment(3, CAR), segment(4, SKY)]


def test_perfect_prediction_scores_one():
    gt, segments = scene()
    results = evaluate(gt, segments, gt + 10, [dict(s, id=s["id"] + 10) for s in segments])
    for group, n in (("All", 3), ("Things", 1), ("Stuff", 2)):
        assert results[group] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": n}
    assert results["per_class"][CAR] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    assert results["per_class"][PERSON] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}


def test_missed_segment_is_a_false_negative():
    gt, segments = scene()
    pred = np.where(gt == 3, 1, gt)  # car 3 predicted as road
    results = evaluate(gt, segments, pred, [s for s in segments if s["id"] != 3])
    assert results["per_class"][CAR] == pytest.approx({"pq": 2 / 3, "sq": 1.0, "rq": 2 / 3})
    road_iou = 20 / 28  # road predicted over the missed car's 8 pixels
    assert results["per_class"][ROAD]["pq"] == pytest.approx(road_iou)


def test_iou_of_exactly_one_half_is_not_a_match():
    gt = np.full((1, 8), 2)  # road, with a 4-pixel car
    gt[0, :4] = 1
    for car, matched in ((slice(2, 6), False),  # intersection 2, union 6
                         (slice(0, 2), False),  # intersection 2, union 4: IoU exactly 0.5
                         (slice(0, 3), True)):  # IoU 0.75
        pred = np.full((1, 8), 6)
        pred[0, car] = 5
        result = evaluate(gt, [segment(1, CAR), segment(2, ROAD)], pred,
                          [segment(5, CAR), segment(6, ROAD)])
        assert result["per_class"][CAR]["rq"] == (1.0 if matched else 0.0)


def test_void_pixels_leave_the_union_and_excuse_false_positives():
    gt = np.zeros((1, 10), int)
    gt[0, :4] = 1
    pred = np.zeros((1, 10), int)
    pred[0, :8] = 5  # 4 on the car, 4 on void: IoU 4 / (4 + 8 - 4 - 4) = 1
    result = evaluate(gt, [segment(1, CAR)], pred, [segment(5, CAR)])
    assert result["per_class"][CAR] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    mostly_void = np.zeros((1, 10), int)
    mostly_void[0, 3:10] = 6  # 6 of 7 pixels on void: not a false positive
    result = evaluate(gt, [segment(1, CAR)], mostly_void, [segment(6, PERSON)])
    assert result["per_class"][PERSON] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["Things"]["n"] == 1  # only the missed car counts
    half_void = np.zeros((1, 10), int)
    half_void[0, 0:8] = 6  # exactly half on void: a false positive
    result = evaluate(gt, [segment(1, CAR)], half_void, [segment(6, PERSON)])
    assert result["Things"]["n"] == 2


def test_crowd_regions_are_neither_matched_nor_missed_and_excuse_their_class():
    gt = np.zeros((2, 10), int)
    gt[:, :6] = 1  # car crowd
    gt[:, 6:] = 2  # road
    segments = [segment(1, CAR, iscrowd=1), segment(2, ROAD)]
    on_crowd = gt.copy()
    on_crowd[:, :4] = 7
    on_crowd[:, 4:6] = 0
    result = evaluate(gt, segments, on_crowd, [segment(7, CAR), segment(2, ROAD)])
    assert result["per_class"][CAR] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["Things"]["n"] == 0  # no FN for the crowd, no FP for the car on it
    result = evaluate(gt, segments, on_crowd, [segment(7, PERSON), segment(2, ROAD)])
    assert result["Things"]["n"] == 1  # another class on the crowd is a false positive
    split = np.zeros((2, 10), int)
    split[:, 6:] = 2
    split[0, 4:8] = 8  # 2 px crowd + 0 px void + 2 px road of 4: not more than half
    result = evaluate(gt, segments, split, [segment(2, ROAD), segment(8, CAR)])
    assert result["Things"]["n"] == 1


def test_last_crowd_region_of_a_class_is_the_one_that_excuses():
    gt = np.zeros((1, 8), int)
    gt[0, :4], gt[0, 4:] = 1, 2
    segments = [segment(1, CAR, iscrowd=1), segment(2, CAR, iscrowd=1)]
    pred = np.where(gt == 1, 5, 0)
    first = evaluate(gt, segments, pred, [segment(5, CAR)])
    swapped = evaluate(gt, segments[::-1], pred, [segment(5, CAR)])
    assert (first["Things"]["n"], swapped["Things"]["n"]) == (1, 0)


def test_ground_truth_area_comes_from_segments_info():
    gt = np.zeros((1, 8), int)
    gt[0, :4] = 1
    pred = np.where(gt == 1, 5, 0)
    result = evaluate(gt, [dict(segment(1, CAR), area=6)], pred, [segment(5, CAR)])
    assert result["per_class"][CAR]["sq"] == pytest.approx(4 / 6)


def test_no_statistics_gives_zeros():
    assert PanopticEvaluator(CATEGORIES).summarize()["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0,
                                                                "n": 0}


@pytest.mark.parametrize("dtype", [np.uint32, np.uint8, np.int64])
def test_count_pairs_counts_table_codes_of_every_pixel(dtype):
    """Runs of equal keys (as in label images) and random keys, keys beyond the tables."""
    rng = np.random.default_rng(0)
    first = np.repeat(rng.integers(0, 40, 300), rng.integers(1, 9, 300)).astype(dtype)
    second = rng.integers(0, 50, len(first)).astype(dtype)
    first_table = rng.integers(0, 4, 30) * 10  # keys 30..39 read the last entry
    second_table = rng.integers(0, 10, 45)
    counts = np.zeros(40, np.int64)
    count_pairs(first, first_table, second, second_table, counts)
    codes = first_table[np.minimum(first, 29)] + second_table[np.minimum(second, 44)]
    np.testing.assert_array_equal(counts, np.bincount(codes, minlength=40))


@pytest.mark.parametrize("change, message", [
    (lambda gt, pred, ps: (gt, np.where(pred == 11, 99, pred), ps), "99"),
    (lambda gt, pred, ps: (gt, pred, ps + [segment(77, CAR)]), "77"),
    (lambda gt, pred, ps: (gt, pred, [dict(s, category_id=5) for s in ps]), "category_id 5"),
    (lambda gt, pred, ps: (gt, pred[:, :4], ps), "size mismatch"),
    (lambda gt, pred, ps: (gt, pred, ps + [dict(ps[0])]), "distinct"),
])
def test_bad_predictions_raise_clear_errors(change, message):
    gt, segments = scene()
    pred_segments = [dict(s, id=s["id"] + 10) for s in segments]
    gt, pred, pred_segments = change(gt, gt + 10, pred_segments)
    with pytest.raises(ValueError, match=message):
        evaluate(gt, segments, pred, pred_segments)


def write_set(folder, name, maps_and_segments, categories=None):
    """A COCO-panoptic JSON + PNG folder; returns (json path, folder)."""
    png_folder = folder / name
    png_folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for image_id, (ids, segments) in maps_and_segments.items():
        write_panoptic_png(png_folder / f"{image_id}.png", ids)
        annotations.append({"image_id": image_id, "file_name": f"{image_id}.png",
                            "segments_info": segments})
    json_path = folder / f"{name}.json"
    json_path.write_text(json.dumps({"annotations": annotations, "images": [],
                                     "categories": categories or CATEGORIES.to_list()}))
    return json_path, png_folder


def test_files_and_command_line(tmp_path, capsys):
    gt, segments = scene()
    gt_json, gt_folder = write_set(tmp_path, "gt", {"a": (gt, segments), "b": (gt, segments)})
    pred = np.where(gt == 3, 0, gt)
    pred_json, pred_folder = write_set(tmp_path, "pred", {
        "a": (gt, segments), "b": (pred, [s for s in segments if s["id"] != 3])})
    results = evaluate_files(gt_json, gt_folder, pred_json, pred_folder)
    assert results["per_class"][CAR] == pytest.approx({"pq": 3 / 3.5, "sq": 1.0, "rq": 3 / 3.5})
    out = tmp_path / "results.json"
    main(["--gt-json", str(gt_json), "--gt-folder", str(gt_folder), "--pred-json",
          str(pred_json), "--pred-folder", str(pred_folder), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "car" in printed and "Things" in printed
    written = json.loads(out.read_text())
    assert written["All"] == pytest.approx(results["All"])
    assert written["per_class"][str(CAR)] == pytest.approx(results["per_class"][CAR])


def test_file_errors_name_the_file_and_the_id(tmp_path):
    gt, segments = scene()
    gt_json, gt_folder = write_set(tmp_path, "gt", {"a": (gt, segments)})
    pred_json, pred_folder = write_set(tmp_path, "pred", {"a": (gt, segments[:-1])})
    with pytest.raises(ValueError, match=r"pred/a\.png.*\[4\]"):
        evaluate_files(gt_json, gt_folder, pred_json, pred_folder)
    bad_gt_json, _ = write_set(tmp_path, "badgt", {"a": (gt, segments[1:])})
    with pytest.raises(ValueError, match=r"badgt/a\.png.*\[1\]"):
        evaluate_files(bad_gt_json, tmp_path / "badgt", gt_json, gt_folder)
    (pred_folder / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"pred/a\.png"):
        evaluate_files(gt_json, gt_folder, pred_json, pred_folder)
    other_json, other_folder = write_set(tmp_path, "other", {"z": (gt, segments)})
    with pytest.raises(ValueError, match="no prediction for image a"):
        evaluate_files(gt_json, gt_folder, other_json, other_folder)
