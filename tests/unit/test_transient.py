"""Transient errors are retried with backoff; everything else is raised at once."""

from __future__ import annotations

import errno

import pytest

from pathatlas.attribution.run.transient import backoff_delay, is_transient, retry
from pathatlas.attribution.run.writer import BackgroundWriter, StoreWriteError


class ClientError(Exception):
    """The shape of botocore's ClientError: a ``response`` dict with the service's error code."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_what_counts_as_transient():
    assert is_transient(ConnectionResetError("reset"))
    assert is_transient(TimeoutError("slow"))
    assert is_transient(OSError(errno.ETIMEDOUT, "timed out"))
    assert is_transient(ClientError("SlowDown", 503))
    assert is_transient(ClientError("ThrottlingException"))
    assert not is_transient(ClientError("NoSuchKey", 404))
    assert not is_transient(ClientError("AccessDenied", 403))
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(ValueError("bad config"))
    try:  # a library error raised from a throttled request counts by its cause
        try:
            raise ClientError("SlowDown", 503)
        except ClientError as inner:
            raise OSError(errno.EIO, "write failed") from inner
    except OSError as outer:
        assert is_transient(outer)


def test_ray_unavailable_actor_is_transient():
    ray_exceptions = pytest.importorskip("ray.exceptions")
    assert is_transient(ray_exceptions.ActorUnavailableError("unavailable", b"\0" * 16))
    assert not is_transient(ray_exceptions.ActorDiedError())


def test_backoff_grows_and_is_capped():
    for attempt in range(1, 10):
        delay = backoff_delay(attempt, 0.5, 4.0)
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_retry_retries_transient_errors_only():
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ClientError("SlowDown", 503)
        return "ok"

    assert retry(flaky, attempts=5, base_delay=0.01, sleep=slept.append) == "ok"
    assert len(calls) == 3 and len(slept) == 2

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug")

    calls.clear()
    with pytest.raises(ValueError):
        retry(broken, attempts=5, sleep=slept.append)
    assert len(calls) == 1  # not retried

    def always_throttled() -> None:
        raise ClientError("SlowDown", 503)

    with pytest.raises(ClientError):
        retry(always_throttled, attempts=3, base_delay=0.0, sleep=lambda s: None)


def test_the_background_writer_retries_a_throttled_write():
    writer = BackgroundWriter(base_delay=0.01, max_delay=0.02)
    tries, written = [], []

    def throttled_twice() -> None:
        tries.append(1)
        if len(tries) <= 2:
            raise ClientError("SlowDown", 503)
        written.append("chunk")

    writer.submit("stage 'attribute': shard 0 of method 'ig'", 10, throttled_twice)
    writer.flush()
    assert written == ["chunk"] and len(tries) == 3

    writer.submit(
        "stage 'attribute': shard 1 of method 'ig'", 10, lambda: (_ for _ in ()).throw(ClientError("SlowDown", 503))
    )
    with pytest.raises(StoreWriteError, match="shard 1") as err:
        writer.flush()
    assert err.value.transient  # the pool may try the shard again later
    writer.close()


def test_stage_retry_condition():
    from prefect.states import Failed

    from pathatlas.tasks.ray_pool import ActorsLostError, ComputeError, retry_stage

    assert retry_stage(None, None, Failed(data=ActorsLostError("every actor of the pool was lost")))
    assert retry_stage(None, None, Failed(data=ConnectionResetError("reset")))
    assert not retry_stage(None, None, Failed(data=ComputeError("no actor could be placed")))
    assert not retry_stage(None, None, Failed(data=ValueError("bad config")))
