"""The synthetic generator: determinism, Cityscapes layout and format, valid labels."""
import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

from upsnet_core.categories import CategorySet
from upsnet_core.data.panoptic_io import read_panoptic_png
from upsnet_core.data.synthetic import (FrameRenderer, frame_rng, generate_dataset,
                                        image_id_of, main)

CATEGORIES = CategorySet.preset("cityscapes")
THINGS = {c.id for c in CATEGORIES.things}
SIZE = (96, 192)


def files_of(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, "val", 16, seed=3, height=SIZE[0], width=SIZE[1])
    return root, json.loads((root / "gtFine" / "cityscapes_panoptic_val.json").read_text())


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_dataset(first, "train", 4, seed=11, height=64, width=128, style="dusk")
    generate_dataset(second, "train", 4, seed=11, height=64, width=128, style="dusk", workers=2)
    generate_dataset(other, "train", 4, seed=12, height=64, width=128, style="dusk")
    assert files_of(first) == files_of(second)
    assert len(files_of(first)) == 9
    different = [name for name, data in files_of(first).items() if files_of(other)[name] != data]
    assert len(different) == 9


def test_layout_and_json_equal_what_create_panoptic_imgs_writes(tmp_path):
    """cityscapesscripts converts the same frames (as instanceIds images) to the same files."""
    ours = tmp_path / "ours"
    json_path = generate_dataset(ours, "val", 3, seed=5, height=SIZE[0], width=SIZE[1])
    raw = tmp_path / "raw" / "gtFine"
    renderer = FrameRenderer(*SIZE)
    for index in range(3):
        image_id = image_id_of("default", index)
        city = image_id.split("_")[0]
        (raw / "val" / city).mkdir(parents=True, exist_ok=True)
        assert (ours / "leftImg8bit" / "val" / city / f"{image_id}_leftImg8bit.png").is_file()
        frame = renderer.render(frame_rng(5, "val", "default", index))
        cv2.imwrite(str(raw / "val" / city / f"{image_id}_gtFine_instanceIds.png"),
                    frame.ids.astype(np.uint16))
    converted = tmp_path / "converted"
    converted.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(str(raw), str(converted), setNames=["val"])
    assert (converted / "cityscapes_panoptic_val.json").read_text() == json_path.read_text()
    pngs = sorted((converted / "cityscapes_panoptic_val").iterdir())
    assert [p.name for p in pngs] == sorted(
        p.name for p in (ours / "gtFine" / "cityscapes_panoptic_val").iterdir())
    for png in pngs:
        np.testing.assert_array_equal(
            read_panoptic_png(png),
            read_panoptic_png(ours / "gtFine" / "cityscapes_panoptic_val" / png.name))


def test_ids_categories_areas_and_boxes_are_valid(dataset):
    root, data = dataset
    assert [c["id"] for c in data["categories"]] == sorted(c.id for c in CATEGORIES)
    for annotation in data["annotations"]:
        ids = read_panoptic_png(root / "gtFine" / "cityscapes_panoptic_val"
                                / annotation["file_name"])
        segments = annotation["segments_info"]
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in segments}
        for s in segments:
            thing = s["category_id"] in THINGS
            assert s["category_id"] in CATEGORIES
            if s["id"] >= 1000:
                assert thing and s["id"] // 1000 == s["category_id"] and s["iscrowd"] == 0
            else:
                assert s["id"] == s["category_id"] and s["iscrowd"] == int(thing)
            ys, xs = np.nonzero(ids == s["id"])
            assert s["area"] == len(ys)
            assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]


def test_classes_crowds_and_void_appear(dataset):
    root, data = dataset
    segments = [s for a in data["annotations"] for s in a["segments_info"]]
    assert {s["category_id"] for s in segments} == {c.id for c in CATEGORIES}
    assert sum(s["iscrowd"] for s in segments) >= 3
    void = [(read_panoptic_png(root / "gtFine" / "cityscapes_panoptic_val" / a["file_name"]) == 0)
            .mean() for a in data["annotations"]]
    assert sum(v > 0 for v in void) >= len(void) // 2


def test_things_shrink_toward_the_horizon(dataset):
    _, data = dataset
    boxes = np.array([s["bbox"] for a in data["annotations"] for s in a["segments_info"]
                      if s["id"] >= 1000 and s["category_id"] in (24, 26)])
    bottom, height = boxes[:, 1] + boxes[:, 3], boxes[:, 3]
    assert np.corrcoef(bottom, height)[0, 1] > 0.4


def test_styles_differ_and_colour_alone_does_not_give_the_class():
    renderer, dusk = FrameRenderer(*SIZE), FrameRenderer(*SIZE, style="dusk")
    day = renderer.render(frame_rng(0, "val", "default", 0)).image.mean()
    night = dusk.render(frame_rng(0, "val", "default", 0)).image.mean()
    assert night < 0.75 * day
    frame = renderer.render(frame_rng(0, "val", "default", 1))
    car = frame.image[(frame.ids // 1000 == 26)].astype(float)
    assert car.std(axis=0).mean() > 10  # texture, noise, lighting, several colours
    with pytest.raises(ValueError, match="unknown style"):
        FrameRenderer(*SIZE, style="noon")


def test_command_line(tmp_path, capsys):
    main(["--out", str(tmp_path), "--split", "train", "--num", "2", "--seed", "1",
          "--height", "64", "--width", "128", "--style", "dusk"])
    assert "frames/s" in capsys.readouterr().out
    assert len(list((tmp_path / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))) == 2
