"""An ImageNet-layout image folder (``root/<class>/<image>``) with optional boxes.

Boxes come from a directory of Pascal VOC XML files (one per image, same stem, flat or in class
sub-folders, as ImageNet ships them) or a CSV with header ``id,x0,y0,x1,y1`` (parsers in
:mod:`.boxes`). Box files are parsed when the dataset is built, so a malformed file fails before
any compute. ImageNet's validation set as distributed (one flat folder) is :mod:`.imagenet_val`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import Sample
from .boxes import read_box_csv, read_voc
from .preprocess import ImagePreprocessing, transform_boxes

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
        preprocessing: ImagePreprocessing | None = None,  # replaces resize/crop (interpolation, modes, ...)
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
        self.preprocessing = preprocessing or ImagePreprocessing(resize=resize, crop=crop)
        shape = self.preprocessing.output_shape
        if shape is None:
            raise ValueError(
                "image folders need 'crop' so that all images share one shape (resize keeps the aspect ratio)"
            )
        self.image_shape = shape
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
        image, geometry = self.preprocessing.load(self.files[index], sid)
        boxes = transform_boxes(self._boxes.get(sid, np.zeros((0, 4))), geometry) if self.has_boxes else None
        return Sample(id=sid, image=image, label=self.label(index), boxes=boxes)


def _read_boxes(source: Path, files: list[Path], root: Path) -> dict[str, np.ndarray]:
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_box_csv(source)
    if not source.is_dir():
        raise FileNotFoundError(f"boxes {str(source)!r} is neither a CSV file nor a directory of VOC XML files")
    xml_by_stem = {p.stem: p for p in source.rglob("*.xml")}
    out = {}
    for f in files:
        xml = xml_by_stem.get(f.stem)
        if xml is not None:
            out[f.relative_to(root).as_posix()] = read_voc(xml)
    return out
