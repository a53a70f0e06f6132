"""Panoptic PNG reading: libspng (through ctypes or pyspng.load) and OpenCV decode alike and
fail alike."""
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from upsnet_core.data import panoptic_io
from upsnet_core.data.panoptic_io import (id_to_rgb, read_panoptic_png, rgb_to_id,
                                          write_panoptic_png)
from upsnet_core.evaluation.pq import PanopticEvaluator

needs_pyspng = pytest.mark.skipif(panoptic_io.pyspng is None, reason="pyspng not installed")


def random_ids(shape=(37, 53), seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2 ** 24, shape)
    ids[:5] = 0
    ids[5:9] = 2 ** 24 - 1
    return ids


PATHS = ("libspng", "pyspng", "opencv") if panoptic_io.pyspng is not None else ("opencv",)
"""libspng through ctypes (the default with pyspng 0.1.4), pyspng.load, OpenCV."""


def read(path, how):
    if how == "pyspng":
        saved, panoptic_io._LIBSPNG = panoptic_io._LIBSPNG, None
        try:
            return read_panoptic_png(path, "spng")
        finally:
            panoptic_io._LIBSPNG = saved
    return read_panoptic_png(path, "opencv" if how == "opencv" else "spng")


def decode_all(path):
    return [read(path, how) for how in PATHS]


def png_with(header, idat=None):
    """A PNG with this IHDR payload and IDAT data, valid CRCs."""
    idat = zlib.compress(b"\0" * 13) if idat is None else idat
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


@needs_pyspng
def test_default_decoder_is_spng_when_installed(tmp_path, monkeypatch):
    ids = random_ids()
    write_panoptic_png(tmp_path / "a.png", ids)
    assert panoptic_io.default_png_decoder() == "spng"
    assert panoptic_io._LIBSPNG is not None, "pyspng's libspng is not callable through ctypes"
    monkeypatch.setattr(panoptic_io, "pyspng", None)
    assert panoptic_io.default_png_decoder() == "opencv"
    np.testing.assert_array_equal(read_panoptic_png(tmp_path / "a.png"), ids)
    with pytest.raises(ImportError, match="pyspng"):
        read_panoptic_png(tmp_path / "a.png", "spng")


def test_both_decoders_read_our_pngs_identically(tmp_path):
    ids = random_ids()
    write_panoptic_png(tmp_path / "a.png", ids)
    for decoded in decode_all(tmp_path / "a.png"):
        assert decoded.dtype == np.int32 and decoded.shape == ids.shape
        np.testing.assert_array_equal(decoded, ids)


@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"compress_level": 0}])
def test_both_decoders_read_pil_pngs_identically(tmp_path, options):
    ids = random_ids((64, 129), seed=1)
    Image.fromarray(id_to_rgb(ids)).save(tmp_path / "a.png", **options)
    for decoded in decode_all(tmp_path / "a.png"):
        np.testing.assert_array_equal(decoded, ids)


@pytest.mark.parametrize("transparency", [None, 2])
def test_palette_pngs_decode_to_their_rgb_colours(tmp_path, transparency):
    rng = np.random.default_rng(2)
    index = rng.integers(0, 5, (20, 30)).astype(np.uint8)
    palette = rng.integers(0, 256, (5, 3)).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    image.save(tmp_path / "p.png", **({} if transparency is None
                                      else {"transparency": transparency}))
    for decoded in decode_all(tmp_path / "p.png"):
        np.testing.assert_array_equal(decoded, rgb_to_id(palette[index]))


def write_gray(path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)


def write_rgba(path):
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(path)


def write_rgb16(path):
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint16))


def write_jpeg(path):
    path.write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())


def write_truncated(path):
    write_panoptic_png(path, random_ids())
    path.write_bytes(path.read_bytes()[:-30])


def write_bit_flip(path):
    write_panoptic_png(path, random_ids())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("write, error, message", [
    (None, FileNotFoundError, r"missing\.png does not exist"),
    (write_gray, ValueError, r"bad\.png must be 8-bit RGB; got 8-bit grayscale"),
    (write_rgba, ValueError, r"bad\.png must be 8-bit RGB; got 8-bit RGBA"),
    (write_rgb16, ValueError, r"bad\.png must be 8-bit RGB; got 16-bit RGB"),
    (write_jpeg, ValueError, r"cannot decode panoptic PNG .*bad\.png: not a PNG file"),
    (write_truncated, ValueError, r"cannot decode panoptic PNG .*bad\.png: truncated"),
    (write_bit_flip, ValueError, r"cannot decode panoptic PNG .*bad\.png: corrupt data "
                                 r"\(CRC mismatch in the 'IDAT' chunk"),
])
def test_bad_files_give_the_same_clear_error_on_both_paths(tmp_path, write, error, message):
    path = tmp_path / ("missing.png" if write is None else "bad.png")
    if write is not None:
        write(path)
    messages = []
    for how in PATHS:
        with pytest.raises(error, match=message) as raised:
            read(path, how)
        messages.append(str(raised.value))
    assert len(set(messages)) == 1


@pytest.mark.parametrize("size", [(0, 4), (1 << 16, 1 << 15)])
def test_empty_or_huge_images_are_refused_before_decoding(tmp_path, size):
    (tmp_path / "bad.png").write_bytes(png_with(struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)))
    messages = []
    for how in PATHS:
        with pytest.raises(ValueError, match=r"bad\.png: size .* is empty or above") as raised:
            read(tmp_path / "bad.png", how)
        messages.append(str(raised.value))
    assert len(set(messages)) == 1


@pytest.mark.parametrize("idat", [b"not zlib data", zlib.compress(b"\0" * 5)])
def test_undecodable_image_data_is_an_error_naming_the_file(tmp_path, idat):
    (tmp_path / "bad.png").write_bytes(png_with(struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0),
                                                idat))
    for how in PATHS:
        with pytest.raises(ValueError, match=r"cannot decode panoptic PNG .*bad\.png"):
            read(tmp_path / "bad.png", how)


def test_unknown_decoder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown PNG decoder 'libpng'"):
        read_panoptic_png(tmp_path / "a.png", "libpng")


@pytest.mark.parametrize("segments", [40, 300])
def test_evaluator_id_lookup_counts_like_a_direct_comparison(segments):
    """The evaluator's overlap counts (table lookups + compiled pair count) equal those of a
    direct per-pair comparison, for few and for many segments with ids anywhere in 24 bits."""
    rng = np.random.default_rng(segments)
    gt_ids = rng.choice(np.arange(1, 2 ** 24), segments, replace=False)
    gt = np.concatenate([[0], gt_ids])[rng.integers(0, segments + 1, (90, 70))]
    pred = np.where(rng.random(gt.shape) < 0.2, 0, gt + 1).astype(np.int32)
    pred_ids = np.unique(pred[pred > 0])
    evaluator = PanopticEvaluator([{"id": 1, "name": "a", "isthing": True}])
    image = evaluator.image_overlap(gt.astype(np.int32), [{"id": i, "category_id": 1} for i in gt_ids],
                                    pred, [{"id": i, "category_id": 1} for i in pred_ids])
    gt_list, pred_list = np.concatenate([[0], gt_ids]), np.concatenate([[0], pred_ids])
    gt_index = np.argmax(gt.ravel()[:, None] == gt_list[None, :], axis=1)
    pred_index = np.argmax(pred.ravel()[:, None] == pred_list[None, :], axis=1)
    expected = np.zeros((len(gt_list), len(pred_list)), np.int64)
    np.add.at(expected, (gt_index, pred_index), 1)
    np.testing.assert_array_equal(image.overlap, expected[1:, 1:])
    np.testing.assert_array_equal(image.on_void, expected[0, 1:])
