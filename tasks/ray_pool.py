"""Ray plumbing: connect (or start a local Ray), size an actor pool, stream shards through it.

Actors wrap :class:`pathatlas.attribution.run.worker.ShardWorker`, which loads the model once.
GPU actors take ``num_gpus`` each; without a GPU the same actors run on CPU, and asking for GPUs
where Ray sees none fails at once (Ray itself would leave the actor pending forever).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pathatlas.attribution.run.config import ComputeConfig


class ComputeError(RuntimeError):
    """The requested compute cannot be had on this Ray cluster."""


@dataclass(frozen=True)
class PoolPlan:
    n_actors: int
    device: str
    cpus: int  # cores per actor for decoding: its sample loader gets two threads per core
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
        n = max(1, min(compute.n_actors or fit, fit, n_jobs))
        # A GPU actor decodes its own images: its loader may use its node's cores shared among the
        # node's GPU actors, but it reserves only cpus_per_actor (default 1) so it is always schedulable.
        per_actor = compute.cpus_per_actor or cores_per_gpu_actor(ray.nodes(), compute.gpus_per_actor)
        opts = {"num_gpus": compute.gpus_per_actor, "num_cpus": compute.cpus_per_actor or 1}
        device = "cuda"
    else:
        per_actor = compute.cpus_per_actor or 1
        fit = int(cpus // per_actor)
        if fit < 1:
            raise ComputeError(f"cpus_per_actor={per_actor} but the cluster has only {cpus:g} CPU(s)")
        n = max(1, min(compute.n_actors or min(2, fit), fit, n_jobs))
        # A num_gpus=0 actor on a GPU node still sees the GPU unless it is hidden.
        opts = {"num_gpus": 0, "num_cpus": per_actor, "runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}
        device = "cpu"
    return PoolPlan(n_actors=n, device=device, cpus=per_actor, options=opts)


def cores_per_gpu_actor(nodes: list[dict], gpus_per_actor: float) -> int:
    """The fewest CPU cores any GPU node (``ray.nodes()`` entries) has per GPU actor it can hold (at least 1)."""
    shares = []
    for node in nodes:
        res = node.get("Resources", {})
        if node.get("Alive") and res.get("GPU", 0) >= gpus_per_actor:
            shares.append(int(res.get("CPU", 1) // max(1, int(res["GPU"] // gpus_per_actor))))
    return max(1, min(shares, default=1))


@dataclass
class PoolRun:
    """What a pool run returns: one summary per job, and the workers' time profiles summed
    (seconds: ``active_s``, ``load_wait_s``, ``explain_s``, ``write_s``, ``write_wait_s``; see
    :meth:`pathatlas.attribution.run.worker.ShardWorker.flush`)."""

    results: list[dict] = field(default_factory=list)
    profile: dict[str, float] = field(default_factory=dict)


def run_pool(
    config: dict,
    store_uri: str,
    compute: ComputeConfig,
    method: str,
    jobs: list[tuple],
    on_result: Callable[[dict], None] | None = None,
    prefetch: bool = False,
) -> PoolRun:
    """Run ``ShardWorker.<method>(*job)`` for every job on a pool of actors, then flush them.

    The actors write to the store themselves; only small summaries come back. Jobs go to
    whichever actor is free, but each actor has its next job reserved as soon as it starts one;
    with ``prefetch`` the reserved job's shard (``job[0]``) is passed as ``prefetch=`` so the
    actor loads it while it computes.
    """
    import ray

    from pathatlas.attribution.run.worker import ShardWorker

    out = PoolRun()
    if not jobs:
        return out
    connect(compute)
    plan = plan_pool(compute, len(jobs))
    remote = ray.remote(ShardWorker)
    actors = [
        remote.options(**plan.options).remote(config, store_uri, plan.device, plan.cpus) for _ in range(plan.n_actors)
    ]
    queue = deque(jobs)
    reserved: dict[int, tuple | None] = {}
    running: dict[Any, int] = {}

    def start(a: int, job: tuple) -> None:
        reserved[a] = queue.popleft() if queue else None
        hint = {"prefetch": reserved[a][0] if reserved[a] is not None else None} if prefetch else {}
        running[getattr(actors[a], method).remote(*job, **hint)] = a

    try:
        for a in range(len(actors)):
            if queue:
                start(a, queue.popleft())
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            a = running.pop(ref)
            out.results.append(ray.get(ref))
            if on_result is not None:
                on_result(out.results[-1])
            if reserved.get(a) is not None:
                start(a, reserved[a])
        for profile in ray.get([actor.flush.remote() for actor in actors]):  # every write durable
            for name, seconds in profile.items():
                out.profile[name] = out.profile.get(name, 0.0) + seconds
        ray.get([actor.close.remote() for actor in actors])  # their loader and writer threads end
    except ray.exceptions.RayActorError as exc:
        raise ComputeError(f"a worker died while running {method}: {exc}") from exc
    finally:
        for actor in actors:
            ray.kill(actor)
    return out


def progress(total: int, description: str) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """A rich progress bar over ``total`` shards: ``(advance, close)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    task_id = bar.add_task(description, total=total)
    bar.start()
    return (lambda _result: bar.advance(task_id)), bar.stop
