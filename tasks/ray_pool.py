"""Ray plumbing: connect (or start a local Ray), size an actor pool, stream shards through it.

Actors wrap :class:`attribution.worker.ShardWorker`, which loads the model once. GPU actors take
``num_gpus`` each; without a GPU the same actors run on CPU, and asking for GPUs where Ray sees
none fails at once (Ray itself would leave the actor pending forever, pipeline.md §3.3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from attribution.config import ComputeConfig


class ComputeError(RuntimeError):
    """The requested compute cannot be had on this Ray cluster."""


@dataclass(frozen=True)
class PoolPlan:
    n_actors: int
    device: str
    options: dict[str, Any]


def connect(compute: ComputeConfig) -> None:
    """Attach to ``compute.ray_address``, or start a small local Ray sized to this machine."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if compute.ray_address:
        ray.init(address=compute.ray_address, log_to_driver=False)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance: no token files
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=compute.object_store_mb * 2**20,
        log_to_driver=False,
    )


def plan_pool(compute: ComputeConfig, n_jobs: int) -> PoolPlan:
    """Decide actor count, device and Ray options from what the cluster really has."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if compute.device == "cuda" and gpus <= 0:
        raise ComputeError(
            "compute.device is 'cuda' but the Ray cluster has no GPU "
            f"(resources: {int(cpus)} CPUs, 0 GPUs); use device 'auto' or 'cpu', or point ray_address at a GPU cluster"
        )
    if gpus > 0 and compute.device != "cpu":
        fit = int(gpus // compute.gpus_per_actor)
        if fit < 1:
            raise ComputeError(f"gpus_per_actor={compute.gpus_per_actor} but the cluster has only {gpus:g} GPU(s)")
        n = min(compute.n_actors or fit, fit)
        opts = {"num_gpus": compute.gpus_per_actor, "num_cpus": compute.cpus_per_actor}
        device = "cuda"
    else:
        fit = int(cpus // compute.cpus_per_actor)
        if fit < 1:
            raise ComputeError(f"cpus_per_actor={compute.cpus_per_actor} but the cluster has only {cpus:g} CPU(s)")
        n = min(compute.n_actors or min(2, fit), fit)
        # A num_gpus=0 actor on a GPU node still sees the GPU unless it is hidden (pipeline.md §3.3).
        opts = {"num_gpus": 0, "num_cpus": compute.cpus_per_actor,
                "runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}
        device = "cpu"
    return PoolPlan(n_actors=max(1, min(n, n_jobs)), device=device, options=opts)


def run_pool(
    config: dict,
    store_uri: str,
    compute: ComputeConfig,
    method: str,
    jobs: list[tuple],
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``ShardWorker.<method>(*job)`` for every job on a pool of actors; return the results.

    The actors write to the store themselves; only small summaries come back.
    """
    import ray
    from ray.util import ActorPool

    from attribution.worker import ShardWorker

    if not jobs:
        return []
    connect(compute)
    plan = plan_pool(compute, len(jobs))
    remote = ray.remote(ShardWorker)
    actors = [remote.options(**plan.options).remote(config, store_uri, plan.device) for _ in range(plan.n_actors)]
    results: list[dict] = []
    try:
        pool = ActorPool(actors)
        for result in pool.map_unordered(lambda a, job: getattr(a, method).remote(*job), jobs):
            results.append(result)
            if on_result is not None:
                on_result(result)
    except ray.exceptions.RayActorError as exc:
        raise ComputeError(f"a worker died while running {method}: {exc}") from exc
    finally:
        for actor in actors:
            ray.kill(actor)
    return results


def progress(total: int, description: str) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """A rich progress bar over ``total`` shards: ``(advance, close)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
    task_id = bar.add_task(description, total=total)
    bar.start()
    return (lambda _result: bar.advance(task_id)), bar.stop

