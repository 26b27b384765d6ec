"""Bounding-box files: Pascal VOC XML (as ImageNet ships its boxes) and a plain ``id,x0,y0,x1,y1`` CSV.

Boxes come out ``(K, 4)`` float32 ``x0, y0, x1, y1`` in the original image's continuous pixel
coordinates (pixel ``i`` spans ``[i, i + 1)``), ready for :func:`.preprocess.transform_boxes`.
VOC coordinates are 1-based inclusive pixel indices (Everingham et al., "The PASCAL Visual Object
Classes Challenge", IJCV 2010, devkit ``VOCreadxml``), so ``x0 = xmin - 1`` and ``x1 = xmax``.

A malformed box file, or a malformed CSV row, is a problem of its sample only: :func:`load_voc`
and :class:`BoxCsv` raise :class:`~.base.SampleError` when that sample is loaded, and the pipeline
quarantines it. A CSV without the header ``id,x0,y0,x1,y1`` is a configuration error (ValueError).
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .base import SampleError


def voc_to_pixels(xmin: float, ymin: float, xmax: float, ymax: float) -> list[float]:
    """1-based inclusive VOC corners -> continuous 0-based ``[x0, y0, x1, y1]``."""
    return [xmin - 1, ymin - 1, xmax, ymax]


def read_voc_objects(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(names, (K, 4) float32 boxes)`` of a VOC XML file's ``<object>`` elements.

    Raises ValueError naming the file for unparsable XML or an object without a complete box.
    """
    try:
        root = ET.parse(path).getroot()
        names, boxes = [], []
        for i, obj in enumerate(root.iter("object")):
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"object {i} has no <bndbox>")
            xmin, ymin, xmax, ymax = (float(bb.findtext(k, default="")) for k in ("xmin", "ymin", "xmax", "ymax"))
            if xmax < xmin or ymax < ymin:
                raise ValueError(f"object {i} has xmax < xmin or ymax < ymin ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
            names.append((obj.findtext("name") or "").strip())
            boxes.append(voc_to_pixels(xmin, ymin, xmax, ymax))
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed VOC box file {path}: {exc}") from None
    return names, np.asarray(boxes, np.float32).reshape(-1, 4)


def read_voc(path: str | Path) -> np.ndarray:
    """``(K, 4)`` float32 boxes of a VOC XML file (see :func:`read_voc_objects`)."""
    return read_voc_objects(path)[1]


def load_voc(path: Path, sample_id: str) -> np.ndarray:
    """:func:`read_voc` for one sample: a missing or malformed file is that sample's :class:`SampleError`."""
    if not path.is_file():
        raise SampleError(sample_id, f"box file {path} does not exist")
    try:
        return read_voc(path)
    except ValueError as exc:
        raise SampleError(sample_id, str(exc)) from None


class BoxCsv:
    """A CSV with header ``id,x0,y0,x1,y1`` (continuous pixels, one box a row), parsed once.

    A row that is not four numbers with ``x0 <= x1`` and ``y0 <= y1`` is a problem of its id:
    :meth:`boxes` raises :class:`SampleError` for that id only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        rows: dict[str, list[list[float]]] = {}
        self.problems: dict[str, str] = {}
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"id", "x0", "y0", "x1", "y1"} <= set(reader.fieldnames):
                raise ValueError(f"box CSV {self.path} needs the header id,x0,y0,x1,y1")
            for row_number, row in enumerate(reader, start=2):
                sid = row["id"] or ""
                try:
                    x0, y0, x1, y1 = (float(row[k]) for k in ("x0", "y0", "x1", "y1"))
                    if x1 < x0 or y1 < y0:
                        raise ValueError(f"x1 < x0 or y1 < y0 ({x0:g}, {y0:g}, {x1:g}, {y1:g})")
                except (TypeError, ValueError) as exc:
                    self.problems.setdefault(sid, f"box CSV {self.path}, row {row_number}: {exc}")
                    continue
                rows.setdefault(sid, []).append([x0, y0, x1, y1])
        self.rows = {k: np.asarray(v, np.float32) for k, v in rows.items()}

    def boxes(self, sample_id: str) -> np.ndarray:
        """``(K, 4)`` float32 boxes of ``sample_id`` (none when the CSV has no row for it)."""
        if sample_id in self.problems:
            raise SampleError(sample_id, self.problems[sample_id])
        return self.rows.get(sample_id, np.zeros((0, 4), np.float32))
