"""S3 requests of a whole pipeline run, counted per stage, HTTP method and kind of key.

Starts moto's S3 server in this process (werkzeug on 127.0.0.1, one request at a time, as
``tests/s3server.py`` serves it), runs ``explain`` (real Prefect, real local Ray) for a synthetic
run into ``s3://bench/...`` and counts every request the driver and the Ray actors send, by
kind of key: ``metadata`` (``zarr.json``), ``chunk`` (array data), ``listing`` (``ListObjectsV2``),
``lease`` (the store's lease file), ``report`` and ``other``. Requests are assigned to a stage by
the Prefect task run whose time window holds them; ``flow`` is what falls between task runs
(the lease, config checks).

    .venv/bin/python -m benchmarks.s3_requests                     # 1 000 images, gradient, one metric
    .venv/bin/python -m benchmarks.s3_requests --n-images 200      # quicker
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ADDRESS", "local")  # a private Ray, even where another one runs on this machine


class CountingApp:
    """moto's WSGI app behind a lock, recording ``(time, method, kind, key)`` of every request."""

    def __init__(self, inner) -> None:  # noqa: ANN001 - a WSGI callable
        self.inner, self.lock = inner, threading.Lock()
        self.log: list[tuple[float, str, str, str]] = []

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - the WSGI signature
        method, path = environ["REQUEST_METHOD"], unquote(environ.get("PATH_INFO", ""))
        query = parse_qs(environ.get("QUERY_STRING", ""))
        with self.lock:  # atomic requests (S3's conditional writes are decided atomically)
            kind = _kind(path, query)
            where = f"{path}?prefix={query.get('prefix', [''])[0]}" if kind == "listing" else path
            self.log.append((time.time(), method, kind, where))
            return list(self.inner(environ, start_response))


def _kind(path: str, query: dict) -> str:
    if "list-type" in query or ("prefix" in query and path.count("/") <= 1):
        return "listing"
    if path.endswith("zarr.json"):
        return "metadata"
    if path.endswith(".lease.json"):
        return "lease"
    if path.endswith(".html") or path.endswith(".json"):
        return "report"
    if "/c/" in path or "/c" == path[-2:]:
        return "chunk"
    return "other"


def start_server(port: int = 0) -> tuple[str, CountingApp, object]:
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", app, server


def bench_config(endpoint: str, n_images: int, size: int, shard_size: int, n_actors: int) -> dict:
    return {
        "name": "s3-requests",
        "seed": 0,
        "dataset": {"kind": "synthetic", "n_samples": n_images, "image_size": size, "seed": 1000, "n_distractors": 1},
        "model": {"kind": "demo"},
        "methods": [{"name": "gradient"}, {"name": "input_x_gradient"}],
        "metrics": [{"name": "localization", "settings": {"region": "signal"}}],
        "store": {
            "uri": "s3://bench/audit/store.zarr",
            "shard_size": shard_size,
            "storage_options": {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            },
        },
        "report": {"n_overlays": 2},
        "compute": {"n_actors": n_actors, "device": "cpu"},
    }


def stage_windows(flow_run_id: str) -> list[tuple[float, float, str]]:
    """``[(start, end, task name)]`` of the flow run's task runs, from Prefect's API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out = []
    for run in runs:
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]
            out.append((run.start_time.timestamp(), run.end_time.timestamp(), name))
    return sorted(out)


def summarise(log: list[tuple[float, str, str, str]], windows: list[tuple[float, float, str]]) -> str:
    def stage(t: float) -> str:
        return next((name for start, end, name in windows if start <= t <= end), "flow")

    by_stage: dict[str, Counter] = {}
    for t, method, kind, _ in log:
        by_stage.setdefault(stage(t), Counter())[f"{method} {kind}"] += 1
    kinds = sorted({k for c in by_stage.values() for k in c})
    order = [name for _, _, name in windows if name in by_stage] + ["flow"]
    order = list(dict.fromkeys(s for s in order if s in by_stage))
    lines = [f"{'stage':<20}" + "".join(f"{k:>17}" for k in kinds) + f"{'total':>8}"]
    for s in order:
        c = by_stage[s]
        lines.append(f"{s:<20}" + "".join(f"{c.get(k, 0):>17}" for k in kinds) + f"{sum(c.values()):>8}")
    total = Counter(f"{m} {k}" for _, m, k, _ in log)
    lines.append(f"{'total':<20}" + "".join(f"{total.get(k, 0):>17}" for k in kinds) + f"{len(log):>8}")
    meta = sum(v for k, v in total.items() if k.endswith("metadata"))
    lines.append(f"metadata share: {meta / max(len(log), 1):.0%}")
    top = Counter(key for _, _, kind, key in log if kind == "metadata").most_common(5)
    lines.append("most read metadata keys: " + ", ".join(f"{k} x{n}" for k, n in top))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--n-actors", type=int, default=2)
    parser.add_argument("--dump", help="also write every request (stage, method, kind, key) to this TSV file")
    args = parser.parse_args()

    os.chdir(tempfile.mkdtemp(prefix="s3-requests-"))  # nothing (a stray report.html) lands in the checkout
    endpoint, app, server = start_server()
    import s3fs

    cfg = bench_config(endpoint, args.n_images, args.size, args.shard_size, args.n_actors)
    opts = cfg["store"]["storage_options"]
    s3fs.S3FileSystem(skip_instance_cache=True, **opts).call_s3("create_bucket", Bucket="bench")
    app.log.clear()

    from pathatlas.flows.explain import explain

    started = time.perf_counter()
    state = explain(cfg, show_progress=False, return_state=True)
    seconds = time.perf_counter() - started
    result = state.result()
    windows = stage_windows(str(state.state_details.flow_run_id))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs: {args.n_images} images of "
        f"{args.size} px, shard size {args.shard_size}, {args.n_actors} actors, {len(cfg['methods'])} methods, "
        f"{len(cfg['metrics'])} metric; {seconds:.0f} s; report {result['report']}"
    )
    print(summarise(app.log, windows))
    if args.dump:
        with open(args.dump, "w") as f:
            for t, method, kind, key in app.log:
                name = next((n for start, end, n in windows if start <= t <= end), "flow")
                f.write(f"{name}\t{method}\t{kind}\t{key}\n")
    server.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
