"""ImageNet val as distributed, on a tiny fake copy in the real layout: devkit (meta.mat written by
scipy with the real field names, non-leaf synsets included), LOC_val_solution.csv, bbox XML."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pathatlas.attribution.data.base import SampleError
from pathatlas.attribution.data.imagenet_val import ImageNetValDataset, read_meta_mat
from pathatlas.attribution.run.builders import build_dataset
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.loader import SampleLoader
from pathatlas.attribution.run.store import Shard

META_FIELDS = (
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
)
# (ILSVRC2012_ID, WNID, words, children): ids 1-4 are the leaves; their id order is not the sorted
# wnid order, and the non-leaf synsets sort before and between them.
SYNSETS = (
    (1, "n02000003", "cat, true cat", ()),
    (2, "n01000001", "tench, Tinca tinca", ()),
    (3, "n03000002", "dog, domestic dog", ()),
    (4, "n01000002", "goldfish, Carassius auratus", ()),
    (5, "n00000001", "entity", (6,)),
    (6, "n02000001", "animal", (1, 2, 3, 4)),
)
TORCHVISION = {"n01000001": 0, "n01000002": 1, "n02000003": 2, "n03000002": 3}  # sorted leaf wnids
GROUND_TRUTH = (1, 2, 3, 4, 1)  # ILSVRC2012 ids of images 1..5
LABELS = [2, 0, 3, 1, 2]  # the same through their wnids
SIZES = ((100, 50), (40, 40), (48, 36), (36, 48), (50, 40))  # (width, height) of images 1..5
BOXES = ((11, 6, 60, 40), (1, 1, 40, 40), (5, 5, 20, 30), (10, 12, 30, 40), (1, 1, 25, 20))  # VOC, 1-based
VOC = """<annotation><folder>val</folder><filename>{stem}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>
</bndbox></object></annotation>"""


def stem(k: int) -> str:
    return f"ILSVRC2012_val_{k:08d}"


def write_meta_mat(path: Path) -> None:
    """A devkit ``meta.mat``: a synsets struct array (N x 1, as the devkit has it) with the real fields."""
    synsets = np.empty((len(SYNSETS), 1), dtype=[(f, "O") for f in META_FIELDS])
    for row, (i, wnid, words, children) in enumerate(SYNSETS):
        values = (i, wnid, words, f"gloss of {wnid}", len(children), np.array(children, np.uint16), 0, 1300)
        for name, value in zip(META_FIELDS, values, strict=True):
            synsets[row, 0][name] = value
    scipy.io.savemat(path, {"synsets": synsets})


def make_imagenet_val(base: Path) -> dict[str, Path]:
    """``val/`` (5 JPEGs and files to ignore), ``ILSVRC2012_devkit_t12/data``, ``LOC_val_solution.csv``
    and ``bbox/val/*.xml`` under ``base``: the layouts ImageNet's and Kaggle's downloads unpack to."""
    wnid_of = {i: w for i, w, _, _ in SYNSETS}
    val, xml, data = base / "val", base / "bbox" / "val", base / "ILSVRC2012_devkit_t12" / "data"
    for d in (val, xml, data):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["ImageId,PredictionString"]
    for k, ((w, h), box, gt) in enumerate(zip(SIZES, BOXES, GROUND_TRUTH, strict=True), start=1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(val / f"{stem(k)}.JPEG", quality=90)
        (xml / f"{stem(k)}.xml").write_text(VOC.format(stem=stem(k), w=w, h=h, wnid=wnid_of[gt], b=box))
        rows.append(f"{stem(k)},{wnid_of[gt]} {' '.join(map(str, box))} ")
    (val / "README.txt").write_text("not an image")
    (val / "ILSVRC2012_test_00000001.JPEG").write_bytes(b"a test-set image: not ours")
    (val / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")
    write_meta_mat(data / "meta.mat")
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in GROUND_TRUTH))
    (base / "LOC_val_solution.csv").write_text("\n".join(rows[:1] + rows[:0:-1]) + "\n")  # rows in any order
    return {
        "root": val,
        "devkit": base / "ILSVRC2012_devkit_t12",
        "csv": base / "LOC_val_solution.csv",
        "boxes": base / "bbox",
    }


@pytest.fixture
def imagenet(tmp_path) -> dict[str, Path]:
    return make_imagenet_val(tmp_path)


def test_devkit_and_csv_give_the_same_labels(imagenet):
    devkit = ImageNetValDataset(imagenet["root"], imagenet["devkit"], resize=20, crop=16)
    kaggle = ImageNetValDataset(imagenet["root"], imagenet["csv"], resize=20, crop=16)
    for ds in (devkit, kaggle):
        assert [ds.sample_id(i) for i in range(len(ds))] == [stem(k) for k in range(1, 6)]
        assert [ds.label(i) for i in range(len(ds))] == LABELS
        assert ds.ignored == ["ILSVRC2012_test_00000001.JPEG", "LOC_val_solution.csv", "README.txt"]
        assert ds.load(0).label == 2 and ds.load(0).image.shape == (3, 16, 16)
    # names: the first of meta.mat's words; the CSV knows none, so its classes are named by wnid
    assert devkit.class_names == ["tench", "goldfish", "cat", "dog"]
    assert kaggle.class_names == sorted(TORCHVISION)


def test_ilsvrc_ids_go_through_their_synset_to_torchvision_indices(imagenet):
    leaves = read_meta_mat(imagenet["devkit"] / "data" / "meta.mat")
    assert leaves == {i: (w, t) for i, w, t, c in SYNSETS if not c}  # non-leaf synsets left out
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], crop=16, resize=20)
    # image 1 has ILSVRC2012 id 1 (n02000003): class 2 for a torchvision model, not 0 (= id - 1)
    assert ds.label(0) == TORCHVISION["n02000003"] == 2
    assert ds.classes.index == TORCHVISION
    # the devkit archive as downloaded reads the same
    archive = imagenet["devkit"].parent / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(imagenet["devkit"], arcname="ILSVRC2012_devkit_t12")
    assert [ImageNetValDataset(imagenet["root"], archive, crop=16).label(i) for i in range(5)] == LABELS


def test_keras_and_other_class_index_files(imagenet, tmp_path):
    order = ["n03000002", "n02000003", "n01000002", "n01000001"]  # another model's class order
    keras = tmp_path / "imagenet_class_index.json"
    keras.write_text(json.dumps({str(i): [w, f"name_{w}"] for i, w in enumerate(order)}))
    expected = [order.index(w) for w in ("n02000003", "n01000001", "n03000002", "n01000002", "n02000003")]
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], class_index=keras, crop=16)
    assert [ds.label(i) for i in range(5)] == expected == [1, 3, 0, 2, 1]
    assert ds.class_names == [f"name_{w}" for w in order]
    plain = tmp_path / "wnid_to_index.json"
    plain.write_text(json.dumps({w: i for i, w in enumerate(order)}))
    ds = ImageNetValDataset(imagenet["root"], imagenet["csv"], class_index=plain, crop=16)
    assert [ds.label(i) for i in range(5)] == expected and ds.class_names == order
    kaggle_txt = tmp_path / "LOC_synset_mapping.txt"
    kaggle_txt.write_text("".join(f"{w} words of {w}, more\n" for w in order))
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], class_index=kaggle_txt, crop=16)
    assert [ds.label(i) for i in range(5)] == expected and ds.class_names[0] == "words of n03000002"
    # a mapping without a sample's synset: only those samples lose their label
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], class_index={"n01000001": 0}, crop=16)
    assert [ds.label(i) for i in range(5)] == [-1, 0, -1, -1, -1]
    with pytest.raises(SampleError, match=r"'ILSVRC2012_val_00000001'.*'n02000003' has no class index"):
        ds.load(0)
    keras.write_text(json.dumps({"0": ["n03000002", "a"], "1": ["n02000003", "b"], "2": ["n03000002", "c"]}))
    with pytest.raises(ValueError, match="class_index"):  # a synset listed twice
        ImageNetValDataset(imagenet["root"], imagenet["devkit"], class_index=keras, crop=16)
    plain.write_text(json.dumps({"n03000002": 0, "n02000003": 0}))
    with pytest.raises(ValueError, match="'n03000002' and 'n02000003' both map to class 0"):
        ImageNetValDataset(imagenet["root"], imagenet["devkit"], class_index=plain, crop=16)


def test_boxes_follow_the_preprocessing(imagenet):
    # 100x50 -> 40x20 (scale 0.4), centre crop 16: left 12, top 2. VOC (11, 6, 60, 40) is
    # (10, 5, 60, 40) continuous -> (4 - 12, 2 - 2, 24 - 12, 16 - 2), clipped to the crop.
    for boxes in (imagenet["boxes"], imagenet["boxes"] / "val", imagenet["csv"]):
        ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], boxes=boxes, resize=20, crop=16)
        assert ds.has_boxes
        np.testing.assert_allclose(ds.load(0).boxes, [[0, 0, 12, 14]], atol=1e-5)
        # 40x40 -> 20x20, crop 16 at (2, 2): VOC (1, 1, 40, 40) = the whole image -> the whole crop
        np.testing.assert_allclose(ds.load(1).boxes, [[0, 0, 16, 16]], atol=1e-5)
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], resize=20, crop=16)
    assert not ds.has_boxes and ds.load(0).boxes is None


def test_a_bad_label_or_box_quarantines_only_its_sample(imagenet):
    (imagenet["boxes"] / "val" / f"{stem(3)}.xml").write_text("<annotation><object><bndbox>")
    (imagenet["boxes"] / "val" / f"{stem(4)}.xml").unlink()
    Image.new("RGB", (40, 40)).save(imagenet["root"] / f"{stem(6)}.JPEG")  # no ground-truth line for it
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], boxes=imagenet["boxes"], resize=20, crop=16)
    assert [ds.label(i) for i in range(6)] == [*LABELS, -1]
    with pytest.raises(SampleError, match=rf"'{stem(3)}': malformed VOC box file .*{stem(3)}.xml"):
        ds.load(2)
    with pytest.raises(SampleError, match=rf"'{stem(4)}': box file .*{stem(4)}.xml does not exist"):
        ds.load(3)
    with pytest.raises(SampleError, match=rf"'{stem(6)}': no label for it in .*ground_truth.txt \(5 lines\)"):
        ds.load(5)
    with SampleLoader((3, 16, 16), threads=1) as loader:  # the run layer's loader records, never stops
        loaded = loader.load_shard(ds, Shard(0, 0, 6), "attribute")
    assert [s.id for s in loaded.samples] == [stem(k) for k in (1, 2, 5)]
    assert [f["sample_id"] for f in loaded.failures] == [stem(3), stem(4), stem(6)]

    # malformed lines of the devkit's ground truth and rows of the CSV: only their image
    gt = imagenet["devkit"] / "data" / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("1\n2\nthree\n999\n1\n")
    ds = ImageNetValDataset(imagenet["root"], imagenet["devkit"], crop=16)
    assert [ds.label(i) for i in range(6)] == [2, 0, -1, -1, 2, -1]
    with pytest.raises(SampleError, match=r"line 3 of .* is 'three', not an ILSVRC2012 id"):
        ds.load(2)
    with pytest.raises(SampleError, match=r"ILSVRC2012 id 999 is not a leaf synset"):
        ds.load(3)
    lines = imagenet["csv"].read_text().splitlines()
    lines = [line.replace(" 5 5 20 30", " 5 5 twenty 30") for line in lines] + [f"{stem(1)},n02000003 1 1 2 2"]
    imagenet["csv"].write_text("\n".join(lines) + "\n")
    ds = ImageNetValDataset(imagenet["root"], imagenet["csv"], boxes=imagenet["csv"], crop=16)
    assert [ds.label(i) for i in range(6)] == [-1, 0, -1, 1, 2, -1]
    with pytest.raises(SampleError, match=rf"row \d+ repeats ImageId '{stem(1)}'"):
        ds.load(0)
    with pytest.raises(SampleError, match=r"box \['5', '5', 'twenty', '30'\] is not four numbers"):
        ds.load(2)


def test_whole_dataset_problems_fail_the_build(imagenet, tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageNet devkit .*meta.mat' does not exist"):
        ImageNetValDataset(imagenet["root"], tmp_path, crop=16)
    with pytest.raises(FileNotFoundError, match="labels .* does not exist"):
        ImageNetValDataset(imagenet["root"], tmp_path / "nowhere.csv", crop=16)
    bad = tmp_path / "other.csv"
    bad.write_text("id,label\nx,1\n")
    with pytest.raises(ValueError, match="needs the header ImageId,PredictionString"):
        ImageNetValDataset(imagenet["root"], bad, crop=16)
    with pytest.raises(ValueError, match="holds no ILSVRC2012_val_"):
        ImageNetValDataset(imagenet["devkit"], imagenet["devkit"], crop=16)
    (imagenet["devkit"] / "data" / "meta.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="meta.mat"):
        ImageNetValDataset(imagenet["root"], imagenet["devkit"], crop=16)


def test_run_config_builds_it(imagenet, tmp_path):
    cfg = parse_config(
        {
            "dataset": {
                "kind": "imagenet_val",
                "root": str(imagenet["root"]),
                "labels": str(imagenet["devkit"]),
                "boxes": str(imagenet["boxes"]),
                "limit": 3,
            },
            "preprocess": {"resize": 20, "crop": 16, "interpolation": "bicubic"},
            "model": {"kind": "demo"},
            "methods": [{"name": "gradient"}],
            "store": {"uri": str(tmp_path / "s.zarr")},
        }
    )
    ds = build_dataset(cfg)
    assert len(ds) == 3 and ds.has_boxes and ds.image_shape == (3, 16, 16)
    assert [ds.label(i) for i in range(3)] == LABELS[:3] and ds.load(2).boxes.shape == (1, 4)
    assert ds.preprocessing.interpolation == "bicubic"  # the run's preprocessing, not only resize/crop


def test_the_run_layer_knows_its_paths_and_preprocessing(imagenet, tmp_path, monkeypatch):
    """A relative ``labels`` path is made absolute before Ray workers (another working directory)
    read it, and resize/crop are part of the run's fingerprint (a changed crop is not resumed)."""
    from pathatlas.attribution.run.fingerprint import used_preprocessing
    from pathatlas.attribution.run.paths import absolute_paths

    monkeypatch.chdir(imagenet["root"].parent)
    data = {"kind": "imagenet_val", "root": "val", "labels": "LOC_val_solution.csv", "boxes": "bbox"}
    cfg = parse_config(
        {
            "dataset": data,
            "preprocess": {"resize": 20, "crop": 16},
            "model": {"kind": "demo"},
            "methods": [{"name": "gradient"}],
            "store": {"uri": str(tmp_path / "s.zarr")},
        }
    )
    absolute = absolute_paths(cfg).dataset
    assert absolute.labels == str(imagenet["csv"]) and absolute.root == str(imagenet["root"])  # type: ignore[union-attr]
    assert {"resize": 20, "crop": 16}.items() <= used_preprocessing(cfg, "imagenet_val").items()
