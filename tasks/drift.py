"""Drift stage: compare this run's store with an earlier one (``compare_to``) sample by sample."""

from __future__ import annotations

from html import escape
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.drift import compare_stores, drift_section, write_drift_json, write_drift_page
from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.secrets import resolved
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.report import artifact_slug


def beside(location: str, name: str) -> str:
    """``name`` in the folder of ``location``, a local path or a URL."""
    if "://" in location:
        return f"{location.rpartition('/')[0]}/{name}"
    return str(Path(location).parent / name)


@task(name="compare-to-earlier", cache_policy=NO_CACHE)
def compare_to_earlier(config: dict, store_uri: str) -> dict | None:
    """Compare with ``compare_to`` (an earlier store; ``None``: the first audit has nothing to
    compare with); write ``drift.html`` and ``drift.json`` beside the report. Returns
    ``{"against", "html", "json", "section", "lowest"}`` (``section``: the report's drift section),
    or ``{"against", "error", "section"}`` when that store cannot be compared (gone, other samples)."""
    cfg = RunConfig.model_validate(config)
    logger = get_run_logger()
    if not cfg.compare_to:
        logger.info("drift: no earlier store to compare with")
        return None
    options = cfg.store.storage_options
    try:
        drift = compare_stores(
            # both complete as far as this comparison goes: read from their consolidated metadata
            RunStore.open(cfg.compare_to, options, mode="r", consolidated=True),
            RunStore.open(store_uri, options, mode="r", consolidated=True),
            intersect=True,
        )
    except (FileNotFoundError, ValueError) as exc:  # an audit is not lost because its predecessor is
        logger.warning("drift: cannot compare with %s: %s", cfg.compare_to, exc)
        return {"against": cfg.compare_to, "error": str(exc), "section": f"<p>Not compared: {escape(str(exc))}</p>"}
    html, json_path = beside(cfg.report_path, "drift.html"), beside(cfg.report_path, "drift.json")
    written = resolved(options)  # a remote report's folder is written with the store's options
    write_drift_page(drift, html, written)
    write_drift_json(drift, json_path, written)
    method, rho = drift.min_median_spearman()
    logger.info("drift against %s: lowest median Spearman %.3f (%s)", cfg.compare_to, rho, method)
    create_markdown_artifact(
        key=f"{artifact_slug(cfg)}-drift",
        markdown=f"Drift against `{cfg.compare_to}`: lowest median Spearman **{rho:.3f}** ({method}).",
        description=f"pathatlas run {cfg.name}: drift against the previous audit",
    )
    return {
        "against": cfg.compare_to,
        "html": str(html),
        "json": str(json_path),
        "section": drift_section(drift, heading=False),
        "lowest": {"method": method, "median_spearman": rho},
    }
