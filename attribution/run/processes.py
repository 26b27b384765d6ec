"""This host's processes as ``/proc`` shows them: start times (which tell a pid apart from a
later process that reused it), parents, the pid namespace and boot id. Linux only; elsewhere the
functions answer None or nothing, and callers treat that as "cannot tell"."""

from __future__ import annotations

import os
from pathlib import Path


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent pid, start time in clock ticks since boot)`` of ``pid``, or None (no
    ``/proc``, no such pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[1]), int(fields[19])  # fields 3 (state), 4 (ppid), 22 (starttime)
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> dict[int, int]:
    """``pid -> start time`` of every living process in process group ``pgid``."""
    found: dict[int, int] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:  # field 5: the process group
                found[int(entry.name)] = int(fields[19])
        except (IndexError, ValueError):
            continue
    return found


def uptime_ticks() -> int | None:
    """Now, in the clock ticks since boot that start times are counted in."""
    try:
        with open("/proc/uptime") as f:
            return int(float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None if it is gone or a zombie."""
    stat = proc_stat(pid)
    return None if stat is None or stat[0] in ("Z", "X") else stat[2]


def descendants(pid: int) -> dict[int, int]:
    """``pid -> start time`` of every living descendant of ``pid`` (children, their children...)."""
    parents: dict[int, int] = {}
    started: dict[int, int] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                parents[int(entry.name)], started[int(entry.name)] = stat[1], stat[2]
    found: dict[int, int] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = started[child]
                frontier.append(child)
    return found


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def boot_id() -> str | None:
    return read_text("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
