"""Every kind of image file read right or refused by name; boxes clipped or flagged; skipped files
counted; class names by model class index. Tiny images written here, exact values where PIL is exact."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pathatlas.attribution.data.base import FirstN, SampleError
from pathatlas.attribution.data.class_names import read_class_names
from pathatlas.attribution.data.image_folder import ImageFolderDataset
from pathatlas.attribution.data.preprocess import (
    DEFAULT_BACKGROUND,
    DEFAULT_MIN_SIZE,
    ImagePreprocessing,
    UnsupportedImage,
    decode,
)
from pathatlas.attribution.run.builders import build_dataset
from pathatlas.attribution.run.config import ImageFolderDataConfig, ImageNetValDataConfig, parse_config
from pathatlas.attribution.run.fingerprint import dataset_identity
from pathatlas.attribution.run.plan import plan_store
from tests.flows.conftest import small_config

RAW = ImagePreprocessing(resize=None, crop=None)  # no resampling: decoded values come out as they are
BG = (10, 20, 30)
rng = np.random.default_rng(0)


def load(path, pre: ImagePreprocessing = RAW) -> np.ndarray:
    """``(H, W, 3)`` float32 as the pipeline reads ``path``."""
    return pre.load(path, "s")[0].transpose(1, 2, 0)


def write_png16(path, array: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG (PIL cannot write 16-bit RGB): ``color_type`` 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# -- high bit depths ---------------------------------------------------------------------------
def test_a_16_bit_grey_png_keeps_its_values_instead_of_turning_white(tmp_path):
    values = rng.integers(0, 65536, (20, 24), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    out = load(tmp_path / "g16.png")
    expected = (values / 65535).astype(np.float32)
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=-1))  # exact: kept in float
    assert out.mean() < 0.9  # convert("RGB") clipped every value above 255 to white
    # resampled as float: matches resizing the exact float image, not an 8-bit rounding of it
    resized = load(tmp_path / "g16.png", ImagePreprocessing(resize=16, crop=16))
    reference = np.asarray(
        Image.fromarray(expected, "F").resize((19, 16), Image.Resampling.BILINEAR, reducing_gap=None)
    )
    np.testing.assert_allclose(resized[..., 0], np.clip(reference[:, 2:18], 0, 1), atol=1e-6)


def test_a_16_bit_image_is_padded_like_its_8_bit_copy(tmp_path):
    values = rng.integers(0, 65536, (20, 40), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "w16.png")
    Image.fromarray((values / 257).round().astype(np.uint8)).save(tmp_path / "w8.png")
    pre = ImagePreprocessing(resize=(16, 16), crop=16, resize_mode="longer", fill=(124, 116, 104))
    (deep, g16), (flat, g8) = pre.load(tmp_path / "w16.png", "a"), pre.load(tmp_path / "w8.png", "b")
    assert g16 == g8 and (deep[:, 0, 0] * 255).round().tolist() == [124, 116, 104]  # padding coloured per channel
    np.testing.assert_allclose(deep, flat, atol=1 / 255)


@pytest.mark.parametrize("mode", ["I;16B", "I;16"])
def test_16_bit_tiffs_of_either_byte_order(tmp_path, mode):
    values = rng.integers(0, 65536, (17, 19), dtype=np.uint16)
    data = values.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    Image.frombytes(mode, (19, 17), data).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == mode
    np.testing.assert_array_equal(load(tmp_path / "x.tif")[..., 1], (values / 65535).astype(np.float32))


@pytest.mark.parametrize("color_type,channels", [(2, 3), (6, 4)])
def test_16_bit_rgb_pngs_read_within_one_8_bit_step(tmp_path, color_type, channels):
    values = rng.integers(0, 65536, (18, 20, channels), dtype=np.uint16)
    if channels == 4:
        values[..., 3] = 65535  # opaque: the colour is the pixel
    write_png16(tmp_path / "c16.png", values, color_type)
    out = load(tmp_path / "c16.png")
    np.testing.assert_allclose(out, values[..., :3] / 65535, atol=1 / 255)  # PIL keeps the high byte: <= 1/257
    assert np.abs(out - values[..., :3] / 65535).max() <= 1 / 257 + 1e-7


def test_32_bit_integers_are_refused_and_integers_of_known_depth_scaled(tmp_path):
    Image.fromarray(rng.integers(0, 2**20, (20, 20), dtype=np.int32), "I").save(tmp_path / "i32.tif")
    with pytest.raises(SampleError, match=r"sample 's': image .*i32.tif: 32-bit integer image \(mode I, 32 bits"):
        load(tmp_path / "i32.tif")
    values = rng.integers(0, 65536, (4, 5)).astype(np.int32)  # what an older PIL made of a 16-bit PNG
    out = decode(Image.fromarray(values, "I"), DEFAULT_BACKGROUND, depth=16)
    np.testing.assert_array_equal(out[..., 2], (values / 65535).astype(np.float32))
    with pytest.raises(UnsupportedImage, match="unknown bits per sample"):
        decode(Image.fromarray(values, "I"), DEFAULT_BACKGROUND, depth=None)


def test_float_images_in_0_1_are_read_others_refused_naming_the_range(tmp_path):
    values = rng.random((20, 21), dtype=np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load(tmp_path / "f.tif")[..., 0], values)
    Image.fromarray(values * 2 - 0.5, "F").save(tmp_path / "wide.tif")
    with pytest.raises(SampleError, match=r"wide.tif: float image \(mode F\) has values in \[-0.4.*, 1.4.*\], outside"):
        load(tmp_path / "wide.tif")


def test_an_unsupported_mode_is_refused_by_name():
    with pytest.raises(UnsupportedImage, match="image mode 'HSV' is not supported"):
        decode(Image.new("HSV", (20, 20)), DEFAULT_BACKGROUND)


# -- 8-bit kinds -------------------------------------------------------------------------------
def test_grey_and_bilevel_images_are_replicated(tmp_path):
    grey = rng.integers(0, 256, (20, 22), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    np.testing.assert_array_equal(load(tmp_path / "l.png"), np.repeat(grey[..., None], 3, -1) / np.float32(255))
    bits = rng.random((20, 22)) > 0.5
    Image.fromarray(bits).save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    np.testing.assert_array_equal(load(tmp_path / "one.png"), np.repeat(bits[..., None], 3, -1).astype(np.float32))


def test_alpha_is_composited_on_the_background(tmp_path):
    rgba = rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # transparent half
    rgba[10:, :, 3] = 255  # opaque half
    rgba[10, 0, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load(tmp_path / "rgba.png", ImagePreprocessing(resize=None, crop=None, background=BG))
    np.testing.assert_array_equal(out[:10], np.broadcast_to(np.float32(BG) / 255, (10, 20, 3)))
    np.testing.assert_array_equal(out[11:], rgba[11:, :, :3] / np.float32(255))
    blend = (128 * rgba[10, 0, :3].astype(float) + 127 * np.array(BG)) / 255 / 255
    np.testing.assert_allclose(out[10, 0], blend, atol=1 / 255)
    assert load(tmp_path / "rgba.png")[0, 0].tolist() == [1.0, 1.0, 1.0]  # default background: white
    la = np.stack([rng.integers(0, 256, (20, 20), dtype=np.uint8), np.zeros((20, 20), np.uint8)], -1)
    la[:, 10:, 1] = 255
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = load(tmp_path / "la.png", ImagePreprocessing(resize=None, crop=None, background=BG))
    np.testing.assert_array_equal(out[:, :10], np.broadcast_to(np.float32(BG) / 255, (20, 10, 3)))
    np.testing.assert_array_equal(out[:, 10:, 1], la[:, 10:, 0] / np.float32(255))


def test_palette_images_with_and_without_transparency(tmp_path):
    index = rng.integers(0, 4, (20, 20), dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]
    p = Image.fromarray(index, "P")
    p.putpalette(palette)
    p.save(tmp_path / "p.png")
    colours = np.array(palette, np.float32).reshape(4, 3) / 255
    np.testing.assert_array_equal(load(tmp_path / "p.png"), colours[index])
    p.save(tmp_path / "pt.png", transparency=3)  # palette entry 3 is transparent
    out = load(tmp_path / "pt.png", ImagePreprocessing(resize=None, crop=None, background=BG))
    colours[3] = np.float32(BG) / 255
    np.testing.assert_array_equal(out, colours[index])
    pa = Image.fromarray(index, "P")
    pa.putpalette(palette)
    pa = pa.convert("PA")
    pa.putalpha(Image.fromarray(np.where(index == 0, 0, 255).astype(np.uint8)))
    out = decode(pa, BG)
    np.testing.assert_array_equal(np.asarray(out)[index == 0], np.broadcast_to(BG, ((index == 0).sum(), 3)))


def test_cmyk_uses_pils_conversion(tmp_path):
    Image.new("CMYK", (20, 20), (255, 0, 0, 0)).save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(load(tmp_path / "cmyk.tif")[0, 0], [0, 1, 1])  # cyan


def test_exif_orientation_is_applied_first_and_boxes_are_in_the_oriented_frame(tmp_path):
    stored = np.zeros((40, 20, 3), np.uint8)  # 20 wide, 40 high as stored
    stored[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "rot.png", exif=exif)
    image, geometry = RAW.load(tmp_path / "rot.png", "s")
    assert image.shape == (3, 20, 40)  # shown 40 wide, 20 high
    assert image[:, 0, -1].tolist() == [1.0, 0.0, 0.0]  # the stored top-left is shown top-right
    assert (geometry.source_width, geometry.source_height) == (40, 20)
    root = tmp_path / "images" / "c"
    root.mkdir(parents=True)
    Image.fromarray(stored).save(root / "rot.png", exif=exif)
    # x 20..35 exists only in the image as shown (40 wide); as stored (20 wide) it would lie outside
    (tmp_path / "b.csv").write_text("id,x0,y0,x1,y1\nc/rot.png,20,0,35,10\n")
    pre = ImagePreprocessing(resize=None, crop=20)
    sample = ImageFolderDataset(tmp_path / "images", preprocessing=pre, boxes=tmp_path / "b.csv").load(0)
    assert sample.box_problem is None
    np.testing.assert_array_equal(sample.boxes, [[10, 0, 20, 10]])  # centre crop: left 10


def test_min_size_refuses_small_images_instead_of_upscaling(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(SampleError, match=r"dot.png: image of 1x1 is smaller than min_size 16"):
        load(tmp_path / "dot.png", ImagePreprocessing())
    Image.new("RGB", (40, 12)).save(tmp_path / "strip.png")
    with pytest.raises(SampleError, match="image of 40x12 is smaller than min_size 16"):
        load(tmp_path / "strip.png")
    assert load(tmp_path / "strip.png", ImagePreprocessing(resize=None, crop=None, min_size=12)).shape == (12, 40, 3)


# -- boxes -------------------------------------------------------------------------------------
VOC = "<annotation>{}</annotation>"
OBJECT = "<object><name>x</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"


@pytest.fixture
def boxed(tmp_path):
    """``images/c/{a,b,c}.png`` (40 wide, 30 high) and ``boxes/{a,b,c}.xml``: a box past the right
    edge, a box wholly outside, a malformed file."""
    root, boxes = tmp_path / "images", tmp_path / "boxes"
    (root / "c").mkdir(parents=True)
    boxes.mkdir()
    for name in "abc":
        Image.new("RGB", (40, 30), (50, 60, 70)).save(root / "c" / f"{name}.png")
    (boxes / "a.xml").write_text(VOC.format(OBJECT.format(11, 1, 60, 30)))
    (boxes / "b.xml").write_text(VOC.format(OBJECT.format(51, 1, 60, 30) + OBJECT.format(1, 41, 10, 50)))
    (boxes / "c.xml").write_text(VOC.format(OBJECT.format(1, 1, "ten", 30)))
    return root, boxes


def test_boxes_are_clipped_to_the_original_image(boxed):
    ds = ImageFolderDataset(boxed[0], preprocessing=ImagePreprocessing(resize=None, crop=(30, 40)), boxes=boxed[1])
    sample = ds.load(0)
    np.testing.assert_array_equal(sample.boxes, [[10, 0, 40, 30]])  # VOC xmax 60 > width 40
    assert sample.box_problem is None


def test_boxes_all_outside_their_image_are_a_box_problem(boxed):
    ds = ImageFolderDataset(boxed[0], preprocessing=ImagePreprocessing(resize=None, crop=(30, 40)), boxes=boxed[1])
    sample = ds.load(1)
    assert sample.boxes.shape == (0, 4)
    assert sample.box_problem == (
        "every box (x0, y0, x1, y1 in pixels) lies outside the 40x30 image: [50, 0, 60, 30], [0, 40, 10, 50]"
    )


def test_boxes_cut_away_by_the_crop_are_no_problem(tmp_path):
    (tmp_path / "images" / "c").mkdir(parents=True)
    Image.new("RGB", (100, 20)).save(tmp_path / "images" / "c" / "wide.png")
    (tmp_path / "b.csv").write_text("id,x0,y0,x1,y1\nc/wide.png,0,0,10,20\n")
    ds = ImageFolderDataset(
        tmp_path / "images", preprocessing=ImagePreprocessing(resize=None, crop=20), boxes=tmp_path / "b.csv"
    )
    sample = ds.load(0)
    assert sample.boxes.shape == (0, 4) and sample.box_problem is None


def test_a_malformed_box_file_quarantines_only_its_sample(boxed):
    ds = ImageFolderDataset(boxed[0], preprocessing=ImagePreprocessing(resize=None, crop=(30, 40)), boxes=boxed[1])
    with pytest.raises(SampleError, match=r"sample 'c/c.png': malformed VOC box file .*boxes/c.xml"):
        ds.load(2)
    assert ds.load(0).boxes.shape == (1, 4)


def test_a_bad_csv_row_quarantines_only_its_id(tmp_path, boxed):
    csv = tmp_path / "b.csv"
    csv.write_text("id,x0,y0,x1,y1\nc/a.png,0,0,10,10\nc/b.png,5,5,1,10\n")
    ds = ImageFolderDataset(boxed[0], preprocessing=ImagePreprocessing(resize=None, crop=(30, 40)), boxes=csv)
    np.testing.assert_array_equal(ds.load(0).boxes, [[0, 0, 10, 10]])
    with pytest.raises(SampleError, match=r"sample 'c/b.png': box CSV .*b.csv, row 3: x1 < x0"):
        ds.load(1)


# -- skipped files and class names -------------------------------------------------------------
@pytest.fixture
def animals(tmp_path):
    root = tmp_path / "animals"
    for name in ("cat", "dog", "motorcycle"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), (9, 9, 9)).save(root / name / f"{name}.jpg")
    (root / "cat" / "notes.txt").write_text("x")
    (root / "dog" / "notes.txt").write_text("x")
    (root / "dog" / "README").write_text("x")
    (root / "dog" / ".DS_Store").write_text("x")
    (root / "stray.jpg").write_bytes((root / "cat" / "cat.jpg").read_bytes())
    (root / "cat" / "more").mkdir()
    (root / "cat" / "more" / "deep.png").write_bytes(b"")
    return root


def test_skipped_files_are_counted_by_reason(animals):
    ds = ImageFolderDataset(animals, resize=None, crop=16)
    assert len(ds) == 3
    assert ds.skipped_files == {
        "hidden file": 1,
        "image outside class folders": 2,
        "not an image (extension .txt)": 2,
        "not an image (no extension)": 1,
    }
    assert ds.skipped_examples["image outside class folders"] == ["cat/more/deep.png", "stray.jpg"]
    assert FirstN(ds, 1).skipped_files == ds.skipped_files


def test_class_names_are_indexed_by_the_models_class_index(animals, tmp_path):
    index = {"cat": 281, "dog": 207, "motorcycle": 670}
    ds = ImageFolderDataset(animals, resize=None, crop=16, class_index=index)
    assert len(ds.class_names) == 671
    assert (ds.class_names[281], ds.class_names[207], ds.class_names[670], ds.class_names[3]) == (
        "cat",
        "dog",
        "motorcycle",
        "3",
    )
    assert [ds.label(i) for i in range(3)] == [281, 207, 670]
    keras = {str(i): [f"n{i:08d}", f"name{i}"] for i in range(1000)}
    (tmp_path / "keras.json").write_text(json.dumps(keras))
    named = ImageFolderDataset(animals, resize=None, crop=16, class_index=index, class_names=tmp_path / "keras.json")
    assert len(named.class_names) == 1000 and named.class_names[281] == "name281"
    (tmp_path / "few.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="has 2 names, but class_index uses class indices up to 670"):
        ImageFolderDataset(animals, resize=None, crop=16, class_index=index, class_names=tmp_path / "few.txt")
    merged = ImageFolderDataset(animals, resize=None, crop=16, class_index={"cat": 1, "dog": 1, "motorcycle": 0})
    assert merged.class_names == ["motorcycle", "cat / dog"]


def test_class_names_files(tmp_path):
    (tmp_path / "n.txt").write_text("tench\n\ngoldfish\n")
    assert read_class_names(tmp_path / "n.txt") == ["tench", "1", "goldfish"]
    (tmp_path / "l.json").write_text('["a", "b"]')
    assert read_class_names(tmp_path / "l.json") == ["a", "b"]
    (tmp_path / "k.json").write_text('{"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}')
    assert read_class_names(tmp_path / "k.json") == ["tench", "goldfish"]
    (tmp_path / "bad.json").write_text('{"tench": 0}')
    with pytest.raises(ValueError, match="keys must be class indices"):
        read_class_names(tmp_path / "bad.json")


# -- config, builders, fingerprint, plan -------------------------------------------------------
def test_decoding_settings_reach_the_dataset_and_enter_the_fingerprint_only_when_set(animals, tmp_path):
    assert ImageFolderDataConfig.model_fields["min_size"].default == DEFAULT_MIN_SIZE
    assert ImageNetValDataConfig.model_fields["background"].default == DEFAULT_BACKGROUND
    section = {"kind": "image_folder", "root": str(animals), "min_size": 20, "background": [0, 0, 0]}
    cfg = parse_config(small_config(tmp_path, dataset=section, preprocess={"resize": None, "crop": 16}, metrics=[]))
    ds = build_dataset(cfg)
    assert (ds.preprocessing.min_size, ds.preprocessing.background) == (20, (0, 0, 0))
    ids, labels = ["a"], [0]
    plain = {"kind": "image_folder", "root": "r", "boxes": None, "class_index": None, "limit": None}
    defaults = {**plain, "min_size": 16, "background": [255, 255, 255], "class_names": ["x"]}
    assert dataset_identity(defaults, ids, labels) == dataset_identity(plain, ids, labels)  # older runs resume
    changed = dataset_identity({**defaults, "min_size": 20}, ids, labels)
    assert changed["section"]["min_size"] == 20 and "class_names" not in changed["section"]


def test_a_box_folder_is_identified_by_its_listing(boxed):
    import os

    section = {"kind": "image_folder", "root": str(boxed[0]), "boxes": str(boxed[1])}
    first = dataset_identity(section, ["a"], [0])["section"]
    assert set(first) == {"kind", "boxes_listing_sha256"}
    assert dataset_identity(section, ["a"], [0])["section"] == first
    stat = (boxed[1] / "a.xml").stat()
    os.utime(boxed[1] / "a.xml", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # an edit
    assert dataset_identity(section, ["a"], [0])["section"] != first


def test_the_plan_records_skipped_files_and_class_names(animals, tmp_path):
    section = {"kind": "image_folder", "root": str(animals), "class_index": {"cat": 281, "dog": 207, "motorcycle": 670}}
    cfg = parse_config(small_config(tmp_path, dataset=section, preprocess={"resize": None, "crop": 16}, metrics=[]))
    store = plan_store(cfg)
    assert store.meta["skipped_files"]["not an image (extension .txt)"] == 2
    assert store.meta["class_names"][281] == "cat" and store.meta["class_names"][3] == "3"
