"""What every dataset adapter yields: one :class:`Sample` per index, with a stable id.

Images are float32 ``(C, H, W)`` in pixel space [0, 1] after the configured preprocessing;
normalisation is *not* applied here (it lives inside the model wrapper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class SampleError(ValueError):
    """A sample that cannot be used (unreadable file, wrong shape, non-finite values...).

    The message names the sample; the pipeline quarantines the sample in ``/failures`` and goes on.
    """

    def __init__(self, sample_id: str, message: str) -> None:
        super().__init__(f"sample {sample_id!r}: {message}")
        self.sample_id = sample_id
        self.reason = message


@dataclass
class Sample:
    """One preprocessed sample.

    ``boxes`` is ``(K, 4)`` float32 ``x0, y0, x1, y1`` in the preprocessed image's pixel
    coordinates (``None`` when the dataset has none); ``masks`` maps a name ("signal",
    "distractor", "object") to a ``(H, W)`` bool array; ``counterfactual`` is the exact image
    without its signal, ``(C, H, W)``, when the dataset knows it. ``box_problem``: why the
    sample's boxes cannot be scored although its dataset has boxes (e.g. every box of its file lies
    outside the image); localization records it as that sample's failure, other metrics ignore it.
    """

    id: str
    image: np.ndarray
    label: int = -1
    boxes: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    counterfactual: np.ndarray | None = None
    box_problem: str | None = None

    def boxes_mask(self) -> np.ndarray:
        """``(H, W)`` bool: the union of the boxes (a pixel is in a box when its centre is)."""
        h, w = self.image.shape[-2:]
        out = np.zeros((h, w), bool)
        ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
        for x0, y0, x1, y1 in self.boxes if self.boxes is not None else []:
            out |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        return out


@runtime_checkable
class Dataset(Protocol):
    """Random-access dataset: ``len``, stable ids, and ``load(i) -> Sample``.

    ``load`` must be deterministic and independent of the order in which indices are loaded,
    so that any worker can load any shard. It raises :class:`SampleError` for a bad sample.

    ``class_names[i]`` names model class ``i`` (a list indexed by class index, not by folder).
    A dataset read from a folder may also have ``skipped_files: dict[str, int]`` (reason -> count
    of files it did not take as samples, e.g. ``{"not an image (extension .txt)": 3}``); the plan
    records it in the store meta (``{}`` for datasets without it).
    """

    image_shape: tuple[int, int, int]
    class_names: list[str]
    mask_names: tuple[str, ...]
    has_boxes: bool
    has_counterfactual: bool

    def __len__(self) -> int: ...

    def sample_id(self, index: int) -> str: ...

    def label(self, index: int) -> int: ...

    def load(self, index: int) -> Sample: ...


class FirstN:
    """The first ``limit`` samples of a dataset (every other attribute is the dataset's own)."""

    def __init__(self, inner: Dataset, limit: int) -> None:
        self._inner, self._n = inner, min(limit, len(inner))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return self._n

    def _check(self, index: int) -> int:
        if not 0 <= index < self._n:
            raise IndexError(f"sample index {index} is outside [0, {self._n})")
        return index

    def sample_id(self, index: int) -> str:
        return self._inner.sample_id(self._check(index))

    def label(self, index: int) -> int:
        return self._inner.label(self._check(index))

    def load(self, index: int) -> Sample:
        return self._inner.load(self._check(index))
