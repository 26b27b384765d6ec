"""Report stage: read the store, write ``report.html`` and publish its tables as Prefect artifacts."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.report import collect_report_data, markdown_tables, write_report
from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.store import RunStore


@task(name="build-report", cache_policy=NO_CACHE)
def build_report(config: dict, store_uri: str) -> str:
    """Write the run's HTML report; return its path."""
    cfg = RunConfig.model_validate(config)
    store = RunStore.open(store_uri, cfg.store.storage_options)
    data = collect_report_data(store, cfg)
    path = write_report(data, cfg.report_path)
    slug = cfg.name.lower().replace("_", "-").replace(".", "-")
    for name, markdown in markdown_tables(data).items():
        create_markdown_artifact(
            key=f"{slug}-{name}", markdown=markdown, description=f"pathatlas run {cfg.name}: {name}"
        )
    return str(path)
