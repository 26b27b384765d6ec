"""Plan stage: list the dataset's samples and create (or reopen) the run store."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.plan import plan_store


@task(name="plan-dataset", cache_policy=NO_CACHE)
def plan_dataset(config: dict) -> str:
    """Create the store's ``/samples`` plan and provenance (resuming a store of the same plan);
    return the store URI."""
    return plan_store(RunConfig.model_validate(config)).uri
