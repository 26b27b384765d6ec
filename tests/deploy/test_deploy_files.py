"""The files under deploy/ can start what they say they start.

The Ray cluster file goes through Ray's own schema check; the KubeRay manifests, the Dockerfile
and prefect.yaml are checked for what makes them work together: one image and the installed Ray
version everywhere, credentials only from Kubernetes Secrets or the environment, a pull step that
resolves, progress visible at INFO, and run configs whose paths mean the same on every node.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from pathatlas.attribution.run.config import RunConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RAY_VERSION = version("ray")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- deploy/ray/cluster.yaml -------------------------------------------------------------------
def _cluster() -> dict:
    return _yaml(DEPLOY / "ray" / "cluster.yaml")


def test_cluster_yaml_passes_rays_schema_check():
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(_cluster())  # fills defaults, merges setup commands, node types
    validate_config(prepared)  # jsonschema against ray/autoscaler/ray-schema.json
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(prepared["provider"]["worker_ips"])
    assert prepared["head_setup_commands"] == prepared["worker_setup_commands"] == prepared["setup_commands"]


def test_cluster_yaml_starts_ray_from_the_venv_with_the_distributed_token():
    cluster = _cluster()
    mounts = cluster["file_mounts"]
    # Ray's default token path on each node gets the launching machine's token
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token"
    # the code: a `git archive` of one commit, unpacked and installed by the setup commands
    (archive_remote,) = [remote for remote, local in mounts.items() if local.endswith(".tar")]
    setup = " && ".join(cluster["setup_commands"])
    assert f"tar -xf {archive_remote} -C ~/pathatlas" in setup and "make -C ~/pathatlas install" in setup
    assert re.search(r"^install:", (REPO / "Makefile").read_text(), re.M)
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    ray_calls = [word for command in starts for word in shlex.split(command) if word.endswith("ray")]
    assert ray_calls and set(ray_calls) == {"~/pathatlas/.venv/bin/ray"}, ray_calls  # never the PATH's ray
    for command in starts:
        if " start " in command:
            assert "RAY_AUTH_MODE=token" in command, command
            # a Ray Client server needs ray[client] (grpcio), which the project does not install
            assert "ray-client-server-port" not in command, command


def test_ray_start_in_token_mode_refuses_without_the_token(tmp_path):
    """Why the token is a file mount: `ray start` never makes one, so a node without it cannot start."""
    head = next(c for c in _cluster()["head_start_ray_commands"] if " start " in c)
    argv = [w for w in shlex.split(head.split(";")[-1]) if "=" not in w or w.startswith("--")]
    argv[0] = str(Path(sys.executable).with_name("ray"))
    argv = [a for a in argv if not a.startswith("--autoscaling-config")]
    argv += ["--port=0", f"--temp-dir={tmp_path / 'ray'}", "--num-cpus=1"]
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    finally:  # had Ray started after all, stop what this test started (by PID: other Rays may run here)
        _kill_processes_with_home(tmp_path)
    assert result.returncode != 0
    assert "no authentication token was found" in result.stderr + result.stdout


def _kill_processes_with_home(home: Path) -> None:
    """SIGKILL every process whose environment has ``HOME=home`` (the ones a test started)."""
    marker = f"HOME={home}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), 9)
        except (OSError, ValueError):
            continue


# -- deploy/kuberay/*.yaml ---------------------------------------------------------------------
def _kuberay() -> dict[str, dict]:
    docs = [d for path in sorted((DEPLOY / "kuberay").glob("*.yaml")) for d in _docs(path)]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def _cluster_specs() -> list[tuple[str, dict]]:
    specs = []
    for name, doc in _kuberay().items():
        if doc["kind"] == "RayCluster":
            specs.append((name, doc["spec"]))
        elif doc["kind"] == "RayJob":
            specs.append((name, doc["spec"]["rayClusterSpec"]))
    return specs


def _pods(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, group["template"]["spec"]) for name, group in groups]


def test_kuberay_has_a_raycluster_and_a_rayjob_on_the_installed_ray():
    kinds = {doc["kind"]: doc for doc in _kuberay().values()}
    assert {"RayCluster", "RayJob"} <= set(kinds)
    for name, doc in _kuberay().items():
        if doc["kind"] in ("RayCluster", "RayJob"):
            assert doc["apiVersion"] == "ray.io/v1", name
    for name, spec in _cluster_specs():
        assert spec["rayVersion"] == RAY_VERSION, name  # the image's ray: pyproject's pin, installed here


def test_kuberay_pods_share_one_image_shm_tokens_and_secret_credentials():
    images = set()
    for name, spec in _cluster_specs():
        gpu_groups = 0
        for group, pod in _pods(spec):
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            (container,) = [c for c in pod["containers"] if c["name"].startswith("ray-")]
            images.add(container["image"])
            shm = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            assert shm and volumes[shm[0]["name"]] == {"name": shm[0]["name"], "emptyDir": {"medium": "Memory"}}
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["RAY_AUTH_MODE"].get("value") == "token", (name, group)
            for var in ("RAY_AUTH_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "value" not in env[var] and "secretKeyRef" in env[var]["valueFrom"], (name, group, var)
            limits = container["resources"]["limits"]
            if group != "head":
                gpu_groups += 1
                assert int(limits["nvidia.com/gpu"]) >= 1, (name, group)
        assert gpu_groups >= 1, name
    for doc in _kuberay().values():  # the RayJob's submitter runs `ray job submit` from the same image
        submitter = doc.get("spec", {}).get("submitterPodTemplate")
        if submitter:
            images.update(c["image"] for c in submitter["spec"]["containers"])
    assert len(images) == 1, images  # one Python and one Ray on every node


def test_rayjob_runs_pathatlas_on_a_config_that_validates_and_suits_a_cluster():
    kuberay = _kuberay()
    (job,) = [d for d in kuberay.values() if d["kind"] == "RayJob"]
    command = shlex.split(job["spec"]["entrypoint"])
    assert command[:2] == ["pathatlas", "run"]
    config_path = Path(command[2])
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    config_map = kuberay[f"ConfigMap/{volume['configMap']['name']}"]
    cfg = parse_config(yaml.safe_load(config_map["data"][config_path.name]), "rayjob run.yaml")
    assert cfg.compute.ray_address == "auto"
    assert cfg.store.uri.startswith("s3://")
    assert not any(k in cfg.store.storage_options for k in ("key", "secret", "token"))  # from the Secret
    mounted = [
        m["mountPath"] for _, pod in _pods(job["spec"]["rayClusterSpec"]) for m in pod["containers"][0]["volumeMounts"]
    ]
    for path in _local_paths(cfg):
        assert any(Path(path).is_relative_to(m) for m in mounted), f"{path} is on no volume of the pods"


# -- deploy/docker/Dockerfile ------------------------------------------------------------------
def _dockerfile() -> str:
    return (DEPLOY / "docker" / "Dockerfile").read_text()


def test_dockerfile_installs_the_project_and_runs_pathatlas():
    text = _dockerfile()
    instructions = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", text, flags=re.M))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", instructions, re.M))
    assert args["BASE"] == "python:3.11-slim" and re.search(r"^FROM \$\{BASE\}", instructions, re.M)
    assert args["TORCH_INDEX"].endswith("/whl/cpu")  # CPU wheels unless a CUDA index is given
    assert "--build-arg BASE=nvidia/cuda:" in text  # the CUDA variant, documented in the header
    torch_pins = re.search(r"^TORCH\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert re.search(r'^ARG TORCH="(.+)"$', text, re.M).group(1).split() == torch_pins
    assert "pip install -q '.[pipeline,s3]'" in instructions
    copied = {m.split()[0] for m in re.findall(r"^COPY (.+)$", instructions, re.M)}
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(package_dirs.values()) | {"pyproject.toml"} <= copied
    assert re.search(r'^ENTRYPOINT \["pathatlas"\]', instructions, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)


def test_pyprojects_ray_pin_is_the_installed_ray():
    from packaging.requirements import Requirement

    pipeline = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["pipeline"]
    (ray_req,) = [Requirement(r) for r in pipeline if Requirement(r).name == "ray"]
    assert ray_req.specifier.contains(RAY_VERSION)
    # one minor release only, the one the KubeRay manifests' rayVersion names
    major, minor = RAY_VERSION.split(".")[:2]
    assert not ray_req.specifier.contains(f"{major}.{int(minor) + 1}.0")


# -- deploy/prefect.yaml -----------------------------------------------------------------------
def _prefect() -> dict:
    return _yaml(DEPLOY / "prefect.yaml")


def test_prefect_yaml_is_valid_for_prefect_and_its_pull_step_resolves(tmp_path, monkeypatch):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.utilities.templating import apply_values

    model = PrefectYamlModel.model_validate(_prefect())  # Prefect's own schema of the file
    (step,) = model.pull
    ((name, inputs),) = step.items()
    if name.endswith("git_clone"):
        assert re.fullmatch(r"[0-9a-f]{40}", inputs.get("commit_sha", "")), "pin the clone to a commit"
        return
    assert name == "prefect.deployments.steps.set_working_directory"
    monkeypatch.setenv("PATHATLAS_HOME", str(tmp_path))
    directory = apply_values(inputs, dict(os.environ))["directory"]  # what `prefect deploy` does
    assert directory == str(tmp_path), "the directory must come from a documented variable"
    assert "PATHATLAS_HOME" in (DEPLOY / "prefect.yaml").read_text().split("pull:")[0]  # ... documented


@pytest.mark.parametrize("deployment", _yaml(DEPLOY / "prefect.yaml")["deployments"], ids=lambda d: d["name"])
def test_each_deployment_runs_a_valid_config_and_logs_progress(deployment):
    entry_file, _, _ = deployment["entrypoint"].partition(":")
    assert (REPO / entry_file).is_file()
    config = load_config(REPO / deployment["parameters"]["config"])  # relative to the pull step's directory
    env = deployment["work_pool"].get("job_variables", {}).get("env", {})
    assert env.get("PREFECT_LOGGING_LEVEL", "INFO") in ("INFO", "DEBUG")
    if config.compute.ray_address:
        # a cluster run: token auth on the client, and no path that means something else on another node
        assert env.get("RAY_AUTH_MODE") == "token"
        relative = [p for p in _local_paths(config) if not Path(p).is_absolute()]
        assert not relative, f"{deployment['name']}: relative local paths {relative} resolve per node"
    secrets = [k for k in env if re.search(r"key|secret|token|password", k, re.I)]
    assert not secrets, f"job_variables are stored in Prefect's database: {secrets}"


def test_scheduled_and_cluster_deployments_retry():
    """A deployment cannot set retries: its entrypoint must be a flow that has them."""
    from prefect.flows import load_flow_from_entrypoint

    for deployment in _prefect()["deployments"]:
        config = load_config(REPO / deployment["parameters"]["config"])
        if not (deployment.get("schedules") or config.compute.ray_address):
            continue
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        assert flow.retries and flow.retries >= 1, f"{deployment['name']}: {deployment['entrypoint']} has no retries"


# -- run configs -------------------------------------------------------------------------------
def _local_paths(cfg: RunConfig) -> list[str]:
    """Every local file or folder a run config names (what every node must see at that path)."""
    paths: list[str | None] = []
    datasets = [cfg.dataset, cfg.patterns.dataset]
    for data in datasets:
        if data is not None and data.kind in ("image_folder", "imagenet_val"):
            class_index = data.class_index if isinstance(data.class_index, str) else None
            paths += [data.root, getattr(data, "labels", None), data.boxes, class_index]
    paths += [getattr(cfg.model, "weights", None), getattr(cfg.model, "path", None)]
    paths += [cfg.patterns.path, cfg.report.path]
    if "://" not in cfg.store.uri:
        paths.append(cfg.store.uri)
    return [p for p in paths if p]


@pytest.mark.parametrize("path", sorted((DEPLOY / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_configs_name_only_absolute_or_object_storage_paths(path):
    cfg = load_config(path)
    if not cfg.compute.ray_address:
        pytest.skip("a local run: relative paths resolve in one working directory")
    relative = [p for p in _local_paths(cfg) if not Path(p).is_absolute()]
    assert not relative, f"{path.name}: {relative} would resolve in each node's own working directory"
