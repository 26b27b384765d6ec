"""What a killed driver leaves behind, and ending it.

A run's driver starts processes of its own: Prefect's ephemeral API server, and with a local Ray
its GCS server, raylet, agents and workers. Killed with SIGKILL, the driver cannot stop them, and
some outlive it for minutes or for good (Prefect's server is reparented to PID 1 and keeps its
port and ~200 MB).

So while a run lasts, its driver keeps a record of its descendants (pid and start time) in this
host's state directory, refreshed every second by a daemon thread and whenever it starts Ray; a
clean end deletes it. A process started in the second before the kill is not in the record yet:
when the driver led its process group (a command run from a shell, `start_new_session`), the
group's members that started while the driver lived count as its leftovers too.
Whoever runs next on the host (:func:`reap`, called when a run starts) finds the records of drivers
that are gone and ends the processes they list, by pid, and only where the start time still
matches (a reused pid is another process and is left alone).

State directory: ``$PATHATLAS_STATE_DIR``, else ``$XDG_STATE_HOME/pathatlas``, else
``~/.local/state/pathatlas``; records in ``drivers/<boot id>-<pid namespace>-<pid>.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .processes import boot_id, descendants, group_members, pid_namespace, start_time, uptime_ticks

log = logging.getLogger("pathatlas.drivers")

REFRESH_S = 1.0
_GRACE_S = 5.0  # SIGTERM first, SIGKILL what is still there after this long


def state_dir() -> Path:
    """This host's pathatlas state directory (see the module docstring)."""
    if os.environ.get("PATHATLAS_STATE_DIR"):
        return Path(os.environ["PATHATLAS_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pathatlas"


def _records_dir() -> Path:
    return state_dir() / "drivers"


def _prefix() -> str:
    """Records of this boot and pid namespace: only those pids mean anything here."""
    return f"{boot_id() or 'noboot'}-{pid_namespace() or 0}-"


def _record_path(pid: int) -> Path:
    return _records_dir() / f"{_prefix()}{pid}.json"


class DriverRecord:
    """Keeps this process's record of its descendants up to date while it runs (a context
    manager; nested use in one process shares one record)."""

    _lock = threading.Lock()  # the count of users
    _users = 0
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    @classmethod
    @contextlib.contextmanager
    def kept(cls) -> Iterator[None]:
        with cls._lock:
            cls._users += 1
            if cls._users == 1:
                cls._stop = threading.Event()
                _write_record()
                cls._thread = threading.Thread(
                    target=cls._refresh, args=(cls._stop,), daemon=True, name="pathatlas-drivers"
                )
                cls._thread.start()
        try:
            yield
        finally:
            with cls._lock:
                cls._users -= 1
                if cls._users == 0 and cls._stop is not None and cls._thread is not None:
                    cls._stop.set()
                    cls._thread.join()  # a refresh in flight must not write the record again
                    with _WRITING:
                        _record_path(os.getpid()).unlink(missing_ok=True)

    @staticmethod
    def _refresh(stop: threading.Event) -> None:
        while not stop.wait(REFRESH_S):
            try:
                _write_record()
            except OSError as exc:  # a full or read-only disk must not stop the run
                log.debug("could not refresh the driver record: %s", exc)


def refresh() -> None:
    """Record this process's descendants now (e.g. right after it started Ray), if it keeps a
    record: a kill before the next periodic refresh must not leave them unlisted."""
    if DriverRecord._users > 0:
        with contextlib.suppress(OSError):
            _write_record()


_WRITING = threading.Lock()  # the refresh thread and refresh() write one file


def _write_record() -> None:
    """This process (pid, start time) and every descendant it has now, added to what it had."""
    with _WRITING:
        _write_record_locked()


def _write_record_locked() -> None:
    me = os.getpid()
    path = _record_path(me)
    known: dict[int, int] = {}
    with contextlib.suppress(OSError, ValueError):
        known = {int(pid): int(t) for pid, t in json.loads(path.read_text())["children"].items()}
    known.update(descendants(me))
    record = {
        "pid": me,
        "start_time": start_time(me),
        "group": me if os.getpgid(0) == me else None,  # its own process group: all of it is the run's
        "alive_at": uptime_ticks(),  # when it was last seen alive (clock ticks since boot)
        "children": {str(p): t for p, t in sorted(known.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def reap() -> list[str]:
    """End what drivers that died on this host left running; return one line per process ended.

    A driver counts as dead when its pid is gone or now belongs to a process with another start
    time. Its record is deleted once none of the processes it lists is left.
    """
    ended: list[str] = []
    folder = _records_dir()
    if not folder.is_dir():
        return ended
    for path in sorted(folder.glob(f"{_prefix()}*.json")):
        try:
            record = json.loads(path.read_text())
            pid, started = int(record["pid"]), record.get("start_time")
            children = {int(p): int(t) for p, t in record.get("children", {}).items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours to judge
        if pid == os.getpid() or (start_time(pid) is not None and start_time(pid) == started):
            continue  # alive
        left = {p: t for p, t in children.items() if start_time(p) == t}
        left.update(_group_leftovers(record))
        ended += [f"pid {p} (left by driver pid {pid})" for p in left]
        _end(left)
        if not any(start_time(p) == t for p, t in left.items()):
            path.unlink(missing_ok=True)
    return ended


def _group_leftovers(record: dict) -> dict[int, int]:
    """Members of a dead driver's own process group started while it lived (up to one refresh
    period after it was last seen): what it started since its last refresh. Never this process."""
    group, started, alive_at = record.get("group"), record.get("start_time"), record.get("alive_at")
    if not isinstance(group, int) or not isinstance(started, int) or not isinstance(alive_at, int):
        return {}
    until = alive_at + int((REFRESH_S + 1.0) * os.sysconf("SC_CLK_TCK"))
    return {p: t for p, t in group_members(group).items() if started <= t <= until and p != os.getpid() and p != group}


def _end(processes: dict[int, int]) -> None:
    """SIGTERM each process (pid, start time), SIGKILL what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in processes.items():
            if start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + (_GRACE_S if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(start_time(p) == t for p, t in processes.items()):
            time.sleep(0.1)
