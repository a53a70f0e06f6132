"""Synthetic ego-view street scenes written in the Cityscapes panoptic layout.

Command line::

    python -m upsnet_core.data.synthetic --out DIR --split train --num 100 --seed 0 \\
        --height 512 --width 1024 [--style default|dusk] [--workers 2]

writes exactly what Cityscapes' ``createPanopticImgs`` produces for a real split::

    DIR/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     RGB image
    DIR/gtFine/cityscapes_panoptic_<split>/<city>_<seq>_<frame>_gtFine_panoptic.png
    DIR/gtFine/cityscapes_panoptic_<split>.json

with Cityscapes' id scheme in the panoptic PNG (``id = R + 256 G + 256^2 B``): void 0,
stuff and crowd regions = category id, thing instance ``k`` (0-based, as in Cityscapes'
``instanceIds``) = ``category_id * 1000 + k``. The city is ``synth<style>``, the sequence
number the frame index and the frame number 19. Frame ``i`` depends only on
``(seed, split, style, i)``: the same arguments give the same bytes. The styles
(``default``, ``dusk``) differ in light, sky, fog, noise and colour grading.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..categories import LABEL_DIVISOR, CategorySet
from .panoptic_io import segment_areas_and_boxes, write_panoptic_png, write_png
from .synthetic_scene import STYLES, Canvas, SceneBuilder, Style, segment_ids

SUPERCATEGORY = {7: "flat", 8: "flat", 11: "construction", 12: "construction",
                 13: "construction", 17: "object", 19: "object", 20: "object", 21: "nature",
                 22: "nature", 23: "sky", 24: "human", 25: "human"}
"""Cityscapes' label categories (``labels.py``); the vehicle classes are ``vehicle``."""
FRAME_NUMBER = 19
"""Cityscapes annotates the 20th frame of each snippet (``..._000019``)."""
TEXTURE_PAD = 64
CATEGORIES = CategorySet.preset("cityscapes")
THING_IDS = frozenset(c.id for c in CATEGORIES.things)


@dataclass
class SyntheticFrame:
    """One rendered scene.

    ``image``: ``(H, W, 3)`` uint8 RGB. ``ids``: ``(H, W)`` int32 Cityscapes panoptic ids
    (void 0). ``segments_info``: createPanopticImgs' entries (id, category_id, area,
    bbox [x, y, w, h], iscrowd), sorted by id.
    """

    image: np.ndarray
    ids: np.ndarray
    segments_info: list[dict]


def frame_rng(seed: int, split: str, style: str, index: int) -> np.random.Generator:
    """The random generator of one frame (independent of any other frame)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and frame index must be >= 0; got {seed}, {index}")
    return np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(style.encode()),
                                  index])


def get_style(name: str) -> Style:
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; known styles: {sorted(STYLES)}")
    return STYLES[name]


class FrameRenderer:
    """Renders frames of one size and style; caches the texture fields between frames."""

    def __init__(self, height: int, width: int, style: str = "default"):
        if height < 32 or width < 32:
            raise ValueError(f"frames must be at least 32x32; got {height}x{width}")
        self.height, self.width, self.style = height, width, get_style(style)
        rng = np.random.default_rng([zlib.crc32(style.encode()), height, width])
        shape = (height + TEXTURE_PAD, width + TEXTURE_PAD)
        self.fine = rng.standard_normal(shape, dtype=np.float32)
        coarse = rng.standard_normal((shape[0] // 16 + 2, shape[1] // 16 + 2), dtype=np.float32)
        coarse = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
        self.coarse = coarse / coarse.std()
        self.noise = rng.standard_normal(shape + (3,), dtype=np.float32)

    def render(self, rng: np.random.Generator) -> SyntheticFrame:
        """Draw one random scene with ``rng``."""
        canvas = Canvas(self.height, self.width)
        camera = SceneBuilder(rng, canvas, self.style).build()
        image = self._appearance(rng, canvas, camera.horizon)
        segment_map = np.take(np.asarray(canvas.part_segment, dtype=np.uint16), canvas.parts)
        ids_of_segment = segment_ids(canvas.segments)
        return SyntheticFrame(image, np.take(ids_of_segment, segment_map),
                              segments_info(segment_map, ids_of_segment))

    def _crop(self, rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
        y, x = rng.integers(0, TEXTURE_PAD + 1, 2)
        return field[y:y + self.height, x:x + self.width]

    def _appearance(self, rng: np.random.Generator, canvas: Canvas,
                    horizon: float) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB: part colours x texture x light, fog, sensor noise."""
        st, parts = self.style, canvas.parts
        colors = np.clip(np.asarray(canvas.part_color, dtype=np.float32), 0.0, 1.0)
        grey = colors.mean(axis=1, keepdims=True)
        colors = (grey + st.saturation * (colors - grey)) * np.asarray(st.tint, np.float32)
        amplitude = np.asarray(canvas.part_texture, dtype=np.float32)
        factor = np.take(amplitude[:, 0], parts) * self._crop(rng, self.fine)
        factor += np.take(amplitude[:, 1], parts) * self._crop(rng, self.coarse)
        factor += 1
        rows = np.arange(self.height, dtype=np.float32)[:, None]
        fog = rng.uniform(*st.fog) * np.exp(-np.abs(rows - horizon) / (0.15 * self.height))
        factor *= self._light(rng) * (1 - fog)
        image = np.take(colors, parts, axis=0)
        image *= factor[..., None]
        image += fog[..., None] * np.asarray(st.fog_color, np.float32)
        noise = np.float32(st.noise * rng.uniform(0.5, 1.5))
        cv2.scaleAdd(self._crop(rng, self.noise), noise, image, dst=image)
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
        np.maximum(image, 0, out=image)
        return cv2.convertScaleAbs(image, alpha=255)

    def _light(self, rng: np.random.Generator) -> np.ndarray:
        """``(H, W)`` float32 illumination: brightness, a sideways gradient, vignetting."""
        y = np.linspace(-1, 1, self.height, dtype=np.float32)[:, None]
        x = np.linspace(-1, 1, self.width, dtype=np.float32)[None, :]
        vignette = rng.uniform(0.0, 0.25)
        return (rng.uniform(*self.style.brightness) * (1 + rng.uniform(-0.2, 0.2) * x)
                * (1 - vignette * x * x) * (1 - vignette * y * y))


def segments_info(segment_map: np.ndarray, ids_of_segment: np.ndarray) -> list[dict]:
    """createPanopticImgs' ``segments_info`` of a frame, sorted by id.

    Args:
        segment_map: ``(H, W)`` canvas segment index per pixel.
        ids_of_segment: ``(S,)`` Cityscapes panoptic id per canvas segment.
    """
    areas, boxes = segment_areas_and_boxes(segment_map, len(ids_of_segment))
    entries = []
    for s in np.argsort(ids_of_segment, kind="stable"):
        segment_id = int(ids_of_segment[s])
        if areas[s] == 0 or segment_id == 0:
            continue
        category_id = segment_id if segment_id < LABEL_DIVISOR else segment_id // LABEL_DIVISOR
        entries.append({"id": segment_id, "category_id": category_id, "area": int(areas[s]),
                        "bbox": [int(v) for v in boxes[s]],
                        "iscrowd": int(segment_id < LABEL_DIVISOR and category_id in THING_IDS)})
    return entries


def city_of(style: str) -> str:
    return f"synth{style}"


def image_id_of(style: str, index: int) -> str:
    """``<city>_<seq>_<frame>`` name of frame ``index``."""
    return f"{city_of(style)}_{index:06d}_{FRAME_NUMBER:06d}"


def cityscapes_categories() -> list[dict]:
    """The ``categories`` list createPanopticImgs writes (label ids, eval classes only)."""
    return [{"id": c.id, "name": c.name, "color": list(c.color),
             "supercategory": SUPERCATEGORY.get(c.id, "vehicle"), "isthing": int(c.isthing)}
            for c in sorted(CATEGORIES, key=lambda c: c.id)]


class _FrameWriter:
    """Renders frame ``index`` and writes its two PNGs; returns its JSON entries."""

    def __init__(self, out: Path, split: str, seed: int, height: int, width: int, style: str):
        self.out, self.split, self.seed, self.style = out, split, seed, style
        self.size = (height, width)
        self._renderer: FrameRenderer | None = None

    def __call__(self, index: int) -> tuple[dict, dict]:
        if self._renderer is None:
            self._renderer = FrameRenderer(*self.size, self.style)
        frame = self._renderer.render(frame_rng(self.seed, self.split, self.style, index))
        image_id = image_id_of(self.style, index)
        write_png(self.out / "leftImg8bit" / self.split / city_of(self.style)
                  / f"{image_id}_leftImg8bit.png", frame.image)
        write_panoptic_png(self.out / "gtFine" / f"cityscapes_panoptic_{self.split}"
                           / f"{image_id}_gtFine_panoptic.png", frame.ids)
        image = {"id": image_id, "width": self.size[1], "height": self.size[0],
                 "file_name": f"{image_id}_gtFine_leftImg8bit.png"}
        annotation = {"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
                      "segments_info": frame.segments_info}
        return image, annotation


_WORKER_WRITER: _FrameWriter | None = None


def _init_worker(writer: _FrameWriter) -> None:
    global _WORKER_WRITER
    _WORKER_WRITER = writer


def _write_in_worker(index: int) -> tuple[dict, dict]:
    return _WORKER_WRITER(index)


def generate_dataset(out: str | Path, split: str, num: int, seed: int = 0, height: int = 512,
                     width: int = 1024, style: str = "default", workers: int = 1) -> Path:
    """Render ``num`` frames into ``out`` in the Cityscapes panoptic layout.

    ``workers > 1`` renders in that many processes; the bytes written do not depend on it.
    Overwrites the split's JSON (listing exactly these frames). Returns the JSON path.
    """
    out = Path(out)
    get_style(style)
    (out / "leftImg8bit" / split / city_of(style)).mkdir(parents=True, exist_ok=True)
    (out / "gtFine" / f"cityscapes_panoptic_{split}").mkdir(parents=True, exist_ok=True)
    writer = _FrameWriter(out, split, seed, height, width, style)
    if workers > 1:
        with multiprocessing.Pool(workers, _init_worker, (writer,)) as pool:
            entries = pool.map(_write_in_worker, range(num), chunksize=4)
    else:
        entries = [writer(index) for index in range(num)]
    json_path = out / "gtFine" / f"cityscapes_panoptic_{split}.json"
    with open(json_path, "w") as f:
        json.dump({"images": [image for image, _ in entries],
                   "annotations": [annotation for _, annotation in entries],
                   "categories": cityscapes_categories()}, f, sort_keys=True, indent=4)
    return json_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--split", required=True, help="split name, e.g. train or val")
    parser.add_argument("--num", type=int, required=True, help="number of frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--style", default="default", choices=sorted(STYLES))
    parser.add_argument("--workers", type=int, default=1, help="processes (same output)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    json_path = generate_dataset(args.out, args.split, args.num, args.seed, args.height,
                                 args.width, args.style, args.workers)
    elapsed = time.perf_counter() - start
    print(f"wrote {args.num} frames ({args.height}x{args.width}, style {args.style}) and "
          f"{json_path} in {elapsed:.1f} s ({args.num / elapsed:.1f} frames/s)")


if __name__ == "__main__":
    main()
