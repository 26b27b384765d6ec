"""The whole pipeline on 16 synthetic images: real Prefect flow runs, real local Ray, real Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import prepare_maps
from pathatlas.attribution.run.store import RunStore
from pathatlas.attribution.run.worker import ShardWorker
from tests.flows.conftest import small_config

pytestmark = [pytest.mark.flow, pytest.mark.ray]


def _artifact_keys() -> set[str]:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    return asyncio.run(read())


def _chunk_mtimes(store_path: Path, key: str) -> dict[str, int]:
    root = store_path / "maps" / key / "c"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_explain_end_to_end(prefect_harness, ray_local, tmp_path, config):
    from pathatlas.flows.explain import explain

    result = explain(config, show_progress=False)
    profile = result["attribute"].pop("profile")  # the workers' time, summed over actors
    assert result["attribute"] == {"jobs": 4, "skipped_shards": 0, "failed_samples": 0}
    assert set(profile) == {"active_s", "load_wait_s", "explain_s", "write_s", "write_wait_s"}
    assert profile["active_s"] > profile["explain_s"] > 0 and profile["write_s"] > 0

    g = zarr.open_group(config["store"]["uri"], mode="r")  # plain zarr reads it
    for key in ("gradient", "ig"):
        assert g[f"done/{key}"][:].tolist() == [1, 1, 1, 1]
        maps = g[f"maps/{key}"][:]
        assert maps.shape == (16, 48, 48) and np.isfinite(maps).all()
        assert g[f"maps/{key}"].attrs["method"]["method"] in ("gradient", "integrated_gradients")
    rel = g["diagnostics/ig/relative_residual"][:]
    assert np.isfinite(rel).all() and np.median(rel) < 0.05
    assert (g["samples/target"][:] >= 0).all() and np.isfinite(g["samples/probability"][:]).all()
    meta = g.attrs["pathatlas"]
    assert meta["config"]["name"] == "flowtest" and len(meta["model_hash"]) == 64 and "torch" in meta["versions"]
    morf = g["scores/degradation/ig/morf"][:]
    assert morf.shape == (16, 37) and np.isfinite(morf).all()
    assert g["scores/degradation/ig/done"][:].tolist() == [1, 1, 1, 1]

    html = Path(result["report"]).read_text()
    assert "ig" in html and "gradient" in html and "data:image/png;base64," in html
    assert {"flowtest-scores", "flowtest-run-level", "flowtest-paired", "flowtest-report"} <= _artifact_keys()

    # others read the finished store with xarray alone: maps and scores by sample id
    import xarray as xr

    tree = xr.open_datatree(config["store"]["uri"], engine="zarr")
    first = str(g["sample"][0])
    np.testing.assert_array_equal(tree["maps"]["ig"].sel(sample=first).values, g["maps/ig"][0])
    assert tree["scores/degradation/ig"]["morf"].dims == ("sample", "step")

    # A second run finds everything done and computes nothing.
    again = explain(config, show_progress=False)
    assert again["attribute"] == {"jobs": 0, "skipped_shards": 4, "failed_samples": 0, "profile": {}}
    assert again["evaluate"]["jobs"] == 0


def test_resume_computes_only_missing_shards(prefect_harness, ray_local, tmp_path):
    from pathatlas.flows.explain import attribute, plan

    cfg = small_config(tmp_path)
    store_path = Path(cfg["store"]["uri"])
    plan(cfg)
    # A run that died after two shards: their maps and flags are in the store, the rest is not.
    prepare_maps(parse_config(cfg), RunStore.open(str(store_path)))  # as the attribute stage does first
    worker = ShardWorker(parse_config(cfg), str(store_path))
    for shard in (0, 2):
        worker.attribute_shard(shard, ["gradient", "ig"])
    worker.flush()
    before = _chunk_mtimes(store_path, "ig")
    partial = RunStore.open(str(store_path)).maps("ig")

    result = attribute(cfg, show_progress=False)
    assert {k: v for k, v in result.items() if k != "profile"} == {"jobs": 2, "skipped_shards": 2, "failed_samples": 0}
    after = _chunk_mtimes(store_path, "ig")
    assert all(after[k] == v for k, v in before.items()), "a finished shard was written again"
    resumed = RunStore.open(str(store_path)).maps("ig")
    np.testing.assert_array_equal(resumed[:4], partial[:4])
    np.testing.assert_array_equal(resumed[8:12], partial[8:12])

    # Same maps as an uninterrupted run.
    fresh_cfg = small_config(tmp_path / "fresh")
    attribute(fresh_cfg, show_progress=False)
    fresh = RunStore.open(fresh_cfg["store"]["uri"]).maps("ig")
    np.testing.assert_allclose(resumed, fresh, rtol=1e-5, atol=1e-6)
    assert RunStore.open(str(store_path)).status()["ig"] == {"done": 16, "failed": 0, "pending": 0}


def test_gpu_request_without_gpu_fails_fast(ray_local):
    from pathatlas.tasks.ray_pool import ComputeError, plan_pool

    compute = parse_config(small_config(Path("/tmp"), compute={"device": "cuda"})).compute
    if ray_local.cluster_resources().get("GPU", 0):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ComputeError, match="compute.device is 'cuda' but the Ray cluster has no GPU"):
        plan_pool(compute, n_jobs=4)
    cpu = plan_pool(parse_config(small_config(Path("/tmp"))).compute, n_jobs=4)
    assert cpu.device == "cpu" and cpu.options["num_gpus"] == 0 and cpu.cpus == 1
    assert cpu.options["runtime_env"]["env_vars"]["CUDA_VISIBLE_DEVICES"] == ""


def test_gpu_actors_decode_with_their_share_of_the_node():
    from pathatlas.tasks.ray_pool import cores_per_gpu_actor

    nodes = [
        {"Alive": True, "Resources": {"CPU": 64.0}},  # a CPU-only head node does not count
        {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
        {"Alive": True, "Resources": {"CPU": 48.0, "GPU": 4.0}},
        {"Alive": False, "Resources": {"CPU": 2.0, "GPU": 8.0}},  # a dead node neither
    ]
    assert cores_per_gpu_actor(nodes, 1.0) == 8  # min(16 / 2, 48 / 4)
    assert cores_per_gpu_actor(nodes, 2.0) == 16  # min(16 / 1, 48 / 2)
    assert cores_per_gpu_actor([{"Alive": True, "Resources": {"CPU": 1.0}}], 1.0) == 1


def test_the_store_refuses_a_different_dataset(prefect_harness, tmp_path):
    from pathatlas.flows.explain import plan

    plan(small_config(tmp_path))
    with pytest.raises(ValueError, match="already holds a different plan"):
        plan(small_config(tmp_path, n_samples=12))
