"""Which errors are worth retrying, and a jittered exponential backoff to retry them with.

A transient error is one that a second try a moment later is likely not to see: a dropped or
refused connection, a timeout, an object store asking the client to slow down (S3 ``SlowDown``,
``503``), a Ray actor that is unreachable for a while. Everything else (a bad config, a missing
file, a bug) is raised at once: retrying it only hides it.

No Ray or botocore import here (this package works without them): Ray's and botocore's errors
are recognised by their class names and by the ``response`` dict botocore attaches.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("pathatlas.transient")

TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.ECONNREFUSED})
# S3 and S3-compatible stores (and other AWS services through botocore) throttle with these codes;
# 500/503 are the HTTP statuses AWS documents as "retry with backoff".
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "500",
        "503",
    }
)
# Ray's exception classes that mean "the actor may answer again soon" (matched by name: the
# library must not import Ray).
TRANSIENT_CLASS_NAMES = frozenset({"ActorUnavailableError"})


def is_transient(exc: BaseException) -> bool:
    """True if ``exc``, or an exception it was raised from or wraps (``__cause__``, Ray's
    ``cause``, and the ``__context__`` of an ``OSError``, which is how s3fs re-raises botocore's
    errors), is worth retrying after a pause. Any other exception raised while handling a
    transient one (a bug in an ``except ConnectionError:`` block) is not transient itself."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 16:
            continue
        seen.add(id(e))
        if _transient_itself(e):
            return True
        wrapped = getattr(e, "cause", None)  # ray.exceptions.RayTaskError keeps the original here
        context = e.__context__ if isinstance(e, OSError) and not e.__suppress_context__ else None
        todo += [e.__cause__, context, wrapped if isinstance(wrapped, BaseException) else None]
    return False


def _transient_itself(exc: BaseException) -> bool:
    if any(cls.__name__ in TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    return _throttling_code(exc) is not None


def _throttling_code(exc: BaseException) -> str | None:
    """The throttling code of a botocore/aiobotocore ``ClientError`` (its ``response`` dict), if any."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    for candidate in (code, status):
        if candidate in THROTTLING_CODES:
            return candidate
    return None


def backoff_delay(attempt: int, base_delay: float, max_delay: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry): ``base * 2**(attempt-1)``
    capped at ``max_delay``, times a jitter in [0.5, 1] so that many clients do not retry in step
    ("equal jitter", AWS Architecture Blog, "Exponential Backoff and Jitter", 2015)."""
    ceiling = min(max_delay, base_delay * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def retry(
    fn: Callable[[], T],
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    describe: str = "call",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` up to ``attempts`` times while it raises a transient error (see
    :func:`is_transient`), sleeping a jittered exponential backoff between tries; any other
    error, or the last transient one, is raised as is."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.warning(
                "%s failed (%s: %s); retry %d of %d in %.1f s",
                describe,
                type(exc).__name__,
                exc,
                attempt,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
