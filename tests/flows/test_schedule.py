"""Scheduled runs really happen: a real Prefect server, its scheduler, and a serving runner.

This is the regression test for the dependency pins: with SQLAlchemy 2.1 the scheduler services
crash and no scheduled run is ever created; with fastapi >= 0.155 the server does not start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.flow, pytest.mark.slow]
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_interval_schedule_creates_and_completes_runs(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PYTHONPATH": str(HERE),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    runner = None
    try:

        def healthy() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"prefect server exited: {server.stderr.read().decode()[-2000:]}")
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 90, "the Prefect server to answer")
        runner = subprocess.Popen(
            [sys.executable, str(HERE / "scheduled_probe.py")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

        def completed_runs() -> list:
            if runner.poll() is not None:
                raise AssertionError(f"the serving runner exited: {runner.stderr.read().decode()[-2000:]}")
            body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 10}
            try:
                response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=5)
            except httpx.HTTPError:
                return []
            assert response.status_code == 200, response.text  # fastapi 0.151-0.154 answered 422 here
            return [r for r in response.json() if r.get("deployment_id")]

        runs = _wait(completed_runs, 120, "a scheduled run to complete")
        assert runs[0]["state"]["type"] == "COMPLETED"
    finally:
        for proc in (runner, server):  # runner first: it hangs if the server dies before it
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
