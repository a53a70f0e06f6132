"""Loaders return what the generator drew; transforms keep targets consistent; collate."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from upsnet_core.categories import IGNORE_INDEX, CategorySet
from upsnet_core.data import build_dataset, collate_panoptic
from upsnet_core.data.panoptic_io import read_panoptic_png, write_panoptic_png
from upsnet_core.data.synthetic import FrameRenderer, frame_rng, generate_dataset
from upsnet_core.data.transforms import (Compose, RandomCrop, RandomHorizontalFlip,
                                         RandomScale, RandomShortSide, Resize)

CATEGORIES = CategorySet.preset("cityscapes")
SIZE, SEED, FRAMES = (96, 192), 4, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    generate_dataset(root, "val", FRAMES, seed=SEED, height=SIZE[0], width=SIZE[1])
    return root


def drawn_frames():
    renderer = FrameRenderer(*SIZE)
    return [renderer.render(frame_rng(SEED, "val", "default", i)) for i in range(FRAMES)]


def expected_maps(frame, categories):
    """Label image, semantic map and instances (id, label), from the generator's drawing."""
    panoptic = np.zeros(frame.ids.shape, np.int32)
    semantic = np.full(frame.ids.shape, IGNORE_INDEX)
    instances, counters = [], {}
    for s in frame.segments_info:
        category_id = s["category_id"]
        if category_id not in categories:
            continue
        if s["iscrowd"] or not categories.by_id(category_id).isthing:
            new_id = category_id * 1000
        else:
            counters[category_id] = counters.get(category_id, 0) + 1
            new_id = category_id * 1000 + counters[category_id]
            instances.append((new_id, categories.thing_label(category_id)))
        panoptic[frame.ids == s["id"]] = new_id
        semantic[frame.ids == s["id"]] = categories.semantic_index(category_id)
    return panoptic, semantic, instances


def box_of(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("classes", [None, ["road", "sky", "building", "car", "person"]])
def test_loader_returns_what_the_generator_drew(root, classes):
    categories = CATEGORIES if classes is None else CATEGORIES.select(classes)
    dataset = build_dataset("synthetic", root, "val", categories)
    assert len(dataset) == FRAMES
    for index, ((image, target), frame) in enumerate(zip(dataset, drawn_frames())):
        panoptic, semantic, instances = expected_maps(frame, categories)
        assert image.dtype == torch.float32 and image.shape == (3, *SIZE)
        assert torch.equal(image, torch.from_numpy(frame.image).permute(2, 0, 1).float() / 255)
        assert target["panoptic"].dtype == torch.int32
        np.testing.assert_array_equal(target["panoptic"].numpy(), panoptic)
        assert target["semantic"].dtype == torch.int64
        np.testing.assert_array_equal(target["semantic"].numpy(), semantic)
        assert target["labels"].tolist() == [label for _, label in instances]
        assert target["masks"].dtype == torch.uint8
        for mask, box, (instance_id, _) in zip(target["masks"], target["boxes"], instances):
            np.testing.assert_array_equal(mask.numpy(), panoptic == instance_id)
            assert box.tolist() == box_of(panoptic == instance_id)
        listed = sorted(s["id"] for s in target["segments_info"])
        assert listed == sorted(set(panoptic.ravel()) - {0})
        assert target["image_id"] == f"synthdefault_{index:06d}_000019"
        assert target["orig_size"] == SIZE


def test_non_model_classes_and_real_instance_numbering(tmp_path):
    """Real files: first instance numbered 0, classes outside the model's set -> void."""
    ids = np.full((8, 12), 7)
    ids[:, 8:] = 9  # parking: not one of the 19 training classes
    ids[1:3, 1:3] = 26000
    ids[4:6, 1:3] = 26001
    ids[4:6, 5:7] = 29000  # caravan
    image_id = "aachen_000000_000019"
    (tmp_path / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    Image.new("RGB", (12, 8)).save(tmp_path / "leftImg8bit" / "val" / "aachen"
                                   / f"{image_id}_leftImg8bit.png")
    (tmp_path / "gtFine" / "cityscapes_panoptic_val").mkdir(parents=True)
    write_panoptic_png(tmp_path / "gtFine" / "cityscapes_panoptic_val" / "p.png", ids)
    segments = [{"id": i, "category_id": i if i < 1000 else i // 1000, "iscrowd": 0}
                for i in (7, 9, 26000, 26001, 29000)]
    categories = CATEGORIES.to_list() + [{"id": 9, "name": "parking", "isthing": 0},
                                         {"id": 29, "name": "caravan", "isthing": 1}]
    (tmp_path / "gtFine" / "cityscapes_panoptic_val.json").write_text(json.dumps({
        "annotations": [{"image_id": image_id, "file_name": "p.png", "segments_info": segments}],
        "categories": categories}))
    _, target = build_dataset("cityscapes", tmp_path, "val", CATEGORIES)[0]
    expected = np.where(ids == 7, 7000, 0)
    expected[ids == 26000], expected[ids == 26001] = 26001, 26002
    np.testing.assert_array_equal(target["panoptic"].numpy(), expected)
    assert (target["semantic"].numpy()[(ids == 9) | (ids == 29000)] == IGNORE_INDEX).all()
    assert target["labels"].tolist() == [CATEGORIES.thing_label(26)] * 2


def to_coco(cityscapes_root, coco_root, annotations_folder):
    """Rewrite the Cityscapes-layout data as a COCO panoptic set (JPEG images, new ids)."""
    data = json.loads((cityscapes_root / "gtFine" / "cityscapes_panoptic_val.json").read_text())
    base = coco_root / "annotations" if annotations_folder else coco_root
    (base / "panoptic_val2017").mkdir(parents=True)
    (coco_root / "val2017").mkdir()
    images, annotations = [], []
    for number, annotation in enumerate(data["annotations"], start=1):
        image_id = annotation["image_id"]
        city = image_id.split("_")[0]
        Image.open(cityscapes_root / "leftImg8bit" / "val" / city / f"{image_id}_leftImg8bit.png"
                   ).save(coco_root / "val2017" / f"{number:012d}.jpg", quality=95)
        ids = read_panoptic_png(cityscapes_root / "gtFine" / "cityscapes_panoptic_val"
                                / annotation["file_name"])
        write_panoptic_png(base / "panoptic_val2017" / f"{number:012d}.png",
                           np.where(ids > 0, ids * 401 + 17, 0))
        images.append({"id": number, "file_name": f"{number:012d}.jpg",
                       "height": SIZE[0], "width": SIZE[1]})
        annotations.append({"image_id": number, "file_name": f"{number:012d}.png",
                            "segments_info": [dict(s, id=s["id"] * 401 + 17)
                                              for s in annotation["segments_info"]]})
    (base / "panoptic_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": data["categories"]}))


@pytest.mark.parametrize("annotations_folder", [True, False])
def test_coco_loader_matches_the_cityscapes_loader(root, tmp_path, annotations_folder):
    to_coco(root, tmp_path, annotations_folder)
    coco = build_dataset("coco", tmp_path, "val", CATEGORIES)
    cityscapes = build_dataset("cityscapes", root, "val", CATEGORIES)
    for number, ((coco_image, coco_target), (image, target)) in enumerate(zip(coco, cityscapes)):
        assert coco_target["image_id"] == str(number + 1)
        assert coco_image.shape == image.shape
        assert (coco_image - image).abs().mean() < 0.03  # JPEG
        for key in ("panoptic", "semantic", "masks", "labels", "boxes"):
            assert torch.equal(coco_target[key], target[key]), key
        assert coco_target["segments_info"] == target["segments_info"]


def copy_of(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    json_path = copy / "gtFine" / "cityscapes_panoptic_val.json"
    return copy, json_path, json.loads(json_path.read_text())


def test_bad_files_give_errors_naming_the_file_and_the_id(root, tmp_path):
    copy, json_path, data = copy_of(root, tmp_path)
    removed = data["annotations"][0]["segments_info"].pop(0)
    data["annotations"][1]["segments_info"][0]["category_id"] = 99
    json_path.write_text(json.dumps(data))
    dataset = build_dataset("cityscapes", copy, "val", CATEGORIES)
    png = data["annotations"][0]["file_name"]
    with pytest.raises(ValueError, match=rf"{png}.*\[{removed['id']}\]"):
        dataset[0]
    with pytest.raises(ValueError, match=r"cityscapes_panoptic_val\.json.*category_id 99"):
        dataset[1]
    image_path = next((copy / "leftImg8bit").rglob("*_000002_*.png"))
    Image.new("RGB", (10, 10)).save(image_path)
    with pytest.raises(ValueError, match=rf"size mismatch: image {image_path}"):
        dataset[2]
    image_path.unlink()
    with pytest.raises(FileNotFoundError, match=str(image_path)):
        build_dataset("cityscapes", copy, "val", CATEGORIES)
    with pytest.raises(FileNotFoundError, match="cityscapes_panoptic_train.json"):
        build_dataset("cityscapes", copy, "train", CATEGORIES)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        build_dataset("kitti", copy, "val", CATEGORIES)


def assert_consistent(image, target):
    """Every part of the target agrees with the panoptic map and the image size."""
    panoptic = target["panoptic"].numpy()
    assert image.shape[-2:] == panoptic.shape == tuple(target["semantic"].shape)
    segments = target["segments_info"]
    assert set(np.unique(panoptic).tolist()) - {0} == {s["id"] for s in segments}
    semantic = np.full(panoptic.shape, IGNORE_INDEX)
    for s in segments:
        mask = panoptic == s["id"]
        semantic[mask] = CATEGORIES.semantic_index(s["category_id"])
        ys, xs = np.nonzero(mask)
        assert s["area"] == len(ys) > 0
        assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    np.testing.assert_array_equal(target["semantic"].numpy(), semantic)
    instances = [s for s in segments if s["id"] % 1000]
    assert len(target["masks"]) == len(target["labels"]) == len(target["boxes"]) == len(instances)
    for s, mask, label, box in zip(instances, target["masks"], target["labels"], target["boxes"]):
        np.testing.assert_array_equal(mask.numpy(), panoptic == s["id"])
        assert label == CATEGORIES.thing_label(s["category_id"])
        assert box.tolist() == box_of(mask.numpy())


def test_augmentations_keep_targets_consistent(root):
    dataset = build_dataset("cityscapes", root, "val", CATEGORIES)
    generator = torch.Generator().manual_seed(0)
    augment = Compose([RandomShortSide([64, 80, 112], max_size=300, generator=generator),
                       RandomScale(0.6, 1.4, generator=generator),
                       RandomHorizontalFlip(0.5, generator=generator),
                       RandomCrop(48, 100, generator=generator)])
    dropped = 0
    for trial in range(8):
        image, target = dataset[trial % FRAMES]
        out_image, out_target = augment(image, target)
        assert out_image.shape[-2] <= 48 and out_image.shape[-1] <= 100
        assert_consistent(out_image, out_target)
        dropped += len(out_target["labels"]) < len(target["labels"])
    assert dropped > 0  # crops did remove instances
    for resize in (Resize(short_side=50), Resize(scale=0.5), Resize(short_side=200, max_size=250)):
        assert_consistent(*resize(*dataset[0]))


def test_geometry_of_flip_and_resize(root):
    image, target = build_dataset("cityscapes", root, "val", CATEGORIES)[0]
    flipped_image, flipped = RandomHorizontalFlip(1.0)(image, target)
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped["panoptic"], target["panoptic"].flip(-1))
    back_image, back = RandomHorizontalFlip(1.0)(flipped_image, flipped)
    assert torch.equal(back_image, image)
    for key in ("panoptic", "semantic", "masks", "labels", "boxes"):
        assert torch.equal(back[key], target[key])
    small_image, small = Resize(scale=0.5)(image, target)
    assert small_image.shape[-2:] == (SIZE[0] // 2, SIZE[1] // 2)
    assert torch.equal(small["panoptic"], target["panoptic"][1::2, 1::2])
    assert Resize(scale=1.0)(image, target)[1] is target
    with pytest.raises(ValueError, match="exactly one"):
        Resize()


def test_collate_keeps_images_of_two_sizes(root, tmp_path):
    generate_dataset(tmp_path, "val", 1, seed=1, height=64, width=128)
    concat = ConcatDataset([build_dataset("cityscapes", root, "val", CATEGORIES),
                            build_dataset("cityscapes", tmp_path, "val", CATEGORIES)])
    loader = DataLoader(concat, batch_size=2, sampler=[0, FRAMES], collate_fn=collate_panoptic)
    images, targets = next(iter(loader))
    assert [tuple(i.shape) for i in images] == [(3, *SIZE), (3, 64, 128)]
    assert [tuple(t["panoptic"].shape) for t in targets] == [SIZE, (64, 128)]
