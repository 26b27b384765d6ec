"""A killed driver's processes are ended by the next run, by pid and start time, and only those."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pathatlas.attribution.run import drivers
from pathatlas.attribution.run.processes import descendants, start_time

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")

# a "driver" that keeps a record while it runs, starts a child in a session of its own (as
# Prefect's server outlives its parent), prints the child's pid and then waits to be killed
DRIVER = """
import subprocess, sys, time
from pathatlas.attribution.run.drivers import DriverRecord
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
with DriverRecord.kept():
    print(child.pid, flush=True)
    time.sleep(600)
"""


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_reap_ends_what_a_killed_driver_left_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHATLAS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(drivers, "REFRESH_S", 0.1)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        child = int(driver.stdout.readline())  # type: ignore[union-attr]
        child_started = start_time(child)
        assert child in descendants(driver.pid)
        _wait(lambda: any(tmp_path.glob("drivers/*.json")))
        assert drivers.reap() == []  # its driver is alive: nothing to end

        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert start_time(child) == child_started  # the child outlived its driver
        ended = drivers.reap()
        assert ended == [f"pid {child} (left by driver pid {driver.pid})"]
        _wait(lambda: start_time(child) is None)
        assert bystander.poll() is None  # not listed, not touched
        assert not list(tmp_path.glob("drivers/*.json"))  # the record went with its processes
        assert drivers.reap() == []
    finally:
        for proc in (bystander, driver):
            if proc.poll() is None:
                proc.kill()
        if start_time(child) is not None:
            os.kill(child, signal.SIGKILL)


def test_a_clean_end_leaves_no_record(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHATLAS_STATE_DIR", str(tmp_path))
    with drivers.DriverRecord.kept(), drivers.DriverRecord.kept():
        assert len(list(tmp_path.glob("drivers/*.json"))) == 1
    assert not list(tmp_path.glob("drivers/*.json"))


# a driver leading its own process group that starts a child after its last refresh: the child is
# not in the record, but it is in the dead driver's group and started while the driver lived
LATE_CHILD = """
import subprocess, sys, time
from pathatlas.attribution.run import drivers
drivers.REFRESH_S = 600
with drivers.DriverRecord.kept():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_reap_ends_a_child_started_after_the_last_refresh_in_the_drivers_group(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHATLAS_STATE_DIR", str(tmp_path))
    driver = subprocess.Popen(
        [sys.executable, "-c", LATE_CHILD], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(driver.stdout.readline())  # type: ignore[union-attr]
    try:
        record = next(tmp_path.glob("drivers/*.json")).read_text()
        assert f'"{child}"' not in record  # started after the record was written
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        assert drivers.reap() == [f"pid {child} (left by driver pid {driver.pid})"]
        _wait(lambda: start_time(child) is None)
    finally:
        if driver.poll() is None:
            driver.kill()
        if start_time(child) is not None:
            os.kill(child, signal.SIGKILL)
