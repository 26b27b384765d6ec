"""Quarantine records: one per sample that a stage could not use, with the reason."""

from __future__ import annotations

import traceback


def failure(sample_id: str, index: int, stage: str, method: str, error: BaseException | str) -> dict:
    """One ``/failures`` record; ``error`` is an exception (named, with where it was raised) or a message."""
    if isinstance(error, BaseException):
        tb = traceback.extract_tb(error.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        error = f"{type(error).__name__}: {error}{where}"
    return {"sample_id": sample_id, "sample_index": int(index), "stage": stage, "method": method, "error": error}
