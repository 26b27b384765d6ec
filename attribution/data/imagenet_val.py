"""ImageNet's validation set as distributed: one flat folder of ``ILSVRC2012_val_<8 digits>.JPEG``.

- Labels come from the ILSVRC2012 devkit (``data/ILSVRC2012_validation_ground_truth.txt``: line
  ``k`` is the ILSVRC2012 id, 1..1000, of image ``k``; ``data/meta.mat`` maps ids to synsets) or
  from Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the prediction string being
  repeated ``wnid xmin ymin xmax ymax``; the label is the first wnid). ILSVRC2012 ids are *not*
  model class indices: they go through their synset (wnid) like everything else.
- Boxes come from the bbox XML files (``ILSVRC2012_bbox_val_v3``: ``val/<stem>.xml``, Pascal VOC
  with the wnid in ``<name>``) or from the same CSV (the XML's coordinates, same convention).
- Synsets become the model's class indices by a mapping: by default torchvision's (the index of
  the wnid in the sorted list of the 1000 leaf synsets), or a file: Keras'
  ``imagenet_class_index.json`` (``{"0": ["n01440764", "tench"], ...}``), Kaggle's
  ``LOC_synset_mapping.txt`` (line ``i``: ``wnid words``, class ``i``) or ``{wnid: index}`` JSON.

A sample whose label or box file is missing or malformed raises :class:`SampleError` when it is
loaded (the pipeline quarantines it and goes on) and has label ``-1`` in the plan; a broken
devkit, CSV header or mapping file stops the build with the file named. Files in the folder that
are not ``ILSVRC2012_val_*.JPEG`` are left out, listed in :attr:`ImageNetValDataset.ignored` and
counted in ``skipped_files``. Boxes are clipped to the original image; a sample whose boxes all lie
outside it gets a ``box_problem`` (:func:`.preprocess.place_boxes`). ``class_names`` (a list or
file, :func:`.class_names.read_class_names`) replaces the names of the class index.

References: Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015;
torchvision ``datasets/imagenet.py`` (``parse_meta_mat``: leaf synsets are those with
``num_children == 0``; ``parse_val_groundtruth_txt``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import Sample, SampleError
from .boxes import load_voc, voc_to_pixels
from .class_names import names_by_index, with_class_names
from .preprocess import ImagePreprocessing, place_boxes

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG", re.IGNORECASE)
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
N_CLASSES = 1000  # ILSVRC2012 classification synsets
SKIPPED = "not named ILSVRC2012_val_<8 digits>.JPEG"  # the skip reason of every other entry of the folder


@dataclass
class ValLabels:
    """What a label source says about each image stem: its synset, or why it has none.

    ``synsets``: the source's synset list (sorted, it is torchvision's class order); ``words``:
    ``wnid -> class name`` where the source knows one; ``boxes``: ``stem -> (K, 4)`` continuous
    original-image pixels when the source carries boxes (the CSV), else None.
    """

    source: str
    wnids: dict[str, str]
    problems: dict[str, str]
    synsets: list[str]
    words: dict[str, str] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] | None = None

    def wnid(self, stem: str) -> str:
        """The stem's synset, or :class:`SampleError` saying why there is none."""
        if stem in self.problems:
            raise SampleError(stem, self.problems[stem])
        if stem not in self.wnids:
            raise SampleError(stem, f"no label for it in {self.source}")
        return self.wnids[stem]


# -- the devkit ------------------------------------------------------------------------------
def read_meta_mat(file: Any, where: str = "meta.mat") -> dict[int, tuple[str, str]]:
    """``ILSVRC2012_ID -> (wnid, words)`` of the leaf synsets (``num_children == 0``) of a devkit
    ``meta.mat`` (a path or a binary file object), read by field name."""
    import scipy.io  # only here: the core imports scipy lazily where one format needs it

    try:
        synsets = np.atleast_1d(scipy.io.loadmat(file, squeeze_me=True)["synsets"])
        ids, wnids, words, children = (synsets[k] for k in ("ILSVRC2012_ID", "WNID", "words", "num_children"))
    except (KeyError, ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as exc:
        raise ValueError(f"devkit {where} has no readable 'synsets' struct: {exc}") from None
    return {int(i): (str(w), str(t)) for i, w, t, c in zip(ids, wnids, words, children, strict=True) if int(c) == 0}


def _devkit_files(devkit: Path) -> tuple[Any, str, str]:
    """``(meta.mat file object, ground-truth text, ground-truth name)`` from a devkit folder, its
    ``data`` folder, or the ``ILSVRC2012_devkit_t12.tar.gz`` archive itself."""
    if devkit.is_file() and devkit.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(devkit) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in ("meta.mat", GROUND_TRUTH) if n not in members]
            if missing:
                raise FileNotFoundError(f"devkit archive {str(devkit)!r} holds no {missing}")
            read = {n: tar.extractfile(members[n]).read() for n in ("meta.mat", GROUND_TRUTH)}  # type: ignore[union-attr]
        return io.BytesIO(read["meta.mat"]), read[GROUND_TRUTH].decode(), f"{devkit}:{GROUND_TRUTH}"
    data = devkit / "data" if (devkit / "data").is_dir() else devkit
    for name in ("meta.mat", GROUND_TRUTH):
        if not (data / name).is_file():
            raise FileNotFoundError(f"ImageNet devkit {str(devkit)!r}: {str(data / name)!r} does not exist")
    return (data / "meta.mat").open("rb"), (data / GROUND_TRUTH).read_text(), str(data / GROUND_TRUTH)


def read_devkit(devkit: str | Path) -> ValLabels:
    """Labels of the ILSVRC2012 devkit: line ``k`` of the ground truth labels image ``k``."""
    meta, text, where = _devkit_files(Path(devkit))
    with meta:
        synsets = read_meta_mat(meta, f"meta.mat beside {where}")
    wnids, problems = {}, {}
    lines = text.splitlines()
    for k, line in enumerate(lines, start=1):
        stem = f"ILSVRC2012_val_{k:08d}"
        try:
            wnids[stem] = synsets[int(line)][0]
        except ValueError:
            problems[stem] = f"line {k} of {where} is {line!r}, not an ILSVRC2012 id"
        except KeyError:
            problems[stem] = f"line {k} of {where}: ILSVRC2012 id {line.strip()} is not a leaf synset of meta.mat"
    words = {w: t.split(",")[0].strip() for w, t in synsets.values()}
    return ValLabels(f"{where} ({len(lines)} lines)", wnids, problems, sorted(words), words)


# -- Kaggle's LOC_val_solution.csv -------------------------------------------------------------
def read_loc_solution(path: str | Path) -> ValLabels:
    """Labels and boxes of Kaggle's ``LOC_val_solution.csv``; a malformed row is a problem of its image."""
    path = Path(path)
    wnids: dict[str, str] = {}
    problems: dict[str, str] = {}
    boxes: dict[str, np.ndarray] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise ValueError(f"{path} needs the header ImageId,PredictionString (Kaggle's LOC_val_solution.csv)")
        for row_number, row in enumerate(reader, start=2):
            stem = (row["ImageId"] or "").strip()
            if stem in wnids or stem in problems:
                problems[stem] = f"{path.name} row {row_number} repeats ImageId {stem!r}"
                continue
            try:
                wnids[stem], boxes[stem] = _prediction_string(row["PredictionString"])
            except ValueError as exc:
                problems[stem] = f"{path.name} row {row_number}: {exc}"
    for stem in problems:
        wnids.pop(stem, None)
        boxes.pop(stem, None)
    return ValLabels(str(path), wnids, problems, sorted(set(wnids.values())), boxes=boxes)


def _prediction_string(text: str | None) -> tuple[str, np.ndarray]:
    """``"wnid xmin ymin xmax ymax ..."`` -> ``(first wnid, (K, 4) continuous pixels)``."""
    tokens = (text or "").split()
    if not tokens or len(tokens) % 5:
        raise ValueError(f"PredictionString {text!r} is not repeated 'wnid xmin ymin xmax ymax'")
    boxes = []
    for i in range(0, len(tokens), 5):
        if not re.fullmatch(r"n\d{8}", tokens[i]):
            raise ValueError(f"PredictionString {text!r}: {tokens[i]!r} is not a wnid")
        try:
            boxes.append(voc_to_pixels(*(float(t) for t in tokens[i + 1 : i + 5])))
        except ValueError:
            raise ValueError(f"PredictionString {text!r}: box {tokens[i + 1 : i + 5]} is not four numbers") from None
    return tokens[0], np.asarray(boxes, np.float32)


def read_labels(source: str | Path) -> ValLabels:
    """A devkit (folder or archive) or a ``LOC_val_solution.csv``, told apart by what ``source`` is."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_loc_solution(path)
    if path.is_dir() or path.is_file():
        return read_devkit(path)
    raise FileNotFoundError(
        f"labels {str(path)!r} does not exist (give the ILSVRC2012 devkit folder or archive, or LOC_val_solution.csv)"
    )


# -- synsets to the model's class indices ------------------------------------------------------
@dataclass(frozen=True)
class ClassIndex:
    """``wnid -> model class index`` and ``wnid -> name`` (names where the mapping file has them)."""

    index: dict[str, int]
    names: dict[str, str]

    def class_names(self, fallback: dict[str, str]) -> list[str]:
        """Names by class index (position ``i`` names class ``i``); a gap is named by its index."""
        return names_by_index(self.index, {w: self.names.get(w) or fallback.get(w) or w for w in self.index})


def read_class_index(source: str | Path | dict[str, int] | None, synsets: list[str], unique: bool = True) -> ClassIndex:
    """The mapping: torchvision's (sorted ``synsets``) when ``source`` is None, an inline
    ``{wnid: index}``, or a file (Keras' ``imagenet_class_index.json``, ``{wnid: index}`` JSON,
    Kaggle's ``LOC_synset_mapping.txt``). ``unique``: refuse two keys mapped to one class (an image
    folder may merge folders into one class)."""
    if source is None:
        return ClassIndex({w: i for i, w in enumerate(sorted(synsets))}, {})
    if isinstance(source, dict):
        return _checked(dict(source), {}, "class_index", unique)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"class_index {str(path)!r} does not exist")
    if path.suffix.lower() == ".txt":
        return _synset_mapping_txt(path, unique)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"class_index {path} is not JSON (nor a .txt synset mapping): {exc}") from None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        try:  # Keras: {"0": ["n01440764", "tench"], ...}
            pairs = {str(v[0]): (int(k), str(v[1]) if len(v) > 1 else "") for k, v in data.items()}
        except (ValueError, IndexError) as exc:
            raise ValueError(f"class_index {path}: not Keras' {{'0': [wnid, name]}} format: {exc}") from None
        if len(pairs) < len(data):
            raise ValueError(f"class_index {path}: a synset is listed under more than one class")
        names = {w: n for w, (_, n) in pairs.items() if n}
        return _checked({w: i for w, (i, _) in pairs.items()}, names, str(path), unique)
    if isinstance(data, dict):
        return _checked(data, {}, str(path), unique)
    raise ValueError(f"class_index {path} must be a JSON object ({{wnid: index}} or Keras' class index)")


def _synset_mapping_txt(path: Path, unique: bool = True) -> ClassIndex:
    index, names = {}, {}
    for i, line in enumerate(line for line in path.read_text().splitlines() if line.strip()):
        wnid, _, words = line.strip().partition(" ")
        index[wnid], names[wnid] = i, words.split(",")[0].strip()
    return _checked(index, names, str(path), unique)


def _checked(index: dict[str, Any], names: dict[str, str], where: str, unique: bool = True) -> ClassIndex:
    bad = {w: i for w, i in index.items() if not isinstance(i, int) or isinstance(i, bool) or i < 0}
    if bad:
        raise ValueError(f"{where}: class indices must be integers >= 0, got {dict(list(bad.items())[:3])}")
    seen: dict[int, str] = {}
    for wnid, i in index.items():
        if unique and i in seen:
            raise ValueError(f"{where}: synsets {seen[i]!r} and {wnid!r} both map to class {i}")
        seen[i] = wnid
    return ClassIndex(index, names)


# -- the dataset -------------------------------------------------------------------------------
class ImageNetValDataset:
    """``ILSVRC2012_val_*.JPEG`` of ``root`` sorted by name (ids are the file stems), labelled by
    ``labels`` (devkit or ``LOC_val_solution.csv``), boxed by ``boxes`` (bbox XML folder, the
    CSV, or None), classes mapped by ``class_index`` (see :func:`read_class_index`); images
    preprocessed by ``preprocessing`` (default: shorter side to ``resize``, centre ``crop``)."""

    mask_names: tuple[str, ...] = ()
    has_counterfactual = False

    def __init__(
        self,
        root: str | Path,
        labels: str | Path,
        boxes: str | Path | None = None,
        class_index: str | Path | dict[str, int] | None = None,
        resize: int | None = 256,
        crop: int | None = 224,
        preprocessing: ImagePreprocessing | None = None,  # replaces resize/crop (interpolation, modes, ...)
        class_names: str | Path | list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageNet val folder {str(self.root)!r} does not exist")
        self.preprocessing = preprocessing or ImagePreprocessing(resize=resize, crop=crop)
        shape = self.preprocessing.output_shape
        if shape is None:
            raise ValueError("imagenet_val needs 'crop' so that all images share one shape")
        self.image_shape = shape
        self.files, self.ignored = _list_images(self.root)
        self.skipped_files = {SKIPPED: len(self.ignored)} if self.ignored else {}
        self.skipped_examples = {SKIPPED: self.ignored[:3]} if self.ignored else {}
        if not self.files:
            raise ValueError(f"ImageNet val folder {str(self.root)!r} holds no ILSVRC2012_val_<8 digits>.JPEG files")
        if self.ignored:
            log.info(
                "imagenet_val: %d file(s) in %s are not ILSVRC2012_val_*.JPEG and are left out", len(self.ignored), root
            )
        self.labels = read_labels(labels)
        self.classes = read_class_index(class_index, self.labels.synsets)
        if class_index is None and len(self.labels.synsets) != N_CLASSES:
            log.warning(
                "imagenet_val: %s names %d synsets, not %d: sorted-wnid class indices fit a 1000-class model only "
                "when all are named; give class_index",
                self.labels.source,
                len(self.labels.synsets),
                N_CLASSES,
            )
        self.class_names = with_class_names(self.classes.class_names(self.labels.words), class_names, "class_index")
        self.has_boxes = boxes is not None
        self._boxes = _box_source(Path(boxes), Path(labels), self.labels) if boxes is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, index: int) -> str:
        return self.files[index].stem

    def _label(self, stem: str) -> int:
        wnid = self.labels.wnid(stem)
        if wnid not in self.classes.index:
            raise SampleError(stem, f"its synset {wnid!r} has no class index in class_index")
        return self.classes.index[wnid]

    def label(self, index: int) -> int:
        """The class index, or -1 when the sample has no usable label (loading it then fails)."""
        try:
            return self._label(self.sample_id(index))
        except SampleError:
            return -1

    def load(self, index: int) -> Sample:
        stem = self.sample_id(index)
        label = self._label(stem)
        boxes = self._boxes.boxes(stem) if self._boxes is not None else None
        image, geometry = self.preprocessing.load(self.files[index], stem)
        placed, problem = place_boxes(boxes, geometry) if boxes is not None else (None, None)
        return Sample(id=stem, image=image, label=label, boxes=placed, box_problem=problem)


def _list_images(root: Path) -> tuple[list[Path], list[str]]:
    """``(ILSVRC2012_val_*.JPEG files sorted by name, names of everything else in root)``."""
    files: list[Path] = []
    ignored: list[Path] = []
    for p in root.iterdir():
        (files if p.is_file() and FILE_NAME.fullmatch(p.name) else ignored).append(p)
    return sorted(files, key=lambda p: p.name), sorted(p.name for p in ignored)


class _XmlBoxes:
    """One ILSVRC2012 bbox XML per image, read when the image is loaded (``<dir>/<stem>.xml``,
    or ``<dir>/val/<stem>.xml`` when given the folder the archive was unpacked in)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "val" if (folder / "val").is_dir() else folder

    def boxes(self, stem: str) -> np.ndarray:
        return load_voc(self.folder / f"{stem}.xml", stem)


class _CsvBoxes:
    """Boxes of a ``LOC_val_solution.csv``, parsed once."""

    def __init__(self, labels: ValLabels) -> None:
        self.labels = labels

    def boxes(self, stem: str) -> np.ndarray:
        self.labels.wnid(stem)  # raises for a malformed or missing row
        assert self.labels.boxes is not None
        return self.labels.boxes[stem]


def _box_source(boxes: Path, labels_path: Path, labels: ValLabels) -> _XmlBoxes | _CsvBoxes:
    if boxes.is_dir():
        return _XmlBoxes(boxes)
    if boxes.is_file() and boxes.suffix.lower() == ".csv":
        same = labels.boxes is not None and boxes.resolve() == labels_path.resolve()
        return _CsvBoxes(labels if same else read_loc_solution(boxes))  # the labels' CSV is parsed once
    raise FileNotFoundError(
        f"boxes {str(boxes)!r} is neither a folder of ILSVRC2012 bbox XML files nor LOC_val_solution.csv"
    )
