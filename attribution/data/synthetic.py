"""The seeded "signal + distractor" benchmark.

Each image is ``x = B (+) S_y (+) D (+) G``: a textured background ``B``; the only label-bearing
component, a signal object ``S_y`` whose *shape* is the class (square, disc, triangle, cross) at a
random position, size and colour; label-independent local distractors ``D`` (rings, a look-alike
of the disc) with the same size and colour statistics; and a label-independent global pattern
``G`` (a smooth oriented colour wave) that a model must learn to cancel. The generator returns the
exact signal and distractor masks and the exact counterfactual image without the signal.

The design follows the signal/distractor argument of Kindermans et al., "Learning how to explain
neural networks: PatternNet and PatternAttribution", ICLR 2018.

Sample ``i`` depends only on ``(seed, i)`` (``np.random.default_rng([seed, i])``), so any worker
can generate any shard and nothing depends on batch boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from .base import Sample

CLASS_NAMES = ["square", "disc", "triangle", "cross"]
# Half-extent factors that give the four shapes about the same area for one radius r.
_AREA_SCALE = {0: 0.93, 1: 0.88, 2: 1.21, 3: 1.01}


@dataclass(frozen=True)
class SyntheticConfig:
    """``n_samples`` images of ``3 x image_size x image_size``; ``global_amplitude`` is the
    peak-to-peak size of the global pattern ``G`` in [0, 1] pixel units, ``background_contrast``
    the strength of the background texture ``B``.

    This is also the ``dataset: {kind: synthetic, ...}`` section of a run config (the run layer
    validates it as it is, so the two cannot drift apart); ``kind`` tags it there.
    """

    # read by pydantic when the run layer validates this section: unknown keys are refused
    __pydantic_config__: ClassVar[dict] = {"extra": "forbid"}

    kind: Literal["synthetic"] = "synthetic"
    n_samples: int = 64
    image_size: int = 48
    seed: int = 0
    n_distractors: int = 1
    global_amplitude: float = 0.3
    background_contrast: float = 0.35

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [16, 1024], got {self.image_size}")
        if not 0 <= self.n_distractors <= 8:
            raise ValueError(f"n_distractors must be in [0, 8], got {self.n_distractors}")
        if not 0 <= self.global_amplitude <= 1:
            raise ValueError(f"global_amplitude must be in [0, 1], got {self.global_amplitude}")
        if not 0 <= self.background_contrast <= 1:
            raise ValueError(f"background_contrast must be in [0, 1], got {self.background_contrast}")


def _shape_mask(cls: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    r = r * _AREA_SCALE[cls]
    if cls == 0:
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if cls == 1:
        return dx**2 + dy**2 <= (1.2 * r) ** 2
    if cls == 2:
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) * 0.6)
    t = max(1.0, r / 2.5)
    return ((np.abs(dx) <= t) & (np.abs(dy) <= 1.3 * r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= 1.3 * r))


def _ring(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (d2 <= (1.3 * r) ** 2) & (d2 >= (0.7 * r) ** 2)


def _rng(cfg: SyntheticConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, index])


def sample_label(cfg: SyntheticConfig, index: int) -> int:
    """The class of sample ``index`` (the first draw of its generator, so it is cheap)."""
    return int(_rng(cfg, index).integers(0, len(CLASS_NAMES)))


def generate_sample(cfg: SyntheticConfig, index: int) -> Sample:
    """One sample: image ``(3, H, W)`` float32 in [0, 1], masks ``signal``/``distractor``
    ``(H, W)`` bool, the counterfactual without the signal ``(3, H, W)`` and the signal's box."""
    if not 0 <= index < cfg.n_samples:
        raise IndexError(f"sample index {index} is outside [0, {cfg.n_samples})")
    rng = _rng(cfg, index)
    label = int(rng.integers(0, len(CLASS_NAMES)))
    size = cfg.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    scale = size / 48.0

    noise = gaussian_filter(rng.standard_normal((3, size, size)), sigma=(0, *[rng.uniform(0.8, 3) * scale] * 2))
    noise /= noise.std() + 1e-8
    background = rng.uniform(0.2, 0.8, 3)[:, None, None] + cfg.background_contrast * 0.5 * noise

    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(1.0, 2.5) / size, rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    pattern = 0.5 * cfg.global_amplitude * rng.uniform(-1, 1, 3)[:, None, None] * wave

    r = rng.uniform(4, 7) * scale

    def place(avoid: list[tuple[float, float]]) -> tuple[float, float]:
        lo, hi = r * 1.4 + 2, size - r * 1.4 - 3
        c = (rng.uniform(lo, hi), rng.uniform(lo, hi))
        for _ in range(100):
            if all(np.hypot(c[0] - a[0], c[1] - a[1]) > 3.2 * r for a in avoid):
                break
            c = (rng.uniform(lo, hi), rng.uniform(lo, hi))
        return c

    def paint(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
        colour = rng.uniform(0, 1, 3)[:, None, None]
        return np.where(mask, 0.15 * img + 0.85 * colour, img)

    centre = place([])
    signal = _shape_mask(label, yy, xx, *centre, r)
    scene = background  # the counterfactual world: everything except the signal
    distractor = np.zeros((size, size), bool)
    taken = [centre]
    signal_colour_img = paint(background, signal)
    for _ in range(cfg.n_distractors):
        c = place(taken)
        taken.append(c)
        ring = _ring(yy, xx, *c, r) & ~signal
        scene = paint(scene, ring)
        signal_colour_img = np.where(ring, scene, signal_colour_img)
        distractor |= ring
    image = np.clip(np.where(signal, signal_colour_img, scene) + pattern, 0, 1).astype(np.float32)
    counterfactual = np.clip(scene + pattern, 0, 1).astype(np.float32)
    ys, xs = np.nonzero(signal)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    return Sample(
        id=f"synthetic-{cfg.seed}-{index:06d}",
        image=image,
        label=label,
        boxes=box,
        masks={"signal": signal, "distractor": distractor},
        counterfactual=counterfactual,
    )


def generate_arrays(cfg: SyntheticConfig, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Samples ``[start, stop)`` stacked: ``image``/``counterfactual`` ``(n, 3, H, W)``, ``label``
    ``(n,)``, ``signal``/``distractor`` ``(n, H, W)``."""
    stop = cfg.n_samples if stop is None else stop
    samples = [generate_sample(cfg, i) for i in range(start, stop)]
    return {
        "image": np.stack([s.image for s in samples]),
        "counterfactual": np.stack([s.counterfactual for s in samples if s.counterfactual is not None]),
        "label": np.array([s.label for s in samples], np.int64),
        "signal": np.stack([s.masks["signal"] for s in samples]),
        "distractor": np.stack([s.masks["distractor"] for s in samples]),
    }


class SyntheticDataset:
    """The benchmark as a :class:`~pathatlas.attribution.data.base.Dataset`."""

    class_names = CLASS_NAMES
    mask_names: tuple[str, ...] = ("signal", "distractor")
    has_boxes = True
    has_counterfactual = True

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        self.image_shape = (3, cfg.image_size, cfg.image_size)

    def __len__(self) -> int:
        return self.cfg.n_samples

    def sample_id(self, index: int) -> str:
        return f"synthetic-{self.cfg.seed}-{index:06d}"

    def label(self, index: int) -> int:
        return sample_label(self.cfg, index)

    def load(self, index: int) -> Sample:
        return generate_sample(self.cfg, index)
