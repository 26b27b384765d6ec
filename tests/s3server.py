"""A real local S3 server for tests: moto's server in a subprocess on 127.0.0.1, on a free port.

Usage::

    with local_s3_server() as s3:
        fs = s3fs.S3FileSystem(**s3.storage_options)
        uri = s3.uri("runs", "audit.zarr")      # s3://<bucket>/runs/audit.zarr

The server handles one request at a time (``serialize=True``, the default). moto checks
``If-None-Match`` / ``If-Match`` and then stores the object in two steps without a lock, so two
concurrent conditional writes could both pass on a threaded moto; real S3 decides them atomically.
Serving requests one by one gives tests S3's semantics. The credentials are moto's dummy values.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Runs in the subprocess: moto's WSGI app, optionally behind a lock, with request logging off.
_SERVER_SCRIPT = """
import logging, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = DomainDispatcherApplication(create_backend_app)
if sys.argv[2] == "1":
    inner, lock = app, threading.Lock()

    def app(environ, start_response):
        with lock:  # the whole response is produced under the lock: requests are atomic
            return list(inner(environ, start_response))

run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True, request_handler=MotoRequestHandler)
"""


@dataclass(frozen=True)
class S3Server:
    """A running server: where it listens, its bucket, and the options s3fs/fsspec need."""

    endpoint_url: str
    bucket: str
    pid: int
    storage_options: dict[str, Any] = field(default_factory=dict)

    def uri(self, *parts: str) -> str:
        """``s3://<bucket>/<parts joined by />``."""
        return "/".join([f"s3://{self.bucket}", *parts])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(proc: subprocess.Popen, endpoint_url: str, log_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path) as log:
                raise RuntimeError(f"moto server exited with {proc.returncode}:\n{log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint_url + "/", timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered, if only with an error: it is up
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"moto server at {endpoint_url} did not answer within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate exactly our subprocess, by its PID."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def local_s3_server(
    bucket: str = "pathatlas-test", *, serialize: bool = True, timeout_s: float = 30.0
) -> Iterator[S3Server]:
    """Start moto's S3 server, create ``bucket``, yield an :class:`S3Server`, stop the server on exit."""
    port = _free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w", prefix="moto-", suffix=".log", delete=False) as log:
        log_path = log.name
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT, str(port), "1" if serialize else "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_until_up(proc, endpoint_url, log_path, timeout_s)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
        }
        import s3fs  # lazy: only the object-storage tests need it

        # create_bucket directly: s3fs' mkdir sends a LocationConstraint, which us-east-1 refuses
        s3fs.S3FileSystem(skip_instance_cache=True, **options).call_s3("create_bucket", Bucket=bucket)
        yield S3Server(endpoint_url=endpoint_url, bucket=bucket, pid=proc.pid, storage_options=options)
    finally:
        _stop(proc)
        os.unlink(log_path)
