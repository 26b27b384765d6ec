"""An ImageNet-layout image folder (``root/<class>/<image>``) with optional boxes.

Boxes come from a directory of Pascal VOC XML files (one per image, same file stem, flat or in
class sub-folders, as ImageNet ships them) or a CSV with header ``id,x0,y0,x1,y1`` whose ``id`` is
the sample id, the image's path relative to ``root`` (parsers in :mod:`.boxes`). A box file is
read when its image is loaded, so a malformed one quarantines that sample only; boxes are clipped
to the original image (see :func:`.preprocess.place_boxes`). ImageNet's validation set as
distributed (one flat folder) is :mod:`.imagenet_val`.

Files that are not taken as samples are counted in :attr:`ImageFolderDataset.skipped_files`
(reason -> count) with a few examples in ``skipped_examples``: files whose extension is not an
image's, hidden files, and images outside the class folders (directly in ``root``, or in a folder
below a class folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Sample, SampleError
from .boxes import BoxCsv, load_voc
from .class_names import with_class_names
from .imagenet_val import read_class_index
from .preprocess import ImagePreprocessing, place_boxes

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
OUTSIDE = "image outside class folders"
N_EXAMPLES = 3  # example paths kept per skip reason


class ImageFolderDataset:
    """Samples sorted by id (the path relative to ``root``); labels from sorted class folders or
    ``class_index`` (a mapping, or a file, from folder name to model class index: ``{name: index}``
    JSON, Keras' ``imagenet_class_index.json`` for folders named by wnid, or a ``LOC_synset_mapping.txt``).
    ``class_names`` (a list or file, :func:`.class_names.read_class_names`) names the classes;
    otherwise class ``i`` is named after the folder mapped to it, or ``str(i)`` when none is."""

    mask_names: tuple[str, ...] = ()
    has_counterfactual = False

    def __init__(
        self,
        root: str | Path,
        resize: int | None = 256,
        crop: int | None = 224,
        boxes: str | Path | None = None,
        class_index: str | Path | dict[str, int] | None = None,
        preprocessing: ImagePreprocessing | None = None,  # replaces resize/crop (interpolation, modes, ...)
        class_names: str | Path | list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        classes, self.files, skipped = _scan(self.root)
        if not classes:
            raise ValueError(f"image folder {str(self.root)!r} has no class sub-folders")
        index = read_class_index(class_index, classes, unique=False)
        self.class_to_label: dict[str, int] = dict(index.index)
        missing = [c for c in classes if c not in self.class_to_label]
        if missing:
            raise ValueError(f"class_index has no entry for the class folder(s) {missing[:5]}")
        if not self.files:
            raise ValueError(f"image folder {str(self.root)!r} holds no images ({', '.join(sorted(EXTENSIONS))})")
        self.skipped_files: dict[str, int] = {r: len(paths) for r, paths in sorted(skipped.items())}
        self.skipped_examples: dict[str, list[str]] = {r: paths[:N_EXAMPLES] for r, paths in sorted(skipped.items())}
        self.class_names = with_class_names(index.class_names({}), class_names, "class_index")
        self.preprocessing = preprocessing or ImagePreprocessing(resize=resize, crop=crop)
        shape = self.preprocessing.output_shape
        if shape is None:
            raise ValueError(
                "image folders need 'crop' so that all images share one shape (resize keeps the aspect ratio)"
            )
        self.image_shape = shape
        self.has_boxes = boxes is not None
        self._boxes = _box_source(Path(boxes), self.files, self.root) if boxes is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def label(self, index: int) -> int:
        return int(self.class_to_label[self.files[index].parent.name])

    def load(self, index: int) -> Sample:
        sid = self.sample_id(index)
        raw = self._boxes.boxes(sid) if self._boxes is not None else None  # a bad box file: SampleError
        image, geometry = self.preprocessing.load(self.files[index], sid)
        boxes, problem = place_boxes(raw, geometry) if raw is not None else (None, None)
        return Sample(id=sid, image=image, label=self.label(index), boxes=boxes, box_problem=problem)


def _scan(root: Path) -> tuple[list[str], list[Path], dict[str, list[str]]]:
    """``(class folders sorted, images in them sorted by relative path, skip reason -> relative paths)``.

    ``os.scandir`` rather than ``Path.is_file``: its entries know their type without a ``stat`` per
    file, which matters for a million-image folder."""
    classes, files = [], []
    skipped: dict[str, list[str]] = {}
    with os.scandir(root) as entries:
        top = sorted(entries, key=lambda e: e.name)
    for entry in top:
        if entry.is_dir():
            classes.append(entry.name)
        else:
            _skip(skipped, _reason(entry.name), entry.name)
    for c in classes:
        with os.scandir(root / c) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir():
                    for nested in _files_below(path):
                        _skip(skipped, _reason(nested.name), nested.relative_to(root).as_posix())
                elif path.suffix.lower() in EXTENSIONS:
                    files.append(path)
                else:
                    _skip(skipped, _reason(entry.name), f"{c}/{entry.name}")
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return classes, files, {r: sorted(paths) for r, paths in skipped.items()}


def _reason(name: str) -> str:
    """Why a file is no sample: an image outside the class folders, a hidden file, or not an image."""
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return OUTSIDE
    if name.startswith("."):
        return "hidden file"
    return f"not an image (extension {suffix})" if suffix else "not an image (no extension)"


def _skip(skipped: dict[str, list[str]], reason: str, path: str) -> None:
    skipped.setdefault(reason, []).append(path)


def _files_below(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(folder) for f in names]


class _VocFolder:
    """VOC XML files matched to images by file stem, flat or in class sub-folders; read at load."""

    def __init__(self, folder: Path, files: list[Path], root: Path) -> None:
        by_stem: dict[str, list[Path]] = {}
        for xml in sorted(folder.rglob("*.xml")):
            by_stem.setdefault(xml.stem, []).append(xml)
        self.paths: dict[str, list[Path]] = {}
        for f in files:
            found = by_stem.get(f.stem, [])
            in_class = [x for x in found if x.parent.name == f.parent.name and x.parent != folder]
            self.paths[f.relative_to(root).as_posix()] = in_class if len(found) > 1 and in_class else found

    def boxes(self, sample_id: str) -> np.ndarray:
        found = self.paths.get(sample_id, [])
        if len(found) > 1:
            raise SampleError(sample_id, f"several box files match its stem: {', '.join(map(str, found[:3]))}")
        return load_voc(found[0], sample_id) if found else np.zeros((0, 4), np.float32)


def _box_source(source: Path, files: list[Path], root: Path) -> BoxCsv | _VocFolder:
    if source.is_file() and source.suffix.lower() == ".csv":
        return BoxCsv(source)
    if not source.is_dir():
        raise FileNotFoundError(f"boxes {str(source)!r} is neither a CSV file nor a directory of VOC XML files")
    return _VocFolder(source, files, root)
