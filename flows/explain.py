"""The pipeline as Prefect flows: plan -> [learn patterns] -> attribute -> evaluate -> [sanity] -> [drift] -> report.

``explain`` runs every stage; each stage also has a flow of its own. Every flow first fills the
config's placeholders (a dated store per audit: only ``explain`` and ``plan`` create one, a
single stage is given its store with ``store=``), takes the store's lease (one writer per store,
checked after every stage) and checks that the store's results were made the way this config
makes them. Every stage is
idempotent: re-running skips what the store already marks done.

The driver makes the config's local paths absolute before anything reads them (a Ray worker's
working directory is not the driver's), ends what an earlier, killed driver on this host left
running, and keeps a record of its own child processes for the next one (:mod:`.drivers`).
Prefect stores each flow run's parameters: credentials in the config's ``storage_options`` are
redacted there (the flow itself gets them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect import Flow, get_run_logger
from prefect.runtime import flow_run

from pathatlas.attribution.run.config import RunConfig, load_config, parse_config
from pathatlas.attribution.run.drivers import DriverRecord, reap
from pathatlas.attribution.run.learned_patterns import needs_patterns
from pathatlas.attribution.run.lease import StoreLease
from pathatlas.attribution.run.locations import locate, placeholders
from pathatlas.attribution.run.paths import absolute_paths, is_url
from pathatlas.attribution.run.preflight import ensure_runnable
from pathatlas.attribution.run.secrets import redacted_config
from pathatlas.tasks.attribute import attribute_dataset
from pathatlas.tasks.data import finish_run, plan_dataset
from pathatlas.tasks.drift import compare_to_earlier
from pathatlas.tasks.evaluate import evaluate_dataset
from pathatlas.tasks.patterns import learn_patterns_task
from pathatlas.tasks.report import build_report
from pathatlas.tasks.sanity import sanity_checks


class _PipelineFlow(Flow):  # type: ignore[type-arg]
    """A Prefect flow whose stored parameters never hold the config's credentials."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        out = super().serialize_parameters(parameters)
        if isinstance(out.get("config"), dict):
            out["config"] = redacted_config(out["config"])
        return out


def flow(name: str, **options: Any) -> Any:
    """``@prefect.flow``, building a :class:`_PipelineFlow`."""
    return lambda fn: _PipelineFlow(fn, name=name, **options)


def _config(config: dict[str, Any] | str) -> RunConfig:
    """A validated config, from a dict or a YAML path, its local paths made absolute."""
    return absolute_paths(load_config(config) if isinstance(config, (str, Path)) else parse_config(config))


def _run_identity() -> tuple[str, datetime]:
    """This flow run's id and start: a scheduled run's *scheduled* time, so that a retry of it
    fills ``{date}`` the same way and resumes its own store."""
    run_id = flow_run.get_id() or uuid4().hex
    when = flow_run.get_scheduled_start_time() or datetime.now(UTC)
    return str(run_id), when


@contextmanager
def _run(
    config: dict[str, Any] | str, store: str | None, new_store: bool = False, check: bool = False
) -> Iterator[tuple[dict[str, Any], str, StoreLease]]:
    """``(config as a JSON-ready dict with its placeholders filled, run id, the store's lease)``,
    holding the lease. Only ``new_store`` flows (explain, plan) may fill the store URI's
    placeholders; a single stage of an audit needs the store it works on (``store=``). ``check``:
    run the preflight first (every problem at once, before the lease or Ray)."""
    loaded = _config(config)
    if store is not None and not is_url(store):
        store = os.path.abspath(store)  # like the config's own paths: workers see the driver's
    if check:
        ensure_runnable(loaded, store)
    if store is None and not new_store and placeholders(loaded.store.uri):
        raise ValueError(
            f"store.uri {loaded.store.uri!r} has placeholders: give this stage the store to work on "
            "(store=..., e.g. the path `pathatlas run` printed)"
        )
    run_id, when = _run_identity()
    cfg = locate(loaded, run_id, when, store)
    logger = get_run_logger()
    for line in reap():  # a killed driver's Prefect server, Ray processes
        logger.warning("ended a process a killed run left behind: %s", line)
    logger.info("store: %s (run %s)", cfg.store.uri, run_id)
    lease = StoreLease(cfg.store.uri, cfg.store.storage_options, run_id=run_id, stale_after_s=cfg.store.lease_stale_s)
    with DriverRecord.kept():
        previous = lease.acquire()
        if previous is not None:  # its holder died: resumed from what it left
            logger.warning("took over the store's lease from %s (no longer alive)", previous.describe())
        try:
            yield cfg.model_dump(mode="json"), run_id, lease
            lease.check()  # the stages ran as the only writer
        finally:
            lease.release()


@flow("explain", log_prints=True)
def explain(
    config: dict[str, Any] | str,
    show_progress: bool = True,
    overwrite: list[str] | None = None,
    store: str | None = None,
    preflight: bool = True,
) -> dict[str, Any]:
    """Run the whole pipeline for a run config (a dict or a YAML path); return the store and
    report paths. ``overwrite``: results to delete and recompute (``all``, a method key,
    ``<metric>/<key>``, ``<metric>``, ``patterns``); ``store``: resume this store (its placeholders
    already filled) instead of the config's; ``preflight``: check the config first
    (:mod:`pathatlas.attribution.run.preflight`; the command line has done so already)."""
    with _run(config, store, new_store=True, check=preflight) as (cfg, run_id, lease):
        store_uri = plan_dataset(cfg, overwrite or [], run_id, reopen=True)
        if needs_patterns(RunConfig.model_validate(cfg)):  # a pattern method without patterns learns them first
            learn_patterns_task(cfg, store_uri, show_progress)
            lease.check()  # after every stage: a run whose lease was taken over stops writing
        attributed = attribute_dataset(cfg, store_uri, show_progress)
        lease.check()
        evaluated = evaluate_dataset(cfg, store_uri, show_progress) if cfg["metrics"] else {"jobs": 0}
        lease.check()
        sanity = sanity_checks(cfg, store_uri, show_progress) if cfg["sanity"] and cfg["sanity"]["enabled"] else None
        lease.check()
        drift = compare_to_earlier(cfg, store_uri) if cfg["compare_to"] else None
        report = build_report(cfg, store_uri, drift)
        lease.check()
        finish_run(cfg, store_uri)
    return {
        "store": store_uri,
        "report": report,
        "attribute": attributed,
        "evaluate": evaluated,
        "sanity": sanity,
        "drift": drift,
        "compare_to": cfg["compare_to"],
    }


# The whole pipeline as a deployment runs it: retried after a failure (a lost cluster, an object
# store that went away). A retry of a scheduled run fills ``{date}`` from the same scheduled time,
# so it resumes its own store and recomputes nothing that was done.
audit = _PipelineFlow(explain.fn, name="explain", log_prints=True, retries=2, retry_delay_seconds=300)


@flow("plan")
def plan(config: dict[str, Any] | str, overwrite: list[str] | None = None, store: str | None = None) -> str:
    with _run(config, store, new_store=True) as (cfg, run_id, _):
        return plan_dataset(cfg, overwrite or [], run_id)


@flow("learn-patterns")
def learn_patterns(
    config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None
) -> dict[str, Any]:
    """Learn PatternNet patterns for the run's model over its training data (resumable per shard)."""
    with _run(config, store) as (cfg, run_id, _):
        return learn_patterns_task(cfg, plan_dataset(cfg, [], run_id), show_progress)


@flow("attribute")
def attribute(config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None) -> dict[str, Any]:
    with _run(config, store) as (cfg, run_id, _):
        store_uri = plan_dataset(cfg, [], run_id)
        if needs_patterns(RunConfig.model_validate(cfg)):
            learn_patterns_task(cfg, store_uri, show_progress)
        return attribute_dataset(cfg, store_uri, show_progress)


@flow("evaluate")
def evaluate(config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None) -> dict[str, Any]:
    with _run(config, store) as (cfg, run_id, _):
        return evaluate_dataset(cfg, plan_dataset(cfg, [], run_id), show_progress)


@flow("sanity")
def sanity(config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None) -> dict[str, Any]:
    """Model randomisation checks (config ``sanity``) of a store whose maps have targets."""
    with _run(config, store) as (cfg, run_id, _):
        return sanity_checks(cfg, plan_dataset(cfg, [], run_id), show_progress)


@flow("report")
def report(config: dict[str, Any] | str, store: str | None = None) -> str:
    with _run(config, store) as (cfg, run_id, _):
        store_uri = plan_dataset(cfg, [], run_id)
        drift = compare_to_earlier(cfg, store_uri) if cfg["compare_to"] else None
        return build_report(cfg, store_uri, drift)
