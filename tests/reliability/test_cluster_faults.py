"""Real faults on a real two-node Ray cluster: the stages survive a lost node and a killed actor
process and still write exactly what a clean local run writes; a busy cluster fails fast with the
resources it lacks; a shard that kills its worker every time is quarantined in /failures while
the other shards complete.

The stages are driven at the task level (``attribute_dataset.fn`` inside a small flow, for its
run logger) over small synthetic stores, so the module takes about a minute and a half.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from prefect import flow

from benchmarks.store_digest import digests
from pathatlas.attribution.data.synthetic import SyntheticConfig, SyntheticDataset
from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import plan_store
from pathatlas.attribution.run.store import RunStore
from pathatlas.tasks.attribute import attribute_dataset
from pathatlas.tasks.evaluate import evaluate_dataset
from pathatlas.tasks.ray_pool import ComputeError
from tests.flows.conftest import small_config
from tests.reliability.conftest import TwoNodes, processes_named

pytestmark = [pytest.mark.slow]

N_SAMPLES, SHARD, SIZE = 32, 4, 32  # 8 shards of 4 images of 32 px
KEYS = ("gradient", "ig")
DELAY_S = 0.15  # per gradient forward: a shard takes ~0.5-1 s, so faults land mid-stage
STAGE_TIMEOUT_S = 120  # a stage that has not finished by then has hung


def run_config(tmp_path, name: str, **model_kwargs) -> dict:
    cfg = small_config(
        tmp_path / name,
        n_samples=N_SAMPLES,
        shard_size=SHARD,
        dataset={"kind": "synthetic", "n_samples": N_SAMPLES, "image_size": SIZE, "seed": 7},
        model={
            "kind": "entrypoint",
            "entrypoint": "tests.reliability.models:faulty_demo",
            "kwargs": {"delay_s": DELAY_S, **model_kwargs},
        },
        preprocess={"mean": None, "std": None},  # the demo CNN normalises inside
        methods=[{"name": "gradient"}, {"name": "integrated_gradients", "key": "ig", "settings": {"n_steps": 8}}],
    )
    cfg["compute"] = {"n_actors": 2, "device": "cpu", "placement_timeout_s": 20}
    plan_store(parse_config(cfg))
    return cfg


STAGES = {"attribute": attribute_dataset, "evaluate": evaluate_dataset}


@flow(name="reliability-stage")
def stage(name: str, cfg: dict) -> dict:
    """One stage's task body, run inside a flow (for its run logger) without Prefect's retries."""
    return STAGES[name].fn(cfg, cfg["store"]["uri"], show_progress=False)


def attribute(cfg: dict) -> dict:
    return stage("attribute", cfg)


def evaluate(cfg: dict) -> dict:
    return stage("evaluate", cfg)


def snapshot(uri: str) -> dict:
    """Everything two runs must agree on: map and score bytes, done flags, failure records, targets."""
    store = RunStore.open(uri, mode="r")
    out: dict = {"digests": digests(uri), "failures": store.failures(), "targets": store.targets().tolist()}
    for key in store.method_keys():
        out[f"done/{key}"] = store.maps_done(key).tolist()
        for metric in store.metric_names():
            out[f"scored/{metric}/{key}"] = store.scores_done(metric, key).tolist()
    return out


def when_done(uri: str, key: str, n: int, action: Callable[[], None], timeout: float = 60) -> threading.Thread:
    """Start a thread that runs ``action`` once ``n`` shards of ``key`` are done (polled every 0.1 s);
    its ``.fired`` holds how many shards were done then (None if it timed out)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                done = int(RunStore.open(uri, mode="r").maps_done(key).sum())
            except ValueError:  # no flag written yet (reading would create the array)
                done = 0
            if done >= n:
                thread.fired = done  # type: ignore[attr-defined]
                action()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.fired = None  # type: ignore[attr-defined]
    thread.start()
    return thread


@pytest.fixture(scope="module")
def reference(ray_local, prefect_harness, tmp_path_factory) -> dict:
    """A clean run (attribute + evaluate) on the suite's single-node local Ray."""
    cfg = run_config(tmp_path_factory.mktemp("reference"), "clean")
    attribute(cfg)
    evaluate(cfg)
    return snapshot(cfg["store"]["uri"])


@pytest.fixture(scope="module")
def cluster(reference, two_nodes: TwoNodes) -> TwoNodes:  # after the reference: that uses the local Ray
    return two_nodes


@pytest.fixture
def nodes(cluster: TwoNodes) -> TwoNodes:
    cluster.ensure_two_nodes()
    return cluster


def test_a_two_node_run_equals_a_local_run(nodes, reference, tmp_path):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    cfg = run_config(tmp_path, "two-nodes")
    assert attribute(cfg)["failed_samples"] == 0
    evaluate(cfg)
    assert snapshot(cfg["store"]["uri"]) == reference


def test_a_node_removed_mid_stage(nodes, reference, tmp_path, caplog):
    cfg = run_config(tmp_path, "node-lost")
    uri = cfg["store"]["uri"]
    watcher = when_done(uri, "ig", 2, nodes.remove_worker)
    attribute(cfg)
    watcher.join(timeout=5)
    assert watcher.fired is not None and watcher.fired < N_SAMPLES // SHARD, "the node was not removed mid-stage"
    assert re.search(r"pool attribute_shard: actor \d+ lost", caplog.text), "the pool did not lose an actor"
    evaluate(cfg)  # on the one node left
    assert snapshot(uri) == reference


def test_an_actor_process_killed_mid_stage(nodes, reference, tmp_path, caplog):
    cfg = run_config(tmp_path, "actor-killed")
    uri = cfg["store"]["uri"]
    killed: list[int] = []

    def kill_one_actor() -> None:
        pids = processes_named("ray::PoolWorker", nodes.raylet_pids())
        assert pids, "no pool actor process found"
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    watcher = when_done(uri, "ig", 2, kill_one_actor)
    attribute(cfg)
    watcher.join(timeout=5)
    assert killed and watcher.fired < N_SAMPLES // SHARD, "no actor was killed mid-stage"
    assert re.search(r"pool attribute_shard: actor \d+ lost", caplog.text), "the pool did not lose an actor"
    evaluate(cfg)
    assert snapshot(uri) == reference


def test_a_busy_cluster_fails_fast_naming_what_is_missing(nodes, tmp_path):
    import ray

    @ray.remote(num_cpus=1)
    class Holder:  # another job's actor, holding a CPU
        def ping(self) -> int:
            return 1

    holders = [Holder.remote() for _ in range(2)]
    ray.get([h.ping.remote() for h in holders], timeout=60)
    try:
        cfg = run_config(tmp_path, "busy")
        cfg["compute"]["placement_timeout_s"] = 3
        started = time.monotonic()
        with pytest.raises(ComputeError) as err:
            attribute(cfg)
        elapsed = time.monotonic() - started
    finally:
        for h in holders:
            ray.kill(h)
    message = str(err.value)
    assert "could be placed within compute.placement_timeout_s=3 s" in message, message
    assert "an actor needs 1 CPU" in message and "2 CPUs in total, 0 available" in message, message
    assert elapsed < 3 + 20, f"took {elapsed:.1f} s"


def test_a_shard_that_kills_its_actor_every_time_is_quarantined(nodes, tmp_path):
    killer = 9  # shard 2 holds samples 8-11
    pixel = SyntheticDataset(SyntheticConfig(n_samples=N_SAMPLES, image_size=SIZE, seed=7)).load(killer).image[:, 0, 0]
    cfg = run_config(tmp_path, "killer", kill_pixel=[float(v) for v in pixel])
    cfg["compute"]["max_attempts"] = 2
    uri = cfg["store"]["uri"]
    for _ in range(2):  # a re-run tries the shard again and replaces its records, never duplicates them
        result = attribute(cfg)
        assert result["failed_samples"] == SHARD
        store = RunStore.open(uri, mode="r")
        for key in KEYS:
            done = store.maps_done(key)
            assert not done[2] and done[[0, 1, 3, 4, 5, 6, 7]].all(), done
        records = store.failures()
        assert sorted((r["method"], r["sample_index"]) for r in records) == [
            (key, i) for key in sorted(KEYS) for i in range(8, 12)
        ]
        ids = store.sample_ids()
        for r in records:
            assert r["stage"] == "attribute" and r["sample_id"] == ids[r["sample_index"]] and r["attempts"] == 2
            # the call in flight when the process died: unavailable (Ray restarts it) or died
            assert re.search(r"gave up after 2 tries, the last: Actor(Unavailable|Died)Error", r["error"]), r["error"]
    assert np.isnan(RunStore.open(uri, mode="r").maps("gradient")[8:12]).all()  # nothing written for it


def test_a_relative_store_with_a_ray_address_is_the_same_store_on_both_nodes(nodes, tmp_path, monkeypatch):
    """The whole flow with ``store.uri: runs/store.zarr`` and a cluster address: the driver makes
    the path absolute before any actor (started in its node's own working directory) sees it."""
    import ray

    from pathatlas.flows.explain import explain

    monkeypatch.chdir(tmp_path)
    cfg = small_config(tmp_path, n_samples=8, shard_size=2, metrics=[])
    cfg["dataset"]["image_size"] = SIZE
    cfg["store"]["uri"], cfg["report"]["path"] = "runs/store.zarr", "runs/report.html"
    cfg["compute"] = {"ray_address": nodes.cluster.address, "n_actors": 2, "device": "cpu"}
    result = explain(cfg, show_progress=False)
    assert result["store"] == str(tmp_path / "runs" / "store.zarr")
    store = RunStore.open(result["store"], mode="r")
    assert all(store.maps_done(key).all() for key in KEYS)
    assert (tmp_path / "runs" / "report.html").is_file()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2


def test_files_a_node_cannot_see_are_named_per_node(nodes, tmp_path):
    from pathatlas.attribution.run.paths import absolute_paths
    from pathatlas.tasks.cluster import check_cluster_paths

    cfg = small_config(tmp_path, model={"kind": "torchvision", "arch": "resnet18", "weights": "models/r18.pth"})
    cfg["compute"] = {"ray_address": nodes.cluster.address}
    with pytest.raises(ComputeError) as err:
        check_cluster_paths(absolute_paths(parse_config(cfg), base=str(tmp_path)))
    lines = [line for line in str(err.value).splitlines() if "cannot see model.weights" in line]
    assert len(lines) == 2 and all(str(tmp_path / "models" / "r18.pth") in line for line in lines), str(err.value)
    assert "same absolute path on every node" in str(err.value)
