"""Sample loading for the shard worker: decode on threads, check, prefetch the next shard.

Decoding and resizing release the GIL, so a pool of threads keeps a GPU fed without the pickling
cost of processes. A sample that cannot be used becomes a failure record, never a crash and never
a silent gap. Close the loader (or use it as a context manager) to end its threads.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.base import Dataset, Sample, SampleError
from .failures import failure
from .store import Shard


@dataclass
class LoadedShard:
    """The usable samples of a shard: ``rows`` are their positions within the shard, ``images``
    ``(len(samples), C, H, W)`` on the host (pinned for a CUDA worker), or None if there are none;
    ``failures`` records the others (method ``*``: every method of the stage); ``image_shape``
    ``(C, H, W)`` is the run's, known even when no sample could be used."""

    shard: Shard
    rows: np.ndarray
    samples: list[Sample]
    failures: list[dict]
    images: torch.Tensor | None
    image_shape: tuple[int, int, int]

    def index_of(self, position: int) -> int:
        """Global index of the ``position``-th usable sample."""
        return self.shard.start + int(self.rows[position])


class SampleLoader:
    """Loads and checks samples of one image shape on ``threads`` threads; prefetches shards.

    ``require_label``: a sample of a shard without a label is a failure (the run explains the
    label); reference pools and training data may have unlabelled samples.
    """

    def __init__(
        self, image_shape: tuple[int, int, int], threads: int, *, pin_memory: bool = False, require_label: bool = False
    ) -> None:
        c, h, w = image_shape  # a tuple whatever sequence came in: samples' shapes are compared with it
        self.image_shape = (int(c), int(h), int(w))
        self.pin_memory = pin_memory
        self.require_label = require_label
        self.wait_s = 0.0  # time callers spent waiting for samples
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="load")
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._prefetched: dict[tuple[int, str], Future[LoadedShard]] = {}

    def __enter__(self) -> SampleLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the threads (a prefetch still running is waited for, then dropped)."""
        self._ahead.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._prefetched.clear()

    def load_many(self, dataset: Dataset, indices: list[int]) -> list[Sample | Exception]:
        """Checked samples at ``indices``, in order; a sample that fails comes back as its exception."""

        def one(index: int) -> Sample | Exception:
            try:
                return self._checked(dataset, index)
            except Exception as exc:  # noqa: BLE001 - the caller quarantines or reports it, with the reason
                return exc

        return list(self._pool.map(one, indices))

    def _checked(self, dataset: Dataset, index: int) -> Sample:
        """``dataset.load(index)`` with a float32 image of the run's shape and finite values, else SampleError."""
        sample = dataset.load(index)
        image = np.asarray(sample.image, dtype=np.float32)
        if image.shape != self.image_shape:
            raise SampleError(sample.id, f"image has shape {image.shape}, the run expects {self.image_shape}")
        if not np.isfinite(image).all():
            raise SampleError(sample.id, "image has non-finite values (NaN or inf)")
        sample.image = image
        return sample

    def load_shard(self, dataset: Dataset, shard: Shard, stage: str) -> LoadedShard:
        """A shard's usable samples and the failure records of the others."""
        rows, samples, failures = [], [], []
        indices = list(range(shard.start, shard.stop))
        for row, (index, loaded) in enumerate(zip(indices, self.load_many(dataset, indices), strict=True)):
            if not isinstance(loaded, Exception) and self.require_label and loaded.label < 0:
                loaded = SampleError(loaded.id, "target 'label' was asked for but the sample has no label")
            if isinstance(loaded, Exception):
                failures.append(failure(dataset.sample_id(index), index, stage, "*", loaded))
            else:
                rows.append(row)
                samples.append(loaded)
        images = torch.from_numpy(np.stack([s.image for s in samples])) if samples else None
        if images is not None and self.pin_memory:
            images = images.pin_memory()  # lets the copy to the device run asynchronously
        return LoadedShard(shard, np.asarray(rows, dtype=np.int64), samples, failures, images, self.image_shape)

    def take(self, dataset: Dataset, shard: Shard, stage: str, prefetch: Shard | None = None) -> LoadedShard:
        """This shard's samples (prefetched if they were), and start loading ``prefetch`` meanwhile."""
        start = time.perf_counter()
        future = self._prefetched.pop((shard.index, stage), None)
        loaded = future.result() if future is not None else self.load_shard(dataset, shard, stage)
        self.wait_s += time.perf_counter() - start
        if prefetch is not None and (prefetch.index, stage) not in self._prefetched:
            self._prefetched[(prefetch.index, stage)] = self._ahead.submit(self.load_shard, dataset, prefetch, stage)
        return loaded

    def prefetching(self, shard: Shard, stage: str) -> bool:
        return (shard.index, stage) in self._prefetched
