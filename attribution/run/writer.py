"""Store writes on a thread of their own, so the engine never waits for compression and I/O.

A shard's maps are encoded and written while the engine computes the next method or shard. One
writer thread keeps the writes in submission order, so a shard's done flag (written last by the
same job) still comes only after its data. Memory stays bounded: a submission waits while more
than ``limit_bytes`` of results are queued. A write that hits a transient error (S3 throttling,
a reset connection; see :mod:`.transient`) is retried with backoff on the writer thread; a write
that still fails is raised by the next call to :meth:`BackgroundWriter.submit` or
:meth:`BackgroundWriter.flush`, naming what was being written. Every write job must be idempotent
(it writes whole chunks), so retrying it is safe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .transient import is_transient, retry


class StoreWriteError(RuntimeError):
    """A background store write failed; the message names the stage, shard and array.
    ``transient``: its cause was a transient error that outlasted the retries (the caller may
    retry the whole shard later); otherwise it is a real failure (disk full, permissions, a bug)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[type, tuple[str, bool]]:  # keeps ``transient`` across Ray's pickling
        return (type(self), (str(self), self.transient))


class BackgroundWriter:
    """Run write jobs in order on one thread; account for the time the caller spent waiting."""

    def __init__(
        self, limit_bytes: int = 1 << 30, attempts: int = 5, base_delay: float = 0.5, max_delay: float = 8.0
    ) -> None:
        self.limit_bytes = limit_bytes
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write")
        self._pending: deque[tuple[str, Future, int]] = deque()
        self.busy_s = 0.0  # seconds the writer thread spent writing
        self.waited_s = 0.0  # seconds callers spent blocked on it

    def submit(self, what: str, nbytes: int, job: Callable[[], None]) -> None:
        """Queue ``job`` (which writes about ``nbytes``); ``what`` names it in errors."""
        self._reap()
        while self._pending and self._queued_bytes() + nbytes > self.limit_bytes:
            self._wait_oldest()
        self._pending.append((what, self._pool.submit(self._timed, what, job), nbytes))

    def flush(self) -> None:
        """Wait until every queued write is durable; raise the first failure."""
        while self._pending:
            self._wait_oldest()

    def close(self) -> None:
        self.flush()
        self._pool.shutdown()

    def _timed(self, what: str, job: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            retry(job, self.attempts, self.base_delay, self.max_delay, describe=f"writing {what}")
        finally:
            self.busy_s += time.perf_counter() - start

    def _queued_bytes(self) -> int:
        return sum(n for _, _, n in self._pending)

    def _reap(self) -> None:
        while self._pending and self._pending[0][1].done():
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        what, future, _ = self._pending.popleft()
        start = time.perf_counter()
        try:
            future.result()
        except Exception as exc:
            raise StoreWriteError(f"writing {what} failed: {type(exc).__name__}: {exc}", is_transient(exc)) from exc
        finally:
            self.waited_s += time.perf_counter() - start
