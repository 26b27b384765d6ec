"""Before a stage fans out over a Ray cluster: can every node see the run's files?

A config's local paths (made absolute by the driver) must exist on every node that may run an
actor; otherwise the first actor on a node without them fails deep inside a stage. One tiny task
pinned to each alive node checks them all at once, so the error names each node and path.
"""

from __future__ import annotations

from pathatlas.attribution.run.config import RunConfig
from pathatlas.attribution.run.paths import cluster_paths, missing_paths
from pathatlas.tasks.ray_pool import ComputeError, connect

PROBE_TIMEOUT_S = 60.0


def check_cluster_paths(cfg: RunConfig) -> None:
    """Raise :class:`ComputeError` naming every (node, config key, path) that a node of the Ray
    cluster at ``compute.ray_address`` cannot see. Nothing to check without a cluster address."""
    if not cfg.compute.ray_address:
        return
    paths = cluster_paths(cfg)
    if not paths:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    connect(cfg.compute)
    probe = ray.remote(num_cpus=0)(missing_paths)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths): n
        for n in nodes
    }
    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    problems = [
        f"node {refs[ref]['NodeManagerAddress']} ({refs[ref]['NodeManagerHostname']}) cannot see {line}"
        for ref in ready
        for line in ray.get(ref)
    ]
    problems += [
        f"node {refs[ref]['NodeManagerAddress']} did not answer within {PROBE_TIMEOUT_S:.0f} s" for ref in pending
    ]
    if problems:
        raise ComputeError(
            "the run's files must be at the same absolute path on every node of the Ray cluster "
            "(a shared filesystem, or copies), or the store on object storage (s3://...):\n  - "
            + "\n  - ".join(problems)
        )
