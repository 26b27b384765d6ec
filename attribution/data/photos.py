"""Real photos that ship inside installed packages: scikit-image's CC0 / public-domain photos and
the quokka of the ``imgaug`` wheel with its bounding box and outline polygon.

The files are read from the packages' directories; ``imgaug`` is never imported (it needs cv2
and an old numpy): install it with ``pip install --no-deps imgaug==0.4.0`` (``make photos``).
Labels are the closest ImageNet-1k class; the quokka, absent from ImageNet, is
labelled wallaby (104). The quokka's outline becomes the ``outline`` mask; other photos have an
empty mask and no boxes, so localization scores are NaN (undefined) for them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from .base import Sample, SampleError
from .preprocess import Geometry, ImagePreprocessing, transform_boxes

# (id, package, file, ImageNet class)
PHOTOS = (
    ("chelsea", "skimage", "data/chelsea.png", 281),
    ("coffee", "skimage", "data/coffee.png", 967),
    ("rocket", "skimage", "data/rocket.jpg", 657),
    ("astronaut", "skimage", "data/astronaut.png", -1),
    ("quokka", "imgaug", "quokka.jpg", 104),
)


def package_dir(name: str) -> Path:
    """The installed package's directory, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        hint = " (pip install --no-deps imgaug==0.4.0, or make photos)" if name == "imgaug" else ""
        raise FileNotFoundError(f"package {name!r} is not installed{hint}")
    return Path(spec.submodule_search_locations[0])


class BundledPhotosDataset:
    """The five bundled photos, resized (shorter side) and centre-cropped like an ImageNet eval."""

    mask_names: tuple[str, ...] = ("outline",)
    has_boxes = True
    has_counterfactual = False

    def __init__(
        self, resize: int | None = 256, crop: int | None = 224, preprocessing: ImagePreprocessing | None = None
    ) -> None:
        self.preprocessing = preprocessing or ImagePreprocessing(resize=resize, crop=crop)
        if self.preprocessing.output_shape is None:  # the photos differ in size: one shape needs a crop
            raise ValueError("dataset 'photos' needs preprocess.crop: the bundled photos have different sizes")
        self.image_shape = self.preprocessing.output_shape
        try:
            from torchvision.models import ResNet18_Weights  # the class names ship in the wheel

            self.class_names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
        except Exception:  # noqa: BLE001 - names are cosmetic
            self.class_names = []

    def __len__(self) -> int:
        return len(PHOTOS)

    def sample_id(self, index: int) -> str:
        return PHOTOS[index][0]

    def label(self, index: int) -> int:
        return PHOTOS[index][3]

    def load(self, index: int) -> Sample:
        sid, package, name, label = PHOTOS[index]
        try:
            path = package_dir(package) / name
        except FileNotFoundError as exc:
            raise SampleError(sid, str(exc)) from exc
        image, geometry = self.preprocessing.load(path, sid)
        boxes = np.zeros((0, 4), np.float32)
        outline = np.zeros(image.shape[1:], bool)
        annotations = path.with_name("quokka_annotations.json") if sid == "quokka" else None
        if annotations is not None:
            ann = json.loads(annotations.read_text())
            raw = np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in ann["bounding_boxes"]], np.float64)
            boxes = transform_boxes(raw, geometry)
            outline = _rasterise(ann["polygons"][0]["keypoints"], geometry)
        return Sample(id=sid, image=image, label=label, boxes=boxes, masks={"outline": outline})


def _rasterise(points: list[dict], g: Geometry) -> np.ndarray:
    """Polygon vertices in original pixels -> ``(H, W)`` bool in the preprocessed image."""
    xs = np.array([p["x"] for p in points], np.float64) * g.scale_x - g.left
    ys = np.array([p["y"] for p in points], np.float64) * g.scale_y - g.top
    mask = np.zeros((g.height, g.width), bool)
    rr, cc = fill_polygon(ys - 0.5, xs - 0.5, shape=mask.shape)  # vertex coordinates to pixel centres
    mask[rr, cc] = True
    return mask
