"""Bounding-box files: Pascal VOC XML (as ImageNet ships its boxes) and a plain ``id,x0,y0,x1,y1`` CSV.

Boxes come out ``(K, 4)`` float32 ``x0, y0, x1, y1`` in the original image's continuous pixel
coordinates (pixel ``i`` spans ``[i, i + 1)``), ready for :func:`.preprocess.transform_boxes`.
VOC coordinates are 1-based inclusive pixel indices (Everingham et al., "The PASCAL Visual Object
Classes Challenge", IJCV 2010, devkit ``VOCreadxml``), so ``x0 = xmin - 1`` and ``x1 = xmax``.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


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
            names.append((obj.findtext("name") or "").strip())
            boxes.append(voc_to_pixels(xmin, ymin, xmax, ymax))
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed VOC box file {path}: {exc}") from None
    return names, np.asarray(boxes, np.float32).reshape(-1, 4)


def read_voc(path: str | Path) -> np.ndarray:
    """``(K, 4)`` float32 boxes of a VOC XML file (see :func:`read_voc_objects`)."""
    return read_voc_objects(path)[1]


def read_box_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``id -> (K, 4)`` float32 from a CSV with header ``id,x0,y0,x1,y1`` (continuous pixels, one box a row)."""
    out: dict[str, list] = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"id", "x0", "y0", "x1", "y1"} <= set(reader.fieldnames):
            raise ValueError(f"box CSV {path} needs the header id,x0,y0,x1,y1")
        for row_number, row in enumerate(reader, start=2):
            try:
                out.setdefault(row["id"], []).append([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"box CSV {path}, row {row_number}: {exc}") from None
    return {k: np.asarray(v, np.float32) for k, v in out.items()}
