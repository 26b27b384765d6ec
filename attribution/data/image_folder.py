"""An ImageNet-layout image folder (``root/<class>/<image>``) with optional boxes.

Boxes come from a directory of Pascal VOC XML files (one per image, same stem, flat or in class
sub-folders, as ImageNet ships them) or a CSV with header ``id,x0,y0,x1,y1``. VOC coordinates are
1-based inclusive pixel indices; they become 0-based continuous ``x0 = xmin - 1``, ``x1 = xmax``.
Box files are parsed when the dataset is built, so a malformed file fails before any compute.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .base import Sample
from .preprocess import load_image, transform_boxes

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class ImageFolderDataset:
    """Samples sorted by id (the path relative to ``root``); labels from sorted class folders or
    ``class_index`` (a mapping, or a JSON file of one, from folder name to model class index)."""

    mask_names: tuple[str, ...] = ()
    has_counterfactual = False

    def __init__(
        self,
        root: str | Path,
        resize: int | None = 256,
        crop: int | None = 224,
        boxes: str | Path | None = None,
        class_index: str | Path | dict[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"image folder {str(self.root)!r} has no class sub-folders")
        mapping = json.loads(Path(class_index).read_text()) if isinstance(class_index, (str, Path)) else class_index
        self.class_to_label: dict[str, int] = dict(mapping) if mapping else {c: i for i, c in enumerate(classes)}
        missing = [c for c in classes if c not in self.class_to_label]
        if missing:
            raise ValueError(f"class_index has no entry for the class folder(s) {missing[:5]}")
        self.files: list[Path] = sorted(
            (p for c in classes for p in (self.root / c).iterdir() if p.suffix.lower() in EXTENSIONS),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.files:
            raise ValueError(f"image folder {str(self.root)!r} holds no images ({', '.join(sorted(EXTENSIONS))})")
        names = sorted(self.class_to_label, key=lambda c: self.class_to_label[c])
        self.class_names = names
        self.resize, self.crop = resize, crop
        if crop is None:
            raise ValueError(
                "image folders need 'crop' so that all images share one shape (resize keeps the aspect ratio)"
            )
        self.image_shape = (3, crop, crop)
        self.has_boxes = boxes is not None
        self._boxes = _read_boxes(Path(boxes), self.files, self.root) if boxes is not None else {}

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def label(self, index: int) -> int:
        return int(self.class_to_label[self.files[index].parent.name])

    def load(self, index: int) -> Sample:
        sid = self.sample_id(index)
        image, geometry = load_image(self.files[index], sid, self.resize, self.crop)
        boxes = transform_boxes(self._boxes.get(sid, np.zeros((0, 4))), geometry) if self.has_boxes else None
        return Sample(id=sid, image=image, label=self.label(index), boxes=boxes)


def _read_boxes(source: Path, files: list[Path], root: Path) -> dict[str, np.ndarray]:
    if source.is_file() and source.suffix.lower() == ".csv":
        return _read_csv(source)
    if not source.is_dir():
        raise FileNotFoundError(f"boxes {str(source)!r} is neither a CSV file nor a directory of VOC XML files")
    xml_by_stem = {p.stem: p for p in source.rglob("*.xml")}
    out = {}
    for f in files:
        xml = xml_by_stem.get(f.stem)
        if xml is not None:
            out[f.relative_to(root).as_posix()] = _read_voc(xml)
    return out


def _read_voc(path: Path) -> np.ndarray:
    try:
        tree = ET.parse(path)
        boxes = []
        for i, obj in enumerate(tree.getroot().iter("object")):
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"object {i} has no <bndbox>")
            xmin, ymin, xmax, ymax = (float(bb.findtext(k, default="")) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([xmin - 1, ymin - 1, xmax, ymax])
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed VOC box file {path}: {exc}") from None
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"id", "x0", "y0", "x1", "y1"} <= set(reader.fieldnames):
            raise ValueError(f"box CSV {path} needs the header id,x0,y0,x1,y1")
        for row_number, row in enumerate(reader, start=2):
            try:
                out.setdefault(row["id"], []).append([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"box CSV {path}, row {row_number}: {exc}") from None
    return {k: np.asarray(v, np.float32) for k, v in out.items()}
