"""Report stage: read the store, write ``report.html`` and publish its tables as Prefect artifacts."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from attribution.config import RunConfig
from attribution.report import write_report
from attribution.report_data import collect_report_data, markdown_paired, markdown_run_level, markdown_table
from attribution.store import RunStore


@task(name="build-report", cache_policy=NO_CACHE)
def build_report(config: dict, store_uri: str) -> str:
    """Write the run's HTML report; return its path."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    data = collect_report_data(store, cfg)
    path = write_report(data, cfg.report_path)
    slug = cfg.name.lower().replace("_", "-").replace(".", "-")
    tables = (("scores", markdown_table(data)), ("run-level", markdown_run_level(data)), ("paired", markdown_paired(data)))
    for name, markdown in tables:
        create_markdown_artifact(key=f"{slug}-{name}", markdown=markdown, description=f"pathatlas run {cfg.name}: {name}")
    return str(path)
