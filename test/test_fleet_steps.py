"""Fleet retraining, step by step: frame selection, teacher confidence rules, matching of
human annotations (and a simulated robot's delivery), the gate's decision, the registry's
rules and the config's errors.

Real models (the shipped default model as teacher), real files; no mocks.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from training.fleet.dataset import FleetDataset, FrameRecord
from training.fleet.gate import compare, markdown
from training.fleet.human import FrameIndex
from training.fleet.ingest import ingest
from training.fleet.labels import label
from training.fleet.registry import GateError, accepted_report, next_version
from training.fleet.selection import FrameSelector
from training.fleet.settings import TeacherSettings, fleet_settings
from training.fleet.simulate import simulate_robot
from training.fleet.teacher import Teacher
from upsnet_core.categories import CategorySet
from upsnet_core.checkpoint import DEFAULT_CHECKPOINT
from upsnet_core.data import build_dataset
from upsnet_core.data.panoptic_dataset import read_rgb
from upsnet_core.data.panoptic_io import write_panoptic_png, write_png
from upsnet_core.data.synthetic import FrameRenderer, frame_rng
from upsnet_core.inference import Predictor

SECOND = 10**9


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    renderer = FrameRenderer(64, 128, "dusk")
    return [renderer.render(frame_rng(0, "steps", "dusk", i)).image for i in range(3)]


def test_selection_drops_parked_frames_and_subsamples_by_time(scenes):
    selector = FrameSelector(min_interval=0.5, duplicate_threshold=2.0)
    noise = np.random.default_rng(0)
    parked = [np.clip(scenes[0] + noise.normal(0, 1.5, scenes[0].shape), 0, 255).astype(np.uint8)
              for _ in range(5)]
    stream = [(0, scenes[0])] + [((i + 1) * SECOND, p) for i, p in enumerate(parked)] + [
        (int(6.2 * SECOND), scenes[1]),   # new scene: kept
        (int(6.5 * SECOND), scenes[2]),   # 0.3 s later: too soon
        (int(6.7 * SECOND), scenes[2]),   # 0.5 s later: kept
        (int(6.6 * SECOND), scenes[0])]   # stamp going back: dropped
    kept = [stamp for stamp, image in stream if selector.keep(stamp, image)]
    assert kept == [0, int(6.2 * SECOND), int(6.7 * SECOND)]
    keep_all = FrameSelector(min_interval=0.0, duplicate_threshold=0.0)
    assert all(keep_all.keep(i, scenes[0]) for i in range(1, 4))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_checkpoint(DEFAULT_CHECKPOINT, "cpu", input_long_side=256)


def test_teacher_without_rules_gives_the_prediction(predictor, scenes):
    settings = TeacherSettings(min_score=0.0, flip_check=False, min_area=0)
    label = Teacher(predictor, settings)(scenes[0])
    np.testing.assert_array_equal(label.panoptic, predictor(scenes[0]).panoptic.numpy())
    assert {s["id"] for s in label.segments} == set(np.unique(label.panoptic)) - {0}


def test_teacher_voids_what_the_mirrored_view_contradicts(predictor, scenes):
    image = scenes[1]
    label = Teacher(predictor, TeacherSettings(min_score=0.0, min_agreement=0.0, min_area=0))(image)
    prediction = predictor(image).panoptic.numpy()
    mirrored = predictor(np.ascontiguousarray(image[:, ::-1])).semantic.numpy()[:, ::-1]
    agreeing = (prediction != 0) & (mirrored == prediction // 1000)
    np.testing.assert_array_equal(label.panoptic != 0, agreeing)
    assert 0 < label.labelled_fraction < 1
    strict = Teacher(predictor, TeacherSettings(min_agreement=1.0, min_area=0))(image)
    assert strict.labelled_fraction < label.labelled_fraction


def test_teacher_drops_low_scores_and_small_segments(predictor, scenes):
    image = scenes[2]
    result = predictor(image)
    things = [s for s in result.segments if s["isthing"]]
    assert things, "the scene should hold detected things"
    cautious = Teacher(predictor, TeacherSettings(min_score=1.0, flip_check=False, min_area=0))
    label = cautious(image)
    assert all(s["category_id"] * 1000 == s["id"] for s in label.segments)  # stuff only
    assert not np.isin(label.panoptic, [s["id"] for s in things]).any()
    nothing = Teacher(predictor, TeacherSettings(flip_check=False, min_area=image.size))(image)
    assert nothing.segments == [] and nothing.labelled_fraction == 0


def frame(image_id: str, stamp: int) -> FrameRecord:
    return FrameRecord(image_id, "train", "r", "r/bag", "/camera/image_raw", stamp, "camera")


def test_human_annotations_match_by_name_then_by_stamp():
    frames = FrameIndex({f.image_id: f for f in (
        frame("r1_abc_1700000000000000000", 1_700_000_000_000_000_000),
        frame("r1_abc_1700000000500000000", 1_700_000_000_500_000_000),
        frame("r2_def_1700000000502000000", 1_700_000_000_502_000_000))})
    by_name, how = frames.match("r1_abc_1700000000000000000_leftImg8bit.png", 0)
    assert (by_name.image_id, how) == ("r1_abc_1700000000000000000", "name")
    by_stamp, how = frames.match("lab_000001_1700000000001000000_leftImg8bit.png", 2 * 10**6)
    assert (by_stamp.stamp_ns, how) == (1_700_000_000_000_000_000, "stamp")
    none, why = frames.match("lab_000001_1700000000501000000.png", 2 * 10**6)
    assert none is None and "2 frames within the tolerance" in why
    none, why = frames.match("holiday_photo.jpg", 10**9)
    assert none is None and "no stamp" in why


def results(pq: float, per_class: dict[str, float]) -> dict:
    return {"checkpoint": "x.pt", "sha256": "0" * 64, "images": 3,
            "metrics": {"pq": pq, "pq_things": 0.0, "pq_stuff": pq, "miou": 0.5},
            "per_class_pq": per_class}


@pytest.mark.parametrize("candidate, accepted, reason", [
    (results(0.50, {"road": 0.90, "car": 0.30}), True, None),
    (results(0.485, {"road": 0.90, "car": 0.30}), False, "PQ drops by 0.0150"),
    (results(0.60, {"road": 0.90, "car": 0.24}), False, "class car: PQ drops by 0.0600"),
    (results(0.49, {"road": 0.86, "car": 0.30}), True, None),  # within both margins
])
def test_gate_accepts_only_within_the_margins(candidate, accepted, reason):
    current = results(0.50, {"road": 0.90, "car": 0.30})
    gate = fleet_settings({"gate": {"max_pq_drop": 0.01, "max_class_pq_drop": 0.05}}).gate
    decision = compare(current, candidate, gate)
    assert decision["accepted"] is accepted
    assert (reason is None and not decision["reasons"]) or reason in decision["reasons"][0]
    page = markdown({**decision, "current": current, "candidate": candidate,
                     "regression_set": {"root": "reg", "split": "val", "max_pq_drop": 0.01,
                                        "max_class_pq_drop": 0.05}})
    assert page.startswith("# Gate: " + ("ACCEPTED" if accepted else "REJECTED"))
    assert "| car |" in page


def test_registry_versions_and_refusals(tmp_path):
    assert next_version(tmp_path / "none", "x") == 1
    for name in ("upsnet-x-v1", "upsnet-x-v3", "upsnet-x-vbeta", "upsnet-y-v9"):
        (tmp_path / name).mkdir()
    assert next_version(tmp_path, "x") == 4
    candidate = tmp_path / "candidate.pt"
    candidate.write_bytes(b"weights")
    report = tmp_path / "report.json"
    with pytest.raises(GateError, match="run the gate step first"):
        accepted_report(report, candidate)
    report.write_text(json.dumps({"accepted": False, "reasons": ["class car: PQ drops"]}))
    with pytest.raises(GateError, match="rejected the candidate.*class car"):
        accepted_report(report, candidate)
    report.write_text(json.dumps({"accepted": True, "candidate": {"sha256": "0" * 64}}))
    with pytest.raises(GateError, match="not the file the gate accepted"):
        accepted_report(report, candidate)


@pytest.mark.parametrize("values, message", [
    ({"ingest": {"topic": "/cam"}}, r"unknown config key\(s\) \['topic'\] in section 'ingest'"),
    ({"ingest": {"topics": []}}, "'ingest.topics' must name at least one"),
    ({"label": {"human": [{"root": "d", "format": "kitti"}]}}, r"'label.human\[0\].format'"),
    ({"label": {"teacher": {"min_score": 2}}}, "'label.teacher.min_score' must be in"),
    ({"finetune": {"original_data": [{"root": "d", "weight": 1, "ratio": 2}]}}, "'ratio'"),
    ({"gate": {"max_pq_drop": -0.1}}, "'gate.max_pq_drop' must be in"),
    ({"export": {"name": "a b"}}, "'export.name' must be"),
])
def test_fleet_config_errors_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        fleet_settings(values)


def test_simulated_annotations_label_the_matching_frames_by_stamp(tmp_path):
    simulate_robot(tmp_path / "bags", "carol", "dusk", frames=3, height=64, width=128,
                   annotations=tmp_path / "delivery", annotate_every=2)
    settings = fleet_settings({
        "work_dir": str(tmp_path / "work"), "ingest": {"bags": str(tmp_path / "bags")},
        "label": {"human": [{"root": str(tmp_path / "delivery")}], "teacher": None},
        "finetune": {"base": str(DEFAULT_CHECKPOINT)}})
    dataset = FleetDataset(settings.dataset)
    assert ingest(settings.ingest, dataset).frames_kept == 3
    report = label(settings)
    assert (report.human, report.teacher, report.problems) == (2, 0, [])
    frames = dataset.read_manifest()
    assert [f.label and f.label["matched_by"] for f in frames] == ["stamp", None, "stamp"]
    loaded = build_dataset("cityscapes", dataset.root, "train", CategorySet.preset("cityscapes"))
    assert [r.image_id for r in loaded.records] == [frames[0].image_id, frames[2].image_id]
    _, target = loaded[0]
    assert len(target["segments_info"]) > 3 and target["panoptic"].shape == (64, 128)


def test_a_coco_delivery_labels_the_frame_of_its_file_name(tmp_path):
    simulate_robot(tmp_path / "bags", "dave", frames=2, height=64, width=128)
    settings = fleet_settings({
        "work_dir": str(tmp_path / "work"), "ingest": {"bags": str(tmp_path / "bags")},
        "label": {"human": [{"root": str(tmp_path / "coco"), "format": "coco"}],
                  "teacher": None},
        "finetune": {"base": str(DEFAULT_CHECKPOINT)}})
    dataset = FleetDataset(settings.dataset)
    ingest(settings.ingest, dataset)
    frame = dataset.read_manifest()[1]
    ids = np.full((64, 128), 7, np.int32)  # road, and a person; "dragon" is not a model class
    ids[10:40, 50:60], ids[:5] = 2, 3
    (tmp_path / "coco" / "annotations" / "panoptic_train2017").mkdir(parents=True)
    (tmp_path / "coco" / "train2017").mkdir()
    write_png(tmp_path / "coco" / "train2017" / f"{frame.image_id}.png",
              read_rgb(dataset.image_path(frame)))
    write_panoptic_png(tmp_path / "coco" / "annotations" / "panoptic_train2017" / "a.png", ids)
    (tmp_path / "coco" / "annotations" / "panoptic_train2017.json").write_text(json.dumps({
        "images": [{"id": 5, "file_name": f"{frame.image_id}.png", "height": 64, "width": 128}],
        "annotations": [{"image_id": 5, "file_name": "a.png", "segments_info": [
            {"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 2, "category_id": 24, "iscrowd": 0},
            {"id": 3, "category_id": 99, "iscrowd": 0}]}],
        "categories": [{"id": 7, "name": "road", "isthing": 0},
                       {"id": 24, "name": "person", "isthing": 1},
                       {"id": 99, "name": "dragon", "isthing": 1}]}))
    assert label(settings).human == 1
    assert dataset.read_manifest()[1].label["matched_by"] == "name"
    loaded = build_dataset("cityscapes", dataset.root, "train", CategorySet.preset("cityscapes"))
    _, target = loaded[0]
    assert [(s["category_id"], s["area"]) for s in target["segments_info"]] == [
        (7, 64 * 128 - 300 - 5 * 128), (24, 300)]
