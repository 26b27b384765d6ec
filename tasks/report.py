"""Report stage: read the store, write ``report.html`` and publish its tables as Prefect artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.report import ReportSection, collect_report_data, markdown_tables, write_report
from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.secrets import resolved
from pathatlas.attribution.run.store import RunStore


def artifact_slug(cfg: RunConfig) -> str:
    """The run name as a Prefect artifact key prefix (lower case, dashes)."""
    return cfg.name.lower().replace("_", "-").replace(".", "-")


@task(name="build-report", cache_policy=NO_CACHE)
def build_report(config: dict, store_uri: str, drift: dict | None = None) -> str:
    """Write the run's HTML report (with the drift section when ``drift`` is given); return its path.

    Its tables become keyed Prefect artifacts (one key per table and run name, so the UI keeps
    their history across scheduled runs), and a link artifact points at the report."""
    cfg = RunConfig.model_validate(config)
    # the stages before have ended and consolidated the metadata: one read instead of one per array
    store = RunStore.open(store_uri, cfg.store.storage_options, mode="r", consolidated=True)
    data = collect_report_data(store, cfg)
    sections = []
    if drift is not None:
        sections.append(ReportSection(f"Drift against {drift['against']}", drift["section"], "drift"))
    # a remote store's report goes beside it, written with the store's options
    path = write_report(data, cfg.report_path, sections, resolved(cfg.store.storage_options))
    slug = artifact_slug(cfg)
    for name, markdown in markdown_tables(data).items():
        create_markdown_artifact(
            key=f"{slug}-{name}", markdown=markdown, description=f"pathatlas run {cfg.name}: {name}"
        )
    link = str(path) if "://" in str(path) else Path(path).resolve().as_uri()
    create_link_artifact(key=f"{slug}-report", link=link, link_text=f"report of {store_uri}")
    return str(path)
