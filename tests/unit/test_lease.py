"""The store lease, with real processes, real files and a real local S3 server (moto): no mocks."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest

from pathatlas.attribution.run.lease import (
    LeaseHeld,
    LeaseInfo,
    LeaseLost,
    StoreLease,
    lease_path,
    read_lease,
)

HAS_PROC = Path("/proc/self/stat").exists()


@pytest.fixture
def make_lease() -> Iterator[Callable[..., StoreLease]]:
    """``make_lease(uri, run_id=..., **kw)``; every lease made is released at teardown."""
    made: list[StoreLease] = []

    def make(uri: str, storage_options: dict | None = None, **kw) -> StoreLease:
        lease = StoreLease(str(uri), storage_options, **kw)
        made.append(lease)
        return lease

    yield make
    for lease in made:
        lease.release()


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 15.0) -> None:
    """Poll ``condition`` (a bound on a hang, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def raises_lost(lease: StoreLease) -> bool:
    try:
        lease.check()
    except LeaseLost:
        return True
    return False


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, read independently of the module under test."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def record(host: str, pid: int, run_id: str, heartbeat_at: float, **extra) -> bytes:
    """A lease file written by hand, as another run would have left it."""
    return json.dumps(
        {"host": host, "pid": pid, "run_id": run_id, "acquired_at": heartbeat_at, "heartbeat_at": heartbeat_at, **extra}
    ).encode()


def own_host_fields(tmp_path: Path) -> dict:
    """This process's host identity (hostname, boot id, pid namespace) as a lease records it."""
    probe = StoreLease(str(tmp_path / "probe.zarr"), run_id="probe")
    probe.acquire()
    info = read_lease(str(tmp_path / "probe.zarr"))
    probe.release()
    assert info is not None
    return {"boot_id": info.boot_id, "pid_namespace": info.pid_namespace}


# -- local disk -------------------------------------------------------------------------------------


def test_acquire_on_a_fresh_path_records_this_process(tmp_path, make_lease):
    uri = tmp_path / "runs" / "nightly" / "audit.zarr"  # nothing of it exists yet
    lease = make_lease(uri, run_id="run-1")
    assert lease.acquire() is None
    info = read_lease(str(uri))
    assert info is not None
    assert (info.host, info.pid, info.run_id) == (socket.gethostname(), os.getpid(), "run-1")
    assert info.version == metadata.version("pathatlas")
    if HAS_PROC:
        assert info.start_time == start_ticks(os.getpid())
    assert lease_path(str(uri)) == lease.path == str(uri) + ".lease.json"
    raw = json.loads(Path(lease.path).read_text())
    assert raw["heartbeat_at"] == info.heartbeat_at and raw["heartbeat_at_utc"].endswith("+00:00")
    assert not uri.exists()  # the store itself is Zarr's to create


def test_a_second_run_is_refused_with_a_useful_message(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    make_lease(uri, run_id="first").acquire()
    with pytest.raises(LeaseHeld) as caught:
        make_lease(uri, run_id="second").acquire()
    message = str(caught.value)
    for part in (socket.gethostname(), f"pid {os.getpid()}", "'first'", "s ago", f"remove {uri}.lease.json", "Wait"):
        assert part in message
    assert caught.value.holder is not None and caught.value.holder.run_id == "first"
    assert read_lease(uri).run_id == "first"  # the refused run changed nothing
    again = pickle.loads(pickle.dumps(caught.value))  # Prefect and Ray pickle exceptions
    assert (str(again), again.path, again.holder) == (message, caught.value.path, caught.value.holder)


def test_the_same_run_in_the_same_process_may_acquire_again(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    first = make_lease(uri, run_id="same")
    assert first.acquire() is None
    assert first.acquire() is None  # already held by this object
    assert make_lease(uri, run_id="same").acquire() is None  # another object, same run and process
    assert read_lease(uri).run_id == "same"


CHILD = """
import sys, time
from pathatlas.attribution.run.lease import StoreLease
lease = StoreLease(sys.argv[1], run_id="child-run", heartbeat_s=0.5)
lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_is_taken_over_at_once(tmp_path, make_lease, caplog):
    uri = str(tmp_path / "audit.zarr")
    child = subprocess.Popen([sys.executable, "-c", CHILD, uri], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert read_lease(uri).pid == child.pid
        with pytest.raises(LeaseHeld, match="child-run"):
            make_lease(uri, run_id="parent-run").acquire()  # alive: refused
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        child.stdout.close()
    with caplog.at_level(logging.WARNING, logger="pathatlas.lease"):
        previous = make_lease(uri, run_id="parent-run").acquire()  # the heartbeat is fresh: the pid decides
    assert previous is not None and (previous.pid, previous.run_id) == (child.pid, "child-run")
    assert read_lease(uri).run_id == "parent-run"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "pathatlas.lease"]
    assert len(warned) == 1
    assert f"pid {child.pid}" in warned[0].getMessage() and "no longer exists" in warned[0].getMessage()


def test_another_hosts_lease_is_taken_over_only_when_its_heartbeat_is_stale(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    path = Path(uri + ".lease.json")
    path.write_bytes(record("elsewhere.example", 4242, "remote-run", time.time()))
    with pytest.raises(LeaseHeld) as caught:
        make_lease(uri, run_id="local-run", stale_after_s=60).acquire()
    assert "elsewhere.example" in str(caught.value) and "pid 4242" in str(caught.value)

    path.write_bytes(record("elsewhere.example", 4242, "remote-run", time.time() - 61))
    previous = make_lease(uri, run_id="local-run", stale_after_s=60).acquire()
    assert previous is not None and (previous.host, previous.pid) == ("elsewhere.example", 4242)
    assert read_lease(uri).run_id == "local-run"


@pytest.fixture
def exited_child() -> Iterator[Callable[[bool], int]]:
    """``exited_child(reap)``: the pid of a child that has exited, reaped or left a zombie until teardown."""
    children: list[subprocess.Popen] = []

    def start(reap: bool) -> int:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        children.append(child)
        if reap:
            child.wait(timeout=30)
        else:
            wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().split(")")[-1].split()[0] == "Z", "zombie")
        return child.pid

    yield start
    for child in children:
        child.wait(timeout=30)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
@pytest.mark.parametrize(
    ("case", "dead"),
    [("gone", "no longer exists"), ("zombie", "zombie"), ("reused", "another process"), ("alive", None)],
)
def test_same_host_liveness_uses_pid_and_start_time(tmp_path, make_lease, exited_child, case, dead):
    uri = str(tmp_path / "audit.zarr")
    if case in ("gone", "zombie"):
        pid, start = (exited_child(reap=case == "gone"), None)
    else:  # our parent: alive; 'reused' records a start time that is not its own
        pid, start = os.getppid(), start_ticks(os.getppid()) - (1 if case == "reused" else 0)
    fields = own_host_fields(tmp_path)
    Path(uri + ".lease.json").write_bytes(
        record(socket.gethostname(), pid, "old-run", time.time(), start_time=start, **fields)
    )
    lease = make_lease(uri, run_id="new-run")
    if dead is None:
        with pytest.raises(LeaseHeld, match=f"pid {pid}"):
            lease.acquire()
    else:
        previous = lease.acquire()
        assert previous is not None and previous.pid == pid
        assert read_lease(uri).run_id == "new-run"


def test_the_heartbeat_renews_the_lease(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    lease = make_lease(uri, run_id="beating", heartbeat_s=0.05)
    lease.acquire()
    first = read_lease(uri)
    wait_until(lambda: read_lease(uri).heartbeat_at > first.heartbeat_at, "a renewed heartbeat")
    renewed = read_lease(uri)
    assert (renewed.acquired_at, renewed.run_id, renewed.pid) == (first.acquired_at, "beating", os.getpid())
    lease.check()  # still ours: no LeaseLost


@pytest.mark.parametrize("how", ["overwritten", "removed"])
def test_lease_lost_when_someone_else_takes_the_file(tmp_path, make_lease, how):
    uri = str(tmp_path / "audit.zarr")
    path = Path(uri + ".lease.json")
    lease = make_lease(uri, run_id="victim", heartbeat_s=0.05)
    lease.acquire()
    intruder = record("elsewhere.example", 77, "intruder", time.time())
    if how == "overwritten":
        path.write_bytes(intruder)
    else:
        path.unlink()
    wait_until(lambda: raises_lost(lease), "LeaseLost")
    with pytest.raises(LeaseLost, match="intruder" if how == "overwritten" else "removed"):
        lease.check()
    lease.release()
    assert (path.read_bytes() == intruder) if how == "overwritten" else not path.exists()


def test_release_deletes_only_our_own_lease(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    path = Path(uri + ".lease.json")
    with make_lease(uri, run_id="ours") as lease:
        assert read_lease(uri).run_id == "ours"
        lease.check()
    assert not path.exists()
    lease.release()  # twice: nothing happens

    slow = make_lease(uri, run_id="ours-again", stale_after_s=600)  # its heartbeat will not notice in time
    slow.acquire()
    theirs = record("elsewhere.example", 5, "theirs", time.time())
    path.write_bytes(theirs)
    slow.release()
    assert path.read_bytes() == theirs


def test_an_unreadable_lease_file_is_refused_not_taken_over(tmp_path, make_lease):
    uri = str(tmp_path / "audit.zarr")
    Path(uri + ".lease.json").write_text("not json")
    with pytest.raises(LeaseHeld, match="not readable"):
        make_lease(uri, run_id="run").acquire()


def test_heartbeat_must_be_shorter_than_staleness(tmp_path):
    with pytest.raises(ValueError, match="heartbeat_s"):
        StoreLease(str(tmp_path / "a.zarr"), run_id="r", stale_after_s=1.0, heartbeat_s=1.0)


def race(uri: str, n: int, storage_options: dict | None = None) -> tuple[list[str], list[str]]:
    """``n`` threads acquire at once: (winners' run ids, refused run ids)."""
    barrier = threading.Barrier(n)
    won: list[str] = []
    refused: list[str] = []
    leases = [StoreLease(uri, storage_options, run_id=f"racer-{i}") for i in range(n)]

    def go(lease: StoreLease) -> None:
        barrier.wait()
        try:
            lease.acquire()
            won.append(lease.run_id)
        except LeaseHeld:
            refused.append(lease.run_id)

    threads = [threading.Thread(target=go, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for lease in leases:
        lease.release()
    return won, refused


@pytest.mark.parametrize("stale", [False, True])
def test_concurrent_acquirers_on_disk_exactly_one_wins(tmp_path, stale):
    uri = str(tmp_path / "audit.zarr")
    if stale:
        Path(uri + ".lease.json").write_bytes(record("elsewhere.example", 9, "dead-run", time.time() - 1e4))
    won, refused = race(uri, 8)
    assert len(won) == 1 and len(refused) == 7


def test_the_lease_leaves_zarr_and_xarray_silent(tmp_path, make_lease):
    """Beside the store, not inside: listing members, consolidating and opening with xarray warn about nothing."""
    import numpy as np
    import xarray as xr
    import zarr

    uri = str(tmp_path / "audit.zarr")
    make_lease(uri, run_id="run").acquire()  # before the group exists
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        group = zarr.open_group(store=uri, mode="a")
        group.create_array("x", shape=(3,), dtype="f8", dimension_names=("sample",))[:] = np.arange(3.0)
        group.require_group("samples").create_array("id", shape=(3,), dtype="i8", dimension_names=("sample",))
        assert sorted(name for name, _ in group.members(max_depth=None)) == ["samples", "samples/id", "x"]
        assert [name for name, _ in group.arrays()] == ["x"]
        zarr.consolidate_metadata(group.store)
        tree = xr.open_datatree(uri, engine="zarr")
        assert set(tree.children) == {"samples"} and tree.ds["x"].values.tolist() == [0.0, 1.0, 2.0]
    assert read_lease(uri).run_id == "run"


def test_a_file_inside_the_group_would_make_zarr_warn(tmp_path):
    """Why the lease is not ``<store>/lease.json``: Zarr 3.1 treats every key of a group as a member."""
    import zarr

    group = zarr.open_group(store=str(tmp_path / "s.zarr"), mode="a")
    (tmp_path / "s.zarr" / "lease.json").write_text("{}")
    with pytest.warns(UserWarning, match="lease.json is not recognized"):
        list(group.members())


def test_a_filesystem_without_conditional_writes_uses_the_fallback(make_lease):
    uri = f"memory://leases-{uuid.uuid4().hex}/audit.zarr"
    lease = make_lease(uri, run_id="mem")
    assert lease.acquire() is None and lease.path.endswith("/audit.zarr.lease.json")
    with pytest.raises(LeaseHeld, match="'mem'"):
        make_lease(uri, run_id="other").acquire()
    lease.release()
    assert read_lease(uri) is None


# -- S3 (a real moto server) -----------------------------------------------------------------------


@pytest.fixture
def s3_uri(s3_server) -> str:
    return s3_server.uri(f"runs-{uuid.uuid4().hex}", "audit.zarr")


def s3_put(s3_server, uri: str, data: bytes) -> None:
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(uri + ".lease.json", **s3_server.storage_options)
    fs.pipe_file(path, data)


def test_the_s3_server_honours_conditional_writes(s3_server, s3_uri):
    """What the S3 lease relies on: If-None-Match: * on create, If-Match on put and delete."""
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(s3_uri + ".probe", **s3_server.storage_options)
    fs.pipe_file(path, b"one", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"two", mode="create")
    etag = fs.info(path, refresh=True)["ETag"]
    bucket, key, _ = fs.split_path(path)
    with pytest.raises(OSError, match="pre-conditions"):
        fs.pipe_file(path, b"three", IfMatch='"0123456789abcdef0123456789abcdef"')
    with pytest.raises(OSError, match="pre-conditions"):
        fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch='"0123456789abcdef0123456789abcdef"')
    assert fs.cat_file(path) == b"one"
    fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
    assert not fs.exists(path)


def test_s3_acquire_refuse_takeover_release(s3_server, s3_uri, make_lease, caplog):
    options = s3_server.storage_options
    lease = make_lease(s3_uri, options, run_id="s3-run")
    assert lease.acquire() is None and lease.path == s3_uri + ".lease.json"
    info = read_lease(s3_uri, options)
    assert info is not None and (info.run_id, info.pid) == ("s3-run", os.getpid())
    with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}"):
        make_lease(s3_uri, options, run_id="s3-other").acquire()
    lease.release()
    assert read_lease(s3_uri, options) is None

    s3_put(s3_server, s3_uri, record("elsewhere.example", 31, "stale-run", time.time() - 1e4))
    with caplog.at_level(logging.WARNING, logger="pathatlas.lease"):
        previous = make_lease(s3_uri, options, run_id="s3-taker").acquire()
    assert previous is not None and previous.run_id == "stale-run"
    assert "stale-run" in caplog.text and "elsewhere.example" in caplog.text
    assert read_lease(s3_uri, options).run_id == "s3-taker"

    with pytest.raises(ValueError, match="bucket root"):
        lease_path(s3_server.uri(), options)  # a lease lives beside its store: a bucket has no beside

    raw = json.dumps(json.loads(read_lease_bytes(s3_server, s3_uri)))
    for secret in (options["key"], options["secret"], options["client_kwargs"]["endpoint_url"]):
        assert secret not in raw  # no credentials, no storage options in the lease


def read_lease_bytes(s3_server, uri: str) -> bytes:
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(uri + ".lease.json", **s3_server.storage_options)
    return fs.cat_file(path)


def test_s3_heartbeat_renews_and_detects_a_takeover(s3_server, s3_uri, make_lease):
    options = s3_server.storage_options
    lease = make_lease(s3_uri, options, run_id="s3-beat", heartbeat_s=0.05)
    lease.acquire()
    first = read_lease(s3_uri, options)
    wait_until(lambda: read_lease(s3_uri, options).heartbeat_at > first.heartbeat_at, "a renewed heartbeat on S3")
    lease.check()
    intruder = record("elsewhere.example", 8, "s3-intruder", time.time())
    s3_put(s3_server, s3_uri, intruder)
    wait_until(lambda: raises_lost(lease), "LeaseLost on S3")
    lease.release()
    assert read_lease_bytes(s3_server, s3_uri) == intruder  # release left the other run's lease alone


@pytest.mark.parametrize("stale", [False, True])
def test_s3_concurrent_acquirers_exactly_one_wins(s3_server, s3_uri, stale):
    if stale:
        s3_put(s3_server, s3_uri, record("elsewhere.example", 9, "dead-run", time.time() - 1e4))
    won, refused = race(s3_uri, 8, s3_server.storage_options)
    assert len(won) == 1 and len(refused) == 7


def test_lease_info_age_and_json_round_trip():
    info = LeaseInfo(host="h", pid=1, run_id="r", acquired_at=100.0, heartbeat_at=150.0, start_time=7)
    assert info.age(now=160.0) == 10.0
    assert LeaseInfo.from_json(info.to_json()) == info
    with pytest.raises(ValueError):
        LeaseInfo.from_json(b'{"host": "h"}')


def test_ensure_free_refuses_a_live_holder_and_takes_nothing(tmp_path):
    from pathatlas.attribution.run.lease import LeaseHeld, StoreLease, read_lease

    uri = str(tmp_path / "s.zarr")
    StoreLease(uri, run_id="nobody").ensure_free()  # no lease: nothing happens, nothing is written
    assert read_lease(uri) is None
    with StoreLease(uri, run_id="holder"):
        with pytest.raises(LeaseHeld, match="in use by run 'holder'"):
            StoreLease(uri, run_id="probe").ensure_free()
        assert read_lease(uri).run_id == "holder"
