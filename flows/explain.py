"""The pipeline as Prefect flows: plan -> [learn patterns] -> attribute -> evaluate -> [drift] -> report.

``explain`` runs every stage; each stage also has a flow of its own. Every flow first fills the
config's placeholders (a dated store per audit), takes the store's lease (one writer per store)
and checks that the store's results were made the way this config makes them. Every stage is
idempotent: re-running skips what the store already marks done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from pathatlas.attribution.run.config import RunConfig, load_config, parse_config
from pathatlas.attribution.run.learned_patterns import needs_patterns
from pathatlas.attribution.run.lease import StoreLease
from pathatlas.attribution.run.locations import locate
from pathatlas.tasks.attribute import attribute_dataset
from pathatlas.tasks.data import finish_run, plan_dataset
from pathatlas.tasks.drift import compare_to_earlier
from pathatlas.tasks.evaluate import evaluate_dataset
from pathatlas.tasks.patterns import learn_patterns_task
from pathatlas.tasks.report import build_report


def _config(config: dict[str, Any] | str) -> RunConfig:
    """A validated config, from a dict or a YAML path."""
    return load_config(config) if isinstance(config, (str, Path)) else parse_config(config)


def _run_identity() -> tuple[str, datetime]:
    """This flow run's id and start: a scheduled run's *scheduled* time, so that a retry of it
    fills ``{date}`` the same way and resumes its own store."""
    run_id = flow_run.get_id() or uuid4().hex
    when = flow_run.get_scheduled_start_time() or datetime.now(UTC)
    return str(run_id), when


@contextmanager
def _run(config: dict[str, Any] | str, store: str | None) -> Iterator[tuple[dict[str, Any], str]]:
    """``(config as a JSON-ready dict with its placeholders filled, run id)``, holding the store's lease."""
    run_id, when = _run_identity()
    cfg = locate(_config(config), run_id, when, store)
    get_run_logger().info("store: %s (run %s)", cfg.store.uri, run_id)
    with StoreLease(
        cfg.store.uri, cfg.store.storage_options, run_id=run_id, stale_after_s=cfg.store.lease_stale_s
    ) as lease:
        yield cfg.model_dump(mode="json"), run_id
        lease.check()  # the stages ran as the only writer


@flow(name="explain", log_prints=True)
def explain(
    config: dict[str, Any] | str,
    show_progress: bool = True,
    overwrite: list[str] | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline for a run config (a dict or a YAML path); return the store and
    report paths. ``overwrite``: results to delete and recompute (``all``, a method key,
    ``<metric>/<key>``, ``<metric>``, ``patterns``); ``store``: resume this store (its placeholders
    already filled) instead of the config's."""
    with _run(config, store) as (cfg, run_id):
        store_uri = plan_dataset(cfg, overwrite or [], run_id)
        if needs_patterns(RunConfig.model_validate(cfg)):  # a pattern method without patterns learns them first
            learn_patterns_task(cfg, store_uri, show_progress)
        attributed = attribute_dataset(cfg, store_uri, show_progress)
        evaluated = evaluate_dataset(cfg, store_uri, show_progress) if cfg["metrics"] else {"jobs": 0}
        drift = compare_to_earlier(cfg, store_uri) if cfg["compare_to"] else None
        report = build_report(cfg, store_uri, drift)
        finish_run(cfg, store_uri)
    return {
        "store": store_uri,
        "report": report,
        "attribute": attributed,
        "evaluate": evaluated,
        "drift": drift,
        "compare_to": cfg["compare_to"],
    }


@flow(name="plan")
def plan(config: dict[str, Any] | str, overwrite: list[str] | None = None, store: str | None = None) -> str:
    with _run(config, store) as (cfg, run_id):
        return plan_dataset(cfg, overwrite or [], run_id)


@flow(name="learn-patterns")
def learn_patterns(
    config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None
) -> dict[str, Any]:
    """Learn PatternNet patterns for the run's model over its training data (resumable per shard)."""
    with _run(config, store) as (cfg, run_id):
        return learn_patterns_task(cfg, plan_dataset(cfg, [], run_id), show_progress)


@flow(name="attribute")
def attribute(config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None) -> dict[str, Any]:
    with _run(config, store) as (cfg, run_id):
        store_uri = plan_dataset(cfg, [], run_id)
        if needs_patterns(RunConfig.model_validate(cfg)):
            learn_patterns_task(cfg, store_uri, show_progress)
        return attribute_dataset(cfg, store_uri, show_progress)


@flow(name="evaluate")
def evaluate(config: dict[str, Any] | str, show_progress: bool = True, store: str | None = None) -> dict[str, Any]:
    with _run(config, store) as (cfg, run_id):
        return evaluate_dataset(cfg, plan_dataset(cfg, [], run_id), show_progress)


@flow(name="report")
def report(config: dict[str, Any] | str, store: str | None = None) -> str:
    with _run(config, store) as (cfg, run_id):
        store_uri = plan_dataset(cfg, [], run_id)
        drift = compare_to_earlier(cfg, store_uri) if cfg["compare_to"] else None
        return build_report(cfg, store_uri, drift)
