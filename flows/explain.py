"""The pipeline as Prefect flows: plan -> [learn patterns] -> attribute -> evaluate -> report.

``explain`` runs every stage; each stage also has a flow of its own. Every stage is idempotent:
re-running skips what the store already marks done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from pathatlas.attribution.run.config import RunConfig, load_config, parse_config
from pathatlas.attribution.run.plan import needs_patterns
from pathatlas.tasks.attribute import attribute_dataset
from pathatlas.tasks.data import plan_dataset
from pathatlas.tasks.evaluate import evaluate_dataset
from pathatlas.tasks.patterns import learn_patterns_task
from pathatlas.tasks.report import build_report


def _config(config: dict[str, Any] | str) -> dict[str, Any]:
    """A validated config as a JSON-ready dict, from a dict or a YAML path."""
    cfg: RunConfig = load_config(config) if isinstance(config, (str, Path)) else parse_config(config)
    return cfg.model_dump(mode="json")


@flow(name="explain", log_prints=True)
def explain(config: dict[str, Any] | str, show_progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline for a run config (a dict or a YAML path); return the store and report paths."""
    cfg = _config(config)
    store_uri = plan_dataset(cfg)
    if needs_patterns(RunConfig.model_validate(cfg)):  # a pattern method without patterns learns them first
        learn_patterns_task(cfg, store_uri, show_progress)
    attributed = attribute_dataset(cfg, store_uri, show_progress)
    evaluated = evaluate_dataset(cfg, store_uri, show_progress) if cfg["metrics"] else {"jobs": 0}
    report = build_report(cfg, store_uri)
    return {"store": store_uri, "report": report, "attribute": attributed, "evaluate": evaluated}


@flow(name="plan")
def plan(config: dict[str, Any] | str) -> str:
    return plan_dataset(_config(config))


@flow(name="learn-patterns")
def learn_patterns(config: dict[str, Any] | str, show_progress: bool = True) -> dict[str, Any]:
    """Learn PatternNet patterns for the run's model over its training data (resumable per shard)."""
    cfg = _config(config)
    return learn_patterns_task(cfg, plan_dataset(cfg), show_progress)


@flow(name="attribute")
def attribute(config: dict[str, Any] | str, show_progress: bool = True) -> dict[str, Any]:
    cfg = _config(config)
    store_uri = plan_dataset(cfg)
    if needs_patterns(RunConfig.model_validate(cfg)):
        learn_patterns_task(cfg, store_uri, show_progress)
    return attribute_dataset(cfg, store_uri, show_progress)


@flow(name="evaluate")
def evaluate(config: dict[str, Any] | str, show_progress: bool = True) -> dict[str, Any]:
    cfg = _config(config)
    return evaluate_dataset(cfg, cfg["store"]["uri"], show_progress)


@flow(name="report")
def report(config: dict[str, Any] | str) -> str:
    cfg = _config(config)
    return build_report(cfg, cfg["store"]["uri"])
