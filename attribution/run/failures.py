"""Quarantine and skip records, and how they are grouped for reading.

A *failure* is something that went wrong with a sample: an undecodable image, a map with NaNs,
an exception, a shard given up, boxes that cannot be scored. A *skip* is a metric that by its own
definition does not apply to a sample (e.g. PIC when the model's prediction on the original image
is below ``min_pred_value``): nothing went wrong, nothing is to be fixed.

Every record carries ``category``: a short reason class without the sample-specific parts of its
text (ids, numbers, paths, quoted names), so thousands of records read as a few reasons. Records
written before categories existed get theirs from :func:`reason_class` when read.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from typing import Any

ANY_METHOD = "*"  # a record that holds for every method (the reason does not depend on the map)
LEGACY_SKIP = "skipped: "  # how skips were written as failure records before skips had a group
GIVEN_UP = "shard given up"

_WHERE = re.compile(r"\s*\(at [\w.\-]+:\d+\)$")  # failure()'s "(at file.py:12)" suffix
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\w.\-~]*/)+[\w.\-]*|\w+://\S+")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def failure(
    sample_id: str,
    index: int,
    stage: str,
    method: str,
    error: BaseException | str,
    category: str | None = None,
) -> dict:
    """One ``/failures`` record; ``error`` is an exception (named, with where it was raised) or a
    message; ``category`` (default: from :func:`reason_class`) groups it with records of the same cause."""
    if isinstance(error, BaseException):
        if category is None:
            message = str(getattr(error, "reason", None) or error)  # SampleError: the reason without the id
            category = f"{type(error).__name__}: {reason_class(message, sample_id)}"
        tb = traceback.extract_tb(error.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        error = f"{type(error).__name__}: {error}{where}"
    return {
        "sample_id": sample_id,
        "sample_index": int(index),
        "stage": stage,
        "method": method,
        "error": error,
        "category": category or reason_class(error, sample_id),
    }


def skip(sample_id: str, index: int, stage: str, method: str, reason: str, category: str | None = None) -> dict:
    """One ``/skips`` record: ``stage`` ``evaluate.<metric>``, ``method`` a store key or
    :data:`ANY_METHOD`, the full ``reason`` and its ``category``."""
    return {
        "sample_id": sample_id,
        "sample_index": int(index),
        "stage": stage,
        "metric": stage.partition(".")[2],
        "method": method,
        "reason": reason,
        "category": category or reason_class(reason, sample_id),
    }


def reason_class(text: str, sample_id: str = "") -> str:
    """``text`` without what differs from sample to sample: the sample id, quoted names, paths and
    numbers become ``…``, ``<path>`` and ``#``; failure()'s "(at file.py:12)" is dropped.

    >>> reason_class("sample 'a.png': cannot decode /data/x/a.png (at loader.py:90)", "a.png")
    'sample …: cannot decode <path>'
    """
    text = _PATH.sub("<path>", _WHERE.sub("", str(text)))  # paths first: they may hold the id
    if sample_id:
        text = text.replace(sample_id, "…")
    text = _QUOTED.sub("…", text)
    text = _NUMBER.sub("#", text)
    return " ".join(text.split())


def is_legacy_skip(record: dict) -> bool:
    """A skip written as a failure record (stores before ``/skips``): error ``"skipped: <reason>"``."""
    return str(record.get("error", "")).startswith(LEGACY_SKIP)


def legacy_skip(record: dict) -> dict:
    """The :func:`skip` record of an old ``"skipped: ..."`` failure record."""
    reason = str(record["error"])[len(LEGACY_SKIP) :]
    stage = str(record.get("stage", "evaluate"))
    return skip(str(record["sample_id"]), int(record["sample_index"]), stage, str(record.get("method", "")), reason)


def category_of(record: dict) -> str:
    """A record's reason class: its ``category``, or (older records) one made from its text."""
    if record.get("category"):
        return str(record["category"])
    return reason_class(str(record.get("reason", record.get("error", ""))), str(record.get("sample_id", "")))


def summarise(records: Iterable[dict]) -> list[dict[str, Any]]:
    """Records grouped by ``(stage, category)``: one row each with ``stage``, ``metric`` (``None``
    outside the evaluate stage), ``category``, ``records``, distinct ``samples``, the ``methods``
    they name (sorted, ``*``: every method), an ``example`` sample id and its full ``text``.
    Rows by stage, then most samples first."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        stage, category = str(r.get("stage", "")), category_of(r)
        row = groups.get((stage, category))
        if row is None:
            metric = stage.partition(".")[2] if stage.startswith("evaluate") else ""
            row = groups[stage, category] = {
                "stage": stage,
                "metric": metric or None,
                "category": category,
                "records": 0,
                "samples": set(),
                "methods": set(),
                "example": str(r.get("sample_id", "")),
                "text": str(r.get("reason", r.get("error", ""))),
            }
        row["records"] += 1
        row["samples"].add(int(r.get("sample_index", -1)))
        row["methods"].add(str(r.get("method", "")))
    out = []
    for row in groups.values():
        out.append({**row, "samples": len(row["samples"]), "methods": sorted(row["methods"])})
    return sorted(out, key=lambda row: (row["stage"], -row["samples"], row["category"]))


def dedupe(records: Iterable[dict]) -> list[dict]:
    """``records`` without repeats (one sample's method-independent record written by two jobs),
    first occurrence kept, order kept."""
    seen: set[tuple] = set()
    out = []
    for r in records:
        key = _identity(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _identity(record: dict) -> tuple:
    """What makes two records the same: stage, sample, method and text."""
    return (
        record.get("stage"),
        record.get("sample_index"),
        record.get("method"),
        record.get("reason", record.get("error")),
    )


class JobRecords:
    """The shared records of one evaluate job as its methods are scored one by one: ``records``
    without repeats (a method-independent record comes once, whichever methods found it) and the
    ``methods`` that contributed any (deleting one's scores must not delete what another needs)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.methods: list[str] = []

    def add(self, key: str, records: list[dict]) -> bool:
        """Add method ``key``'s records; whether the stored group must be rewritten (it must
        list ``key`` as soon as ``key`` found any record, even one already there)."""
        if not records:
            return False
        self.records = dedupe([*self.records, *records])
        if key not in self.methods:
            self.methods.append(key)
        return True


def methods_label(methods: list[str], listed: int = 3) -> str:
    """The methods a group of records concerns, short: ``all`` for :data:`ANY_METHOD` records,
    the keys up to ``listed`` of them, else their count."""
    shown = [m for m in methods if m != ANY_METHOD]
    text = ", ".join(shown) if len(shown) <= listed else f"{len(shown)} methods"
    if ANY_METHOD not in methods:
        return text
    return "all (once per sample)" + (f", {text}" if shown else "")


def skipped_files(value: object) -> dict[str, int]:
    """The dataset's ``reason -> count`` of files not taken as samples, from the store's
    ``meta["skipped_files"]`` (a count or a list of examples per reason)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): len(v) if isinstance(v, list) else int(v) for k, v in value.items()}
