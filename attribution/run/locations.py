"""Where a run writes: store URIs with placeholders, and the earlier stores of the same audit.

A scheduled audit names its store with placeholders (``runs/audit/{date}/store.zarr``) so that
each audit writes a store of its own. They are filled once, when the run starts:

- ``{date}`` / ``{datetime}``: the run's start in UTC (``2026-11-30`` / ``20261130T020000Z``); a
  scheduled flow run uses its *scheduled* time, so a retry of that run resumes the same store;
- ``{run_id}``: the run's id (the Prefect flow run id);
- ``{model_hash}``: the first 12 hex digits of the model's sha256.
"""

from __future__ import annotations

import functools
import glob
import re
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .secrets import resolved

if TYPE_CHECKING:  # config imports this module (to check placeholders): no import cycle at run time
    from .config import RunConfig

PLACEHOLDERS = ("date", "datetime", "run_id", "model_hash")
_FIELD = re.compile(r"\{([^{}]*)\}")


def placeholders(template: str) -> set[str]:
    """The placeholder names in ``template``; unknown names are refused, naming the allowed ones."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"{template!r}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"allowed: {', '.join('{' + n + '}' for n in PLACEHOLDERS)}"
        )
    return names


def fill(template: str, *, run_id: str, when: datetime, model_hash: Callable[[], str]) -> str:
    """``template`` with its placeholders filled (``model_hash`` is only called when used)."""
    names = placeholders(template)
    when = when.astimezone(UTC)
    values = {
        "date": when.strftime("%Y-%m-%d"),
        "datetime": when.strftime("%Y%m%dT%H%M%SZ"),
        "run_id": run_id,
        "model_hash": model_hash()[:12] if "model_hash" in names else "",
    }
    return template.format(**{k: v for k, v in values.items() if k in names})


def matching(template: str, storage_options: dict | None = None) -> list[str]:
    """Existing locations that ``template`` could have been filled to (any placeholder values)."""
    placeholders(template)
    pattern = _FIELD.sub("*", template)
    if "://" not in template:
        return sorted(glob.glob(pattern))
    import fsspec

    fs, path = fsspec.core.url_to_fs(pattern, **resolved(storage_options))
    protocol = template.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in fs.glob(path))


def earlier_store(template: str, current: str, storage_options: dict | None = None) -> str | None:
    """The latest *completed* store of the audit ``template`` that started before ``current`` (a
    new store: before now): ``compare_to: previous``. Stores are ordered by their first run's start."""
    started = {uri: _first_start(uri, storage_options) for uri in matching(template, storage_options)}
    before = started.pop(current.rstrip("/"), None) or ("~",)  # "~" sorts after every ISO time
    found = [(s[0], uri) for uri, s in started.items() if s is not None and s[1] and s[0] < before[0]]
    return max(found)[1] if found else None


def _first_start(uri: str, storage_options: dict | None) -> tuple[str, bool] | None:
    """``(first run's start, completed?)`` of the store at ``uri``; ``None`` if it is not a store."""
    from .store import RunStore

    try:
        meta = RunStore.open(uri, storage_options, mode="r").meta
    except (FileNotFoundError, ValueError):
        return None
    runs = meta.get("runs") or [{}]
    return str(runs[0].get("started_at", "")), bool(meta.get("completed_at"))


def locate(cfg: RunConfig, run_id: str, when: datetime, store_uri: str | None = None) -> RunConfig:
    """``cfg`` with its store URI (or ``store_uri``, to resume a given store), report and patterns
    paths' placeholders filled (:mod:`.locations`) and ``compare_to: previous`` resolved to the
    latest completed store of the same audit (``None`` if there is none yet)."""
    from .builders import build_model, model_hash

    model_sha = functools.cache(lambda: model_hash(build_model(cfg)))

    def filled(template: str | None) -> str | None:
        return None if template is None else fill(template, run_id=run_id, when=when, model_hash=model_sha)

    uri = store_uri or str(filled(cfg.store.uri))
    compare_to = cfg.compare_to
    if compare_to == "previous":
        audit = cfg.store.uri if placeholders(cfg.store.uri) else None
        compare_to = earlier_store(audit, uri, cfg.store.storage_options) if audit else None
    else:
        compare_to = filled(compare_to)
    return cfg.model_copy(
        update={
            "store": cfg.store.model_copy(update={"uri": uri}),
            "report": cfg.report.model_copy(update={"path": filled(cfg.report.path)}),
            "patterns": cfg.patterns.model_copy(update={"path": filled(cfg.patterns.path)}),
            "compare_to": compare_to,
        }
    )


def known_part(template: str) -> str:
    """What a location template fixes before a run starts: the template itself without
    placeholders, else the folder that holds its first placeholder (``runs/a/{date}/store.zarr`` ->
    ``runs/a``; ``.`` when the first part is one)."""
    if not placeholders(template):
        return template
    return template[: template.index("{")].rpartition("/")[0] or "."
