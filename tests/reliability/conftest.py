"""Fixtures for the reliability tests: a real multi-node Ray cluster on this machine, and the
local Ray of the rest of the suite given back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathatlas.attribution.run.processes import proc_stat

# The rest of the suite's local Ray (tests/conftest.py ``ray_local``), restarted after a module
# that replaced it with a cluster.
LOCAL_RAY = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "object_store_memory": 150 * 2**20,
    "log_to_driver": False,
}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


class TwoNodes:
    """A :class:`ray.cluster_utils.Cluster` with a head node and one worker node (one CPU each),
    the driver connected to it."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
        self.worker = self.cluster.add_node(**NODE)

    def connect(self) -> None:
        import ray

        ray.init(address=self.cluster.address, log_to_driver=False)

    def ensure_two_nodes(self, timeout: float = 60) -> None:
        """Add the worker node back if a test removed it."""
        if not self.cluster.worker_nodes:
            self.worker = self.cluster.add_node(**NODE)
        self.cluster.wait_for_nodes(timeout=timeout)

    def remove_worker(self) -> None:
        self.cluster.remove_node(self.worker, allow_graceful=False)

    def raylet_pids(self) -> set[int]:
        from ray._private import ray_constants

        nodes = [self.cluster.head_node, *self.cluster.worker_nodes]
        return {
            info.process.pid for node in nodes for info in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])
        }

    def shutdown(self) -> None:
        self.cluster.shutdown()


def processes_named(prefix: str, parents: set[int]) -> list[int]:
    """Pids of the children of ``parents`` whose command line starts with ``prefix`` (e.g. Ray's
    ``ray::PoolWorker`` process titles), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        stat = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is None or stat[1] not in parents:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if cmdline.startswith(prefix):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    """A two-node Ray cluster for one test module. Whatever Ray the session had is stopped first
    and a local one like ``ray_local``'s is started again afterwards, so test order does not matter."""
    import ray

    had_local = ray.is_initialized()
    ray.shutdown()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = TwoNodes()
    try:
        cluster.connect()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_local:
            ray.init(**LOCAL_RAY)
