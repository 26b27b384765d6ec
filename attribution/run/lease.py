"""A single-writer lease on a run store, so that two runs (an overlapping schedule, two people)
never write to the same store at once. The driver takes it; workers do not.

Where it lives: next to the store, ``<store uri>.lease.json`` (``runs/audit.zarr`` ->
``runs/audit.zarr.lease.json``; ``s3://b/runs/audit.zarr`` -> ``s3://b/runs/audit.zarr.lease.json``).
Not inside the store: Zarr 3.1 lists every key of a group directory as a possible member, and a
root ``lease.json`` makes ``group.members()``, ``xarray.open_zarr`` and ``xarray.open_datatree``
warn "Object at lease.json is not recognized as a component of a Zarr hierarchy". Zarr ignores
only its own ``zarr.json``, so no name inside the store is silent. The lease may be taken before
the store exists; its parent directory is created as needed.

Content (JSON, never a credential or storage option): host, boot id and pid namespace (what makes
"the same host"), pid, the process start time from ``/proc/<pid>/stat`` (guards against pid
reuse), run id, ``acquired_at`` / ``heartbeat_at`` (epoch seconds, and ``*_utc`` ISO strings), the
pathatlas version. A daemon thread rewrites ``heartbeat_at`` every ``heartbeat_s``.

A holder is dead when its heartbeat is older than ``stale_after_s``, or when it ran on this host
(same hostname, boot id and pid namespace) and its pid is gone, a zombie, or now a different
process (another start time). ``stale_after_s`` must exceed the clock skew between hosts plus a
heartbeat period, or a live holder on a host with a slow clock is taken over.

How the lease file is created, renewed and taken over atomically on local disk, S3 and other
fsspec filesystems: :mod:`.lease_storage`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .lease_storage import LEASE_SUFFIX, LOCK_SUFFIX, lease_path, open_backend
from .processes import boot_id, pid_namespace, proc_stat, start_time
from .provenance import pathatlas_version

__all__ = [
    "LEASE_SUFFIX",
    "LOCK_SUFFIX",
    "LeaseHeld",
    "LeaseInfo",
    "LeaseLost",
    "StoreLease",
    "lease_path",
    "read_lease",
]

log = logging.getLogger("pathatlas.lease")

_MAX_ATTEMPTS = 8  # create / judge / take over rounds before acquire gives up under contention


class LeaseHeld(RuntimeError):
    """A live run holds the store's lease. ``holder`` is its record (None if unreadable)."""

    def __init__(self, message: str, *, path: str = "", holder: LeaseInfo | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword arguments do not survive the default exception pickling (Prefect, Ray pickle errors)
        return type(self), (str(self),), {"path": self.path, "holder": self.holder}


class LeaseLost(RuntimeError):
    """Our lease was taken over (or removed) by someone else: stop writing to the store."""


@dataclass(frozen=True)
class LeaseInfo:
    """One lease record. Times are epoch seconds (UTC); ``start_time`` is the holder's start in
    clock ticks since boot (``/proc/<pid>/stat`` field 22), None where unavailable."""

    host: str
    pid: int
    run_id: str
    acquired_at: float
    heartbeat_at: float
    start_time: int | None = None
    boot_id: str | None = None
    pid_namespace: int | None = None
    version: str = "unknown"

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat (negative if the holder's clock runs ahead of ours)."""
        return (time.time() if now is None else now) - self.heartbeat_at

    def describe(self) -> str:
        return f"run {self.run_id!r} (host {self.host}, pid {self.pid})"

    def same_host(self, other: LeaseInfo) -> bool:
        """Same hostname, and the same boot and pid namespace where both recorded them: only then
        do this record's pid and start time mean anything to ``other``'s process table."""
        if self.host != other.host:
            return False
        for mine, theirs in ((self.boot_id, other.boot_id), (self.pid_namespace, other.pid_namespace)):
            if (mine is None) != (theirs is None) or mine != theirs:
                return False
        return True

    def same_process(self, other: LeaseInfo) -> bool:
        """The same run in the same live process (start times compared where both are known)."""
        starts_match = self.start_time is None or other.start_time is None or self.start_time == other.start_time
        return self.run_id == other.run_id and self.pid == other.pid and self.same_host(other) and starts_match

    def to_json(self) -> bytes:
        record: dict[str, Any] = asdict(self)
        record["acquired_at_utc"] = _iso(self.acquired_at)
        record["heartbeat_at_utc"] = _iso(self.heartbeat_at)
        return json.dumps(record, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        """Parse a record; ``ValueError`` if it is not one."""
        try:
            raw = json.loads(data)
            return cls(
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                run_id=str(raw["run_id"]),
                acquired_at=float(raw.get("acquired_at", raw["heartbeat_at"])),
                heartbeat_at=float(raw["heartbeat_at"]),
                start_time=None if raw.get("start_time") is None else int(raw["start_time"]),
                boot_id=raw.get("boot_id"),
                pid_namespace=None if raw.get("pid_namespace") is None else int(raw["pid_namespace"]),
                version=str(raw.get("version", "unknown")),
            )
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a pathatlas lease record: {data[:200]!r}") from exc


def _parse(data: bytes) -> LeaseInfo | None:
    try:
        return LeaseInfo.from_json(data)
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


# -- this process ---------------------------------------------------------------------------------


def _own_record(run_id: str, now: float) -> LeaseInfo:
    return LeaseInfo(
        host=socket.gethostname(),
        pid=os.getpid(),
        run_id=run_id,
        acquired_at=now,
        heartbeat_at=now,
        start_time=start_time(os.getpid()),
        boot_id=boot_id(),
        pid_namespace=pid_namespace(),
        version=pathatlas_version(),
    )


def _dead_reason(holder: LeaseInfo, me: LeaseInfo, stale_after_s: float, now: float) -> str | None:
    """Why ``holder`` is dead as seen from ``me``, or None if it may be alive."""
    age = holder.age(now)
    if age > stale_after_s:
        return f"its heartbeat is {age:.0f} s old (stale after {stale_after_s:.0f} s)"
    if not holder.same_host(me):
        return None  # another host's process table is not ours to read: only the heartbeat counts
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return f"pid {holder.pid} no longer exists on {holder.host}"
    except PermissionError:
        pass  # it exists, under another user
    stat = proc_stat(holder.pid)
    if stat is not None and stat[0] == "Z":
        return f"pid {holder.pid} is a zombie (it exited)"
    if stat is not None and holder.start_time is not None and stat[2] != holder.start_time:
        return f"pid {holder.pid} is now another process (start time {stat[2]} != {holder.start_time})"
    return None


# -- the lease --------------------------------------------------------------------------------------


def read_lease(uri: str, storage_options: dict | None = None) -> LeaseInfo | None:
    """The lease record of the store at ``uri``, or None if there is none.
    ``ValueError`` if the lease file exists but is not a lease record."""
    current = open_backend(uri, storage_options).read()
    return None if current is None else LeaseInfo.from_json(current[0])


class StoreLease:
    """The single-writer lease of one store, held by one run's driver.

    ``acquire()`` takes it (or raises :class:`LeaseHeld`) and starts a daemon heartbeat thread;
    ``check()`` raises :class:`LeaseLost` once that thread found the lease taken by someone else;
    ``release()`` stops the heartbeat and deletes the lease if it is still ours. Also a context
    manager (``with StoreLease(uri, run_id=...) as lease:``). Re-acquiring in the same process with
    the same run id adopts the existing lease.
    """

    def __init__(
        self,
        uri: str,
        storage_options: dict | None = None,
        *,
        run_id: str,
        stale_after_s: float = 120.0,
        heartbeat_s: float | None = None,
    ) -> None:
        self.heartbeat_s = stale_after_s / 4 if heartbeat_s is None else heartbeat_s
        if not 0 < self.heartbeat_s < stale_after_s:
            raise ValueError(f"need 0 < heartbeat_s < stale_after_s, got {self.heartbeat_s} and {stale_after_s}")
        self.uri = uri
        self.run_id = run_id
        self.stale_after_s = stale_after_s
        self._backend = open_backend(uri, storage_options)  # the options stay in the filesystem object only
        self.path = self._backend.display
        self._lock = threading.Lock()
        self._info: LeaseInfo | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def info(self) -> LeaseInfo | None:
        """Our current record (None when not held)."""
        with self._lock:
            return self._info

    def acquire(self) -> LeaseInfo | None:
        """Take the lease. Returns the previous holder's record if we took over a dead lease, None
        if it was free (or already ours). Raises :class:`LeaseHeld` at once if a live run holds it."""
        if self._thread is not None and self._thread.is_alive():
            return None
        taken_from: tuple[LeaseInfo, str] | None = None
        for _ in range(_MAX_ATTEMPTS):
            mine = _own_record(self.run_id, time.time())
            if self._backend.create(mine.to_json()):
                return self._start(mine, taken_from)
            current = self._backend.read()
            if current is None:
                continue  # released or taken over between our create and our read
            data, token = current
            holder = self._parse_or_raise(data)
            if holder.same_process(mine):
                adopted = replace(holder, heartbeat_at=mine.heartbeat_at)
                if self._backend.replace_if(adopted.to_json(), token):
                    return self._start(adopted, None)
                continue
            reason = _dead_reason(holder, mine, self.stale_after_s, time.time())
            if reason is None:
                raise self._held(holder)
            if self._backend.remove_if(token):
                taken_from = (holder, reason)
        raise LeaseHeld(
            f"could not take the lease {self.path} in {_MAX_ATTEMPTS} attempts: other runs keep taking it; try again",
            path=self.path,
            holder=None,
        )

    def ensure_free(self) -> None:
        """Raise :class:`LeaseHeld` if a live run holds the lease; take nothing (a dead holder's
        lease is left for :meth:`acquire` to take over)."""
        current = self._backend.read()
        if current is None:
            return
        holder = self._parse_or_raise(current[0])
        mine = _own_record(self.run_id, time.time())
        if not holder.same_process(mine) and _dead_reason(holder, mine, self.stale_after_s, time.time()) is None:
            raise self._held(holder)

    def _parse_or_raise(self, data: bytes) -> LeaseInfo:
        try:
            return LeaseInfo.from_json(data)
        except ValueError:
            raise LeaseHeld(
                f"the lease file {self.path} is not readable as a pathatlas lease; if no run is using the store, "
                f"remove {self.path}",
                path=self.path,
                holder=None,
            ) from None

    def _held(self, holder: LeaseInfo) -> LeaseHeld:
        return LeaseHeld(
            f"store {self.uri} is in use by {holder.describe()}: its last heartbeat was {holder.age():.1f} s ago "
            f"(a lease is stale after {self.stale_after_s:.0f} s). Wait for that run to finish, or, if you are "
            f"sure it is dead, remove {self.path}",
            path=self.path,
            holder=holder,
        )

    def _start(self, mine: LeaseInfo, taken_from: tuple[LeaseInfo, str] | None) -> LeaseInfo | None:
        with self._lock:
            self._info, self._lost = mine, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"pathatlas-lease-{self.run_id}", daemon=True)
        self._thread.start()
        if taken_from is None:
            log.info("run %r took the lease %s", self.run_id, self.path)
            return None
        previous, reason = taken_from
        log.warning("run %r took over the lease %s from %s: %s", self.run_id, self.path, previous.describe(), reason)
        return previous

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self._renew():
                    return
            except Exception as exc:  # a network hiccup: keep the thread, try at the next beat
                log.warning("lease heartbeat on %s failed (%s); retrying in %.1f s", self.path, exc, self.heartbeat_s)

    def _renew(self) -> bool:
        """One heartbeat; False once the lease is lost."""
        mine = self.info
        if mine is None or self._stop.is_set():
            return False
        current = self._backend.read()
        if current is None:
            return self._lose(f"the lease file {self.path} was removed")
        data, token = current
        holder = _parse(data)
        if holder is None:
            return self._lose(f"the lease file {self.path} was overwritten with something else")
        if not holder.same_process(mine):
            return self._lose(f"the lease {self.path} was taken by {holder.describe()}")
        renewed = replace(holder, heartbeat_at=time.time())
        if self._backend.replace_if(renewed.to_json(), token):
            with self._lock:
                self._info = renewed
        return True  # a failed compare-and-swap means it changed: the next beat looks again

    def _lose(self, reason: str) -> bool:
        with self._lock:
            self._lost = reason
        log.error("run %r lost its lease: %s; stop writing to %s", self.run_id, reason, self.uri)
        return False

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the heartbeat found our lease taken or removed."""
        with self._lock:
            lost = self._lost
        if lost is not None:
            raise LeaseLost(f"run {self.run_id!r} no longer holds the lease of {self.uri}: {lost}")

    def release(self) -> None:
        """Stop the heartbeat; delete the lease if it is still ours (never someone else's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, 2 * self.heartbeat_s))
            self._thread = None
        with self._lock:
            mine, self._info = self._info, None
        if mine is None:
            return
        current = self._backend.read()
        if current is None:
            return
        holder = _parse(current[0])
        if holder is not None and holder.same_process(mine) and self._backend.remove_if(current[1]):
            log.info("run %r released the lease %s", self.run_id, self.path)

    def __enter__(self) -> StoreLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
